//! A hostile Paligo: the binary against a hand-written server on loopback whose
//! taxonomy tree has cycles, shared children and 80 levels, whose listings repeat
//! or shrink between runs, and whose records carry the columns the walk derives.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::expected::{read_table, row_count, Table};
use crate::hostile::{error_line, one_line, param, serve_with, sync_fails, sync_ok, Reply, Server};
use crate::hostile_ml::{column, last_sync};
use crate::workdir::Workdir;

/// One listing request: the resource, its page, page size and `parent`.
struct Get {
    resource: String,
    page: usize,
    per_page: usize,
    parent: Option<String>,
}

/// A Paligo envelope for `records` (JSON objects), `page` of `total_pages`.
fn envelope(resource: &str, records: &[String], page: usize, total_pages: Option<usize>, next: bool) -> String {
    let next_page = if next { format!("http://x/api/v2/{resource}/?page={}", page + 1) } else { String::new() };
    let total = total_pages.map_or(String::new(), |t| format!(r#""total_pages":{t},"#));
    format!(r#"{{"page":{page},"next_page":"{next_page}",{total}"{resource}":[{}]}}"#, records.join(","))
}

/// Page `get.page` of `records`, cut in pages of `get.per_page`, as Paligo sends it.
fn paged(get: &Get, records: &[String]) -> Reply {
    let pages = records.len().div_ceil(get.per_page).max(1);
    if get.page > pages {
        return Reply::not_found();
    }
    let start = (get.page - 1) * get.per_page;
    let slice = &records[start.min(records.len())..(start + get.per_page).min(records.len())];
    Reply::ok(envelope(&get.resource, slice, get.page, Some(pages), get.page < pages))
}

/// A Paligo server: `listing(get)` answers listings, `show(resource, id)` the show
/// routes; the credential check reads the users listing like any other.
fn paligo(
    mut listing: impl FnMut(&Get) -> Reply + Send + 'static,
    mut show: impl FnMut(&str, &str) -> Reply + Send + 'static,
) -> Server {
    serve_with(move |target| {
        let path = target.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.trim_start_matches("/api/v2/").trim_end_matches('/').split('/').collect();
        match parts[..] {
            [resource] => {
                let number = |k: &str| param(target, k).and_then(|v| v.parse().ok());
                let get = Get {
                    resource: resource.to_string(),
                    page: number("page").unwrap_or(1),
                    per_page: number("per_page").unwrap_or(25),
                    parent: param(target, "parent"),
                };
                listing(&get)
            }
            [resource, id] => show(resource, id),
            _ => Reply::not_found(),
        }
    })
}

fn user(id: u32) -> String {
    format!(r#"{{"id":{id},"username":"u{id}@x.org","name":"U {id}","email":"u{id}@x.org","type":"admin"}}"#)
}

fn taxonomy(id: u32, title: &str, parent: u32) -> String {
    format!(r#"{{"id":{id},"title":"{title}","color":1,"parent":{parent}}}"#)
}

/// Taxonomies by parent (`None`: the roots).
type Tree = BTreeMap<Option<String>, Vec<String>>;

/// Builds a [`Tree`] from (parent, children) pairs.
fn tree_of(levels: impl IntoIterator<Item = (Option<u32>, Vec<String>)>) -> Tree {
    levels.into_iter().map(|(p, c)| (p.map(|p| p.to_string()), c)).collect()
}

/// Listings of users, taxonomies (per parent) and assignments from fixed lists.
fn fixed(users: Vec<String>, tree: Tree) -> impl FnMut(&Get) -> Reply {
    move |get| match get.resource.as_str() {
        "users" => paged(get, &users),
        "taxonomies" => match tree.get(&get.parent) {
            Some(children) => paged(get, children),
            None => paged(get, &[]),
        },
        _ => paged(get, &[]),
    }
}

fn gone(_: &str, _: &str) -> Reply {
    Reply::not_found()
}

fn config(server: &Server, extra: &str) -> String {
    format!(r#"{{"username":"u","api_key":"k","base_url":"{}/api/v2","retry_attempts":2{extra}}}"#, server.origin)
}

fn table(wd: &Workdir, name: &str) -> Table {
    read_table(&wd.path(&format!("out/{name}.csv")))
}

/// Each taxonomy row's (id, parent_id, level, path), in file order.
fn tree_rows(wd: &Workdir) -> Vec<(String, String, String, String)> {
    let t = table(wd, "taxonomies");
    let cols = ["id", "parent_id", "level", "path"].map(|c| column(&t, c));
    (0..t.rows.len())
        .map(|i| (cols[0][i].clone(), cols[1][i].clone(), cols[2][i].clone(), cols[3][i].clone()))
        .collect()
}

fn row(id: &str, parent: &str, level: &str, path: &str) -> (String, String, String, String) {
    (id.into(), parent.into(), level.into(), path.into())
}

#[test]
fn a_chain_80_levels_deep_syncs_exactly() {
    // Node 2's title holds both separators the path escapes (JSON-escaped here).
    let title = |k: u32| if k == 2 { r"a/b\\c".to_string() } else { format!("t{k}") };
    let chain = (1..80).map(|k| (Some(k), vec![taxonomy(k + 1, &title(k + 1), k)]));
    let levels = std::iter::once((None, vec![taxonomy(1, "t1", 0)])).chain(chain);
    let server = paligo(fixed(vec![user(1)], tree_of(levels)), gone);
    let wd = Workdir::new("hpg-chain");
    sync_ok(&wd, "paligo", &config(&server, ""), &[]);
    let mut want = Vec::new();
    let mut path = String::new();
    for k in 1..=80u32 {
        let title = if k == 2 { r"a\/b\\c".to_string() } else { format!("t{k}") };
        path = if k == 1 { title } else { format!("{path} / {title}") };
        let parent = if k == 1 { String::new() } else { (k - 1).to_string() };
        want.push(row(&k.to_string(), &parent, &k.to_string(), &path));
    }
    assert_eq!(tree_rows(&wd), want);
    sync_ok(&wd, "paligo", &config(&server, ""), &[]);
    assert_eq!(row_count(&wd.path("out"), "taxonomies"), 80);
    assert_eq!(last_sync(&wd, "taxonomies")["unchanged"], 80);
}

#[test]
fn cycles_and_self_parents_are_walked_once_and_reruns_add_no_lap() {
    // A → B → A; a root S that is its own child; C under itself below a root R.
    let tree = tree_of([
        (None, vec![taxonomy(1, "A", 0), taxonomy(3, "R", 0), taxonomy(5, "S", 5)]),
        (Some(1), vec![taxonomy(2, "B", 1)]),
        (Some(2), vec![taxonomy(1, "A", 2)]),
        (Some(3), vec![taxonomy(4, "C", 3)]),
        (Some(4), vec![taxonomy(4, "C", 4)]),
        (Some(5), vec![taxonomy(5, "S", 5)]),
    ]);
    let server = paligo(fixed(vec![user(1)], tree), gone);
    let wd = Workdir::new("hpg-cycle");
    let want = vec![
        row("1", "", "1", "A"),
        row("3", "", "1", "R"),
        row("5", "", "1", "S"),
        row("2", "1", "2", "A / B"),
        row("4", "3", "2", "R / C"),
    ];
    for run in 1..=3 {
        sync_ok(&wd, "paligo", &config(&server, ""), &[]);
        let mut got = tree_rows(&wd);
        got.sort_by_key(|r| (r.2.clone(), r.3.clone()));
        assert_eq!(got, want, "run {run}");
    }
    // Each listing was asked for once per run, none of them again.
    for parent in [1, 2, 3, 4, 5] {
        assert_eq!(server.hits(&format!("/api/v2/taxonomies/?per_page=1000&page=1&parent={parent}")), 3, "{parent}");
    }
}

/// A → B → A, with B's listing answering 500 while `broken` is 1; B's title is
/// `B<version>`.
fn cycle_failing_under_b(broken: &Arc<AtomicU32>, version: &Arc<AtomicU32>) -> Server {
    let (fail, version) = (Arc::clone(broken), Arc::clone(version));
    paligo(
        move |get| {
            if get.parent.as_deref() == Some("2") && fail.load(Ordering::SeqCst) == 1 {
                return Reply::status(500, "{}");
            }
            let b = format!("B{}", version.load(Ordering::SeqCst));
            let tree = tree_of([
                (None, vec![taxonomy(1, "A", 0)]),
                (Some(1), vec![taxonomy(2, &b, 1)]),
                (Some(2), vec![taxonomy(1, "A", 2)]),
            ]);
            fixed(vec![user(1)], tree)(get)
        },
        gone,
    )
}

/// The resumed walk has forgotten what it met before the failure, and must still
/// write the taxonomy met again below B once, where it was first met: in a first
/// sync, and in a sync of the taxonomies alone after B changed (so that the page
/// before the failure was committed).
#[test]
fn a_cycle_met_after_a_resume_adds_no_lap() {
    let (broken, version) = (Arc::new(AtomicU32::new(1)), Arc::new(AtomicU32::new(1)));
    let server = cycle_failing_under_b(&broken, &version);
    let a = row("1", "", "1", "A");
    let wd = Workdir::new("hpg-cycle-first");
    sync_fails_with(&wd, &config(&server, ""), &["--tables", "taxonomies"]);
    broken.store(0, Ordering::SeqCst);
    for _ in 0..2 {
        sync_ok(&wd, "paligo", &config(&server, ""), &[]);
        assert_eq!(tree_rows(&wd), [a.clone(), row("2", "1", "2", "A / B1")], "first sync");
    }
    version.store(2, Ordering::SeqCst);
    broken.store(1, Ordering::SeqCst);
    sync_fails_with(&wd, &config(&server, ""), &["--tables", "taxonomies"]);
    broken.store(0, Ordering::SeqCst);
    for _ in 0..2 {
        sync_ok(&wd, "paligo", &config(&server, ""), &[]);
        let want = [a.clone(), row("2", "1", "2", "A / B1"), row("2", "1", "2", "A / B2")];
        assert_eq!(tree_rows(&wd), want, "second sync");
    }
}

#[test]
fn a_node_under_two_parents_is_written_once() {
    let tree = tree_of([
        (None, vec![taxonomy(1, "P1", 0), taxonomy(2, "P2", 0)]),
        (Some(1), vec![taxonomy(3, "C", 1)]),
        (Some(2), vec![taxonomy(3, "C", 2)]),
        (Some(3), vec![taxonomy(4, "D", 3)]),
    ]);
    let server = paligo(fixed(vec![user(1)], tree), gone);
    let wd = Workdir::new("hpg-two-parents");
    for _ in 0..2 {
        sync_ok(&wd, "paligo", &config(&server, ""), &[]);
        let mut got = tree_rows(&wd);
        got.sort();
        let want = vec![
            row("1", "", "1", "P1"),
            row("2", "", "1", "P2"),
            row("3", "1", "2", "P1 / C"),
            row("4", "3", "3", "P1 / C / D"),
        ];
        assert_eq!(got, want);
    }
    assert_eq!(server.hits("/api/v2/taxonomies/?per_page=1000&page=1&parent=3"), 2, "C's children once per run");
}

#[test]
fn a_record_served_twice_in_a_first_sync_is_written_once() {
    // Pages that overlap, as page numbers do when a record is added meanwhile.
    let server = paligo(
        |get| {
            let (page, ids): (usize, &[u32]) = match get.page {
                1 => (1, &[1, 2]),
                _ => (2, &[2, 3]),
            };
            let records: Vec<String> = match get.resource.as_str() {
                "users" => ids.iter().map(|&i| user(i)).collect(),
                "taxonomies" if get.parent.is_none() => ids.iter().map(|&i| taxonomy(i, &format!("T{i}"), 0)).collect(),
                _ => Vec::new(),
            };
            Reply::ok(envelope(&get.resource, &records, page, Some(2), page == 1))
        },
        gone,
    );
    let wd = Workdir::new("hpg-twice");
    sync_ok(&wd, "paligo", &config(&server, r#","max_records_per_page":2"#), &[]);
    assert_eq!(column(&table(&wd, "users"), "id"), ["1", "2", "3"]);
    let mut ids = column(&table(&wd, "taxonomies"), "id");
    ids.sort();
    assert_eq!(ids, ["1", "2", "3"]);
    assert_eq!(server.hits("/api/v2/taxonomies/?per_page=2&page=1&parent=2"), 1, "taxonomy 2 walked once");
}

#[test]
fn records_carrying_the_derived_columns_keep_them_apart() {
    let own = r#"{"id":1,"title":"A","parent":0,"parent_id":"api-p","level":"api-l","path":"api-path"}"#;
    let tree = tree_of([
        (None, vec![own.to_string()]),
        (Some(1), vec![r#"{"id":2,"title":"B","parent":1,"level":99}"#.to_string()]),
    ]);
    let server = paligo(fixed(vec![user(1)], tree), gone);
    let wd = Workdir::new("hpg-derived");
    sync_ok(&wd, "paligo", &config(&server, ""), &[]);
    let t = table(&wd, "taxonomies");
    let names = [
        "id",
        "title",
        "parent",
        "parent_id__2",
        "level__2",
        "path__2",
        "parent_id",
        "level",
        "path",
        "_synced_at",
        "_deleted",
    ];
    assert_eq!(t.header, names);
    assert_eq!(column(&t, "parent_id__2"), ["api-p", ""]);
    assert_eq!(column(&t, "level__2"), ["api-l", "99"]);
    assert_eq!(column(&t, "path__2"), ["api-path", ""]);
    assert_eq!(tree_rows(&wd), [row("1", "", "1", "A"), row("2", "1", "2", "A / B")]);
    for _ in 0..2 {
        sync_ok(&wd, "paligo", &config(&server, ""), &[]);
        assert_eq!(row_count(&wd.path("out"), "taxonomies"), 2, "a rerun appended rows");
    }
}

#[test]
fn a_show_route_answering_410_counts_as_gone() {
    let second = Arc::new(AtomicU32::new(0));
    let phase = Arc::clone(&second);
    let server = paligo(
        move |get| {
            let users: Vec<String> = match phase.load(Ordering::SeqCst) {
                0 => vec![user(1), user(2)],
                _ => vec![user(1)],
            };
            match get.resource.as_str() {
                "users" => paged(get, &users),
                _ => paged(get, &[]),
            }
        },
        |resource, id| match (resource, id) {
            ("users", "2") => Reply::status(410, r#"{"message":"Gone"}"#),
            _ => Reply::ok(user(1)),
        },
    );
    let wd = Workdir::new("hpg-410");
    sync_ok(&wd, "paligo", &config(&server, ""), &[]);
    second.store(1, Ordering::SeqCst);
    sync_ok(&wd, "paligo", &config(&server, ""), &[]);
    let t = table(&wd, "users");
    assert_eq!(column(&t, "id"), ["1", "2", "2"]);
    assert_eq!(column(&t, "_deleted"), ["false", "false", "true"]);
}

/// A server in two phases: in the first, listings at `fails` answer 500; in the
/// second, the same listings answer 404 (the parent deleted, the page past the end).
struct Phased {
    second: Arc<AtomicU32>,
    server: Server,
}

fn phased(
    fails: &'static [&'static str],
    mut first: impl FnMut(&Get) -> Reply + Send + 'static,
    mut then: impl FnMut(&Get) -> Reply + Send + 'static,
) -> Phased {
    let second = Arc::new(AtomicU32::new(0));
    let phase = Arc::clone(&second);
    let listing = move |get: &Get| {
        let at = format!("{}:{}:{}", get.resource, get.parent.as_deref().unwrap_or("-"), get.page);
        let later = phase.load(Ordering::SeqCst) == 1;
        match (fails.contains(&at.as_str()), later) {
            (true, false) => Reply::status(500, r#"{"message":"Server Error"}"#),
            (true, true) => Reply::not_found(),
            (false, false) => first(get),
            (false, true) => then(get),
        }
    };
    Phased { second, server: paligo(listing, gone) }
}

/// Runs a sync of `tables` that fails at the listing the server breaks, then the
/// same sync (and `--full-refresh` in another directory) once it answers 404 there,
/// then a sync of every table.
fn resume_past_a_404(name: &str, p: &Phased, extra: &str, tables: &str) -> (Workdir, Workdir) {
    let (wd, full) = (Workdir::new(name), Workdir::new(name));
    for (dir, flag) in [(&wd, None), (&full, Some("--full-refresh"))] {
        p.second.store(0, Ordering::SeqCst);
        let line = sync_fails_with(dir, &config(&p.server, extra), &["--tables", tables]);
        assert!(line.contains("HTTP 500"), "{line}");
        p.second.store(1, Ordering::SeqCst);
        let args: Vec<&str> = ["--tables", tables].into_iter().chain(flag).collect();
        sync_ok(dir, "paligo", &config(&p.server, extra), &args);
        sync_ok(dir, "paligo", &config(&p.server, extra), &[]);
    }
    (wd, full)
}

/// A Paligo sync with `args` that must exit 1; its one line.
fn sync_fails_with(wd: &Workdir, config: &str, args: &[&str]) -> String {
    wd.write("c.json", config);
    let mut cmd = wd.command(&["sync", "paligo", "--config", "c.json", "--out", "out"]);
    one_line(&wd.fails(cmd.args(args), 1))
}

/// The ids of the tombstones in `t`.
fn tombstones(t: &Table) -> Vec<String> {
    column(t, "id").into_iter().zip(column(t, "_deleted")).filter(|(_, d)| d == "true").map(|(i, _)| i).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn a_parent_deleted_between_runs_is_skipped_on_resume() {
    let first = |get: &Get| {
        let tree = tree_of([
            (None, vec![taxonomy(1, "A", 0), taxonomy(2, "B", 0)]),
            (Some(1), vec![taxonomy(3, "A1", 1)]),
            (Some(2), vec![taxonomy(4, "B1", 2)]),
        ]);
        fixed(vec![user(1)], tree)(get)
    };
    let then = |get: &Get| {
        let tree =
            tree_of([(None, vec![taxonomy(1, "A", 0), taxonomy(2, "B", 0)]), (Some(2), vec![taxonomy(4, "B1", 2)])]);
        fixed(vec![user(1)], tree)(get)
    };
    let p = phased(&["taxonomies:3:1"], first, then);
    let (wd, full) = resume_past_a_404("hpg-parent-gone", &p, "", "taxonomies");
    // A1 was written before it went; the last sync found it gone for good.
    let t = table(&wd, "taxonomies");
    assert_eq!(sorted(column(&t, "id")), ["1", "2", "3", "3", "4"]);
    assert_eq!(tombstones(&t), ["3"]);
    let t = table(&full, "taxonomies");
    assert_eq!(sorted(column(&t, "id")), ["1", "2", "4"], "a full refresh rebuilds from what exists");
}

#[test]
fn a_page_past_the_end_restarts_its_listing_on_resume() {
    // Users and root taxonomies shrink from 5 to 3 between runs; the first run
    // fails on page 3 (2 per page), which is then past the end.
    let first = |get: &Get| {
        let tree = tree_of([(None, (1..=5).map(|i| taxonomy(i, &format!("T{i}"), 0)).collect())]);
        fixed((1..=5).map(user).collect(), tree)(get)
    };
    let then = |get: &Get| {
        let tree = tree_of([(None, (1..=3).map(|i| taxonomy(i, &format!("T{i}"), 0)).collect())]);
        fixed((1..=3).map(user).collect(), tree)(get)
    };
    let p = phased(&["users:-:3", "taxonomies:-:3"], first, then);
    for table_name in ["users", "taxonomies"] {
        let (wd, full) = resume_past_a_404("hpg-page-gone", &p, r#","max_records_per_page":2"#, table_name);
        // 1 to 4 were written before the listing shrank; 4 is gone at the last sync.
        let t = table(&wd, table_name);
        assert_eq!(sorted(column(&t, "id")), ["1", "2", "3", "4", "4"], "{table_name}");
        assert_eq!(tombstones(&t), ["4"], "{table_name}");
        assert_eq!(sorted(column(&table(&full, table_name), "id")), ["1", "2", "3"], "{table_name}");
    }
}

#[test]
fn a_page_size_changed_before_the_rerun_skips_nothing() {
    let records = |get: &Get| {
        let users: Vec<String> = (1..=7).map(user).collect();
        let tree = tree_of([(None, (1..=7).map(|i| taxonomy(i, &format!("T{i}"), 0)).collect())]);
        fixed(users, tree)(get)
    };
    let broken = Arc::new(AtomicU32::new(1));
    let fail = Arc::clone(&broken);
    let server = paligo(
        move |get| {
            let third = get.page == 3 && get.per_page == 2 && get.resource != "assignments";
            if third && fail.load(Ordering::SeqCst) == 1 {
                return Reply::status(500, r#"{"message":"Server Error"}"#);
            }
            records(get)
        },
        gone,
    );
    for table_name in ["users", "taxonomies"] {
        let wd = Workdir::new("hpg-page-size");
        broken.store(1, Ordering::SeqCst);
        let args = ["--tables", table_name];
        wd.write("c.json", &config(&server, r#","max_records_per_page":2"#));
        let mut cmd = wd.command(&["sync", "paligo", "--config", "c.json", "--out", "out"]);
        wd.fails(cmd.args(args), 1);
        broken.store(0, Ordering::SeqCst);
        sync_ok(&wd, "paligo", &config(&server, r#","max_records_per_page":3"#), &args);
        let mut ids = column(&table(&wd, table_name), "id");
        ids.sort();
        assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7"], "{table_name}");
    }
}

#[test]
fn a_paligo_page_repeated_without_total_pages_is_stopped() {
    for echo in [true, false] {
        let server = paligo(
            move |get| {
                let records = [user(1), user(2)];
                let body = envelope(&get.resource, &records, get.page, None, true);
                Reply::ok(if echo { body } else { body.replace(&format!(r#""page":{},"#, get.page), "") })
            },
            gone,
        );
        let wd = Workdir::new("hpg-endless");
        let line = sync_fails(&wd, "paligo", &config(&server, ""), 1);
        assert!(line.contains("/api/v2/users/"), "{line}");
        let asked = server.hits("/api/v2/users/?per_page=1000");
        assert!(asked <= 11, "{asked} pages asked before giving up: {line}");
    }
}

#[test]
fn a_paligo_key_that_stops_working_exits_1() {
    let server = paligo(
        |get| match (get.resource.as_str(), get.page) {
            ("users", 2) if get.per_page == 2 => Reply::status(401, r#"{"message":"Unauthorized"}"#),
            ("users", _) => paged(get, &(1..=3).map(user).collect::<Vec<_>>()),
            _ => paged(get, &[]),
        },
        gone,
    );
    let wd = Workdir::new("hpg-revoked");
    let line = sync_fails(&wd, "paligo", &config(&server, r#","max_records_per_page":2"#), 1);
    assert!(line.contains("stopped working"), "{line}");
    assert_eq!(column(&table(&wd, "users"), "id"), ["1", "2"]);
}

#[test]
fn a_refused_paligo_envelope_leaves_no_trace() {
    let refused = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&refused);
    let server = paligo(
        move |get| {
            if get.resource == "users" && get.per_page != 1 && count.fetch_add(1, Ordering::SeqCst) == 0 {
                let phantom = r#"{"id":1,"phantom":"boo","a":{"b":"x"}}"#.to_string();
                return Reply::ok(
                    envelope("users", &[phantom], 1, Some(1), false).replace(r#""next_page":"""#, r#""next_page":7"#),
                );
            }
            match get.resource.as_str() {
                "users" => paged(get, &[r#"{"id":1,"a_b":"y"}"#.to_string()]),
                _ => paged(get, &[]),
            }
        },
        gone,
    );
    let wd = Workdir::new("hpg-no-trace");
    sync_ok(&wd, "paligo", &config(&server, ""), &[]);
    let t = table(&wd, "users");
    assert_eq!(t.header, ["id", "a_b", "_synced_at", "_deleted"]);
    assert_eq!(column(&t, "a_b"), ["y"]);
}

/// A spreadsheet-safe directory guards a key like `-1` as `'-1`; the next syncs
/// still know the user by it, and do not take it for gone.
#[test]
fn a_guarded_key_is_the_same_record_on_the_next_sync() {
    let server = paligo(fixed(vec![user(1), r#"{"id":-1,"name":"negative"}"#.to_string()], Tree::new()), gone);
    let wd = Workdir::new("hpg-safe");
    for _ in 0..3 {
        sync_ok(&wd, "paligo", &config(&server, ""), &["--spreadsheet-safe"]);
        let t = table(&wd, "users");
        assert_eq!(column(&t, "id"), ["1", "'-1"]);
        assert_eq!(tombstones(&t), Vec::<String>::new());
    }
}

/// A key that stops working after a table was committed, when the next table (or
/// the deletion check) asks: still exit 1, and the line says what happened.
#[test]
fn a_key_that_stops_working_between_tables_says_so() {
    let revoked = Arc::new(AtomicU32::new(0));
    let gone_now = Arc::clone(&revoked);
    let shown = Arc::clone(&revoked);
    let server = paligo(
        move |get| match get.resource.as_str() {
            "users" if gone_now.load(Ordering::SeqCst) == 2 => paged(get, &[user(1)]),
            "users" => paged(get, &[user(1), user(2)]),
            _ if gone_now.load(Ordering::SeqCst) == 1 => Reply::status(401, r#"{"message":"Unauthorized"}"#),
            _ => paged(get, &[]),
        },
        move |_, _| match shown.load(Ordering::SeqCst) {
            2 => Reply::status(401, r#"{"message":"Unauthorized"}"#),
            _ => Reply::not_found(),
        },
    );
    // The taxonomies' first page, after the users were committed.
    let wd = Workdir::new("hpg-revoked-between");
    wd.write("c.json", &config(&server, ""));
    let sync = || wd.command(&["sync", "paligo", "--config", "c.json", "--out", "out"]);
    revoked.store(1, Ordering::SeqCst);
    let line = error_line(&wd.fails(&mut sync(), 1));
    assert!(line.contains("taxonomies") && line.contains("stopped working"), "{line}");
    // The show route of the deletion check, after the users were read again.
    revoked.store(0, Ordering::SeqCst);
    wd.stdout(&mut sync());
    revoked.store(2, Ordering::SeqCst);
    let line = error_line(&wd.fails(&mut sync(), 1));
    assert!(line.contains("/users/2/") && line.contains("stopped working"), "{line}");
}

/// `kill -9` while the walk waits for B's children in a cycle A → B → A: the rerun
/// resumes from what was committed and writes no lap.
#[test]
fn a_walk_killed_in_a_cycle_resumes_without_a_lap() {
    let hold = Arc::new(AtomicU32::new(1));
    let held = Arc::clone(&hold);
    let server = paligo(
        move |get| {
            // The first ask for B's children waits until the test has killed the sync.
            while get.parent.as_deref() == Some("2") && held.load(Ordering::SeqCst) == 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
            let tree = tree_of([
                (None, vec![taxonomy(1, "A", 0)]),
                (Some(1), vec![taxonomy(2, "B", 1)]),
                (Some(2), vec![taxonomy(1, "A", 2)]),
            ]);
            fixed(vec![user(1)], tree)(get)
        },
        gone,
    );
    let wd = Workdir::new("hpg-cycle-killed");
    wd.write("c.json", &config(&server, ""));
    let sync = || wd.command(&["sync", "paligo", "--config", "c.json", "--out", "out"]);
    let mut child = sync().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Killed once it asks for B's children and has committed B's row.
    let committed = || {
        let state: Value = serde_json::from_slice(&std::fs::read(wd.path("out/state.json")).ok()?).ok()?;
        (state["tables"]["taxonomies"]["file"]["rows"].as_u64()? == 2).then_some(())
    };
    while server.hits("/api/v2/taxonomies/?per_page=1000&page=1&parent=2") == 0 || committed().is_none() {
        assert!(child.try_wait().unwrap().is_none(), "the sync ended before it was killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    hold.store(0, Ordering::SeqCst);
    for _ in 0..2 {
        wd.stdout(&mut sync());
        assert_eq!(tree_rows(&wd), [row("1", "", "1", "A"), row("2", "1", "2", "A / B")]);
    }
}

#[test]
fn a_guarded_key_is_shown_to_the_api_as_it_sent_it() {
    // In a spreadsheet-safe directory the id "-2" is written "'-2"; the deletion
    // check must ask the show route for "-2".
    let second = Arc::new(AtomicU32::new(0));
    let phase = Arc::clone(&second);
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&asked);
    let minus_two = r#"{"id":"-2","username":"m@x.org","name":"M","email":"m@x.org","type":"admin"}"#.to_string();
    let server = paligo(
        move |get| {
            let users = match phase.load(Ordering::SeqCst) {
                0 => vec![user(1), minus_two.clone()],
                _ => vec![user(1)],
            };
            match get.resource.as_str() {
                "users" => paged(get, &users),
                _ => paged(get, &[]),
            }
        },
        move |_, id| {
            let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy().into_owned();
            log.lock().unwrap().push(id.clone());
            if id == "-2" {
                Reply::not_found()
            } else {
                Reply::ok(user(1))
            }
        },
    );
    let wd = Workdir::new("hpg-guarded-show");
    let cfg = config(&server, r#","spreadsheet_safe":true"#);
    sync_ok(&wd, "paligo", &cfg, &[]);
    second.store(1, Ordering::SeqCst);
    sync_ok(&wd, "paligo", &cfg, &[]);
    assert_eq!(*asked.lock().unwrap(), ["-2"]);
    let t = table(&wd, "users");
    assert_eq!(column(&t, "id"), ["1", "'-2", "'-2"]);
    assert_eq!(column(&t, "_deleted"), ["false", "false", "true"]);
}
