//! Keys that must stay apart: a spreadsheet guard that two ids cannot share, a group
//! id holding the separator of the step it is read in, and a membership named twice
//! that must not make up for one missing. Each against a hand-written MailerLite on
//! loopback.

use std::sync::{Arc, Mutex};

use crate::expected::read_table;
use crate::hostile::{param, serve_with, sync_ok, Reply, Server};
use crate::hostile_ml::{column, last_sync};
use crate::workdir::Workdir;

fn cursor_page(records: &str) -> String {
    format!(r#"{{"data":[{records}],"links":{{"next":null}},"meta":{{"next_cursor":null,"prev_cursor":null}}}}"#)
}

fn listing(records: &str) -> String {
    format!(
        r#"{{"data":[{records}],"links":{{"next":null}},"meta":{{"current_page":1,"last_page":1,"per_page":100,"total":0}}}}"#
    )
}

/// A MailerLite account: the subscriber pages `subscribers()` answers, the groups
/// `groups`, and each group's member listing (its path segment as sent, the status)
/// what `members` answers; no fields or campaigns.
fn account(
    subscribers: impl Fn() -> String + Send + 'static,
    groups: &str,
    members: fn(&str, &str) -> String,
) -> Server {
    let groups = groups.to_string();
    serve_with(move |target| {
        let path = target.split('?').next().unwrap_or("");
        if path == "/api/subscribers" && param(target, "limit").as_deref() == Some("0") {
            Reply::ok(r#"{"total":2}"#)
        } else if path == "/api/subscribers" {
            Reply::ok(cursor_page(&subscribers()))
        } else if path == "/api/groups" {
            Reply::ok(listing(&groups))
        } else if let Some(group) = path.strip_prefix("/api/groups/").and_then(|p| p.strip_suffix("/subscribers")) {
            Reply::ok(cursor_page(&members(group, &param(target, "filter[status]").unwrap_or_default())))
        } else if path == "/api/fields" || path == "/api/campaigns" {
            Reply::ok(listing(""))
        } else {
            Reply::not_found()
        }
    })
}

fn config(server: &Server) -> String {
    format!(r#"{{"api_key":"k","base_url":"{}/api"}}"#, server.origin)
}

fn no_members(_: &str, _: &str) -> String {
    String::new()
}

/// `=2` and `'=2` are two subscribers: written `'=2` and `''=2`, never re-appended,
/// both kept by `compact`, and the one that goes is tombstoned under its own key.
#[test]
fn spreadsheet_safe_ids_that_differ_by_a_quote_stay_apart() {
    let all = r#"{"id":"=2","email":"a@x.org"},{"id":"'=2","email":"b@x.org"},{"id":"'x","email":"c@x.org"}"#;
    let served = Arc::new(Mutex::new(all.to_string()));
    let now = Arc::clone(&served);
    let server = account(move || now.lock().unwrap().clone(), "", no_members);
    let wd = Workdir::new("keys-guard");
    let ids = || column(&read_table(&wd.path("out/subscriber.csv")), "id");
    let sync = || sync_ok(&wd, "mailerlite", &config(&server), &["--spreadsheet-safe"]);
    sync();
    assert_eq!(ids(), ["'=2", "''=2", "''x"]);
    for _ in 0..2 {
        sync();
        assert_eq!(ids(), ["'=2", "''=2", "''x"], "a sync appended rows");
        assert_eq!(last_sync(&wd, "subscriber")["unchanged"], 3);
    }
    wd.stdout(&mut wd.command(&["compact", "out"]));
    assert_eq!(ids(), ["'=2", "''=2", "''x"], "compact merged two keys");

    // `'=2` is gone: its tombstone carries its key exactly, and `=2` stays.
    *served.lock().unwrap() = r#"{"id":"=2","email":"a@x.org"},{"id":"'x","email":"c@x.org"}"#.to_string();
    sync();
    let t = read_table(&wd.path("out/subscriber.csv"));
    let rows: Vec<(String, String)> =
        column(&t, "id").into_iter().zip(column(&t, "_deleted")).skip(3).collect::<Vec<_>>();
    assert_eq!(rows, [("''=2".to_string(), "true".to_string())]);
    sync();
    assert_eq!(read_table(&wd.path("out/subscriber.csv")).rows.len(), 4, "the tombstone or a row came again");
}

/// The (group, subscriber) pairs of `group_subscriber.csv`, in file order.
fn memberships(wd: &Workdir) -> Vec<(String, String)> {
    let t = read_table(&wd.path("out/group_subscriber.csv"));
    column(&t, "group_id").into_iter().zip(column(&t, "subscriber_id")).collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(g, s)| (g.to_string(), s.to_string())).collect()
}

const COUNTERS_SAY_TWO: &str =
    r#""active_count":2,"unsubscribed_count":0,"unconfirmed_count":0,"bounced_count":0,"junk_count":0"#;

/// Subscriber 2's `groups` is null: only the member listing of its group finds it.
fn both_active(group: &str, status: &str) -> String {
    match (group, status) {
        ("12%3A34" | "7", "active") => r#"{"id":"1"},{"id":"2"}"#.to_string(),
        _ => String::new(),
    }
}

#[test]
fn a_group_id_holding_a_colon_is_read_as_itself() {
    let subscribers = || r#"{"id":"1","groups":[{"id":"12:34"}]},{"id":"2","groups":null}"#.to_string();
    let server = account(subscribers, &format!(r#"{{"id":"12:34","name":"g",{COUNTERS_SAY_TWO}}}"#), both_active);
    let wd = Workdir::new("keys-colon");
    sync_ok(&wd, "mailerlite", &config(&server), &[]);
    assert_eq!(memberships(&wd), pairs(&[("12:34", "1"), ("12:34", "2")]));
    let asked: Vec<(String, Option<String>)> = server
        .targets()
        .iter()
        .filter(|t| t.starts_with("/api/groups/"))
        .map(|t| (t.split('?').next().unwrap().to_string(), param(t, "filter[status]")))
        .collect();
    let statuses = ["unconfirmed", "active", "unsubscribed", "bounced", "junk"];
    let want: Vec<(String, Option<String>)> =
        statuses.iter().map(|s| ("/api/groups/12%3A34/subscribers".to_string(), Some(s.to_string()))).collect();
    assert_eq!(asked, want);
}

#[test]
fn a_duplicated_membership_does_not_hide_a_missing_one() {
    let subscribers = || r#"{"id":"1","groups":[{"id":"7"},{"id":"7"}]},{"id":"2","groups":null}"#.to_string();
    let server = account(subscribers, &format!(r#"{{"id":"7","name":"g",{COUNTERS_SAY_TWO}}}"#), both_active);
    let wd = Workdir::new("keys-duplicate");
    sync_ok(&wd, "mailerlite", &config(&server), &[]);
    assert_eq!(memberships(&wd), pairs(&[("7", "1"), ("7", "2")]));
    // Every later sync still finds it, and adds nothing.
    sync_ok(&wd, "mailerlite", &config(&server), &[]);
    assert_eq!(memberships(&wd), pairs(&[("7", "1"), ("7", "2")]));
}

/// Members of the groups of `groups_in_any_order`, for the fallback listing.
fn members_of_five(group: &str, status: &str) -> String {
    let ids: &[&str] = match (group, status) {
        ("1" | "2", "active") => &["9", "7"],
        ("3", "active") => &["9"],
        ("4" | "5", "active") => &["8"],
        _ => &[],
    };
    ids.iter().map(|id| format!(r#"{{"id":"{id}"}}"#)).collect::<Vec<_>>().join(",")
}

/// A first sync learns that memberships come sorted by subscriber, each one's groups
/// in any order; a subscriber served again across a page boundary (the listing
/// shifted) writes none of its memberships twice, and none is lost.
#[test]
fn memberships_of_a_subscriber_served_twice_across_pages_are_written_once() {
    let sub = |id: &str, groups: &[&str]| {
        let g: Vec<String> = groups.iter().map(|g| format!(r#"{{"id":"{g}"}}"#)).collect();
        format!(r#"{{"id":"{id}","status":"active","groups":[{}]}}"#, g.join(","))
    };
    let page1 = format!("{},{}", sub("9", &["3", "1", "2"]), sub("8", &["5", "4"]));
    let page2 = format!("{},{}", sub("8", &["5", "4"]), sub("7", &["2", "1"]));
    let counts = |n: u32| {
        format!(r#""active_count":{n},"unsubscribed_count":0,"unconfirmed_count":0,"bounced_count":0,"junk_count":0"#)
    };
    let groups: Vec<String> = [("1", 2), ("2", 2), ("3", 1), ("4", 1), ("5", 1)]
        .iter()
        .map(|(id, n)| format!(r#"{{"id":"{id}","name":"g{id}",{}}}"#, counts(*n)))
        .collect();
    let groups = groups.join(",");
    let server = serve_with(move |target| {
        let path = target.split('?').next().unwrap_or("");
        if path == "/api/subscribers" && param(target, "limit").as_deref() == Some("0") {
            Reply::ok(r#"{"total":3}"#)
        } else if path == "/api/subscribers" && param(target, "cursor").is_none() {
            Reply::ok(format!(
                r#"{{"data":[{page1}],"links":{{"next":"x"}},"meta":{{"next_cursor":"c2","prev_cursor":null}}}}"#
            ))
        } else if path == "/api/subscribers" {
            Reply::ok(cursor_page(&page2))
        } else if path == "/api/groups" {
            Reply::ok(listing(&groups))
        } else if let Some(group) = path.strip_prefix("/api/groups/").and_then(|p| p.strip_suffix("/subscribers")) {
            Reply::ok(cursor_page(&members_of_five(group, &param(target, "filter[status]").unwrap_or_default())))
        } else if path == "/api/fields" || path == "/api/campaigns" {
            Reply::ok(listing(""))
        } else {
            Reply::not_found()
        }
    });
    let wd = Workdir::new("keys-runs");
    sync_ok(&wd, "mailerlite", &config(&server), &[]);
    let want = pairs(&[("3", "9"), ("1", "9"), ("2", "9"), ("5", "8"), ("4", "8"), ("2", "7"), ("1", "7")]);
    assert_eq!(memberships(&wd), want);
    let subscribers = read_table(&wd.path("out/subscriber.csv"));
    assert_eq!(subscribers.rows.len(), 3, "{:?}", subscribers.rows);
    // A second sync finds every one again and appends nothing.
    sync_ok(&wd, "mailerlite", &config(&server), &[]);
    assert_eq!(memberships(&wd), want);
}

/// A first sync of a listing that sends its keys in no order, some of them twice
/// across pages, tells repeats with a set that stays small: here it holds 5 keys in
/// memory and the rest in a sorted file beside the table, gone at the end.
#[test]
fn keys_in_no_order_are_written_once_with_most_of_the_set_on_disk() {
    const PAGES: usize = 12;
    // 7 ids a page from a scrambled sequence; every third page repeats one of the page before.
    let id = |n: usize| (n * 7919 % 1009) + 1;
    let page_ids = move |p: usize| -> Vec<usize> {
        let mut ids: Vec<usize> = (0..7).map(|k| id(p * 7 + k)).collect();
        if p % 3 == 2 {
            ids.push(id((p - 1) * 7 + 3));
        }
        ids
    };
    let server = serve_with(move |target| {
        let path = target.split('?').next().unwrap_or("");
        if path == "/api/subscribers" && param(target, "limit").as_deref() == Some("0") {
            Reply::ok(format!(r#"{{"total":{}}}"#, PAGES * 7))
        } else if path == "/api/subscribers" {
            let p: usize = param(target, "cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
            let records: Vec<String> =
                page_ids(p).iter().map(|i| format!(r#"{{"id":"{i}","email":"s{i}@x"}}"#)).collect();
            let next = if p + 1 < PAGES { format!("\"{}\"", p + 1) } else { "null".into() };
            Reply::ok(format!(
                r#"{{"data":[{}],"links":{{"next":null}},"meta":{{"next_cursor":{next},"prev_cursor":null}}}}"#,
                records.join(",")
            ))
        } else if path == "/api/groups" || path == "/api/fields" || path == "/api/campaigns" {
            Reply::ok(listing(""))
        } else {
            Reply::not_found()
        }
    });
    let wd = Workdir::new("keys-no-order");
    let mut cmd = wd.command(&["sync", "mailerlite", "--config", "c.json", "--out", "out", "--tables", "subscriber"]);
    wd.write("c.json", &config(&server));
    cmd.env("API2CSV_TEST_KEYS_IN_MEMORY", "5");
    wd.stdout(&mut cmd);
    let t = read_table(&wd.path("out/subscriber.csv"));
    let ids: Vec<String> = t.rows.iter().map(|r| r[0].clone()).collect();
    let want: std::collections::BTreeSet<String> = (0..PAGES * 7).map(|n| id(n).to_string()).collect();
    let got: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), got.len(), "a key was written twice: {ids:?}");
    assert_eq!(got, want);
    assert!(!wd.path("out/.subscriber.keyset").exists(), "the set's file outlives the sync");
}
