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

/// The environment variables ureq takes a proxy from, and its exceptions.
const PROXY_VARS: [&str; 8] =
    ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"];

/// A loopback port nobody listens on: bound, then freed.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn an_output_directory_that_cannot_be_written_exits_2_saying_so() {
    let wd = Workdir::new("stops-unwritable");
    let opts = MockOptions { records: 20, ..MockOptions::default() };
    let (server, cfg) = mock(&wd, &opts, 1, "c.json", "");
    // sysfs refuses new files even to root: a directory no test user can write in.
    let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "/sys/fs"]), 2);
    let line = crate::directory::one_line(&err);
    assert!(
        line.starts_with("error: /sys/fs: cannot write in this directory: cannot create .api2csv.lock: "),
        "{line}"
    );
    assert!(!line.contains("run the same command"), "{line}");
    assert!(server.requests() <= 1, "the credentials check is all it asked");
    // A parent that is a file is named as such.
    wd.write("file", "");
    let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "file/out"]), 2);
    let line = crate::directory::one_line(&err);
    assert!(line.ends_with("--out file/out: its parent file is not a directory"), "{line}");
}

#[test]
fn a_failure_before_anything_was_committed_does_not_offer_a_resume() {
    let wd = Workdir::new("stops-nothing-committed");
    let opts = MockOptions { records: 20, ..MockOptions::default() };
    let (server, _) = mock(&wd, &opts, 1, "unused.json", "");
    let config = |base: &str| {
        let text = format!(
            r#"{{"api_key": "{}", "base_url": "{base}/api", "retry_attempts": 1}}"#,
            api2csv::mock::mailerlite::API_KEY
        );
        wd.write("c.json", &text);
    };
    let sync = || {
        let mut cmd = wd.command(&["sync", "mailerlite", "--config", "c.json", "--out", "out"]);
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        cmd
    };
    // No server at all.
    let port = closed_port();
    config(&format!("http://127.0.0.1:{port}"));
    let line = crate::directory::one_line(&wd.fails(&mut sync(), 1));
    assert!(line.contains(&format!("request failed http://127.0.0.1:{port}/api/")), "{line}");
    assert!(!line.contains("committed") && !line.contains("resume"), "{line}");
    assert!(!line.contains("proxy"), "{line}");
    assert!(!wd.path("out").exists());
    // A proxy that does not answer: the line names it, and the server never hears of the run.
    let proxy = format!("http://127.0.0.1:{}", closed_port());
    config(&server.origin());
    let line = crate::directory::one_line(&wd.fails(sync().env("HTTPS_PROXY", &proxy), 1));
    assert!(line.contains(&format!("(through the proxy {proxy})")), "{line}");
    assert!(!line.contains("committed") && !line.contains("resume"), "{line}");
    assert_eq!(server.requests(), 0);
    assert!(!wd.path("out").exists());
    // The same proxy, bypassed for the host by NO_PROXY: the sync goes straight through.
    wd.stdout(sync().env("HTTPS_PROXY", &proxy).env("NO_PROXY", "127.0.0.1"));
}
