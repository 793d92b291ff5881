use super::*;
use crate::net::retry::{decide, BACKOFF_CAP, MAX_RETRY_AFTER};

const BASE: Duration = BACKOFF_BASE;

#[test]
fn permanent_errors_are_not_retried() {
    for s in [400, 401, 403, 404, 410, 422] {
        assert_eq!(decide(0, 5, &Outcome::Status(s, None), 0.5, BASE), None, "{s}");
    }
}

#[test]
fn transient_errors_back_off_with_full_jitter_until_retries_run_out() {
    for o in [Outcome::Status(503, None), Outcome::Status(408, None), Outcome::Transport, Outcome::BadBody] {
        assert_eq!(decide(0, 5, &o, 1.0, BASE), Some(Duration::from_millis(500)));
        assert_eq!(decide(3, 5, &o, 0.5, BASE), Some(Duration::from_millis(2000)));
        assert_eq!(decide(4, 5, &o, 0.0, BASE), Some(Duration::ZERO));
        assert_eq!(decide(5, 5, &o, 0.5, BASE), None);
    }
    assert_eq!(decide(20, 30, &Outcome::Transport, 1.0, BASE), Some(BACKOFF_CAP));
    assert_eq!(decide(2, 5, &Outcome::Transport, 1.0, Duration::from_millis(1)), Some(Duration::from_millis(4)));
}

#[test]
fn rate_limits_wait_what_retry_after_says_capped() {
    let o = Outcome::Status(429, Some(Duration::from_secs(7)));
    assert_eq!(decide(0, 5, &o, 0.0, BASE), Some(Duration::from_secs(7)));
    let o = Outcome::Status(503, Some(Duration::from_secs(3)));
    assert_eq!(decide(0, 5, &o, 0.0, BASE), Some(Duration::from_secs(3)));
    let o = Outcome::Status(429, Some(Duration::from_secs(86400)));
    assert_eq!(decide(0, 5, &o, 0.0, BASE), Some(MAX_RETRY_AFTER));
    assert_eq!(decide(5, 5, &o, 0.0, BASE), None);
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
fn a_retry_after_beyond_the_cap_is_refused_not_cut_short() {
    let now = time::macros::datetime!(2026-12-05 19:00:00.25 UTC);
    let far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
    assert_eq!((far.as_secs(), far.subsec_millis()), (251_605_803_598, 750));
    assert_eq!(parse_retry_after("18446744073709551615", now), Some(Duration::from_secs(u64::MAX)));
    assert_eq!(parse_retry_after("184467440737095516150", now), Some(Duration::from_secs(u64::MAX)));
    assert_eq!(parse_retry_after("-1", now), None);
    for after in [far, Duration::from_secs(86400), MAX_WAIT + Duration::from_millis(1)] {
        for status in [429, 503] {
            assert_eq!(next_step(0, 5, &Outcome::Status(status, Some(after)), 0.5, BASE), Next::TooLong(after));
        }
        // Other statuses do not honour Retry-After: they back off.
        assert_eq!(next_step(0, 5, &Outcome::Status(500, Some(after)), 1.0, BASE), Next::Retry(BASE));
    }
    let o = Outcome::Status(429, Some(MAX_WAIT));
    assert_eq!(next_step(0, 5, &o, 0.5, BASE), Next::Retry(MAX_WAIT));
    assert_eq!(next_step(5, 5, &o, 0.5, BASE), Next::GiveUp);
}

#[test]
fn credentials_go_over_https_or_to_loopback_only() {
    let ok = |u: &str| check_base_url(u).map(|b| (b.host, b.loopback));
    assert_eq!(ok("https://connect.mailerlite.com/api/"), Ok(("connect.mailerlite.com".into(), false)));
    assert_eq!(ok("http://127.0.0.1:8080/api"), Ok(("127.0.0.1".into(), true)));
    assert_eq!(ok("http://localhost/api"), Ok(("localhost".into(), true)));
    assert_eq!(ok("http://[::1]:9/api"), Ok(("::1".into(), true)));
    for bad in [
        "http://example.com/api",
        "ftp://example.com",
        "example.com",
        "http://localhost:1@api.example.net/api",
        "https://user:pw@api.example.net/api",
        "http://127.0.0.1.example.net/api",
        "https://x.example/api?key=1",
        "https://x.example/api#frag",
        "https:///api",
        "",
    ] {
        assert!(check_base_url(bad).is_err(), "{bad} was accepted");
    }
    let err = check_base_url("http://localhost:1@api.example.net/api").unwrap_err();
    assert!(err.contains("user info"), "{err}");
}

#[test]
fn the_authority_always_names_its_port() {
    let authority = |u: &str| check_base_url(u).unwrap().authority;
    assert_eq!(authority("https://Acme.PaligoApp.com/api/v2"), "acme.paligoapp.com:443");
    assert_eq!(authority("https://acme.paligoapp.com:443/api/v2"), "acme.paligoapp.com:443");
    assert_eq!(authority("https://acme.paligoapp.com:8443/api/v2"), "acme.paligoapp.com:8443");
    assert_eq!(authority("http://127.0.0.1:8080/api"), "127.0.0.1:8080");
    assert_eq!(authority("http://localhost/api"), "localhost:80");
    assert_eq!(authority("http://[::1]:9/api"), "[::1]:9");
}

#[test]
fn query_values_are_percent_encoded() {
    let c = Client::new(ClientConfig {
        base_url: "https://x.example/api".into(),
        authorization: Secret::new("k"),
        auth_place: AuthPlace::Header("Authorization"),
        timeout: Duration::from_secs(1),
        retries: 0,
        budget: None,
        interrupt: None,
    });
    assert_eq!(
        c.url("/subscribers", &[("filter[status]", "active"), ("cursor", "a+b/c=")]),
        "https://x.example/api/subscribers?filter%5Bstatus%5D=active&cursor=a%2Bb%2Fc%3D"
    );
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
    assert_eq!(api_message(b"{\"message\":\"a\\nb\"}", 500), "a b");
    let invalid = br#"{"message": "The given data was invalid.", "errors": {"limit": ["The limit must not be greater than 100."]}}"#;
    assert_eq!(
        api_message(invalid, 422),
        "The given data was invalid. (limit: The limit must not be greater than 100.)"
    );
}

/// A reader that hands out `data` a few bytes at a time, interrupted now and then,
/// then fails if `fail`.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    calls: usize,
    fail: bool,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(3) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        if self.at == self.data.len() && self.fail {
            return Err(std::io::Error::other("cut"));
        }
        let n = buf.len().min(7 + self.calls % 5000).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn a_body_is_read_whole_into_a_reused_buffer() {
    let mut buf = Vec::new();
    // Longer bodies first, so that later ones leave stale bytes after their end.
    for (len, fail) in [(300_000, false), (70_000, false), (5, false), (0, false), (1000, true)] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut reader = Trickle { data: data.clone(), at: 0, calls: 0, fail };
        let (n, ended) = read_body(&mut reader, &mut buf);
        assert_eq!(&buf[..n], &data[..], "{len}");
        assert_eq!(ended.is_err(), fail, "{len}");
        assert!(buf.len() < 2 * 300_000 + (64 << 10), "{}", buf.len());
    }
}
