//! APIs that misbehave: a cursor that repeats, a page number that does not move,
//! garbage bodies. Each must end in one clear line, never an endless loop.
//!
//! The server here is the one the hostile tests share: one thread answering each
//! request with what a closure makes of its target, counting and logging requests,
//! and able to cut a body short on the wire.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::workdir::Workdir;

/// One answer of the hostile server.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// Send only this many bytes of the body (the `Content-Length` still announces
    /// all of it) and close: a connection dropped mid-body.
    pub cut: Option<usize>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Send the body a byte at a time with this pause between bytes: a server that
    /// trickles.
    pub pause: Option<std::time::Duration>,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply { status: 200, body: body.into(), cut: None, headers: Vec::new(), pause: None }
    }

    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status, body: body.into(), cut: None, headers: Vec::new(), pause: None }
    }

    pub fn not_found() -> Reply {
        Reply::status(404, r#"{"message":"Not found"}"#)
    }
}

/// A running hostile server: its origin, how many requests it answered, and their targets.
#[derive(Clone)]
pub struct Server {
    pub origin: String,
    count: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Seen>>>,
}

/// A request as the server saw it: its target and its `Authorization` header.
type Seen = (String, Option<String>);

impl Server {
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The targets (path and query, as sent) of every request so far.
    pub fn targets(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().map(|(t, _)| t.clone()).collect()
    }

    /// The `Authorization` header of every request so far.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.log.lock().unwrap().iter().map(|(_, a)| a.clone()).collect()
    }

    /// Requests whose target starts with `prefix`.
    pub fn hits(&self, prefix: &str) -> usize {
        self.targets().iter().filter(|t| t.starts_with(prefix)).count()
    }
}

/// Starts a one-thread HTTP server on loopback answering each request with
/// `answer(target)`; the closure may keep state (it runs on the server's thread).
pub fn serve_with(mut answer: impl FnMut(&str) -> Reply + Send + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let server = Server { origin, count: Arc::default(), log: Arc::default() };
    let (count, log) = (Arc::clone(&server.count), Arc::clone(&server.log));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut header = String::new();
            let mut authorization = None;
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("authorization") {
                        authorization = Some(value.trim().to_string());
                    }
                }
                header.clear();
            }
            log.lock().unwrap().push((target.clone(), authorization));
            count.fetch_add(1, Ordering::SeqCst);
            let reply = answer(&target);
            let extra: String = reply.headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
            let head = format!(
                "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                reply.status,
                reply.body.len()
            );
            let body = &reply.body[..reply.cut.unwrap_or(reply.body.len()).min(reply.body.len())];
            let _ = match reply.pause {
                None => stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body)),
                Some(pause) => stream.write_all(head.as_bytes()).and_then(|_| {
                    body.chunks(1).try_for_each(|b| {
                        std::thread::sleep(pause);
                        stream.write_all(b).and_then(|_| stream.flush())
                    })
                }),
            };
            let _ = stream.flush();
        }
    });
    server
}

/// A server answering every request with `answer(target)`; its origin and a request counter.
fn serve(answer: fn(&str) -> (u16, String)) -> (String, Arc<AtomicUsize>) {
    let server = serve_with(move |target| {
        let (status, body) = answer(target);
        Reply::status(status, body)
    });
    (server.origin.clone(), server.count)
}

/// The value of query parameter `key` in `target` (percent-decoded enough for the
/// values the connectors send: ids, cursors, numbers).
pub fn param(target: &str, key: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| decode(k) == key).map(|(_, v)| decode(v))
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The one non-empty line of `stderr`.
pub fn one_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    lines[0].to_string()
}

/// Writes `config` to `c.json` and runs `sync <connector>` into `out`, which must
/// fail with `status`; returns the one line it printed.
pub fn sync_fails(wd: &Workdir, connector: &str, config: &str, status: i32) -> String {
    wd.write("c.json", config);
    let mut cmd = wd.command(&["sync", connector, "--config", "c.json", "--out", "out"]);
    one_line(&wd.fails(&mut cmd, status))
}

/// The one error line of `stderr` (progress lines may come before it).
pub fn error_line(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(" error: ")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got:\n{stderr}");
    errors[0].to_string()
}

/// Writes `config` to `c.json` and runs `sync <connector>` into `out` (plus `args`),
/// which must succeed; returns its stdout.
pub fn sync_ok(wd: &Workdir, connector: &str, config: &str, args: &[&str]) -> String {
    wd.write("c.json", config);
    let mut cmd = wd.command(&["sync", connector, "--config", "c.json", "--out", "out"]);
    wd.stdout(cmd.args(args))
}

