//! `state.json`, the commit record of an output directory, and the directory lock.
//!
//! The state says, per table, how many bytes of the CSV are committed, which columns
//! it has and where reading resumes. It is rewritten after every page: temp file in
//! the same directory, fsync, rename over the old one, fsync the directory. Anything
//! in a CSV past its committed length was written by a sync that died before
//! committing, and is cut off on the next start.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

pub const FILE_NAME: &str = "state.json";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    pub connector: String,
    /// Present while a sync is under way or was interrupted; a rerun continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    #[serde(default)]
    pub tables: BTreeMap<String, TableState>,
}

/// A sync that has started and not yet finished every table it was asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub started_at: String,
    /// The tables this run reads, in order.
    pub tables: Vec<String>,
    /// Tables of this run that are complete.
    pub done: Vec<String>,
    #[serde(default)]
    pub full_refresh: bool,
    /// Whether keys not seen get tombstones: only a run over every table that
    /// is not a full refresh can tell a deleted record from one not read.
    #[serde(default)]
    pub deletes: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TableState {
    /// Bytes of `<table>.csv` that are committed.
    pub file_len: u64,
    /// Data rows in those bytes (tombstones included).
    pub rows: u64,
    /// Data columns in header order: CSV name and key path.
    pub columns: Vec<(String, Vec<String>)>,
    /// Where reading resumes, in the connector's terms; null: at the start.
    #[serde(default)]
    pub resume: Value,
    /// A rewritten `<table>.csv.new` is committed but may not have been renamed yet.
    #[serde(default)]
    pub swap_pending: bool,
    /// Committed length of the journal of keys read (`.<table>.seen`); absent when
    /// this sync cannot delete anything (nothing was committed before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_len: Option<u64>,
    /// Records created before this Unix time are not synced (`initial_sync_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_since: Option<i64>,
    /// A `--full-refresh` rebuild in progress: the state of `<table>.csv.refresh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Box<TableState>>,
    /// The finished rebuild is committed but may not have been renamed over the table yet.
    #[serde(default)]
    pub refresh_swap_pending: bool,
    /// When the last complete read of this table started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_complete_sync: Option<String>,
}

impl State {
    pub fn new(connector: &str) -> State {
        State { version: VERSION, connector: connector.to_string(), run: None, tables: BTreeMap::new() }
    }

    /// Reads `dir/state.json`; `None` if there is none. Unreadable is an error, never a restart.
    pub fn load(dir: &Path) -> Result<Option<State>> {
        let path = dir.join(FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let state: State =
            serde_json::from_slice(&bytes).map_err(|e| Error::State { path: path.clone(), detail: e.to_string() })?;
        if state.version != VERSION {
            let detail = format!("version {} is not supported (expected {VERSION})", state.version);
            return Err(Error::State { path, detail });
        }
        Ok(Some(state))
    }

    /// Replaces `dir/state.json` atomically and durably.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec(self).expect("state serializes");
        bytes.push(b'\n');
        write_atomic(&dir.join(FILE_NAME), &bytes)
    }

    pub fn table(&mut self, name: &str) -> &mut TableState {
        self.tables.entry(name.to_string()).or_default()
    }
}

/// Writes `bytes` to `path` through a temp file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
    drop(f);
    rename_durably(&tmp, path)
}

/// Renames within one directory, then fsyncs the directory so the rename survives power loss.
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io("rename", from, e))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("sync directory", dir, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// An exclusive lock on an output directory, held until dropped. The kernel releases
/// it when the process dies, so a lock left by `kill -9` never blocks the next run.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(".api2csv.lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Locked { path }),
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        // The pid is for people looking at the directory; the lock itself is the flock.
        let _ = file.set_len(0).and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("api2csv-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let dir = tempdir("rt");
        assert_eq!(State::load(&dir).unwrap(), None);
        let mut s = State::new("mailerlite");
        s.table("subscriber").file_len = 42;
        s.save(&dir).unwrap();
        assert_eq!(State::load(&dir).unwrap(), Some(s));
        fs::write(dir.join(FILE_NAME), b"{\"version\": 1, \"conn").unwrap();
        let err = State::load(&dir).unwrap_err();
        assert_eq!(err.exit_status(), 2);
        assert!(err.to_string().starts_with("cannot use state file"), "{err}");
    }

    #[test]
    fn second_lock_is_refused_until_released() {
        let dir = tempdir("lock");
        let first = DirLock::acquire(&dir).unwrap();
        assert!(matches!(DirLock::acquire(&dir), Err(Error::Locked { .. })));
        drop(first);
        DirLock::acquire(&dir).unwrap();
    }
}
