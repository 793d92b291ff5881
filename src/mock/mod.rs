//! Embedded mock APIs: a tiny_http server on loopback that answers like the real
//! MailerLite and Paligo APIs, with deterministic data from a seed, optional fault
//! injection and rate limiting. Used by `api2csv mock`, `api2csv demo` and the tests.

pub mod mailerlite;
pub mod paligo;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// One request as the per-API handler sees it.
#[derive(Debug, Clone)]
pub struct MockRequest {
    pub method: String,
    /// Path without the query string, percent-decoded, e.g. `/api/subscribers`.
    pub path: String,
    /// Query parameters in order, percent-decoded (`filter[status]` stays as that key).
    pub query: Vec<(String, String)>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// `http://127.0.0.1:PORT`, for building the absolute URLs the APIs return.
    pub origin: String,
}

impl MockRequest {
    /// The first value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A complete response; the server may still damage it when injecting faults.
#[derive(Debug, Clone)]
pub struct MockResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Settings shared by every mock API.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Seed of the deterministic data generator.
    pub seed: u64,
    /// Size of the account: subscribers (MailerLite), assignments (Paligo).
    pub records: usize,
    /// Probability in 0..1 that a request gets an injected fault.
    pub fault_rate: f64,
    /// At most `requests` per `seconds` window; more get a 429 with `Retry-After`.
    pub rate_limit: Option<(u32, u32)>,
    /// 1 is the seed's account; each later generation mutates it deterministically.
    pub generation: u32,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions { seed: 1, records: 1000, fault_rate: 0.0, rate_limit: None, generation: 1 }
    }
}

/// For one table, the primary keys a generation added, changed or deleted (keys of
/// several columns joined with `,`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableMutations {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub deleted: Vec<String>,
}

/// What generation `g` changed relative to `g - 1`, per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mutations {
    pub tables: Vec<(String, TableMutations)>,
}

impl Mutations {
    /// The mutations of `table`, if it has any.
    pub fn table(&self, table: &str) -> Option<&TableMutations> {
        self.tables.iter().find(|(name, _)| name == table).map(|(_, m)| m)
    }
}

/// What one API does; the server around it does transport, faults and rate limits.
pub trait MockApi: Send + Sync + 'static {
    /// Answer a request that passed fault injection and rate limiting.
    fn handle(&self, req: &MockRequest) -> MockResponse;
    /// The 429 this API sends when the rate limit is exceeded.
    fn too_many_requests(&self, retry_after_secs: u64) -> MockResponse;
    /// Rate-limit headers this API adds to every answer (MailerLite has them, Paligo not).
    fn rate_limit_headers(&self, _limit: u32, _remaining: u32) -> Vec<(String, String)> {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------
// The server. It is a small HTTP/1.1 server on std::net rather than tiny_http:
// tiny_http owns its sockets and offers no way to close a connection from the
// server side, which the "connection dropped mid-body" fault needs.
// ---------------------------------------------------------------------------

/// The rate limit MailerLite advertises; used for the headers when no limit is set.
const DEFAULT_LIMIT: u32 = 120;
/// Longest request head accepted, so a confused client cannot grow memory.
const MAX_HEAD: u64 = 64 * 1024;

/// A running mock server; it stops when dropped or on [`MockServer::shutdown`].
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// Starts serving `api` on `addr` (`127.0.0.1:0` picks a free port).
pub fn start(api: Arc<dyn MockApi>, addr: &str, opts: &MockOptions) -> io::Result<MockServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(api, addr, opts));
    let inner = Arc::clone(&shared);
    let acceptor =
        std::thread::Builder::new().name("mock-accept".into()).spawn(move || accept_loop(&inner, listener))?;
    Ok(MockServer { addr, shared, acceptor: Some(acceptor) })
}

impl MockServer {
    /// The bound address, with the real port when `:0` was asked for.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the prefix of every URL the mock serves.
    pub fn origin(&self) -> String {
        self.shared.origin.clone()
    }

    /// Requests answered so far, failed and faulted ones included.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Blocks for as long as the server runs (for `api2csv mock`).
    pub fn wait(mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }

