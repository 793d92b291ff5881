//! Tests of the Paligo mock through `handle`, without a socket: the envelope and
//! paging, routes and filters, the taxonomy tree walked as a connector walks it,
//! authentication, and that `expected` and `mutations` agree with what is served.

use serde_json::Value;

use super::auth::base64_encode;
use super::expected::{diff, TABLES};
use super::*;

const ORIGIN: &str = "http://127.0.0.1:4000";

fn account(records: usize, generation: u32) -> Paligo {
    Paligo::new(&MockOptions { seed: 7, records, generation, ..MockOptions::default() })
}

fn request(path: &str, query: &[(&str, &str)]) -> MockRequest {
    MockRequest {
        method: "GET".to_string(),
        path: path.to_string(),
        query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        authorization: Some(basic_auth(USERNAME, API_KEY)),
        origin: ORIGIN.to_string(),
    }
}

fn get(api: &Paligo, path: &str, query: &[(&str, &str)]) -> (u16, String) {
    let response = api.handle(&request(path, query));
    (response.status, String::from_utf8(response.body).unwrap())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Splits an absolute `next_page` URL into the path and query the server sees.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let rest = url.strip_prefix(ORIGIN).expect("next_page is absolute");
    let (path, query) = rest.split_once('?').unwrap();
    let pairs = query.split('&').map(|kv| kv.split_once('=').unwrap());
    (path.to_string(), pairs.map(|(k, v)| (percent_decode(k), percent_decode(v))).collect())
}

/// Follows `next_page` from the first page; returns every page body.
fn pages(api: &Paligo, path: &str, query: &[(&str, &str)]) -> Vec<String> {
    let mut req = request(path, query);
    let mut bodies = Vec::new();
    loop {
        let response = api.handle(&req);
        assert_eq!(response.status, 200);
        let body = String::from_utf8(response.body).unwrap();
        let next = json(&body)["next_page"].as_str().unwrap().to_string();
        bodies.push(body);
        if next.is_empty() {
            return bodies;
        }
        (req.path, req.query) = split_url(&next);
    }
}

fn items(bodies: &[String], key: &str) -> Vec<Value> {
    bodies.iter().flat_map(|b| json(b)[key].as_array().unwrap().clone()).collect()
}

fn by_id(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(|v| v["id"].as_u64().unwrap());
    values
}

fn expected_values(api: &Paligo, table: &str) -> Vec<Value> {
    by_id(api.expected(table).iter().map(|s| json(s)).collect())
}

/// The whole tree as a connector reads it: roots, then `parent=` per node.
fn walk_tree(api: &Paligo) -> Vec<Value> {
    let mut out = Vec::new();
    let mut queue: Vec<(Value, Option<u64>, Vec<String>)> =
        items(&pages(api, "/api/v2/taxonomies/", &[]), "taxonomies")
            .into_iter()
            .map(|t| (t, None, Vec::new()))
            .collect();
    while let Some((mut t, parent_id, mut titles)) = queue.pop() {
        titles.push(t["title"].as_str().unwrap().to_string());
        let id = t["id"].as_u64().unwrap().to_string();
        let children = items(&pages(api, "/api/v2/taxonomies", &[("parent", &id), ("per_page", "3")]), "taxonomies");
        for child in children {
            queue.push((child, t["id"].as_u64(), titles.clone()));
        }
        let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
        t["parent_id"] = parent_id.into();
        t["level"] = titles.len().into();
        t["path"] = taxonomy_path(&refs).into();
        out.push(t);
    }
    by_id(out)
}

#[test]
fn envelope_keys_in_order_and_empty_next_page_on_last_page() {
    let api = account(40, 1);
    let (status, body) = get(&api, "/api/v2/assignments/", &[("per_page", "30")]);
    assert_eq!(status, 200);
    let at = |key: &str| body.find(&format!("\"{key}\":")).unwrap();
    assert!(body.starts_with("{\"page\":1,"));
    assert!(at("page") < at("next_page") && at("next_page") < at("total_pages"));
    assert!(at("total_pages") < at("assignments"));
    assert_eq!(json(&body)["total_pages"], 2);
    let expected_next = format!("{ORIGIN}/api/v2/assignments/?page=2&per_page=30");
    assert_eq!(json(&body)["next_page"], expected_next.as_str());
    let (_, last) = get(&api, "/api/v2/assignments/", &[("per_page", "30"), ("page", "2")]);
    assert_eq!(json(&last)["next_page"], "");
    assert_eq!(json(&last)["assignments"].as_array().unwrap().len(), 10);
}

