//! A hostile MailerLite: the binary against a hand-written server on loopback whose
//! subscriber pages are cut, nested, invalid, repeated or endless. Each case ends
//! in exactly the records sent, or in one clear line with the documented status.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::expected::{column_paths, read_table, row_count, Table};
use crate::hostile::{one_line, param, serve_with, sync_fails, sync_ok, Reply, Server};
use crate::workdir::Workdir;

/// A cursor page of subscribers; `next` is the next cursor (null when `None`).
fn cursor_page(records: &str, next: Option<&str>) -> String {
    let (cursor, link) = match next {
        Some(c) => (format!("\"{c}\""), format!("\"http://x/api/subscribers?cursor={c}\"")),
        None => ("null".into(), "null".into()),
    };
    format!(
        r#"{{"data":[{records}],"links":{{"first":null,"last":null,"prev":null,"next":{link}}},"meta":{{"path":"http://x/api/subscribers","per_page":100,"next_cursor":{cursor},"prev_cursor":null}}}}"#
    )
}

/// The only page of an empty page-number listing (groups, fields, campaigns).
fn empty_listing() -> String {
    r#"{"data":[],"links":{"first":"http://x?page=1","last":"http://x?page=1","prev":null,"next":null},"meta":{"current_page":1,"from":null,"last_page":1,"links":[],"path":"http://x","per_page":100,"to":null,"total":0}}"#.into()
}

