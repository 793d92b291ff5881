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

use crate::commit::Append;
use crate::connector::{Confirm, Rows, TableSpec};
use crate::error::{Error, Result};
use crate::flatten::{cell_hash, Columns, NONE};
use crate::hashing::{self, FxBuild};
use crate::index::{self, Change, KeyIndex};
use crate::order::follows;
use crate::parse::{Batch, Cell};
use crate::seen::{seen_path, SeenLog};
use crate::sink::{self, header_of, unguarded, written, Encoder};
use crate::state::{FileState, Journal, Order, ReplaceKind, State, Target};

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

/// A kept record of the page being written: its index in the batch.
struct Kept {
    record: usize,
}

pub struct TableWriter {
    pub spec: &'static TableSpec,
    pub target: Target,
    pub path: PathBuf,
    cols: Columns,
    /// Data columns in the file's header; 0 while the file is empty.
    width: usize,
    /// The file as of the last page handed to the committer.
    pub file: FileState,
    index: Option<KeyIndex>,
    order: Option<Order>,
    /// First sync with keys out of order: every key written in this read.
    set: Option<HashSet<u64, FxBuild>>,
    seen: Option<SeenLog>,
    pub seen_len: Option<Journal>,
    encoder: Encoder,
    kept: Vec<Kept>,
    /// The cells of the record being looked at, and their columns.
    cells: Vec<Cell>,
    cols_buf: Vec<u32>,
    scratch: Vec<u8>,
    safe: bool,
    bom: bool,
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
    /// The table is done: its state is no longer this writer's to commit.
    pub finished: bool,
    /// Keys read in passes of the listing, for a table whose deletions are confirmed
    /// (by a re-read or the show route).
    passes: Passes,
}

