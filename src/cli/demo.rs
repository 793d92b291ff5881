//! `api2csv demo`: the embedded mocks put to use, end to end, with nothing to set up:
//! a mock server on a free loopback port, a sync over real HTTP into real files, the
//! account changing and a second sync appending only the changes, then compaction.

use std::path::{Path, PathBuf};

use lexopt::prelude::*;

use super::{help, lex, say};
use crate::config;
use crate::connector::CONNECTORS;
use crate::error::Failure;
use crate::mock::MockOptions;
use crate::store::state::{OutputOptions, State};
use crate::term::logging::{self, Verbosity};

pub const USAGE: &str = "\
api2csv demo [--out DIR]

Starts the embedded mock APIs on loopback and syncs each connector into DIR/<connector>/
over real HTTP; then the mock account changes and a second sync appends only the
changes; then it compacts and prints where the CSV files are and what to do next
(default DIR: ./api2csv-demo).
";

/// The size of each demo account: subscribers, or assignments.
const RECORDS: usize = 2000;

pub fn run(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let mut out = PathBuf::from("api2csv-demo");
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return help(USAGE),
            Long("out") => out = PathBuf::from(p.value().map_err(lex)?),
            other => return Err(lex(other.unexpected()).into()),
        }
    }
    logging::init(Verbosity::Normal);
    if out.exists() {
        say(&format!(
            "{} exists: syncing into it again (each connector's directory continues from its state)\n",
            out.display()
        ));
    } else {
        // As sync's --out: only the last component, a missing parent is exit 2.
        crate::store::fsio::create_out_dir(&out)?;
    }
    for def in CONNECTORS {
        let dir = out.join(def.name);
        // Both generations on one address: a Paligo account is its user at one host
        // and port, and another port would be another account.
        let mut addr = "127.0.0.1:0".to_string();
        for generation in [1, 2] {
            let opts = MockOptions { records: RECORDS, generation, ..MockOptions::default() };
            let mock = crate::mock::start_mock(def, &addr, &opts)?;
            addr = mock.server.origin().trim_start_matches("http://").to_string();
            let map = mock.config.as_object().expect("an object").clone();
            let config = config::from_map(&def.requirements, &map, &|_| None)?;
            let what = if generation == 1 { "syncing" } else { "the account changed; syncing again" };
            say(&format!("== {}: {what} (mock at {}) into {}\n", def.name, config.base_url, dir.display()));
            let args = super::run::Args {
                connector: def,
                config: None,
                out: dir.clone(),
                tables: None,
                full_refresh: false,
                compact: generation == 2,
                output: OutputOptions::default(),
                verbosity: Verbosity::Normal,
                warnings: Vec::new(),
            };
            super::run::sync_with(&args, &config)?;
        }
        say(&files_text(&dir));
    }
    say(&next_steps(&out));
    Ok(())
}

fn files_text(dir: &Path) -> String {
    let state = State::load(dir).ok().flatten().unwrap_or_else(|| State::new(""));
    let mut s = String::from("compacted, one row per record:\n");
    for (table, t) in &state.tables {
        let path = crate::store::table_file::table_path(dir, table);
        s.push_str(&format!(
            "  {:<44} {:>7} rows, {} columns\n",
            path.display(),
            t.file.rows,
            t.file.columns.len() + 2
        ));
    }
    s
}

/// What to try next, for the first connector that has a demo hint.
fn next_steps(out: &Path) -> String {
    let Some((name, hint)) = CONNECTORS.iter().find_map(|d| d.demo.map(|h| (d.name, h))) else { return String::new() };
    let dir = out.join(name);
    format!(
        "\nWhat next:
  open {sub} in a spreadsheet, or query it:
    duckdb -c \"SELECT {column}, count(*) FROM read_csv('{sub}', all_varchar=true) GROUP BY {column}\"
    sqlite3 :memory: -cmd \".import --csv {sub} {table}\" \"SELECT count(*) FROM {table}\"
  check that a copied export arrived intact: api2csv verify {dir}
  sync a real account: install -m 600 /dev/null {name}.json, put
    {{\"api_key\": \"...\"}} in it with an editor, then
    api2csv check {name} --config {name}.json
    api2csv sync {name} --config {name}.json --out exports/{name}
",
        sub = dir.join(format!("{}.csv", hint.table)).display(),
        dir = dir.display(),
        table = hint.table,
        column = hint.group_by,
    )
}
