//! Two faults in a row, then a finishing run: the real binary is killed (SIGKILL) or
//! refused disk space (ENOSPC) at each step of each file-replacement sequence by
//! strace, then a different command is faulted at a chosen step, then a clean sync
//! and compact must leave exactly the account's records. After every fault,
//! `state.json` parses and the rows it commits follow from those committed before
//! (never lost, doubled or cut; see `committed.rs`).
//!
//! The steps are found in a clean traced run of the same command on the same
//! directory, so the tests follow the code as it changes. `API2CSV_CRASH_FULL=1`
//! faults every call of every sequence instead of the named steps.

mod committed;
mod gate;
mod lab;
pub(crate) mod strace;
mod world;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use api2csv::mock::mailerlite::MailerLite;
use api2csv::mock::paligo::Paligo;
use api2csv::mock::{self, MockOptions, MockServer};
use serde_json::Value;

use committed::Change;
use lab::{pick, state_steps, Lab};
use strace::{Act, Fault, Thread};
use world::World;

/// A small MailerLite account at `generation`, and a configuration file for it.
fn mailerlite(lab: &Lab, opts: &MockOptions, generation: u32, extra: &str) -> (MockServer, String) {
    let opts = MockOptions { generation, ..opts.clone() };
    let server = mock::start(std::sync::Arc::new(MailerLite::new(&opts)), "127.0.0.1:0", &opts).unwrap();
    let name = format!("ml-g{generation}{}.json", extra.len());
    let text = format!(
        r#"{{"api_key": "{}", "base_url": "{}/api", "max_records_per_page": 10, "retry_attempts": 2{extra}}}"#,
        mock::mailerlite::API_KEY,
        server.origin()
    );
    lab.wd.write(&name, &text);
    (server, name)
}

fn ml_expected(opts: &MockOptions, generation: u32) -> impl Fn(&str) -> Vec<String> {
    let ml = MailerLite::new(&MockOptions { generation, ..opts.clone() });
    move |table| ml.expected(table)
}

/// Scenario 1: a compact killed after its rename but before its state save, then a
/// second compact killed before it writes its side file (or refused space while
/// writing it), then a finishing run. The partial side file must never be renamed
/// over the table file.
#[test]
fn crash_compact_twice() {
    let opts = MockOptions { records: 40, seed: 21, ..MockOptions::default() };
    let lab = Lab::new("crash-compact", "mailerlite", ml_expected(&opts, 2));
    let (_g1, cfg1) = mailerlite(&lab, &opts, 1, "");
    let (_g2, cfg2) = mailerlite(&lab, &opts, 2, "");
    lab.ok(lab.sync(&cfg1, &[]));
    lab.ok(lab.sync(&cfg2, &[]));
    lab.save("base");
    let side = lab.file("subscriber.csv.new");
    let tmp = lab.file("state.json.tmp");
    let mut first = pick(lab.rewrite_steps(&lab.compact(), &side), &["renamed, state still says replace"]);
    lab.restore("base");
    let saves = state_steps(&lab.trace(&lab.compact(), &[side.clone(), tmp.clone()]), &side, &tmp);
    first.extend(pick(saves, &["state that says replaced written, not renamed"]));
    if lab::full() {
        let paths = [side.clone(), lab.file("subscriber.csv"), tmp.clone(), lab.out()];
        lab.restore("base");
        first.extend(lab::sweep_steps(&lab.trace(&lab.compact(), &paths), &side, &paths));
    }
    for f1 in &first {
        lab.restore("base");
        let before = lab.committed();
        lab.fault(&lab.compact(), f1, &before, Change::Compact);
        lab.save("mid");
        let mid = lab.committed();
        let second = lab.rewrite_steps(&lab.compact(), &side);
        let second =
            pick(second, &["side file not created yet", "ENOSPC writing the side file", "side file partly written"]);
        for f2 in &second {
            lab.restore("mid");
            lab.fault(&lab.compact(), f2, &mid, Change::Compact);
            lab.finish(&cfg2, &format!("{} then {}", f1.step, f2.step));
        }
    }
}

