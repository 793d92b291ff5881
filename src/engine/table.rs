//! One table being written by a sync: its columns, what its keys looked like, the
//! keys read so far, and the rows of each page encoded for the committer.
//!
//! A page's records go through three steps: [`TableWriter::classify`] decides for
//! each whether it is new, changed, unchanged or read twice in this sync (written at
//! most once); the kept rows' columns are registered, widening the file first if a
//! kept row has a value in a column the header lacks; [`TableWriter::encode`] turns
//! them into CSV bytes and moves the table's file state forward.
//!
//! A first sync keeps no memory per key: keys are checked for repeats by their order
//! (listings come sorted), and only a listing whose keys go back gets a set, rebuilt
//! from the rows written so far.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::keys::Written;
use crate::connector::{Rows, TableSpec};
use crate::engine::columns::Columns;
use crate::engine::encoding::Encoding;
use crate::engine::keys::Keys;
use crate::engine::order::follows;
use crate::error::{Error, Result};
use crate::page::parse::Batch;
use crate::store::commit::Append;
use crate::store::encode::{header_of, unguarded};
use crate::store::hashing::{self, FxBuild};
use crate::store::index::{self, Change};
use crate::store::keyfile;
use crate::store::keyset::{self, KeySet};
use crate::store::seen::{seen_path, SeenLog};
use crate::store::state::{FileState, Journal, Order, ReplaceKind, State, Target};
use crate::store::table_file::{self};

/// What one table's sync did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
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
    pub requests: u64,
    /// Records the listing served more than once (written once).
    #[serde(skip)]
    pub repeated: u64,
    /// True when an earlier, interrupted run had finished the table.
    #[serde(skip)]
    pub skipped: bool,
}

pub struct TableWriter {
    pub spec: &'static TableSpec,
    pub target: Target,
    pub path: PathBuf,
    /// The file as of the last page handed to the committer.
    pub file: FileState,
    /// What the sync knows about the keys it meets.
    pub keys: Keys,
    /// The file's columns, and the rows of the page encoded for them.
    pub(super) enc: Encoding,
    pub summary: TableSummary,
    /// Records of the last page that were new to this read (not read twice).
    pub fresh: u64,
    /// Records without a primary key, skipped.
    pub keyless: u64,
    /// Every record of every page, a record read twice (a confirmation re-read, a
    /// membership in the pass and in a member listing) twice: the bound on a listing
    /// that sends more than the account holds. The summary's `read` counts it once.
    pub received: u64,
    /// Rows encoded and not yet handed to the committer.
    pending_rows: u64,
    /// The key hash of each record of the page being classified (`None`: no key).
    page_keys: Vec<Option<u64>>,
    /// The table is done: its state is no longer this writer's to commit.
    pub finished: bool,
}

impl TableWriter {
    /// Opens table `spec` of `state` for writing to `target`; the committer must be idle.
    pub fn open(
        dir: &Path,
        spec: &'static TableSpec,
        state: &State,
        target: Target,
        journal: bool,
    ) -> Result<TableWriter> {
        let table = state.tables.get(spec.name).cloned().unwrap_or_default();
        let file = table.file_of(target).clone();
        let path = table_file::file_path(dir, spec.name, target);
        cut_to(&path, file.file_len)?;
        let mut cols = Columns::new(spec.derived);
        cols.restore(&file);
        let width = if file.is_empty() { 0 } else { file.columns.len() };
        let (bom, safe) = (state.output.bom, state.output.spreadsheet_safe);
        let mut w =
            TableWriter { path, file, enc: Encoding::new(cols, width, safe, bom), ..TableWriter::blank(spec, target) };
        // A read that began on an empty file (a first sync, a rebuild) wrote every
        // committed row itself: resumed, it goes on telling repeats by order or set,
        // where the index would take a record met again for a changed one.
        let resumed_first = !w.file.is_empty() && table.resume.is_some() && table.order.is_some();
        if resumed_first {
            let crc = index::scan(&w.path, w.file.file_len, spec.primary_key, safe, |_, _, _| {})?;
            w.check_crc(crc)?;
        }
        if w.file.is_empty() || resumed_first {
            if w.file.is_empty() {
                let entries = keyfile::Spill::new(&keyfile::keys_path(dir, spec.name));
                w.keys.written = Some(Written { entries, page: Vec::new(), fingerprints: Vec::new() });
            }
            w.keys.order = Some(table.order.clone().unwrap_or_default());
            if table.order.as_ref().is_some_and(|o| o.unordered) {
                w.rebuild_set()?;
            }
            return Ok(w);
        }
        let (mut index, crc) = match target {
            Target::Table => {
                let keys = keyfile::keys_path(dir, spec.name);
                index::load_cached(&w.path, &keys, spec.name, w.file.file_len, spec.primary_key, safe)?
            }
            Target::Refresh => index::load(&w.path, w.file.file_len, spec.primary_key, safe)?,
        };
        w.check_crc(crc)?;
        // Journal the keys read when something was committed before this read: a
        // resumed read replays them, so that a record met again is a repeat and not
        // a change, and a sync that deletes knows what it met. Decided when the read
        // starts, kept when it resumes.
        let journal_len = match table.resume {
            None => (journal && !index.is_empty()).then_some(Journal::default()),
            Some(_) => table.seen_len,
        };
        if let Some(len) = journal_len {
            let run = state.run.as_ref().map_or(0, |r| r.id);
            let (log, keys) = SeenLog::open(&seen_path(dir, spec.name), len, run)?;
            for k in keys {
                index.mark_seen(k)?;
            }
            w.keys.seen = Some(log);
            w.keys.seen_len = Some(len);
        }
        w.keys.index = Some(index);
        Ok(w)
    }

