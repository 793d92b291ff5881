//! Tests of the MailerLite mock through `handle`, without a socket: envelope shapes,
//! paging in both directions, filters and their defaults, errors, the hard values,
//! determinism, and that `expected` and `mutations` agree with what is served;
//! `account` and `groups` hold the tests of the account's identity and memberships.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::life::Status;
use super::*;

mod account;
mod groups;

fn account(records: usize, generation: u32) -> MailerLite {
    MailerLite::new(&MockOptions { seed: 42, records, generation, ..MockOptions::default() })
}

fn request(target: &str, authorization: Option<String>) -> MockRequest {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    MockRequest {
        method: "GET".into(),
        path: path.into(),
        query: crate::mock::wire::parse_query(query),
        authorization,
        origin: "http://mock".into(),
    }
}

fn get(api: &MailerLite, target: &str) -> (u16, Value) {
    let response = api.handle(&request(target, Some(format!("Bearer {API_KEY}"))));
    (response.status, serde_json::from_slice(&response.body).unwrap())
}

fn ok(api: &MailerLite, target: &str) -> Value {
    let (status, body) = get(api, target);
    assert_eq!(status, 200, "{target}: {body}");
    body
}

fn keys(value: &Value) -> Vec<&str> {
    value.as_object().unwrap().keys().map(String::as_str).collect()
}

/// Every record of a cursor endpoint, following `meta.next_cursor`.
fn all_pages(api: &MailerLite, target: &str) -> Vec<Value> {
    let mut records = Vec::new();
    let mut page = ok(api, target);
    loop {
        records.extend(page["data"].as_array().unwrap().iter().cloned());
        let Some(cursor) = page["meta"]["next_cursor"].as_str() else {
            break;
        };
        let separator = if target.contains('?') { '&' } else { '?' };
        page = ok(api, &format!("{target}{separator}cursor={cursor}"));
    }
    records
}

/// Every record of a page-number endpoint, following `links.next`.
fn all_numbered_pages(api: &MailerLite, target: &str) -> Vec<Value> {
    let mut records = Vec::new();
    for page in 1.. {
        let body = ok(api, &format!("{target}&page={page}"));
        records.extend(body["data"].as_array().unwrap().iter().cloned());
        if body["links"]["next"].is_null() {
            break;
        }
    }
    records
}

fn texts(records: &[Value]) -> HashSet<String> {
    records.iter().map(Value::to_string).collect()
}

fn expected(api: &MailerLite, table: &str) -> HashSet<String> {
    api.expected(table).into_iter().collect()
}

#[test]
fn cursor_envelope_and_subscriber_have_the_real_keys() {
    let api = account(50, 1);
    let page = ok(&api, "/api/subscribers?limit=5");
    assert_eq!(keys(&page), ["data", "links", "meta"]);
    assert_eq!(keys(&page["links"]), ["first", "last", "prev", "next"]);
    assert_eq!(keys(&page["meta"]), ["path", "per_page", "next_cursor", "prev_cursor"]);
    assert_eq!(page["meta"]["path"], "http://mock/api/subscribers");
    assert_eq!(page["meta"]["per_page"], 5);
    assert!(page["links"]["first"].is_null() && page["links"]["prev"].is_null());
    let cursor = page["meta"]["next_cursor"].as_str().unwrap();
    assert_eq!(page["links"]["next"], format!("http://mock/api/subscribers?cursor={cursor}"));
    let subscriber = &page["data"][0];
    let order = [
        "id",
        "email",
        "status",
        "source",
        "sent",
        "opens_count",
        "clicks_count",
        "open_rate",
        "click_rate",
        "ip_address",
        "subscribed_at",
        "unsubscribed_at",
        "created_at",
        "updated_at",
        "fields",
        "opted_in_at",
        "optin_ip",
    ];
    assert_eq!(keys(subscriber), order);
    let fields = [
        "name",
        "last_name",
        "company",
        "country",
        "city",
        "phone",
        "state",
        "z_i_p",
        "plan_tier",
        "score",
        "birthday",
    ];
    assert_eq!(keys(&subscriber["fields"]), fields);
    assert_eq!(subscriber["id"].as_str().unwrap().len(), 18);
    assert_eq!(subscriber["created_at"].as_str().unwrap().len(), "2025-02-11 09:41:27".len());
}