#[test]
fn page_past_the_end_is_empty() {
    let api = account(40, 1);
    let (status, body) = get(&api, "/api/v2/users/", &[("page", "9")]);
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"page":9,"next_page":"","total_pages":1,"users":[]}"#);
}

#[test]
fn both_slash_forms_answer_the_same() {
    let api = account(40, 1);
    for resource in ["users", "taxonomies", "assignments"] {
        let (status, with) = get(&api, &format!("/api/v2/{resource}/"), &[]);
        assert_eq!(status, 200);
        assert_eq!(get(&api, &format!("/api/v2/{resource}"), &[]), (200, with.clone()));
        let id = json(&with)[resource][0]["id"].to_string();
        let (status, shown) = get(&api, &format!("/api/v2/{resource}/{id}/"), &[]);
        assert_eq!(status, 200);
        assert_eq!(json(&shown), json(&with)[resource][0]);
        assert_eq!(get(&api, &format!("/api/v2/{resource}/{id}"), &[]), (200, shown));
    }
}

#[test]
fn unknown_routes_and_ids_are_404_json() {
    let api = account(40, 1);
    for path in ["/api/v2/groups/", "/api/v2/", "/users/", "/api/v2/users/abc/", "/api/v2/users/1/x/"] {
        let (status, body) = get(&api, path, &[]);
        assert_eq!((status, json(&body)["message"].as_str()), (404, Some("Not found")), "{path}");
    }
    let hidden = format!("/api/v2/taxonomies/{HIDDEN_ROOT_ID}/");
    assert_eq!(get(&api, &hidden, &[]).0, 404);
    assert_eq!(get(&api, "/api/v2/assignments/3000000040/", &[]).0, 404);
}

#[test]
fn per_page_is_capped_and_defaults_to_25() {
    let api = account(250, 1);
    let (_, body) = get(&api, "/api/v2/assignments/", &[("per_page", "1000")]);
    let page = json(&body);
    assert_eq!(page["assignments"].as_array().unwrap().len(), MAX_PER_PAGE);
    assert_eq!(page["total_pages"], 3);
    assert!(page["next_page"].as_str().unwrap().contains("per_page=100"));
    let (_, body) = get(&api, "/api/v2/assignments/", &[]);
    assert_eq!(json(&body)["assignments"].as_array().unwrap().len(), DEFAULT_PER_PAGE);
    assert_eq!(json(&body)["total_pages"], 10);
}

#[test]
fn reject_large_limit_refuses_per_page_above_the_cap() {
    let api = Paligo::new(&MockOptions { records: 250, reject_large_limit: true, ..MockOptions::default() });
    for resource in ["users", "taxonomies", "assignments"] {
        let path = format!("/api/v2/{resource}/");
        let (status, body) = get(&api, &path, &[("per_page", "101")]);
        assert_eq!(
            (status, json(&body)),
            (422, serde_json::json!({"message": "The per_page may not be greater than 100."}))
        );
        assert_eq!(get(&api, &path, &[("per_page", "100")]).0, 200);
    }
    let (status, body) = get(&api, "/api/v2/assignments/", &[("per_page", "100"), ("page", "2")]);
    assert_eq!((status, json(&body)["assignments"].as_array().unwrap().len()), (200, 100));
    assert_eq!(get(&account(250, 1), "/api/v2/assignments/", &[("per_page", "101")]).0, 200);
}

#[test]
fn next_page_keeps_filters() {
    let api = account(400, 1);
    let query = [("status", "draft"), ("per_page", "5"), ("lang", "pt-BR")];
    let bodies = pages(&api, "/api/v2/assignments/", &query);
    let next = json(&bodies[0])["next_page"].as_str().unwrap().to_string();
    assert!(next.ends_with("&status=draft&lang=pt-BR"), "{next}");
    let found = items(&bodies, "assignments");
    assert!(!found.is_empty());
    assert!(found.iter().all(|a| a["status"] == "draft" && a["lang"] == "pt-BR"));
    let all = expected_values(&api, "assignments");
    let count = all.iter().filter(|a| a["status"] == "draft" && a["lang"] == "pt-BR").count();
    assert_eq!(found.len(), count);
}

