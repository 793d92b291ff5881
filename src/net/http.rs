//! The HTTP client: one ureq agent configured once, pacing, retries with backoff,
//! `Retry-After`. It returns a complete body that the caller's check accepted.
//!
//! Whether to retry is decided by [`crate::net::retry`], a pure function of the attempt, the
//! outcome and a jitter draw, unit tested without a network. A body the caller's
//! check refuses (not JSON, no records array) is retried like a 503; the check only
//! reads the body into page-local buffers, so a refused body leaves no trace.

use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ureq::http::{HeaderMap, Uri};

use crate::error::{Error, Result};
use crate::net::pace::{Announced, Pacer, TooLong, MAX_WAIT};
use crate::net::retry::{next_step, parse_retry_after, Next, Outcome, BACKOFF_BASE};

/// A page larger than this is refused rather than held in memory.
const BODY_LIMIT: u64 = 64 << 20;
/// Body buffers up to this size are kept for the next call (a page is ~100 KB).
const KEEP_BODY: usize = 4 << 20;
/// Query values keep RFC 3986's unreserved characters and encode the rest.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A credential: printed as `***` by `Debug` and `Display`, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A base URL that credentials may be sent to: https, or plain http to a loopback host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// As configured, without a trailing `/`.
    pub url: String,
    /// The host, without port or brackets.
    pub host: String,
    /// Host (lowercase, an IPv6 address in brackets) and port, the scheme's default
    /// when none is given: `acme.paligoapp.com:443`, `[::1]:8080`.
    pub authority: String,
    pub loopback: bool,
}

/// Parses and checks `base_url` with `http::Uri`: an absolute http(s) URL with a
/// host and no user info, query or fragment; plain http only to loopback.
pub fn check_base_url(base_url: &str) -> std::result::Result<BaseUrl, String> {
    let url = base_url.trim().trim_end_matches('/');
    if url.contains('#') {
        return Err("a fragment (#) has no place in it".into());
    }
    let uri: Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
    let scheme = uri.scheme_str().ok_or("not an absolute URL (it needs https://)")?.to_ascii_lowercase();
    let authority = uri.authority().ok_or("no host")?;
    if authority.as_str().contains('@') {
        return Err("user info (user@ or user:password@) is not allowed: credentials go in api_key".into());
    }
    if uri.query().is_some() {
        return Err("a query (?…) has no place in it".into());
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    if host.is_empty() {
        return Err("no host".into());
    }
    let loopback = is_loopback(&host);
    match scheme.as_str() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("credentials are only sent over https (plain http is allowed to loopback only)".into()),
        other => return Err(format!("unsupported scheme {other:?}")),
    }
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    let lower = host.to_ascii_lowercase();
    let authority = if lower.contains(':') { format!("[{lower}]:{port}") } else { format!("{lower}:{port}") };
    Ok(BaseUrl { url: url.to_string(), host, authority, loopback })
}

/// True for hosts that never leave the machine, where plain http may carry credentials.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Where a credential is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPlace {
    Header(&'static str),
    Query(&'static str),
}

/// What a [`Client`] needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub base_url: String,
    /// The full `Authorization` header value.
    pub authorization: Secret,
    /// Where `authorization` is sent: a header (`Authorization` for the built-in
    /// connectors) or a query parameter, never shown in a URL we print.
    pub auth_place: AuthPlace,
    pub timeout: Duration,
    pub retries: u32,
    /// The API's documented budget (requests, window); `None`: paced only once the
    /// server has refused a request (the mock on loopback).
    pub budget: Option<(u32, Duration)>,
    /// Set by SIGINT/SIGTERM: waits end early.
    pub interrupt: Option<Arc<AtomicUsize>>,
}

/// Requests, retries and waiting so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub requests: u64,
    pub retries: u64,
    /// Time spent waiting for the rate limit (pacing and `Retry-After`).
    pub waited: Duration,
    pub refused: u64,
}

/// The answer to a GET that the caller's check accepted.
pub struct Reply<'a> {
    pub body: &'a [u8],
    pub headers: &'a HeaderMap,
}

