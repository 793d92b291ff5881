//! The sync engine: for each table, pages from the connector go through the flattener
//! into the table's CSV file, and every page is committed before the next is read.
//!
//! A commit is: CSV flushed and fsynced, then `state.json` rewritten atomically with
//! the new length, columns and resume position. A rerun after a crash continues the
//! interrupted run: finished tables are not read again, the table in progress resumes
//! at its committed page, and bytes written after the last commit are cut off.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::connector::{Connector, Start, TableSpec};
use crate::error::{Error, Result};
use crate::flatten::{rfc3339, Columns, Page};
use crate::http::Client;
use crate::sink::{table_path, TableFile};
use crate::state::{DirLock, Run, State};

/// Empty pages (a leaf of a tree, a status with no members) only move the resume
/// position; committing it at most this often keeps fsyncs for rows that exist.
const EMPTY_PAGE_COMMIT_INTERVAL: Duration = Duration::from_secs(2);

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
    pub rows_written: u64,
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
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
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
    let (_lock, mut state) = open_dir(&opts.dir, connector.name())?;
    let run = match state.run.clone() {
        Some(run) => {
            log::info!(
                "continuing the sync started at {} ({} of {} tables done)",
                run.started_at,
                run.done.len(),
                run.tables.len()
            );
            run
        }
        None => {
            let run = Run {
                started_at: rfc3339(time::OffsetDateTime::now_utc()),
                tables: selected,
                done: Vec::new(),
                full_refresh: opts.full_refresh,
            };
            for t in &run.tables {
                state.table(t).resume = Value::Null;
            }
            state.run = Some(run.clone());
            state.save(&opts.dir)?;
            run
        }
    };
    let mut summary = Summary::default();
    for name in &run.tables {
        let spec = connector.tables().iter().find(|t| t.name == name).expect("selected table exists");
        if run.done.contains(name) {
            summary.tables.push(TableSummary { table: name.clone(), skipped: true, ..Default::default() });
            continue;
        }
        let mut table = TableSync::open(connector, spec, &opts.dir, &state)?;
        let result = table.run(connector, client, &mut state, &opts.dir);
        summary.tables.push(table.summary.clone());
        result?;
        let ts = state.table(name);
        ts.resume = Value::Null;
        ts.last_complete_sync = Some(run.started_at.clone());
        state.run.as_mut().expect("run in progress").done.push(name.clone());
        state.save(&opts.dir)?;
    }
    state.run = None;
    state.save(&opts.dir)?;
    summary.requests = client.requests();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// One table being synced: its columns, its file and the reusable page buffer.
struct TableSync {
    spec: &'static TableSpec,
    cols: Columns,
    file: TableFile,
    page: Page,
    summary: TableSummary,
}

impl TableSync {
    fn open(connector: &dyn Connector, spec: &'static TableSpec, dir: &Path, state: &State) -> Result<TableSync> {
        let committed = state.tables.get(spec.name).cloned().unwrap_or_default();
        let mut cols = Columns::new(spec.timestamps, Some(connector.time_format()));
        cols.restore(&committed.columns);
        let file = TableFile::open(&table_path(dir, spec.name), &committed)?;
        let summary = TableSummary { table: spec.name.to_string(), ..Default::default() };
        Ok(TableSync { spec, cols, file, page: Page::default(), summary })
    }

    fn run(&mut self, connector: &dyn Connector, client: &Client, state: &mut State, dir: &Path) -> Result<()> {
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
            if !self.page.is_empty() {
                self.write_page(state, dir, &synced_at)?;
            }
            if !self.page.is_empty() || last_commit.elapsed() >= EMPTY_PAGE_COMMIT_INTERVAL {
                let ts = state.table(self.spec.name);
                ts.resume = reader.position();
                ts.columns = self.committed_columns();
                state.save(dir)?;
                last_commit = Instant::now();
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Writes the page and makes it durable; the caller then commits the state.
    fn write_page(&mut self, state: &mut State, dir: &Path, synced_at: &str) -> Result<()> {
        if self.file.needs_widening(&self.cols) {
            let len = self.file.widen(&self.cols)?;
            let ts = state.table(self.spec.name);
            ts.file_len = len;
            ts.columns = self.committed_columns();
            ts.swap_pending = true;
            state.save(dir)?;
            self.file.swap(&self.cols, len)?;
            log::info!("{}: header widened to {} columns", self.spec.name, self.cols.len());
        }
        self.file.write_page(&self.page, &self.cols, synced_at)?;
        let len = self.file.commit()?;
        let ts = state.table(self.spec.name);
        ts.file_len = len;
        ts.rows += self.page.len() as u64;
        ts.swap_pending = false;
        self.summary.rows_written += self.page.len() as u64;
        Ok(())
    }

    /// The columns of the file's header: columns seen in a body that was then
    /// rejected are not in the file, so they are not committed either.
    fn committed_columns(&self) -> Vec<(String, Vec<String>)> {
        let n = self.file.header_cols();
        self.cols.iter().take(n).map(|c| (c.name.clone(), c.path.clone())).collect()
    }
}