    /// A table an interrupted run had finished, read along with its stream: it
    /// touches no file.
    pub fn skipped(spec: &'static TableSpec, target: Target) -> TableWriter {
        let blank = TableWriter::blank(spec, target);
        let summary = TableSummary { skipped: true, ..blank.summary.clone() };
        TableWriter { summary, finished: true, ..blank }
    }

    /// A writer of no file, with nothing read yet.
    fn blank(spec: &'static TableSpec, target: Target) -> TableWriter {
        TableWriter {
            spec,
            target,
            path: PathBuf::new(),
            file: FileState::default(),
            keys: Keys::default(),
            enc: Encoding::new(Columns::new(spec.derived), 0, false, false),
            summary: TableSummary { table: spec.name.to_string(), ..TableSummary::default() },
            fresh: 0,
            keyless: 0,
            received: 0,
            pending_rows: 0,
            page_keys: Vec::new(),
            finished: false,
        }
    }

    /// Fails unless `crc`, read from the file, is that of its committed rows.
    fn check_crc(&self, crc: u32) -> Result<()> {
        if crc != self.file.crc {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            let detail = format!(
                "changed outside api2csv: its committed rows differ (checksum); run `api2csv repair {}` to set it aside and rebuild the table",
                dir.display()
            );
            return Err(Error::dir(&self.path, detail));
        }
        Ok(())
    }

