//! The directory belongs to one account: an identity the API starts revealing is
//! adopted, one it stops revealing is a warning, and another instance of the same
//! API (same host, another port) is another account, refused before anything is
//! written. Each against a hand-written server on loopback.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::directory::{snapshot, state, write_state};
use crate::expected::read_table;
use crate::hostile::{one_line, param, serve_with, Reply, Server};
use crate::workdir::Workdir;

/// A MailerLite account of two subscribers, no groups, fields or campaigns, whose
/// answers carry `x-account_id` when `header` holds one.
fn mailerlite(header: Arc<Mutex<Option<&'static str>>>) -> Server {
    serve_with(move |target| {
        let listing = ["/api/groups", "/api/fields", "/api/campaigns"].iter().any(|p| target.starts_with(p));
        let mut reply = if target.starts_with("/api/subscribers") && param(target, "limit").as_deref() == Some("0") {
            Reply::ok(r#"{"total":2}"#)
        } else if target.starts_with("/api/subscribers") {
            Reply::ok(
                r#"{"data":[{"id":"1","email":"a@x.org"},{"id":"2","email":"b@x.org"}],"links":{"next":null},"meta":{"next_cursor":null,"prev_cursor":null}}"#,
            )
        } else if listing {
            Reply::ok(
                r#"{"data":[],"links":{"next":null},"meta":{"current_page":1,"last_page":1,"per_page":100,"total":0}}"#,
            )
        } else {
            Reply::not_found()
        };
        if let Some(id) = *header.lock().unwrap() {
            reply.headers.push(("x-account_id".into(), id.into()));
        }
        reply
    })
}

/// Runs `sync <connector>` with config `cfg` into `out`; its status and stderr lines.
fn run(wd: &Workdir, connector: &str, cfg: &str) -> (i32, Vec<String>) {
    let mut cmd = wd.command(&["sync", connector, "--config", cfg, "--out", "out"]);
    let out = wd.output(&mut cmd);
    let stderr = String::from_utf8(out.stderr).unwrap();
    (out.status.code().unwrap_or(-1), stderr.lines().map(str::to_string).collect())
}

/// The lines of `lines` at `level` (`info`, `warning`), without their timestamp.
fn at_level(lines: &[String], level: &str) -> Vec<String> {
    let tag = format!(" {level}: ");
    lines.iter().filter_map(|l| l.split_once(&tag).map(|(_, m)| m.to_string())).collect()
}

fn account_id(wd: &Workdir) -> Value {
    state(&wd.path("out"))["account"]["id"].clone()
}

#[test]
fn an_account_id_that_appears_is_adopted_and_one_that_disappears_is_a_warning() {
    let header = Arc::new(Mutex::new(None));
    let server = mailerlite(Arc::clone(&header));
    let wd = Workdir::new("account-adopt");
    wd.write("c.json", &format!(r#"{{"api_key":"k","base_url":"{}/api"}}"#, server.origin));
    let subscribers = || read_table(&wd.path("out/subscriber.csv")).rows.len();

    // Written while the API sent no x-account_id (as its 2023-2024 versions did).
    let (status, lines) = run(&wd, "mailerlite", "c.json");
    assert_eq!(status, 0, "{lines:#?}");
    assert_eq!(account_id(&wd), Value::Null, "an identity recorded though none was revealed");
    assert_eq!(subscribers(), 2);

    // The header appears: adopted, with one line, and nothing is read as new.
    *header.lock().unwrap() = Some("83510");
    let (status, lines) = run(&wd, "mailerlite", "c.json");
    assert_eq!(status, 0, "{lines:#?}");
    let adopted: Vec<String> = at_level(&lines, "info").into_iter().filter(|l| l.contains("83510")).collect();
    assert_eq!(adopted, ["recording that out holds account 83510, the account the API now names"], "{lines:#?}");
    assert!(at_level(&lines, "warning").is_empty(), "{lines:#?}");
    assert_eq!(account_id(&wd), "account 83510");
    assert_eq!(subscribers(), 2, "the adopting sync appended rows");
    // Adopted once: the next sync says nothing about it.
    let (status, lines) = run(&wd, "mailerlite", "c.json");
    assert_eq!(status, 0);
    assert!(!lines.iter().any(|l| l.contains("83510")), "{lines:#?}");

    // The header disappears: a warning, not another account; the id recorded stays.
    *header.lock().unwrap() = None;
    let (status, lines) = run(&wd, "mailerlite", "c.json");
    assert_eq!(status, 0, "{lines:#?}");
    assert_eq!(
        at_level(&lines, "warning"),
        [
            "the API no longer says which account it serves; out holds account 83510, and the sync goes on with these credentials"
        ],
        "{lines:#?}"
    );
    assert_eq!(account_id(&wd), "account 83510");
    assert_eq!(subscribers(), 2);

    // Another id is another account: refused before anything is written.
    *header.lock().unwrap() = Some("99999");
    let before = snapshot(&wd.path("out"));
    let asked = server.requests();
    let (status, lines) = run(&wd, "mailerlite", "c.json");
    assert_eq!(status, 2, "{lines:#?}");
    let line = one_line(&lines.join("\n"));
    assert!(
        line.contains("account 83510") && line.contains("account 99999") && line.contains("another --out"),
        "{line}"
    );
    assert_eq!(snapshot(&wd.path("out")), before, "the other account's sync changed the directory");
    assert_eq!(server.requests(), asked + 1, "more than the credential check was asked");
}

/// A Paligo instance with two users and nothing else.
fn paligo() -> Server {
    serve_with(|target| {
        let path = target.split('?').next().unwrap_or("");
        let resource = path.trim_start_matches("/api/v2/").trim_end_matches('/');
        let items = match resource {
            "users" => r#"{"id":1,"username":"u1","email":"e1"},{"id":2,"username":"u2","email":"e2"}"#,
            "taxonomies" | "assignments" => "",
            _ => return Reply::not_found(),
        };
        Reply::ok(format!(r#"{{"page":1,"next_page":"","total_pages":1,"{resource}":[{items}]}}"#))
    })
}

fn paligo_config(wd: &Workdir, name: &str, server: &Server) {
    wd.write(name, &format!(r#"{{"username":"ann","api_key":"k","base_url":"{}/api/v2"}}"#, server.origin));
}

/// `http://127.0.0.1:PORT` → `127.0.0.1:PORT`.
fn authority(server: &Server) -> &str {
    server.origin.trim_start_matches("http://")
}

/// The second sync of `other` into `out` is refused with exit 2, naming both
/// instances, asking nothing but the credential check, and writing nothing.
fn refused(wd: &Workdir, mine: &Server, other: &Server) {
    let before = snapshot(&wd.path("out"));
    let asked = other.requests();
    let (status, lines) = run(wd, "paligo", "theirs.json");
    assert_eq!(status, 2, "{lines:#?}");
    let line = one_line(&lines.join("\n"));
    let (a, b) = (format!("user ann at {}", authority(mine)), format!("user ann at {}", authority(other)));
    assert!(line.contains(&format!("holds {a} (")) && line.contains(&format!("not {b} (")), "{line}");
    assert_eq!(snapshot(&wd.path("out")), before, "the other instance's sync changed the directory");
    assert_eq!(other.requests(), asked + 1, "more than the credential check was asked");
}

#[test]
fn two_paligo_instances_on_one_host_are_two_accounts() {
    let (mine, theirs) = (paligo(), paligo());
    let wd = Workdir::new("account-port");
    paligo_config(&wd, "mine.json", &mine);
    paligo_config(&wd, "theirs.json", &theirs);
    let (status, lines) = run(&wd, "paligo", "mine.json");
    assert_eq!(status, 0, "{lines:#?}");
    assert_eq!(account_id(&wd), format!("user ann at {}", authority(&mine)).as_str());
    refused(&wd, &mine, &theirs);
    let users = read_table(&wd.path("out/users.csv"));
    assert!(users.rows.iter().all(|r| r.last().unwrap() == "false"), "users of the first instance were tombstoned");
}

#[test]
fn an_older_paligo_identity_without_a_port_takes_the_port_it_was_written_with() {
    let (mine, theirs) = (paligo(), paligo());
    let wd = Workdir::new("account-legacy");
    paligo_config(&wd, "mine.json", &mine);
    paligo_config(&wd, "theirs.json", &theirs);
    assert_eq!(run(&wd, "paligo", "mine.json").0, 0);
    let full = format!("user ann at {}", authority(&mine));
    // Both forms older versions wrote: the host alone.
    for legacy in ["user ann at 127.0.0.1", "ann@127.0.0.1"] {
        let mut s = state(&wd.path("out"));
        s["account"]["id"] = legacy.into();
        write_state(&wd.path("out"), &s);
        // The other instance on the same host is still another account...
        refused(&wd, &mine, &theirs);
        // ...and the instance it was written by syncs and records the full form.
        let (status, lines) = run(&wd, "paligo", "mine.json");
        assert_eq!(status, 0, "{legacy}: {lines:#?}");
        assert_eq!(account_id(&wd), full.as_str());
        assert!(!lines.iter().any(|l| l.contains(" info: recording")), "{lines:#?}");
    }
}