#[test]
fn users_type_filter() {
    let api = account(400, 1);
    let found = items(&pages(&api, "/api/v2/users/", &[("type", "reviewer")]), "users");
    let count = expected_values(&api, "users").iter().filter(|u| u["type"] == "reviewer").count();
    assert!(count > 0);
    assert_eq!(found.len(), count);
    assert!(found.iter().all(|u| u["type"] == "reviewer"));
}

#[test]
fn taxonomy_listing_without_parent_is_root_level_only() {
    let api = account(400, 1);
    let roots = items(&pages(&api, "/api/v2/taxonomies/", &[]), "taxonomies");
    assert!(roots.len() > 1);
    assert!(roots.iter().all(|t| t["parent"] == HIDDEN_ROOT_ID));
    assert!(roots.len() < api.expected("taxonomies").len());
    let hidden = HIDDEN_ROOT_ID.to_string();
    let same = items(&pages(&api, "/api/v2/taxonomies/", &[("parent", &hidden)]), "taxonomies");
    assert_eq!(roots, same);
}

#[test]
fn taxonomy_tree_is_at_least_five_levels_deep() {
    for (records, generation) in [(0, 1), (40, 3), (20_000, 1)] {
        let api = account(records, generation);
        let levels = expected_values(&api, "taxonomies").iter().map(|t| t["level"].as_u64().unwrap()).max();
        assert!(levels.unwrap() >= 5, "records {records}");
    }
}

#[test]
fn sizes_follow_records() {
    let api = account(20_000, 1);
    assert_eq!(api.expected("users").len(), 2857);
    assert_eq!(api.expected("taxonomies").len(), 5000);
    assert_eq!(api.expected("assignments").len(), 20_000);
    let tiny = account(0, 1);
    assert_eq!((tiny.expected("users").len(), tiny.expected("taxonomies").len()), (5, 20));
}

#[test]
fn expected_equals_what_paging_serves() {
    for generation in [1, 2, 4] {
        let api = account(60, generation);
        for table in ["users", "assignments"] {
            let bodies = pages(&api, &format!("/api/v2/{table}/"), &[("per_page", "7")]);
            assert_eq!(by_id(items(&bodies, table)), expected_values(&api, table));
            // Byte for byte, too: every expected record is served as that text.
            let served = bodies.concat();
            assert!(api.expected(table).iter().all(|record| served.contains(record.as_str())));
        }
    }
}

#[test]
fn expected_taxonomies_equal_the_walked_tree() {
    for generation in [1, 2, 5] {
        let api = account(100, generation);
        assert_eq!(walk_tree(&api), expected_values(&api, "taxonomies"), "generation {generation}");
    }
}

#[test]
fn hard_values_are_present() {
    let api = account(200, 1);
    let all = [api.expected("users"), api.expected("taxonomies"), api.expected("assignments")].concat();
    let text = all.concat();
    for needle in ["\\n", "🚀", "日本語", "\"=SUM", "\"\"", "null", "O'Brien, \\\"The Boss\\\"", "9007199254740993"]
    {
        assert!(text.contains(needle), "{needle}");
    }
    assert!(text.contains(&i64::MAX.to_string()));
    let long = expected_values(&api, "assignments").iter().map(|a| a["message"].as_str().unwrap().len()).max();
    assert_eq!(long, Some(10 * 1024));
    let paths: Vec<Value> = expected_values(&api, "taxonomies");
    let tricky = paths.iter().find(|t| t["title"] == "Input/Output > Drivers \\ Legacy").unwrap();
    assert_eq!(tricky["path"], "Products / Printers / Input\\/Output > Drivers \\\\ Legacy");
    assert!(paths.iter().any(|t| t["level"] == 6 && t["id"] == (1u64 << 54) + 1));
}

#[test]
fn taxonomy_path_escapes_backslash_then_slash() {
    assert_eq!(taxonomy_path(&["a/b", "c\\", "d"]), "a\\/b / c\\\\ / d");
    assert_eq!(taxonomy_path(&["x\\/y"]), "x\\\\\\/y");
    assert_eq!(taxonomy_path(&["", "only"]), " / only");
}

