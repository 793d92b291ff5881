//! APIs that misbehave: a cursor that repeats, a page number that does not move,
//! garbage bodies. Each must end in one clear line, never an endless loop.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::workdir::Workdir;

/// A one-thread HTTP server answering every request with `answer(path)`; returns its
/// origin and a request counter.
fn serve(answer: fn(&str) -> (u16, String)) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            seen.fetch_add(1, Ordering::SeqCst);
            let (status, body) = answer(&path);
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
        }
    });
    (origin, count)
}

fn one_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    lines[0].to_string()
}

fn sync_fails(wd: &Workdir, connector: &str, config: &str, status: i32) -> String {
    wd.write("c.json", config);
    let mut cmd = wd.command(&["sync", connector, "--config", "c.json", "--out", "out"]);
    one_line(&wd.fails(&mut cmd, status))
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
    assert!(count.load(Ordering::SeqCst) < 10);
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