/// The keys a table read in the current pass of its listing, and those read only in
/// passes a restart abandoned: a record deleted during the read (the reason a
/// listing shrinks and restarts) was read there and never again.
#[derive(Debug, Default)]
struct Passes {
    current: Vec<u64>,
    abandoned: HashSet<u64, FxBuild>,
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
        let path = sink::file_path(dir, spec.name, target);
        cut_to(&path, file.file_len)?;
        let mut cols = Columns::new(spec.derived);
        cols.restore(&file);
        let width = if file.is_empty() { 0 } else { file.columns.len() };
        let (bom, safe) = (state.output.bom, state.output.spreadsheet_safe);
        let mut w = TableWriter {
            path,
            cols,
            width,
            file,
            encoder: Encoder::new(safe),
            safe,
            bom,
            ..TableWriter::blank(spec, target)
        };
        // A read that began on an empty file (a first sync, a rebuild) wrote every
        // committed row itself: resumed, it goes on telling repeats by order or set,
        // where the index would take a record met again for a changed one.
        let resumed_first = !w.file.is_empty() && table.resume.is_some() && table.order.is_some();
        if resumed_first {
            let crc = index::scan(&w.path, w.file.file_len, spec.primary_key, safe, |_, _, _| {})?;
            w.check_crc(crc)?;
        }
        if w.file.is_empty() || resumed_first {
            w.order = Some(table.order.clone().unwrap_or_default());
            if table.order.as_ref().is_some_and(|o| o.unordered) {
                w.rebuild_set()?;
            }
            return Ok(w);
        }
        let (mut index, crc) = index::load(&w.path, w.file.file_len, spec.primary_key, safe)?;
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
                index.mark_seen(k);
            }
            w.seen = Some(log);
            w.seen_len = Some(len);
        }
        w.index = Some(index);
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
            cols: Columns::new(spec.derived),
            width: 0,
            file: FileState::default(),
            index: None,
            order: None,
            set: None,
            seen: None,
            seen_len: None,
            encoder: Encoder::new(false),
            kept: Vec::new(),
            cells: Vec::new(),
            cols_buf: Vec::new(),
            scratch: Vec::new(),
            safe: false,
            bom: false,
            summary: TableSummary { table: spec.name.to_string(), ..TableSummary::default() },
            fresh: 0,
            keyless: 0,
            received: 0,
            pending_rows: 0,
            finished: false,
            passes: Passes::default(),
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
        let mut set = HashSet::default();
        if !self.file.is_empty() {
            index::scan(&self.path, self.file.file_len, self.spec.primary_key, self.safe, |key, _, _| {
                set.insert(key);
            })?;
        }
        self.set = Some(set);
        Ok(())
    }

    pub fn order(&self) -> Option<Order> {
        self.order.clone()
    }

    /// Decides which records of `rows` to write; true if the file must be widened
    /// before they can be encoded.
    pub fn classify(&mut self, rows: &Rows) -> bool {
        let batch = rows.batch();
        self.kept.clear();
        self.fresh = 0;
        self.cols.begin_page();
        let pk: Vec<Option<u32>> = self.spec.primary_key.iter().map(|k| batch.path_id(&[k])).collect();
        let mut values: Vec<&[u8]> = Vec::with_capacity(pk.len());
        for n in 0..rows.len() {
            let i = rows.record(n);
            self.received += 1;
            values.clear();
            values.extend(pk.iter().map(|p| p.and_then(|p| batch.value_at(i, p)).unwrap_or(b"")));
            if values.iter().any(|v| v.is_empty()) {
                self.summary.read += 1;
                self.keyless += 1;
                continue;
            }
            let key = self.key_of(&values);
            if let Some(seen) = &mut self.seen {
                seen.push(key);
            }
            // Not for a table whose unseen keys are gone without a check: a key
            // wrongly taken for unread costs a check, never a false tombstone.
            if self.spec.confirm != Confirm::Unseen && self.index.is_some() {
                self.passes.current.push(key);
                if !self.passes.abandoned.is_empty() {
                    self.passes.abandoned.remove(&key);
                }
            }
            let change = match self.index.is_some() {
                true => {
                    let (fp, unregistered) = self.fingerprint(batch, i);
                    self.index.as_mut().expect("an index").observe(key, fp, unregistered)
                }
                false => self.first_sync(key),
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
                self.kept.push(Kept { record: i });
            }
        }
        self.register(batch)
    }

    /// Moves a first sync's order on over the keys of `rows`. False, with the order
    /// as it was, when they do not keep it: the caller then makes every page durable
    /// and calls [`TableWriter::switch_to_set`].
    pub fn advance_order(&mut self, rows: &Rows) -> bool {
        let (Some(order), None) = (&self.order, &self.set) else { return true };
        let batch = rows.batch();
        let pk: Vec<Option<u32>> = self.spec.primary_key.iter().map(|k| batch.path_id(&[k])).collect();
        let mut order = order.clone();
        let mut values: Vec<&[u8]> = Vec::with_capacity(pk.len());
        for n in 0..rows.len() {
            let i = rows.record(n);
            values.clear();
            values.extend(pk.iter().map(|p| p.and_then(|p| batch.value_at(i, p)).unwrap_or(b"")));
            if values.iter().any(|v| v.is_empty()) {
                continue;
            }
            if !follows(&mut order, &values) {
                return false;
            }
            set_last(&mut order, &values);
        }
        self.order = Some(order);
        true
    }

    /// From now on a set tells repeats, starting with every key written so far.
    pub fn switch_to_set(&mut self) -> Result<()> {
        if let Some(order) = &mut self.order {
            order.unordered = true;
        }
        self.rebuild_set()
    }

    /// The hash of a record's primary key values as the API sent them: keys are
    /// compared before any spreadsheet guard (the index takes it off the file's cells).
    fn key_of(&self, values: &[&[u8]]) -> u64 {
        hashing::key(values.iter().copied())
    }

    /// A first sync: new unless the key was written in this read already. Without a
    /// set, [`TableWriter::advance_order`] found every key of the page moving on.
    fn first_sync(&mut self, key: u64) -> Change {
        match self.set.as_mut().map(|set| set.insert(key)) {
            Some(false) => Change::Duplicate,
            _ => Change::New,
        }
    }

    /// The record's fingerprint over its non-empty cells as they would be written,
    /// and whether it has a non-empty value in a column not registered yet.
    fn fingerprint(&mut self, batch: &Batch, i: usize) -> (u64, bool) {
        let mut fp = 0u64;
        let mut unregistered = false;
        for cell in batch.record(i) {
            let v = batch.value(cell);
            if v.is_empty() {
                continue;
            }
            let col = self.cols.column_of(batch, cell.path);
            if col == NONE {
                unregistered = true;
                continue;
            }
            let v = written(v, self.safe, &mut self.scratch);
            fp = fp.wrapping_add(cell_hash(self.cols.get(col as usize).name_hash, v));
        }
        (fp, unregistered)
    }

    /// Registers the columns of the kept records; true if the header must widen.
    fn register(&mut self, batch: &Batch) -> bool {
        let mut widen = false;
        for k in &self.kept {
            for cell in batch.record(k.record) {
                let col = self.cols.register(batch, cell.path) as usize;
                widen |= self.width > 0 && col >= self.width && !batch.value(cell).is_empty();
            }
        }
        widen
    }

    /// Rewrites the committed file with every registered column; the committer must
    /// be idle (all earlier pages durable) and `state` the state last made durable,
    /// which the replacement commits.
    pub fn widen(&mut self, dir: &Path, state: &mut State) -> Result<()> {
        let kind = match self.target {
            Target::Table => ReplaceKind::Widen,
            Target::Refresh => ReplaceKind::WidenRefresh,
        };
        let (side, _) = sink::side_and_target(dir, self.spec.name, kind);
        let names: Vec<&str> = self.cols.iter().map(|c| c.name.as_str()).collect();
        let header = header_of(names.into_iter(), self.bom);
        let added = self.cols.len() - self.width;
        let mut file = sink::rewrite(&self.path, self.file.file_len, &side, &header, added, |_, _| true)?;
        (file.columns, file.derived) = self.cols.committed(self.cols.len());
        crate::replace::replace(dir, state, self.spec.name, kind, file.clone())?;
        // As the file counts them: with _synced_at and _deleted.
        log::info!("{}: header widened to {} columns", self.spec.name, self.cols.len() + 2);
        self.file = file;
        self.width = self.cols.len();
        Ok(())
    }

    /// Encodes the kept records of `rows`.
    pub fn encode(&mut self, rows: &Rows, synced_at: &str) {
        let batch = rows.batch();
        if self.kept.is_empty() {
            return;
        }
        if self.width == 0 {
            let names: Vec<&str> = self.cols.iter().map(|c| c.name.as_str()).collect();
            self.encoder.raw(&header_of(names.into_iter(), self.bom));
            self.width = self.cols.len();
        }
        for k in 0..self.kept.len() {
            let i = self.kept[k].record;
            self.cells.clear();
            self.cells.extend(batch.record(i).copied());
            self.cols_buf.clear();
            for c in &self.cells {
                self.cols_buf.push(self.cols.column_of(batch, c.path));
            }
            self.encoder.row(batch, &self.cells, &self.cols_buf, self.width, synced_at);
        }
        self.pending_rows += self.kept.len() as u64;
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
            self.encoder.tombstone(&cells, self.width, synced_at);
        }
        self.pending_rows += keys.len() as u64;
        self.summary.deleted += keys.len() as u64;
    }

    /// Marks `key` as read (confirmed to exist), for the journal.
    pub fn confirm_seen(&mut self, key: u64) {
        if let Some(seen) = &mut self.seen {
            seen.push(key);
        }
        if let Some(index) = &mut self.index {
            index.mark_seen(key);
        }
    }

    /// Hands what was encoded to the committer: appends, and the file state to commit.
    pub fn take(&mut self, recycled: &mut impl FnMut() -> Vec<u8>, appends: &mut Vec<Append>) {
        let bytes = self.encoder.take(recycled());
        if !bytes.is_empty() {
            let mut tail = crc32fast::Hasher::new();
            tail.update(&bytes);
            let mut whole = crc32fast::Hasher::new_with_initial_len(self.file.crc, self.file.file_len);
            whole.combine(&tail);
            let start = self.file.file_len;
            let (len, crc) = (start + bytes.len() as u64, whole.finalize());
            self.file.append_committed(len, self.pending_rows, crc, start, tail.finalize());
            // Columns are only ever added: the list changes when the width does.
            if self.file.columns.len() != self.width {
                (self.file.columns, self.file.derived) = self.cols.committed(self.width);
            }
            appends.push(Append { path: self.path.clone(), bytes, hashed: true });
        }
        self.pending_rows = 0;
        if let Some(seen) = &mut self.seen {
            let (append, len) = seen.take(recycled());
            self.seen_len = Some(len);
            appends.push(append);
        }
    }

    /// Whether anything waits to be committed.
    pub fn has_pending(&self) -> bool {
        self.pending_rows > 0
    }

    /// Bytes of journal waiting for a commit (keys read on pages that wrote no row).
    pub fn journal_pending(&self) -> usize {
        self.seen.as_ref().map_or(0, SeenLog::pending)
    }

    /// Whether some committed key was not read in this sync.
    pub fn has_unseen(&self) -> bool {
        self.index.as_ref().is_some_and(|i| !i.unseen().is_empty())
    }

    /// Committed keys not read in this sync, with their primary key values, sorted.
    pub fn unseen(&self) -> Result<Vec<(u64, Vec<Vec<u8>>)>> {
        let Some(index) = &self.index else { return Ok(Vec::new()) };
        let unseen: HashSet<u64, FxBuild> = index.unseen().into_iter().collect();
        if unseen.is_empty() {
            return Ok(Vec::new());
        }
        let header: Vec<&str> = self.file.names().collect();
        let key_cols: Vec<usize> =
            self.spec.primary_key.iter().filter_map(|k| header.iter().position(|h| h == k)).collect();
        let mut keys: HashMap<u64, Vec<Vec<u8>>, FxBuild> = HashMap::default();
        index::scan(&self.path, self.file.file_len, self.spec.primary_key, self.safe, |key, _, record| {
            if unseen.contains(&key) {
                // The API knows the key as it sent it, not as the file guards it.
                keys.insert(key, key_cols.iter().map(|&c| unguarded(&record[c], self.safe).to_vec()).collect());
            }
        })?;
        let mut sorted: Vec<(u64, Vec<Vec<u8>>)> = keys.into_iter().collect();
        sorted.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(sorted)
    }

    /// The listing feeding the table moves on to another listing.
    pub fn new_listing(&mut self) {
        self.passes.current.clear();
    }

    /// The listing feeding the table started over: what its abandoned pass read
    /// counts as read only if a later pass reads it too.
    pub fn restart_pass(&mut self) {
        let Passes { current, abandoned } = &mut self.passes;
        abandoned.extend(current.drain(..));
    }

    /// After the read: keys read only in abandoned passes are taken for not read,
    /// so that the deletion check (a re-read) decides whether they still exist. In
    /// this run only: a resumed run replays the journal, and the next sync decides.
    pub fn forget_abandoned(&mut self) {
        let abandoned = std::mem::take(&mut self.passes);
        if let Some(index) = &mut self.index {
            for key in abandoned.abandoned {
                index.unmark_seen(key);
            }
        }
    }

    pub fn journaled(&self) -> bool {
        self.seen.is_some()
    }
}

/// Makes `values` the last key of `order`, reusing its strings.
fn set_last(order: &mut Order, values: &[&[u8]]) {
    order.last.resize_with(values.len(), String::new);
    for (last, v) in order.last.iter_mut().zip(values) {
        last.clear();
        last.push_str(&String::from_utf8_lossy(v));
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
