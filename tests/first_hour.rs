//! What a new user meets in the first hour (issue 21): private files, `verify` for
//! people and for `sha256sum -c`, the small things of the command line, and a
//! progress line readable on an 80-column terminal.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use api2csv::mock::MockOptions;

use crate::directory::one_line;
use crate::mailerlite::{config, start};
use crate::workdir::{has_tool, Workdir};

/// Permission bits of every entry of `dir`, by name, `dir` itself as ".".
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut all = vec![(".".to_string(), mode(dir))];
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        all.push((e.file_name().to_string_lossy().into_owned(), mode(&e.path())));
    }
    all.sort();
    all
}

fn umask() -> u32 {
    let out = std::process::Command::new("sh").args(["-c", "umask"]).output().unwrap();
    u32::from_str_radix(String::from_utf8(out.stdout).unwrap().trim(), 8).unwrap()
}

#[test]
fn every_file_of_an_export_is_its_owners_only_unless_widened() {
    let wd = Workdir::new("first-private");
    let server = start(&MockOptions { records: 300, ..MockOptions::default() });
    let cfg = config(&wd, &server, r#", "max_records_per_page": "50""#);
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "--compact"]));
    let got = modes(&wd.path("out"));
    assert!(got.iter().any(|(n, _)| n == "subscriber.csv") && got.iter().any(|(n, _)| n == "SHA256SUMS"), "{got:?}");
    for (name, mode) in &got {
        let want = if name == "." { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "out/{name}: {mode:o} in {got:?}");
    }

    let mut widened = wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "shared"]);
    wd.stdout(widened.env("API2CSV_FILE_MODE", "0640"));
    let mask = umask();
    for (name, mode) in modes(&wd.path("shared")) {
        let want = if name == "." { 0o750 } else { 0o640 } & !mask;
        assert_eq!(mode, want, "shared/{name}: {mode:o} with umask {mask:o}");
    }
}

#[test]
fn verify_lists_each_file_checks_state_and_writes_sums_sha256sum_accepts() {
    let wd = Workdir::new("first-verify");
    let server = start(&MockOptions { records: 300, ..MockOptions::default() });
    let cfg = config(&wd, &server, r#", "max_records_per_page": "50""#);
    wd.stdout(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]));
    let said = wd.stdout(&mut wd.command(&["verify", "out"]));
    let files = ["campaign.csv", "field.csv", "group.csv", "group_subscriber.csv", "subscriber.csv", "state.json"];
    for f in files {
        assert!(said.lines().any(|l| l == format!("{f}: ok")), "{f}: {said}");
    }
    let sums = fs::read_to_string(wd.path("out/SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), files.len(), "{sums}");
    if has_tool("sha256sum", "verify_lists_each_file_checks_state_and_writes_sums_sha256sum_accepts") {
        let mut check = std::process::Command::new("sha256sum");
        check.current_dir(wd.path("out")).args(["-c", "--strict", "SHA256SUMS"]);
        let checked = wd.stdout(&mut check);
        assert_eq!(checked.lines().filter(|l| l.ends_with(": OK")).count(), files.len(), "{checked}");
        // And sha256sum fails where verify does.
        fs::OpenOptions::new().append(true).open(wd.path("out/field.csv")).unwrap().write_all(b"x").unwrap();
        assert!(!wd.output(&mut check).status.success(), "sha256sum -c accepted a changed field.csv");
    } else {
        fs::OpenOptions::new().append(true).open(wd.path("out/field.csv")).unwrap().write_all(b"x").unwrap();
    }

    // Two broken files, state.json one of them, and a stray file.
    let state = fs::read_to_string(wd.path("out/state.json")).unwrap();
    fs::write(wd.path("out/state.json"), state.replacen("\"version\"", "\"version\" ", 1)).unwrap();
    fs::write(wd.path("out/subscriber (1).csv"), "id\n").unwrap();
    let out = wd.output(&mut wd.command(&["verify", "out"]));
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains(": FAILED: ")).collect();
    assert_eq!(failed.len(), 2, "{stdout}");
    assert!(failed[0].starts_with("field.csv: FAILED: has ") && failed[1].starts_with("state.json: FAILED: has "));
    assert_eq!(stdout.lines().filter(|l| l.ends_with(": ok")).count(), files.len() - 2, "{stdout}");
    let warning = stderr.lines().find(|l| l.contains("warning: ")).unwrap_or_default();
    assert!(warning.contains("subscriber (1).csv") && warning.contains("not in the manifest"), "{stderr}");
    let error = stderr.lines().find(|l| l.contains("error: ")).unwrap_or_default();
    assert!(error.contains("2 of 6 files") && error.contains("out/state.json") && error.contains("out/field.csv"));
}