    /// Stops accepting, closes every open connection and joins the acceptor.
    pub fn shutdown(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // accept() only returns on a connection, so make one.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for (_, conn) in self.shared.conns.lock().unwrap().drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// State every connection thread shares.
struct Shared {
    api: Arc<dyn MockApi>,
    origin: String,
    fault_rate: f64,
    rate_limit: Option<(u32, u32)>,
    rng: Mutex<u64>,
    limiter: Mutex<Limiter>,
    stopping: AtomicBool,
    /// Open connections, so shutdown can close idle keep-alive sockets.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    /// Requests answered, whatever the answer: tests count retries with it.
    requests: AtomicU64,
}

impl Shared {
    fn new(api: Arc<dyn MockApi>, addr: SocketAddr, opts: &MockOptions) -> Shared {
        Shared {
            api,
            origin: format!("http://{addr}"),
            fault_rate: opts.fault_rate,
            rate_limit: opts.rate_limit.filter(|&(n, secs)| n > 0 && secs > 0),
            rng: Mutex::new(opts.seed ^ 0x6d6f_636b_6661_756c),
            limiter: Mutex::new(Limiter { start: Instant::now(), window: 0, count: 0 }),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// The answer to one request: the API's response, rate limited, maybe damaged.
    fn answer(&self, req: &MockRequest) -> Reply {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let response = self.api.handle(req);
        // Authentication comes before throttling and faults, as on the real API,
        // so a wrong key always gets exactly one clean 401.
        if response.status == 401 {
            return Reply::whole(response);
        }
        let (limit, remaining) = match self.admit() {
            Admission::Allowed { limit, remaining } => (limit, remaining),
            Admission::Limited { limit, retry_after } => {
                let mut limited = self.api.too_many_requests(retry_after);
                limited.headers.extend(self.api.rate_limit_headers(limit, 0));
                return Reply::whole(limited);
            }
        };
        let mut response = response;
        response.headers.extend(self.api.rate_limit_headers(limit, remaining));
        match self.draw_fault(response.status) {
            Some(fault) => self.inject(fault, response, limit),
            None => Reply::whole(response),
        }
    }

    fn admit(&self) -> Admission {
        let mut limiter = self.limiter.lock().unwrap();
        match self.rate_limit {
            Some((n, secs)) => limiter.admit(n, secs),
            None => limiter.count_unlimited(),
        }
    }

    /// Decides, reproducibly for a seed and request sequence, whether to damage a 2xx.
    fn draw_fault(&self, status: u16) -> Option<Fault> {
        if !(200..300).contains(&status) || self.fault_rate <= 0.0 {
            return None;
        }
        let mut state = self.rng.lock().unwrap();
        let roll = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        let pick = splitmix64(&mut state);
        (roll < self.fault_rate).then(|| Fault::ALL[(pick % Fault::ALL.len() as u64) as usize])
    }

    fn inject(&self, fault: Fault, response: MockResponse, limit: u32) -> Reply {
        log::debug!("mock: injecting {fault:?}");
        match fault {
            Fault::ServerError => Reply::whole(json_error(500, r#"{"message":"Server Error"}"#)),
            Fault::BadGateway => Reply::whole(bad_gateway()),
            Fault::Unavailable => Reply::whole(json_error(503, r#"{"message":"Service Unavailable"}"#)),
            Fault::TooManyRequests => {
                let mut limited = self.api.too_many_requests(1);
                limited.headers.extend(self.api.rate_limit_headers(limit, 0));
                Reply::whole(limited)
            }
            Fault::DropMidBody => Reply { response, drop_mid_body: true, head_only: false },
            Fault::TruncatedJson => {
                let mut response = response;
                response.body.truncate(response.body.len() / 2);
                Reply::whole(response)
            }
        }
    }
}

/// The kinds of damage fault injection chooses from, uniformly.
#[derive(Debug, Clone, Copy)]
enum Fault {
    ServerError,
    BadGateway,
    Unavailable,
    TooManyRequests,
    /// Headers promise the full body; half of it arrives, then the connection closes.
    DropMidBody,
    /// A 200 whose JSON is cut in half, with a Content-Length that matches the cut.
    TruncatedJson,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::ServerError,
        Fault::BadGateway,
        Fault::Unavailable,
        Fault::TooManyRequests,
        Fault::DropMidBody,
        Fault::TruncatedJson,
    ];
}

/// A response plus how to put it on the wire.
struct Reply {
    response: MockResponse,
    drop_mid_body: bool,
    /// A HEAD request: Content-Length as for GET, but no body.
    head_only: bool,
}

impl Reply {
    fn whole(response: MockResponse) -> Reply {
        Reply { response, drop_mid_body: false, head_only: false }
    }
}

fn json_error(status: u16, body: &str) -> MockResponse {
    MockResponse { status, headers: Vec::new(), body: body.as_bytes().to_vec() }
}

/// What Cloudflare sends when the origin is unreachable: HTML, not JSON.
fn bad_gateway() -> MockResponse {
    let body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n\
                </body>\r\n</html>\r\n";
    MockResponse {
        status: 502,
        headers: vec![("Content-Type".into(), "text/html".into()), ("Server".into(), "cloudflare".into())],
        body: body.as_bytes().to_vec(),
    }
}

/// splitmix64: tiny, fast and good enough to make faults reproducible.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fixed-window request counter.
struct Limiter {
    start: Instant,
    window: u64,
    count: u32,
}

enum Admission {
    Allowed { limit: u32, remaining: u32 },
    Limited { limit: u32, retry_after: u64 },
}

impl Limiter {
    fn admit(&mut self, n: u32, secs: u32) -> Admission {
        let elapsed = self.start.elapsed();
        let window = elapsed.as_secs() / u64::from(secs);
        if window != self.window {
            self.window = window;
            self.count = 0;
        }
        if self.count >= n {
            let window_end = (window + 1) * u64::from(secs);
            let retry_after = window_end.saturating_sub(elapsed.as_secs()).max(1);
            return Admission::Limited { limit: n, retry_after };
        }
        self.count += 1;
        Admission::Allowed { limit: n, remaining: n - self.count }
    }

    /// Without a limit the headers still count down, but never to 0, so a client
    /// that paces on `remaining` is never told to wait.
    fn count_unlimited(&mut self) -> Admission {
        let remaining = DEFAULT_LIMIT - 1 - self.count % (DEFAULT_LIMIT - 1);
        self.count = self.count.wrapping_add(1);
        Admission::Allowed { limit: DEFAULT_LIMIT, remaining }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            shared.conns.lock().unwrap().insert(id, clone);
        }
        let conn_shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new().name("mock-conn".into()).spawn(move || {
            let _ = serve_connection(&conn_shared, stream);
            conn_shared.conns.lock().unwrap().remove(&id);
        });
        if spawned.is_err() {
            shared.conns.lock().unwrap().remove(&id);
        }
    }
}

/// Answers requests on one keep-alive connection until either side closes it.
fn serve_connection(shared: &Shared, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(head) = read_head(&mut reader)? {
        io::copy(&mut (&mut reader).take(head.content_length), &mut io::sink())?;
        let request = head.to_request(&shared.origin);
        let mut reply = shared.answer(&request);
        reply.head_only = head.method == "HEAD";
        let keep_alive = head.keep_alive && !reply.drop_mid_body;
        write_reply(&mut writer, &reply, keep_alive)?;
        if !keep_alive {
            writer.shutdown(Shutdown::Both)?;
            break;
        }
    }
    Ok(())
}

/// The parts of a request head the mocks use.
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    authorization: Option<String>,
    content_length: u64,
    keep_alive: bool,
}

/// Reads one request head; `None` when the client closed the connection cleanly.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut limited = reader.take(MAX_HEAD);
    let mut line = String::new();
    // Tolerate blank lines before a request line (RFC 9112 §2.2).
    while line.trim().is_empty() {
        line.clear();
        if limited.read_line(&mut line)? == 0 {
            return Ok(None);
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad request line"));
    };
    let mut head = Head {
        method: method.to_string(),
        target: target.to_string(),
        authorization: None,
        content_length: 0,
        keep_alive: version != Some("HTTP/1.0"),
    };
    read_headers(&mut limited, &mut head)?;
    Ok(Some(head))
}

fn read_headers(reader: &mut impl BufRead, head: &mut Head) -> io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "request head cut short"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(());
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "authorization" => head.authorization = Some(value.to_string()),
            "content-length" => head.content_length = value.parse().unwrap_or(0),
            "connection" => head.keep_alive = connection_keeps_alive(value, head.keep_alive),
            _ => {}
        }
    }
}

fn connection_keeps_alive(value: &str, default: bool) -> bool {
    let value = value.to_ascii_lowercase();
    if value.contains("close") {
        false
    } else {
        value.contains("keep-alive") || default
    }
}

impl Head {
    fn to_request(&self, origin: &str) -> MockRequest {
        let (path, query) = self.target.split_once('?').unwrap_or((&self.target, ""));
        MockRequest {
            method: self.method.clone(),
            path: percent_decode(path, false),
            query: parse_query(query),
            authorization: self.authorization.clone(),
            origin: origin.to_string(),
        }
    }
}

/// `a=1&filter%5Bstatus%5D=active` as decoded pairs, `+` meaning a space.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` when `plus_is_space`); bad escapes stay as they are.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
                continue;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes status line, headers and body in one buffer, so the reply leaves in as
/// few segments as possible; a dropped reply stops halfway through the body.
fn write_reply(out: &mut TcpStream, reply: &Reply, keep_alive: bool) -> io::Result<()> {
    let response = &reply.response;
    let mut wire = Vec::with_capacity(response.body.len() + 512);
    write!(wire, "HTTP/1.1 {} {}\r\n", response.status, reason(response.status))?;
    let has_type = response.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !has_type {
        wire.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    for (name, value) in &response.headers {
        write!(wire, "{name}: {value}\r\n")?;
    }
    write!(wire, "Content-Length: {}\r\n", response.body.len())?;
    if !keep_alive && !reply.drop_mid_body {
        wire.extend_from_slice(b"Connection: close\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    let body_len = match (reply.head_only, reply.drop_mid_body) {
        (true, _) => 0,
        (false, true) => response.body.len() / 2,
        (false, false) => response.body.len(),
    };
    wire.extend_from_slice(&response.body[..body_len]);
    out.write_all(&wire)?;
    out.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers 200 with the path and query for `Bearer k`, 401 otherwise.
    struct Echo;

    impl MockApi for Echo {
        fn handle(&self, req: &MockRequest) -> MockResponse {
            if req.authorization.as_deref() != Some("Bearer k") {
                return json_error(401, r#"{"message":"Unauthenticated."}"#);
            }
            let body = format!(
                r#"{{"path":"{}","q":"{}","pad":"{}"}}"#,
                req.path,
                req.param("q").unwrap_or(""),
                "x".repeat(64)
            );
            MockResponse { status: 200, headers: Vec::new(), body: body.into_bytes() }
        }

        fn too_many_requests(&self, retry_after_secs: u64) -> MockResponse {
            let mut response = json_error(429, r#"{"message":"Too Many Attempts."}"#);
            response.headers.push(("Retry-After".into(), retry_after_secs.to_string()));
            response
        }

        fn rate_limit_headers(&self, limit: u32, remaining: u32) -> Vec<(String, String)> {
            vec![
                ("x-ratelimit-limit".into(), limit.to_string()),
                ("x-ratelimit-remaining".into(), remaining.to_string()),
            ]
        }
    }

    /// A response read off the wire; `body` may be shorter than `content_length`.
    struct Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        content_length: usize,
    }

    impl Raw {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    fn serve(opts: MockOptions) -> MockServer {
        start(Arc::new(Echo), "127.0.0.1:0", &opts).unwrap()
    }

    fn connect(server: &MockServer) -> BufReader<TcpStream> {
        BufReader::new(TcpStream::connect(server.addr()).unwrap())
    }

    fn get(conn: &mut BufReader<TcpStream>, target: &str, auth: &str) -> Raw {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n");
        conn.get_mut().write_all(request.as_bytes()).unwrap();
        read_raw(conn)
    }

    fn read_raw(conn: &mut BufReader<TcpStream>) -> Raw {
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            conn.read_line(&mut line).unwrap();
            match line.trim_end().split_once(": ") {
                Some((k, v)) => headers.push((k.to_string(), v.to_string())),
                None => break,
            }
        }
        let mut raw = Raw { status, headers, body: Vec::new(), content_length: 0 };
        raw.content_length = raw.header("content-length").unwrap().parse().unwrap();
        let _ = conn.take(raw.content_length as u64).read_to_end(&mut raw.body);
        raw
    }

    #[test]
    fn serves_decoded_requests_on_a_kept_alive_connection() {
        let server = serve(MockOptions::default());
        let mut conn = connect(&server);
        for _ in 0..3 {
            let raw = get(&mut conn, "/a%20b/c?q=x+y%26z&other", "Bearer k");
            assert_eq!(raw.status, 200);
            assert_eq!(raw.header("content-type"), Some("application/json"));
            let body = String::from_utf8(raw.body).unwrap();
            assert!(body.starts_with(r#"{"path":"/a b/c","q":"x y&z""#), "{body}");
        }
        assert!(server.origin().starts_with("http://127.0.0.1:"));
    }

    #[test]
    fn head_gets_headers_only() {
        let server = serve(MockOptions::default());
        let mut conn = connect(&server);
        conn.get_mut().write_all(b"HEAD / HTTP/1.1\r\nAuthorization: Bearer k\r\n\r\n").unwrap();
        let mut line = String::new();
        while line != "\r\n" {
            line.clear();
            conn.read_line(&mut line).unwrap();
        }
        assert_eq!(get(&mut conn, "/next", "Bearer k").status, 200);
    }

    #[test]
    fn counts_remaining_down_without_ever_blocking() {
        let server = serve(MockOptions::default());
        let mut conn = connect(&server);
        let remaining: Vec<u32> = (0..130)
            .map(|_| get(&mut conn, "/", "Bearer k"))
            .map(|raw| raw.header("x-ratelimit-remaining").unwrap().parse().unwrap())
            .collect();
        assert_eq!(remaining[..2], [119, 118]);
        assert!(remaining.iter().all(|&r| r > 0));
    }

    #[test]
    fn injects_every_kind_of_fault_at_rate_one() {
        let server = serve(MockOptions { fault_rate: 1.0, ..MockOptions::default() });
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..80 {
            let raw = get(&mut connect(&server), "/", "Bearer k");
            let kind = match raw.status {
                200 if raw.body.len() < raw.content_length => "dropped",
                200 if serde_json::from_slice::<serde_json::Value>(&raw.body).is_err() => "truncated",
                200 => panic!("a request escaped fault injection"),
                429 => {
                    assert_eq!(raw.header("retry-after"), Some("1"));
                    "429"
                }
                502 => {
                    assert!(raw.body.starts_with(b"<html>"));
                    "502"
                }
                500 | 503 => "5xx",
                other => panic!("unexpected status {other}"),
            };
            seen.insert(kind);
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
    }

    #[test]
    fn faults_repeat_for_the_same_seed() {
        let statuses = |seed| {
            let server = serve(MockOptions { seed, fault_rate: 0.5, ..MockOptions::default() });
            (0..40).map(|_| get(&mut connect(&server), "/", "Bearer k").status).collect::<Vec<_>>()
        };
        assert_eq!(statuses(7), statuses(7));
        assert_ne!(statuses(7), statuses(8));
    }

    #[test]
    fn never_damages_a_failed_authentication() {
        let opts = MockOptions { fault_rate: 1.0, rate_limit: Some((1, 60)), ..MockOptions::default() };
        let server = serve(opts);
        let mut conn = connect(&server);
        for _ in 0..20 {
            let raw = get(&mut conn, "/", "Bearer wrong");
            assert_eq!(raw.status, 401);
            assert_eq!(raw.header("x-ratelimit-limit"), None);
        }
    }

    #[test]
    fn rate_limit_answers_429_with_retry_after() {
        let server = serve(MockOptions { rate_limit: Some((2, 60)), ..MockOptions::default() });
        let mut conn = connect(&server);
        let first = get(&mut conn, "/", "Bearer k");
        assert_eq!((first.status, first.header("x-ratelimit-limit")), (200, Some("2")));
        assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
        assert_eq!(get(&mut conn, "/", "Bearer k").status, 200);
        let limited = get(&mut conn, "/", "Bearer k");
        assert_eq!(limited.status, 429);
        let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    }

    #[test]
    fn shutdown_closes_idle_connections() {
        let mut server = serve(MockOptions::default());
        let mut conn = connect(&server);
        assert_eq!(get(&mut conn, "/", "Bearer k").status, 200);
        server.shutdown();
        let mut rest = Vec::new();
        assert_eq!(conn.read_to_end(&mut rest).unwrap_or(0), 0);
    }

    #[test]
    fn decodes_percent_escapes_and_plus() {
        assert_eq!(percent_decode("filter%5Bstatus%5D", true), "filter[status]");
        assert_eq!(percent_decode("a+b%2", true), "a b%2");
        assert_eq!(percent_decode("a+b", false), "a+b");
        let pairs = parse_query("limit=100&cursor=&filter%5Bstatus%5D=active");
        assert_eq!(pairs[2], ("filter[status]".to_string(), "active".to_string()));
        assert_eq!(pairs[1], ("cursor".to_string(), String::new()));
    }
}
