//! SIGTERM and SIGINT stop a sync at the next page boundary: what it had is
//! committed, one line says so, `last_sync.json` records it, and the same command
//! resumes where it stopped, ending with every record exactly once.

use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

use api2csv::mock::mailerlite::MailerLite;
use api2csv::mock::MockOptions;
use serde_json::Value;

use crate::directory::{exit_within, lines, mock, signal, spawn, state, wait_until};
use crate::expected::{assert_table, read_table};
use crate::mailerlite::TABLES;
use crate::workdir::Workdir;

/// Subscriber rows committed so far, while a run is under way.
fn committed_mid_table(wd: &Workdir) -> Option<u64> {
    let s = state(&wd.path("out"));
    let sub = &s["tables"]["subscriber"];
    (!s["run"].is_null() && !sub["resume"].is_null()).then(|| sub["file"]["rows"].as_u64().unwrap_or(0))
}

/// Runs the sync and stops it with `sig` once more than `after` subscriber rows are
/// committed; checks the exit, the last line and `last_sync.json`. Returns stderr's lines.
fn interrupt(wd: &Workdir, args: &[&str], sig: &str, after: u64) -> Vec<String> {
    let (name, status) = match sig {
        "TERM" => ("SIGTERM", 143),
        _ => ("SIGINT", 130),
    };
    let mut child = spawn(wd, args, "sync.err");
    wait_until("subscriber half synced", || committed_mid_table(wd).is_some_and(|rows| rows > after));
    let sent = Instant::now();
    signal(&child, sig);
    let exit = exit_within(&mut child, Duration::from_secs(20));
    let took = sent.elapsed();
    let err = fs::read_to_string(wd.path("sync.err")).unwrap();
    assert_eq!(exit.code(), Some(status), "{err}");
    assert!(took < Duration::from_secs(5), "{name} took {took:?} to stop the sync");
    let lines = lines(&err);
    let last = lines.last().unwrap();
    let message = last.strip_prefix("error: ").unwrap_or_else(|| panic!("not an error line: {last}"));
    let pages: u64 = message
        .strip_prefix(&format!("interrupted by {name}: "))
        .and_then(|m| m.strip_suffix(" committed; run the same command to resume"))
        .and_then(|m| m.trim_end_matches(" pages").trim_end_matches(" page").parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    assert!(pages > 0, "{last}");
    let last_sync: Value = serde_json::from_slice(&fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap();
    assert_eq!(last_sync["status"], "interrupted", "{last_sync}");
    assert_eq!(last_sync["exit_status"], status, "{last_sync}");
    assert_eq!(last_sync["pages_committed"], pages, "{last_sync}");
    assert_eq!(last_sync["error"], message, "{last_sync}");
    assert!(committed_mid_table(wd).is_some(), "the interrupted run is not pending in state.json");
    lines
}

/// Asserts the first line says the run resumes the interrupted one, in subscriber.
fn says_it_resumes(lines: &[String]) {
    let first = &lines[0];
    assert!(first.starts_with("info: resuming the sync interrupted at"), "{first}");
    assert!(first.contains("now subscriber, ") && first.contains("page "), "no table and position: {first}");
}

#[test]
fn sigterm_then_sigint_stop_at_a_page_and_the_reruns_resume() {
    let wd = Workdir::new("signals");
    let opts = MockOptions { records: 3000, seed: 13, ..MockOptions::default() };
    // Ten records a page: hundreds of pages, so the sync is mid-table when signalled.
    let (server, cfg) = mock(&wd, &opts, 1, "c.json", r#", "max_records_per_page": 10"#);
    let args = ["sync", "mailerlite", "--config", &cfg, "--out", "out"];

    interrupt(&wd, &args, "TERM", 300);
    let after_term = committed_mid_table(&wd).unwrap();
    let lines = interrupt(&wd, &args, "INT", after_term + 300);
    says_it_resumes(&lines);

    let requests_before = server.requests();
    let out = wd.output(&mut wd.command(&args));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    says_it_resumes(&crate::directory::lines(&err));
    let last_sync: Value = serde_json::from_slice(&fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap();
    assert_eq!((&last_sync["status"], &last_sync["exit_status"]), (&Value::from("ok"), &Value::from(0)));
    assert!(last_sync["resumed"].is_string(), "{last_sync}");
    let subscriber_pages = last_sync["tables"]["subscriber"]["pages"].as_u64().unwrap();
    assert!(subscriber_pages < 300, "the rerun read subscriber from its start: {subscriber_pages} pages");
    assert!(server.requests() > requests_before);

    let ml = MailerLite::new(&opts);
    for t in TABLES {
        let spec = api2csv::connector::tables("mailerlite").unwrap().iter().find(|s| s.name == t).unwrap();
        let table = read_table(&wd.path(&format!("out/{t}.csv")));
        let cols: Vec<usize> =
            spec.primary_key.iter().map(|k| table.header.iter().position(|h| h == k).unwrap()).collect();
        let keys: BTreeSet<Vec<&str>> =
            table.rows.iter().map(|r| cols.iter().map(|&c| r[c].as_str()).collect()).collect();
        assert_eq!(keys.len(), table.rows.len(), "{t}: a row was written twice");
        assert_eq!(table.rows.len(), ml.expected(t).len(), "{t}: rows");
    }
    wd.stdout(&mut wd.command(&["compact", "out"]));
    for t in TABLES {
        assert_table(&wd.path("out"), "mailerlite", t, &ml.expected(t));
    }
}
