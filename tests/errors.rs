//! Bad input gets one clear line and the documented exit status, and nothing
//! already written is lost.

use std::fs;

use api2csv::mock::MockOptions;

use crate::mailerlite::{config, start};
use crate::workdir::Workdir;

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    lines[0]
}

#[test]
fn broken_configs_exit_2_before_writing_anything() {
    let wd = Workdir::new("err-config");
    let cases = [
        ("{not json", "is not valid JSON"),
        (r#"{"api_key": "k", "retry_attempts": "many"}"#, "retry_attempts: expected an integer"),
        (r#"{"base_url": "https://x.example/api"}"#, "api_key: required"),
        (r#"{"api_key": "k", "base_url": "http://api.example.com"}"#, "base_url: credentials are only sent over https"),
    ];
    for (text, message) in cases {
        wd.write("bad.json", text);
        let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", "bad.json", "--out", "out"]), 2);
        let line = one_line(&err);
        assert!(line.contains(message), "{text}: {line}");
        assert!(!wd.path("out").exists(), "{text}: the output directory was created");
    }
    let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", "missing.json"]), 2);
    assert!(one_line(&err).contains("cannot read missing.json"), "{err}");
}

#[test]
fn a_wrong_key_is_one_request_and_exit_2() {
    let wd = Workdir::new("err-key");
    let server = start(&MockOptions { records: 10, ..MockOptions::default() });
    wd.write("c.json", &format!(r#"{{"api_key": "wrong", "base_url": "{}/api"}}"#, server.origin()));
    let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", "c.json", "--out", "out"]), 2);
    let line = one_line(&err);
    assert!(line.contains("credentials rejected") && line.contains("Unauthenticated."), "{line}");
    assert!(!line.contains("wrong"), "the key leaked: {line}");
    assert_eq!(server.requests(), 1);
    let err = wd.fails(&mut wd.command(&["check", "mailerlite", "--config", "c.json"]), 2);
    one_line(&err);
}

#[test]
fn an_unreachable_host_exits_1_with_one_line() {
    let wd = Workdir::new("err-host");
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    wd.write(
        "c.json",
        &format!(r#"{{"api_key": "k", "base_url": "http://127.0.0.1:{port}/api", "retry_attempts": 1}}"#),
    );
    let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", "c.json", "--out", "out"]), 1);
    let line = one_line(&err);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
}

#[test]
fn a_corrupt_state_file_exits_2_and_touches_nothing() {
    let wd = Workdir::new("err-state");
    let server = start(&MockOptions { records: 50, ..MockOptions::default() });
    let cfg = config(&wd, &server, "");
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]));
    let before = fs::read(wd.path("out/subscriber.csv")).unwrap();
    fs::write(wd.path("out/state.json"), "{\"version\": 1, \"conn").unwrap();
    let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]), 2);
    assert!(one_line(&err).contains("state.json"), "{err}");
    assert_eq!(fs::read(wd.path("out/subscriber.csv")).unwrap(), before);
    let err = wd.fails(&mut wd.command(&["compact", "out"]), 2);
    one_line(&err);
}

#[test]
fn a_second_process_on_the_same_directory_exits_2() {
    let wd = Workdir::new("err-lock");
    let server = start(&MockOptions { records: 20000, ..MockOptions::default() });
    let cfg = config(&wd, &server, r#", "max_records_per_page": 10"#);
    let mut first =
        wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]).stderr(wd.stderr_log()).spawn().unwrap();
    let started = std::time::Instant::now();
    while !wd.path("out/state.json").exists() && started.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]), 2);
    assert!(one_line(&err).contains("in use by another api2csv process"), "{err}");
    let err = wd.fails(&mut wd.command(&["compact", "out"]), 2);
    one_line(&err);
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock of a killed process does not block the next run.
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "--tables", "field"]));
}

