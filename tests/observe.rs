//! A sync you can watch, script and carry: progress on a terminal and in a cron log,
//! `last_sync.json` for monitoring, `manifest.json` and `verify` for an export carried
//! elsewhere, output that spreadsheets and databases load as written, and a
//! configuration that says what is wrong with it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use api2csv::mock::mailerlite::{MailerLite, API_KEY};
use api2csv::mock::paligo::Paligo;
use api2csv::mock::MockOptions;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::directory::{exit_within, lines, mock, one_line, signal, snapshot, spawn, state, sync, wait_until};
use crate::expected::{flatten, read_table, rows_by_key};
use crate::mailerlite::TABLES;
use crate::workdir::{describe, has_tool, Workdir};

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The label of the stream that reads subscribers, groups and memberships.
const STREAM: &str = "subscriber + group + group_subscriber";

// --- progress -----------------------------------------------------------------------

#[test]
fn a_terminal_sees_one_progress_line_redrawn_in_place() {
    if !has_tool("script", "a_terminal_sees_one_progress_line_redrawn_in_place") {
        return;
    }
    let wd = Workdir::new("obs-pty");
    // 300 pages at most 100 a second: the live line has seconds to be redrawn in.
    let opts = MockOptions { records: 3000, seed: 2, rate_limit: Some((100, 1)), ..MockOptions::default() };
    let (_m, cfg) = mock(&wd, &opts, 1, "c.json", r#", "max_records_per_page": 10"#);
    let bin = env!("CARGO_BIN_EXE_api2csv");
    let line = format!("{bin} sync mailerlite --config {cfg} --out out");
    // script(1) runs the sync on a pseudo-terminal and copies what it shows to stdout.
    let mut cmd = Command::new("script");
    cmd.current_dir(&wd.dir).args(["-q", "-e", "-c", &line, "/dev/null"]).stdin(Stdio::null());
    cmd.env("TERM", "xterm").env("API2CSV_TEST_BACKOFF_MS", "5");
    for var in ["MAILERLITE_API_KEY", "PALIGO_USERNAME", "PALIGO_API_KEY", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    let out = wd.output(&mut cmd);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    let shown = String::from_utf8_lossy(&out.stdout);
    // The terminal turns each \n into \r\n; a redraw is a \r that starts a line again.
    let draws: Vec<&str> = shown.split('\r').filter(|s| !s.starts_with('\n')).collect();
    let mut pages = BTreeSet::new();
    // Percent and ETA come first, then the label (shortened to fit), then the pages.
    let live = |d: &str| -> Option<u64> {
        let fields: Vec<&str> = d.strip_suffix("\x1b[K")?.split("  ").collect();
        fields.iter().find(|f| f.starts_with("subscriber + group"))?;
        fields.iter().find_map(|f| f.strip_suffix(" pages").or_else(|| f.strip_suffix(" page"))?.parse().ok())
    };
    for (draw, n) in draws.iter().filter_map(|d| Some((d, live(d)?))) {
        pages.insert(n);
        // The percentage is of the 3000 subscribers the API announced: after n pages of
        // 10 at most n / 3 % of them are read, whatever else the stream brought along.
        let percent = draw.split("  ").find_map(|f| f.strip_suffix('%')?.parse::<u64>().ok());
        assert!(percent.is_some_and(|p| p <= n / 3), "{n} pages of 10 of 3000 subscribers: {draw:?}");
    }
    assert!(pages.iter().filter(|&&n| n > 0).count() >= 2, "the live line was not redrawn as pages came:\n{shown:?}");
    let ml = MailerLite::new(&opts);
    let read: usize = STREAM.split(" + ").map(|t| ml.expected(t).len()).sum();
    let summary = format!("{STREAM}: read {read}, ");
    assert!(draws.iter().any(|d| d.starts_with(&summary)), "no summary line {summary:?}:\n{shown:?}");
}

#[test]
fn a_pipe_gets_periodic_info_lines_and_no_redraws() {
    let wd = Workdir::new("obs-pipe");
    let opts = MockOptions { records: 3000, seed: 2, ..MockOptions::default() };
    let (_m, cfg) = mock(&wd, &opts, 1, "c.json", r#", "max_records_per_page": 10"#);
    let mut cmd = sync(&wd, &cfg);
    cmd.env("API2CSV_PROGRESS_INTERVAL_MS", "1");
    let out = wd.output(&mut cmd);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains('\r') && !err.contains('\x1b'), "terminal codes in a pipe: {err:?}");
    let periodic: Vec<String> = lines(&err)
        .into_iter()
        .filter(|l| l.starts_with(&format!("info: {STREAM}: ")) && l.contains(" rows"))
        .collect();
    assert!(periodic.len() >= 2, "no periodic progress lines:\n{err}");
}

#[test]
fn quiet_prints_nothing_at_all_on_success() {
    let wd = Workdir::new("obs-quiet");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 300, ..MockOptions::default() }, 1, "c.json", "");
    let mut cmd = wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "-q"]);
    cmd.env("API2CSV_PROGRESS_INTERVAL_MS", "1");
    let out = wd.output(&mut cmd);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    assert_eq!((&out.stdout[..], &out.stderr[..]), (&b""[..], &b""[..]), "{}", describe(&cmd, &out));
    assert_eq!(read_table(&wd.path("out/subscriber.csv")).rows.len(), 300);
}

