//! MailerLite end to end: the binary syncs the mock over loopback HTTP.

use std::process::Command;
use std::sync::Arc;

use api2csv::mock::mailerlite::{MailerLite, API_KEY};
use api2csv::mock::{self, MockOptions, MockServer};

use crate::expected::{assert_table, row_count};
use crate::workdir::{describe, kill_until_done, Workdir};

pub const TABLES: [&str; 5] = ["subscriber", "group", "group_subscriber", "field", "campaign"];

pub fn start(opts: &MockOptions) -> MockServer {
    mock::start(Arc::new(MailerLite::new(opts)), "127.0.0.1:0", opts).unwrap()
}

/// Writes a configuration for the mock; `extra` is more JSON members.
pub fn config(wd: &Workdir, server: &MockServer, extra: &str) -> String {
    let text = format!(
        r#"{{"api_key": "{API_KEY}", "base_url": "{}/api", "max_records_per_page": "1000", "retry_attempts": "8"{extra}}}"#,
        server.origin()
    );
    wd.write("mailerlite.json", &text);
    "mailerlite.json".to_string()
}

fn sync(wd: &Workdir, cfg: &str) -> Command {
    wd.command(&["sync", "mailerlite", "--config", cfg, "--out", "out"])
}

/// Asserts every table of `out` equals the mock's records.
fn assert_exact(wd: &Workdir, opts: &MockOptions) {
    let ml = MailerLite::new(opts);
    for table in TABLES {
        assert_table(&wd.path("out"), "mailerlite", table, &ml.expected(table));
    }
}

/// Asserts a first sync appended each record exactly once.
fn assert_no_duplicates(wd: &Workdir, opts: &MockOptions) {
    let ml = MailerLite::new(opts);
    for table in TABLES {
        assert_eq!(row_count(&wd.path("out"), table), ml.expected(table).len(), "{table}: rows appended");
    }
}

#[test]
fn sync_then_compact_gives_exactly_the_mock_records() {
    let wd = Workdir::new("ml-exact");
    let opts = MockOptions { records: 20000, seed: 7, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, "");
    let out = wd.stdout(&mut sync(&wd, &cfg));
    assert!(out.contains("subscriber"), "{out}");
    assert_no_duplicates(&wd, &opts);
    wd.stdout(&mut wd.command(&["compact", "out"]));
    assert_exact(&wd, &opts);
}

#[test]
fn injected_faults_do_not_change_the_result() {
    let wd = Workdir::new("ml-faults");
    let opts = MockOptions { records: 3000, seed: 3, fault_rate: 0.15, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, r#", "max_records_per_page": 100"#);
    wd.stdout(&mut sync(&wd, &cfg));
    assert_no_duplicates(&wd, &opts);
    wd.stdout(&mut wd.command(&["compact", "out"]));
    assert_exact(&wd, &opts);
}

#[test]
fn killed_syncs_resume_without_losing_or_repeating_rows() {
    let wd = Workdir::new("ml-kill");
    let opts = MockOptions { records: 6000, seed: 11, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, r#", "max_records_per_page": 50"#);
    let kills = kill_until_done(&wd, &|| sync(&wd, &cfg), &mut || false, &mut || ());
    assert!(kills >= 3, "only {kills} kills: the test did not interrupt the sync");
    assert_no_duplicates(&wd, &opts);
    let out = wd.command(&["compact", "out"]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&wd.command(&["compact", "out"]), &out));
    assert_exact(&wd, &opts);
}

#[test]
fn tables_limits_the_sync_and_lists_what_exists() {
    let wd = Workdir::new("ml-tables");
    let opts = MockOptions { records: 300, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, "");
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "--tables", "field,campaign"]));
    assert!(wd.path("out/field.csv").exists() && wd.path("out/campaign.csv").exists());
    assert!(!wd.path("out/subscriber.csv").exists());
    let listing = wd.stdout(&mut wd.command(&["tables", "mailerlite"]));
    for t in TABLES {
        assert!(listing.contains(t), "{listing}");
    }
    assert!(listing.contains("group_id,subscriber_id"), "{listing}");
}

#[test]
fn a_rate_limited_api_is_waited_for_not_failed() {
    let wd = Workdir::new("ml-ratelimit");
    let free = MockOptions { records: 1500, seed: 4, ..MockOptions::default() };
    let unlimited = start(&free);
    let cfg = config(&wd, &unlimited, "");
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "free"]));
    let needed = unlimited.requests();

    // Few enough that a sync meets the limit: it reads 100 records a request.
    let opts = MockOptions { rate_limit: Some((5, 1)), ..free };
    let server = start(&opts);
    let cfg = config(&wd, &server, r#", "retry_attempts": 3"#);
    wd.stdout(&mut sync(&wd, &cfg));
    assert!(server.requests() > needed, "no request was refused: {} of {needed}", server.requests());
    wd.stdout(&mut wd.command(&["compact", "out"]));
    assert_exact(&wd, &opts);
}

#[test]
fn the_mock_command_serves_what_sync_and_compact_read() {
    use std::io::{BufRead, BufReader};
    let wd = Workdir::new("ml-mock-cmd");
    let mut mock = wd
        .command(&["mock", "mailerlite", "--addr", "127.0.0.1:0", "--records", "120", "--seed", "8"])
        .stdout(std::process::Stdio::piped())
        .stderr(wd.stderr_log())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(mock.stdout.take().unwrap()).lines();
    let config = lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with('{'))).unwrap().unwrap();
    wd.write("mock.json", &config);
    let out = wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", "mock.json", "--out", "out", "--compact"]));
    mock.kill().unwrap();
    mock.wait().unwrap();
    assert!(out.contains("compacted"), "{out}");
    assert_exact(&wd, &MockOptions { records: 120, seed: 8, ..MockOptions::default() });
}
