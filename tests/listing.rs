//! Listings that restart within a run, guards that tell a re-read from a loop,
//! refreshes of empty tables and Paligo's end signals (issue 15): the binary against
//! a server of the test's own on loopback.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::expected::{read_table, Table};
use crate::hostile::{one_line, param, serve_with, Reply, Server};
use crate::hostile_ml::column;
use crate::workdir::Workdir;

/// A MailerLite cursor page; `next` is the next cursor (null when `None`).
fn cursor_page(records: &[String], next: Option<&str>) -> String {
    let cursor = next.map_or("null".to_string(), |c| format!("\"{c}\""));
    format!(r#"{{"data":[{}],"links":{{"next":null}},"meta":{{"next_cursor":{cursor}}}}}"#, records.join(","))
}

/// Page `page` of `records` cut in pages of `limit`, as Laravel sends it; `None`
/// past the last page.
fn number_page(records: &[String], page: usize, limit: usize) -> Option<String> {
    let last = records.len().div_ceil(limit).max(1);
    if page > last {
        return None;
    }
    let slice = &records[((page - 1) * limit).min(records.len())..(page * limit).min(records.len())];
    let next = if page < last { format!(r#""http://x?page={}""#, page + 1) } else { "null".into() };
    Some(format!(
        r#"{{"data":[{}],"links":{{"next":{next}}},"meta":{{"current_page":{page},"last_page":{last}}}}}"#,
        slice.join(",")
    ))
}

fn numbered(records: &[String], target: &str) -> Reply {
    let n = |k: &str| param(target, k).and_then(|v| v.parse().ok());
    match number_page(records, n("page").unwrap_or(1), n("limit").unwrap_or(1000)) {
        Some(body) => Reply::ok(body),
        None => Reply::not_found(),
    }
}

fn record(id: impl std::fmt::Display) -> String {
    format!(r#"{{"id":"{id}","name":"n{id}"}}"#)
}

/// A MailerLite account: the credential check announces `total` subscribers;
/// `answer` gets every other request (path and query).
fn mailerlite(total: usize, mut answer: impl FnMut(&str) -> Reply + Send + 'static) -> Server {
    serve_with(move |target| {
        if target.starts_with("/api/subscribers?limit=0") {
            return Reply::ok(format!(r#"{{"total":{total}}}"#));
        }
        answer(target)
    })
}

/// Every page-number listing of MailerLite empty.
fn empty(target: &str) -> Reply {
    if target.starts_with("/api/subscribers") {
        Reply::ok(cursor_page(&[], None))
    } else {
        numbered(&[], target)
    }
}

fn ml_config(server: &Server, extra: &str) -> String {
    format!(r#"{{"api_key":"k","base_url":"{}/api","retry_attempts":2{extra}}}"#, server.origin)
}

fn pg_config(server: &Server, extra: &str) -> String {
    format!(r#"{{"username":"u","api_key":"k","base_url":"{}/api/v2","retry_attempts":2{extra}}}"#, server.origin)
}

/// Runs `sync <connector>` with `config` and `args`, which must succeed; its stderr.
fn sync(wd: &Workdir, connector: &str, config: &str, args: &[&str]) -> String {
    wd.write("c.json", config);
    let mut cmd = wd.command(&["sync", connector, "--config", "c.json", "--out", "out"]);
    let out = wd.output(cmd.args(args));
    assert!(out.status.success(), "{}", crate::workdir::describe(&cmd, &out));
    String::from_utf8(out.stderr).unwrap()
}

fn sync_fails(wd: &Workdir, connector: &str, config: &str) -> String {
    wd.write("c.json", config);
    let mut cmd = wd.command(&["sync", connector, "--config", "c.json", "--out", "out"]);
    one_line(&wd.fails(&mut cmd, 1))
}

fn table(wd: &Workdir, name: &str) -> Table {
    read_table(&wd.path(&format!("out/{name}.csv")))
}

/// The ids of `t` that are live: their latest row is not a tombstone.
fn live(t: &Table) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (id, deleted) in column(t, "id").into_iter().zip(column(t, "_deleted")) {
        if deleted == "true" {
            out.remove(&id);
        } else {
            out.insert(id);
        }
    }
    out
}

fn ids(range: std::ops::RangeInclusive<u32>) -> BTreeSet<String> {
    range.map(|i| i.to_string()).collect()
}

fn warnings(stderr: &str, about: &str) -> usize {
    stderr.lines().filter(|l| l.contains(" warn") && l.contains(about)).count()
}

#[test]
fn a_cursor_forgotten_mid_pass_restarts_without_a_false_repeat() {
    let forgot = Arc::new(AtomicU32::new(0));
    let f = Arc::clone(&forgot);
    let server = mailerlite(3, move |target| {
        if !target.starts_with("/api/subscribers") {
            return empty(target);
        }
        match param(target, "cursor").as_deref() {
            None => Reply::ok(cursor_page(&[record(1)], Some("c1"))),
            Some("c1") => Reply::ok(cursor_page(&[record(2)], Some("c2"))),
            // The server forgets c2 once: the pass starts over and meets c1 again.
            Some("c2") if f.fetch_add(1, Ordering::SeqCst) == 0 => Reply::not_found(),
            Some("c2") => Reply::ok(cursor_page(&[record(3)], None)),
            Some(other) => panic!("cursor {other}"),
        }
    });
    let wd = Workdir::new("lst-forgotten");
    sync(&wd, "mailerlite", &ml_config(&server, ""), &[]);
    assert_eq!(column(&table(&wd, "subscriber"), "id"), ["1", "2", "3"]);
    assert_eq!(forgot.load(Ordering::SeqCst), 2);
}

#[test]
fn a_real_loop_after_a_restart_is_still_caught() {
    let server = mailerlite(3, move |target| {
        if !target.starts_with("/api/subscribers") {
            return empty(target);
        }
        match param(target, "cursor").as_deref() {
            None => Reply::ok(cursor_page(&[record(1)], Some("c1"))),
            Some("c1") => Reply::ok(cursor_page(&[record(2)], Some("c2"))),
            Some("c2") => Reply::not_found(),
            Some(other) => panic!("cursor {other}"),
        }
    });
    let wd = Workdir::new("lst-restart-loop");
    let line = sync_fails(&wd, "mailerlite", &ml_config(&server, ""));
    assert!(line.contains("started over 5 times"), "{line}");
    // The first pass and five restarts, three requests each: no endless loop.
    assert_eq!(server.hits("/api/subscribers?limit=1000"), 18, "{:?}", server.targets());

    let server = mailerlite(3, move |target| {
        if !target.starts_with("/api/subscribers") {
            return empty(target);
        }
        match param(target, "cursor").as_deref() {
            None => Reply::ok(cursor_page(&[record(1)], Some("c1"))),
            Some("c1") => Reply::ok(cursor_page(&[record(2)], Some("c2"))),
            Some("c2") => Reply::ok(cursor_page(&[record(3)], Some("c1"))),
            Some(other) => panic!("cursor {other}"),
        }
    });
    let wd = Workdir::new("lst-cursor-loop");
    let line = sync_fails(&wd, "mailerlite", &ml_config(&server, ""));
    assert!(line.contains("cursor c1 repeats"), "{line}");
}

/// MailerLite's real validation error: the message says only "invalid", the
/// `errors` key names `limit`.
#[test]
fn a_422_in_mailerlites_shape_falls_back_to_100_per_page() {
    let server = mailerlite(150, move |target| {
        if !target.starts_with("/api/subscribers") {
            return empty(target);
        }
        if param(target, "limit").as_deref() == Some("1000") && param(target, "cursor").is_some() {
            let body = r#"{"message": "The given data was invalid.", "errors": {"limit": ["The limit must not be greater than 100."]}}"#;
            return Reply::status(422, body);
        }
        let all: Vec<String> = (1..=150).map(record).collect();
        match param(target, "cursor").as_deref() {
            None if param(target, "limit").as_deref() == Some("1000") => {
                Reply::ok(cursor_page(&all[..100], Some("n100")))
            }
            None => Reply::ok(cursor_page(&all[..100], Some("c100"))),
            Some("c100") => Reply::ok(cursor_page(&all[100..], None)),
            Some(other) => panic!("cursor {other}"),
        }
    });
    let wd = Workdir::new("lst-422");
    for _ in 0..2 {
        let stderr = sync(&wd, "mailerlite", &ml_config(&server, ""), &[]);
        assert_eq!(warnings(&stderr, "using 100"), 1, "{stderr}");
        assert_eq!(live(&table(&wd, "subscriber")), ids(1..=150));
    }
}

/// 23 groups read 2 a page: group 5 is deleted while page 12 is read, which then
/// answers 404. The restart re-reads 11 pages of groups already read (no loop), and
/// the deletion check tombstones group 5, which only the abandoned pass read.
#[test]
fn a_page_listing_that_shrinks_mid_read_restarts_and_tombstones() {
    let deleted = Arc::new(AtomicU32::new(0));
    let d = Arc::clone(&deleted);
    let server = mailerlite(0, move |target| {
        if !target.starts_with("/api/groups") {
            return empty(target);
        }
        if param(target, "page").as_deref() == Some("12") && d.load(Ordering::SeqCst) == 1 {
            d.store(2, Ordering::SeqCst);
        }
        let gone = d.load(Ordering::SeqCst) == 2;
        let groups: Vec<String> = (1..=23).filter(|&i| !(gone && i == 5)).map(record).collect();
        numbered(&groups, target)
    });
    let wd = Workdir::new("lst-shrink");
    let config = ml_config(&server, r#","max_records_per_page":2"#);
    sync(&wd, "mailerlite", &config, &[]);
    assert_eq!(live(&table(&wd, "group")), ids(1..=23));
    deleted.store(1, Ordering::SeqCst);
    sync(&wd, "mailerlite", &config, &[]);
    assert_eq!(deleted.load(Ordering::SeqCst), 2, "page 12 was asked for");
    // Once in each sync: the second found it gone.
    assert_eq!(server.hits("/api/groups?limit=2&page=12"), 2);
    let want: BTreeSet<String> = ids(1..=23).into_iter().filter(|i| i != "5").collect();
    assert_eq!(live(&table(&wd, "group")), want);
    sync(&wd, "mailerlite", &config, &[]);
    assert_eq!(live(&table(&wd, "group")), want);
    assert_eq!(column(&table(&wd, "group"), "id").len(), 24, "one tombstone, nothing else appended");
}

/// A group of 1001 members whose counters say 1002: its member listing (11 pages
/// of memberships the subscriber pass already saw) is read on every run, and
/// every run succeeds.
#[test]
fn a_membership_fallback_over_many_pages_is_no_loop() {
    let member = |i: u32| format!(r#"{{"id":"{i}","email":"s{i}@x.org","groups":[{{"id":"g1"}}]}}"#);
    let server = mailerlite(1001, move |target| {
        let all: Vec<String> = (1..=1001).map(member).collect();
        let at: usize = param(target, "cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
        let end = (at + 100).min(all.len());
        let next = (end < all.len()).then(|| end.to_string());
        if target.starts_with("/api/subscribers") {
            Reply::ok(cursor_page(&all[at..end], next.as_deref()))
        } else if target.starts_with("/api/groups/g1/subscribers") {
            match param(target, "filter[status]").as_deref() {
                Some("active") => Reply::ok(cursor_page(&all[at..end], next.as_deref())),
                _ => Reply::ok(cursor_page(&[], None)),
            }
        } else if target.starts_with("/api/groups") {
            numbered(&[r#"{"id":"g1","name":"G","active_count":1002}"#.to_string()], target)
        } else {
            empty(target)
        }
    });
    let wd = Workdir::new("lst-members");
    let config = ml_config(&server, r#","max_records_per_page":100"#);
    for run in 1..=2 {
        sync(&wd, "mailerlite", &config, &[]);
        let t = table(&wd, "group_subscriber");
        assert_eq!(column(&t, "subscriber_id").len(), 1001, "run {run}");
    }
    assert!(server.hits("/api/groups/g1/subscribers?limit=100&filter%5Bstatus%5D=active") >= 22);
}

#[test]
fn empty_tables_refresh_and_sync_with_incremental_off() {
    let server = mailerlite(0, empty);
    let wd = Workdir::new("lst-empty-refresh");
    sync(&wd, "mailerlite", &ml_config(&server, ""), &[]);
    sync(&wd, "mailerlite", &ml_config(&server, ""), &["--full-refresh"]);
    let wd = Workdir::new("lst-incremental-off");
    for run in 1..=3 {
        let stderr = sync(&wd, "mailerlite", &ml_config(&server, r#","enable_incremental_sync":false"#), &[]);
        assert!(!stderr.contains("error"), "run {run}: {stderr}");
    }
    let v = crate::workdir::Workdir::new("lst-verify");
    let mut cmd = v.command(&["verify", wd.path("out").to_str().unwrap()]);
    v.stdout(&mut cmd);
}

/// Every field is deleted: a refresh succeeds the first time and leaves none live.
#[test]
fn a_refresh_of_a_table_whose_records_were_all_deleted() {
    let gone = Arc::new(AtomicU32::new(0));
    let g = Arc::clone(&gone);
    let server = mailerlite(0, move |target| {
        let fields: Vec<String> =
            if g.load(Ordering::SeqCst) == 1 { Vec::new() } else { (1..=2).map(record).collect() };
        if target.starts_with("/api/fields") {
            numbered(&fields, target)
        } else {
            empty(target)
        }
    });
    let wd = Workdir::new("lst-all-deleted");
    sync(&wd, "mailerlite", &ml_config(&server, ""), &[]);
    assert_eq!(live(&table(&wd, "field")), ids(1..=2));
    gone.store(1, Ordering::SeqCst);
    sync(&wd, "mailerlite", &ml_config(&server, ""), &["--full-refresh"]);
    assert!(!wd.path("out/field.csv").exists() || live(&table(&wd, "field")).is_empty());
    // A plain sync after it tombstones nothing more and succeeds.
    sync(&wd, "mailerlite", &ml_config(&server, ""), &[]);
    assert!(!wd.path("out/field.csv").exists() || live(&table(&wd, "field")).is_empty());
    // And records that come back are synced again.
    gone.store(0, Ordering::SeqCst);
    sync(&wd, "mailerlite", &ml_config(&server, ""), &[]);
    assert_eq!(live(&table(&wd, "field")), ids(1..=2));
}

/// A Paligo server; `listing(resource, page, per_page, parent, target)` answers listings.
fn paligo(mut listing: impl FnMut(&str, usize, usize, Option<String>) -> Reply + Send + 'static) -> Server {
    serve_with(move |target| {
        let path = target.split('?').next().unwrap_or("");
        let resource = path.trim_start_matches("/api/v2/").trim_end_matches('/');
        if resource.contains('/') {
            return Reply::not_found();
        }
        let n = |k: &str| param(target, k).and_then(|v| v.parse().ok());
        listing(resource, n("page").unwrap_or(1), n("per_page").unwrap_or(25), param(target, "parent"))
    })
}

fn pg_page(resource: &str, records: &[String], page: usize, total_pages: usize, next: bool) -> Reply {
    let next = if next { format!("http://x/api/v2/{resource}/?page={}", page + 1) } else { String::new() };
    Reply::ok(format!(
        r#"{{"page":{page},"next_page":"{next}","total_pages":{total_pages},"{resource}":[{}]}}"#,
        records.join(",")
    ))
}

fn pg_record(id: u32) -> String {
    format!(r#"{{"id":{id},"name":"n{id}"}}"#)
}

#[test]
fn paligo_without_assignments_refreshes() {
    let server = paligo(|resource, page, _, _| match resource {
        "users" => pg_page("users", &[pg_record(1)], page, 1, false),
        r => pg_page(r, &[], page, 1, false),
    });
    let wd = Workdir::new("lst-pg-refresh");
    sync(&wd, "paligo", &pg_config(&server, ""), &[]);
    sync(&wd, "paligo", &pg_config(&server, ""), &["--full-refresh"]);
    for _ in 0..2 {
        sync(&wd, "paligo", &pg_config(&server, r#","enable_incremental_sync":"false""#), &[]);
    }
    assert_eq!(live(&table(&wd, "users")), ids(1..=1));
}

/// `total_pages` says 1 on every page while `next_page` names the next one and the
/// pages are full (the server caps them at 100 of the 1000 asked for): all 250
/// users are read, with one warning.
#[test]
fn paligo_reads_on_while_next_page_says_more_than_total_pages() {
    let server = paligo(|resource, page, per_page, _| {
        let users: Vec<String> = (1..=250).map(pg_record).collect();
        let size = per_page.min(100);
        match resource {
            "users" => {
                let start = ((page - 1) * size).min(users.len());
                let end = (start + size).min(users.len());
                pg_page("users", &users[start..end], page, 1, end < users.len())
            }
            r => pg_page(r, &[], page, 1, false),
        }
    });
    let wd = Workdir::new("lst-pg-signals");
    let stderr = sync(&wd, "paligo", &pg_config(&server, ""), &["--tables", "users"]);
    assert_eq!(live(&table(&wd, "users")), ids(1..=250));
    assert_eq!(warnings(&stderr, "end signals disagree"), 1, "{stderr}");
    assert_eq!(server.hits("/api/v2/users/?per_page=1000"), 3);
}

#[test]
fn a_taxonomy_cycle_is_warned_about_once() {
    let tax = |id: u32, title: &str| format!(r#"{{"id":{id},"title":"{title}"}}"#);
    let server = paligo(move |resource, page, _, parent| match (resource, parent.as_deref()) {
        ("taxonomies", None) => pg_page("taxonomies", &[tax(1, "A")], page, 1, false),
        ("taxonomies", Some("1")) => pg_page("taxonomies", &[tax(2, "B")], page, 1, false),
        // B lists its ancestor A as a child.
        ("taxonomies", Some("2")) => pg_page("taxonomies", &[tax(1, "A")], page, 1, false),
        (r, _) => pg_page(r, &[], page, 1, false),
    });
    let wd = Workdir::new("lst-pg-cycle");
    let stderr = sync(&wd, "paligo", &pg_config(&server, ""), &["--tables", "taxonomies"]);
    assert_eq!(warnings(&stderr, "cycle"), 1, "{stderr}");
    assert_eq!(live(&table(&wd, "taxonomies")), ids(1..=2));
}

/// `initial_sync_days`: a `created_at` older than the window is skipped whatever
/// its numeric form; a missing or null one is kept.
#[test]
fn initial_sync_days_dates_every_numeric_form() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (old, new) = (now - 30 * 86_400, now - 86_400);
    let assignments = vec![
        format!(r#"{{"id":1,"created_at":{old}}}"#),
        format!(r#"{{"id":2,"created_at":"{old}"}}"#),
        format!(r#"{{"id":3,"created_at":{old}.0}}"#),
        format!(r#"{{"id":4,"created_at":{new}}}"#),
        format!(r#"{{"id":5,"created_at":"{new}"}}"#),
        format!(r#"{{"id":6,"created_at":{new}.0}}"#),
        r#"{"id":7,"created_at":null}"#.to_string(),
        r#"{"id":8}"#.to_string(),
    ];
    let server = paligo(move |resource, page, _, _| match resource {
        "assignments" => pg_page("assignments", &assignments, page, 1, false),
        r => pg_page(r, &[], page, 1, false),
    });
    let wd = Workdir::new("lst-pg-window");
    sync(&wd, "paligo", &pg_config(&server, r#","initial_sync_days":7"#), &["--tables", "assignments"]);
    assert_eq!(live(&table(&wd, "assignments")), ids(4..=8));
}

/// Paligo users read 2 a page: user 1 is deleted when page 3 is asked for, which
/// then answers 404. The restart reads users 2-5; user 1, read only by the
/// abandoned pass, is checked with the show route (404) and tombstoned.
#[test]
fn a_paligo_listing_that_shrinks_mid_read_tombstones_what_only_the_abandoned_pass_read() {
    let deleted = Arc::new(AtomicU32::new(0));
    let d = Arc::clone(&deleted);
    let server = paligo(move |resource, page, per_page, _| {
        if resource != "users" {
            return pg_page(resource, &[], page, 1, false);
        }
        if page == 3 && d.load(Ordering::SeqCst) == 1 {
            d.store(2, Ordering::SeqCst);
        }
        let gone = d.load(Ordering::SeqCst) == 2;
        let users: Vec<String> = (1..=5).filter(|&i| !(gone && i == 1)).map(pg_record).collect();
        let pages = users.len().div_ceil(per_page).max(1);
        if page > pages {
            return Reply::not_found();
        }
        let start = (page - 1) * per_page;
        pg_page("users", &users[start..(start + per_page).min(users.len())], page, pages, page < pages)
    });
    let wd = Workdir::new("lst-pg-shrink");
    let config = pg_config(&server, r#","max_records_per_page":2"#);
    sync(&wd, "paligo", &config, &["--tables", "users"]);
    assert_eq!(live(&table(&wd, "users")), ids(1..=5));
    deleted.store(1, Ordering::SeqCst);
    sync(&wd, "paligo", &config, &[]);
    assert_eq!(deleted.load(Ordering::SeqCst), 2, "page 3 was asked for");
    assert_eq!(live(&table(&wd, "users")), ids(2..=5));
}
