//! The command line: one file per command (xsv's `src/cmd/` shape), each with its
//! usage text, its argument parsing and its `run`. `main` calls [`run`] and turns a
//! [`Failure`] into the exit status.

pub mod check;
pub mod compact;
pub mod demo;
pub mod mock;
pub mod repair;
pub mod sync;
pub mod tables;
pub mod verify;

use std::ffi::OsString;
use std::io::Write;

use lexopt::prelude::*;

use crate::connector::{self, Def};
use crate::error::{Error, Failure, Result};
use crate::log_setup::{self, Verbosity};

pub const USAGE: &str = "\
api2csv: copy SaaS REST APIs into plain CSV files, incrementally and crash-safely

Usage:
  api2csv sync <connector> [--config FILE] [--out DIR] [--tables T1,T2] [--full-refresh] [--compact]
               [--bom] [--spreadsheet-safe] [-q | -v | -vv]
  api2csv compact <DIR>
  api2csv tables <connector>
  api2csv check <connector> --config FILE
  api2csv mock <connector> [--addr 127.0.0.1:PORT] [--seed N] [--records N] [--fault-rate F]
                           [--rate-limit N/SECS] [--generation N]
  api2csv demo [--out DIR]
  api2csv repair <DIR>
  api2csv verify <DIR>

Connectors: mailerlite, paligo. `api2csv <command> --help` describes a command.

Exit status: 0 success; 1 the sync failed after committing what it had (run it again
to resume); 2 usage, configuration, credential or directory error, found before
anything was written; 130 / 143 interrupted by SIGINT / SIGTERM after committing
what it had (run it again to resume).
";

/// One command: its name and how it runs (each prints its own `--help`).
struct Command {
    name: &'static str,
    run: fn(&mut lexopt::Parser) -> std::result::Result<(), Failure>,
}

static COMMANDS: &[Command] = &[
    Command { name: "sync", run: sync::run },
    Command { name: "compact", run: compact::run },
    Command { name: "tables", run: tables::run },
    Command { name: "check", run: check::run },
    Command { name: "mock", run: mock::run },
    Command { name: "demo", run: demo::run },
    Command { name: "repair", run: repair::run },
    Command { name: "verify", run: verify::run },
];

/// Runs the command line `args` (without the program name).
pub fn run(args: impl IntoIterator<Item = OsString>) -> std::result::Result<(), Failure> {
    let mut p = lexopt::Parser::from_args(args);
    let name = match p.next().map_err(lex)? {
        None => return Err(usage("a command is required (try --help)").into()),
        Some(Long("help") | Short('h')) => return help(USAGE),
        Some(Long("version") | Short('V')) => return help(concat!("api2csv ", env!("CARGO_PKG_VERSION"), "\n")),
        Some(Value(v)) => v.string().map_err(lex)?,
        Some(other) => return Err(lex(other.unexpected()).into()),
    };
    if name == "help" {
        say(USAGE);
        return Ok(());
    }
    let command = COMMANDS
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| usage(format!("unknown command {name:?} (try --help)")))?;
    (command.run)(&mut p)
}

pub fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

pub fn lex(e: lexopt::Error) -> Error {
    usage(e.to_string())
}

/// The connector named by a positional argument.
pub fn connector_arg(v: OsString) -> Result<&'static Def> {
    let name = v.string().map_err(lex)?;
    if connector::definition::is_path(&name) {
        return connector::definition::load(std::path::Path::new(&name));
    }
    connector::find(&name)
        .ok_or_else(|| usage(format!("unknown connector {name:?} (connectors: {})", connector::names())))
}

/// The value of `--flag`, parsed.
pub fn value<T: std::str::FromStr>(p: &mut lexopt::Parser, flag: &str) -> Result<T> {
    let v = p.value().map_err(lex)?.string().map_err(lex)?;
    v.parse().map_err(|_| usage(format!("{flag}: invalid value {v:?}")))
}

/// Writes to stdout; a closed pipe (`api2csv tables x | head -1`) is not an error.
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Sets up logging for a command that takes no verbosity flags.
pub fn quiet_logging() {
    log_setup::init(Verbosity::Normal);
}

/// Prints a command's help text: `--help` is a success.
pub fn help(text: &str) -> std::result::Result<(), Failure> {
    say(text);
    Ok(())
}

/// The one `<DIR>` argument of `command`; `None` for `--help`.
pub fn dir_arg(p: &mut lexopt::Parser, command: &str) -> Result<Option<std::path::PathBuf>> {
    let mut dir = None;
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return Ok(None),
            Value(v) if dir.is_none() => dir = Some(std::path::PathBuf::from(v)),
            other => return Err(lex(other.unexpected())),
        }
    }
    dir.map(Some).ok_or_else(|| usage(format!("{command}: which directory?")))
}
