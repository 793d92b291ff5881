//! Requests are the scarce resource under a rate limit: a MailerLite sync reads each
//! record once, memberships come from the subscriber pass, and a server that
//! announces a limit is paced to it after at most one refusal.

use api2csv::mock::mailerlite::MailerLite;
use api2csv::mock::MockOptions;
use serde_json::Value;

use crate::expected::assert_table;
use crate::mailerlite::{start, TABLES};
use crate::workdir::Workdir;

/// Writes a config for the mock that leaves the page size to the server.
fn config(wd: &Workdir, server: &api2csv::mock::MockServer) -> String {
    let text =
        format!(r#"{{"api_key": "{}", "base_url": "{}/api"}}"#, api2csv::mock::mailerlite::API_KEY, server.origin());
    wd.write("ml.json", &text);
    "ml.json".into()
}

fn sync(wd: &Workdir, cfg: &str) -> String {
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", cfg, "--out", "out"]))
}

fn assert_exact(wd: &Workdir, opts: &MockOptions) {
    wd.stdout(&mut wd.command(&["compact", "out"]));
    let ml = MailerLite::new(opts);
    for table in TABLES {
        assert_table(&wd.path("out"), "mailerlite", table, &ml.expected(table));
    }
}

fn last_sync(wd: &Workdir) -> Value {
    serde_json::from_slice(&std::fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap()
}

/// 1 preflight + 50 subscriber pages + 1 group page + 1 field page + a campaign page
/// per status.
const MINIMUM: u64 = 1 + 50 + 1 + 1 + 3;

#[test]
fn a_first_sync_makes_close_to_the_minimum_requests_and_is_exact() {
    let wd = Workdir::new("req-min");
    let opts = MockOptions { records: 5000, seed: 21, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server);
    sync(&wd, &cfg);
    let requests = server.requests();
    assert!(requests * 10 <= MINIMUM * 11, "{requests} requests, the minimum is {MINIMUM}");
    let report = last_sync(&wd);
    assert_eq!(report["requests"].as_u64(), Some(requests));
    assert_eq!(report["tables"]["group_subscriber"]["requests"].as_u64(), Some(0), "{report}");
    assert_exact(&wd, &opts);

    // Generation 2 moves, adds and removes memberships: still exact, few requests.
    let gen2 = MockOptions { generation: 2, ..opts };
    let server = start(&gen2);
    let cfg = config(&wd, &server);
    sync(&wd, &cfg);
    assert!(server.requests() * 10 <= (MINIMUM + 10) * 11, "{} requests", server.requests());
    let report = last_sync(&wd);
    assert!(report["tables"]["group_subscriber"]["deleted"].as_u64().unwrap() > 0, "{report}");
    assert_exact(&wd, &gen2);
}

#[test]
fn a_group_whose_counters_disagree_is_read_member_by_member() {
    let wd = Workdir::new("req-skew");
    let opts = MockOptions { records: 3000, seed: 4, skew_group_counts: true, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server);
    let out = wd.output(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reading its member listings"), "{stderr}");
    let report = last_sync(&wd);
    assert!(report["tables"]["group_subscriber"]["requests"].as_u64().unwrap() >= 5, "{report}");
    assert_exact(&wd, &opts);
}

#[test]
fn a_rate_limited_server_refuses_at_most_one_request() {
    let wd = Workdir::new("req-429");
    let opts = MockOptions { records: 3000, seed: 6, rate_limit: Some((20, 2)), ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server);
    sync(&wd, &cfg);
    let report = last_sync(&wd);
    assert!(report["rate_limited"].as_u64().unwrap() <= 1, "{report}");
    assert_exact(&wd, &opts);
}

#[test]
fn a_page_size_the_server_refuses_falls_back_once() {
    let wd = Workdir::new("req-422");
    let opts = MockOptions { records: 1200, seed: 8, reject_large_limit: true, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server);
    let out = wd.output(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("refused 1000 records per page").count(), 1, "{stderr}");
    // The minimum for 1200 subscribers, and the one refused request.
    let minimum = 1 + 12 + 1 + 1 + 3;
    assert!(server.requests() <= minimum + 1, "{} requests", server.requests());
    assert_exact(&wd, &opts);
}