/// A blocking API client bound to one base URL and one credential. It is shared
/// with the threads that fetch the next pages: each call reads into a body buffer
/// of its own, taken from a small pool.
pub struct Client {
    agent: ureq::Agent,
    config: ClientConfig,
    backoff_base: Duration,
    bodies: Mutex<Vec<Vec<u8>>>,
    rng: AtomicU64,
    stats: Mutex<Stats>,
    pacer: Mutex<Pacer>,
    /// The proxy requests go through (ureq takes it from `ALL_PROXY`, `HTTPS_PROXY`
    /// or `HTTP_PROXY`), without credentials: named when a request cannot be made.
    proxy: Option<String>,
    /// Set when the page being fetched is no longer wanted (the read ended on an
    /// error): waits end at once, like on a signal.
    cancel: AtomicBool,
}

/// The lock's value; a thread that panicked holding it left nothing half-updated
/// that matters (counters, a buffer cleared before each use).
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Client {
    pub fn new(config: ClientConfig) -> Client {
        let t = Some(config.timeout);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(t)
            .timeout_send_request(t)
            .timeout_recv_response(t)
            .timeout_recv_body(t)
            .user_agent(concat!("api2csv/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
        let seed = u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(1) ^ u64::from(std::process::id()) << 32;
        // Tests shorten the backoff so that fault tests take seconds, not minutes.
        let backoff_base = std::env::var("API2CSV_TEST_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(BACKOFF_BASE, Duration::from_millis);
        let pacer = Mutex::new(Pacer::new(config.budget));
        let proxy = proxy_of(&agent, &config.base_url);
        Client {
            agent,
            config,
            backoff_base,
            bodies: Mutex::new(Vec::new()),
            rng: AtomicU64::new(seed | 1),
            stats: Mutex::new(Stats::default()),
            pacer,
            proxy,
            cancel: AtomicBool::new(false),
        }
    }

    pub fn stats(&self) -> Stats {
        *locked(&self.stats)
    }

    /// Ends (`true`) the waits of a fetch in flight, or (`false`) allows waits again.
    pub fn cancel(&self, on: bool) {
        self.cancel.store(on, Ordering::SeqCst);
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// The URL of `path` with `query`, as sent and as shown in messages (no secret).
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{}", self.config.base_url, path);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.extend(utf8_percent_encode(k, QUERY));
            url.push('=');
            url.extend(utf8_percent_encode(v, QUERY));
        }
        url
    }

    /// GETs `path` and hands a 2xx answer to `check`, retrying failed requests and
    /// bodies that `check` refuses.
    pub fn get<T>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        check: impl FnMut(&Reply) -> std::result::Result<T, String>,
    ) -> Result<T> {
        self.get_url(&self.url(path, query), check)
    }

    /// [`Client::get`] of a URL made by [`Client::url`].
    pub fn get_url<T>(&self, url: &str, check: impl FnMut(&Reply) -> std::result::Result<T, String>) -> Result<T> {
        self.get_counted(url, &mut 0, &|| true, check)
    }

    /// [`Client::get_url`] that adds the requests it made (retries included) to
    /// `requests` (other threads' requests do not blur the count), and gives up,
    /// as if interrupted, as soon as `wanted` turns false: before an attempt, or
    /// during a wait.
    pub fn get_counted<T>(
        &self,
        url: &str,
        requests: &mut u64,
        wanted: &dyn Fn() -> bool,
        mut check: impl FnMut(&Reply) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let mut body = locked(&self.bodies).pop().unwrap_or_default();
        let call = Call { url, wanted };
        let result = self.attempts(&call, requests, &mut body, &mut check);
        // The buffer of an outsized body is let go rather than kept by the pool.
        if body.capacity() <= KEEP_BODY {
            locked(&self.bodies).push(body);
        }
        result
    }

    fn attempts<T>(
        &self,
        call: &Call,
        requests: &mut u64,
        body: &mut Vec<u8>,
        check: &mut impl FnMut(&Reply) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let url = call.url;
        let mut retry = 0;
        loop {
            let (outcome, detail) = match self.attempt(call, requests, body) {
                Ok((headers, len)) => match check(&Reply { body: &body[..len], headers: &headers }) {
                    Ok(v) => return Ok(v),
                    Err(e) => (Outcome::BadBody, e),
                },
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retryable(o, d)) => (o, d),
            };
            let wait = match next_step(retry, self.config.retries, &outcome, self.jitter(), self.backoff_base) {
                Next::Retry(wait) => wait,
                Next::TooLong(wait) => {
                    let demand = TooLong { wait, demand: detail };
                    return Err(Error::Request { url: url.to_string(), detail: too_long(&demand) });
                }
                Next::GiveUp => {
                    let url = url.to_string();
                    return Err(match outcome {
                        Outcome::BadBody => Error::Response { url, detail },
                        _ if retry == 0 => Error::Request { url, detail },
                        _ => Error::Request { url, detail: format!("{detail} (after {retry} retries)") },
                    });
                }
            };
            // The progress line counts retries; the detail is for -v.
            log::debug!(
                "{url}: {detail}; retry {} of {} in {:.1}s",
                retry + 1,
                self.config.retries,
                wait.as_secs_f64()
            );
            self.count(|s| s.retries += 1);
            let (slept, done) = self.sleep(wait, call.wanted);
            if matches!(outcome, Outcome::Status(429, _)) {
                self.count(|s| s.waited = s.waited.saturating_add(slept));
            }
            if !done {
                return Err(Error::Interrupted);
            }
            retry += 1;
        }
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut locked(&self.stats));
    }

    /// One request; its body is read into `body`, and its length returned.
    fn attempt(
        &self,
        call: &Call,
        requests: &mut u64,
        body: &mut Vec<u8>,
    ) -> std::result::Result<(HeaderMap, usize), Failure> {
        // After a signal, or once nobody wants the page, no request leaves.
        if self.stopped(call.wanted) || !self.pace(call)? {
            return Err(Failure::Final(Error::Interrupted));
        }
        let url = call.url;
        self.count(|s| s.requests += 1);
        *requests += 1;
        let started = Instant::now();
        let secret = self.config.authorization.expose();
        let (sent, hidden) = match self.config.auth_place {
            AuthPlace::Header(name) => {
                (self.agent.get(url).header(name, secret).header("Accept", "application/json").call(), None)
            }
            AuthPlace::Query(name) => {
                let encoded = utf8_percent_encode(secret, QUERY).to_string();
                let sep = if url.contains('?') { '&' } else { '?' };
                let with = format!("{url}{sep}{}={encoded}", utf8_percent_encode(name, QUERY));
                (self.agent.get(&with).header("Accept", "application/json").call(), Some(encoded))
            }
        };
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                // A transport error may quote the URL: the secret in its query never shows.
                let mut text = e.to_string();
                if let Some(h) = hidden.filter(|h| !h.is_empty()) {
                    text = text.replace(&h, "***").replace(secret, "***");
                }
                if let Some(proxy) = &self.proxy {
                    text = format!("{text} (through the proxy {proxy})");
                }
                return Err(Failure::Retryable(Outcome::Transport, text));
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let announced = Announced::from_headers(header, unix_now());
        locked(&self.pacer).announced_all(Instant::now(), announced);
        let (len, read) = read_body(&mut resp.body_mut().with_config().limit(BODY_LIMIT).reader(), body);
        let body = &body[..len];
        log::debug!("GET {url} -> {status} ({len} bytes, {} ms)", started.elapsed().as_millis());
        if (200..300).contains(&status) {
            return match read {
                Ok(()) => Ok((headers, len)),
                Err(e) => Err(Failure::Retryable(Outcome::BadBody, format!("body cut short: {e}"))),
            };
        }
        let mut message = api_message(body, status);
        let retry_after_header = header("retry-after").map(one_line);
        let retry_after =
            retry_after_header.as_deref().and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc()));
        if let (Some(raw), Some(_)) = (&retry_after_header, retry_after) {
            message = format!("{message} (Retry-After: {})", raw.chars().take(60).collect::<String>());
        }
        if status == 429 {
            self.count(|s| s.refused += 1);
            locked(&self.pacer).refused(Instant::now(), retry_after);
        }
        match status {
            401 | 403 => Err(Failure::Final(Error::Auth { url: url.to_string(), status, message })),
            408 | 429 | 500..=599 => {
                Err(Failure::Retryable(Outcome::Status(status, retry_after), format!("HTTP {status}: {message}")))
            }
            _ => Err(Failure::Final(Error::Api { url: url.to_string(), status, message })),
        }
    }

    /// Waits until the next request keeps within the rate limit; false when
    /// interrupted, an error when the wait would be longer than [`MAX_WAIT`]. The
    /// request's slot is taken before the wait, under the lock, so that two
    /// fetchers never both take the last one.
    fn pace(&self, call: &Call) -> std::result::Result<bool, Failure> {
        let wait = {
            let mut pacer = locked(&self.pacer);
            let now = Instant::now();
            let wait = pacer.wait(now).map_err(|demand| {
                Failure::Final(Error::Request { url: call.url.to_string(), detail: too_long(&demand) })
            })?;
            pacer.sent(now.checked_add(wait).unwrap_or(now));
            wait
        };
        if !wait.is_zero() {
            log::debug!("pacing: waiting {:.1}s to stay within the API's rate limit", wait.as_secs_f64());
            let (slept, done) = self.sleep(wait, call.wanted);
            self.count(|s| s.waited = s.waited.saturating_add(slept));
            if !done {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A signal arrived, the fetch was cancelled, or nobody wants the page any more.
    fn stopped(&self, wanted: &dyn Fn() -> bool) -> bool {
        self.cancel.load(Ordering::SeqCst)
            || self.config.interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst) != 0)
            || !wanted()
    }

    /// Sleeps `d` in short steps, so a signal ends the wait: how long it slept, and
    /// whether it slept all of `d`.
    fn sleep(&self, d: Duration, wanted: &dyn Fn() -> bool) -> (Duration, bool) {
        let start = Instant::now();
        loop {
            if self.stopped(wanted) {
                return (start.elapsed(), false);
            }
            let left = d.saturating_sub(start.elapsed());
            if left.is_zero() {
                return (start.elapsed(), true);
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    fn jitter(&self) -> f64 {
        // xorshift64*: enough to spread retries, no dependency.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        let high = u32::try_from(x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32).unwrap_or(0);
        f64::from(high) / 4_294_967_296.0
    }
}

/// One GET: its URL, and whether its page is still wanted.
struct Call<'a> {
    url: &'a str,
    wanted: &'a dyn Fn() -> bool,
}

enum Failure {
    Final(Error),
    Retryable(Outcome, String),
}

/// The line for a wait longer than [`MAX_WAIT`]: what the server asked, and the cap.
fn too_long(t: &TooLong) -> String {
    format!(
        "{}: the server asks for a wait of {} s, longer than the {} s api2csv waits at most",
        t.demand,
        t.wait.as_secs(),
        MAX_WAIT.as_secs()
    )
}

/// The proxy `agent` sends requests for `base_url` through, as scheme, host and
/// port (never the user and password a proxy URL may hold).
fn proxy_of(agent: &ureq::Agent, base_url: &str) -> Option<String> {
    let proxy = agent.config().proxy()?;
    let bypassed = base_url.parse::<Uri>().is_ok_and(|uri| proxy.is_no_proxy(&uri));
    let scheme = proxy.uri().scheme_str().unwrap_or("http");
    (!bypassed).then(|| format!("{scheme}://{}:{}", proxy.host(), proxy.port()))
}

/// Seconds since 1970, for rate-limit resets sent as a Unix time.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Reads `reader` to its end into `buf` from its start: the length read, and how
/// the read ended. The buffer (kept from page to page) stays as long as the longest
/// body read, its bytes initialized once, where `read_to_end` zeroes the spare
/// capacity it reads into on every call.
fn read_body(reader: &mut impl Read, buf: &mut Vec<u8>) -> (usize, std::io::Result<()>) {
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len + len.max(64 << 10), 0);
        }
        match reader.read(&mut buf[len..]) {
            Ok(0) => return (len, Ok(())),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (len, Err(e)),
        }
    }
}

/// The API's own message: `message` of a JSON body with the fields its `errors`
/// name (Laravel's validation errors: `{"limit": ["..."]}`), else the start of the text.
fn api_message(body: &[u8], status: u16) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        message: String,
        #[serde(default)]
        errors: Option<serde_json::Map<String, serde_json::Value>>,
    }
    if let Ok(b) = serde_json::from_slice::<Body>(body) {
        let fields: Vec<String> = b.errors.unwrap_or_default().iter().map(|(k, v)| field_error(k, v)).collect();
        let message = match fields.is_empty() {
            true => b.message,
            false => format!("{} ({})", b.message, fields.join("; ")),
        };
        return one_line(&message).chars().take(500).collect();
    }
    let text = one_line(&String::from_utf8_lossy(body));
    if text.is_empty() {
        return format!("status {status}");
    }
    text.chars().take(200).collect()
}

/// One field of a validation error: its name and its first message.
fn field_error(field: &str, errors: &serde_json::Value) -> String {
    let first = match errors {
        serde_json::Value::Array(a) => a.first(),
        other => Some(other),
    };
    match first.and_then(serde_json::Value::as_str) {
        Some(m) => format!("{field}: {m}"),
        None => field.to_string(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
