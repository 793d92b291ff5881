//! `compact`: rewrites each changelog CSV to one row per primary key, the latest,
//! without tombstoned keys: the file a spreadsheet user wants.
//!
//! Two streaming passes keep memory at a sorted 16-byte entry per key, then a bit
//! per row: the first finds the last row of every key, the second copies exactly
//! those rows into a side file, which replaces the table file through the one
//! replacement protocol (`replace.rs`).
//!
//! A signal (SIGINT, SIGTERM) stops it between tables, or while a side file is being
//! written (which is then removed): a table file is either replaced whole or left
//! as it was, never half-compacted.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::connector;
use crate::error::{Error, Result};
use crate::store::encode::header_of;
use crate::store::fsio::{remove_if_present, DirLock};
use crate::store::index::{self, KeyedRows};
use crate::store::keyfile::{self, Spill};
use crate::store::state::{ReplaceKind, State, FILE_NAME};
use crate::store::table_file::{self, side_and_target, table_path};
use crate::store::{replace, validate};
use crate::term::signal::Interrupt;

/// Rows before and after compaction of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub table: String,
    pub rows_before: u64,
    pub rows_after: u64,
}

impl std::fmt::Display for Compacted {
    /// The line `compact` and `sync --compact` print for one table.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<18} compacted {} rows to {}", self.table, self.rows_before, self.rows_after)
    }
}

/// The summary of a compaction: one line per table.
pub fn summary(done: &[Compacted]) -> String {
    done.iter().map(|c| format!("{c}\n")).collect()
}

/// Rows read between two looks at the interrupt flag.
const CHECK_EVERY: u64 = 1 << 14;

/// Compacts every table of the output directory `dir`; stops with
/// [`Error::Interrupted`] once `interrupt` has received a signal.
pub fn run(dir: &Path, interrupt: &Interrupt) -> Result<(State, Vec<Compacted>)> {
    if !dir.join(FILE_NAME).exists() {
        let detail = "there is no state.json here: is it an api2csv output directory?";
        return Err(Error::dir(dir, detail));
    }
    let _lock = DirLock::acquire(dir)?;
    compact_locked(dir, interrupt)
}

/// Compacts `dir`, whose lock the caller holds.
pub fn compact_locked(dir: &Path, interrupt: &Interrupt) -> Result<(State, Vec<Compacted>)> {
    let stopped = || interrupt.received().is_some();
    let mut state = State::load(dir)?.ok_or_else(|| Error::dir(dir, "there is no state.json here"))?;
    let def = connector::of_state(&state, dir)?;
    // Every committed byte is checked first: a rewrite must not carry an edit on.
    validate::check_dir(dir, def, Some(&state), true)?;
    if let Some(run) = &state.run {
        let detail = format!(
            "a sync started at {} was interrupted; run the same sync again to finish it, then compact",
            run.started_at
        );
        return Err(Error::dir(dir, detail));
    }
    replace::recover(dir, &mut state)?;
    let mut done = Vec::new();
    for spec in def.tables {
        let Some(table) = state.tables.get(spec.name) else { continue };
        let file = table.file.clone();
        if file.is_empty() {
            continue;
        }
        if stopped() {
            return Err(Error::Interrupted);
        }
        let path = table_path(dir, spec.name);
        let keys = keyfile::keys_path(dir, spec.name);
        let guarded = state.output.spreadsheet_safe;
        let (last, entries) = last_rows(&path, &keys, file.file_len, spec.primary_key, guarded, &stopped)?;
        let (side, _) = side_and_target(dir, spec.name, ReplaceKind::Compact);
        let header = header_of(file.names(), state.output.bom);
        let mut cut = false;
        let mut compacted = table_file::rewrite(&path, file.file_len, &side, &header, 0, |i, record| {
            // Once a signal came, the rest is skipped and the side file thrown away.
            cut = cut || (i.is_multiple_of(CHECK_EVERY) && stopped());
            let is_last = last.get((i / 64) as usize).is_some_and(|w| w & (1 << (i % 64)) != 0);
            !cut && is_last && record.get(record.len() - 1) != Some(b"true")
        })?;
        test_gate(spec.name, &stopped);
        // The last moment to stop: from here the replacement runs to its end.
        if cut || stopped() {
            remove_if_present(&side)?;
            return Err(Error::Interrupted);
        }
        compacted.columns = file.columns.clone();
        compacted.derived = file.derived.clone();
        let rows_after = compacted.rows;
        replace::replace(dir, &mut state, spec.name, ReplaceKind::Compact, compacted)?;
        // The compacted file holds each key's last row: its key file is each key's
        // last entry, tombstones left out, and the next sync reads no table.
        if let Some(t) = state.tables.get(spec.name) {
            index::leave_key_file(entries, dir, (spec.name, spec.primary_key, guarded), (t.file.file_len, t.file.crc));
        }
        done.push(Compacted { table: spec.name.to_string(), rows_before: file.rows, rows_after });
    }
    Ok((state, done))
}

/// Which rows are the last of their key: a bit per row, in file order; and each
/// row's key file entry, for the compacted file's key file. Each key's last row is
/// found through sorted runs beside key file `keys` (in memory up to 64k rows), so
/// memory is a bit a row, however many keys.
fn last_rows(
    path: &Path,
    keys: &Path,
    len: u64,
    primary_key: &[&str],
    guarded: bool,
    stopped: &dyn Fn() -> bool,
) -> Result<(Vec<u64>, Spill)> {
    let mut latest = Spill::at(&keys.with_extension("rows.runs"));
    let mut entries = Spill::new(keys);
    let runs_err = |e| Error::io("write", keys, e);
    let mut rows = KeyedRows::open(path, len, primary_key, guarded)?;
    let mut i = 0u64;
    while let Some((key, _)) = rows.next_row()? {
        if i.is_multiple_of(CHECK_EVERY) && stopped() {
            return Err(Error::Interrupted);
        }
        latest.push(key, i).map_err(runs_err)?;
        entries.push(key, rows.fingerprint()).map_err(runs_err)?;
        i += 1;
    }
    let mut last = vec![0u64; i.div_ceil(64) as usize];
    latest.merged(|_, row| last[(row / 64) as usize] |= 1 << (row % 64)).map_err(runs_err)?;
    Ok((last, entries))
}

/// Tests only (`API2CSV_TEST_COMPACT_GATE=<table>:<file>`): once the side file of
/// `<table>` is complete, create `<file>` and wait (a minute at most) for a signal,
/// so a test can signal at exactly that step without hoping a timer lands there.
fn test_gate(table: &str, stopped: &dyn Fn() -> bool) {
    let Ok(gate) = std::env::var("API2CSV_TEST_COMPACT_GATE") else { return };
    let Some(file) = gate.strip_prefix(table).and_then(|rest| rest.strip_prefix(':')) else { return };
    if std::fs::write(file, table).is_err() {
        return;
    }
    let started = Instant::now();
    while !stopped() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
}
