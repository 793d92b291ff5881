//! The output directory is safe in users' hands: a file edited in a spreadsheet,
//! another account's config, a user's own CSV, a lost or hand-edited state.json are
//! each refused before a single byte of the directory changes, and `repair` gets the
//! directory going again without deleting anything.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api2csv::mock::mailerlite::{MailerLite, API_KEY};
use api2csv::mock::{MockOptions, MockServer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::expected::{assert_table, read_table, row_count};
use crate::mailerlite::{start, TABLES};
use crate::workdir::Workdir;

/// Every file under `dir`, hidden ones included: path relative to `dir` → SHA-256.
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, format!("{:x}", Sha256::digest(fs::read(&path).unwrap())));
            }
        }
    }
    out
}

/// Polls `cond` every few milliseconds until it holds; panics after a minute.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(60), "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// `dir/state.json`, or `Null` while there is none.
pub fn state(dir: &Path) -> Value {
    match fs::read(dir.join("state.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(_) => Value::Null,
    }
}

pub fn write_state(dir: &Path, state: &Value) {
    fs::write(dir.join("state.json"), state.to_string()).unwrap();
}

/// The mock of generation `g` of `opts`, and a config file `name` for it; `extra`
/// is more JSON members.
pub fn mock(wd: &Workdir, opts: &MockOptions, g: u32, name: &str, extra: &str) -> (MockServer, String) {
    let server = start(&MockOptions { generation: g, ..opts.clone() });
    let text =
        format!(r#"{{"api_key": "{API_KEY}", "base_url": "{}/api", "retry_attempts": "8"{extra}}}"#, server.origin());
    wd.write(name, &text);
    (server, name.to_string())
}

pub fn sync(wd: &Workdir, cfg: &str) -> Command {
    let mut cmd = wd.command(&["sync", "mailerlite", "--config", cfg, "--out", "out"]);
    cmd.stdout(Stdio::piped());
    cmd
}

/// Starts a sync in the background, its stderr in `stderr_file` of the workdir.
pub fn spawn(wd: &Workdir, args: &[&str], stderr_file: &str) -> Child {
    let err = fs::File::create(wd.path(stderr_file)).unwrap();
    wd.command(args).stdout(Stdio::null()).stderr(err).spawn().unwrap()
}

/// Waits for `child` to exit, at most `limit`; its exit status.
pub fn exit_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` (`TERM`, `INT`) to `child` with kill(1).
pub fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(ok.success(), "kill -{signal} failed");
}

/// The lines of `stderr` with their time stamp removed (`2026-…Z `).
pub fn lines(stderr: &str) -> Vec<String> {
    stderr.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split_once("Z ").map_or(l, |(_, m)| m).into()).collect()
}

/// The only line of `stderr`.
pub fn one_line(stderr: &str) -> String {
    let lines = lines(stderr);
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    lines[0].clone()
}

fn table_counts(wd: &Workdir) -> BTreeMap<&'static str, usize> {
    TABLES.iter().map(|t| (*t, row_count(&wd.path("out"), t))).collect()
}

/// The table file's records, header first, as a spreadsheet sees them. Writing
/// them back unchanged gives the file byte for byte, so an edit of them is the
/// edit and nothing else.
fn edit_records(path: &Path, edit: impl FnOnce(&mut Vec<csv::ByteRecord>)) {
    let bytes = fs::read(path).unwrap();
    let write = |records: &[csv::ByteRecord]| {
        let mut w = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
        for r in records {
            w.write_byte_record(r).unwrap();
        }
        w.into_inner().unwrap()
    };
    let mut r = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&bytes[..]);
    let mut records: Vec<csv::ByteRecord> = r.byte_records().map(Result::unwrap).collect();
    assert_eq!(write(&records), bytes, "{}: CSV did not round-trip", path.display());
    edit(&mut records);
    let edited = write(&records);
    assert_ne!(edited, bytes, "the edit changed nothing");
    fs::write(path, edited).unwrap();
}

/// A data row in the middle of the file, and a column of it with at least two bytes.
fn middle_cell(records: &[csv::ByteRecord]) -> (usize, usize) {
    let row = records.len() / 2;
    let col = (1..records[row].len()).find(|&c| records[row][c].len() >= 2).expect("a cell to edit");
    (row, col)
}

fn set_cell(records: &mut [csv::ByteRecord], row: usize, col: usize, value: &[u8]) {
    let mut fields: Vec<Vec<u8>> = records[row].iter().map(<[u8]>::to_vec).collect();
    fields[col] = value.to_vec();
    records[row] = csv::ByteRecord::from(fields);
}

#[derive(Clone, Copy, Debug)]
enum Edit {
    Bom,
    Crlf,
    CellLonger,
    CellShorter,
    RowDeleted,
    ColumnAdded,
}

fn apply(edit: Edit, path: &Path) {
    match edit {
        Edit::Bom => {
            let mut bytes = b"\xef\xbb\xbf".to_vec();
            bytes.extend(fs::read(path).unwrap());
            fs::write(path, bytes).unwrap();
        }
        Edit::Crlf => {
            let text = fs::read_to_string(path).unwrap();
            assert!(!text.contains('\r'), "a CRLF re-save of a file with CR in its cells is not this test");
            fs::write(path, text.replace('\n', "\r\n")).unwrap();
        }
        Edit::CellLonger => edit_records(path, |records| {
            let (row, col) = middle_cell(records);
            let value = [&records[row][col], &b" (edited)"[..]].concat();
            set_cell(records, row, col, &value);
        }),
        Edit::CellShorter => edit_records(path, |records| {
            let (row, col) = middle_cell(records);
            let value = records[row][col][..records[row][col].len() - 1].to_vec();
            set_cell(records, row, col, &value);
        }),
        Edit::RowDeleted => edit_records(path, |records| {
            records.remove(records.len() / 2);
        }),
        Edit::ColumnAdded => edit_records(path, |records| {
            for (i, r) in records.iter_mut().enumerate() {
                r.push_field(if i == 0 { b"my notes" } else { b"" });
            }
        }),
    }
}

/// Two generations synced (so each table has history), then `edit` of `table`'s
/// file: the sync refuses it and touches nothing; `repair` sets the file aside; the
/// next sync rebuilds that table alone.
fn edited_file_is_refused_then_repaired(edit: Edit, table: &str) {
    let wd = Workdir::new(&format!("dir-edit-{table}"));
    let opts = MockOptions { records: 400, seed: 21, ..MockOptions::default() };
    let (_g1, cfg1) = mock(&wd, &opts, 1, "g1.json", "");
    let (_g2, cfg2) = mock(&wd, &opts, 2, "g2.json", "");
    wd.stdout(&mut sync(&wd, &cfg1));
    wd.stdout(&mut sync(&wd, &cfg2));
    let history = table_counts(&wd);
    let path = wd.path(&format!("out/{table}.csv"));
    apply(edit, &path);
    let edited = fs::read(&path).unwrap();

    let before = snapshot(&wd.path("out"));
    let err = wd.fails(&mut sync(&wd, &cfg2), 2);
    let line = one_line(&err);
    assert!(line.contains(&format!("out/{table}.csv")), "{edit:?}: the line names another file: {line}");
    assert!(line.contains("run `api2csv repair out`"), "{edit:?}: no remedy: {line}");
    assert_eq!(snapshot(&wd.path("out")), before, "{edit:?}: the refused sync changed the directory");

    let said = wd.stdout(&mut wd.command(&["repair", "out"]));
    assert!(said.contains(&format!("{table}.csv")) && said.contains("renamed to"), "{edit:?}: {said}");
    let aside: Vec<String> = fs::read_dir(wd.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{table}.csv.edited-")))
        .collect();
    assert_eq!(aside.len(), 1, "{edit:?}: {aside:?}");
    let stamp = &aside[0][format!("{table}.csv.edited-").len()..];
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour][minute][second]Z");
    assert!(time::PrimitiveDateTime::parse(stamp, &format).is_ok(), "not a UTC time: {stamp}");
    assert!(said.contains(&aside[0]), "repair did not say where the file went: {said}");
    assert_eq!(fs::read(wd.path(&format!("out/{}", aside[0]))).unwrap(), edited, "the set-aside file changed");
    assert!(!path.exists());

    wd.stdout(&mut sync(&wd, &cfg2));
    let ml = MailerLite::new(&MockOptions { generation: 2, ..opts.clone() });
    for (t, rows) in table_counts(&wd) {
        if t == table {
            assert_eq!(rows, ml.expected(t).len(), "{edit:?}: {t} was rebuilt: one row per record");
        } else {
            assert_eq!(rows, history[t], "{edit:?}: {t} was untouched: its changelog stays");
        }
    }
    let untouched: usize = TABLES.iter().filter(|t| **t != table).map(|t| history[t]).sum();
    let records: usize = TABLES.iter().filter(|t| **t != table).map(|t| ml.expected(t).len()).sum();
    assert!(untouched > records, "generation 2 left no history to keep");
    wd.stdout(&mut wd.command(&["compact", "out"]));
    for t in TABLES {
        assert_table(&wd.path("out"), "mailerlite", t, &ml.expected(t));
    }
    assert_eq!(fs::read(wd.path(&format!("out/{}", aside[0]))).unwrap(), edited, "compact touched the set-aside file");
}

#[test]
fn a_byte_order_mark_prepended_is_refused_and_repaired() {
    edited_file_is_refused_then_repaired(Edit::Bom, "subscriber");
}

#[test]
fn a_crlf_resave_is_refused_and_repaired() {
    edited_file_is_refused_then_repaired(Edit::Crlf, "group");
}

#[test]
fn a_cell_edited_longer_is_refused_and_repaired() {
    edited_file_is_refused_then_repaired(Edit::CellLonger, "subscriber");
}

#[test]
fn a_cell_edited_shorter_is_refused_and_repaired() {
    edited_file_is_refused_then_repaired(Edit::CellShorter, "campaign");
}

#[test]
fn a_deleted_row_is_refused_and_repaired() {
    edited_file_is_refused_then_repaired(Edit::RowDeleted, "group_subscriber");
}

#[test]
fn an_added_column_is_refused_and_repaired() {
    edited_file_is_refused_then_repaired(Edit::ColumnAdded, "field");
}

#[test]
fn another_account_is_refused_and_an_older_state_is_adopted() {
    let wd = Workdir::new("dir-account");
    let mine = MockOptions { records: 200, seed: 1, ..MockOptions::default() };
    let theirs = MockOptions { seed: 2, ..mine.clone() };
    let (_a, cfg_a) = mock(&wd, &mine, 1, "mine.json", "");
    let (b, cfg_b) = mock(&wd, &theirs, 1, "theirs.json", "");
    let (id_a, id_b) = (MailerLite::new(&mine).account_id(), MailerLite::new(&theirs).account_id());
    assert_ne!(id_a, id_b);
    wd.stdout(&mut sync(&wd, &cfg_a));
    let before = snapshot(&wd.path("out"));
    let line = one_line(&wd.fails(&mut sync(&wd, &cfg_b), 2));
    assert!(line.contains("state.json") && line.contains(&id_a) && line.contains(&id_b), "{line}");
    assert_eq!(snapshot(&wd.path("out")), before, "the other account's sync changed the directory");
    assert_eq!(b.requests(), 1, "more than the credential check was asked of the other account");

    // A state.json from before the account was recorded: adopted, not refused.
    let mut s = state(&wd.path("out"));
    s.as_object_mut().unwrap().remove("account").expect("an account recorded");
    write_state(&wd.path("out"), &s);
    let counts = table_counts(&wd);
    wd.stdout(&mut sync(&wd, &cfg_a));
    assert_eq!(table_counts(&wd), counts, "the adopting sync rewrote history");
    let adopted = state(&wd.path("out"))["account"]["id"].as_str().unwrap_or_default().to_string();
    assert!(adopted.contains(&id_a), "account not recorded: {adopted:?}");
    let before = snapshot(&wd.path("out"));
    wd.fails(&mut sync(&wd, &cfg_b), 2);
    assert_eq!(snapshot(&wd.path("out")), before);
}

/// A refused sync and a refused repair, each naming `file` and touching nothing.
fn refused_untouched(wd: &Workdir, cfg: &str, file: &str) {
    let before = snapshot(&wd.path("out"));
    let line = one_line(&wd.fails(&mut sync(wd, cfg), 2));
    assert!(line.contains(&format!("out/{file}")), "{line}");
    assert_eq!(snapshot(&wd.path("out")), before, "the refused sync changed the directory");
    let err = wd.fails(&mut wd.command(&["repair", "out"]), 2);
    assert!(lines(&err).iter().any(|l| l.contains(&format!("out/{file}"))), "{err}");
    assert_eq!(snapshot(&wd.path("out")), before, "the refused repair changed the directory");
}

#[test]
fn a_users_own_table_file_is_never_overwritten() {
    let wd = Workdir::new("dir-foreign");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 50, ..MockOptions::default() }, 1, "c.json", "");
    fs::create_dir(wd.path("out")).unwrap();
    wd.write("out/subscriber.csv", "email,name\nann@example.com,Ann\n");
    refused_untouched(&wd, &cfg, "subscriber.csv");
}

#[test]
fn a_table_file_state_json_lost_is_never_overwritten() {
    let wd = Workdir::new("dir-lost-entry");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 50, ..MockOptions::default() }, 1, "c.json", "");
    wd.stdout(&mut sync(&wd, &cfg));
    let mut s = state(&wd.path("out"));
    s["tables"].as_object_mut().unwrap().remove("field").unwrap();
    write_state(&wd.path("out"), &s);
    refused_untouched(&wd, &cfg, "field.csv");
}

#[test]
fn a_directory_whose_state_json_was_deleted_is_refused() {
    let wd = Workdir::new("dir-no-state");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 50, ..MockOptions::default() }, 1, "c.json", "");
    wd.stdout(&mut sync(&wd, &cfg));
    fs::remove_file(wd.path("out/state.json")).unwrap();
    refused_untouched(&wd, &cfg, "subscriber.csv");
}

#[test]
fn out_under_a_missing_parent_creates_nothing() {
    let wd = Workdir::new("dir-parent");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 20, ..MockOptions::default() }, 1, "c.json", "");
    let before = snapshot(&wd.dir);
    let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "exprots/ml"]), 2);
    let line = one_line(&err);
    assert!(line.contains("exprots") && line.contains("does not exist"), "{line}");
    assert_eq!(snapshot(&wd.dir), before, "something was created");
    assert!(!wd.path("exprots").exists());
}

#[test]
fn full_refresh_warns_once_that_history_is_replaced() {
    let wd = Workdir::new("dir-refresh-warn");
    let opts = MockOptions { records: 300, seed: 4, ..MockOptions::default() };
    let (_g1, cfg1) = mock(&wd, &opts, 1, "g1.json", "");
    let (_g2, cfg2) = mock(&wd, &opts, 2, "g2.json", "");
    wd.stdout(&mut sync(&wd, &cfg1));
    let out = wd.output(&mut wd.command(&["sync", "mailerlite", "--config", &cfg2, "--out", "out", "--full-refresh"]));
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let warnings: Vec<String> = lines(&err).into_iter().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("--full-refresh") && warnings[0].contains("history"), "{}", warnings[0]);
    let ml = MailerLite::new(&MockOptions { generation: 2, ..opts });
    for t in TABLES {
        assert_eq!(row_count(&wd.path("out"), t), ml.expected(t).len(), "{t}: one row per record");
        assert_table(&wd.path("out"), "mailerlite", t, &ml.expected(t));
    }
}

#[test]
fn full_refresh_replaces_an_interrupted_incremental_run() {
    let wd = Workdir::new("dir-refresh-pending");
    let opts = MockOptions { records: 2000, seed: 6, ..MockOptions::default() };
    let small = r#", "max_records_per_page": 10"#;
    let (_g1, cfg1) = mock(&wd, &opts, 1, "g1.json", small);
    let (_g2, cfg2) = mock(&wd, &opts, 2, "g2.json", small);
    wd.stdout(&mut sync(&wd, &cfg1));
    let rows_g1 = state(&wd.path("out"))["tables"]["subscriber"]["file"]["rows"].as_u64().unwrap();
    let mut child = spawn(&wd, &["sync", "mailerlite", "--config", &cfg2, "--out", "out"], "g2.err");
    wait_until("the incremental sync to be half way through subscriber", || {
        let s = state(&wd.path("out"));
        s["tables"]["subscriber"]["file"]["rows"].as_u64().unwrap_or(0) > rows_g1
            && !s["tables"]["subscriber"]["resume"].is_null()
    });
    signal(&child, "TERM");
    assert_eq!(exit_within(&mut child, Duration::from_secs(10)).code(), Some(143));
    let pending = state(&wd.path("out"))["run"].clone();
    assert_eq!(pending["full_refresh"], false, "{pending}");

    let out = wd.output(&mut wd.command(&["sync", "mailerlite", "--config", &cfg2, "--out", "out", "--full-refresh"]));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("replaced by a full refresh"), "{err}");
    assert!(!err.contains("resuming"), "a full refresh does not resume the old run: {err}");
    let last: Value = serde_json::from_slice(&fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap();
    assert_eq!(last["resumed"], Value::Null, "{last}");
    assert_eq!(state(&wd.path("out"))["run"], Value::Null);
    let ml = MailerLite::new(&MockOptions { generation: 2, ..opts });
    for t in TABLES {
        assert_eq!(row_count(&wd.path("out"), t), ml.expected(t).len(), "{t}: one row per record, no history");
        assert_table(&wd.path("out"), "mailerlite", t, &ml.expected(t));
    }
}

/// Byte offsets at which each record of a CSV file starts, header included.
fn record_starts(path: &Path) -> Vec<u64> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_path(path).unwrap();
    let mut record = csv::ByteRecord::new();
    let mut starts = Vec::new();
    loop {
        let at = r.position().byte();
        if !r.read_byte_record(&mut record).unwrap() {
            return starts;
        }
        starts.push(at);
    }
}

#[test]
fn a_committed_length_that_cuts_a_row_is_refused_before_any_write() {
    let wd = Workdir::new("dir-cut-state");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 600, ..MockOptions::default() }, 1, "c.json", "");
    wd.stdout(&mut sync(&wd, &cfg));
    let good = state(&wd.path("out"));
    let starts = record_starts(&wd.path("out/subscriber.csv"));
    let tail_start = good["tables"]["subscriber"]["file"]["tail_start"].as_u64().unwrap();
    // Within the last commit, and long before it: both halfway through a row.
    let last_row = *starts.last().unwrap() + 7;
    let early_row = starts[starts.len() / 4] + 7;
    assert!(early_row < tail_start, "the file holds a single commit: {tail_start}");
    for cut in [last_row, early_row] {
        let mut s = good.clone();
        s["tables"]["subscriber"]["file"]["file_len"] = Value::from(cut);
        write_state(&wd.path("out"), &s);
        let before = snapshot(&wd.path("out"));
        let err = wd.fails(&mut sync(&wd, &cfg), 2);
        let line = one_line(&err);
        assert!(line.contains("subscriber.csv"), "cut at {cut}: {line}");
        assert_eq!(snapshot(&wd.path("out")), before, "cut at {cut}: a file was written");
    }
}

#[test]
fn a_damaged_last_table_is_found_before_the_first_is_touched() {
    let wd = Workdir::new("dir-damaged-last");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 200, ..MockOptions::default() }, 1, "c.json", "");
    wd.stdout(&mut sync(&wd, &cfg));
    // A run killed mid-page left uncommitted bytes in the first table, which a sync
    // would cut off: it must not, since the last table's file is damaged. (Only an
    // interrupted run leaves such bytes: the state says one is under way.)
    let mut s = state(&wd.path("out"));
    s["run"] = serde_json::json!({"started_at": "2026-01-01T00:00:00Z", "tables": TABLES, "done": []});
    write_state(&wd.path("out"), &s);
    let mut first = fs::read(wd.path("out/subscriber.csv")).unwrap();
    first.extend_from_slice(b"178999999999999999,partial@exa");
    fs::write(wd.path("out/subscriber.csv"), first).unwrap();
    apply(Edit::Bom, &wd.path("out/campaign.csv"));
    let before = snapshot(&wd.path("out"));
    let line = one_line(&wd.fails(&mut sync(&wd, &cfg), 2));
    assert!(line.contains("out/campaign.csv"), "{line}");
    assert_eq!(snapshot(&wd.path("out")), before, "a file was written before the damage was found");
}

#[test]
fn repair_says_when_nothing_needs_it_and_removes_leftovers() {
    let wd = Workdir::new("dir-repair-clean");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 100, ..MockOptions::default() }, 1, "c.json", "");
    wd.stdout(&mut sync(&wd, &cfg));
    let before = snapshot(&wd.path("out"));
    let said = wd.stdout(&mut wd.command(&["repair", "out"]));
    assert!(said.contains("nothing needed repair"), "{said}");
    assert_eq!(snapshot(&wd.path("out")), before, "repair with nothing to do changed the directory");

    wd.write("out/state.json.tmp", "{\"version\": 2, \"conn");
    wd.write("out/subscriber.csv.new", "id,email\n1,half a rewrite");
    let said = wd.stdout(&mut wd.command(&["repair", "out"]));
    for file in ["state.json.tmp", "subscriber.csv.new"] {
        assert!(said.lines().any(|l| l.contains(file) && l.contains("removed")), "{file}: {said}");
        assert!(!wd.path(&format!("out/{file}")).exists(), "{file} is still there");
    }
    let after = snapshot(&wd.path("out"));
    for t in TABLES {
        let file = format!("{t}.csv");
        assert_eq!(after[&file], before[&file], "{file} changed");
    }
    let counts = table_counts(&wd);
    wd.stdout(&mut sync(&wd, &cfg));
    assert_eq!(table_counts(&wd), counts, "the sync after repair appended rows");
    let t = read_table(&wd.path("out/subscriber.csv"));
    assert_eq!(t.rows.len(), 100);
}

/// The files `repair` set aside in `out`: `<table>.csv.edited-*`.
fn set_aside(wd: &Workdir, table: &str) -> Vec<String> {
    let prefix = format!("{table}.csv.edited-");
    let mut names: Vec<String> = fs::read_dir(wd.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names
}

/// A sync of `cfg` stopped by SIGTERM part way through subscriber, with keys in its
/// journal (the directory had a complete sync before).
fn interrupted_sync(wd: &Workdir, cfg: &str) {
    let mut child = spawn(wd, &["sync", "mailerlite", "--config", cfg, "--out", "out"], "interrupted.err");
    wait_until("the sync to be part way through subscriber", || {
        let s = state(&wd.path("out"));
        let table = &s["tables"]["subscriber"];
        !table["resume"].is_null() && table["seen_len"]["len"].as_u64().or(table["seen_len"].as_u64()).unwrap_or(0) > 16
    });
    signal(&child, "TERM");
    assert_eq!(exit_within(&mut child, Duration::from_secs(10)).code(), Some(143));
    assert!(!state(&wd.path("out"))["run"].is_null());
}

/// Each table of `out` compacted holds exactly the records of `ml`.
fn compacts_to(wd: &Workdir, ml: &MailerLite, context: &str) {
    wd.stdout(&mut wd.command(&["compact", "out"]));
    for t in TABLES {
        assert_eq!(row_count(&wd.path("out"), t), ml.expected(t).len(), "{context}: {t}");
        assert_table(&wd.path("out"), "mailerlite", t, &ml.expected(t));
    }
    wd.stdout(&mut wd.command(&["verify", "out"]));
}

/// A row added by hand at the end of a table file after a sync that ended is an
/// edit, not an uncommitted page: sync and compact refuse it before writing, the
/// other tables still sync with --tables, and `repair` sets the file aside.
#[test]
fn a_row_appended_after_a_clean_sync_is_an_edit() {
    let wd = Workdir::new("dir-appended-row");
    let opts = MockOptions { records: 200, seed: 31, ..MockOptions::default() };
    let (_m, cfg) = mock(&wd, &opts, 1, "c.json", "");
    wd.stdout(&mut sync(&wd, &cfg));
    let path = wd.path("out/subscriber.csv");
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(b"999999999,hand@example.com\n");
    fs::write(&path, &bytes).unwrap();

    let before = snapshot(&wd.path("out"));
    for (what, mut cmd) in [("sync", sync(&wd, &cfg)), ("compact", wd.command(&["compact", "out"]))] {
        let line = one_line(&wd.fails(&mut cmd, 2));
        assert!(line.contains("out/subscriber.csv") && line.contains("added after"), "{what}: {line}");
        assert!(line.contains("run `api2csv repair out`") && !line.contains("again"), "{what}: {line}");
        assert_eq!(snapshot(&wd.path("out")), before, "{what} changed the directory");
    }
    // The other tables sync meanwhile; the edited file is named, and left alone.
    let others = "group,group_subscriber,field,campaign";
    let out = wd.output(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "--tables", others]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("subscriber.csv") && err.contains("api2csv repair out"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "the edited file was touched");

    let said = wd.stdout(&mut wd.command(&["repair", "out"]));
    assert!(said.contains("subscriber.csv") && said.contains("renamed to"), "{said}");
    let aside = set_aside(&wd, "subscriber");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(fs::read(wd.path(&format!("out/{}", aside[0]))).unwrap(), bytes, "the row added was lost");
    wd.stdout(&mut sync(&wd, &cfg));
    compacts_to(&wd, &MailerLite::new(&MockOptions { generation: 1, ..opts }), "after repair");
}

/// A same-length edit long before the last commit (`active` → `ACTIVE`): compact
/// refuses it instead of carrying it into the compacted file, and sync finds it
/// before writing anything, state.json included.
#[test]
fn a_same_length_edit_early_in_a_file_is_refused_before_any_write() {
    let wd = Workdir::new("dir-early-edit");
    let opts = MockOptions { records: 400, seed: 33, ..MockOptions::default() };
    let (_g1, cfg1) = mock(&wd, &opts, 1, "g1.json", "");
    let (_g2, cfg2) = mock(&wd, &opts, 2, "g2.json", "");
    wd.stdout(&mut sync(&wd, &cfg1));
    wd.stdout(&mut sync(&wd, &cfg2));
    let path = wd.path("out/subscriber.csv");
    let text = fs::read_to_string(&path).unwrap();
    let at = text.find(",active,").expect("an active subscriber");
    let tail_start = state(&wd.path("out"))["tables"]["subscriber"]["file"]["tail_start"].as_u64().unwrap();
    assert!((at as u64) < tail_start, "the edit must lie before the last commit ({at} >= {tail_start})");
    let edited = format!("{},ACTIVE,{}", &text[..at], &text[at + ",active,".len()..]);
    fs::write(&path, &edited).unwrap();

    let before = snapshot(&wd.path("out"));
    for (what, mut cmd) in [("compact", wd.command(&["compact", "out"])), ("sync", sync(&wd, &cfg2))] {
        let line = one_line(&wd.fails(&mut cmd, 2));
        assert!(line.contains("out/subscriber.csv") && line.contains("committed rows differ"), "{what}: {line}");
        assert!(line.contains("run `api2csv repair out`"), "{what}: {line}");
        assert_eq!(snapshot(&wd.path("out")), before, "{what} wrote before finding the edit");
    }
    let said = wd.stdout(&mut wd.command(&["repair", "out"]));
    assert!(said.contains("subscriber.csv") && said.contains("renamed to"), "{said}");
    assert_eq!(fs::read_to_string(wd.path(&format!("out/{}", set_aside(&wd, "subscriber")[0]))).unwrap(), edited);
    wd.stdout(&mut sync(&wd, &cfg2));
    compacts_to(&wd, &MailerLite::new(&MockOptions { generation: 2, ..opts }), "after repair");
}

/// `repair` during an interrupted sync: the table set aside is read from the start
/// of its listing, not from where the interrupted run stood.
#[test]
fn a_table_set_aside_during_an_interrupted_sync_is_read_from_the_start() {
    let wd = Workdir::new("dir-repair-mid-run");
    let opts = MockOptions { records: 2000, seed: 35, ..MockOptions::default() };
    let small = r#", "max_records_per_page": 10"#;
    let (_g1, cfg1) = mock(&wd, &opts, 1, "g1.json", small);
    let (_g2, cfg2) = mock(&wd, &opts, 2, "g2.json", small);
    wd.stdout(&mut sync(&wd, &cfg1));
    interrupted_sync(&wd, &cfg2);
    apply(Edit::Bom, &wd.path("out/subscriber.csv"));
    let said = wd.stdout(&mut wd.command(&["repair", "out"]));
    assert!(said.contains("subscriber.csv") && said.contains("renamed to"), "{said}");
    wd.stdout(&mut sync(&wd, &cfg2));
    let ml = MailerLite::new(&MockOptions { generation: 2, ..opts });
    assert_eq!(row_count(&wd.path("out"), "subscriber"), ml.expected("subscriber").len(), "a partial rebuild");
    // The run repair changed could not delete (repair turned that off): the next
    // one does, and finds nothing new or changed.
    wd.stdout(&mut sync(&wd, &cfg2));
    let last: Value = serde_json::from_slice(&fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap();
    for t in TABLES {
        assert_eq!(
            (&last["tables"][t]["new"], &last["tables"][t]["changed"]),
            (&Value::from(0), &Value::from(0)),
            "{t}"
        );
    }
    compacts_to(&wd, &ml, "after the rebuild");
}

#[derive(Clone, Copy, Debug)]
enum Journal {
    Zeroed,
    Deleted,
    /// Another run's journal, with state.json's length and checksum made to fit it.
    OtherRun,
}

/// A journal of keys read that does not prove itself is never believed: the table is
/// read again in full, and no live record gets a tombstone.
#[test]
fn a_journal_that_does_not_prove_itself_is_read_again() {
    let wd = Workdir::new("dir-journal");
    let opts = MockOptions { records: 2000, seed: 37, ..MockOptions::default() };
    let small = r#", "max_records_per_page": 10"#;
    let (_g1, cfg1) = mock(&wd, &opts, 1, "g1.json", small);
    let (_g2, cfg2) = mock(&wd, &opts, 2, "g2.json", small);
    wd.stdout(&mut sync(&wd, &cfg1));
    let copy = |from: &str, to: &str| {
        let _ = fs::remove_dir_all(wd.path(to));
        fs::create_dir(wd.path(to)).unwrap();
        for e in fs::read_dir(wd.path(from)).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), wd.path(to).join(e.file_name())).unwrap();
        }
    };
    copy("out", "g1");
    interrupted_sync(&wd, &cfg2);
    let other = fs::read(wd.path("out/.subscriber.seen")).unwrap();
    copy("g1", "out");
    interrupted_sync(&wd, &cfg2);
    copy("out", "mid");
    let ml = MailerLite::new(&MockOptions { generation: 2, ..opts });
    for tamper in [Journal::Zeroed, Journal::Deleted, Journal::OtherRun] {
        copy("mid", "out");
        let journal = wd.path("out/.subscriber.seen");
        match tamper {
            Journal::Zeroed => fs::write(&journal, vec![0; fs::metadata(&journal).unwrap().len() as usize]).unwrap(),
            Journal::Deleted => fs::remove_file(&journal).unwrap(),
            Journal::OtherRun => {
                fs::write(&journal, &other).unwrap();
                let mut s = state(&wd.path("out"));
                s["tables"]["subscriber"]["seen_len"] =
                    serde_json::json!({"len": other.len(), "crc": crc32fast::hash(&other)});
                write_state(&wd.path("out"), &s);
            }
        }
        let out = wd.output(&mut sync(&wd, &cfg2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{tamper:?}: {err}");
        assert!(err.contains(".subscriber.seen") && err.contains("again from its start"), "{tamper:?}: {err}");
        compacts_to(&wd, &ml, &format!("{tamper:?}"));
    }
}

/// A wrong SHA-256 in manifest.json is not copied into the next manifest.
#[test]
fn a_wrong_digest_in_the_manifest_is_computed_again() {
    let wd = Workdir::new("dir-manifest-digest");
    let (_m, cfg) = mock(&wd, &MockOptions { records: 100, seed: 39, ..MockOptions::default() }, 1, "c.json", "");
    wd.stdout(&mut sync(&wd, &cfg));
    let path = wd.path("out/manifest.json");
    let mut m: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let real = m["files"]["subscriber.csv"]["sha256"].as_str().unwrap().to_string();
    m["files"]["subscriber.csv"]["sha256"] = Value::from("0".repeat(64));
    fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    wd.fails(&mut wd.command(&["verify", "out"]), 1);
    wd.stdout(&mut sync(&wd, &cfg));
    let m: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(m["files"]["subscriber.csv"]["sha256"], real.as_str());
    wd.stdout(&mut wd.command(&["verify", "out"]));
}

/// An older state.json put back (a backup restore) is refused before anything is
/// cut, and `repair` sets the files it does not know in full aside.
#[test]
fn an_older_state_put_back_is_refused_and_repaired() {
    let wd = Workdir::new("dir-old-state");
    let opts = MockOptions { records: 300, seed: 41, ..MockOptions::default() };
    let (_g1, cfg1) = mock(&wd, &opts, 1, "g1.json", "");
    let (_g2, cfg2) = mock(&wd, &opts, 2, "g2.json", "");
    wd.stdout(&mut sync(&wd, &cfg1));
    let old = fs::read(wd.path("out/state.json")).unwrap();
    wd.stdout(&mut sync(&wd, &cfg2));
    let synced = fs::read(wd.path("out/subscriber.csv")).unwrap();
    fs::write(wd.path("out/state.json"), &old).unwrap();

    let before = snapshot(&wd.path("out"));
    for (what, mut cmd) in [("sync", sync(&wd, &cfg2)), ("compact", wd.command(&["compact", "out"]))] {
        let line = one_line(&wd.fails(&mut cmd, 2));
        assert!(line.contains("out/subscriber.csv") && line.contains("state.json is older"), "{what}: {line}");
        assert!(line.contains("run `api2csv repair out`"), "{what}: {line}");
        assert_eq!(snapshot(&wd.path("out")), before, "{what} changed the directory");
    }
    let said = wd.stdout(&mut wd.command(&["repair", "out"]));
    assert!(said.contains("subscriber.csv") && said.contains("renamed to"), "{said}");
    assert_eq!(fs::read(wd.path(&format!("out/{}", set_aside(&wd, "subscriber")[0]))).unwrap(), synced);
    wd.stdout(&mut sync(&wd, &cfg2));
    compacts_to(&wd, &MailerLite::new(&MockOptions { generation: 2, ..opts }), "after repair");
}
