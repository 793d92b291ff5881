//! Connector definitions (DESIGN.md, "Connector definitions"): the binary reads a
//! JSON file describing an API and syncs it with the same engine, against servers
//! these tests own on loopback.

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::hostile::{one_line, param, serve_with, Reply, Server};
use crate::workdir::Workdir;

fn fixture(rel: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/definitions").join(rel)).unwrap()
}

fn example(name: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/definitions").join(name)).unwrap()
}

/// A table file with each `_synced_at` cell (it changes every run) replaced by `T`.
fn table(wd: &Workdir, name: &str) -> String {
    let text = fs::read_to_string(wd.path(&format!("out/{name}.csv"))).unwrap();
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut at = None;
    for rec in r.records() {
        let rec = rec.unwrap();
        let mut fields: Vec<String> = rec.iter().map(str::to_string).collect();
        match at {
            None => at = fields.iter().position(|f| f == "_synced_at"),
            Some(i) => fields[i] = "T".into(),
        }
        out.write_record(&fields).unwrap();
    }
    String::from_utf8(out.into_inner().unwrap()).unwrap()
}

/// Writes the definition and a configuration reaching `server` at `base_path`, and syncs.
fn sync(wd: &Workdir, def: &str, server: &Server, base_path: &str, extra: &str) -> std::process::Output {
    wd.write("def.json", def);
    wd.write("c.json", &format!(r#"{{"api_key": "secret-key", "base_url": "{}{base_path}"{extra}}}"#, server.origin));
    wd.output(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out"]))
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "{}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

#[test]
fn stripe_style_cursor_follows_the_last_record() {
    let server = serve_with(|target| match param(target, "starting_after").as_deref() {
        None => Reply::ok(fixture("stripe/customers-1.json")),
        Some("cus_2") => Reply::ok(fixture("stripe/customers-2.json")),
        Some(_) => Reply::not_found(),
    });
    let wd = Workdir::new("def-stripe");
    ok(&sync(&wd, &example("stripe.json"), &server, "/v1", ""));
    assert_eq!(
        table(&wd, "customer"),
        "id,object,created,email,address_city,address_country,metadata_tier,amount,_synced_at,_deleted\n\
         cus_1,customer,2023-11-14T22:13:20Z,a@example.com,Oslo,NO,,,T,false\n\
         cus_2,customer,2023-11-14T22:15:00Z,,,,gold,,T,false\n\
         cus_3,customer,2023-11-14T22:16:40Z,c@example.com,,,,12345678901234567890,T,false\n"
    );
    // The first request is the credential check every sync starts with.
    assert_eq!(
        server.targets(),
        ["/v1/customers?limit=2", "/v1/customers?limit=2", "/v1/customers?limit=2&starting_after=cus_2"]
    );
    assert!(server.authorizations().iter().all(|a| a.as_deref() == Some("Bearer secret-key")));
}

#[test]
fn github_style_link_header_pages() {
    let origin = Arc::new(Mutex::new(String::new()));
    let o = Arc::clone(&origin);
    let server = serve_with(move |target| {
        let origin = o.lock().unwrap().clone();
        let link = |page: u32| format!("<{origin}/repos/octo/hello/issues?state=all&per_page=2&page={page}>");
        let mut reply = match param(target, "page").as_deref() {
            None => Reply::ok(fixture("github/issues-1.json")),
            Some("2") => Reply::ok(fixture("github/issues-2.json")),
            _ => return Reply::not_found(),
        };
        let header = match param(target, "page").as_deref() {
            None => format!(r#"{}; rel="next", {}; rel="last""#, link(2), link(2)),
            _ => format!(r#"{}; rel="first", {}; rel="prev""#, link(1), link(1)),
        };
        reply.headers.push(("Link".into(), header));
        reply
    });
    *origin.lock().unwrap() = server.origin.clone();
    let wd = Workdir::new("def-github");
    ok(&sync(&wd, &example("github.json"), &server, "", ""));
    assert_eq!(
        table(&wd, "issue"),
        "id,number,title,labels,user_login,closed_at,_synced_at,_deleted\n\
         101,1,Crash on start,\"[{\"\"name\"\":\"\"bug\"\"}]\",octocat,,T,false\n\
         102,2,\"Docs, \"\"quotes\"\"\",[],hubot,,T,false\n\
         103,3,\"Line\nbreak\",[],octocat,2024-01-02T03:04:05Z,T,false\n"
    );
    assert_eq!(
        server.targets(),
        [
            "/repos/octo/hello/issues?state=all&per_page=2",
            "/repos/octo/hello/issues?state=all&per_page=2",
            "/repos/octo/hello/issues?state=all&per_page=2&page=2"
        ]
    );
}

fn zendesk(origin: Arc<Mutex<String>>) -> impl FnMut(&str) -> Reply + Send + 'static {
    move |target| {
        let origin = origin.lock().unwrap().clone();
        match param(target, "page").as_deref() {
            None => Reply::ok(fixture("zendesk/tickets-1.json").replace("{origin}", &origin)),
            Some("2") => Reply::ok(fixture("zendesk/tickets-2.json").replace("{origin}", &origin)),
            _ => Reply::not_found(),
        }
    }
}

#[test]
fn zendesk_style_next_page_url() {
    let origin = Arc::new(Mutex::new(String::new()));
    let server = serve_with(zendesk(Arc::clone(&origin)));
    *origin.lock().unwrap() = server.origin.clone();
    let wd = Workdir::new("def-zendesk");
    ok(&sync(&wd, &example("zendesk.json"), &server, "/api/v2", r#", "username": "me@acme.example/token""#));
    assert_eq!(
        table(&wd, "ticket"),
        "id,subject,status,via_channel,_synced_at,_deleted\n\
         1,Help,open,email,T,false\n\
         2,Refund,solved,web,T,false\n\
         3,Thanks,closed,api,T,false\n"
    );
    assert_eq!(server.targets(), ["/api/v2/tickets.json", "/api/v2/tickets.json", "/api/v2/tickets.json?page=2"]);
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("me@acme.example/token:secret-key");
    assert!(server.authorizations().iter().all(|a| a.as_deref() == Some(format!("Basic {basic}").as_str())));
}

#[test]
fn a_next_url_on_another_host_is_never_followed() {
    let elsewhere = serve_with(|_| Reply::ok(r#"{"tickets": [], "next_page": null}"#));
    let other = elsewhere.origin.replace("127.0.0.1", "localhost");
    let server = serve_with(move |_| {
        Reply::ok(format!(r#"{{"tickets": [{{"id": 1}}], "next_page": "{other}/api/v2/tickets.json?page=2"}}"#))
    });
    let wd = Workdir::new("def-host");
    let out = sync(&wd, &example("zendesk.json"), &server, "/api/v2", r#", "username": "u""#);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let line = one_line(&String::from_utf8_lossy(&out.stderr));
    assert!(line.contains("another host (localhost)"), "{line}");
    assert!(!line.contains("secret-key"), "{line}");
    assert_eq!(elsewhere.requests(), 0);
    // The credential check's request, then the first page.
    assert_eq!(server.requests(), 2);
}

const CURSOR_DEF: &str = r#"{"name": "acme", "base_url": "https://api.acme.example/v1", "auth": {"bearer": "api_key"},
  "tables": [{"name": "item", "path": "/items", "records": "/data", "primary_key": ["id"],
              "paging": {"cursor": {"param": "after", "from": "/next", "more": "/more"}}}]}"#;

#[test]
fn an_empty_page_with_a_cursor_is_not_the_end() {
    let server = serve_with(|target| match param(target, "after").as_deref() {
        None => Reply::ok(r#"{"data": [{"id": 1}], "next": "a", "more": true}"#),
        Some("a") => Reply::ok(r#"{"data": [], "next": "b", "more": true}"#),
        Some("b") => Reply::ok(r#"{"data": [{"id": 2}], "next": null, "more": false}"#),
        _ => Reply::not_found(),
    });
    let wd = Workdir::new("def-empty");
    ok(&sync(&wd, CURSOR_DEF, &server, "/v1", ""));
    assert_eq!(table(&wd, "item"), "id,_synced_at,_deleted\n1,T,false\n2,T,false\n");
    // The credential check's request, then three pages.
    assert_eq!(server.requests(), 4);
}

#[test]
fn an_endless_cursor_is_one_line_not_a_loop() {
    let server = serve_with(|_| Reply::ok(r#"{"data": [{"id": 1}], "next": "same", "more": true}"#));
    let wd = Workdir::new("def-endless");
    let out = sync(&wd, CURSOR_DEF, &server, "/v1", "");
    assert_eq!(out.status.code(), Some(1));
    let line = one_line(&String::from_utf8_lossy(&out.stderr));
    assert!(line.contains("repeats"), "{line}");
    assert!(server.requests() <= 4, "{}", server.requests());
}

#[test]
fn changes_and_tombstones_after_a_complete_read() {
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let g = Arc::clone(&gone);
    let server = serve_with(move |_| {
        if g.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::ok(r#"{"data": [{"id": 1, "v": "changed"}], "next": null}"#)
        } else {
            Reply::ok(r#"{"data": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}], "next": null}"#)
        }
    });
    let wd = Workdir::new("def-changes");
    ok(&sync(&wd, CURSOR_DEF, &server, "/v1", ""));
    gone.store(true, std::sync::atomic::Ordering::SeqCst);
    ok(&sync(&wd, CURSOR_DEF, &server, "/v1", ""));
    assert_eq!(
        table(&wd, "item"),
        "id,v,_synced_at,_deleted\n1,a,T,false\n2,b,T,false\n1,changed,T,false\n2,,T,true\n"
    );
    // `sync --compact` finds the definition by the name state.json holds.
    ok(&wd.output(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out", "--compact"])));
    assert_eq!(table(&wd, "item"), "id,v,_synced_at,_deleted\n1,changed,T,false\n");
}

#[test]
fn bad_definitions_exit_2_naming_the_key() {
    let wd = Workdir::new("def-bad");
    wd.write("c.json", r#"{"api_key": "k", "base_url": "http://127.0.0.1:9/v1"}"#);
    let cases = [
        ("\"/next\"", "\"next\"", "tables[0].paging.cursor.from: not a JSON Pointer"),
        ("\"more\": \"/more\"", "\"mor\": \"/more\"", "tables[0].paging.cursor: unknown field `mor`"),
        ("\"records\": \"/data\"", "\"records\": \"data\"", "tables[0].records: not a JSON Pointer"),
        ("\"primary_key\": [\"id\"]", "\"primary_key\": []", "tables[0].primary_key: at least one field"),
        ("\"https://api", "\"http://api", "base_url: "),
        ("{\"bearer\": \"api_key\"}", "{\"bearer\": \"api_key\", \"basic\": []}", "auth: exactly one"),
        (
            "{\"cursor\": {\"param\": \"after\", \"from\": \"/next\", \"more\": \"/more\"}}",
            "{\"none\": {}, \"page\": {}}",
            "tables[0].paging: exactly one",
        ),
        ("\"name\": \"item\"", "\"name\": \"item\", \"extra\": 1", "tables[0]: unknown field `extra`"),
    ];
    for (from, to, want) in cases {
        let def = CURSOR_DEF.replace(from, to);
        assert_ne!(def, CURSOR_DEF, "{from}");
        wd.write("def.json", &def);
        for args in [&["sync", "./def.json", "--config", "c.json", "--out", "out"][..], &["tables", "./def.json"][..]] {
            let line = one_line(&wd.fails(&mut wd.command(args), 2));
            assert!(line.contains(want), "{want}: {line}");
        }
        assert!(!wd.path("out").exists(), "{want}: nothing written");
    }
}

#[test]
fn tables_and_check_take_a_definition() {
    let server = serve_with(|_| Reply::ok(fixture("stripe/customers-2.json")));
    let wd = Workdir::new("def-tables");
    wd.write("def.json", &example("stripe.json"));
    let out = wd.stdout(&mut wd.command(&["tables", "./def.json"]));
    assert!(out.starts_with("customer") && out.contains("key id") && out.contains("starting_after"), "{out}");
    wd.write("c.json", &format!(r#"{{"api_key": "k", "base_url": "{}/v1"}}"#, server.origin));
    wd.stdout(&mut wd.command(&["check", "./def.json", "--config", "c.json"]));
    assert_eq!(server.requests(), 1);
}

#[test]
fn a_changed_primary_key_or_path_needs_full_refresh() {
    let server = serve_with(|_| Reply::ok(r#"{"data": [{"id": 1, "k": "x"}], "next": null}"#));
    let wd = Workdir::new("def-digest");
    ok(&sync(&wd, CURSOR_DEF, &server, "/v1", ""));
    let state = fs::read_to_string(wd.path("out/state.json")).unwrap();
    assert!(state.contains("\"definition\""), "{state}");
    let before = server.requests();
    for (from, to) in [("[\"id\"]", "[\"k\"]"), ("\"/items\"", "\"/things\""), ("\"/data\"", "\"/rows\"")] {
        let changed = CURSOR_DEF.replace(from, to);
        let out = sync(&wd, &changed, &server, "/v1", "");
        assert_eq!(out.status.code(), Some(2), "{from}");
        let line = one_line(&String::from_utf8_lossy(&out.stderr));
        assert!(line.contains("--full-refresh") && line.contains("item"), "{line}");
    }
    assert_eq!(server.requests(), before, "refused before any request");
    // A new timestamp field or a new table is fine.
    let more = CURSOR_DEF
        .replace("\"primary_key\": [\"id\"],", "\"primary_key\": [\"id\"], \"timestamps\": {\"t\": \"unix_seconds\"},");
    let more = more.replace(
        "]}",
        r#", {"name": "other", "path": "/other", "records": "/data", "primary_key": ["id"], "paging": {"none": {}}}]}"#,
    );
    assert_ne!(more, CURSOR_DEF);
    ok(&sync(&wd, &more, &server, "/v1", ""));
    let changed = CURSOR_DEF.replace("[\"id\"]", "[\"k\"]");
    wd.write("def.json", &changed);
    ok(&wd.output(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out", "--full-refresh"])));
}

const OFFSET_DEF: &str = r#"{"name": "acme", "base_url": "https://api.acme.example/v1", "auth": {"bearer": "api_key"},
  "tables": [{"name": "event", "path": "/events", "records": "/results", "primary_key": ["id"],
              "paging": {"offset": {"param": "offset", "size_param": "limit", "size": 2, "total": "/count"}}},
             {"name": "short", "path": "/short", "records": "/results", "primary_key": ["id"],
              "paging": {"offset": {"param": "offset", "size_param": "limit", "size": 2}}},
             {"name": "pages", "path": "/pages", "records": "/items", "primary_key": ["id"],
              "paging": {"page": {"param": "p", "start": 0, "last": "/total_pages"}}},
             {"name": "one", "path": "/one", "records": "", "primary_key": ["id"], "paging": {"none": {}}}]}"#;

#[test]
fn offset_page_and_none_listings_end_as_told() {
    let server = serve_with(|target| {
        let offset = param(target, "offset").unwrap_or_default();
        let p = param(target, "p").unwrap_or_default();
        let body = match (target.split('?').next().unwrap(), offset.as_str(), p.as_str()) {
            // `total` ends the listing even though the last page is full.
            ("/v1/events", "0", _) => r#"{"results": [{"id": 1}, {"id": 2}], "count": 4}"#,
            ("/v1/events", "2", _) => r#"{"results": [{"id": 3}, {"id": 4}], "count": 4}"#,
            ("/v1/short", "0", _) => r#"{"results": [{"id": 1}, {"id": 2}]}"#,
            ("/v1/short", "2", _) => r#"{"results": [{"id": 3}]}"#,
            ("/v1/pages", _, "0") => r#"{"items": [{"id": 1}], "total_pages": 2}"#,
            ("/v1/pages", _, "1") => r#"{"items": [{"id": 2}], "total_pages": 2}"#,
            ("/v1/one", _, _) => r#"[{"id": "a"}, {"id": "b"}]"#,
            _ => return Reply::not_found(),
        };
        Reply::ok(body)
    });
    let wd = Workdir::new("def-offset");
    ok(&sync(&wd, OFFSET_DEF, &server, "/v1", ""));
    assert_eq!(table(&wd, "event"), "id,_synced_at,_deleted\n1,T,false\n2,T,false\n3,T,false\n4,T,false\n");
    assert_eq!(table(&wd, "short"), "id,_synced_at,_deleted\n1,T,false\n2,T,false\n3,T,false\n");
    assert_eq!(table(&wd, "pages"), "id,_synced_at,_deleted\n1,T,false\n2,T,false\n");
    assert_eq!(table(&wd, "one"), "id,_synced_at,_deleted\na,T,false\nb,T,false\n");
    assert_eq!(server.hits("/v1/events"), 3, "{:?}", server.targets());
    assert_eq!(server.hits("/v1/one"), 1);
}

#[test]
fn secrets_come_from_name_key_environment_variables() {
    let server = serve_with(|_| Reply::ok(r#"{"data": [{"id": 1}], "next": null}"#));
    let wd = Workdir::new("def-env");
    wd.write("def.json", CURSOR_DEF);
    wd.write("c.json", &format!(r#"{{"base_url": "{}/v1"}}"#, server.origin));
    let mut cmd = wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out"]);
    ok(&wd.output(cmd.env("ACME_API_KEY", "from-env")));
    assert!(server.authorizations().iter().all(|a| a.as_deref() == Some("Bearer from-env")));
    let out = wd.output(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out2"]));
    assert_eq!(out.status.code(), Some(2));
    let line = one_line(&String::from_utf8_lossy(&out.stderr));
    assert!(line.contains("ACME_API_KEY"), "{line}");
}

/// Sixteen records, two a page, behind a Stripe-style cursor.
fn stripe_page(target: &str) -> Reply {
    let after: u32 = param(target, "starting_after").map_or(0, |a| a.trim_start_matches("cus_").parse().unwrap());
    let ids: Vec<String> =
        (after + 1..=(after + 2).min(16)).map(|i| format!(r#"{{"id": "cus_{i}", "n": {i}}}"#)).collect();
    Reply::ok(format!(r#"{{"data": [{}], "has_more": {}}}"#, ids.join(","), after + 2 < 16))
}

/// A server answering with `pages`, that can hold one request until the sync that
/// sent it is killed: [`Holding::kill_at`].
struct Holding {
    server: Server,
    hold: Arc<Mutex<Option<String>>>,
    reached: std::sync::mpsc::Receiver<()>,
    go: std::sync::mpsc::Sender<()>,
}

/// A [`Holding`] server; `held(target, at)` says whether a request is the one to hold.
fn holding(held: fn(&str, &str) -> bool, mut pages: impl FnMut(&str) -> Reply + Send + 'static) -> Holding {
    let (reached_tx, reached) = std::sync::mpsc::channel::<()>();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let hold = Arc::new(Mutex::new(None::<String>));
    let h = Arc::clone(&hold);
    let server = serve_with(move |target| {
        let at = h.lock().unwrap().clone();
        if at.is_some_and(|at| held(target, &at)) {
            *h.lock().unwrap() = None;
            reached_tx.send(()).unwrap();
            // Held until the binary that asked is dead.
            go_rx.recv().unwrap();
            return Reply::status(503, "{}");
        }
        pages(target)
    });
    Holding { server, hold, reached, go }
}

impl std::ops::Deref for Holding {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Holding {
    /// Starts a sync of `def.json` with `c.json` in `wd` and kills it (SIGKILL) while
    /// its request for `at` is held.
    fn kill_at(&self, wd: &Workdir, at: &str) {
        *self.hold.lock().unwrap() = Some(at.to_string());
        let mut child = wd
            .command(&["sync", "./def.json", "--config", "c.json", "--out", "out", "-q"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.reached.recv_timeout(std::time::Duration::from_secs(60)).expect("the held page is asked for");
        child.kill().unwrap();
        child.wait().unwrap();
        self.go.send(()).unwrap();
    }
}

#[test]
fn kill_9_at_several_pages_then_rerun_is_exact() {
    let server = holding(|target, at| param(target, "starting_after").as_deref() == Some(at), stripe_page);
    let wd = Workdir::new("def-kill");
    let def = example("stripe.json").replace("\"created\": \"unix_seconds\"", "\"n\": \"unix_seconds\"");
    wd.write("def.json", &def);
    wd.write("c.json", &format!(r#"{{"api_key": "k", "base_url": "{}/v1"}}"#, server.origin));
    for at in ["cus_4", "cus_8", "cus_12"] {
        server.kill_at(&wd, at);
    }
    ok(&wd.output(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out"])));
    let mut want = String::from("id,n,_synced_at,_deleted\n");
    for i in 1..=16 {
        want.push_str(&format!("cus_{i},{},T,false\n", time_of(i)));
    }
    assert_eq!(table(&wd, "customer"), want);
}

fn time_of(i: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(i).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn auth_def(auth: &str) -> String {
    format!(
        r#"{{"name": "acme", "base_url": "https://api.acme.example/v1", "auth": {auth},
  "tables": [{{"name": "item", "path": "/items", "records": "/data", "primary_key": ["id"], "paging": {{"next_url": "/next"}}}}]}}"#
    )
}

#[test]
fn header_auth_sends_the_named_header() {
    let wd = Workdir::new("def-header");
    // The hostile server logs only `Authorization`: the header kind is checked on it
    // by name, and a custom name is checked to replace it.
    let server = serve_with(|_| Reply::ok(r#"{"data": [{"id": 1}], "next": null}"#));
    ok(&sync(&wd, &auth_def(r#"{"header": {"name": "Authorization", "value": "api_key"}}"#), &server, "/v1", ""));
    assert!(server.authorizations().iter().all(|a| a.as_deref() == Some("secret-key")));
    let wd2 = Workdir::new("def-header2");
    let server2 = serve_with(|_| Reply::ok(r#"{"data": [{"id": 1}], "next": null}"#));
    ok(&sync(&wd2, &auth_def(r#"{"header": {"name": "X-Api-Key", "value": "api_key"}}"#), &server2, "/v1", ""));
    assert!(server2.authorizations().iter().all(Option::is_none));
}

#[test]
fn query_auth_never_shows_the_secret() {
    let origin = Arc::new(Mutex::new(String::new()));
    let o = Arc::clone(&origin);
    let server = serve_with(move |target| {
        if param(target, "api_key").as_deref() != Some("secret-key") {
            return Reply::status(401, r#"{"error": "no key"}"#);
        }
        let origin = o.lock().unwrap().clone();
        match param(target, "page").as_deref() {
            // The API echoes the key in its next link, as some do.
            None => Reply::ok(format!(
                r#"{{"data": [{{"id": 1}}], "next": "{origin}/v1/items?page=2&api_key=secret-key"}}"#
            )),
            Some("2") => Reply::ok(format!(
                r#"{{"data": [{{"id": 2}}], "next": "{origin}/v1/items?page=3&api_key=secret-key"}}"#
            )),
            _ => Reply::status(500, r#"{"error": "boom"}"#),
        }
    });
    *origin.lock().unwrap() = server.origin.clone();
    let wd = Workdir::new("def-query");
    wd.write("def.json", &auth_def(r#"{"query": {"name": "api_key", "value": "api_key"}}"#));
    wd.write(
        "c.json",
        &format!(r#"{{"api_key": "secret-key", "base_url": "{}/v1", "retry_attempts": 1}}"#, server.origin),
    );
    let out = wd.output(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out", "-vv"]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/v1/items?page=3"), "{stderr}");
    for file in ["state.json", "last_sync.json"] {
        let text = fs::read_to_string(wd.path(&format!("out/{file}"))).unwrap();
        assert!(!text.contains("secret-key"), "{file}: {text}");
    }
    assert!(!stderr.contains("secret-key"), "{stderr}");
    // Sent once per request, never twice.
    assert!(server.targets().iter().all(|t| t.matches("api_key=").count() == 1), "{:?}", server.targets());
    assert_eq!(table(&wd, "item"), "id,_synced_at,_deleted\n1,T,false\n2,T,false\n");
}

#[test]
fn per_value_reads_one_listing_per_value() {
    let def = r#"{"name": "acme", "base_url": "https://api.acme.example/v1", "auth": {"bearer": "api_key"},
      "tables": [{"name": "order", "path": "/orders", "per_value": {"param": "status", "values": ["open", "closed"]},
                  "records": "/items", "primary_key": ["id"],
                  "paging": {"page": {"param": "page", "size_param": "per_page", "size": 2, "last": "/total_pages"}}}]}"#;
    let server = serve_with(|target| {
        let body = match (param(target, "status").as_deref(), param(target, "page").as_deref()) {
            (Some("open"), Some("1")) => {
                r#"{"items": [{"id": 1, "status": "open"}, {"id": 2, "status": "open"}], "total_pages": 2}"#
            }
            (Some("open"), Some("2")) => r#"{"items": [{"id": 3, "status": "open"}], "total_pages": 2}"#,
            (Some("closed"), Some("1")) => r#"{"items": [{"id": 9, "status": "closed"}], "total_pages": 1}"#,
            _ => return Reply::not_found(),
        };
        Reply::ok(body)
    });
    let wd = Workdir::new("def-per-value");
    ok(&sync(&wd, def, &server, "/v1", ""));
    assert_eq!(
        table(&wd, "order"),
        "id,status,_synced_at,_deleted\n1,open,T,false\n2,open,T,false\n3,open,T,false\n9,closed,T,false\n"
    );
    assert_eq!(server.hits("/v1/orders?page=1&per_page=2&status=closed"), 1, "{:?}", server.targets());
    let out = wd.stdout(&mut wd.command(&["tables", "./def.json"]));
    assert!(out.contains("per status (open, closed)"), "{out}");
}

#[test]
fn a_partial_read_writes_no_tombstones() {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = Arc::clone(&failing);
    let server = serve_with(move |target| {
        let after = param(target, "after");
        match after.as_deref() {
            // The second run sees record 2 gone from page one, then page two fails.
            None if f.load(std::sync::atomic::Ordering::SeqCst) => {
                Reply::ok(r#"{"data": [{"id": 1}], "next": "p2", "more": true}"#)
            }
            None => Reply::ok(r#"{"data": [{"id": 1}, {"id": 2}], "next": "p2", "more": true}"#),
            Some(_) if f.load(std::sync::atomic::Ordering::SeqCst) => Reply::status(500, "{}"),
            Some(_) => Reply::ok(r#"{"data": [{"id": 3}], "next": null, "more": false}"#),
        }
    });
    let wd = Workdir::new("def-partial");
    ok(&sync(&wd, CURSOR_DEF, &server, "/v1", r#", "retry_attempts": 0"#));
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let out = sync(&wd, CURSOR_DEF, &server, "/v1", r#", "retry_attempts": 0"#);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(table(&wd, "item"), "id,_synced_at,_deleted\n1,T,false\n2,T,false\n3,T,false\n");
}

/// Invoices behind a Stripe-style cursor, and the lines of each invoice.
const FOR_EACH_DEF: &str = r#"{"name": "acme", "base_url": "https://api.acme.example/v1", "auth": {"bearer": "api_key"},
  "tables": [
    {"name": "invoice", "path": "/invoices", "records": "/data", "primary_key": ["id"],
     "paging": {"cursor": {"param": "starting_after", "from": "/data/-1/id", "more": "/has_more"}}},
    {"name": "invoice_line", "path": "/invoices/{invoice_id}/lines",
     "for_each": {"table": "invoice", "key": "id", "as": "invoice_id"},
     "records": "", "primary_key": ["invoice_id", "id"], "paging": {"link_header": {}}}]}"#;

#[test]
fn for_each_reads_one_listing_per_parent_record() {
    let round = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let r = Arc::clone(&round);
    let server = serve_with(move |target| {
        let second = r.load(std::sync::atomic::Ordering::SeqCst) == 1;
        let path = target.split('?').next().unwrap();
        match (path, param(target, "starting_after").as_deref(), second) {
            ("/v1/invoices", None, false) => Reply::ok(r#"{"data": [{"id": "in 1/a", "total": 5}], "has_more": true}"#),
            ("/v1/invoices", Some("in 1/a"), false) => {
                Reply::ok(r#"{"data": [{"id": "in_2", "total": 7}, {"total": 0}], "has_more": false}"#)
            }
            ("/v1/invoices", None, true) => Reply::ok(r#"{"data": [{"id": "in 1/a", "total": 5}], "has_more": false}"#),
            // A record's own field of the `as` name gives way to the parent's key.
            ("/v1/invoices/in%201%2Fa/lines", _, false) => {
                Reply::ok(r#"[{"id": 1, "amount": 2}, {"id": 2, "amount": 3, "invoice_id": "bogus"}]"#)
            }
            ("/v1/invoices/in%201%2Fa/lines", _, true) => {
                Reply::ok(r#"[{"id": 1, "amount": 2}, {"id": 2, "amount": 4}]"#)
            }
            ("/v1/invoices/in_2/lines", _, false) => Reply::ok(r#"[{"id": 1, "amount": 7}]"#),
            _ => Reply::not_found(),
        }
    });
    let wd = Workdir::new("def-for-each");
    ok(&sync(&wd, FOR_EACH_DEF, &server, "/v1", ""));
    // The check, then each parent page followed by its records' listings.
    assert_eq!(
        server.targets(),
        [
            "/v1/invoices",
            "/v1/invoices",
            "/v1/invoices/in%201%2Fa/lines",
            "/v1/invoices?starting_after=in%201%2Fa",
            "/v1/invoices/in_2/lines"
        ]
    );
    assert_eq!(
        table(&wd, "invoice_line"),
        "invoice_id,id,amount,_synced_at,_deleted\nin 1/a,1,2,T,false\nin 1/a,2,3,T,false\nin_2,1,7,T,false\n"
    );
    round.store(1, std::sync::atomic::Ordering::SeqCst);
    ok(&sync(&wd, FOR_EACH_DEF, &server, "/v1", ""));
    // A changed line is appended; the deleted invoice's lines get tombstones.
    assert_eq!(table(&wd, "invoice"), "id,total,_synced_at,_deleted\nin 1/a,5,T,false\nin_2,7,T,false\nin_2,,T,true\n");
    assert_eq!(
        table(&wd, "invoice_line"),
        "invoice_id,id,amount,_synced_at,_deleted\nin 1/a,1,2,T,false\nin 1/a,2,3,T,false\nin_2,1,7,T,false\n\
         in 1/a,2,4,T,false\nin_2,1,,T,true\n"
    );
}

#[test]
fn for_each_of_a_child_alone_reads_its_parent_and_skips_a_gone_parent() {
    let server = serve_with(|target| match target {
        "/v1/invoices" => Reply::ok(r#"{"data": [{"id": 7}, {"id": 8}, {"id": 9}], "has_more": false}"#),
        "/v1/invoices/7/lines" => Reply::ok(r#"[{"id": "a"}]"#),
        // Deleted between the two reads: its listing is skipped.
        "/v1/invoices/8/lines" => Reply::not_found(),
        "/v1/invoices/9/lines" => Reply::ok(r#"[{"id": "b"}]"#),
        _ => Reply::status(500, "{}"),
    });
    let wd = Workdir::new("def-for-each-alone");
    wd.write("def.json", FOR_EACH_DEF);
    wd.write("c.json", &format!(r#"{{"api_key": "k", "base_url": "{}/v1"}}"#, server.origin));
    let args = ["sync", "./def.json", "--config", "c.json", "--out", "out", "--tables", "invoice_line"];
    ok(&wd.output(&mut wd.command(&args)));
    assert_eq!(table(&wd, "invoice_line"), "invoice_id,id,_synced_at,_deleted\n7,a,T,false\n9,b,T,false\n");
    assert_eq!(table(&wd, "invoice"), "id,_synced_at,_deleted\n7,T,false\n8,T,false\n9,T,false\n");
}

/// Six invoices, two a page, each with three lines over two page-number pages.
fn invoice_pages(target: &str) -> Reply {
    let path = target.split('?').next().unwrap();
    if path == "/v1/invoices" {
        let after: u32 = param(target, "starting_after").map_or(0, |a| a.trim_start_matches("p").parse().unwrap());
        let ids: Vec<String> = (after + 1..=(after + 2).min(6)).map(|i| format!(r#"{{"id": "p{i}"}}"#)).collect();
        return Reply::ok(format!(r#"{{"data": [{}], "has_more": {}}}"#, ids.join(","), after + 2 < 6));
    }
    let Some(parent) = path.strip_prefix("/v1/invoices/").and_then(|p| p.strip_suffix("/lines")) else {
        return Reply::not_found();
    };
    match param(target, "page").as_deref() {
        Some("1") => Reply::ok(format!(r#"[{{"id": 1, "of": "{parent}"}}, {{"id": 2, "of": "{parent}"}}]"#)),
        Some("2") => Reply::ok(format!(r#"[{{"id": 3, "of": "{parent}"}}]"#)),
        _ => Reply::not_found(),
    }
}

#[test]
fn for_each_kill_9_at_several_points_then_rerun_is_exact() {
    let server = holding(|target, at| target == at, invoice_pages);
    let wd = Workdir::new("def-for-each-kill");
    let def = FOR_EACH_DEF
        .replace(r#"{"link_header": {}}"#, r#"{"page": {"param": "page", "size_param": "per_page", "size": 2}}"#);
    wd.write("def.json", &def);
    wd.write("c.json", &format!(r#"{{"api_key": "k", "base_url": "{}/v1"}}"#, server.origin));
    for at in [
        "/v1/invoices/p2/lines?page=2&per_page=2",
        "/v1/invoices?starting_after=p4",
        "/v1/invoices/p5/lines?page=1&per_page=2",
    ] {
        server.kill_at(&wd, at);
    }
    ok(&wd.output(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out"])));
    let mut want = String::from("invoice_id,id,of,_synced_at,_deleted\n");
    for p in 1..=6 {
        for line in 1..=3 {
            want.push_str(&format!("p{p},{line},p{p},T,false\n"));
        }
    }
    assert_eq!(table(&wd, "invoice_line"), want);
    let invoices: String = (1..=6).map(|p| format!("p{p},T,false\n")).collect();
    assert_eq!(table(&wd, "invoice"), format!("id,_synced_at,_deleted\n{invoices}"));
    // A rerun reads everything again and changes nothing.
    ok(&wd.output(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out"])));
    assert_eq!(table(&wd, "invoice_line"), want);
}

#[test]
fn records_may_be_a_nested_pointer_with_escapes() {
    let server = serve_with(|target| match param(target, "after").as_deref() {
        None => {
            Reply::ok(r#"{"result": {"it/ems": [{"id": 1, "n": 1E22, "o": {"p": [1, 2]}}], "m~n": {"next": "b"}}}"#)
        }
        Some("b") => Reply::ok(r#"{"result": {"it/ems": [{"id": 2, "n": 0.10}], "m~n": {"next": null}}}"#),
        _ => Reply::not_found(),
    });
    let def = CURSOR_DEF
        .replace(r#""records": "/data""#, r#""records": "/result/it~1ems""#)
        .replace(r#""from": "/next", "more": "/more""#, r#""from": "/result/m~0n/next""#);
    let wd = Workdir::new("def-nested-records");
    ok(&sync(&wd, &def, &server, "/v1", ""));
    assert_eq!(table(&wd, "item"), "id,n,o_p,_synced_at,_deleted\n1,1E22,\"[1,2]\",T,false\n2,0.10,,T,false\n");
    // A body without the array there is refused (and retried), never taken for an empty page.
    let server = serve_with(|_| Reply::ok(r#"{"result": {"items": []}}"#));
    let wd = Workdir::new("def-nested-records-missing");
    let out = sync(&wd, &def, &server, "/v1", r#", "retries": 0"#);
    assert!(!out.status.success());
    let line = crate::hostile::error_line(&String::from_utf8_lossy(&out.stderr));
    assert!(line.contains("no array at \"/result/it~1ems\""), "{line}");
}

#[test]
fn bad_for_each_and_pointers_exit_2_naming_the_key() {
    let wd = Workdir::new("def-bad-for-each");
    wd.write("c.json", r#"{"api_key": "k", "base_url": "http://127.0.0.1:9/v1"}"#);
    let cases = [
        (r#""table": "invoice""#, r#""table": "nope""#, r#"tables[1].for_each.table: "nope" is not an earlier table"#),
        ("/invoices/{invoice_id}/lines", "/invoices/lines", "tables[1].path: must hold {invoice_id} (for_each.as)"),
        ("/invoices/{invoice_id}/lines", "/invoices/{id}/lines", "tables[1].path: {id} is not {invoice_id}"),
        (r#""as": "invoice_id"}"#, r#""as": "invoice_id", "at": 1}"#, "tables[1].for_each: unknown field `at`"),
        (r#""key": "id""#, r#""key": "/~2""#, "tables[1].for_each.key: not a JSON Pointer"),
        (r#""as": "invoice_id"}"#, r#""as": "a b"}"#, r#"tables[1].for_each.as: "a b" must be"#),
        (r#""records": "/data""#, r#""records": "/data/~""#, "tables[0].records: not a JSON Pointer"),
        (r#""path": "/invoices","#, r#""path": "/invoices/{id}","#, r#"tables[0].path: {id} needs a for_each"#),
    ];
    for (from, to, want) in cases {
        let def = FOR_EACH_DEF.replacen(from, to, 1);
        assert_ne!(def, FOR_EACH_DEF, "{from}");
        wd.write("def.json", &def);
        for args in [&["sync", "./def.json", "--config", "c.json", "--out", "out"][..], &["tables", "./def.json"][..]] {
            let line = one_line(&wd.fails(&mut wd.command(args), 2));
            assert!(line.contains(want), "{want}: {line}");
        }
        assert!(!wd.path("out").exists(), "{want}: nothing written");
    }
}

#[test]
fn timestamps_in_each_format_are_written_as_rfc3339_utc() {
    let server = serve_with(|_| {
        Reply::ok(
            r#"{"data": [
            {"id": 1, "a": "2024-01-02T03:04:05+02:00", "b": 1700000000, "c": 1700000000123, "d": "02.01.2024 03:04", "e": "2024-01-02 03:04:05"},
            {"id": 2, "a": "yesterday", "b": "x", "c": 1.5, "d": "31.02.2024 03:04", "e": "2024-13-01 00:00:00"}],
            "next": null}"#,
        )
    });
    let def = CURSOR_DEF.replace(
        r#""primary_key": ["id"],"#,
        r#""primary_key": ["id"], "timestamps": {"a": "rfc3339", "b": "unix_seconds", "c": "unix_millis",
            "d": "[day].[month].[year] [hour]:[minute]", "e": "[year]-[month]-[day] [hour]:[minute]:[second]"},"#,
    );
    let wd = Workdir::new("def-timestamps");
    ok(&sync(&wd, &def, &server, "/v1", ""));
    assert_eq!(
        table(&wd, "item"),
        "id,a,b,c,d,e,_synced_at,_deleted\n\
         1,2024-01-02T01:04:05Z,2023-11-14T22:13:20Z,2023-11-14T22:13:20.123Z,2024-01-02T03:04:00Z,2024-01-02T03:04:05Z,T,false\n\
         2,yesterday,x,1.5,31.02.2024 03:04,2024-13-01 00:00:00,T,false\n"
    );
    // A format that is none of them is refused, naming the field.
    wd.write("def.json", &def.replace("[day].[month]", "[day].[mnth]"));
    let line = one_line(&wd.fails(&mut wd.command(&["tables", "./def.json"]), 2));
    assert!(line.contains("tables[0].timestamps.d: neither rfc3339"), "{line}");
}

#[test]
fn secrets_may_live_under_any_configuration_key() {
    let server = serve_with(|_| Reply::ok(r#"{"data": [{"id": 1}], "next": null}"#));
    let wd = Workdir::new("def-any-key");
    wd.write("def.json", &auth_def(r#"{"basic": ["login", "password"]}"#));
    wd.write("c.json", &format!(r#"{{"login": "me", "base_url": "{}/v1"}}"#, server.origin));
    let mut cmd = wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out"]);
    let out = wd.output(cmd.env("ACME_PASSWORD", "pw-from-env"));
    ok(&out);
    // Keys the definition names are known keys: no warning about them.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("login"), "{}", String::from_utf8_lossy(&out.stderr));
    use base64::Engine as _;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("me:pw-from-env"));
    assert!(server.authorizations().iter().all(|a| a.as_deref() == Some(basic.as_str())));
    // A missing secret names its key and variable; a secret of the wrong type is never echoed.
    wd.write("def.json", &auth_def(r#"{"bearer": "token"}"#));
    let line = one_line(&wd.fails(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "o2"]), 2));
    assert!(line.contains("token: required (in the config file or $ACME_TOKEN)"), "{line}");
    wd.write("c.json", &format!(r#"{{"token": {{"v": "SEKRIT"}}, "base_url": "{}/v1"}}"#, server.origin));
    let line = one_line(&wd.fails(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "o2"]), 2));
    assert!(line.contains("token: expected a string, got an object") && !line.contains("SEKRIT"), "{line}");
    // A setting is not a secret's key.
    wd.write("def.json", &auth_def(r#"{"bearer": "base_url"}"#));
    let line = one_line(&wd.fails(&mut wd.command(&["tables", "./def.json"]), 2));
    assert!(line.contains("auth.bearer: \"base_url\" is a configuration setting"), "{line}");
}

#[test]
fn a_primary_key_may_point_into_the_record() {
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let g = Arc::clone(&gone);
    let server = serve_with(move |_| {
        if g.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::ok(r#"{"data": [{"meta": {"id": 1, "rev": 3}, "v": "changed"}], "next": null}"#)
        } else {
            Reply::ok(
                r#"{"data": [{"meta": {"id": 1, "rev": 2}, "v": "a"}, {"meta": {"id": 2, "rev": 1}, "v": "b"}, {"v": "keyless"}], "next": null}"#,
            )
        }
    });
    let def = CURSOR_DEF.replace(r#""primary_key": ["id"]"#, r#""primary_key": ["/meta/id"]"#);
    let wd = Workdir::new("def-nested-key");
    ok(&sync(&wd, &def, &server, "/v1", ""));
    gone.store(true, std::sync::atomic::Ordering::SeqCst);
    ok(&sync(&wd, &def, &server, "/v1", ""));
    assert_eq!(
        table(&wd, "item"),
        "meta_id,meta_rev,v,_synced_at,_deleted\n1,2,a,T,false\n2,1,b,T,false\n1,3,changed,T,false\n2,,,T,true\n"
    );
}

/// The README's worked definition ("Your own API") is one the tool accepts.
#[test]
fn the_readme_definition_loads() {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("## Your own API").unwrap()..];
    let start = section.find("```json\n").unwrap() + "```json\n".len();
    let def = &section[start..start + section[start..].find("```").unwrap()];
    let wd = Workdir::new("def-readme");
    wd.write("acme.json", def);
    let out = wd.stdout(&mut wd.command(&["tables", "./acme.json"]));
    for t in ["customer", "invoice_line", "payout", "plan"] {
        assert!(out.lines().any(|l| l.starts_with(t)), "{t}: {out}");
    }
}

#[test]
fn a_cursor_may_come_from_a_nested_field_of_a_record() {
    let server = serve_with(|target| match param(target, "after").as_deref() {
        None => Reply::ok(r#"{"data": [{"id": 1, "m": {"c": "x"}}, {"id": 2, "m": {"c": "y"}}]}"#),
        Some("y") => Reply::ok(r#"{"data": [{"id": 3, "m": {"c": ""}}]}"#),
        _ => Reply::not_found(),
    });
    let def = CURSOR_DEF.replace(r#""from": "/next", "more": "/more""#, r#""from": "/data/-1/m/c""#);
    let wd = Workdir::new("def-cursor-nested-field");
    ok(&sync(&wd, &def, &server, "/v1", ""));
    assert_eq!(table(&wd, "item"), "id,m_c,_synced_at,_deleted\n1,x,T,false\n2,y,T,false\n3,,T,false\n");
    // An array index as the records pointer reads a body that is an array.
    let server = serve_with(|_| Reply::ok(r#"[{"total": 1}, [{"id": 7}]]"#));
    let def = CURSOR_DEF
        .replace(r#""records": "/data""#, r#""records": "/1""#)
        .replace(r#"{"cursor": {"param": "after", "from": "/next", "more": "/more"}}"#, r#"{"none": {}}"#);
    let wd = Workdir::new("def-records-index");
    ok(&sync(&wd, &def, &server, "/v1", ""));
    assert_eq!(table(&wd, "item"), "id,_synced_at,_deleted\n7,T,false\n");
}

/// Repos, their issues (page numbers), and the issues' comments.
const NESTED_DEF: &str = r#"{"name": "hub", "base_url": "https://api.hub.example", "auth": {"bearer": "api_key"},
  "tables": [
    {"name": "repo", "path": "/repos", "records": "", "primary_key": ["id"], "paging": {"none": {}}},
    {"name": "issue", "path": "/repos/{repo}/issues", "for_each": {"table": "repo", "key": "name", "as": "repo"},
     "records": "", "primary_key": ["repo", "number"],
     "paging": {"page": {"param": "page", "size_param": "per_page", "size": 2}}},
    {"name": "comment", "path": "/issues/{issue_id}/comments", "for_each": {"table": "issue", "key": "id", "as": "issue_id"},
     "records": "/comments", "primary_key": ["issue_id", "id"], "paging": {"none": {}}}]}"#;

fn hub(target: &str, second: bool) -> Reply {
    match target {
        "/repos" if second => Reply::ok(r#"[{"id": 1, "name": "a"}]"#),
        "/repos" => Reply::ok(r#"[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]"#),
        "/repos/a/issues?page=1&per_page=2" => Reply::ok(r#"[{"number": 1, "id": 11}, {"number": 2, "id": 12}]"#),
        "/repos/a/issues?page=2&per_page=2" => Reply::ok("[]"),
        "/repos/b/issues?page=1&per_page=2" => Reply::ok(r#"[{"number": 1, "id": 21}]"#),
        "/issues/11/comments" => Reply::ok(r#"{"comments": [{"id": "c1", "body": "x"}]}"#),
        "/issues/21/comments" => Reply::ok(r#"{"comments": [{"id": "c2"}, {"id": "c3"}]}"#),
        _ => Reply::not_found(),
    }
}

#[test]
fn for_each_nests_repos_issues_comments() {
    let round = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let r = Arc::clone(&round);
    let server = serve_with(move |target| hub(target, r.load(std::sync::atomic::Ordering::SeqCst) == 1));
    let def = NESTED_DEF;
    let wd = Workdir::new("def-for-each-nested");
    ok(&sync(&wd, def, &server, "", ""));
    assert_eq!(
        server.targets(),
        [
            "/repos",
            "/repos",
            "/repos/a/issues?page=1&per_page=2",
            "/issues/11/comments",
            "/issues/12/comments",
            "/repos/a/issues?page=2&per_page=2",
            "/repos/b/issues?page=1&per_page=2",
            "/issues/21/comments"
        ]
    );
    assert_eq!(
        table(&wd, "issue"),
        "repo,number,id,_synced_at,_deleted\na,1,11,T,false\na,2,12,T,false\nb,1,21,T,false\n"
    );
    assert_eq!(
        table(&wd, "comment"),
        "issue_id,id,body,_synced_at,_deleted\n11,c1,x,T,false\n21,c2,,T,false\n21,c3,,T,false\n"
    );
    // Repo b is gone: its issues and their comments get tombstones.
    round.store(1, std::sync::atomic::Ordering::SeqCst);
    ok(&sync(&wd, def, &server, "", ""));
    assert_eq!(table(&wd, "repo"), "id,name,_synced_at,_deleted\n1,a,T,false\n2,b,T,false\n2,,T,true\n");
    assert_eq!(
        table(&wd, "issue"),
        "repo,number,id,_synced_at,_deleted\na,1,11,T,false\na,2,12,T,false\nb,1,21,T,false\nb,1,,T,true\n"
    );
    assert_eq!(
        table(&wd, "comment"),
        "issue_id,id,body,_synced_at,_deleted\n11,c1,x,T,false\n21,c2,,T,false\n21,c3,,T,false\n21,c2,,T,true\n21,c3,,T,true\n"
    );
    // The grandchild alone reads its ancestors.
    let wd = Workdir::new("def-for-each-nested-alone");
    wd.write("def.json", def);
    wd.write("c.json", &format!(r#"{{"api_key": "k", "base_url": "{}"}}"#, server.origin));
    ok(&wd.output(&mut wd.command(&[
        "sync",
        "./def.json",
        "--config",
        "c.json",
        "--out",
        "out",
        "--tables",
        "comment",
    ])));
    assert_eq!(table(&wd, "comment"), "issue_id,id,body,_synced_at,_deleted\n11,c1,x,T,false\n");
}

#[test]
fn nested_for_each_kill_9_then_rerun_is_exact() {
    let server = holding(|target, at| target == at, |target| hub(target, false));
    let wd = Workdir::new("def-for-each-nested-kill");
    wd.write("def.json", NESTED_DEF);
    wd.write("c.json", &format!(r#"{{"api_key": "k", "base_url": "{}"}}"#, server.origin));
    for at in ["/issues/11/comments", "/repos/a/issues?page=2&per_page=2", "/issues/21/comments"] {
        server.kill_at(&wd, at);
    }
    ok(&wd.output(&mut wd.command(&["sync", "./def.json", "--config", "c.json", "--out", "out"])));
    assert_eq!(table(&wd, "repo"), "id,name,_synced_at,_deleted\n1,a,T,false\n2,b,T,false\n");
    assert_eq!(
        table(&wd, "issue"),
        "repo,number,id,_synced_at,_deleted\na,1,11,T,false\na,2,12,T,false\nb,1,21,T,false\n"
    );
    assert_eq!(
        table(&wd, "comment"),
        "issue_id,id,body,_synced_at,_deleted\n11,c1,x,T,false\n21,c2,,T,false\n21,c3,,T,false\n"
    );
}
