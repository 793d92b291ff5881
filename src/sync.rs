//! The sync engine: for each table, pages from the connector go through the flattener
//! and the change index into the table's CSV file, and every page is committed before
//! the next is read.
//!
//! A commit is: CSV (and journal of keys read) flushed and fsynced, then `state.json`
//! rewritten atomically with the new lengths, columns and resume position. A rerun
//! after a crash continues the interrupted run: finished tables are not read again,
//! the table in progress resumes at its committed page, bytes written after the last
//! commit are cut off, and the journal tells which keys the run already saw.
//!
//! Only new and changed records are appended. After a complete read, in a run over
//! every table, committed keys that were not seen get a tombstone row.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::connector::{Connector, Start, TableSpec};
use crate::error::{Error, Result};
use crate::flatten::{rfc3339, Columns, Page};
use crate::http::Client;
use crate::index::{self, Change, KeyIndex};
use crate::seen::{seen_path, SeenLog};
use crate::sink::{finish_refresh_swap, refresh_path, table_path, TableFile};
use crate::state::{DirLock, Run, State, TableState};

/// A page that appends nothing (an empty listing, or records that did not change)
/// only moves the resume position and the journal of keys read. Losing that to a
/// crash costs a re-read, never a row, so such pages are committed at most this
/// often: an incremental sync with nothing new is not held up by fsyncs.
const IDLE_COMMIT_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    /// Only these tables; all when `None`.
    pub tables: Option<Vec<String>>,
    pub full_refresh: bool,
}

/// What one table's sync did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableSummary {
    pub table: String,
    pub pages: u64,
    /// Records read from the API.
    pub read: u64,
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Tombstones written.
    pub deleted: u64,
    /// True when the table was finished by an earlier, interrupted run.
    pub skipped: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub tables: Vec<TableSummary>,
    pub requests: u64,
    pub elapsed: Duration,
}

/// Checks `--tables` against the connector's tables.
pub fn select_tables(connector: &dyn Connector, wanted: Option<&[String]>) -> Result<Vec<String>> {
    let all: Vec<String> = connector.tables().iter().map(|t| t.name.to_string()).collect();
    let Some(wanted) = wanted else { return Ok(all) };
    for w in wanted {
        if !all.contains(w) {
            let msg = format!("--tables: {} has no table {w:?} (it has {})", connector.name(), all.join(", "));
            return Err(Error::Usage(msg));
        }
    }
    Ok(all.into_iter().filter(|t| wanted.contains(t)).collect())
}

/// Opens the output directory for writing: creates it, takes the lock, loads the state.
pub fn open_dir(dir: &Path, connector: &str) -> Result<(DirLock, State)> {
    // Found before anything is written, so a usage error (2), not a failed sync (1).
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Usage(format!("--out {}: cannot create the directory: {e}", dir.display())))?;
    let lock = DirLock::acquire(dir)?;
    let state = match State::load(dir)? {
        Some(s) if s.connector != connector => {
            return Err(Error::State {
                path: dir.join(crate::state::FILE_NAME),
                detail: format!("it belongs to connector {}, not {connector}", s.connector),
            })
        }
        Some(s) => s,
        None => State::new(connector),
    };
    Ok((lock, state))
}

