//! The command line: one file per command (xsv's `src/cmd/` shape), each with its
//! usage text, its argument parsing and its `run`; a command uses the library (and
//! `run.rs`, a sync as `sync` and `demo` run it), never another command. `main`
//! calls [`run`] and turns a [`Failure`] into the exit status.

pub(crate) mod apply;
pub(crate) mod bundle;
pub(crate) mod check;
pub(crate) mod compact;
pub(crate) mod completions;
pub(crate) mod demo;
pub(crate) mod mock;
pub(crate) mod repair;
mod run;
pub(crate) mod sync;
pub(crate) mod tables;
pub(crate) mod verify;

use std::ffi::OsString;
use std::io::Write;

use lexopt::prelude::*;

use crate::connector::{self, Def};
use crate::error::{Error, Failure, Result};
use crate::term::logging::{self, Verbosity};

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
  api2csv bundle <DIR> [--since MANIFEST] --out FILE
  api2csv apply <FILE> <DEST>
  api2csv completions <bash|zsh|fish>
  api2csv man

Connectors: {connectors}. `api2csv <command> --help` describes a command.

Exit status: 0 success; 1 the sync failed after committing what it had (run it again
to resume); 2 usage, configuration, credential or directory error, found before
anything was written; 130 / 143 interrupted by SIGINT / SIGTERM after committing
what it had (run it again to resume).
";

/// One command: its name, its usage text (its flags, for "did you mean") and how it
/// runs (each prints its own `--help`).
pub(crate) struct Command {
    pub(crate) name: &'static str,
    pub(crate) usage: &'static str,
    run: fn(&mut lexopt::Parser) -> std::result::Result<(), Failure>,
}

pub(crate) static COMMANDS: &[Command] = &[
    Command { name: "sync", usage: sync::USAGE, run: sync::run },
    Command { name: "compact", usage: compact::USAGE, run: compact::run },
    Command { name: "tables", usage: tables::USAGE, run: tables::run },
    Command { name: "check", usage: check::USAGE, run: check::run },
    Command { name: "mock", usage: mock::USAGE, run: mock::run },
    Command { name: "demo", usage: demo::USAGE, run: demo::run },
    Command { name: "repair", usage: repair::USAGE, run: repair::run },
    Command { name: "verify", usage: verify::USAGE, run: verify::run },
    Command { name: "bundle", usage: bundle::USAGE, run: bundle::run },
    Command { name: "apply", usage: apply::USAGE, run: apply::run },
    Command { name: "completions", usage: completions::USAGE, run: completions::run_completions },
    Command { name: "man", usage: completions::USAGE, run: completions::run_man },
];

/// Runs the command line `args` (without the program name).
pub fn run(args: impl IntoIterator<Item = OsString>) -> std::result::Result<(), Failure> {
    dispatch(args)?;
    stdout_status()
}

fn dispatch(args: impl IntoIterator<Item = OsString>) -> std::result::Result<(), Failure> {
    let mut p = lexopt::Parser::from_args(args);
    let name = match p.next().map_err(lex)? {
        None => return Err(usage("a command is required (try --help)").into()),
        Some(Long("help") | Short('h')) => return help(USAGE),
        Some(Long("version") | Short('V')) => {
            return help(concat!("api2csv ", env!("CARGO_PKG_VERSION"), " (", env!("API2CSV_COMMIT"), ")\n"))
        }
        Some(Value(v)) => v.string().map_err(lex)?,
        Some(other) => return Err(lex(other.unexpected()).into()),
    };
    if name == "help" {
        say(&usage_text(USAGE));
        return Ok(());
    }
    let Some(command) = COMMANDS.iter().find(|c| c.name == name) else {
        let close =
            COMMANDS.iter().map(|c| (crate::config::edits(c.name, &name), c.name)).filter(|(d, _)| *d <= 2).min();
        let hint = close.map_or(String::new(), |(_, c)| format!("; did you mean {c}?"));
        return Err(usage(format!("unknown command {name:?}{hint} (try --help)")).into());
    };
    (command.run)(&mut p).map_err(|f| with_suggestion(f, command.usage))
}

/// The first error writing to stdout other than a closed pipe, kept by [`say`] for
/// the end of the command: the work is done, but whoever reads the output lost some.
static STDOUT_ERROR: std::sync::Mutex<Option<std::io::Error>> = std::sync::Mutex::new(None);

fn stdout_status() -> std::result::Result<(), Failure> {
    let error = STDOUT_ERROR.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    match error {
        Some(e) => Err(Error::io("write to", std::path::Path::new("standard output"), e).into()),
        None => Ok(()),
    }
}

/// Adds "did you mean --config?" to the error of an option that the usage
/// text `text` does not have but nearly has (`--confg`).
fn with_suggestion(f: Failure, text: &str) -> Failure {
    let Error::Usage(msg) = &f.error else { return f };
    let Some(given) = msg.strip_prefix("invalid option '").and_then(|m| m.strip_suffix('\'')) else { return f };
    let flags = text.split(|c: char| c.is_whitespace() || "[]|,".contains(c)).filter(|w| w.starts_with("--"));
    let close = flags.map(|flag| (crate::config::edits(flag, given), flag)).filter(|(d, _)| *d <= 2).min();
    match close {
        Some((_, flag)) => Failure { error: usage(format!("{msg}; did you mean {flag}?")), wrote: f.wrote },
        None => f,
    }
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

/// Writes to stdout; a closed pipe (`api2csv tables x | head -1`) is not an error,
/// any other failure (`> /dev/full`) makes the command fail once it is done.
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        let mut kept = STDOUT_ERROR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if e.kind() != std::io::ErrorKind::BrokenPipe && kept.is_none() {
            *kept = Some(e);
        }
    }
}

/// Sets up logging for a command that takes no verbosity flags.
pub fn quiet_logging() {
    logging::init(Verbosity::Normal);
}

/// Prints a command's help text: `--help` is a success.
pub fn help(text: &str) -> std::result::Result<(), Failure> {
    say(&usage_text(text));
    Ok(())
}

/// A usage text with what depends on the list of connectors filled in: `{connectors}`
/// (their names) and `{secret_env}` (the environment variables their secrets may come
/// from, the line wrapped at 80 columns), so that no help text names an API.
pub fn usage_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        if !line.contains("{secret_env}") {
            out.push_str(&line.replace("{connectors}", &connector::names()));
            continue;
        }
        let vars: Vec<&str> = connector::CONNECTORS
            .iter()
            .flat_map(|d| d.requirements.username_env.into_iter().chain([d.requirements.api_key_env]))
            .collect();
        let line = line.replace("{secret_env}", &vars.join(", "));
        let indent = &line[..line.len() - line.trim_start().len()];
        let mut current = indent.to_string();
        for word in line.split_whitespace() {
            if current.len() > indent.len() && current.len() + 1 + word.len() > 80 {
                out.push_str(current.trim_end());
                out.push('\n');
                current = indent.to_string();
            }
            if current.len() > indent.len() {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push_str(&current);
        out.push('\n');
    }
    out
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
    let dir = dir.ok_or_else(|| usage(format!("{command}: which directory?")))?;
    // The same words from compact, repair and verify.
    if !dir.is_dir() {
        return Err(Error::dir(&dir, if dir.exists() { "not a directory" } else { "no such directory" }));
    }
    Ok(Some(dir))
}
