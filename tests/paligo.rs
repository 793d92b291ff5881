//! Paligo end to end: the binary syncs the mock over loopback HTTP.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api2csv::mock::paligo::{Paligo, API_KEY, USERNAME};
use api2csv::mock::{self, MockOptions, MockServer};
use serde_json::Value;

use crate::expected::{assert_table, read_table, row_count};
use crate::workdir::{self, describe, Workdir};

const TABLES: [&str; 3] = ["users", "taxonomies", "assignments"];

fn start(opts: &MockOptions) -> MockServer {
    mock::start(Arc::new(Paligo::new(opts)), "127.0.0.1:0", opts).unwrap()
}

/// Writes a configuration for the mock; `extra` is more JSON members. Values are a
/// mix of JSON strings and native values, as both are accepted.
fn config(wd: &Workdir, server: &MockServer, extra: &str) -> String {
    let text = format!(
        r#"{{"username": "{USERNAME}", "api_key": "{API_KEY}", "base_url": "{}/api/v2", "max_records_per_page": 100, "retry_attempts": "8"{extra}}}"#,
        server.origin()
    );
    wd.write("paligo.json", &text);
    "paligo.json".to_string()
}

fn sync(wd: &Workdir, cfg: &str, tables: &[&str]) -> Command {
    let mut cmd = wd.command(&["sync", "paligo", "--config", cfg, "--out", "out"]);
    if !tables.is_empty() {
        cmd.args(["--tables", &tables.join(",")]);
    }
    cmd
}

/// Asserts each of `tables` in `out` equals the mock's records.
fn assert_exact(wd: &Workdir, opts: &MockOptions, tables: &[&str]) {
    let paligo = Paligo::new(opts);
    for &table in tables {
        assert_table(&wd.path("out"), "paligo", table, &paligo.expected(table));
    }
}

/// Asserts a first sync appended each record of `tables` exactly once.
fn assert_no_duplicates(wd: &Workdir, opts: &MockOptions, tables: &[&str]) {
    let paligo = Paligo::new(opts);
    for &table in tables {
        assert_eq!(row_count(&wd.path("out"), table), paligo.expected(table).len(), "{table}: rows appended");
    }
}

fn compact(wd: &Workdir) {
    wd.stdout(&mut wd.command(&["compact", "out"]));
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    lines[0]
}

/// The values of `column` in a table file.
fn column(wd: &Workdir, table: &str, column: &str) -> Vec<String> {
    let t = read_table(&wd.path(&format!("out/{table}.csv")));
    let i = t.header.iter().position(|h| h == column).unwrap_or_else(|| panic!("{table}: no column {column}"));
    t.rows.into_iter().map(|mut r| r.swap_remove(i)).collect()
}

