//! `compact`: rewrites each changelog CSV to one row per primary key, the latest,
//! without tombstoned keys: the file a spreadsheet user wants.
//!
//! Two streaming passes keep memory at one map entry per key: the first finds the
//! last row of every key, the second copies exactly those rows. The result replaces
//! the table file the same way a widened header does (committed as `swap_pending`,
//! then renamed), so a crash mid-compaction loses nothing.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use crate::connector;
use crate::error::{Error, Result};
use crate::index::KeyedRows;
use crate::sink::{finish_refresh_swap, new_path, table_path, TableFile};
use crate::state::{rename_durably, DirLock, State};

/// Rows before and after compaction of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub table: String,
    pub rows_before: u64,
    pub rows_after: u64,
}

/// Compacts every table of the output directory `dir`.
pub fn run(dir: &Path) -> Result<Vec<Compacted>> {
    let _lock = DirLock::acquire(dir)?;
    compact_locked(dir)
}

/// Compacts `dir`, whose lock the caller holds.
pub fn compact_locked(dir: &Path) -> Result<Vec<Compacted>> {
    let state_path = dir.join(crate::state::FILE_NAME);
    let mut state = State::load(dir)?.ok_or_else(|| Error::State {
        path: state_path.clone(),
        detail: "not found: is this an api2csv output directory?".into(),
    })?;
    let specs = connector::tables(&state.connector).ok_or_else(|| Error::State {
        path: state_path.clone(),
        detail: format!("unknown connector {:?}", state.connector),
    })?;
    let mut done = Vec::new();
    for spec in specs {
        let Some(ts) = state.tables.get_mut(spec.name) else { continue };
        finish_refresh_swap(dir, spec.name, ts)?;
        let ts = ts.clone();
        if ts.file_len == 0 {
            continue;
        }
        let path = table_path(dir, spec.name);
        // Finishes an interrupted swap and cuts off uncommitted bytes first.
        drop(TableFile::open(&path, &ts)?);
        let (len, kept) = rewrite(&path, ts.file_len, spec.primary_key)?;
        let t = state.table(spec.name);
        t.file_len = len;
        t.rows = kept;
        t.swap_pending = true;
        state.save(dir)?;
        rename_durably(&new_path(&path), &path)?;
        state.table(spec.name).swap_pending = false;
        state.save(dir)?;
        done.push(Compacted { table: spec.name.to_string(), rows_before: ts.rows, rows_after: kept });
    }
    Ok(done)
}

/// Writes the compacted rows of `path` to its `.new` file: (its length, rows kept).
fn rewrite(path: &Path, len: u64, primary_key: &[&str]) -> Result<(u64, u64)> {
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut rows = KeyedRows::open(path, len, primary_key)?;
    let mut i = 0u64;
    while let Some((key, _)) = rows.next_row()? {
        last.insert(key, i);
        i += 1;
    }

    let out_path = new_path(path);
    let out = File::create(&out_path).map_err(|e| Error::io("create", &out_path, e))?;
    let mut writer = csv::WriterBuilder::new().buffer_capacity(1 << 16).from_writer(out);
    let werr = |e: csv::Error| Error::io("write", &out_path, std::io::Error::other(e.to_string()));
    let mut rows = KeyedRows::open(path, len, primary_key)?;
    writer.write_byte_record(rows.header()).map_err(werr)?;
    let (mut i, mut kept) = (0u64, 0u64);
    while let Some((key, record)) = rows.next_row()? {
        if last.get(&key) == Some(&i) && record.get(record.len() - 1) != Some(b"true") {
            writer.write_byte_record(record).map_err(werr)?;
            kept += 1;
        }
        i += 1;
    }
    writer.flush().map_err(|e| Error::io("write", &out_path, e))?;
    let f = writer.get_ref();
    f.sync_all().map_err(|e| Error::io("sync", &out_path, e))?;
    let len = f.metadata().map_err(|e| Error::io("stat", &out_path, e))?.len();
    Ok((len, kept))
}