#[test]
fn usage_errors_exit_2() {
    let wd = Workdir::new("err-usage");
    for args in [&["sync"][..], &["sync", "nope"], &["frob"], &["sync", "mailerlite", "--tables", "nope"]] {
        let err = wd.fails(&mut wd.command(args), 2);
        one_line(&err);
    }
    let help = wd.stdout(&mut wd.command(&["--help"]));
    assert!(help.contains("api2csv sync <connector>"), "{help}");
    for cmd in ["sync", "compact", "tables", "check", "mock", "demo"] {
        let text = wd.stdout(&mut wd.command(&[cmd, "--help"]));
        assert!(text.starts_with(&format!("api2csv {cmd}")), "{text}");
    }
    assert!(wd.stdout(&mut wd.command(&["--version"])).starts_with("api2csv "));
}

#[test]
fn a_full_disk_exits_1_and_the_rerun_loses_and_repeats_nothing() {
    let wd = Workdir::new("err-disk");
    let opts = MockOptions { records: 3000, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, "");
    // A file-size limit makes writes fail like a full disk (EFBIG instead of ENOSPC),
    // without root: SIGXFSZ is ignored, so the write error reaches the program.
    let bin = env!("CARGO_BIN_EXE_api2csv");
    let script = format!("trap '' XFSZ; ulimit -f 400; exec {bin} sync mailerlite --config {cfg} --out out");
    let mut cmd = std::process::Command::new("bash");
    cmd.current_dir(&wd.dir).args(["-c", &script]);
    let err = wd.fails(&mut cmd, 1);
    assert!(one_line(&err).contains("cannot write"), "{err}");
    let state: serde_json::Value = serde_json::from_slice(&fs::read(wd.path("out/state.json")).unwrap()).unwrap();
    let committed = state["tables"]["subscriber"]["file"]["file_len"].as_u64().unwrap();
    assert!(committed > 0, "nothing was committed before the disk filled up");
    assert!(fs::metadata(wd.path("out/subscriber.csv")).unwrap().len() >= committed);

    let out = wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]));
    assert!(out.contains("subscriber"), "{out}");
    let ml = api2csv::mock::mailerlite::MailerLite::new(&opts);
    for table in crate::mailerlite::TABLES {
        assert_eq!(crate::expected::row_count(&wd.path("out"), table), ml.expected(table).len(), "{table}");
    }
    wd.stdout(&mut wd.command(&["compact", "out"]));
    crate::expected::assert_table(&wd.path("out"), "mailerlite", "subscriber", &ml.expected("subscriber"));
}

#[test]
fn a_table_file_changed_outside_api2csv_is_refused() {
    let wd = Workdir::new("err-edited");
    let server = start(&MockOptions { records: 30, ..MockOptions::default() });
    let cfg = config(&wd, &server, "");
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]));
    // A spreadsheet saved it back with a column renamed.
    let text = fs::read_to_string(wd.path("out/field.csv")).unwrap().replacen("name", "Name", 1);
    fs::write(wd.path("out/field.csv"), &text).unwrap();
    let err = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]), 2);
    assert!(one_line(&err).contains("field.csv") && err.contains("changed outside api2csv"), "{err}");
    assert_eq!(fs::read_to_string(wd.path("out/field.csv")).unwrap(), text);
}

#[test]
fn a_config_with_a_byte_order_mark_is_read() {
    let wd = Workdir::new("err-bom");
    let server = start(&MockOptions { records: 5, ..MockOptions::default() });
    let text = format!(
        "\u{feff}{{\"api_key\": \"{}\", \"base_url\": \"{}/api\"}}",
        api2csv::mock::mailerlite::API_KEY,
        server.origin()
    );
    wd.write("bom.json", &text);
    let out = wd.stdout(&mut wd.command(&["check", "mailerlite", "--config", "bom.json"]));
    assert!(out.contains("credentials accepted"), "{out}");
}

#[test]
fn no_log_level_shows_the_key() {
    let wd = Workdir::new("err-trace");
    let server = start(&MockOptions { records: 30, ..MockOptions::default() });
    let cfg = config(&wd, &server, "");
    for level in ["trace", "debug", "ureq=trace,ureq_proto=trace"] {
        let mut cmd = wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "-vv"]);
        let out = wd.output(cmd.env("RUST_LOG", level));
        assert!(out.status.success());
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains(api2csv::mock::mailerlite::API_KEY), "RUST_LOG={level} showed the key");
        assert!(all.lines().count() > 5, "RUST_LOG={level} logged nothing to look at");
    }
}
