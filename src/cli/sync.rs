//! `api2csv sync`: one run of a connector into an output directory.

use std::path::PathBuf;

use lexopt::prelude::*;

use super::{connector_arg, lex, say, usage, value};
use crate::config::{self, Config};
use crate::connector::{self, Def};
use crate::engine::report;
use crate::engine::sync::{self, Report};
use crate::error::{Error, Failure, Result};
use crate::store::manifest;
use crate::store::state::OutputOptions;
use crate::term::logging::Verbosity;
use crate::term::progress::{Mode, Progress};
use crate::term::signal::Interrupt;

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

/// The parsed command line of `sync`.
#[derive(Debug, Clone)]
pub struct Args {
    pub connector: &'static Def,
    pub config: Option<PathBuf>,
    pub out: PathBuf,
    pub tables: Option<Vec<String>>,
    pub full_refresh: bool,
    pub compact: bool,
    pub output: OutputOptions,
    pub verbosity: Verbosity,
    /// The configuration's warnings, for `last_sync.json`.
    pub warnings: Vec<String>,
}

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

/// Runs the sync of `args` with a validated configuration: the summary, then
/// `last_sync.json`, then the manifest (and compaction) on success.
pub fn sync_with(args: &Args, config: &Config) -> std::result::Result<(), Failure> {
    let interrupt = Interrupt::install();
    let client = connector::client(args.connector, config, Some(interrupt.0.clone()));
    let c = (args.connector.build)(config);
    let opts = sync::Options {
        dir: args.out.clone(),
        tables: args.tables.clone(),
        full_refresh: args.full_refresh || !config.incremental,
        output: OutputOptions {
            bom: args.output.bom || config.bom,
            spreadsheet_safe: args.output.spreadsheet_safe || config.spreadsheet_safe,
        },
        interrupt: interrupt.clone(),
    };
    let mut progress = Progress::new(Mode::detect(args.verbosity == Verbosity::Quiet));
    let mut report = Report::default();
    let result = sync::run(c.as_ref(), &client, &opts, &mut report, &mut progress);
    drop(progress);
    report.stats = client.stats();
    let result = result.map_err(|e| match e {
        Error::Interrupted => {
            Error::Signal { name: interrupt.name(), status: interrupt.exit_status(), committed: report.pages_committed }
        }
        e => e,
    });
    if report.dir_ready && args.verbosity != Verbosity::Quiet {
        say(&report::summary_text(&report));
    }
    let result = result.and_then(|()| finish(args, &report.digests, &interrupt)).map_err(|e| match e {
        Error::Interrupted => {
            Error::SignalCompacting { name: interrupt.name(), status: interrupt.exit_status(), dir: args.out.clone() }
        }
        e => e,
    });
    // Rerunning resumes what this run or an earlier one committed: the line says so.
    // When nothing was ever committed there is nothing to resume, and it does not.
    let committed = report.wrote && (report.pages_committed > 0 || report.dir_checked);
    let failure = result.err().map(|error| Failure { error, wrote: report.wrote }).map(|f| match f.status() {
        // Rerunning is the remedy only when something was committed to resume,
        // and not for a directory error, whose line names `repair` instead.
        1 if committed && !matches!(f.error, Error::Dir { .. }) => {
            Failure { error: Error::Resumable(Box::new(f.error)), wrote: f.wrote }
        }
        _ => f,
    });
    let status = failure.as_ref().map_or(0, Failure::status);
    // A run refused with 2 leaves the directory as it was, last_sync.json included.
    if report.dir_ready || (report.dir_checked && status != 2) {
        let line = failure.as_ref().map(|f| f.error.to_string());
        if let Err(e) = report::write(&args.out, args.connector.name, &report, status, line, &args.warnings) {
            log::warn!("{e}");
        }
    }
    failure.map_or(Ok(()), Err)
}

/// After a successful sync: compaction if asked, and the manifest of what is there
/// (also when a signal stopped the compaction).
fn finish(args: &Args, digests: &[(std::path::PathBuf, u64, String)], interrupt: &Interrupt) -> Result<()> {
    if args.compact {
        let (state, done) = match crate::store::compact::run(&args.out, interrupt) {
            Err(Error::Interrupted) => {
                let state = crate::store::state::State::load(&args.out)?.expect("a state after a sync");
                manifest::write_for_state(&args.out, &state, digests)?;
                return Err(Error::Interrupted);
            }
            result => result?,
        };
        say(&crate::store::compact::summary(&done));
        return manifest::write_for_state(&args.out, &state, &[]);
    }
    let state = crate::store::state::State::load(&args.out)?.expect("a state after a sync");
    manifest::write_for_state(&args.out, &state, digests)
}