/// A compact killed once its state says "replace" but before the rename; then the
/// recovery at the start of the next compact killed at that rename (before it, and
/// after it); or `repair` finishing the compaction. Then a finishing run.
#[test]
fn crash_compact_then_its_recovery() {
    let opts = MockOptions { records: 40, seed: 29, ..MockOptions::default() };
    let lab = Lab::new("crash-recovery", "mailerlite", ml_expected(&opts, 2));
    let (_g1, cfg1) = mailerlite(&lab, &opts, 1, "");
    let (_g2, cfg2) = mailerlite(&lab, &opts, 2, "");
    lab.ok(lab.sync(&cfg1, &[]));
    lab.ok(lab.sync(&cfg2, &[]));
    lab.save("base");
    let side = lab.file("group.csv.new");
    // This step alone leaves a rename for the next start to do, in any mode.
    let steps = lab.rewrite_steps(&lab.compact(), &side);
    for f1 in steps.iter().filter(|s| s.step.ends_with("state says replace, not renamed")) {
        lab.restore("base");
        let before = lab.committed();
        lab.fault(&lab.compact(), f1, &before, Change::Compact);
        lab.save("mid");
        let mid = lab.committed();
        for f2 in lab.rename_steps(&lab.compact(), &side) {
            lab.restore("mid");
            lab.fault(&lab.compact(), &f2, &mid, Change::Compact);
            lab.finish(&cfg2, &format!("{} then recovery: {}", f1.step, f2.step));
        }
        lab.restore("mid");
        let mut repair = lab.wd.command(&["repair"]);
        repair.arg(lab.out());
        let said = lab.ok(repair);
        assert!(said.contains("finished the interrupted compaction of group.csv"), "{said}");
        committed::assert_follows("mailerlite", &mid, &lab.committed(), Change::Compact, "repair");
        lab.finish(&cfg2, &format!("{} then repair", f1.step));
    }
}