#[test]
fn small_things_a_new_user_trips_on() {
    let wd = Workdir::new("first-small");
    let line = |args: &[&str], status: i32| one_line(&wd.fails(&mut wd.command(args), status));
    let typo = line(&["sync", "mailerlite", "--confg", "c.json"], 2);
    assert!(typo.contains("did you mean --config?"), "{typo}");
    assert!(line(&["snyc"], 2).contains("did you mean sync?"));
    let version = wd.stdout(&mut wd.command(&["--version"]));
    let built = version.strip_prefix(concat!("api2csv ", env!("CARGO_PKG_VERSION"), " (")).unwrap_or_default();
    let hash = built.strip_prefix("commit ").map(|h| &h[..12.min(h.len())]).unwrap_or_default();
    let from_git = hash.len() == 12 && hash.chars().all(|c| c.is_ascii_hexdigit());
    assert!(from_git || built.starts_with("not built from a git checkout)"), "{version}");
    assert!(wd.stdout(&mut wd.command(&["tables", "MailerLite"])).contains("subscriber"));
    let demo = line(&["demo", "--out", "missing/demo"], 2);
    assert!(demo.contains("missing") && !wd.path("missing").exists(), "{demo}");
    let [compact, repair, verify] = ["compact", "repair", "verify"].map(|c| line(&[c, "/nonexistent"], 2));
    assert!(compact.ends_with("error: /nonexistent: no such directory"), "{compact}");
    assert_eq!([&compact[20..], &verify[20..]], [&repair[20..]; 2], "the same words after the time stamp");

    // Output lost on a full disk is an error; output nobody reads any more is not.
    let full = fs::File::create("/dev/full").unwrap();
    let lost = wd.output(wd.command(&["tables", "mailerlite"]).stdout(full));
    assert_eq!(lost.status.code(), Some(1), "{}", String::from_utf8_lossy(&lost.stderr));
    assert!(String::from_utf8_lossy(&lost.stderr).contains("cannot write to standard output"));
    let script =
        format!("{} tables mailerlite | head -c1 >/dev/null; echo ${{PIPESTATUS[0]}}", env!("CARGO_BIN_EXE_api2csv"));
    let closed = wd.stdout(std::process::Command::new("bash").args(["-c", &script]));
    assert_eq!(closed.trim(), "0");
}

#[test]
fn a_mock_on_every_address_prints_a_configuration_check_accepts() {
    use std::io::{BufRead, BufReader};
    let wd = Workdir::new("first-mock-any");
    let mut mock = wd
        .command(&["mock", "mailerlite", "--addr", "0.0.0.0:0", "--records", "20"])
        .stdout(std::process::Stdio::piped())
        .stderr(wd.stderr_log())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(mock.stdout.take().unwrap()).lines();
    let config = lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with('{'))).unwrap().unwrap();
    assert!(config.contains("http://127.0.0.1:"), "{config}");
    wd.write("mock.json", &config);
    let checked = wd.output(&mut wd.command(&["check", "mailerlite", "--config", "mock.json"]));
    mock.kill().unwrap();
    mock.wait().unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
}

#[test]
fn the_widening_line_counts_the_columns_the_file_has() {
    let wd = Workdir::new("first-widen");
    let server = start(&MockOptions { records: 50, ..MockOptions::default() });
    let cfg = config(&wd, &server, "");
    let out =
        wd.output(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "--tables", "campaign"]));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let said: usize = stderr
        .lines()
        .find_map(|l| l.split("campaign: header widened to ").nth(1)?.strip_suffix(" columns")?.parse().ok())
        .unwrap_or_else(|| panic!("no widening line: {stderr}"));
    let header = fs::read_to_string(wd.path("out/campaign.csv")).unwrap();
    let columns = csv::Reader::from_reader(header.as_bytes()).headers().unwrap().len();
    assert_eq!(said, columns);
}