#[test]
fn paging_returns_every_subscriber_once_in_descending_id_order() {
    let api = account(60, 1);
    let records = all_pages(&api, "/api/subscribers?limit=7");
    let ids: Vec<u64> = records.iter().map(|s| s["id"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(texts(&records), expected(&api, "subscriber"));
    assert_eq!(records.len(), 60);
    let statuses: HashSet<&str> = records.iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert!(statuses.len() >= 3, "no status filter means every status: {statuses:?}");
}

#[test]
fn prev_cursor_leads_back_to_the_previous_page() {
    let api = account(60, 1);
    let first = ok(&api, "/api/subscribers?limit=10");
    let next = first["meta"]["next_cursor"].as_str().unwrap();
    let second = ok(&api, &format!("/api/subscribers?limit=10&cursor={next}"));
    let prev = second["meta"]["prev_cursor"].as_str().unwrap();
    let back = ok(&api, &format!("/api/subscribers?limit=10&cursor={prev}"));
    assert_eq!(back["data"], first["data"]);
    assert!(back["meta"]["prev_cursor"].is_null());
    assert!(back["meta"]["next_cursor"].is_string());
}

#[test]
fn limit_is_capped_at_100_and_zero_counts() {
    let api = account(250, 1);
    let page = ok(&api, "/api/subscribers?limit=500");
    assert_eq!(page["meta"]["per_page"], 100);
    assert_eq!(page["data"].as_array().unwrap().len(), 100);
    assert_eq!(ok(&api, "/api/subscribers")["meta"]["per_page"], 25);
    assert_eq!(ok(&api, "/api/subscribers?limit=0"), serde_json::json!({"total": 250}));
    assert_eq!(ok(&api, "/api/groups?limit=1000")["meta"]["per_page"], 100);
}

#[test]
fn per_page_is_the_page_size_granted_in_both_envelopes() {
    let api = account(250, 1);
    let group = ok(&api, "/api/groups?limit=1")["data"][0]["id"].as_str().unwrap().to_string();
    for (target, granted) in [
        ("/api/subscribers?limit=101".to_string(), 100),
        (format!("/api/groups/{group}/subscribers?limit=5000&filter[status]=active"), 100),
        (format!("/api/groups/{group}/subscribers?limit=3"), 3),
        ("/api/subscribers?limit=100&include=groups".to_string(), 100),
        ("/api/groups?limit=101".to_string(), 100),
        ("/api/fields?limit=100000".to_string(), 100),
        ("/api/campaigns?filter[status]=sent&limit=250".to_string(), 100),
        ("/api/campaigns?filter[status]=sent&limit=4".to_string(), 4),
        ("/api/fields".to_string(), 25),
    ] {
        assert_eq!(ok(&api, &target)["meta"]["per_page"], granted, "{target}");
    }
}

#[test]
fn reject_large_limit_answers_laravels_422() {
    let api = MailerLite::new(&MockOptions { records: 250, reject_large_limit: true, ..MockOptions::default() });
    let group = ok(&api, "/api/groups?limit=1")["data"][0]["id"].as_str().unwrap().to_string();
    let body = r#"{"message":"The limit may not be greater than 100.","errors":{"limit":["The limit may not be greater than 100."]}}"#;
    for target in [
        "/api/subscribers?limit=101".to_string(),
        format!("/api/groups/{group}/subscribers?limit=1000"),
        "/api/groups?limit=101".to_string(),
        "/api/fields?limit=500".to_string(),
        "/api/campaigns?filter[status]=sent&limit=250".to_string(),
    ] {
        let response = api.handle(&request(&target, Some(format!("Bearer {API_KEY}"))));
        assert_eq!((response.status, String::from_utf8(response.body).unwrap().as_str()), (422, body), "{target}");
    }
    assert_eq!(ok(&api, "/api/subscribers?limit=100")["data"].as_array().unwrap().len(), 100);
    assert_eq!(ok(&api, "/api/subscribers?limit=0"), serde_json::json!({"total": 250}));
}

#[test]
fn bad_cursor_and_bad_key_get_the_real_errors() {
    let api = account(10, 1);
    let (status, body) = get(&api, "/api/subscribers?cursor=garbage!");
    assert_eq!(status, 422);
    let errors =
        serde_json::json!({"message": "The given data was invalid.", "errors": {"cursor": ["The cursor is invalid."]}});
    assert_eq!(body, errors);
    let response = api.handle(&request("/api/subscribers", Some("Bearer nope".into())));
    assert_eq!((response.status, response.body.as_slice()), (401, &br#"{"message":"Unauthenticated."}"#[..]));
    assert_eq!(api.handle(&request("/api/subscribers", None)).status, 401);
}

#[test]
fn status_filter_keeps_only_that_status() {
    let api = account(200, 1);
    let records = all_pages(&api, "/api/subscribers?limit=100&filter[status]=unsubscribed");
    assert!(!records.is_empty());
    assert!(records.iter().all(|s| s["status"] == "unsubscribed"));
    assert_eq!(get(&api, "/api/subscribers?filter[status]=gone").0, 422);
}

#[test]
fn page_envelope_has_the_real_keys_and_labels() {
    let api = account(10, 1);
    let page = ok(&api, "/api/campaigns?filter[status]=sent&limit=5&page=2");
    assert_eq!(keys(&page), ["data", "links", "meta"]);
    assert_eq!(keys(&page["links"]), ["first", "last", "prev", "next"]);
    let meta = ["current_page", "from", "last_page", "links", "path", "per_page", "to", "total", "aggregations"];
    assert_eq!(keys(&page["meta"]), meta);
    assert_eq!(page["links"]["prev"], "http://mock/api/campaigns?page=1");
    assert_eq!((page["meta"]["from"].as_u64(), page["meta"]["to"].as_u64()), (Some(6), Some(10)));
    let links = page["meta"]["links"].as_array().unwrap();
    assert_eq!(links[0]["label"], "&laquo; Previous");
    assert_eq!(links.last().unwrap()["label"], "Next &raquo;");
    assert_eq!(links[2], serde_json::json!({"url": "http://mock/api/campaigns?page=2", "label": "2", "active": true}));
    let past = ok(&api, "/api/groups?page=9");
    assert_eq!(past["data"], Value::Array(vec![]));
    assert!(past["meta"]["from"].is_null() && past["meta"]["to"].is_null());
    assert!(past["links"]["next"].is_null());
    let single = ok(&api, "/api/fields");
    assert!(single["meta"]["links"][0]["url"].is_null() && single["meta"]["links"][2]["url"].is_null());
}

#[test]
fn campaigns_default_to_ready() {
    let api = account(10, 1);
    let default = ok(&api, "/api/campaigns?limit=100");
    let statuses: HashSet<&str> =
        default["data"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, HashSet::from(["ready"]));
    let aggregations = &default["meta"]["aggregations"];
    assert_eq!(keys(aggregations), ["all", "draft", "ready", "sent"]);
    assert_eq!(aggregations["all"], CAMPAIGNS);
    let mut all = Vec::new();
    for status in ["sent", "draft", "ready"] {
        all.extend(all_numbered_pages(&api, &format!("/api/campaigns?filter[status]={status}&limit=7")));
    }
    assert_eq!(texts(&all), expected(&api, "campaign"));
    let created: Vec<&str> = all[..5].iter().map(|c| c["created_at"].as_str().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] > w[1]), "newest first");
}

#[test]
fn campaign_has_the_real_shape() {
    let api = account(10, 1);
    let sent = ok(&api, "/api/campaigns?filter[status]=sent&limit=1");
    let campaign = &sent["data"][0];
    let names = keys(campaign);
    assert_eq!(names[..6], ["id", "account_id", "name", "type", "status", "missing_data"]);
    assert_eq!(names[names.len() - 3..], ["basic_filter_for_humans", "is_eligible_for_sending", "needs_repair"]);
    assert!(campaign["stats"].is_object() && campaign["ecommerce_stats"].is_null());
    assert!(campaign["language_id"].is_string() && campaign["emails"][0]["language_id"].is_u64());
    let draft = ok(&api, "/api/campaigns?filter[status]=draft&limit=1");
    assert!(draft["data"][0].get("stats").is_none());
    assert!(draft["data"][0]["emails"][0]["stats"].is_object());
    let text = api.expected("campaign").join("\n");
    assert!(text.contains(r#""included_groups":[{"id":151877"#), "group ids are JSON numbers");
    assert!(text.contains(".000000Z\""));
}

#[test]
fn unknown_group_is_a_pretty_printed_404() {
    let api = account(10, 1);
    let response = api.handle(&request("/api/groups/121212/subscribers", Some(format!("Bearer {API_KEY}"))));
    assert_eq!(response.status, 404);
    let body = "{\n    \"message\": \"No query results for model [App\\\\Models\\\\Group\\\\Group] 121212\"\n}";
    assert_eq!(String::from_utf8(response.body).unwrap(), body);
}

#[test]
fn fields_are_defaults_then_custom() {
    let api = account(10, 1);
    let fields = ok(&api, "/api/fields?limit=100")["data"].as_array().unwrap().clone();
    assert_eq!(keys(&fields[0]), ["id", "name", "key", "type", "is_default", "used_in_automations"]);
    assert_eq!(fields[7]["key"], "z_i_p");
    assert_eq!(fields[7]["id"], "8");
    assert!(fields[..8].iter().all(|f| f["is_default"] == true));
    assert!(fields[8..].iter().all(|f| f["is_default"] == false));
}

#[test]
fn hard_values_are_present() {
    let api = account(40, 1);
    let text = api.expected("subscriber").join("\n");
    for needle in [
        "\\\"The Boss\\\"",
        "Smith, Jones",
        "\\r\\n",
        "🎉",
        "Ελληνική",
        "株式会社",
        "شركة",
        "\"=SUM(A1:A2)\"",
        "\"+49",
        "\"-5 Discount\"",
        "\"@handle\"",
        "\"company\":\"\"",
        "\"company\":null",
        "\"  padded both sides  \"",
        "\"open_rate\":0,",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    assert!(text.len() > 10_240);
}

#[test]
fn the_account_is_deterministic() {
    assert_eq!(account(30, 2).expected("subscriber"), account(30, 2).expected("subscriber"));
    let other = MailerLite::new(&MockOptions { seed: 43, records: 30, ..MockOptions::default() });
    assert_ne!(other.expected("subscriber"), account(30, 1).expected("subscriber"));
}

#[test]
fn generation_one_has_no_mutations() {
    assert!(account(20, 1).mutations().tables.is_empty());
}

#[test]
fn generation_two_differs_exactly_by_its_mutations() {
    let (old, new) = (account(1500, 1), account(1500, 2));
    let mutations = new.mutations();
    for table in TABLES {
        let by_key = |api: &MailerLite| -> HashMap<String, String> {
            api.expected(table)
                .into_iter()
                .map(|t| (primary_key(table, &serde_json::from_str(&t).unwrap()), t))
                .collect()
        };
        let (before, after) = (by_key(&old), by_key(&new));
        let m = mutations.table(table).unwrap();
        let added: HashSet<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        let deleted: HashSet<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
        assert_eq!(added, m.added.iter().collect(), "{table} added");
        assert_eq!(deleted, m.deleted.iter().collect(), "{table} deleted");
        for key in &m.changed {
            assert_ne!(before[key], after[key], "{table} {key} listed as changed");
        }
        for (key, text) in after.iter().filter(|(k, _)| !m.changed.contains(k)) {
            let unchanged = text.replace(",\"loyalty_level\":null", "");
            assert!(before.get(key).is_none_or(|b| *b == unchanged), "{table} {key} changed unlisted");
        }
    }
    let count = |table: &str| {
        let m = mutations.table(table).unwrap();
        (m.added.len(), m.changed.len(), m.deleted.len())
    };
    let (added, changed, deleted) = count("subscriber");
    assert!(added > 0 && changed > 0 && deleted > 0, "{:?}", count("subscriber"));
    assert!(changed < 1500 / 10, "a new empty field is not a change: {changed}");
    assert_eq!(count("field"), (1, 0, 0));
    assert_eq!(count("campaign"), (0, 1, 0));
    assert!(mutations.table("group").unwrap().changed.contains(&new.groups[0].id.0.to_string()));
    let (added, _, deleted) = count("group_subscriber");
    assert!(added > 0 && deleted > 0);
    assert!(new.expected("subscriber")[0].contains("\"loyalty_level\":null"));
}

#[test]
fn generation_three_deletes_a_group() {
    let mutations = account(100, 3).mutations();
    assert_eq!(mutations.table("group").unwrap().deleted.len(), 1);
    assert_eq!(mutations.table("campaign").unwrap().changed.len(), 1);
}

fn header<'a>(response: &'a MockResponse, name: &str) -> Option<&'a str> {
    response.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}