// --- last_sync.json -----------------------------------------------------------------

/// The fields every `last_sync.json` has, whatever the outcome.
fn assert_run_fields(last: &Value, status: &str, exit: i64) {
    assert_eq!((last["status"].as_str(), last["exit_status"].as_i64()), (Some(status), Some(exit)), "{last}");
    assert_eq!(last["connector"], "mailerlite");
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    for key in ["started_at", "finished_at"] {
        let at = last[key].as_str().unwrap_or_else(|| panic!("{key}: {last}"));
        assert!(at.ends_with('Z') && time::OffsetDateTime::parse(at, rfc3339).is_ok(), "{key}: {at}");
    }
    for key in ["seconds", "requests", "retries", "rate_limited", "rate_limit_wait_seconds", "pages_committed"] {
        assert!(last[key].as_f64().is_some_and(|v| v >= 0.0), "{key}: {last}");
    }
}

#[test]
fn last_sync_json_counts_what_a_successful_run_did() {
    let wd = Workdir::new("obs-last-ok");
    let opts = MockOptions { records: 1500, seed: 4, rate_limit: Some((5, 1)), ..MockOptions::default() };
    let (g1, cfg1) = mock(&wd, &opts, 1, "g1.json", "");
    wd.stdout(&mut sync(&wd, &cfg1));
    let last = json(&wd.path("out/last_sync.json"));
    assert_run_fields(&last, "ok", 0);
    assert_eq!(last["error"], Value::Null);
    assert_eq!(last["requests"].as_u64(), Some(g1.requests()), "every request the API answered: {last}");
    assert!(last["rate_limited"].as_u64() > Some(0), "the rate limit was not met: {last}");
    assert!(last["retries"].as_u64() >= last["rate_limited"].as_u64(), "{last}");
    assert!(last["rate_limit_wait_seconds"].as_f64() > Some(0.0), "{last}");
    let ml = MailerLite::new(&opts);
    let mut table_requests = 0;
    for t in TABLES {
        let s = &last["tables"][t];
        let n = ml.expected(t).len() as u64;
        let counts = ["read", "new", "changed", "unchanged", "deleted"].map(|k| s[k].as_u64().unwrap());
        assert_eq!(counts, [n, n, 0, 0, 0], "{t}: read, new, changed, unchanged, deleted: {s}");
        assert!(s["pages"].as_u64() > Some(0), "{t}: {s}");
        table_requests += s["requests"].as_u64().unwrap();
    }
    // One request more proves the credentials before any table is read.
    assert_eq!(Some(table_requests + 1), last["requests"].as_u64(), "{last}");

    // The account changes: the next run counts exactly the changes.
    let opts2 = MockOptions { generation: 2, rate_limit: None, ..opts.clone() };
    let (_g2, cfg2) = mock(&wd, &opts2, 2, "g2.json", "");
    wd.stdout(&mut sync(&wd, &cfg2));
    let last = json(&wd.path("out/last_sync.json"));
    assert_run_fields(&last, "ok", 0);
    assert_eq!((last["retries"].as_u64(), last["rate_limited"].as_u64()), (Some(0), Some(0)), "{last}");
    let (ml2, mutations) = (MailerLite::new(&opts2), MailerLite::new(&opts2).mutations());
    let mut changes = 0;
    for t in TABLES {
        let s = &last["tables"][t];
        let m = mutations.table(t).cloned().unwrap_or_default();
        let read = ml2.expected(t).len() as u64;
        let (new, changed, deleted) = (m.added.len() as u64, m.changed.len() as u64, m.deleted.len() as u64);
        let want = [read, new, changed, read - new - changed, deleted];
        let got = ["read", "new", "changed", "unchanged", "deleted"].map(|k| s[k].as_u64().unwrap());
        assert_eq!(got, want, "{t}: read, new, changed, unchanged, deleted: {s}");
        changes += new + changed + deleted;
    }
    assert!(changes > 10, "generation 2 changed too little to test anything");
}