/// Scenario 2: a `--full-refresh` that fails twice for transient reasons (killed in the
/// middle of its rebuild, then the API dropping requests when it is rerun as a plain
/// sync), then finishes. No table file ever becomes empty or loses committed rows.
#[test]
fn crash_full_refresh_failing_twice() {
    let opts = MockOptions { records: 40, seed: 23, ..MockOptions::default() };
    let lab = Lab::new("crash-refresh-twice", "mailerlite", ml_expected(&opts, 2));
    let (_g1, cfg1) = mailerlite(&lab, &opts, 1, "");
    let (_g2, cfg2) = mailerlite(&lab, &opts, 2, "");
    let faulty = MockOptions { fault_rate: 0.2, ..opts.clone() };
    let (_f, cfg_faulty) = mailerlite(&lab, &faulty, 2, r#", "retry_attempts": 0"#);
    lab.ok(lab.sync(&cfg1, &[]));
    lab.ok(lab.sync(&cfg2, &[]));
    lab.save("base");
    let paths = [lab.file("subscriber.csv.refresh")];
    let trace = lab.trace(&lab.sync(&cfg2, &["--full-refresh"]), &paths);
    let f1 = lab::committer_step(&trace, &paths, "/subscriber.csv.refresh", "write", 2, Act::Kill);
    lab.restore("base");
    let before = lab.committed();
    lab.fault(&lab.sync(&cfg2, &["--full-refresh"]), &f1, &before, Change::Refresh);
    let mid = lab.committed();
    // Rows rebuilt so far, or kept where the rebuild is in place.
    let rebuilt = || -> u64 {
        let state = api2csv::store::state::State::load(&lab.out()).unwrap().unwrap();
        state.tables.values().map(|t| t.refresh.as_ref().map_or(t.file.rows, |r| r.rows)).sum()
    };
    let before_rerun = rebuilt();
    let mut rerun = lab.sync(&cfg_faulty, &[]);
    lab.wd.fails(&mut rerun, 1);
    assert!(rebuilt() > before_rerun, "the API failed before the rerun committed a page");
    committed::assert_follows("mailerlite", &mid, &lab.committed(), Change::Refresh, "the API failing");
    lab.finish(&cfg2, &f1.step);
}

/// A `--full-refresh --tables campaign` killed in the middle of its rebuild, then a
/// plain `sync` of every table (which continues it) killed at the rename of the
/// rebuilt campaign file, then a finishing run.
#[test]
fn crash_full_refresh_of_one_table_then_a_plain_sync() {
    let opts = MockOptions { records: 40, seed: 24, ..MockOptions::default() };
    let lab = Lab::new("crash-refresh-one", "mailerlite", ml_expected(&opts, 2));
    let (_g1, cfg1) = mailerlite(&lab, &opts, 1, "");
    let (_g2, cfg2) = mailerlite(&lab, &opts, 2, "");
    lab.ok(lab.sync(&cfg1, &[]));
    lab.ok(lab.sync(&cfg2, &[]));
    lab.save("base");
    let side = lab.file("campaign.csv.refresh");
    let paths = [side.clone()];
    let refresh = ["--full-refresh", "--tables", "campaign"];
    let trace = lab.trace(&lab.sync(&cfg2, &refresh), &paths);
    let f1 = lab::committer_step(&trace, &paths, "/campaign.csv.refresh", "write", 2, Act::Kill);
    lab.restore("base");
    let before = lab.committed();
    lab.fault(&lab.sync(&cfg2, &refresh), &f1, &before, Change::Refresh);
    lab.save("mid");
    let mid = lab.committed();
    let second = lab.rename_steps(&lab.sync(&cfg2, &[]), &side);
    for f2 in pick(second, &["state says replace, not renamed"]) {
        lab.restore("mid");
        lab.fault(&lab.sync(&cfg2, &[]), &f2, &mid, Change::Refresh);
        lab.finish(&cfg2, &format!("{} then {}", f1.step, f2.step));
    }
}

/// A `--full-refresh` killed at each step of widening its rebuild (campaigns of a later
/// status bring columns the first lacked: `campaign.csv.refresh.new` replaces
/// `campaign.csv.refresh`), then a plain `sync`, which continues it, killed at the
/// rename of the rebuild over `campaign.csv`, then a finishing run.
#[test]
fn crash_widening_a_rebuild() {
    let opts = MockOptions { records: 40, seed: 28, ..MockOptions::default() };
    let lab = Lab::new("crash-widen-rebuild", "mailerlite", ml_expected(&opts, 2));
    let (_g1, cfg1) = mailerlite(&lab, &opts, 1, "");
    let (_g2, cfg2) = mailerlite(&lab, &opts, 2, "");
    lab.ok(lab.sync(&cfg1, &[]));
    lab.ok(lab.sync(&cfg2, &[]));
    lab.save("base");
    let side = lab.file("campaign.csv.refresh.new");
    let rebuild = lab.file("campaign.csv.refresh");
    let refresh = ["--full-refresh"];
    let first = lab.rewrite_steps(&lab.sync(&cfg2, &refresh), &side);
    let first = pick(
        first,
        &[
            "side file partly written",
            "side file durable, state not saved",
            "state says replace, not renamed",
            "renamed, state still says replace",
        ],
    );
    for (i, f1) in first.iter().enumerate() {
        lab.restore("base");
        let before = lab.committed();
        lab.fault(&lab.sync(&cfg2, &refresh), f1, &before, Change::Refresh);
        lab.save("mid");
        let mid = lab.committed();
        let second = lab.rename_steps(&lab.sync(&cfg2, &[]), &rebuild);
        let second = if lab::full() { &second[..] } else { &second[i % 2..][..1] };
        for f2 in second {
            lab.restore("mid");
            lab.fault(&lab.sync(&cfg2, &[]), f2, &mid, Change::Refresh);
            lab.finish(&cfg2, &format!("{} then {}", f1.step, f2.step));
        }
    }
}

/// Scenario 3: a `--full-refresh` killed at the rename of a rebuilt table over the old
/// one (before it, and after it before the state says so). The rerun finishes the
/// replacement: the table holds the rebuild, never its old history under "finished
/// by the interrupted run".
#[test]
fn crash_full_refresh_at_its_rename() {
    let opts = MockOptions { records: 40, seed: 25, ..MockOptions::default() };
    let lab = Lab::new("crash-refresh-rename", "mailerlite", ml_expected(&opts, 2));
    let (_g1, cfg1) = mailerlite(&lab, &opts, 1, "");
    let (_g2, cfg2) = mailerlite(&lab, &opts, 2, "");
    lab.ok(lab.sync(&cfg1, &[]));
    lab.ok(lab.sync(&cfg2, &[]));
    lab.save("base");
    let expected = ml_expected(&opts, 2);
    // group is rebuilt in the middle of its stream, campaign last.
    for table in ["group", "campaign"] {
        let side = lab.file(&format!("{table}.csv.refresh"));
        lab.restore("base");
        let steps = lab.rename_steps(&lab.sync(&cfg2, &["--full-refresh"]), &side);
        for f in &steps {
            lab.restore("base");
            let before = lab.committed();
            lab.fault(&lab.sync(&cfg2, &["--full-refresh"]), f, &before, Change::Refresh);
            let mid = lab.committed();
            let said = lab.ok(lab.sync(&cfg2, &[]));
            let after = lab.committed();
            committed::assert_follows("mailerlite", &mid, &after, Change::Refresh, "the rerun");
            let rows = &after.rows[table];
            let rebuild = rows.len() == expected(table).len()
                && committed::compact(rows, committed::primary_key("mailerlite", table)) == *rows;
            assert!(rebuild, "{}: {table} is not the rebuild after the rerun:\n{said}", f.step);
            lab.finish(&cfg2, &f.step);
        }
    }
}

/// Scenario 4: a sync killed at each step of a widening (side file written, state
/// says replace, renamed, state says replaced, the page appended), then a
/// `sync --compact` killed at a step of its compaction, then a finishing run.
#[test]
fn crash_widening_then_compact() {
    let world = World::serve(world::Account::with_subscribers(8));
    let lab = Lab::new("crash-widen", "mailerlite", world.truth());
    lab.wd.write("w.json", &world.config());
    lab.ok(lab.sync("w.json", &[]));
    // Page 1 changes and is committed; page 2 does not, so its read is committed
    // later; page 3 brings a key the file lacks: the header widens before it is written.
    world.edit(|a| {
        a.subscriber_mut(9000)["fields"]["name"] = Value::from("Renamed");
        a.subscriber_mut(8996)["fields"]["vip"] = Value::from("gold");
    });
    lab.save("base");
    let side = lab.file("subscriber.csv.new");
    let paths = [side.clone(), lab.file("subscriber.csv")];
    let mut first = lab.rewrite_steps(&lab.sync("w.json", &[]), &side);
    lab.restore("base");
    let tmp = lab.file("state.json.tmp");
    let saves = ["ENOSPC writing the state that says replace", "state that says replaced written, not renamed"];
    first.extend(pick(
        state_steps(&lab.trace(&lab.sync("w.json", &[]), &[side.clone(), tmp.clone()]), &side, &tmp),
        &saves,
    ));
    lab.restore("base");
    let events = lab.trace(&lab.sync("w.json", &[]), &paths);
    let renamed = events.iter().position(|e| e.main && e.syscall == "rename").expect("the widening");
    let appended = events[renamed..]
        .iter()
        .find(|e| e.thread() == Thread::Committer && e.syscall == "write" && e.on("/subscriber.csv"))
        .expect("the page appended");
    let target = [lab.file("subscriber.csv")];
    first.push(Fault::at("/subscriber.csv: state says replaced, page not appended", appended, &target, Act::Kill));
    let compaction = ["side file not created yet", "side file partly written", "renamed, state still says replace"];
    for (i, f1) in first.iter().enumerate() {
        lab.restore("base");
        let before = lab.committed();
        lab.fault(&lab.sync("w.json", &[]), f1, &before, Change::Grow);
        lab.save("mid");
        let mid = lab.committed();
        let second = lab.rewrite_steps(&lab.sync("w.json", &["--compact"]), &side);
        let second = pick(second, &compaction[i % compaction.len()..][..1]);
        for f2 in &second {
            lab.restore("mid");
            lab.fault(&lab.sync("w.json", &["--compact"]), f2, &mid, Change::SyncCompact);
            lab.finish("w.json", &format!("{} then {}", f1.step, f2.step));
        }
    }
}

/// Scenario 5: ENOSPC where the committer appends a page (its write, its fdatasync),
/// then, in the rerun, where it writes the state that commits a page (its write, its
/// fsync); a last rerun finishes exactly: no row lost, none written twice.
#[test]
fn crash_enospc_in_the_committer() {
    let opts = MockOptions { records: 60, seed: 26, ..MockOptions::default() };
    let lab = Lab::new("crash-enospc", "mailerlite", ml_expected(&opts, 1));
    let (_g1, cfg) = mailerlite(&lab, &opts, 1, "");
    let table = [lab.file("subscriber.csv")];
    let tmp = [lab.file("state.json.tmp")];
    let events = lab.trace(&lab.sync(&cfg, &[]), &table);
    let first = [
        lab::committer_step(&events, &table, "/subscriber.csv", "write", 3, Act::Enospc),
        lab::committer_step(&events, &table, "/subscriber.csv", "fdatasync", 2, Act::Enospc),
    ];
    for (i, f1) in first.iter().enumerate() {
        std::fs::remove_dir_all(lab.out()).unwrap();
        let run = lab.fault(&lab.sync(&cfg, &[]), f1, &lab.committed(), Change::Grow);
        assert_eq!(run.status.code(), Some(1), "{}\n{}", f1.step, run.describe());
        assert!(run.stderr.contains("No space left on device"), "{}", run.stderr);
        lab.save("mid");
        let mid = lab.committed();
        let events = lab.trace(&lab.sync(&cfg, &[]), &tmp);
        let second = [
            lab::committer_step(&events, &tmp, "/state.json.tmp", "write", 2, Act::Enospc),
            lab::committer_step(&events, &tmp, "/state.json.tmp", "fsync", 2, Act::Enospc),
        ];
        let second = if lab::full() { &second[..] } else { &second[i..=i] };
        for f2 in second {
            lab.restore("mid");
            let run = lab.fault(&lab.sync(&cfg, &[]), f2, &mid, Change::Grow);
            assert_eq!(run.status.code(), Some(1), "{}\n{}", f2.step, run.describe());
            lab.finish(&cfg, &format!("{} then {}", f1.step, f2.step));
        }
    }
}

/// Waits until `done` holds, polling the directory the binary writes.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn state_json(lab: &Lab) -> Value {
    serde_json::from_slice(&std::fs::read(lab.file("state.json")).unwrap()).unwrap()
}

