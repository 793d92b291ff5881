//! A directory synced from a connector definition is a directory like any other:
//! `compact` and `repair` take only the directory, and know its tables from the
//! definition its `state.json` keeps, whether or not the file is still at hand.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::directory::one_line;
use crate::hostile::{serve_with, Reply};
use crate::workdir::Workdir;

/// Keys are composite on purpose: compact must take them from the definition.
const DEF: &str = r#"{"name": "shop", "base_url": "https://api.shop.example/v1", "auth": {"bearer": "api_key"},
  "tables": [{"name": "line", "path": "/lines", "records": "/data", "primary_key": ["order", "n"],
              "paging": {"none": {}}}]}"#;

#[test]
fn compact_and_repair_take_a_definition_directory_without_the_file() {
    let changed = Arc::new(AtomicBool::new(false));
    let c = Arc::clone(&changed);
    let server = serve_with(move |_| {
        Reply::ok(if c.load(Ordering::SeqCst) {
            r#"{"data": [{"order": 1, "n": 1, "qty": 5}, {"order": 2, "n": 1, "qty": 1}]}"#
        } else {
            r#"{"data": [{"order": 1, "n": 1, "qty": 2}, {"order": 1, "n": 2, "qty": 3}, {"order": 2, "n": 1, "qty": 1}]}"#
        })
    });
    let wd = Workdir::new("defdir-compact");
    wd.write("shop.json", DEF);
    wd.write("c.json", &format!(r#"{{"api_key": "k", "base_url": "{}/v1"}}"#, server.origin));
    let sync =
        |wd: &Workdir| wd.stdout(&mut wd.command(&["sync", "./shop.json", "--config", "c.json", "--out", "out"]));
    sync(&wd);
    changed.store(true, Ordering::SeqCst);
    sync(&wd);
    fs::remove_file(wd.path("shop.json")).unwrap();

    let lines = |wd: &Workdir| {
        let text = fs::read_to_string(wd.path("out/line.csv")).unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let mut rows: Vec<String> =
            r.records().map(|rec| rec.unwrap().iter().take(3).collect::<Vec<_>>().join(" ")).collect();
        rows.push(r.headers().unwrap().iter().collect::<Vec<_>>().join(","));
        rows
    };
    // The changelog: three rows, then the changed row and the tombstone of (1, 2).
    let before = ["1 1 2", "1 2 3", "2 1 1", "1 1 5", "1 2 ", "order,n,qty,_synced_at,_deleted"];
    assert_eq!(lines(&wd), before);
    wd.stdout(&mut wd.command(&["compact", "out"]));
    let after = lines(&wd);
    assert_eq!(after, ["2 1 1", "1 1 5", "order,n,qty,_synced_at,_deleted"], "one row per (order, n)");
    let repaired = wd.stdout(&mut wd.command(&["repair", "out"]));
    assert!(repaired.contains("nothing"), "{repaired}");
    wd.stdout(&mut wd.command(&["verify", "out"]));

    // A state that lost the definition names the connector it does not know.
    let state = fs::read_to_string(wd.path("out/state.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&state).unwrap();
    v.as_object_mut().unwrap().remove("definition_source");
    fs::write(wd.path("out/state.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    let line = one_line(&wd.fails(&mut wd.command(&["compact", "out"]), 2));
    assert!(line.contains("unknown connector \"shop\""), "{line}");
}