#[test]
fn auth_failures_are_401() {
    let api = account(40, 1);
    let wrong = [
        None,
        Some(basic_auth(USERNAME, "wrong")),
        Some(basic_auth("other@example.com", API_KEY)),
        Some("Bearer mock-paligo-key".to_string()),
        Some("Basic !!!!".to_string()),
        Some(format!("Basic {}", base64_encode(API_KEY.as_bytes()))),
    ];
    for authorization in wrong {
        let req = MockRequest { authorization: authorization.clone(), ..request("/api/v2/users/", &[]) };
        let response = api.handle(&req);
        assert_eq!(response.status, 401, "{authorization:?}");
        assert_eq!(String::from_utf8(response.body).unwrap(), r#"{"message":"Unauthorized"}"#);
    }
    let lower = format!("basic {}", base64_encode(format!("{USERNAME}:{API_KEY}").as_bytes()));
    let req = MockRequest { authorization: Some(lower), ..request("/api/v2/users/", &[]) };
    assert_eq!(api.handle(&req).status, 200);
}

#[test]
fn too_many_requests_has_retry_after() {
    let response = account(10, 1).too_many_requests(7);
    assert_eq!(response.status, 429);
    assert!(response.headers.contains(&("Retry-After".to_string(), "7".to_string())));
    assert!(json(std::str::from_utf8(&response.body).unwrap())["message"].is_string());
    assert!(account(10, 1).rate_limit_headers(50, 3).is_empty());
}

/// The diff of two walks over HTTP, as a sync would see it.
fn served_diff(before: &Paligo, after: &Paligo, table: &str) -> TableMutations {
    let read = |api: &Paligo| -> Vec<(u64, String)> {
        let values = if table == "taxonomies" {
            walk_tree(api)
        } else {
            items(&pages(api, &format!("/api/v2/{table}/"), &[("per_page", "100")]), table)
        };
        values.into_iter().map(|v| (v["id"].as_u64().unwrap(), v.to_string())).collect()
    };
    diff(read(before), read(after))
}

#[test]
fn mutations_of_generation_2_are_exact() {
    let (before, after) = (account(300, 1), account(300, 2));
    let mutations = after.mutations();
    let names: Vec<&str> = mutations.tables.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, ["users", "taxonomies", "assignments"]);
    for (table, m) in &mutations.tables {
        assert_eq!(*m, served_diff(&before, &after, table), "{table}");
    }
    let table = |name: &str| &mutations.tables.iter().find(|(t, _)| t == name).unwrap().1;
    assert_eq!((table("users").added.len(), table("users").deleted.len()), (2, 1));
    assert_eq!(table("users").changed.len(), 1);
    let taxonomies = table("taxonomies");
    assert_eq!((taxonomies.added.len(), taxonomies.deleted.len()), (1, 1));
    // The moved node has children, so its whole subtree changes path and level.
    assert!(taxonomies.changed.len() >= 2, "{taxonomies:?}");
    let assignments = table("assignments");
    assert_eq!((assignments.added.len(), assignments.deleted.len()), (3, 3));
    assert!(assignments.changed.len() >= 3);
}

#[test]
fn show_follows_the_generation() {
    let api = account(300, 2);
    for (table, m) in api.mutations().tables {
        for id in &m.deleted {
            assert_eq!(get(&api, &format!("/api/v2/{table}/{id}/"), &[]).0, 404, "{table} {id}");
        }
        for id in m.added.iter().chain(&m.changed) {
            assert_eq!(get(&api, &format!("/api/v2/{table}/{id}/"), &[]).0, 200, "{table} {id}");
        }
    }
}

#[test]
fn generation_1_mutations_are_all_additions() {
    let api = account(30, 1);
    for (table, m) in api.mutations().tables {
        assert_eq!(m.added.len(), api.expected(&table).len());
        assert!(m.changed.is_empty() && m.deleted.is_empty());
    }
}

#[test]
fn same_options_same_data() {
    let (a, b) = (account(120, 3), account(120, 3));
    for table in TABLES {
        assert_eq!(a.expected(table), b.expected(table));
    }
    let other = Paligo::new(&MockOptions { seed: 8, records: 120, ..MockOptions::default() });
    assert_ne!(a.expected("assignments"), other.expected("assignments"));
}