#[test]
fn last_sync_json_records_a_failed_run_and_its_error_line() {
    let wd = Workdir::new("obs-last-failed");
    let opts = MockOptions { records: 3000, seed: 8, ..MockOptions::default() };
    let (mut server, cfg) = mock(&wd, &opts, 1, "c.json", r#", "max_records_per_page": 10, "retry_attempts": 2"#);
    let mut child = spawn(&wd, &["sync", "mailerlite", "--config", &cfg, "--out", "out"], "sync.err");
    wait_until("a few pages committed", || {
        state(&wd.path("out"))["tables"]["subscriber"]["file"]["rows"].as_u64() > Some(100)
    });
    // The API goes away mid-table.
    server.shutdown();
    let status = exit_within(&mut child, Duration::from_secs(60));
    let err = fs::read_to_string(wd.path("sync.err")).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    let line = lines(&err).pop().unwrap();
    let message = line.strip_prefix("error: ").unwrap_or_else(|| panic!("{line}"));
    assert!(message.contains(&server.origin()), "{message}");
    let last = json(&wd.path("out/last_sync.json"));
    assert_run_fields(&last, "failed", 1);
    assert_eq!(last["error"], message, "{last}");
    assert!(last["pages_committed"].as_u64() > Some(0), "{last}");
}

#[test]
fn last_sync_json_records_an_interrupted_run() {
    let wd = Workdir::new("obs-last-term");
    let (_m, cfg) = mock(
        &wd,
        &MockOptions { records: 3000, ..MockOptions::default() },
        1,
        "c.json",
        r#", "max_records_per_page": 10"#,
    );
    let mut child = spawn(&wd, &["sync", "mailerlite", "--config", &cfg, "--out", "out"], "sync.err");
    wait_until("a few pages committed", || {
        state(&wd.path("out"))["tables"]["subscriber"]["file"]["rows"].as_u64() > Some(100)
    });
    signal(&child, "TERM");
    let status = exit_within(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(143));
    let last = json(&wd.path("out/last_sync.json"));
    assert_run_fields(&last, "interrupted", 143);
    let error = last["error"].as_str().unwrap();
    assert!(
        error.starts_with("interrupted by SIGTERM: ") && error.ends_with("run the same command to resume"),
        "{error}"
    );
}

// --- manifest.json and verify -------------------------------------------------------

/// Asserts `DIR/manifest.json` describes each table file as it is now.
fn assert_manifest(dir: &Path) {
    let m = json(&dir.join("manifest.json"));
    assert_eq!((m["version"].as_u64(), m["connector"].as_str()), (Some(1), Some("mailerlite")), "{m}");
    let files: BTreeSet<String> = m["files"].as_object().unwrap().keys().cloned().collect();
    let want: BTreeSet<String> = TABLES.iter().map(|t| format!("{t}.csv")).collect();
    assert_eq!(files, want);
    for t in TABLES {
        let file = format!("{t}.csv");
        let e = &m["files"][&file];
        let bytes = fs::read(dir.join(&file)).unwrap();
        let table = read_table(&dir.join(&file));
        assert_eq!(e["bytes"].as_u64(), Some(bytes.len() as u64), "{file}: {e}");
        assert_eq!(e["sha256"].as_str(), Some(format!("{:x}", Sha256::digest(&bytes)).as_str()), "{file}");
        assert_eq!(e["rows"].as_u64(), Some(table.rows.len() as u64), "{file}: {e}");
        assert_eq!(e["columns"].as_u64(), Some(table.header.len() as u64), "{file}: {e}");
    }
}

#[test]
fn the_manifest_proves_a_copy_arrived_intact() {
    let wd = Workdir::new("obs-manifest");
    let opts = MockOptions { records: 500, seed: 3, ..MockOptions::default() };
    let (_g1, cfg1) = mock(&wd, &opts, 1, "g1.json", "");
    let (_g2, cfg2) = mock(&wd, &opts, 2, "g2.json", "");
    wd.stdout(&mut sync(&wd, &cfg1));
    wd.stdout(&mut sync(&wd, &cfg2));
    assert_manifest(&wd.path("out"));
    let before: u64 = TABLES.iter().map(|t| read_table(&wd.path(&format!("out/{t}.csv"))).rows.len() as u64).sum();
    wd.stdout(&mut wd.command(&["compact", "out"]));
    assert_manifest(&wd.path("out"));
    let after: u64 = TABLES.iter().map(|t| read_table(&wd.path(&format!("out/{t}.csv"))).rows.len() as u64).sum();
    assert!(after < before, "compact had nothing to do, so the manifest after it proves nothing");

    let said = wd.stdout(&mut wd.command(&["verify", "out"]));
    assert!(said.contains("5 files match"), "{said}");
    let group = wd.path("out/group.csv");
    let good = fs::read(&group).unwrap();
    fs::OpenOptions::new().append(true).open(&group).unwrap().write_all(b"x").unwrap();
    let line = one_line(&wd.fails(&mut wd.command(&["verify", "out"]), 1));
    assert!(line.contains("out/group.csv"), "{line}");
    fs::write(&group, good).unwrap();
    wd.stdout(&mut wd.command(&["verify", "out"]));

    let copied = Command::new("cp").current_dir(&wd.dir).args(["-r", "out", "carried"]).status().unwrap();
    assert!(copied.success());
    let said = wd.stdout(&mut wd.command(&["verify", "carried"]));
    assert!(said.contains("5 files match"), "{said}");
}

// --- loading the output elsewhere ---------------------------------------------------

/// The primary keys of each table of the demo's final account, joined with `,`.
fn demo_keys() -> BTreeMap<(&'static str, &'static str), BTreeSet<String>> {
    let opts = MockOptions { records: 2000, generation: 2, ..MockOptions::default() };
    let (ml, pl) = (MailerLite::new(&opts), Paligo::new(&opts));
    let mut out = BTreeMap::new();
    for connector in ["mailerlite", "paligo"] {
        for spec in api2csv::connector::tables(connector).unwrap() {
            let records = if connector == "paligo" { pl.expected(spec.name) } else { ml.expected(spec.name) };
            let keys = records
                .iter()
                .map(|text| {
                    let v: Value = serde_json::from_str(text).unwrap();
                    let key = spec.primary_key.iter().map(|k| match &v[k] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    key.collect::<Vec<_>>().join(",")
                })
                .collect();
            out.insert((connector, spec.name), keys);
        }
    }
    out
}

/// Reads each file with Python's csv module: rows, whether every row has the header's
/// width, and the primary keys (columns given after the file).
const PYTHON_READER: &str = r#"
import csv, json, sys
out = {}
for arg in sys.argv[1:]:
    path, cols = arg.split("=")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    idx = [header.index(c) for c in cols.split(",")]
    out[path] = {"rows": len(rows), "even": all(len(r) == len(header) for r in rows),
                 "keys": [",".join(r[i] for i in idx) for r in rows]}
print(json.dumps(out))
"#;

#[test]
fn the_demo_output_loads_in_python_and_sqlite_with_exact_ids() {
    let test = "the_demo_output_loads_in_python_and_sqlite_with_exact_ids";
    if !has_tool("python3", test) || !has_tool("sqlite3", test) {
        return;
    }
    let wd = Workdir::new("obs-demo");
    wd.stdout(&mut wd.command(&["demo", "--out", "demo"]));
    let want = demo_keys();
    let mut args = vec!["-c".to_string(), PYTHON_READER.to_string()];
    for (connector, table) in want.keys() {
        let pk = api2csv::connector::tables(connector).unwrap().iter().find(|s| s.name == *table).unwrap().primary_key;
        args.push(format!("demo/{connector}/{table}.csv={}", pk.join(",")));
    }
    let mut cmd = Command::new("python3");
    cmd.current_dir(&wd.dir).args(&args);
    let py: Value = serde_json::from_str(&wd.stdout(&mut cmd)).unwrap();
    let mut long_ids = 0;
    for ((connector, table), keys) in &want {
        let file = format!("demo/{connector}/{table}.csv");
        let got = &py[&file];
        assert_eq!(got["rows"].as_u64(), Some(keys.len() as u64), "python: {file}: rows");
        assert_eq!(got["even"], true, "python: {file}: a row of another width");
        let py_keys: BTreeSet<String> =
            got["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().into()).collect();
        assert_eq!(&py_keys, keys, "python: {file}: keys");

        let pk = api2csv::connector::tables(connector).unwrap().iter().find(|s| s.name == *table).unwrap().primary_key;
        let key_sql = pk.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(" || ',' || ");
        let mut cmd = Command::new("sqlite3");
        cmd.current_dir(&wd.dir).args([
            ":memory:",
            "-cmd",
            &format!(".import --csv {file} t"),
            &format!("SELECT count(*) FROM t; SELECT {key_sql} FROM t;"),
        ]);
        let shown = wd.stdout(&mut cmd);
        let mut lines = shown.lines();
        assert_eq!(lines.next().and_then(|n| n.parse().ok()), Some(keys.len()), "sqlite3: {file}: rows");
        let sql_keys: BTreeSet<String> = lines.map(String::from).collect();
        assert_eq!(&sql_keys, keys, "sqlite3: {file}: keys");
        long_ids += keys.iter().filter(|k| k.split(',').any(|id| id.len() == 18)).count();
    }
    assert!(long_ids > 1000, "no 18-digit ids were compared: {long_ids}");
}

// --- --bom and --spreadsheet-safe ---------------------------------------------------

/// A value as `--spreadsheet-safe` writes it.
fn guarded(v: &str) -> String {
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    }
}

/// Asserts the compacted `table` holds `records`, each value as `--spreadsheet-safe` writes it.
fn assert_guarded_table(dir: &Path, table: &str, records: &[String]) {
    let spec = api2csv::connector::tables("mailerlite").unwrap().iter().find(|t| t.name == table).unwrap();
    let got = rows_by_key(dir, table, spec.primary_key);
    let mut want = BTreeMap::new();
    for text in records {
        let v: Value = serde_json::from_str(text).unwrap();
        let mut cells = flatten(&v, spec.timestamps, false);
        let key = spec.primary_key.iter().map(|k| cells[&vec![k.to_string()]].clone()).collect::<Vec<_>>().join(",");
        cells.values_mut().for_each(|c| *c = guarded(c));
        want.insert(key, cells);
    }
    assert_eq!(got.len(), want.len(), "{table}: records");
    for (key, cells) in &want {
        assert_eq!(got.get(key), Some(cells), "{table}: record {key}");
    }
}

fn starts_with_bom(path: &Path) -> bool {
    let bytes = fs::read(path).unwrap();
    bytes.starts_with(b"\xef\xbb\xbf") && !bytes[3..].starts_with(b"\xef\xbb\xbf")
}

/// Every cell a spreadsheet would run as a formula, anywhere in the file.
fn formulas(path: &Path) -> Vec<String> {
    let t = read_table(path);
    t.rows.iter().flatten().filter(|c| *c != &guarded(c)).cloned().collect()
}

#[test]
fn bom_and_spreadsheet_safe_are_kept_by_later_syncs_and_compact() {
    let wd = Workdir::new("obs-bom");
    let opts = MockOptions { records: 400, seed: 12, ..MockOptions::default() };
    let (_g1, cfg1) = mock(&wd, &opts, 1, "g1.json", "");
    let (_g2, cfg2) = mock(&wd, &opts, 2, "g2.json", "");
    wd.stdout(&mut wd.command(&[
        "sync",
        "mailerlite",
        "--config",
        &cfg1,
        "--out",
        "out",
        "--bom",
        "--spreadsheet-safe",
    ]));
    let text = fs::read_to_string(wd.path("out/subscriber.csv")).unwrap();
    for value in ["=SUM(A1:A2)", "+49 30 1234567", "-5 Discount", "@handle"] {
        assert!(text.contains(&format!("'{value}")), "the mock's {value:?} was not guarded");
    }
    assert!(starts_with_bom(&wd.path("out/subscriber.csv")));

    // Later runs, without the flags, keep both: state.json remembers them.
    wd.stdout(&mut sync(&wd, &cfg2));
    for t in TABLES {
        let path = wd.path(&format!("out/{t}.csv"));
        assert!(starts_with_bom(&path), "{t}: one byte order mark at the start");
        assert_eq!(formulas(&path), Vec::<String>::new(), "{t}: unguarded cells");
    }
    wd.stdout(&mut wd.command(&["compact", "out"]));
    let ml = MailerLite::new(&MockOptions { generation: 2, ..opts });
    for t in TABLES {
        assert!(starts_with_bom(&wd.path(&format!("out/{t}.csv"))), "{t}: compact dropped the byte order mark");
        assert_guarded_table(&wd.path("out"), t, &ml.expected(t));
    }
    wd.stdout(&mut wd.command(&["verify", "out"]));
}

#[test]
fn bom_on_a_directory_written_without_it_needs_full_refresh() {
    let wd = Workdir::new("obs-bom-later");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 100, ..MockOptions::default() }, 1, "c.json", "");
    wd.stdout(&mut sync(&wd, &cfg));
    for flag in ["--bom", "--spreadsheet-safe"] {
        let before = snapshot(&wd.path("out"));
        let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", flag]), 2);
        let line = one_line(&err);
        assert!(line.contains(flag) && line.contains("--full-refresh"), "{line}");
        assert_eq!(snapshot(&wd.path("out")), before, "{flag}: the refused sync changed the directory");
    }
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "--bom", "--full-refresh"]));
    wd.stdout(&mut sync(&wd, &cfg));
    for t in TABLES {
        assert!(starts_with_bom(&wd.path(&format!("out/{t}.csv"))), "{t}");
    }
    assert_eq!(state(&wd.path("out"))["output"]["bom"], true);
}