/// A MailerLite account of `total` subscribers whose pages `subscribers(cursor)`
/// answers, with no groups, fields or campaigns.
fn account(total: usize, mut subscribers: impl FnMut(Option<String>) -> Reply + Send + 'static) -> Server {
    serve_with(move |target| {
        let listing = ["/api/groups", "/api/fields", "/api/campaigns"].iter().any(|p| target.starts_with(p));
        if target.starts_with("/api/subscribers") && param(target, "limit").as_deref() == Some("0") {
            Reply::ok(format!(r#"{{"total":{total}}}"#))
        } else if target.starts_with("/api/subscribers") {
            subscribers(param(target, "cursor"))
        } else if listing {
            Reply::ok(empty_listing())
        } else {
            Reply::not_found()
        }
    })
}

fn config(server: &Server, extra: &str) -> String {
    format!(r#"{{"api_key":"k","base_url":"{}/api","retry_attempts":3{extra}}}"#, server.origin)
}

fn subscribers(wd: &Workdir) -> Table {
    read_table(&wd.path("out/subscriber.csv"))
}

/// The values of column `name` of `t`.
pub fn column(t: &Table, name: &str) -> Vec<String> {
    let i = t.header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {:?}", t.header));
    t.rows.iter().map(|r| r[i].clone()).collect()
}

/// Subscriber requests after the credential check.
fn pages_asked(server: &Server) -> usize {
    server.targets().iter().filter(|t| t.starts_with("/api/subscribers?") && !t.contains("limit=0")).count()
}

/// `last_sync.json` of the run just finished, per table.
pub fn last_sync(wd: &Workdir, table: &str) -> Value {
    let v: Value = serde_json::from_slice(&std::fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap();
    v["tables"].get(table).unwrap_or_else(|| panic!("no {table} in {v}")).clone()
}

#[test]
fn an_empty_page_with_a_next_cursor_is_not_the_end() {
    let server = account(3, |cursor| {
        Reply::ok(match cursor.as_deref() {
            None => cursor_page(r#"{"id":"1","email":"a@x.org"},{"id":"2","email":"b@x.org"}"#, Some("c1")),
            Some("c1") => cursor_page("", Some("c2")),
            Some("c2") => cursor_page("", Some("c3")),
            Some("c3") => cursor_page(r#"{"id":"3","email":"c@x.org"}"#, None),
            Some(other) => panic!("cursor {other}"),
        })
    });
    let wd = Workdir::new("hml-empty-page");
    sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
    assert_eq!(column(&subscribers(&wd), "id"), ["1", "2", "3"]);
    // The next sync sees the same account: nothing is new, nothing is gone.
    sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
    let t = subscribers(&wd);
    assert_eq!(column(&t, "id"), ["1", "2", "3"], "a second sync appended rows");
    assert!(column(&t, "_deleted").iter().all(|d| d == "false"));
    assert_eq!(last_sync(&wd, "subscriber")["unchanged"], 3);
}

const PAGE: &str =
    r#"{"id":"1","email":"a\"b@example.org","name":"Zo\u00eb \ud83d\ude00","n":-12.50e3,"tags":["x\\y"],"ok":true}"#;

/// A body cut short anywhere is retried, whether the server closed the connection
/// mid-body or sent a complete response holding a truncated document.
#[test]
fn a_body_cut_anywhere_is_retried() {
    let body = cursor_page(PAGE, None);
    let backslash = body.find('\\').unwrap() + 1;
    let cuts: Vec<usize> =
        vec![backslash, 1, body.find("\\u00").unwrap() + 3, body.find("-12").unwrap() + 2, body.len() - 1, 0];
    let n = cuts.len();
    let full = body.clone();
    let attempt = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempt);
    let server = account(1, move |_| {
        let i = seen.fetch_add(1, Ordering::SeqCst) as usize;
        match cuts.get(i / 2) {
            // Twice per cut point: on the wire, then as a whole response.
            Some(&cut) if i.is_multiple_of(2) => Reply { cut: Some(cut), ..Reply::ok(full.clone()) },
            Some(&cut) => Reply::ok(&full.as_bytes()[..cut]),
            None => Reply::ok(full.clone()),
        }
    });
    let wd = Workdir::new("hml-cut");
    sync_ok(&wd, "mailerlite", &config(&server, r#","retry_attempts":20"#), &[]);
    assert_eq!(attempt.load(Ordering::SeqCst) as usize, 2 * n + 1);
    let t = subscribers(&wd);
    assert_eq!(column(&t, "email"), ["a\"b@example.org"]);
    assert_eq!(column(&t, "name"), ["Zoë 😀"]);
    // A number is its token as sent (issue 18; serde_json's own text would be `e+3`).
    assert_eq!(column(&t, "n"), ["-12.50e3"]);
    assert_eq!(column(&t, "tags"), [r#"["x\\y"]"#]);
}

#[test]
fn a_record_nested_60000_levels_deep_is_one_line_not_a_crash() {
    let depth = 60_000;
    let objects = format!(r#"{{"id":"1","x":{}1{}}}"#, r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let arrays = format!(r#"{{"id":"1","x":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
    for (name, record) in [("objects", objects), ("arrays", arrays)] {
        let body = cursor_page(&record, None);
        let server = account(1, move |_| Reply::ok(body.clone()));
        let wd = Workdir::new(&format!("hml-deep-{name}"));
        let line = sync_fails(&wd, "mailerlite", &config(&server, r#","retry_attempts":1"#), 1);
        assert!(line.contains("recursion limit"), "{name}: {line}");
        assert_eq!(pages_asked(&server), 2, "{name}: one page and its retry");
        assert!(!wd.path("out/subscriber.csv").exists(), "{name}: rows written");
    }
}

/// Bodies serde_json refuses, each as the second page (the first is committed).
const INVALID: &[(&str, &str)] = &[
    ("short unicode escape", r#"{"id":"2","bad":"\u12"}"#),
    ("hex escape", r#"{"id":"2","bad":"\x41"}"#),
    ("leading zeros", r#"{"id":"2","bad":007}"#),
    ("negative leading zeros", r#"{"id":"2","bad":-00.5}"#),
    ("lone low surrogate in a record", r#"{"id":"2","bad":"\udc00"}"#),
    ("bare surrogate pair half", r#"{"id":"2","bad":"\ud83d x"}"#),
    ("raw control character", "{\"id\":\"2\",\"bad\":\"a\tb\"}"),
    ("trailing comma", r#"{"id":"2","bad":1},"#),
    ("NaN", r#"{"id":"2","bad":NaN}"#),
    ("plus sign", r#"{"id":"2","bad":+1}"#),
    ("bare fraction", r#"{"id":"2","bad":.5}"#),
    ("single quotes", r#"{"id":"2","bad":'x'}"#),
];

fn invalid_second_page(name: &str, body: Vec<u8>) {
    let first = cursor_page(r#"{"id":"1","good":"ok"}"#, Some("c1"));
    let server = account(2, move |cursor| match cursor {
        None => Reply::ok(first.clone()),
        Some(_) => Reply::ok(body.clone()),
    });
    let wd = Workdir::new("hml-invalid");
    let line = sync_fails(&wd, "mailerlite", &config(&server, r#","retry_attempts":2"#), 1);
    assert!(line.contains("invalid JSON"), "{name}: {line}");
    assert_eq!(pages_asked(&server), 4, "{name}: page 1, then page 2 and its two retries");
    let t = subscribers(&wd);
    assert_eq!(t.header, ["id", "good", "_synced_at", "_deleted"], "{name}");
    assert_eq!(column(&t, "id"), ["1"], "{name}");
}

#[test]
fn invalid_json_never_reaches_a_cell() {
    for (name, record) in INVALID {
        invalid_second_page(name, cursor_page(record, None).into_bytes());
    }
    // A lone surrogate where no record is: in the links the reader skips.
    let links = cursor_page(r#"{"id":"2","bad":"x"}"#, None).replace(r#""first":null"#, r#""first":"\ud800""#);
    invalid_second_page("lone surrogate in links", links.into_bytes());
    // Bytes that are not UTF-8, inside a string.
    let mut latin1 = cursor_page(r#"{"id":"2","bad":"caf_"}"#, None).into_bytes();
    let at = latin1.iter().position(|&b| b == b'_').unwrap();
    latin1[at] = 0xe9;
    invalid_second_page("latin-1 byte", latin1);
    invalid_second_page("trailing garbage", format!("{} x", cursor_page(r#"{"id":"2","bad":1}"#, None)).into_bytes());
}

#[test]
fn a_repeated_records_key_keeps_only_the_last_array() {
    let first = cursor_page(r#"{"id":"1","x":"first"}"#, None);
    let body = format!(r#"{},"data":[{{"id":"2","y":"second"}}]}}"#, &first[..first.len() - 1]);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["data"][0]["id"], "2", "the oracle");
    let server = account(1, move |_| Reply::ok(body.clone()));
    let wd = Workdir::new("hml-two-data");
    sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
    let t = subscribers(&wd);
    assert_eq!(t.header, ["id", "y", "_synced_at", "_deleted"]);
    assert_eq!(column(&t, "id"), ["2"]);
}

/// First answers that are refused (cut, or whole with an envelope that cannot be
/// followed), each carrying a key the real page lacks and a nested key that would
/// flatten like the real page's `a_b`.
#[test]
fn a_refused_body_leaves_no_trace() {
    let phantom = r#"{"id":"2","phantom":"boo","a":{"b":"nested"}},{"id":"3","zzz":1}"#;
    let whole = cursor_page(phantom, None);
    let refusals: Vec<(&str, Reply)> = vec![
        ("cut document", Reply::ok(&whole.as_bytes()[..whole.len() - 30])),
        ("cut on the wire", Reply { cut: Some(whole.len() - 30), ..Reply::ok(whole.clone()) }),
        ("cursor not a string", Reply::ok(whole.replace(r#""next_cursor":null"#, r#""next_cursor":5"#))),
        ("no meta", Reply::ok(whole.replace(r#""meta":{"#, r#""meta_":{"#))),
        ("server error", Reply::status(500, whole.clone())),
    ];
    for (name, refusal) in refusals {
        let first = cursor_page(r#"{"id":"1","a_b":"x"}"#, Some("c1"));
        let real = cursor_page(r#"{"id":"2","a_b":"y"}"#, None);
        let mut refusal = Some(refusal);
        let server = account(2, move |cursor| match cursor {
            None => Reply::ok(first.clone()),
            Some(_) => refusal.take().unwrap_or_else(|| Reply::ok(real.clone())),
        });
        let wd = Workdir::new("hml-no-trace");
        sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
        let t = subscribers(&wd);
        assert_eq!(t.header, ["id", "a_b", "_synced_at", "_deleted"], "{name}");
        assert_eq!(column(&t, "id"), ["1", "2"], "{name}");
        assert_eq!(column(&t, "a_b"), ["x", "y"], "{name}");
        assert_eq!(column_paths(&wd.path("out"), "subscriber")["a_b"], ["a_b"], "{name}");
    }
}

#[test]
fn keys_that_flatten_alike_stay_apart() {
    let records = concat!(
        r#"{"id":"3","":{"id":"999"},"a\u0000b":"nul","a_b":"underscore","a":{"b":"nested"},"#,
        r#""r":"first","o":{"p":1},"r":"last","o":{"q":2}},"#,
        r#"{"id":"4","r":"x","id":"5"}"#
    );
    let body = cursor_page(records, None);
    let server = account(2, move |_| Reply::ok(body.clone()));
    let wd = Workdir::new("hml-alike");
    sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
    let t = subscribers(&wd);
    let names = ["id", "_id", "a_b", "a_b__2", "a_b__3", "r", "o_q", "_synced_at", "_deleted"];
    assert_eq!(t.header, names);
    assert_eq!(t.rows[0][..7], ["3", "999", "nul", "underscore", "nested", "last", "2"]);
    assert_eq!(column(&t, "id"), ["3", "5"], "a repeated key keeps its last value, the primary key too");
    let paths = column_paths(&wd.path("out"), "subscriber");
    assert_eq!(paths["_id"], ["", "id"]);
    assert_eq!(paths["a_b"], ["a\0b"]);
    assert_eq!(paths["a_b__2"], ["a_b"]);
    assert_eq!(paths["a_b__3"], ["a", "b"]);
    // The same account again: nothing changed, nothing appended.
    sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
    assert_eq!(row_count(&wd.path("out"), "subscriber"), 2);
    let s = last_sync(&wd, "subscriber");
    assert_eq!((s["new"].as_u64(), s["changed"].as_u64(), s["unchanged"].as_u64()), (Some(0), Some(0), Some(2)));
}

#[test]
fn a_first_key_starting_with_a_bom_leaves_the_directory_usable() {
    // Escaped, and raw in the body.
    for (name, key) in [("escaped", r"\ufeffid"), ("raw", "\u{feff}id")] {
        for flags in [&[][..], &["--bom"][..]] {
            let body = cursor_page(&format!(r#"{{"{key}":"b","id":"1"}}"#), None);
            let server = account(1, move |_| Reply::ok(body.clone()));
            let wd = Workdir::new("hml-bom");
            sync_ok(&wd, "mailerlite", &config(&server, ""), flags);
            sync_ok(&wd, "mailerlite", &config(&server, ""), flags);
            assert_eq!(row_count(&wd.path("out"), "subscriber"), 1, "{name} {flags:?}: the second sync appended");
            // A CSV reader strips a BOM from a file's first bytes: the name holds none.
            assert_eq!(subscribers(&wd).header[..2], ["_id", "id"], "{name} {flags:?}");
            wd.stdout(&mut wd.command(&["compact", "out"]));
            sync_ok(&wd, "mailerlite", &config(&server, ""), flags);
        }
    }
}

#[test]
fn a_server_that_ignores_the_cursor_is_stopped() {
    let n = Arc::new(AtomicU32::new(0));
    let server = account(2, move |_| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        Reply::ok(cursor_page(r#"{"id":"1"},{"id":"2"}"#, Some(&format!("fresh{i}"))))
    });
    let wd = Workdir::new("hml-endless");
    let line = sync_fails(&wd, "mailerlite", &config(&server, ""), 1);
    assert!(line.contains("/api/subscribers"), "{line}");
    let asked = pages_asked(&server);
    assert!(asked <= 12, "{asked} pages asked before giving up: {line}");
    assert_eq!(column(&subscribers(&wd), "id"), ["1", "2"]);
}

#[test]
fn user_info_in_base_url_is_refused_before_any_request() {
    let server = account(1, |_| Reply::ok(cursor_page("", None)));
    let host = server.origin.trim_start_matches("http://");
    for url in ["http://localhost:1@api.example.net/api".to_string(), format!("http://{host}@{host}/api")] {
        let wd = Workdir::new("hml-userinfo");
        let config = format!(r#"{{"api_key":"k","base_url":"{url}"}}"#);
        let line = sync_fails(&wd, "mailerlite", &config, 2);
        assert!(line.contains("user info"), "{line}");
        assert!(!line.contains("localhost:1@") && !line.contains(&format!("{host}@")), "user info echoed: {line}");
        assert!(!wd.path("out").exists());
        let line = one_line(&wd.fails(&mut wd.command(&["check", "mailerlite", "--config", "c.json"]), 2));
        assert!(line.contains("user info"), "{line}");
    }
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_key_that_stops_working_after_a_commit_exits_1() {
    for status in [401, 403] {
        let first = cursor_page(r#"{"id":"1"}"#, Some("c1"));
        let server = account(2, move |cursor| match cursor {
            None => Reply::ok(first.clone()),
            Some(_) => Reply::status(status, r#"{"message":"Unauthenticated."}"#),
        });
        let wd = Workdir::new("hml-revoked");
        let line = sync_fails(&wd, "mailerlite", &config(&server, ""), 1);
        assert!(line.contains("stopped working") && line.contains(&status.to_string()), "{line}");
        assert_eq!(pages_asked(&server), 2, "a refused key is not retried");
        assert_eq!(column(&subscribers(&wd), "id"), ["1"]);
    }
}

#[test]
fn a_config_error_never_echoes_the_key() {
    let wd = Workdir::new("hml-secret");
    let configs = [
        r#"{"api_key": {"value": "SEKRIT"}}"#,
        r#"{"api_key": ["SEKRIT"]}"#,
        r#"{"api_key": {"SEKRIT": true}}"#,
        r#"{"api_key": "SEKRIT", "base_url": "https://SEKRIT@api.example.com/api"}"#,
        r#"{"api_key": "SEKRIT", "max_records_per_page": 0}"#,
        r#"{"api_key": "SEKRIT" "retry_attempts": 1}"#,
        r#"{"api_key": "SEKRIT"#,
    ];
    for text in configs {
        for connector in ["mailerlite", "paligo"] {
            let text = text.replace("{\"api_key\"", "{\"username\":\"u\",\"api_key\"");
            let line = sync_fails(&wd, connector, &text, 2);
            assert!(!line.contains("SEKRIT"), "{connector} {text}: {line}");
            assert!(line.contains("configuration:"), "{text}: {line}");
        }
    }
    assert!(!wd.path("out").exists());
}

#[test]
fn the_demo_runs_and_leaves_compacted_tables() {
    let wd = Workdir::new("hml-demo");
    wd.stdout(&mut wd.command(&["demo", "--out", "demo"]));
    for def in api2csv::connector::CONNECTORS {
        for spec in def.tables {
            let path = wd.path(&format!("demo/{}/{}.csv", def.name, spec.name));
            let t = read_table(&path);
            assert!(!t.rows.is_empty(), "{}: no rows", path.display());
            let keys: Vec<usize> =
                spec.primary_key.iter().map(|k| t.header.iter().position(|h| h == k).unwrap()).collect();
            let mut seen = std::collections::HashSet::new();
            for row in &t.rows {
                assert_eq!(row.last().map(String::as_str), Some("false"), "{}: a tombstone", path.display());
                let key: Vec<&str> = keys.iter().map(|&k| row[k].as_str()).collect();
                assert!(seen.insert(key.join(",")), "{}: key {key:?} twice", path.display());
            }
        }
    }
}

/// `--spreadsheet-safe` guards cells that a spreadsheet would run as a formula, the
/// primary key included: the next sync must still know each record by its key.
#[test]
fn spreadsheet_safe_keys_and_cells_do_not_re_append() {
    let records = r#"{"id":"-5","f":"=HYPERLINK(\"x\")","n":-12,"t":"\tx","at":"@x","p":"+1"},{"id":"=6","f":"ok"}"#;
    let body = cursor_page(records, None);
    let server = account(2, move |_| Reply::ok(body.clone()));
    let wd = Workdir::new("hml-safe");
    for _ in 0..3 {
        sync_ok(&wd, "mailerlite", &config(&server, ""), &["--spreadsheet-safe"]);
        let t = subscribers(&wd);
        assert_eq!(column(&t, "id"), ["'-5", "'=6"], "a sync appended rows");
        assert_eq!(t.rows[0][..6], ["'-5", "'=HYPERLINK(\"x\")", "'-12", "'\tx", "'@x", "'+1"]);
    }
    wd.stdout(&mut wd.command(&["compact", "out"]));
    sync_ok(&wd, "mailerlite", &config(&server, ""), &["--spreadsheet-safe"]);
    assert_eq!(column(&subscribers(&wd), "id"), ["'-5", "'=6"]);
}

/// A server that redirects every request to another one: the key goes to the
/// configured server only, never along a redirect.
#[test]
fn a_redirect_never_carries_the_key_elsewhere() {
    for status in [301, 302, 307, 308] {
        let other = account(1, |_| Reply::ok(cursor_page(r#"{"id":"1"}"#, None)));
        let elsewhere = other.origin.clone();
        let server = serve_with(move |target| Reply {
            headers: vec![("Location".into(), format!("{elsewhere}{target}"))],
            ..Reply::status(status, "{}")
        });
        let wd = Workdir::new("hml-redirect");
        wd.write("c.json", &config(&server, r#","api_key":"SEKRIT""#));
        let out = wd.output(&mut wd.command(&["sync", "mailerlite", "--config", "c.json", "--out", "out"]));
        assert_eq!(server.authorizations().first(), Some(&Some("Bearer SEKRIT".to_string())), "{status}");
        assert!(other.authorizations().iter().all(Option::is_none), "{status}: the key followed the redirect");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("SEKRIT"), "{status}");
    }
}

/// Column names given on one sync are kept on the next, whatever order the keys
/// come in then; a new key that looks like a given name gets a name of its own.
#[test]
fn column_names_survive_across_runs() {
    let second = Arc::new(AtomicU32::new(0));
    let phase = Arc::clone(&second);
    let server = account(1, move |_| {
        Reply::ok(cursor_page(
            match phase.load(Ordering::SeqCst) {
                0 => r#"{"id":"1","a_b":"x","a":{"b":"y"}}"#,
                _ => r#"{"id":"1","a":{"b":"y2"},"a_b__2":"literal","a_b":"x"}"#,
            },
            None,
        ))
    });
    let wd = Workdir::new("hml-names");
    sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
    assert_eq!(subscribers(&wd).header, ["id", "a_b", "a_b__2", "_synced_at", "_deleted"]);
    second.store(1, Ordering::SeqCst);
    // The changed record is appended once; after compaction, nothing is.
    for rows in [2, 1] {
        sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
        let t = subscribers(&wd);
        assert_eq!(t.header, ["id", "a_b", "a_b__2", "a_b__2__2", "_synced_at", "_deleted"]);
        assert_eq!(t.rows.len(), rows, "the same record again was appended");
        assert_eq!(t.rows[rows - 1][..4], ["1", "x", "y2", "literal"]);
        let paths = column_paths(&wd.path("out"), "subscriber");
        assert_eq!(
            (&paths["a_b"][..], &paths["a_b__2"][..], &paths["a_b__2__2"][..]),
            (&["a_b".to_string()][..], &["a".to_string(), "b".to_string()][..], &["a_b__2".to_string()][..])
        );
        wd.stdout(&mut wd.command(&["compact", "out"]));
    }
}

/// The cursor a failed run committed is unknown to the server when it is run again
/// (404): the listing starts over, and no record is written twice.
#[test]
fn an_expired_cursor_restarts_the_listing() {
    let second = Arc::new(AtomicU32::new(0));
    let phase = Arc::clone(&second);
    let server = account(3, move |cursor| {
        let later = phase.load(Ordering::SeqCst) == 1;
        match (cursor.as_deref(), later) {
            (None, false) => Reply::ok(cursor_page(r#"{"id":"1"},{"id":"2"}"#, Some("old"))),
            (Some("old"), false) => Reply::status(500, r#"{"message":"Server Error"}"#),
            (Some("old"), true) => Reply::not_found(),
            (None, true) => Reply::ok(cursor_page(r#"{"id":"1"},{"id":"2"}"#, Some("new"))),
            (Some(_), true) => Reply::ok(cursor_page(r#"{"id":"3"}"#, None)),
            (Some(other), false) => panic!("cursor {other}"),
        }
    });
    let wd = Workdir::new("hml-expired");
    sync_fails(&wd, "mailerlite", &config(&server, r#","retry_attempts":1"#), 1);
    second.store(1, Ordering::SeqCst);
    sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
    assert_eq!(column(&subscribers(&wd), "id"), ["1", "2", "3"]);
    sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
    assert_eq!(column(&subscribers(&wd), "id"), ["1", "2", "3"]);
}

/// A server that answers but sends its page a byte at a time, slower than the
/// configured timeout allows: the request times out, is retried, and the sync
/// ends in one line instead of waiting forever.
#[test]
fn a_trickling_body_times_out() {
    let body = cursor_page(r#"{"id":"1","pad":"0123456789012345678901234567890123456789"}"#, None);
    let server = account(1, move |_| Reply { pause: Some(Duration::from_millis(50)), ..Reply::ok(body.clone()) });
    let wd = Workdir::new("hml-trickle");
    // Whole, the page takes over 10 s: without the timeout the sync would succeed.
    let config = config(&server, r#","retry_attempts":1,"request_timeout_seconds":1"#);
    let line = sync_fails(&wd, "mailerlite", &config, 1);
    assert!(line.contains("/api/subscribers"), "{line}");
    assert_eq!(pages_asked(&server), 2);
    assert!(!wd.path("out/subscriber.csv").exists());
}

#[test]
fn a_page_fetched_ahead_does_not_hold_up_an_error() {
    // The account announces 5 subscribers and lists 100 new ones a page without
    // end: the read gives up after 11 pages. The 12th, already being fetched, is
    // refused with a long Retry-After that nobody needs to wait for.
    let server = account(5, |cursor| {
        let page: usize = cursor.as_deref().and_then(|c| c.strip_prefix('p')?.parse().ok()).unwrap_or(0);
        if page >= 11 {
            let mut reply = Reply::status(429, r#"{"message":"Too Many Attempts."}"#);
            reply.headers.push(("Retry-After".into(), "120".into()));
            return reply;
        }
        let records: Vec<String> =
            (0..100).map(|i| format!(r#"{{"id":"{}","email":"s{i}@x.org"}}"#, page * 100 + i + 1)).collect();
        Reply::ok(cursor_page(&records.join(","), Some(&format!("p{}", page + 1))))
    });
    let wd = Workdir::new("hml-ahead");
    let started = std::time::Instant::now();
    let line = sync_fails(&wd, "mailerlite", &config(&server, ""), 1);
    assert!(line.contains("more records than the 5 the account announced"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(60), "waited {:?} for a page nobody needed", started.elapsed());
    assert_eq!(row_count(&wd.path("out"), "subscriber"), 1100);
}

/// An account of two subscribers whose first answer to page 1 is refused (invalid
/// JSON in its records) but ends in a well-formed `meta` naming cursor `wrong`: the
/// next page is asked for on that guess while page 1 is parsed, and answered with
/// `wrong()`. The retry names `c1`, so the walk turns the guess down. Also returns
/// how many times `wrong` was asked for.
fn wrong_guess_account(wrong: fn() -> Reply) -> (Server, impl Fn() -> usize) {
    let first = Arc::new(AtomicU32::new(0));
    let server = account(2, move |cursor| match cursor.as_deref() {
        None if first.fetch_add(1, Ordering::SeqCst) == 0 => Reply::ok(cursor_page(r#"{"id":"1",}"#, Some("wrong"))),
        None => {
            // Held back so that the guess is surely asked for before the walk can
            // turn it down.
            std::thread::sleep(Duration::from_millis(500));
            Reply::ok(cursor_page(r#"{"id":"1"}"#, Some("c1")))
        }
        Some("wrong") => wrong(),
        Some("c1") => Reply::ok(cursor_page(r#"{"id":"2"}"#, None)),
        Some(other) => panic!("cursor {other}"),
    });
    let seen = server.clone();
    (server, move || seen.targets().iter().filter(|t| t.ends_with("&cursor=wrong")).count())
}

/// Syncs the wrong-guess account (the guessed page answered with a record and a
/// column that exist nowhere else) with `fetchers` fetcher threads: the guessed page
/// leaves no trace, and any request for it is counted, to a table. Returns how many
/// times the guess was asked for, and every request made.
fn wrong_guess_sync(name: &str, fetchers: u8) -> (usize, Vec<String>) {
    let (server, guessed) = wrong_guess_account(|| Reply::ok(cursor_page(r#"{"id":"666","phantom":"boo"}"#, None)));
    let wd = Workdir::with_fetchers(name, fetchers);
    sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
    let t = subscribers(&wd);
    assert_eq!(t.header, ["id", "_synced_at", "_deleted"]);
    assert_eq!(column(&t, "id"), ["1", "2"]);
    requests_add_up(&wd, &server);
    (guessed(), server.targets())
}

#[test]
fn a_page_asked_for_on_a_wrong_guess_is_dropped() {
    // Two fetchers: the guess is asked for while the other one retries page 1.
    let (guessed, targets) = wrong_guess_sync("hml-wrong-guess", 2);
    assert_eq!(guessed, 1, "{targets:?}");
}

#[test]
fn one_fetcher_never_asks_for_a_guess_turned_down_while_it_retried() {
    // The single fetcher retries page 1 before it could take the guess: the retry
    // names c1, so the guess made on the refused body is withdrawn, whatever the
    // walk is doing, and never asked for.
    let (guessed, targets) = wrong_guess_sync("hml-wrong-guess-1", 1);
    assert_eq!(guessed, 0, "{targets:?}");
}

/// The tables' requests and the credential check add up to every request made,
/// whether the run succeeded or failed.
fn requests_add_up(wd: &Workdir, server: &Server) {
    let v: Value = serde_json::from_slice(&std::fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap();
    let tables: u64 = v["tables"].as_object().unwrap().values().map(|t| t["requests"].as_u64().unwrap()).sum();
    assert_eq!(tables + 1, server.requests() as u64, "{v}");
    assert_eq!(v["requests"].as_u64(), Some(server.requests() as u64), "{v}");
}

#[test]
fn a_turned_down_guess_stops_retrying() {
    // The guessed page is refused with a long Retry-After: once the walk turns the
    // guess down, nothing waits for it or asks for it again.
    let (server, guessed) = wrong_guess_account(|| {
        let mut reply = Reply::status(503, r#"{"message":"Service Unavailable"}"#);
        reply.headers.push(("Retry-After".into(), "30".into()));
        reply
    });
    let wd = Workdir::with_fetchers("hml-guess-retry", 2);
    let started = std::time::Instant::now();
    sync_ok(&wd, "mailerlite", &config(&server, ""), &[]);
    assert!(started.elapsed() < Duration::from_secs(20), "waited {:?} for a page nobody wanted", started.elapsed());
    assert_eq!(column(&subscribers(&wd), "id"), ["1", "2"]);
    assert_eq!(guessed(), 1, "{:?}", server.targets());
    requests_add_up(&wd, &server);
}

#[test]
fn a_cursor_cycle_costs_no_guess_and_failed_runs_count_every_request() {
    // p1 names A, A names B, B names A again: the walk stops on the repeat, and A
    // is not asked for a second time on a guess. The failed run's last_sync.json
    // still accounts for every request.
    let server = account(3, |cursor| {
        Reply::ok(match cursor.as_deref() {
            None => cursor_page(r#"{"id":"1"}"#, Some("A")),
            Some("A") => cursor_page(r#"{"id":"2"}"#, Some("B")),
            Some("B") => cursor_page(r#"{"id":"3"}"#, Some("A")),
            Some(other) => panic!("cursor {other}"),
        })
    });
    let wd = Workdir::new("hml-cursor-cycle");
    let line = sync_fails(&wd, "mailerlite", &config(&server, ""), 1);
    assert!(line.contains("cursor A repeats"), "{line}");
    assert_eq!(pages_asked(&server), 3, "{:?}", server.targets());
    requests_add_up(&wd, &server);
}