#[test]
fn a_repeating_cursor_is_an_error_not_a_loop() {
    let (origin, count) = serve(|path| {
        if path.contains("limit=0") {
            return (200, r#"{"total": 2}"#.into());
        }
        let page = r#"{"data":[{"id":"1"}],"links":{"next":"x"},"meta":{"next_cursor":"abc","prev_cursor":null}}"#;
        (200, page.into())
    });
    let wd = Workdir::new("hostile-cursor");
    let line = sync_fails(&wd, "mailerlite", &format!(r#"{{"api_key":"k","base_url":"{origin}/api"}}"#), 1);
    assert!(line.contains("cursor abc repeats"), "{line}");
    // The credential check, the first page and the page that names itself again:
    // no page is asked for on that cursor once more.
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[test]
fn a_page_number_that_does_not_move_is_an_error() {
    let (origin, _) = serve(|_| {
        let page = r#"{"page":1,"next_page":"http://x/api/v2/users/?page=2","total_pages":9,"users":[{"id":1}]}"#;
        (200, page.into())
    });
    let wd = Workdir::new("hostile-page");
    let config = format!(r#"{{"username":"u","api_key":"k","base_url":"{origin}/api/v2"}}"#);
    let line = sync_fails(&wd, "paligo", &config, 1);
    assert!(line.contains("asked for page 2, got page 1"), "{line}");
}

#[test]
fn garbage_bodies_are_retried_then_reported() {
    let (origin, count) = serve(|path| {
        if path.contains("limit=0") {
            return (200, r#"{"total": 2}"#.into());
        }
        (200, "<html><body>Welcome to our captive portal</body></html>".into())
    });
    let wd = Workdir::new("hostile-garbage");
    let config = format!(r#"{{"api_key":"k","base_url":"{origin}/api","retry_attempts":2}}"#);
    let line = sync_fails(&wd, "mailerlite", &config, 1);
    assert!(line.contains("unusable response") && line.contains("invalid JSON"), "{line}");
    // The credential check, then the first page and its two retries.
    assert_eq!(count.load(Ordering::SeqCst), 4);
    // What was committed before stays readable: the state says nothing was written.
    let state = std::fs::read_to_string(wd.path("out/state.json")).unwrap();
    assert!(state.contains("\"file_len\":0"), "{state}");
}

static SECOND_SYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[test]
fn a_record_skipped_by_paging_is_not_taken_for_deleted() {
    let (origin, _) = serve(|path| {
        let envelope = |resource: &str, items: &str| {
            format!(r#"{{"page":1,"next_page":"","total_pages":1,"{resource}":[{items}]}}"#)
        };
        let user =
            |id: u32| format!(r#"{{"id":{id},"username":"u{id}","name":"N{id}","email":"e{id}","type":"admin"}}"#);
        match path {
            "/api/v2/users/2/" => (200, user(2)),
            "/api/v2/users/3/" => (404, r#"{"message":"Not found"}"#.into()),
            p if p.starts_with("/api/v2/users/") => {
                // The second listing misses user 2 (as paging can when others are deleted
                // meanwhile) and user 3, which really is gone.
                let ids: &[u32] = if SECOND_SYNC.load(Ordering::SeqCst) { &[1] } else { &[1, 2, 3] };
                let items: Vec<String> = ids.iter().map(|&i| user(i)).collect();
                (200, envelope("users", &items.join(",")))
            }
            p if p.starts_with("/api/v2/taxonomies/") => (200, envelope("taxonomies", "")),
            p if p.starts_with("/api/v2/assignments/") => (200, envelope("assignments", "")),
            _ => (404, r#"{"message":"Not found"}"#.into()),
        }
    });
    let wd = Workdir::new("hostile-skipped");
    wd.write("c.json", &format!(r#"{{"username":"u","api_key":"k","base_url":"{origin}/api/v2"}}"#));
    let sync = |wd: &Workdir| wd.stdout(&mut wd.command(&["sync", "paligo", "--config", "c.json", "--out", "out"]));
    sync(&wd);
    SECOND_SYNC.store(true, Ordering::SeqCst);
    let out = sync(&wd);
    let t = crate::expected::read_table(&wd.path("out/users.csv"));
    let tombstones: Vec<&str> = t.rows.iter().filter(|r| r.last().unwrap() == "true").map(|r| r[0].as_str()).collect();
    assert_eq!(tombstones, ["3"], "{out}");
}
