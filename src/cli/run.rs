//! A sync as the commands run it (`sync`, and `demo` for each connector): the run,
//! its summary on stdout, `last_sync.json`, then compaction if asked and the manifest.

use std::path::PathBuf;

use super::say;
use crate::config::Config;
use crate::connector::{self, Def};
use crate::engine::report;
use crate::engine::sync::{self, Report};
use crate::error::{Error, Failure, Result};
use crate::store::manifest;
use crate::store::state::OutputOptions;
use crate::term::logging::Verbosity;
use crate::term::progress::{Mode, Progress};
use crate::term::signal::Interrupt;

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
        if let Err(e) = report::write(
            &args.out,
            args.connector.name,
            &report,
            report::Ending { exit_status: status, error: line, warnings: &args.warnings },
        ) {
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