// --- configuration ------------------------------------------------------------------

#[test]
fn config_from_standard_input() {
    let wd = Workdir::new("obs-stdin");
    let server = crate::mailerlite::start(&MockOptions { records: 40, ..MockOptions::default() });
    let text = format!(r#"{{"api_key": "{API_KEY}", "base_url": "{}/api"}}"#, server.origin());
    let mut child = wd
        .command(&["sync", "mailerlite", "--config", "-", "--out", "out"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_table(&wd.path("out/subscriber.csv")).rows.len(), 40);
}

#[test]
fn a_mistyped_key_gets_a_suggestion() {
    let wd = Workdir::new("obs-typo");
    let server = crate::mailerlite::start(&MockOptions { records: 20, ..MockOptions::default() });
    wd.write("typo.json", &format!(r#"{{"apikey": "{API_KEY}", "base_url": "{}/api"}}"#, server.origin()));
    // The key also in the environment: the run works, and says what it ignored.
    let mut cmd = wd.command(&["sync", "mailerlite", "--config", "typo.json", "--out", "out"]);
    cmd.env("MAILERLITE_API_KEY", API_KEY);
    let out = wd.output(&mut cmd);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    let warnings: Vec<String> = lines(&err).into_iter().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("\"apikey\"") && warnings[0].contains("did you mean \"api_key\""), "{}", warnings[0]);
    // Only in the file, under the wrong name: the one error line points at the typo.
    let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", "typo.json", "--out", "out2"]), 2);
    let line = one_line(&err);
    assert!(line.contains("api_key: required") && line.contains("did you mean \"api_key\""), "{line}");
    assert!(!line.contains(API_KEY), "the key leaked: {line}");
}

#[test]
fn an_empty_key_in_the_file_falls_back_to_the_environment() {
    let wd = Workdir::new("obs-empty-key");
    let server = crate::mailerlite::start(&MockOptions { records: 20, ..MockOptions::default() });
    wd.write("c.json", &format!(r#"{{"api_key": "", "base_url": "{}/api"}}"#, server.origin()));
    let line = one_line(&wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", "c.json", "--out", "out"]), 2));
    assert!(line.contains("api_key: required") && line.contains("$MAILERLITE_API_KEY"), "{line}");
    let mut cmd = wd.command(&["sync", "mailerlite", "--config", "c.json", "--out", "out"]);
    cmd.env("MAILERLITE_API_KEY", API_KEY);
    wd.stdout(&mut cmd);
    assert_eq!(read_table(&wd.path("out/subscriber.csv")).rows.len(), 20);
}

#[test]
fn tables_given_twice_are_a_union_and_empty_is_an_error() {
    let wd = Workdir::new("obs-tables");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 30, ..MockOptions::default() }, 1, "c.json", "");
    let line = one_line(
        &wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--tables", "", "--out", "out"]), 2),
    );
    assert!(line.contains("--tables"), "{line}");
    assert!(!wd.path("out").exists());
    let args =
        ["sync", "mailerlite", "--config", &cfg, "--out", "out", "--tables", "field", "--tables", "campaign,field"];
    wd.stdout(&mut wd.command(&args));
    let tables: BTreeSet<String> = state(&wd.path("out"))["tables"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(tables, BTreeSet::from(["campaign".to_string(), "field".to_string()]));
    for t in TABLES {
        assert_eq!(wd.path(&format!("out/{t}.csv")).exists(), t == "field" || t == "campaign", "{t}");
    }
}

#[test]
fn check_prints_the_configuration_warnings() {
    let wd = Workdir::new("obs-check");
    let server = crate::mailerlite::start(&MockOptions { records: 20, ..MockOptions::default() });
    let text = format!(
        r#"{{"api_key": "{API_KEY}", "base_url": "{}/api", "max_record_per_page": 50, "sync_frequency_hours": "24"}}"#,
        server.origin()
    );
    wd.write("c.json", &text);
    let mut cmd = wd.command(&["check", "mailerlite", "--config", "c.json"]);
    let out = wd.output(&mut cmd);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("credentials accepted"));
    let warnings: Vec<String> =
        lines(&String::from_utf8(out.stderr).unwrap()).into_iter().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("did you mean \"max_records_per_page\"")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("sync_frequency_hours")), "{warnings:?}");
}
