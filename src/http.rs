//! The HTTP client: one ureq agent configured once, retries with backoff, `Retry-After`.
//!
//! Whether to retry is decided by [`decide`], a pure function of the attempt, the
//! outcome and a jitter draw, so the policy is unit tested without a network. The
//! page parser runs inside the retry loop: a truncated or garbled body is retried
//! like a 503, and a page that parsed is never fetched twice.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::Read;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pace::Pacer;

/// Longest wait a `Retry-After` can impose; longer values are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// First backoff step; step n waits a uniform draw in 0..BASE·2ⁿ (full jitter).
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A page larger than this is refused rather than held in memory.
const BODY_LIMIT: u64 = 64 << 20;

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

/// How one attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An HTTP status that is not success, with its `Retry-After` if any.
    Status(u16, Option<Duration>),
    /// No usable response: connection refused or dropped, timeout, DNS.
    Transport,
    /// A 2xx whose body was cut short or is not the JSON we expect.
    BadBody,
}

/// How long to wait before retry number `retry` (0-based), or `None` to give up.
/// A 429 or 503 waits what its `Retry-After` says; anything else backs off.
/// `jitter` is a uniform draw in `0..1`.
pub fn decide(retry: u32, max_retries: u32, outcome: &Outcome, jitter: f64) -> Option<Duration> {
    let retryable = match outcome {
        Outcome::Status(s, _) => matches!(s, 408 | 429 | 500..=599),
        Outcome::Transport | Outcome::BadBody => true,
    };
    if !retryable || retry >= max_retries {
        return None;
    }
    if let Outcome::Status(429 | 503, Some(after)) = outcome {
        return Some((*after).min(MAX_RETRY_AFTER));
    }
    let step = BACKOFF_BASE.saturating_mul(1 << retry.min(16)).min(BACKOFF_CAP);
    Some(step.mul_f64(jitter.clamp(0.0, 1.0)))
}

/// `Retry-After` as delay-seconds or an HTTP-date, relative to `now`.
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format).ok()?.assume_utc();
    Some((at - now).try_into().unwrap_or(Duration::ZERO))
}

/// True for hosts that never leave the machine, where plain http may carry credentials.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// The scheme and host of an absolute URL.
pub fn scheme_and_host(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let host_port = rest.split('/').next().unwrap_or("");
    let host = match host_port.rfind(':') {
        Some(i) if !host_port.ends_with(']') => &host_port[..i],
        _ => host_port,
    };
    Some((scheme, host))
}

/// Checks that credentials may be sent to `base_url`: https, or http to loopback.
pub fn check_base_url(base_url: &str) -> std::result::Result<(), String> {
    let (scheme, host) = scheme_and_host(base_url).ok_or("not an absolute URL")?;
    if host.is_empty() {
        return Err("no host".into());
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err("credentials are only sent over https (plain http is allowed to loopback only)".into()),
        _ => Err(format!("unsupported scheme {scheme:?}")),
    }
}

/// What a [`Client`] needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub base_url: String,
    /// The full `Authorization` header value.
    pub authorization: Secret,
    pub timeout: Duration,
    pub retries: u32,
    /// At most this many requests a minute; `None`: unpaced (the mock on loopback).
    pub requests_per_minute: Option<u32>,
}

