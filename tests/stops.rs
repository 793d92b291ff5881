//! Runs that stop early stop cleanly: a signal during the compaction of
//! `sync --compact` leaves every table file compacted or untouched, never half
//! replaced; a directory api2csv cannot write, or a network it cannot reach, is
//! one line that says what is wrong, with the exit status the design gives it.

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use api2csv::mock::mailerlite::MailerLite;
use api2csv::mock::MockOptions;
use serde_json::Value;

use crate::directory::{exit_within, lines, mock, signal, snapshot, state, wait_until};
use crate::expected::{assert_table, row_count};
use crate::mailerlite::TABLES;
use crate::workdir::Workdir;

#[test]
fn sigterm_during_the_compaction_of_a_sync_stops_it_between_whole_replacements() {
    let wd = Workdir::new("stops-compact");
    let opts = MockOptions { records: 400, seed: 5, ..MockOptions::default() };
    let (_first, cfg) = mock(&wd, &opts, 1, "g1.json", "");
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]));
    // A later generation of the account: changed rows, so every table has rows to drop.
    let (_second, cfg) = mock(&wd, &opts, 2, "g2.json", "");
    let gate = wd.path("gate");
    let err = fs::File::create(wd.path("sync.err")).unwrap();
    let mut child = wd
        .command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "--compact"])
        .env("API2CSV_TEST_COMPACT_GATE", format!("group_subscriber:{}", gate.display()))
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    // subscriber and group are compacted; the side file of group_subscriber is
    // complete and its replacement not begun.
    wait_until("the compaction of group_subscriber", || gate.exists());
    let before = fs::read(wd.path("out/group_subscriber.csv")).unwrap();
    signal(&child, "TERM");
    let status = exit_within(&mut child, Duration::from_secs(20));
    let err = fs::read_to_string(wd.path("sync.err")).unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    let last = lines(&err).pop().unwrap();
    assert!(last.starts_with("error: interrupted by SIGTERM while compacting out: "), "{last}");
    assert!(last.ends_with("run `api2csv compact out` to compact the rest"), "{last}");
    let last_sync: Value = serde_json::from_slice(&fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap();
    assert_eq!((&last_sync["status"], &last_sync["exit_status"]), (&Value::from("interrupted"), &Value::from(143)));

    // Nothing half done: no side file, no replacement pending, the tables before the
    // signal compacted, the one signalled and those after it as the sync left them.
    let files = snapshot(&wd.path("out"));
    assert!(!files.keys().any(|f| f.ends_with(".new") || f.ends_with(".tmp")), "{:?}", files.keys());
    let s = state(&wd.path("out"));
    assert!(s["run"].is_null(), "{s}");
    assert!(TABLES.iter().all(|t| s["tables"][t]["replace"].is_null()), "{s}");
    let after = fs::read(wd.path("out/group_subscriber.csv")).unwrap();
    assert!(after == before, "group_subscriber.csv was replaced after the signal");
    let ml = MailerLite::new(&MockOptions { generation: 2, ..opts.clone() });
    for t in ["subscriber", "group"] {
        assert_table(&wd.path("out"), "mailerlite", t, &ml.expected(t));
    }
    assert!(row_count(&wd.path("out"), "group_subscriber") > ml.expected("group_subscriber").len());
    // The manifest describes the files as they are, and compact finishes the job.
    wd.stdout(&mut wd.command(&["verify", "out"]));
    wd.stdout(&mut wd.command(&["compact", "out"]));
    for t in TABLES {
        assert_table(&wd.path("out"), "mailerlite", t, &ml.expected(t));
    }
}