#[test]
fn an_80_column_terminal_shows_a_whole_eta_before_the_label() {
    if !has_tool("script", "an_80_column_terminal_shows_a_whole_eta_before_the_label") {
        return;
    }
    let wd = Workdir::new("first-pty80");
    // 300 pages at most 100 a second: seconds of live lines with an ETA.
    let opts = MockOptions { records: 3000, seed: 2, rate_limit: Some((100, 1)), ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, r#", "max_records_per_page": "10""#);
    let bin = env!("CARGO_BIN_EXE_api2csv");
    // The pseudo-terminal is 80 columns wide; COLUMNS says otherwise, and must lose.
    let line = format!("stty cols 80 rows 24; exec {bin} sync mailerlite --config {cfg} --out out");
    let mut cmd = std::process::Command::new("script");
    cmd.current_dir(&wd.dir).args(["-q", "-e", "-c", &line, "/dev/null"]).stdin(std::process::Stdio::null());
    cmd.env("TERM", "xterm").env("COLUMNS", "200").env("API2CSV_TEST_BACKOFF_MS", "5").env_remove("RUST_LOG");
    let shown = wd.stdout(&mut cmd);
    let draws: Vec<&str> = shown.split('\r').filter_map(|d| d.strip_suffix("\x1b[K")).collect();
    let live: Vec<&str> = draws.iter().copied().filter(|d| d.contains(" ETA ") || d.starts_with("ETA ")).collect();
    assert!(!live.is_empty(), "no live line with an ETA:\n{shown:?}");
    for d in &live {
        assert!(d.chars().count() <= 79, "wider than the terminal: {d:?}");
        let fields: Vec<&str> = d.split("  ").collect();
        assert!(fields[0].ends_with('%'), "{d:?}");
        let eta = fields[1].strip_prefix("ETA ").unwrap_or_else(|| panic!("{d:?}"));
        let (m, s) = eta.rsplit_once(':').unwrap_or_else(|| panic!("{d:?}"));
        assert!(m.split(':').all(|p| p.parse::<u64>().is_ok()) && s.len() == 2 && s.parse::<u64>().is_ok(), "{d:?}");
        assert!(fields[2].starts_with("subscriber + group"), "{d:?}");
    }
}

#[test]
fn a_quiet_run_keeps_its_configuration_warnings_in_last_sync() {
    let wd = Workdir::new("first-warnings");
    let server = start(&MockOptions { records: 20, ..MockOptions::default() });
    let cfg = config(&wd, &server, r#", "max_record_per_page": "50""#);
    let out = wd.output(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "-q"]));
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let last: serde_json::Value = serde_json::from_slice(&fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap();
    let warnings = last["warnings"].as_array().unwrap_or_else(|| panic!("{last}"));
    assert_eq!(warnings.len(), 1, "{last}");
    let w = warnings[0].as_str().unwrap();
    assert!(w.contains("\"max_record_per_page\"") && w.contains("did you mean \"max_records_per_page\""), "{w}");
}

#[test]
fn completions_and_the_man_page_come_from_the_usage_texts() {
    let wd = Workdir::new("first-completions");
    let bin = env!("CARGO_BIN_EXE_api2csv");
    let complete = |words: &str| {
        let script = format!(
            "source <({bin} completions bash) && COMP_WORDS=({words}) && COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)) && _api2csv; echo \"${{COMPREPLY[@]}}\""
        );
        wd.stdout(std::process::Command::new("bash").current_dir(&wd.dir).args(["-c", &script]))
    };
    assert_eq!(complete("api2csv sy").trim(), "sync");
    assert_eq!(complete("api2csv sync --con").trim(), "--config");
    assert!(complete("api2csv sync --f").contains("--full-refresh"));
    assert!(complete("api2csv sync mail").contains("mailerlite"));
    for shell in ["zsh", "fish"] {
        let script = wd.stdout(&mut wd.command(&["completions", shell]));
        assert!(script.contains("spreadsheet-safe") && script.contains("verify"), "{shell}: {script}");
    }
    let man = wd.stdout(&mut wd.command(&["man"]));
    assert!(man.starts_with(".TH API2CSV 1"), "{man}");
    for c in ["sync", "compact", "tables", "check", "mock", "demo", "repair", "verify", "completions"] {
        let help = wd.stdout(&mut wd.command(&[c, "--help"]));
        let first = help.lines().next().unwrap();
        assert!(man.contains(&format!(".SS {c}\n.nf\n{first}\n")), "{c}: {first}");
    }
}

/// Each table's `read` is its new, changed and unchanged records, each counted once,
/// and the tables' requests add up to the run's but for the one account check.
fn assert_counted_once(report: &serde_json::Value) {
    let tables = report["tables"].as_object().unwrap_or_else(|| panic!("no tables in {report}"));
    let n = |t: &serde_json::Value, k: &str| t[k].as_u64().unwrap_or_else(|| panic!("no {k} in {t}"));
    for (name, t) in tables {
        assert_eq!(n(t, "read"), n(t, "new") + n(t, "changed") + n(t, "unchanged"), "{name}: {t}");
    }
    let requests: u64 = tables.values().map(|t| n(t, "requests")).sum();
    assert_eq!(requests + 1, n(report, "requests"), "{report}");
}

#[test]
fn a_summary_counts_each_record_once_and_its_requests_add_up() {
    let wd = Workdir::new("first-counts");
    let out = wd.stdout(&mut wd.command(&["demo", "--out", "demo"]));
    assert_eq!(out.matches("requests (1 for the account check, ").count(), 4, "{out}");
    // The demo's second syncs: Paligo's assignments are read twice (the confirmation
    // re-read of a page-number listing), MailerLite's memberships in the pass.
    for connector in ["mailerlite", "paligo"] {
        let report = fs::read(wd.path(&format!("demo/{connector}/last_sync.json"))).unwrap();
        assert_counted_once(&serde_json::from_slice(&report).unwrap());
    }
    let paligo: serde_json::Value =
        serde_json::from_slice(&fs::read(wd.path("demo/paligo/last_sync.json")).unwrap()).unwrap();
    let assignments = &paligo["tables"]["assignments"];
    assert!(assignments["requests"].as_u64() > assignments["pages"].as_u64(), "a re-read: {assignments}");

    // A group whose counters disagree is read member by member after the pass: a
    // membership seen in both is one record read.
    let opts = MockOptions { records: 3000, seed: 4, skew_group_counts: true, ..MockOptions::default() };
    let server = start(&opts);
    let cfg = config(&wd, &server, "");
    let stderr = wd.fails(&mut wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]), 0);
    assert!(stderr.contains("reading its member listings"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&fs::read(wd.path("out/last_sync.json")).unwrap()).unwrap();
    assert_counted_once(&report);
    let rows = fs::read_to_string(wd.path("out/group_subscriber.csv")).unwrap().lines().count() as u64 - 1;
    assert_eq!(report["tables"]["group_subscriber"]["read"].as_u64(), Some(rows), "{report}");
}

#[test]
fn a_fetcher_count_that_is_neither_1_nor_2_is_ignored_with_a_warning() {
    let wd = Workdir::new("first-fetchers");
    let server = start(&MockOptions { records: 300, ..MockOptions::default() });
    let cfg = config(&wd, &server, r#", "max_records_per_page": "50""#);
    let mut cmd = wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out"]);
    let out = wd.output(cmd.env("API2CSV_FETCHERS", "8"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warned: Vec<&str> = stderr.lines().filter(|l| l.contains("API2CSV_FETCHERS")).collect();
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(warned[0].contains(r#"API2CSV_FETCHERS="8" is neither 1 nor 2: it is ignored"#), "{stderr}");
    assert_eq!(crate::expected::row_count(&wd.path("out"), "subscriber"), 300);
}