/// How the campaign listing changes while a sync is interrupted, and the tombstones
/// the resumed sync must write.
struct Shift {
    name: &'static str,
    edit: fn(&mut world::Account),
    deleted: &'static [&'static str],
}

/// Scenario 6: a sync killed once its first page of draft campaigns is committed;
/// then the listing shifts (a draft added at the front, or the first one deleted) and
/// the sync resumes, its page numbers now repeating or skipping campaigns. Only a
/// campaign deleted before this sync read it gets a tombstone (one it read before
/// the kill gets its tombstone from the next sync).
#[test]
fn crash_resume_over_a_shifted_listing() {
    let shifts = [
        Shift {
            name: "a draft added at the front",
            edit: |a| a.campaigns.insert(0, world::campaign(107, "draft")),
            deleted: &[],
        },
        Shift {
            name: "the first and the last draft deleted",
            edit: |a| a.campaigns.retain(|c| c["id"] != "106" && c["id"] != "101"),
            deleted: &["101"],
        },
    ];
    for Shift { name: shift, edit, deleted } in shifts {
        let mut account = world::Account::with_subscribers(3);
        let drafts = (101..=106).rev().map(|id| world::campaign(id, "draft"));
        let others = [world::campaign(201, "ready"), world::campaign(301, "sent"), world::campaign(302, "sent")];
        account.campaigns = drafts.chain(others).collect();
        let world = World::serve(account);
        let gate = gate::Gate::new(&world.origin);
        let lab = Lab::new("crash-shift", "mailerlite", world.truth());
        lab.wd.write("w.json", &world.config().replace(&world.origin, &gate.origin));
        lab.ok(lab.sync("w.json", &[]));
        let written = committed::rows(&lab.file("campaign.csv"), lab.committed().len["campaign"]).len();
        // A change on the first page, so that the page is committed at once.
        world.edit(|a| a.campaigns[0]["name"] = Value::from("Renamed"));
        let second_page = |t: &str| t.starts_with("/api/campaigns") && t.contains("draft") && t.contains("page=2");
        gate.hold(1, second_page);
        let mut child = lab.sync("w.json", &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        assert!(gate.wait_held(Duration::from_secs(30)), "the second page of drafts was never asked for");
        wait_for("the first page of drafts committed", || {
            let campaign = &state_json(&lab)["tables"]["campaign"];
            !campaign["resume"].is_null() && campaign["seen_len"]["len"].as_u64().unwrap_or(0) > 0
        });
        child.kill().unwrap();
        child.wait().unwrap();
        gate.release();
        lab.assert_live("killed after the first page");
        world.edit(edit);
        let said = lab.ok(lab.sync("w.json", &[]));
        let tombstones = committed::tombstones(&lab.out(), "mailerlite", "campaign", written);
        assert_eq!(tombstones, deleted, "{shift}: tombstones after the resumed sync\n{said}");
        lab.finish("w.json", shift);
    }
}

fn paligo(lab: &Lab, opts: &MockOptions, generation: u32) -> (MockServer, String) {
    let opts = MockOptions { generation, ..opts.clone() };
    let server = mock::start(std::sync::Arc::new(Paligo::new(&opts)), "127.0.0.1:0", &opts).unwrap();
    let name = format!("pg-g{generation}.json");
    lab.wd.write(&name, &pg_config(&server.origin()));
    (server, name)
}

fn pg_config(origin: &str) -> String {
    let (user, key) = (mock::paligo::USERNAME, mock::paligo::API_KEY);
    format!(
        r#"{{"username": "{user}", "api_key": "{key}", "base_url": "{origin}/api/v2", "max_records_per_page": 100, "retry_attempts": 2}}"#
    )
}

fn pg_keys(opts: &MockOptions, generation: u32, table: &str) -> BTreeSet<String> {
    let records = Paligo::new(&MockOptions { generation, ..opts.clone() }).expected(table);
    records.iter().map(|r| serde_json::from_str::<Value>(r).unwrap()["id"].to_string()).collect()
}

/// Scenario 7: a sync killed while it confirms deletions (Paligo's show route for each
/// key the listing lacked, committed every few keys); the rerun asks only about the
/// keys not confirmed yet, never again about those already tombstoned.
#[test]
fn crash_resume_deletion_checks() {
    let opts = MockOptions { records: 800, seed: 27, ..MockOptions::default() };
    let later = 11;
    let truth = Paligo::new(&MockOptions { generation: later, ..opts.clone() });
    let lab = Lab::new("crash-confirm", "paligo", move |t| truth.expected(t));
    // Both generations behind one gate, on one address: a Paligo account is its user
    // at one host and port, and another port would be another account.
    let (g1, _) = paligo(&lab, &opts, 1);
    let addr = g1.origin().trim_start_matches("http://").to_string();
    let gate = gate::Gate::new(&g1.origin());
    lab.wd.write("gated.json", &pg_config(&gate.origin));
    lab.ok(lab.sync("gated.json", &[]));
    drop(g1);
    let g2_opts = MockOptions { generation: later, ..opts.clone() };
    let _g2 = mock::start(std::sync::Arc::new(Paligo::new(&g2_opts)), &addr, &g2_opts).unwrap();
    let deletions = pg_keys(&opts, 1, "assignments").difference(&pg_keys(&opts, later, "assignments")).count();
    assert!(deletions >= 60, "only {deletions} deletions: too few chunks of checks to interrupt");
    let show =
        |t: &str| t.starts_with("/api/v2/assignments/") && !t.contains('?') && t.len() > "/api/v2/assignments/".len();
    gate.hold(deletions * 2 / 3, show);
    let mut child = lab.sync("gated.json", &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    assert!(gate.wait_held(Duration::from_secs(30)), "the checks never got that far");
    let confirmed = || lab.committed().rows.get("assignments").map_or(0, |rows| committed::tombstone_count(rows));
    wait_for("a chunk of checks committed", || confirmed() > 0);
    child.kill().unwrap();
    child.wait().unwrap();
    let asked = gate.count(show);
    gate.release();
    lab.assert_live("killed during the checks");
    let confirmed = confirmed();
    assert!(confirmed > 0 && confirmed < deletions, "{confirmed} of {deletions} deletions confirmed at the kill");
    lab.ok(lab.sync("gated.json", &[]));
    let rerun = gate.count(show) - asked;
    assert_eq!(rerun, deletions - confirmed, "the rerun asked again about confirmed deletions ({asked} asked before)");
    lab.finish("gated.json", "checks resumed");
}

/// How a journal of keys read is tampered with after a fault.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    None,
    Zeroed,
    Deleted,
}

fn tamper(path: &std::path::Path, how: Tamper) {
    match how {
        Tamper::None => {}
        Tamper::Zeroed => {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            std::fs::write(path, vec![0; len as usize]).unwrap();
        }
        Tamper::Deleted => {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Scenario 8: a sync killed by the committer's journal of keys read: before its
/// first write, after it but before the state that counts it, and after that state
/// (the journal committed); each then with the journal left as is, zeroed or
/// deleted. The rerun uses the journal only if it proves itself, else reads the
/// listing again: no live record ever gets a tombstone, none is written twice.
#[test]
fn crash_at_the_journal_then_a_journal_tampered_with() {
    let opts = MockOptions { records: 40, seed: 43, ..MockOptions::default() };
    let lab = Lab::new("crash-journal", "mailerlite", ml_expected(&opts, 2));
    let (_g1, cfg1) = mailerlite(&lab, &opts, 1, "");
    let (_g2, cfg2) = mailerlite(&lab, &opts, 2, "");
    lab.ok(lab.sync(&cfg1, &[]));
    lab.save("base");
    let journal = lab.file(".subscriber.seen");
    let paths = [journal.clone()];
    let events = lab.trace(&lab.sync(&cfg2, &[]), &paths);
    let write = lab::committer_step(&events, &paths, "/.subscriber.seen", "write", 1, Act::Kill);
    let written = lab::committer_step(&events, &paths, "/.subscriber.seen", "write", 1, Act::KillAfter);
    // Every state the committer writes counts the journal (its run header at least);
    // the main thread saves the state too, so the count is one it does not reach first.
    lab.restore("base");
    let tmp = [lab.file("state.json.tmp")];
    let events = lab.trace(&lab.sync(&cfg2, &[]), &tmp);
    let counted = lab::committer_first(&events, &tmp, "/state.json.tmp", "rename", Act::KillAfter);
    for f in [write, written, counted] {
        for how in [Tamper::None, Tamper::Zeroed, Tamper::Deleted] {
            lab.restore("base");
            let before = lab.committed();
            lab.fault(&lab.sync(&cfg2, &[]), &f, &before, Change::Grow);
            let committed = state_json(&lab)["tables"]["subscriber"]["seen_len"]["len"].as_u64().unwrap_or(0);
            if f.file == "/state.json.tmp" {
                assert!(committed > 0, "{}: the state killed after does not count the journal", f.step);
            }
            tamper(&journal, how);
            let mid = lab.committed();
            let mut rerun = lab.sync(&cfg2, &[]);
            let out = lab.wd.output(&mut rerun);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{} then {how:?}: the rerun failed\n{err}", f.step);
            if committed > 0 && !matches!(how, Tamper::None) {
                assert!(
                    err.contains("again from its start"),
                    "{} then {how:?}: the journal was believed\n{err}",
                    f.step
                );
            }
            committed::assert_follows("mailerlite", &mid, &lab.committed(), Change::Grow, "the rerun");
            lab.finish(&cfg2, &format!("{} then the journal {how:?}", f.step));
        }
    }
}

/// Scenario 9: killed at the manifest's write and rename, after a sync and after a
/// compact (whose state then commits fewer bytes than the old manifest records):
/// the next sync neither refuses the directory nor takes it for a restored backup,
/// and the manifest it writes verifies.
#[test]
fn crash_at_the_manifest() {
    let opts = MockOptions { records: 40, seed: 45, ..MockOptions::default() };
    let lab = Lab::new("crash-manifest", "mailerlite", ml_expected(&opts, 2));
    let (_g1, cfg1) = mailerlite(&lab, &opts, 1, "");
    let (_g2, cfg2) = mailerlite(&lab, &opts, 2, "");
    lab.ok(lab.sync(&cfg1, &[]));
    lab.save("base");
    let paths = [lab.file("manifest.json.tmp")];
    for (what, cmd) in [("sync", lab.sync(&cfg2, &[])), ("compact", lab.compact())] {
        lab.restore("base");
        if what == "compact" {
            lab.ok(lab.sync(&cfg2, &[]));
            lab.save("synced");
        }
        let events = lab.trace(&cmd, &paths);
        let on = |syscall: &str| {
            events.iter().find(|e| e.thread() == Thread::Main && e.syscall == syscall).expect("the manifest written")
        };
        let steps = [
            Fault::at(&format!("{what}: manifest not written"), on("write"), &paths, Act::Kill),
            Fault::at(&format!("{what}: manifest written, not renamed"), on("rename"), &paths, Act::Kill),
            Fault::at(&format!("{what}: manifest renamed"), on("rename"), &paths, Act::KillAfter),
        ];
        for f in &steps {
            lab.restore(if what == "compact" { "synced" } else { "base" });
            let before = lab.committed();
            let change = if what == "compact" { Change::Compact } else { Change::Grow };
            lab.fault(&cmd, f, &before, change);
            lab.ok(lab.sync(&cfg2, &[]));
            let mut verify = lab.wd.command(&["verify"]);
            verify.arg(lab.out());
            lab.ok(verify);
            lab.finish(&cfg2, &f.step);
        }
    }
}

/// Scenario 10: `repair` killed at its renames: the edited file's rename to
/// `.edited-<time>` (before it, after it with the state not saved) and the state
/// that marks the table for a rebuild. A second `repair` finishes the job, the
/// edited bytes are kept in the file set aside, and the next sync rebuilds the table.
#[test]
fn crash_repair_at_its_renames() {
    let opts = MockOptions { records: 40, seed: 47, ..MockOptions::default() };
    let lab = Lab::new("crash-repair", "mailerlite", ml_expected(&opts, 2));
    let (_g1, cfg1) = mailerlite(&lab, &opts, 1, "");
    let (_g2, cfg2) = mailerlite(&lab, &opts, 2, "");
    lab.ok(lab.sync(&cfg1, &[]));
    lab.ok(lab.sync(&cfg2, &[]));
    let table = lab.file("subscriber.csv");
    let mut edited = std::fs::read(&table).unwrap();
    edited.extend_from_slice(b"123,added@example.com\n");
    std::fs::write(&table, &edited).unwrap();
    lab.save("edited");
    let repair = || {
        let mut cmd = lab.wd.command(&["repair"]);
        cmd.arg(lab.out());
        cmd
    };
    let paths = [table.clone(), lab.file("state.json.tmp")];
    let events = lab.trace(&repair(), &paths);
    let rename = |name: &str| {
        events
            .iter()
            .find(|e| e.thread() == Thread::Main && e.syscall == "rename" && e.text.contains(&format!("/{name}\", ")))
            .unwrap_or_else(|| panic!("repair renamed no {name}"))
    };
    let steps = [
        Fault::at("repair: table file not set aside", rename("subscriber.csv"), &paths, Act::Kill),
        Fault::at("repair: table file set aside, state not saved", rename("subscriber.csv"), &paths, Act::KillAfter),
        Fault::at("repair: state marking the rebuild not renamed", rename("state.json.tmp"), &paths, Act::Kill),
    ];
    for f in &steps {
        lab.restore("edited");
        lab.inject(&repair(), f);
        let said = lab.ok(repair());
        assert!(said.contains("subscriber.csv") && said.contains("rebuilds subscriber"), "{}: {said}", f.step);
        let aside: Vec<std::path::PathBuf> = std::fs::read_dir(lab.out())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("subscriber.csv.edited-"))
            .collect();
        assert_eq!(aside.len(), 1, "{}: {aside:?}", f.step);
        assert_eq!(std::fs::read(&aside[0]).unwrap(), edited, "{}: the edited bytes were not kept", f.step);
        std::fs::remove_file(&aside[0]).unwrap();
        lab.finish(&cfg2, &f.step);
    }
}

/// Scenario 11: a sync killed once the committer's first state is durable (a
/// stream part read), then the table file edited and `repair` run: the next sync
/// reads the set-aside table from the start of its stream, not from where the
/// interrupted run stood.
#[test]
fn crash_then_repair_mid_run() {
    let opts = MockOptions { records: 60, seed: 49, ..MockOptions::default() };
    let lab = Lab::new("crash-repair-mid", "mailerlite", ml_expected(&opts, 2));
    let (_g1, cfg1) = mailerlite(&lab, &opts, 1, "");
    let (_g2, cfg2) = mailerlite(&lab, &opts, 2, "");
    lab.ok(lab.sync(&cfg1, &[]));
    lab.save("base");
    let paths = [lab.file("state.json.tmp")];
    let events = lab.trace(&lab.sync(&cfg2, &[]), &paths);
    let f = lab::committer_first(&events, &paths, "/state.json.tmp", "rename", Act::KillAfter);
    lab.restore("base");
    let before = lab.committed();
    lab.fault(&lab.sync(&cfg2, &[]), &f, &before, Change::Grow);
    assert!(!state_json(&lab)["run"].is_null(), "{}: the run was not interrupted", f.step);
    let table = lab.file("subscriber.csv");
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend(std::fs::read(&table).unwrap());
    std::fs::write(&table, bytes).unwrap();
    let mut repair = lab.wd.command(&["repair"]);
    repair.arg(lab.out());
    let said = lab.ok(repair);
    assert!(said.contains("renamed to"), "{said}");
    for e in std::fs::read_dir(lab.out()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().contains(".edited-") {
            std::fs::remove_file(p).unwrap();
        }
    }
    // The run repair changed writes no tombstones (repair turned that off); the
    // finishing sync after it does.
    let out = lab.ok(lab.sync(&cfg2, &[]));
    committed::assert_no_repeats(&lab.out(), "mailerlite");
    let subscribers = committed::rows(&table, lab.committed().len["subscriber"]).len();
    assert_eq!(subscribers, ml_expected(&opts, 2)("subscriber").len(), "a partial rebuild\n{out}");
    lab.finish(&cfg2, &format!("{} then repair", f.step));
}