#[test]
fn sync_then_compact_gives_exactly_the_mock_records() {
    let wd = Workdir::new("pg-exact");
    // Seed 3 has root-level taxonomies titled "" with children, whose paths start
    // with the separator.
    let opts = MockOptions { records: 20000, seed: 3, ..MockOptions::default() };
    let paligo = Paligo::new(&opts);
    let taxonomies = paligo.expected("taxonomies");
    assert!(taxonomies.iter().any(|t| t.contains(r#""path":" / "#)), "no child of a root titled \"\"");
    assert!(taxonomies.iter().any(|t| t.contains(r#"Input\\/Output"#)), "no title with a slash");
    assert!(paligo.expected("users").len() > 2000 && taxonomies.len() >= 5000);
    let server = start(&opts);
    let cfg = config(&wd, &server, "");
    let out = wd.stdout(&mut sync(&wd, &cfg, &[]));
    assert!(out.contains("taxonomies"), "{out}");
    assert_no_duplicates(&wd, &opts, &TABLES);
    compact(&wd);
    assert_exact(&wd, &opts, &TABLES);
    // The walk really went deep: the output itself holds levels 1 to at least 5,
    // each below level 1 with a parent_id and a path of that many titles' joins.
    let levels: Vec<u32> = column(&wd, "taxonomies", "level").iter().map(|l| l.parse().unwrap()).collect();
    let deepest = *levels.iter().max().unwrap();
    assert!(deepest >= 5, "the tree in the output is only {deepest} levels deep");
    for level in 1..=deepest {
        assert!(levels.contains(&level), "no taxonomy at level {level}");
    }
}

/// A child process's state, read between kills: whether `table` was in progress with
/// committed progress (a run under way, the table not done, a resume position set).
fn mid_table(wd: &Workdir, table: &str) -> Option<Value> {
    let text = std::fs::read(wd.path("out/state.json")).ok()?;
    let state: Value = serde_json::from_slice(&text).expect("state.json is valid JSON after a kill");
    let run = state.get("run").filter(|r| !r.is_null())?;
    if run["done"].as_array().unwrap().iter().any(|t| t == table) {
        return None;
    }
    let ts = &state["tables"][table];
    let started = ts["file"]["rows"].as_u64().unwrap_or(0) > 0 && !ts["resume"].is_null();
    started.then(|| ts["resume"].clone())
}

/// Runs `cmd()` until it finishes, killing it as [`workdir::kill_until_done`] does.
/// Returns the resume positions of `table` at every kill that landed inside that
/// table. With `hunt`, the first time `table` is seen half done the sync is killed at
/// once, so a kill lands inside it however fast the machine is.
fn kills_inside(wd: &Workdir, cmd: &dyn Fn() -> Command, table: &str, hunt: bool) -> Vec<Value> {
    let inside = std::cell::RefCell::new(Vec::new());
    let mut kill_now = || hunt && inside.borrow().is_empty() && mid_table(wd, table).is_some();
    let mut after_kill = || inside.borrow_mut().extend(mid_table(wd, table));
    workdir::kill_until_done(wd, cmd, &mut kill_now, &mut after_kill);
    inside.into_inner()
}

/// The largest number under a `level` key anywhere in `v` (a resume position).
fn max_level(v: &Value) -> u64 {
    match v {
        Value::Object(m) => {
            m.iter().map(|(k, c)| if k == "level" { c.as_u64().unwrap_or(0) } else { max_level(c) }).max()
        }
        Value::Array(a) => a.iter().map(max_level).max(),
        _ => None,
    }
    .unwrap_or(0)
}

#[test]
fn killed_taxonomy_walks_resume_without_losing_or_repeating_rows() {
    let wd = Workdir::new("pg-kill-tax");
    let opts = MockOptions { records: 8000, seed: 5, ..MockOptions::default() };
    let server = start(&opts);
    // Small pages, so that listings of one level span pages and a kill can land
    // between two pages of the same parent.
    let cfg = config(&wd, &server, r#", "max_records_per_page": "10""#);
    let positions = kills_inside(&wd, &|| sync(&wd, &cfg, &["taxonomies"]), "taxonomies", false);
    assert!(positions.len() >= 3, "only {} kills inside the taxonomy walk", positions.len());
    // At least one kill landed below the roots, with the walk's stack committed.
    let deepest = positions.iter().map(max_level).max().unwrap();
    assert!(deepest >= 3, "no kill landed at level 3 or deeper: {positions:?}");
    assert_no_duplicates(&wd, &opts, &["taxonomies"]);
    compact(&wd);
    assert_exact(&wd, &opts, &["taxonomies"]);
}

#[test]
fn killed_assignment_syncs_resume_without_losing_or_repeating_rows() {
    let wd = Workdir::new("pg-kill-asg");
    let opts = MockOptions { records: 10000, seed: 11, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, r#", "max_records_per_page": 25"#);
    let positions = kills_inside(&wd, &|| sync(&wd, &cfg, &["assignments"]), "assignments", false);
    assert!(positions.len() >= 3, "only {} kills inside the assignments", positions.len());
    assert_no_duplicates(&wd, &opts, &["assignments"]);
    compact(&wd);
    assert_exact(&wd, &opts, &["assignments"]);
}

#[test]
fn killed_full_syncs_continue_across_tables() {
    let wd = Workdir::new("pg-kill-all");
    let opts = MockOptions { records: 3000, seed: 13, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, r#", "max_records_per_page": 25"#);
    let inside = kills_inside(&wd, &|| sync(&wd, &cfg, &[]), "assignments", true);
    assert!(!inside.is_empty(), "no kill landed inside assignments, the last table");
    assert_no_duplicates(&wd, &opts, &TABLES);
    compact(&wd);
    assert_exact(&wd, &opts, &TABLES);
}

/// A run interrupted inside `--tables assignments` must not swallow a later
/// `--tables users`: success means the tables asked for were synced.
#[test]
fn an_interrupted_run_does_not_replace_the_tables_asked_for() {
    let wd = Workdir::new("pg-kill-tables");
    let opts = MockOptions { records: 6000, seed: 2, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, r#", "max_records_per_page": 10"#);
    let mut child = sync(&wd, &cfg, &["assignments"]).stdout(Stdio::null()).stderr(wd.stderr_log()).spawn().unwrap();
    let started = Instant::now();
    while mid_table(&wd, "assignments").is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "assignments never started");
        assert!(child.try_wait().unwrap().is_none(), "the sync finished before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    wd.stdout(&mut sync(&wd, &cfg, &["users"]));
    assert!(wd.path("out/users.csv").exists(), "sync --tables users succeeded without writing users.csv");
    assert_no_duplicates(&wd, &opts, &["users"]);
}

#[test]
fn injected_faults_do_not_change_the_result() {
    let wd = Workdir::new("pg-faults");
    let opts = MockOptions { records: 600, seed: 2, fault_rate: 0.15, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, r#", "max_records_per_page": 25"#);
    wd.stdout(&mut sync(&wd, &cfg, &[]));
    assert_no_duplicates(&wd, &opts, &TABLES);
    compact(&wd);
    assert_exact(&wd, &opts, &TABLES);
}

#[test]
fn a_wrong_api_key_is_one_request_and_exit_2() {
    let wd = Workdir::new("pg-err-key");
    let server = start(&MockOptions { records: 10, ..MockOptions::default() });
    let secret = "wrong-key-7c1e";
    wd.write(
        "c.json",
        &format!(r#"{{"username": "{USERNAME}", "api_key": "{secret}", "base_url": "{}/api/v2"}}"#, server.origin()),
    );
    let err = wd.fails(&mut wd.command(&["sync", "paligo", "--config", "c.json", "--out", "out"]), 2);
    let line = one_line(&err);
    assert!(line.contains("credentials rejected") && line.contains("401"), "{line}");
    let basic = api2csv::mock::paligo::basic_auth(USERNAME, secret);
    assert!(!line.contains(secret) && !line.contains(&basic[6..]), "the key leaked: {line}");
    assert_eq!(server.requests(), 1);
    // Exit 2 means the error was found before anything was written.
    for file in ["out/users.csv", "out/state.json"] {
        assert!(!wd.path(file).exists(), "{file} was written");
    }
    let err = wd.fails(&mut wd.command(&["check", "paligo", "--config", "c.json"]), 2);
    assert!(!one_line(&err).contains(secret), "{err}");
    assert_eq!(server.requests(), 2);
}

#[test]
fn broken_configs_exit_2_naming_the_key() {
    let wd = Workdir::new("pg-err-config");
    let server = start(&MockOptions { records: 10, ..MockOptions::default() });
    let url = format!("{}/api/v2", server.origin());
    let cases = [
        (format!(r#"{{"api_key": "{API_KEY}", "base_url": "{url}"}}"#), "username"),
        (format!(r#"{{"username": "", "api_key": "{API_KEY}", "base_url": "{url}"}}"#), "username"),
        (format!(r#"{{"username": "{USERNAME}", "base_url": "{url}"}}"#), "api_key"),
        (format!(r#"{{"username": "{USERNAME}", "api_key": "{API_KEY}"}}"#), "base_url"),
        (format!(r#"{{"username": "{USERNAME}", "api_key": "{API_KEY}", "instance": "a b"}}"#), "instance"),
        (format!(r#"{{"username": "{USERNAME}", "api_key": "{API_KEY}", "instance": "evil.com/x"}}"#), "instance"),
        (format!(r#"{{"username": "{USERNAME}", "api_key": "{API_KEY}", "instance": ""}}"#), "instance"),
        (format!(r#"{{"username": "{USERNAME}", "api_key": "{API_KEY}", "instance": 7}}"#), "instance"),
    ];
    for (text, key) in &cases {
        wd.write("bad.json", text);
        let err = wd.fails(&mut wd.command(&["sync", "paligo", "--config", "bad.json", "--out", "out"]), 2);
        let line = one_line(&err);
        assert!(line.contains(key), "{text}: {line}");
        assert!(!line.contains(API_KEY), "{text}: the key leaked: {line}");
        assert!(!wd.path("out").exists(), "{text}: the output directory was created");
        let err = wd.fails(&mut wd.command(&["check", "paligo", "--config", "bad.json"]), 2);
        assert!(one_line(&err).contains(key), "{text}: {err}");
    }
    assert_eq!(server.requests(), 0, "a broken configuration sent a request");
}

#[test]
fn credentials_come_from_the_environment() {
    let wd = Workdir::new("pg-env");
    let opts = MockOptions { records: 300, ..MockOptions::default() };
    let server = start(&opts);
    wd.write("c.json", &format!(r#"{{"base_url": "{}/api/v2"}}"#, server.origin()));
    let mut cmd = wd.command(&["sync", "paligo", "--config", "c.json", "--out", "out", "--tables", "users"]);
    cmd.env("PALIGO_USERNAME", USERNAME).env("PALIGO_API_KEY", API_KEY);
    wd.stdout(&mut cmd);
    compact(&wd);
    assert_exact(&wd, &opts, &["users"]);
    // Without them the same configuration is refused, naming what is missing.
    let mut cmd = wd.command(&["check", "paligo", "--config", "c.json"]);
    let err = wd.fails(cmd.env("PALIGO_API_KEY", API_KEY), 2);
    assert!(one_line(&err).contains("PALIGO_USERNAME"), "{err}");
    let mut cmd = wd.command(&["check", "paligo", "--config", "c.json"]);
    let err = wd.fails(cmd.env("PALIGO_USERNAME", USERNAME), 2);
    assert!(one_line(&err).contains("PALIGO_API_KEY"), "{err}");
}

/// `instance` without `base_url` passes validation and means
/// `https://<instance>.paligoapp.com`: the binary, sent through an HTTPS proxy that
/// only listens, asks it for a tunnel to that host, and sends it no credential.
#[test]
fn an_instance_means_its_paligoapp_host() {
    let wd = Workdir::new("pg-instance");
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = proxy.local_addr().unwrap().port();
    let heard = std::thread::spawn(move || {
        let (conn, _) = proxy.accept().unwrap();
        let mut head = String::new();
        let mut reader = BufReader::new(conn);
        while reader.read_line(&mut head).unwrap() > 0 && !head.ends_with("\r\n\r\n") {}
        head // dropping the connection fails the request
    });
    wd.write(
        "c.json",
        &format!(
            r#"{{"username": "{USERNAME}", "api_key": "{API_KEY}", "instance": "acme-docs", "retry_attempts": 0}}"#
        ),
    );
    let mut cmd = wd.command(&["check", "paligo", "--config", "c.json"]);
    for var in ["ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"] {
        cmd.env_remove(var);
    }
    cmd.env("HTTPS_PROXY", format!("http://127.0.0.1:{port}"));
    let out = wd.output(&mut cmd);
    let head = heard.join().unwrap();
    assert!(head.starts_with("CONNECT acme-docs.paligoapp.com:443 "), "{head}\n{}", describe(&cmd, &out));
    assert!(!head.contains(API_KEY) && !head.to_ascii_lowercase().contains("authorization"), "{head}");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&cmd, &out));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(one_line(&err).contains("acme-docs.paligoapp.com/api/v2"), "{err}");
}

/// Unix seconds now.
fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `created_at` of every assignment of the mock, with its record.
fn created(paligo: &Paligo) -> Vec<(i64, String)> {
    let records = paligo.expected("assignments");
    let at = |r: &String| serde_json::from_str::<Value>(r).unwrap()["created_at"].as_i64().unwrap();
    records.into_iter().map(|r| (at(&r), r)).collect()
}

#[test]
fn initial_sync_days_keeps_only_assignments_created_in_the_window() {
    let wd = Workdir::new("pg-days");
    let opts = MockOptions { records: 2000, seed: 9, ..MockOptions::default() };
    let server = start(&opts);
    let all = created(&Paligo::new(&opts));
    let mut times: Vec<i64> = all.iter().map(|(t, _)| *t).collect();
    times.sort_unstable();
    // A window reaching back to about the median record, its edge moved off any
    // record by whole days so that the seconds the test takes cannot matter.
    let t0 = now();
    let mut days = (t0 - times[times.len() / 2]) / 86_400;
    while times.iter().any(|&t| (t - (t0 - days * 86_400)).abs() < 600) {
        days += 1;
    }
    let cutoff = t0 - days * 86_400;
    let want: Vec<String> = all.iter().filter(|(t, _)| *t >= cutoff).map(|(_, r)| r.clone()).collect();
    assert!(want.len() > 100 && want.len() + 100 < all.len(), "the window keeps {} of {}", want.len(), all.len());
    let cfg = config(&wd, &server, &format!(r#", "initial_sync_days": "{days}""#));
    wd.stdout(&mut sync(&wd, &cfg, &["assignments"]));
    assert!(now() - t0 < 300, "the sync took too long for the window's margin");
    assert_eq!(row_count(&wd.path("out"), "assignments"), want.len(), "rows appended");
    compact(&wd);
    assert_table(&wd.path("out"), "paligo", "assignments", &want);
    // The cut-off is kept: a later sync with a wider window adds nothing older.
    let cfg = config(&wd, &server, r#", "initial_sync_days": 36500"#);
    wd.stdout(&mut sync(&wd, &cfg, &["assignments"]));
    compact(&wd);
    assert_table(&wd.path("out"), "paligo", "assignments", &want);
}