    fn rebuild_set(&mut self) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let path = keyset::keyset_path(dir, self.spec.name);
        let mut set = match index::in_memory_for_tests() {
            Some(n) => KeySet::with_memory(&path, usize::try_from(n).unwrap_or(usize::MAX)),
            None => KeySet::new(&path),
        };
        if !self.file.is_empty() {
            let mut failed = None;
            index::scan(&self.path, self.file.file_len, self.spec.primary_key, self.enc.safe, |key, _, _| {
                if let Err(e) = set.insert(key) {
                    failed.get_or_insert(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(Error::io("write", &path, e));
            }
        }
        self.keys.set = Some(set);
        Ok(())
    }

    /// Decides which records of `rows` to write; true if the file must be widened
    /// before they can be encoded. Fails only when a key file cannot be read.
    pub fn classify(&mut self, rows: &Rows) -> Result<bool> {
        let batch = rows.batch();
        self.enc.kept.clear();
        self.fresh = 0;
        self.enc.cols.begin_page();
        let pk = key_paths(self.spec, batch);
        let mut values: Vec<&[u8]> = Vec::with_capacity(pk.len());
        let mut keys = std::mem::take(&mut self.page_keys);
        keys.clear();
        for n in 0..rows.len() {
            let i = rows.record(n);
            keys.push(key_values(batch, &pk, i, &mut values).then(|| self.key_of(&values)));
        }
        if let Some(index) = &self.keys.index {
            index.warm(keys.iter().flatten().copied());
        }
        for (n, key) in keys.iter().enumerate() {
            let i = rows.record(n);
            self.received += 1;
            let Some(key) = *key else {
                self.summary.read += 1;
                self.keyless += 1;
                continue;
            };
            self.keys.read(key, self.spec.confirm);
            let change = match self.keys.index.is_some() {
                true => {
                    let (fp, unregistered) = self.enc.fingerprint(batch, i);
                    self.keys.index.as_mut().expect("an index").observe(key, fp, unregistered)?
                }
                false => self.keys.first_sync(key)?,
            };
            match change {
                Change::New => self.summary.new += 1,
                Change::Changed => self.summary.changed += 1,
                Change::Unchanged => self.summary.unchanged += 1,
                Change::Duplicate => self.summary.repeated += 1,
            }
            // A record read again in this run is counted once.
            if change != Change::Duplicate {
                self.summary.read += 1;
                self.fresh += 1;
            }
            if matches!(change, Change::New | Change::Changed) {
                self.enc.kept.push(i);
                if let Some(w) = &mut self.keys.written {
                    w.page.push(key);
                }
            }
        }
        self.page_keys = keys;
        Ok(self.enc.register(batch))
    }

    /// After the last commit of a first sync: its key file, covering `file`.
    pub fn write_key_file(&mut self, dir: &Path, file: &FileState) {
        let Some(w) = self.keys.written.take() else { return };
        if !file.is_empty() {
            let table = (self.spec.name, self.spec.primary_key, self.enc.safe);
            index::leave_key_file(w.entries, dir, table, (file.file_len, file.crc));
        }
    }

    /// Moves a first sync's order on over the keys of `rows`. False, with the order
    /// as it was, when they do not keep it: the caller then makes every page durable
    /// and calls [`TableWriter::switch_to_set`].
    pub fn advance_order(&mut self, rows: &Rows) -> bool {
        let (Some(order), None) = (&self.keys.order, &self.keys.set) else { return true };
        let batch = rows.batch();
        let pk = key_paths(self.spec, batch);
        let mut order = order.clone();
        let mut values: Vec<&[u8]> = Vec::with_capacity(pk.len());
        for n in 0..rows.len() {
            if !key_values(batch, &pk, rows.record(n), &mut values) {
                continue;
            }
            if !follows(&mut order, &values) {
                return false;
            }
            set_last(&mut order, &values);
        }
        self.keys.order = Some(order);
        true
    }

    /// From now on a set tells repeats, starting with every key written so far.
    pub fn switch_to_set(&mut self) -> Result<()> {
        if let Some(order) = &mut self.keys.order {
            order.unordered = true;
        }
        self.rebuild_set()
    }

    /// The hash of a record's primary key values as the API sent them: keys are
    /// compared before any spreadsheet guard (the index takes it off the file's cells).
    fn key_of(&self, values: &[&[u8]]) -> u64 {
        hashing::key(values.iter().copied())
    }

    /// Rewrites the committed file with every registered column; the committer must
    /// be idle (all earlier pages durable) and `state` the state last made durable,
    /// which the replacement commits.
    pub fn widen(&mut self, dir: &Path, state: &mut State) -> Result<()> {
        let kind = match self.target {
            Target::Table => ReplaceKind::Widen,
            Target::Refresh => ReplaceKind::WidenRefresh,
        };
        let (side, _) = table_file::side_and_target(dir, self.spec.name, kind);
        let names: Vec<&str> = self.enc.cols.iter().map(|c| c.name.as_str()).collect();
        let header = header_of(names.into_iter(), self.enc.bom);
        let added = self.enc.cols.len() - self.enc.width;
        let mut file = table_file::rewrite(&self.path, self.file.file_len, &side, &header, added, |_, _| true)?;
        (file.columns, file.derived) = self.enc.cols.committed(self.enc.cols.len());
        crate::store::replace::replace(dir, state, self.spec.name, kind, file.clone())?;
        // As the file counts them: with _synced_at and _deleted.
        log::info!("{}: header widened to {} columns", self.spec.name, self.enc.cols.len() + 2);
        self.file = file;
        self.enc.width = self.enc.cols.len();
        Ok(())
    }

    /// Encodes the kept records of `rows`.
    pub fn encode(&mut self, rows: &Rows, synced_at: &str) {
        let Some(mut w) = self.keys.written.take() else {
            self.pending_rows += self.enc.encode(rows.batch(), synced_at, None);
            return;
        };
        // A first sync: each written row's key and fingerprint, for its key file. A
        // side file that cannot be written costs the key file, not the sync.
        w.fingerprints.clear();
        self.pending_rows += self.enc.encode(rows.batch(), synced_at, Some(&mut w.fingerprints));
        let pushed = w.page.iter().zip(&w.fingerprints).try_for_each(|(&k, &f)| w.entries.push(k, index::row_entry(f)));
        w.page.clear();
        match pushed {
            Ok(()) => self.keys.written = Some(w),
            Err(e) => log::debug!("{}: no key file: {e}", self.spec.name),
        }
    }

    /// Appends tombstones for `keys` (primary key values, in key column order).
    pub fn tombstones(&mut self, keys: &[Vec<Vec<u8>>], synced_at: &str) {
        let cols: Vec<usize> = self
            .spec
            .primary_key
            .iter()
            .filter_map(|k| self.file.columns.iter().position(|(n, p)| n == k && p == &[k.to_string()]))
            .collect();
        for values in keys {
            let cells: Vec<(usize, &[u8])> = cols.iter().zip(values).map(|(&c, v)| (c, v.as_slice())).collect();
            self.enc.encoder.tombstone(&cells, self.enc.width, synced_at);
        }
        self.pending_rows += keys.len() as u64;
        self.summary.deleted += keys.len() as u64;
    }

    /// Hands what was encoded to the committer: appends, and the file state to commit.
    pub fn take(&mut self, recycled: &mut impl FnMut() -> Vec<u8>, appends: &mut Vec<Append>) {
        let bytes = self.enc.encoder.take(recycled());
        if !bytes.is_empty() {
            self.file.append_committed(&bytes, self.pending_rows);
            // Columns are only ever added: the list changes when the width does.
            if self.file.columns.len() != self.enc.width {
                (self.file.columns, self.file.derived) = self.enc.cols.committed(self.enc.width);
            }
            appends.push(Append { path: self.path.clone(), bytes, hashed: true });
        }
        self.pending_rows = 0;
        if let Some(seen) = &mut self.keys.seen {
            let (append, len) = seen.take(recycled());
            self.keys.seen_len = Some(len);
            appends.push(append);
        }
    }

    /// Whether anything waits to be committed.
    pub fn has_pending(&self) -> bool {
        self.pending_rows > 0
    }

    /// Committed keys not read in this sync, with their primary key values, sorted.
    pub fn unseen(&self) -> Result<Vec<(u64, Vec<Vec<u8>>)>> {
        let Some(index) = &self.keys.index else { return Ok(Vec::new()) };
        let unseen: HashSet<u64, FxBuild> = index.unseen()?.into_iter().collect();
        if unseen.is_empty() {
            return Ok(Vec::new());
        }
        let header: Vec<&str> = self.file.names().collect();
        let key_cols: Vec<usize> =
            self.spec.primary_key.iter().filter_map(|k| header.iter().position(|h| h == k)).collect();
        let mut keys: HashMap<u64, Vec<Vec<u8>>, FxBuild> = HashMap::default();
        index::scan(&self.path, self.file.file_len, self.spec.primary_key, self.enc.safe, |key, _, record| {
            if unseen.contains(&key) {
                // The API knows the key as it sent it, not as the file guards it.
                keys.insert(key, key_cols.iter().map(|&c| unguarded(&record[c], self.enc.safe).to_vec()).collect());
            }
        })?;
        let mut sorted: Vec<(u64, Vec<Vec<u8>>)> = keys.into_iter().collect();
        sorted.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(sorted)
    }
}

/// Makes `values` the last key of `order`, reusing its strings.
fn set_last(order: &mut Order, values: &[&[u8]]) {
    order.last.resize_with(values.len(), String::new);
    for (last, v) in order.last.iter_mut().zip(values) {
        last.clear();
        match std::str::from_utf8(v) {
            Ok(s) => last.push_str(s),
            Err(_) => last.push_str(&String::from_utf8_lossy(v)),
        }
    }
}

/// Cuts `path` back to its committed length (a page written by a run that died
/// before committing it).
fn cut_to(path: &Path, len: u64) -> Result<()> {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => {
            let actual = f.metadata().map_err(|e| Error::io("stat", path, e))?.len();
            if actual > len {
                f.set_len(len).map_err(|e| Error::io("truncate", path, e))?;
                f.sync_all().map_err(|e| Error::io("sync", path, e))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && len == 0 => Ok(()),
        Err(e) => Err(Error::io("open", path, e)),
    }
}
/// The path ids of `spec`'s primary key in `batch` (`None`: the batch has no such key).
fn key_paths(spec: &TableSpec, batch: &Batch) -> Vec<Option<u32>> {
    spec.primary_key.iter().map(|k| batch.path_id(&[k])).collect()
}

/// The primary key values of record `i` into `values`; false when one is missing
/// or empty (a record without a key is not written).
fn key_values<'b>(batch: &'b Batch, pk: &[Option<u32>], i: usize, values: &mut Vec<&'b [u8]>) -> bool {
    values.clear();
    values.extend(pk.iter().map(|p| p.and_then(|p| batch.value_at(i, p)).unwrap_or(b"")));
    !values.iter().any(|v| v.is_empty())
}
