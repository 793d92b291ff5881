//! Rate limits a server announces or enforces: no wait is longer than the cap a
//! wait may have (300 s), whoever asks for it, and a demand beyond it ends the run
//! at once with one line that names it; a server that announces its reset is
//! waited for instead of being run into.

use std::fs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::directory::{exit_within, lines, spawn};
use crate::hostile::{param, serve_with, Reply, Server};
use crate::workdir::Workdir;

/// Subscribers an account of [`account`] lists, two a page.
const SUBSCRIBERS: usize = 12;

/// The page of subscribers after `cursor` (`c<n>`: n pages read).
fn subscribers(cursor: Option<&str>) -> Reply {
    let page: usize = cursor.and_then(|c| c.strip_prefix('c')?.parse().ok()).unwrap_or(0);
    let records = format!(r#"{{"id":"{}"}},{{"id":"{}"}}"#, page * 2 + 1, page * 2 + 2);
    let next = (page * 2 + 2 < SUBSCRIBERS).then(|| format!("c{}", page + 1));
    let (cursor, link) = match &next {
        Some(c) => (format!("\"{c}\""), format!("\"http://x/api/subscribers?cursor={c}\"")),
        None => ("null".into(), "null".into()),
    };
    Reply::ok(format!(
        r#"{{"data":[{records}],"links":{{"next":{link}}},"meta":{{"per_page":2,"next_cursor":{cursor},"prev_cursor":null}}}}"#
    ))
}

/// A MailerLite account of [`SUBSCRIBERS`] subscribers and nothing else, whose every
/// answer goes through `limit(n, reply)` (n: the request's number, from 1), which may
/// add headers or refuse it.
fn account(mut limit: impl FnMut(usize, Reply) -> Reply + Send + 'static) -> Server {
    let mut n = 0;
    serve_with(move |target| {
        n += 1;
        let reply = if target.starts_with("/api/subscribers") && param(target, "limit").as_deref() == Some("0") {
            Reply::ok(format!(r#"{{"total":{SUBSCRIBERS}}}"#))
        } else if target.starts_with("/api/subscribers") {
            subscribers(param(target, "cursor").as_deref())
        } else {
            Reply::ok(r#"{"data":[],"links":{"next":null},"meta":{"current_page":1,"last_page":1,"total":0}}"#)
        };
        limit(n, reply)
    })
}

fn with_headers(mut reply: Reply, headers: &[(&str, String)]) -> Reply {
    reply.headers.extend(headers.iter().map(|(k, v)| (k.to_string(), v.clone())));
    reply
}

fn too_many(headers: &[(&str, String)]) -> Reply {
    with_headers(Reply::status(429, r#"{"message":"Too Many Attempts."}"#), headers)
}

/// Runs a sync against `server` that must fail with exit status 1 within 30 s;
/// returns its stderr's lines.
fn sync_fails_soon(wd: &Workdir, server: &Server) -> Vec<String> {
    wd.write("c.json", &format!(r#"{{"api_key":"k","base_url":"{}/api","retry_attempts":3}}"#, server.origin));
    let mut child = spawn(wd, &["sync", "mailerlite", "--config", "c.json", "--out", "out"], "sync.err");
    let status = exit_within(&mut child, Duration::from_secs(30));
    let err = fs::read_to_string(wd.path("sync.err")).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    lines(&err)
}

/// `last_sync.json` of the run just finished.
fn last_sync(wd: &Workdir) -> Value {
    serde_json::from_slice(&fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap()
}

/// The server counts 3 requests down to 0, then refuses every request with
/// `Retry-After: value`.
fn refusing_after_three(value: &'static str) -> Server {
    account(move |n, reply| {
        let limit = ("x-ratelimit-limit", "3".to_string());
        if n > 3 {
            return too_many(&[limit, ("x-ratelimit-remaining", "0".into()), ("Retry-After", value.into())]);
        }
        with_headers(reply, &[limit, ("x-ratelimit-remaining", (3 - n).to_string())])
    })
}

#[test]
fn a_retry_after_beyond_the_cap_is_one_line_not_a_hang_or_a_panic() {
    for value in ["18446744073709551615", "86400", "Fri, 31 Dec 9999 23:59:59 GMT", "99999999999999999999999"] {
        let server = refusing_after_three(value);
        let wd = Workdir::new("limits-retry-after");
        let started = Instant::now();
        let lines = sync_fails_soon(&wd, &server);
        assert!(started.elapsed() < Duration::from_secs(20), "{value}: took {:?}", started.elapsed());
        let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{value}: {lines:?}");
        let line = errors[0];
        assert!(line.contains(&format!("(Retry-After: {value})")), "{value}: {line}");
        assert!(line.contains("longer than the 300 s api2csv waits at most"), "{value}: {line}");
        // Neither learned as the pacing window nor waited for, nor retried.
        assert!(!lines.iter().any(|l| l.contains("pacing to that")), "{value}: {lines:?}");
        assert_eq!(server.requests(), 4, "{value}: {:?}", server.targets());
        assert_eq!(last_sync(&wd)["rate_limit_wait_seconds"], 0.0, "{value}");
    }
}

#[test]
fn a_retry_after_within_the_cap_is_waited_for() {
    // The same server, asking for 1 s once: the sync waits and finishes.
    let refused = Arc::new(Mutex::new(0));
    let count = Arc::clone(&refused);
    let server = account(move |n, reply| {
        let limit = ("x-ratelimit-limit", "3".to_string());
        if n == 4 {
            *count.lock().unwrap() += 1;
            return too_many(&[limit, ("x-ratelimit-remaining", "0".into()), ("Retry-After", "1".into())]);
        }
        with_headers(reply, &[limit, ("x-ratelimit-remaining", "2".into())])
    });
    let wd = Workdir::new("limits-short-wait");
    wd.write("c.json", &format!(r#"{{"api_key":"k","base_url":"{}/api"}}"#, server.origin));
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", "c.json", "--out", "out"]));
    assert_eq!(*refused.lock().unwrap(), 1);
    let v = last_sync(&wd);
    assert_eq!(v["rate_limited"], 1, "{v}");
    assert!(v["rate_limit_wait_seconds"].as_f64().unwrap() >= 0.9, "{v}");
}

#[test]
fn a_used_up_limit_whose_reset_is_beyond_the_cap_stops_before_the_next_request() {
    // The third answer says nothing remains until a reset a day away: the next
    // request would be refused, so it is never sent.
    let server = account(|n, reply| {
        let remaining = 3usize.saturating_sub(n).to_string();
        let reset = if n >= 3 { "86400" } else { "30" };
        with_headers(
            reply,
            &[
                ("x-ratelimit-limit", "3".into()),
                ("x-ratelimit-remaining", remaining),
                ("x-ratelimit-reset", reset.into()),
            ],
        )
    });
    let wd = Workdir::new("limits-reset-day");
    let lines = sync_fails_soon(&wd, &server);
    let line = lines.last().unwrap();
    assert!(line.contains("used up (remaining 0) until the reset it announced in 86400 s"), "{line}");
    assert!(line.contains("longer than the 300 s api2csv waits at most"), "{line}");
    assert_eq!(server.requests(), 3, "{:?}", server.targets());
}

/// What a fixed-window server says besides its limit and what remains.
#[derive(Clone, Copy)]
enum Announces {
    /// When the window resets (`x-ratelimit-reset`).
    Reset,
    /// How long its windows are (`ratelimit-policy: 4;w=1`).
    Policy,
}

/// A server that admits `limit` requests in each fixed window of `window`, windows
/// counted from `origin` (which may lie before the sync's first request), and
/// answers with `x-ratelimit-*` headers and what `announces` says. Returns it and
/// the number of requests it refused.
fn fixed_window(limit: usize, window: Duration, origin: Instant, announces: Announces) -> (Server, Arc<Mutex<usize>>) {
    let refused = Arc::new(Mutex::new(0));
    let count = Arc::clone(&refused);
    let mut current = (u128::MAX, 0usize);
    let server = account(move |_, reply| {
        let elapsed = origin.elapsed();
        let k = elapsed.as_nanos() / window.as_nanos();
        if current.0 != k {
            current = (k, 0);
        }
        let end = window.mul_f64((k + 1) as f64);
        let reset = end.saturating_sub(elapsed).as_secs_f64().ceil().max(1.0).to_string();
        let mut headers = vec![("x-ratelimit-limit", limit.to_string())];
        if current.1 >= limit {
            *count.lock().unwrap() += 1;
            headers.extend([("x-ratelimit-remaining", "0".to_string()), ("Retry-After", reset)]);
            return too_many(&headers);
        }
        current.1 += 1;
        headers.push(("x-ratelimit-remaining", (limit - current.1).to_string()));
        match announces {
            Announces::Reset => headers.push(("x-ratelimit-reset", reset)),
            Announces::Policy => headers.push(("ratelimit-policy", format!("{limit};w={}", window.as_secs()))),
        }
        with_headers(reply, &headers)
    });
    (server, refused)
}

#[test]
fn a_fixed_window_that_announces_its_reset_or_length_is_never_run_into() {
    // Windows of 1 s, the first of them begun 0.6 s before the sync's first request;
    // 4 requests a window, 10 requests in all: the sync spans three windows and
    // waits for each reset (or paces to the announced window) instead of being refused.
    for announces in [Announces::Reset, Announces::Policy] {
        let origin = Instant::now().checked_sub(Duration::from_millis(600)).unwrap();
        let (server, refused) = fixed_window(4, Duration::from_secs(1), origin, announces);
        let wd = Workdir::new("limits-fixed-window");
        wd.write("c.json", &format!(r#"{{"api_key":"k","base_url":"{}/api"}}"#, server.origin));
        wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", "c.json", "--out", "out"]));
        assert!(server.requests() > 8, "{:?}", server.targets());
        assert_eq!(*refused.lock().unwrap(), 0, "{:?}", server.targets());
        assert_eq!(last_sync(&wd)["rate_limited"], 0);
        assert_eq!(crate::expected::row_count(&wd.path("out"), "subscriber"), SUBSCRIBERS);
    }
}
