//! The mock server: a small HTTP/1.1 server on std::net rather than tiny_http, because
//! tiny_http owns its sockets and offers no way to close a connection from the server
//! side, which the "connection dropped mid-body" fault needs. It hands every request to
//! a [`MockApi`] and applies rate limits and fault injection to the answer.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::fault::{bad_gateway, json_error, Fault};
use super::limiter::{Admission, Limiter};
use super::wire::{read_head, write_reply, Reply};
use super::{splitmix64, MockApi, MockOptions, MockRequest, MockResponse};

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

/// The address a client on this machine reaches `addr` at: a wildcard (`0.0.0.0`,
/// `::`) is not one to connect to, and credentials go only to loopback over plain
/// http, so the URLs the mock prints and links to name loopback instead.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

impl Shared {
    fn new(api: Arc<dyn MockApi>, addr: SocketAddr, opts: &MockOptions) -> Shared {
        Shared {
            api,
            origin: format!("http://{}", reachable(addr)),
            fault_rate: opts.fault_rate,
            rate_limit: opts.rate_limit.filter(|&(n, secs)| n > 0 && secs > 0),
            rng: Mutex::new(opts.seed ^ 0x6d6f_636b_6661_756c),
            limiter: Mutex::new(Limiter::new()),
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

    /// A target that is no URI never reaches an API, as at a real front end.
    fn bad_request(&self) -> Reply {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Reply::whole(json_error(400, r#"{"message":"Bad Request"}"#))
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
        let mut reply = match head.to_request(&shared.origin) {
            Some(request) => shared.answer(&request),
            None => shared.bad_request(),
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};

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
    fn a_target_that_is_no_uri_gets_400_and_the_connection_lives_on() {
        let server = serve(MockOptions::default());
        let mut conn = connect(&server);
        let raw = get(&mut conn, "/a<b>", "Bearer k");
        assert_eq!((raw.status, raw.body.as_slice()), (400, &br#"{"message":"Bad Request"}"#[..]));
        assert_eq!(get(&mut conn, "/next", "Bearer k").status, 200);
        assert_eq!(server.requests(), 2);
    }

    #[test]
    fn http_1_0_and_connection_close_end_the_connection() {
        let server = serve(MockOptions::default());
        for request in [
            "\r\nGET / HTTP/1.0\r\nAuthorization: Bearer k\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: close\r\nAuthorization: Bearer k\r\n\r\n",
        ] {
            let mut conn = connect(&server);
            conn.get_mut().write_all(request.as_bytes()).unwrap();
            let raw = read_raw(&mut conn);
            assert_eq!((raw.status, raw.header("connection")), (200, Some("close")));
            let mut rest = Vec::new();
            assert_eq!(conn.read_to_end(&mut rest).unwrap_or(0), 0);
        }
    }

    #[test]
    fn a_request_body_is_skipped_not_read_as_the_next_request() {
        let server = serve(MockOptions::default());
        let mut conn = connect(&server);
        let post = "POST /p HTTP/1.1\r\nAuthorization: Bearer k\r\nContent-Length: 14\r\n\r\nGET /x HTTP/1.1";
        conn.get_mut().write_all(post.as_bytes()).unwrap();
        assert!(String::from_utf8(read_raw(&mut conn).body).unwrap().contains(r#""path":"/p""#));
        assert_eq!(get(&mut conn, "/next", "Bearer k").status, 200);
        assert_eq!(server.requests(), 2);
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
    fn waiting_retry_after_lets_the_next_request_through() {
        let server = serve(MockOptions { rate_limit: Some((1, 1)), ..MockOptions::default() });
        let mut conn = connect(&server);
        // The first request may land at the very end of a window, so ask until refused.
        let limited = (0..3).map(|_| get(&mut conn, "/", "Bearer k")).find(|raw| raw.status == 429).unwrap();
        assert_eq!(limited.header("x-ratelimit-reset"), None);
        let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(retry));
        let next = get(&mut conn, "/", "Bearer k");
        assert_eq!((next.status, next.header("x-ratelimit-remaining")), (200, Some("0")));
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
}