pub fn run(connector: &dyn Connector, client: &Client, opts: &Options) -> Result<Summary> {
    let started = Instant::now();
    let selected = select_tables(connector, opts.tables.as_deref())?;
    // Prove the credentials before touching the directory: a wrong key is one
    // request and exit status 2, with nothing written.
    connector.check(client)?;
    let (_lock, mut state) = open_dir(&opts.dir, connector.name())?;
    let run = begin_run(connector, &mut state, selected, opts.full_refresh);
    state.run = Some(run.clone());
    state.save(&opts.dir)?;
    // Deleting needs a complete picture: a run limited with --tables deletes nothing,
    // even when a later command adds the other tables to it.
    let may_delete = run.deletes;
    let mut summary = Summary::default();
    for name in &run.tables {
        let spec = connector.tables().iter().find(|t| t.name == name).expect("selected table exists");
        if run.done.contains(name) {
            summary.tables.push(TableSummary { table: name.clone(), skipped: true, ..Default::default() });
            continue;
        }
        let mut table = TableSync::open(connector, spec, &opts.dir, &mut state, run.full_refresh, may_delete)?;
        let result = table
            .run(connector, client, &mut state)
            .and_then(|()| table.finish(connector, client, &mut state, &run.started_at));
        summary.tables.push(table.summary.clone());
        result?;
    }
    state.run = None;
    state.save(&opts.dir)?;
    summary.requests = client.requests();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The run to carry out: a new one over `selected`, or the interrupted one, which
/// is finished first, with any table of `selected` it lacked added to it.
fn begin_run(connector: &dyn Connector, state: &mut State, selected: Vec<String>, full_refresh: bool) -> Run {
    match state.run.take() {
        Some(mut run) => {
            let missing: Vec<&String> = selected.iter().filter(|t| !run.tables.contains(t)).collect();
            if !missing.is_empty() || run.full_refresh != full_refresh {
                log::warn!(
                    "finishing the interrupted sync started at {} ({}) together with this one",
                    run.started_at,
                    run.tables.join(",")
                );
            }
            for t in &selected {
                if !run.tables.contains(t) {
                    run.tables.push(t.clone());
                    state.table(t).resume = Value::Null;
                }
            }
            let order = |t: &String| connector.tables().iter().position(|s| s.name == t);
            run.tables.sort_by_key(order);
            run
        }
        None => {
            let run = Run {
                started_at: rfc3339(time::OffsetDateTime::now_utc()),
                deletes: !full_refresh && selected.len() == connector.tables().len(),
                tables: selected,
                done: Vec::new(),
                full_refresh,
            };
            for t in &run.tables {
                state.table(t).resume = Value::Null;
            }
            run
        }
    }
}

/// One table being synced: its columns, file, change index and page buffer.
struct TableSync {
    spec: &'static TableSpec,
    dir: PathBuf,
    /// Writing `<table>.csv.refresh` for `--full-refresh`, swapped in at the end.
    refreshing: bool,
    cols: Columns,
    file: TableFile,
    /// What each committed key looks like; `None` while the table file is empty
    /// (every record is new), so a first sync holds no per-key memory at all.
    index: Option<KeyIndex>,
    seen: Option<SeenLog>,
    page: Page,
    /// Rows of the page to append.
    keep: Vec<u32>,
    /// Per column, the hash of its name (fingerprints hash names, not positions).
    name_hashes: Vec<u64>,
    summary: TableSummary,
}

impl TableSync {
    fn open(
        connector: &dyn Connector,
        spec: &'static TableSpec,
        dir: &Path,
        state: &mut State,
        full_refresh: bool,
        may_delete: bool,
    ) -> Result<TableSync> {
        let ts = state.table(spec.name);
        let fresh = ts.resume.is_null();
        finish_refresh_swap(dir, spec.name, ts)?;
        if full_refresh && fresh {
            ts.refresh = Some(Box::default());
        }
        let refreshing = full_refresh && ts.refresh.is_some();
        let (path, committed) = match &ts.refresh {
            Some(r) if refreshing => (refresh_path(dir, spec.name), (**r).clone()),
            _ => (table_path(dir, spec.name), ts.clone()),
        };
        let mut cols = Columns::new(spec.timestamps, Some(connector.time_format()));
        cols.restore(&committed.columns);
        let file = TableFile::open(&path, &committed)?;
        let mut index = match committed.file_len {
            0 => None,
            len => Some(index::load(&path, len, spec.primary_key)?),
        };
        // Journal the keys read only when something committed could be deleted.
        let ts = state.table(spec.name);
        if fresh {
            ts.seen_len = (may_delete && !refreshing && index.as_ref().is_some_and(|i| !i.is_empty())).then_some(0);
        }
        let seen = match ts.seen_len {
            Some(len) => {
                let log = SeenLog::open(&seen_path(dir, spec.name), len)?;
                if let Some(index) = &mut index {
                    log.replay(|k| index.mark_seen(k))?;
                }
                Some(log)
            }
            None => None,
        };
        let summary = TableSummary { table: spec.name.to_string(), ..Default::default() };
        Ok(TableSync {
            spec,
            dir: dir.to_path_buf(),
            refreshing,
            cols,
            file,
            index,
            seen,
            page: Page::default(),
            keep: Vec::new(),
            name_hashes: Vec::new(),
            summary,
        })
    }

    /// The committed state of the file being written.
    fn committed<'s>(&self, state: &'s mut State) -> &'s mut TableState {
        let ts = state.table(self.spec.name);
        if self.refreshing {
            ts.refresh.get_or_insert_with(Box::default)
        } else {
            ts
        }
    }

    fn run(&mut self, connector: &dyn Connector, client: &Client, state: &mut State) -> Result<()> {
        let ts = state.table(self.spec.name);
        if ts.last_complete_sync.is_none() && ts.file_len == 0 && ts.created_since.is_none() {
            ts.created_since = connector.created_since(self.spec.name);
        }
        let resume = ts.resume.clone();
        let start = Start { resume: &resume, created_since: ts.created_since };
        let mut reader = connector.open(client, self.spec.name, &start)?;
        let mut last_commit = Instant::now();
        loop {
            self.page.clear();
            let synced_at = rfc3339(time::OffsetDateTime::now_utc());
            let more = reader.next_page(&mut self.page, &mut self.cols)?;
            self.summary.pages += 1;
            self.classify();
            if !self.keep.is_empty() {
                self.write_page(state, &synced_at)?;
            }
            if !self.keep.is_empty() || last_commit.elapsed() >= IDLE_COMMIT_INTERVAL {
                if let Some(seen) = &mut self.seen {
                    state.table(self.spec.name).seen_len = Some(seen.commit()?);
                }
                state.table(self.spec.name).resume = reader.position();
                let columns = self.committed_columns();
                self.committed(state).columns = columns;
                state.save(&self.dir)?;
                last_commit = Instant::now();
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Decides which rows of the page are new or changed, and journals every key.
    fn classify(&mut self) {
        self.keep.clear();
        self.summary.read += self.page.len() as u64;
        let Some(index) = &mut self.index else {
            self.summary.new += self.page.len() as u64;
            self.keep.extend(0..self.page.len() as u32);
            return;
        };
        while self.name_hashes.len() < self.cols.len() {
            let name = &self.cols.get(self.name_hashes.len()).name;
            self.name_hashes.push(index::hash(0, name.as_bytes()));
        }
        let pk: Vec<Option<usize>> = self.spec.primary_key.iter().map(|k| self.cols.position_of(&[k])).collect();
        for i in 0..self.page.len() {
            let row = self.page.row(i);
            let value = |col: Option<usize>| {
                col.and_then(|c| row.iter().rfind(|cell| cell.col as usize == c))
                    .map_or(&b""[..], |c| self.page.value(c))
            };
            let key = index::key_hash(pk.iter().map(|&c| value(c)));
            let fingerprint =
                index::fingerprint(row.iter().map(|c| (self.name_hashes[c.col as usize], self.page.value(c))));
            if let Some(seen) = &mut self.seen {
                seen.push(key);
            }
            match index.observe(key, fingerprint) {
                Change::New => self.summary.new += 1,
                Change::Changed => self.summary.changed += 1,
                Change::Unchanged => {
                    self.summary.unchanged += 1;
                    continue;
                }
            }
            self.keep.push(i as u32);
        }
    }

    /// Writes the kept rows and makes them durable; the caller then commits the state.
    fn write_page(&mut self, state: &mut State, synced_at: &str) -> Result<()> {
        if self.file.needs_widening(&self.page, &self.keep) {
            let len = self.file.widen(&self.cols)?;
            let columns: Vec<_> = self.cols.iter().map(|c| (c.name.clone(), c.path.clone())).collect();
            let ts = self.committed(state);
            ts.file_len = len;
            ts.columns = columns;
            ts.swap_pending = true;
            state.save(&self.dir)?;
            self.file.swap(&self.cols, len)?;
            log::info!("{}: header widened to {} columns", self.spec.name, self.cols.len());
        }
        self.file.write_page(&self.page, &self.keep, &self.cols, synced_at)?;
        let len = self.file.commit()?;
        let ts = self.committed(state);
        ts.file_len = len;
        ts.rows += self.keep.len() as u64;
        ts.swap_pending = false;
        Ok(())
    }

    /// The columns of the file's header: columns seen only in rows that were not
    /// written are not in the file, so they are not committed either.
    fn committed_columns(&self) -> Vec<(String, Vec<String>)> {
        let n = self.file.header_cols();
        self.cols.iter().take(n).map(|c| (c.name.clone(), c.path.clone())).collect()
    }

    /// After the last page: tombstones for keys not seen, the refreshed file swapped
    /// in, and the table marked done in the run.
    fn finish(
        &mut self,
        connector: &dyn Connector,
        client: &Client,
        state: &mut State,
        run_started: &str,
    ) -> Result<()> {
        if self.seen.is_some() {
            self.write_tombstones(connector, client, state)?;
        }
        let ts = state.table(self.spec.name);
        ts.resume = Value::Null;
        ts.seen_len = None;
        ts.last_complete_sync = Some(run_started.to_string());
        if self.refreshing {
            let refreshed = *ts.refresh.take().expect("refresh in progress");
            ts.file_len = refreshed.file_len;
            ts.rows = refreshed.rows;
            ts.columns = refreshed.columns;
            ts.swap_pending = false;
            ts.refresh_swap_pending = true;
        }
        state.run.as_mut().expect("run in progress").done.push(self.spec.name.to_string());
        state.save(&self.dir)?;
        finish_refresh_swap(&self.dir, self.spec.name, state.table(self.spec.name))?;
        let _ = std::fs::remove_file(seen_path(&self.dir, self.spec.name));
        Ok(())
    }

    fn write_tombstones(&mut self, connector: &dyn Connector, client: &Client, state: &mut State) -> Result<()> {
        let Some(index) = &self.index else { return Ok(()) };
        let unseen: HashSet<u64> = index.unseen().into_iter().collect();
        if unseen.is_empty() {
            return Ok(());
        }
        // The index holds hashes; the key values come from the rows on file.
        let ts = state.table(self.spec.name);
        let path = table_path(&self.dir, self.spec.name);
        let header: Vec<String> = ts.columns.iter().map(|(n, _)| n.clone()).collect();
        let key_cols: Vec<usize> =
            self.spec.primary_key.iter().filter_map(|k| header.iter().position(|h| h == k)).collect();
        let mut keys: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        index::scan(&path, ts.file_len, self.spec.primary_key, |key, _, record| {
            if unseen.contains(&key) {
                keys.insert(key, key_cols.iter().map(|&c| record[c].to_vec()).collect());
            }
        })?;
        let synced_at = rfc3339(time::OffsetDateTime::now_utc());
        let mut sorted: Vec<_> = keys.into_values().collect();
        sorted.sort();
        let mut gone = Vec::with_capacity(sorted.len());
        for key in sorted {
            if connector.still_exists(client, self.spec.name, &key)? {
                let shown: Vec<_> = key.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
                log::warn!(
                    "{}: {} was not in the listing but still exists; not deleted",
                    self.spec.name,
                    shown.join(",")
                );
            } else {
                gone.push(key);
            }
        }
        let sorted = gone;
        for values in &sorted {
            let cells: Vec<(usize, &[u8])> = key_cols.iter().zip(values).map(|(&c, v)| (c, v.as_slice())).collect();
            self.file.write_tombstone(&cells, &synced_at)?;
        }
        let len = self.file.commit()?;
        let ts = state.table(self.spec.name);
        ts.file_len = len;
        ts.rows += sorted.len() as u64;
        self.summary.deleted = sorted.len() as u64;
        Ok(())
    }
}
