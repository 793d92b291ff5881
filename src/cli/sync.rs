//! `api2csv sync`: one run of a connector into an output directory.

use std::path::PathBuf;

use lexopt::prelude::*;

use super::run::{sync_with, Args};
use super::{connector_arg, lex, say, usage, value};
use crate::config::{self};
use crate::connector::{self};
use crate::error::{Failure, Result};
use crate::store::state::OutputOptions;
use crate::term::logging::Verbosity;

pub const USAGE: &str = "\
api2csv sync <connector> [--config FILE] [--out DIR] [--tables T1,T2] [--full-refresh] [--compact]
             [--bom] [--spreadsheet-safe] [-q | -v | -vv]

Reads every table of the connector and appends what changed to DIR/<table>.csv
(default DIR: the current directory), committing DIR/state.json after every page.
An interrupted sync continues where it stopped when run again.

  --config FILE        JSON configuration, `-` for standard input (secrets may come
                       from the environment instead: {secret_env}; the file wins)
  --out DIR            output directory (only its last component is created)
  --tables T1,T2       only these tables (see `api2csv tables <connector>`); repeatable
  --full-refresh       rebuild each table file from scratch (history is replaced)
  --compact            compact the directory after the sync (see `api2csv compact --help`)
  --bom                start table files with a UTF-8 byte order mark, for Excel (kept)
  --spreadsheet-safe   prefix cells starting with = + - @ tab CR or ' with ' (kept)
  -q                   errors only;  -v / -vv  more detail (RUST_LOG overrides)

Progress goes to stderr: a live line on a terminal, an info line every 30 s
otherwise. The summary goes to stdout; DIR/last_sync.json and DIR/manifest.json
record the run.
";

pub fn parse(p: &mut lexopt::Parser) -> Result<Option<Args>> {
    let (mut connector, mut config, mut out, mut tables) = (None, None, PathBuf::from("."), None::<Vec<String>>);
    let (mut full_refresh, mut compact, mut output) = (false, false, OutputOptions::default());
    let (mut quiet, mut verbose) = (false, 0u8);
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return Ok(None),
            Long("config") => config = Some(PathBuf::from(p.value().map_err(lex)?)),
            Long("out") => out = PathBuf::from(p.value().map_err(lex)?),
            Long("tables") => {
                let list: String = value(p, "--tables")?;
                let names: Vec<String> =
                    list.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
                if names.is_empty() {
                    return Err(usage("--tables: name at least one table (see `api2csv tables <connector>`)"));
                }
                let all = tables.get_or_insert_with(Vec::new);
                all.extend(names.into_iter().filter(|n| !all.contains(n)).collect::<Vec<_>>());
            }
            Long("full-refresh") => full_refresh = true,
            Long("compact") => compact = true,
            Long("bom") => output.bom = true,
            Long("spreadsheet-safe") => output.spreadsheet_safe = true,
            Short('q') | Long("quiet") => quiet = true,
            Short('v') | Long("verbose") => verbose += 1,
            Value(v) if connector.is_none() => connector = Some(connector_arg(v)?),
            other => return Err(lex(other.unexpected())),
        }
    }
    let connector = connector.ok_or_else(|| usage(format!("sync: which connector? ({})", connector::names())))?;
    let verbosity = Verbosity::from_flags(quiet, verbose);
    Ok(Some(Args { connector, config, out, tables, full_refresh, compact, output, verbosity, warnings: Vec::new() }))
}

pub fn run(p: &mut lexopt::Parser) -> std::result::Result<(), Failure> {
    let Some(mut args) = parse(p)? else {
        say(&super::usage_text(USAGE));
        return Ok(());
    };
    let config = config::load_logged(&args.connector.requirements, args.config.as_deref(), args.verbosity)?;
    args.warnings = args.connector.config_warnings(&config);
    for w in &args.warnings {
        log::warn!("{w}");
    }
    sync_with(&args, &config)
}