/// A blocking API client bound to one base URL and one credential.
pub struct Client {
    agent: ureq::Agent,
    config: ClientConfig,
    body: RefCell<Vec<u8>>,
    rng: Cell<u64>,
    requests: Cell<u64>,
    pacer: RefCell<Option<Pacer>>,
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
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
                ^ (std::process::id() as u64) << 32;
        let pacer = config.requests_per_minute.map(|n| Pacer::new(n, Duration::from_secs(60)));
        Client {
            agent,
            config,
            body: RefCell::new(Vec::new()),
            rng: Cell::new(seed | 1),
            requests: Cell::new(0),
            pacer: RefCell::new(pacer),
        }
    }

    /// Requests sent so far, retries included.
    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// The pace this client keeps, if any.
    pub fn requests_per_minute(&self) -> Option<u32> {
        self.config.requests_per_minute
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// The URL of `path` with `query`, as shown in messages (it holds no secret).
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{}", self.config.base_url.trim_end_matches('/'), path);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&encode(k));
            url.push('=');
            url.push_str(&encode(v));
        }
        url
    }

    /// GETs `path` and hands the body of a 2xx response to `parse`, retrying failed
    /// requests and bodies that `parse` rejects.
    pub fn fetch<T>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        mut parse: impl FnMut(&[u8]) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let url = self.url(path, query);
        let mut retry = 0;
        loop {
            let (outcome, detail) = match self.attempt(&url) {
                Ok(()) => match parse(&self.body.borrow()) {
                    Ok(v) => return Ok(v),
                    Err(e) => (Outcome::BadBody, e),
                },
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retryable(o, d)) => (o, d),
            };
            let Some(wait) = decide(retry, self.config.retries, &outcome, self.jitter()) else {
                return Err(match outcome {
                    Outcome::BadBody => Error::Response { url, detail },
                    _ => Error::Request { url, detail: format!("{detail} (after {} retries)", retry) },
                });
            };
            log::info!("{url}: {detail}; retry {} of {} in {:.1}s", retry + 1, self.config.retries, wait.as_secs_f64());
            std::thread::sleep(wait);
            retry += 1;
        }
    }

    fn attempt(&self, url: &str) -> std::result::Result<(), Failure> {
        self.pace();
        self.requests.set(self.requests.get() + 1);
        let started = Instant::now();
        let sent = self
            .agent
            .get(url)
            .header("Authorization", self.config.authorization.expose())
            .header("Accept", "application/json")
            .call();
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return Err(Failure::Retryable(Outcome::Transport, e.to_string())),
        };
        let status = resp.status().as_u16();
        let announced = resp.headers().get("x-ratelimit-limit").and_then(|v| v.to_str().ok()?.trim().parse().ok());
        if let (Some(limit), Some(pacer)) = (announced, self.pacer.borrow_mut().as_mut()) {
            pacer.announce(limit);
        }
        let mut body = self.body.borrow_mut();
        body.clear();
        let read = resp.body_mut().with_config().limit(BODY_LIMIT).reader().read_to_end(&mut body);
        log::debug!("GET {url} -> {status} ({} bytes, {} ms)", body.len(), started.elapsed().as_millis());
        if (200..300).contains(&status) {
            return match read {
                Ok(_) => Ok(()),
                Err(e) => Err(Failure::Retryable(Outcome::BadBody, format!("body cut short: {e}"))),
            };
        }
        let message = api_message(&body, status);
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc()));
        match status {
            401 | 403 => Err(Failure::Final(Error::Auth { url: url.to_string(), status, message })),
            408 | 429 | 500..=599 => {
                Err(Failure::Retryable(Outcome::Status(status, retry_after), format!("HTTP {status}: {message}")))
            }
            _ => Err(Failure::Final(Error::Api { url: url.to_string(), status, message })),
        }
    }

    /// Waits until the next request keeps within the rate limit, and counts it.
    fn pace(&self) {
        let mut pacer = self.pacer.borrow_mut();
        let Some(pacer) = pacer.as_mut() else { return };
        let wait = pacer.delay(Instant::now());
        if !wait.is_zero() {
            log::info!("pacing: waiting {:.1}s to stay within the API's rate limit", wait.as_secs_f64());
            std::thread::sleep(wait);
        }
        pacer.record(Instant::now());
    }

    fn jitter(&self) -> f64 {
        // xorshift64*: enough to spread retries, no dependency.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Failure {
    Final(Error),
    Retryable(Outcome, String),
}

/// The API's own message: `message` of a JSON body, else the start of the text.
fn api_message(body: &[u8], status: u16) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        message: String,
    }
    if let Ok(b) = serde_json::from_slice::<Body>(body) {
        return b.message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return format!("status {status}");
    }
    text.chars().take(200).collect()
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_are_not_retried() {
        for s in [400, 401, 403, 404, 422] {
            assert_eq!(decide(0, 5, &Outcome::Status(s, None), 0.5), None, "{s}");
        }
    }

    #[test]
    fn transient_errors_back_off_with_full_jitter_until_retries_run_out() {
        for o in [Outcome::Status(503, None), Outcome::Status(408, None), Outcome::Transport, Outcome::BadBody] {
            assert_eq!(decide(0, 5, &o, 1.0), Some(Duration::from_millis(500)));
            assert_eq!(decide(3, 5, &o, 0.5), Some(Duration::from_millis(2000)));
            assert_eq!(decide(4, 5, &o, 0.0), Some(Duration::ZERO));
            assert_eq!(decide(5, 5, &o, 0.5), None);
        }
        assert_eq!(decide(20, 30, &Outcome::Transport, 1.0), Some(BACKOFF_CAP));
    }

    #[test]
    fn rate_limits_wait_what_retry_after_says_capped() {
        let o = Outcome::Status(429, Some(Duration::from_secs(7)));
        assert_eq!(decide(0, 5, &o, 0.0), Some(Duration::from_secs(7)));
        let o = Outcome::Status(503, Some(Duration::from_secs(3)));
        assert_eq!(decide(0, 5, &o, 0.0), Some(Duration::from_secs(3)));
        let o = Outcome::Status(429, Some(Duration::from_secs(86400)));
        assert_eq!(decide(0, 5, &o, 0.0), Some(MAX_RETRY_AFTER));
        assert_eq!(decide(5, 5, &o, 0.0), None);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = time::macros::datetime!(1994-11-06 08:49:30 UTC);
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn credentials_go_over_https_or_to_loopback_only() {
        assert!(check_base_url("https://connect.mailerlite.com/api").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080/api").is_ok());
        assert!(check_base_url("http://localhost/api").is_ok());
        assert!(check_base_url("http://[::1]:9/api").is_ok());
        assert!(check_base_url("http://example.com/api").is_err());
        assert!(check_base_url("ftp://example.com").is_err());
        assert!(check_base_url("example.com").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }

    #[test]
    fn api_messages_are_one_line() {
        assert_eq!(api_message(b"{\n    \"message\": \"No query results\"\n}", 404), "No query results");
        assert_eq!(api_message(b"<html>\n<b>Bad gateway</b>\n</html>", 502), "<html> <b>Bad gateway</b> </html>");
        assert_eq!(api_message(b"", 500), "status 500");
    }
}
