//! The one error type of api2csv. Each variant names the object it concerns (a key,
//! a URL without secrets, a path, a table) so that its one-line message is enough to
//! act on, and [`Error::exit_status`] decides the documented exit status in one place.

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
    /// The API sent a page we cannot follow (a repeating cursor, a missing key).
    Response { url: String, detail: String },
    /// A file operation failed.
    Io { path: PathBuf, action: &'static str, source: io::Error },
    /// `state.json` exists but cannot be used: never a silent restart.
    State { path: PathBuf, detail: String },
    /// Another api2csv process holds the output directory.
    Locked { path: PathBuf },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io { path: path.to_path_buf(), action, source }
    }

    /// 2 for problems found before anything was written (usage, configuration,
    /// credentials, state, lock); 1 for a sync that failed after committing what it had.
    pub fn exit_status(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config(_) | Error::Auth { .. } | Error::State { .. } | Error::Locked { .. } => 2,
            Error::Api { .. } | Error::Request { .. } | Error::Response { .. } | Error::Io { .. } => 1,
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
            Error::Locked { path } => {
                write!(f, "output directory is in use by another api2csv process (lock {} is held)", path.display())
            }
        }
    }
}

impl std::error::Error for Error {}
