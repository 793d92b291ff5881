//! The one error type of api2csv. Each variant names the object it concerns (a key,
//! a URL without secrets, a path, a table) so that its one-line message is enough to
//! act on. [`Error::exit_status`] gives the status an error has when found before a
//! run wrote anything; `main` decides the final status from the phase the run reached.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum Error {
    /// The command line is wrong.
    Usage(String),
    /// The configuration is missing a key or has an invalid value.
    Config(String),
    /// The API refused the credentials (401/403).
    Auth { url: String, status: u16, message: String },
    /// The API answered with an error that retrying cannot fix (400, 404, 422).
    Api { url: String, status: u16, message: String },
    /// The request kept failing (network, 5xx, 429, broken bodies) until retries ran out.
    Request { url: String, detail: String },
    /// The API sent pages we cannot follow (a repeating cursor, an endless listing).
    Response { url: String, detail: String },
    /// A file operation failed.
    Io { path: PathBuf, action: &'static str, source: io::Error },
    /// `state.json` exists but cannot be used: never a silent restart.
    State { path: PathBuf, detail: String },
    /// The output directory cannot be used as it is (a file edited outside api2csv,
    /// a file state.json does not know, another account); `detail` says what to do.
    Dir { path: PathBuf, detail: String },
    /// Another api2csv process holds the output directory.
    Locked { path: PathBuf },
    /// A copied file does not match its manifest entry.
    Mismatch { path: PathBuf, detail: String },
    /// A check of a directory or a manifest found it unusable (`verify`, `repair`,
    /// `bundle`); the message says what and what to do.
    Check(String),
    /// A part of the run stopped working (a thread that fetched pages or committed
    /// them), so the run cannot go on.
    Internal(String),
    /// SIGINT or SIGTERM arrived: the run stops at the next page boundary.
    Interrupted,
    /// The run stopped for a signal after committing what it had.
    Signal { name: &'static str, status: i32, committed: u64 },
    /// A signal stopped the compaction of `sync --compact` in `dir` after the sync
    /// itself had finished.
    SignalCompacting { name: &'static str, status: i32, dir: PathBuf },
    /// A sync failed on the way; what it committed stays, and rerunning resumes.
    Resumable(Box<Error>),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A command that failed, and whether it had changed the directory before: `main`
/// turns that into the exit status.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    pub wrote: bool,
}

impl Failure {
    pub fn status(&self) -> i32 {
        if self.wrote {
            self.error.exit_status_after_writing()
        } else {
            self.error.exit_status()
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure { error, wrote: false }
    }
}

impl Error {
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io { path: path.to_path_buf(), action, source }
    }

    pub fn dir(path: &Path, detail: impl Into<String>) -> Error {
        Error::Dir { path: path.to_path_buf(), detail: detail.into() }
    }

    /// The status of this error when the run had written nothing yet: 2 for what is
    /// wrong before anything happens (usage, configuration, credentials, state,
    /// directory, lock); 1 for a sync that failed on the way; 130 when interrupted.
    pub fn exit_status(&self) -> i32 {
        match self {
            Error::Usage(_)
            | Error::Config(_)
            | Error::Auth { .. }
            | Error::State { .. }
            | Error::Dir { .. }
            | Error::Check(_)
            | Error::Locked { .. } => 2,
            Error::Api { .. }
            | Error::Request { .. }
            | Error::Response { .. }
            | Error::Io { .. }
            | Error::Mismatch { .. }
            | Error::Internal(_) => 1,
            Error::Interrupted => 130,
            Error::Signal { status, .. } | Error::SignalCompacting { status, .. } => *status,
            Error::Resumable(e) => e.exit_status(),
        }
    }

    /// The status after a run that has committed something: never 2, which promises
    /// that nothing was written.
    pub fn exit_status_after_writing(&self) -> i32 {
        match self.exit_status() {
            2 => 1,
            s => s,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "usage: {m}"),
            Error::Config(m) => write!(f, "configuration: {m}"),
            Error::Auth { url, status, message } => {
                write!(f, "credentials rejected by {url}: HTTP {status}: {message}")
            }
            Error::Api { url, status, message } => write!(f, "{url}: HTTP {status}: {message}"),
            Error::Request { url, detail } => write!(f, "request failed {url}: {detail}"),
            Error::Response { url, detail } => write!(f, "unusable response from {url}: {detail}"),
            Error::Io { path, action, source } => {
                write!(f, "cannot {action} {}: {source}", path.display())
            }
            Error::State { path, detail } => {
                write!(f, "cannot use state file {}: {detail}", path.display())
            }
            Error::Check(detail) | Error::Internal(detail) => f.write_str(detail),
            Error::Dir { path, detail } | Error::Mismatch { path, detail } => write!(f, "{}: {detail}", path.display()),
            Error::Locked { path } => {
                write!(f, "output directory is in use by another api2csv process (lock {} is held)", path.display())
            }
            Error::Interrupted => write!(f, "interrupted"),
            Error::Resumable(e) => write!(f, "{e}; what was committed stays: run the same command again to resume"),
            Error::Signal { name, committed, .. } => {
                let pages = if *committed == 1 { "page" } else { "pages" };
                write!(f, "interrupted by {name}: {committed} {pages} committed; run the same command to resume")
            }
            Error::SignalCompacting { name, dir, .. } => write!(
                f,
                "interrupted by {name} while compacting {0}: the sync had finished, and each table file is \
                 either compacted or as the sync left it; run `api2csv compact {0}` to compact the rest",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Resumable(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}
