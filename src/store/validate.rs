//! The output directory belongs to one account and holds only what api2csv wrote:
//! checked before a run writes a single byte, read only.
//!
//! A table file that `state.json` does not know (a user's own `subscriber.csv`, or
//! files whose state was deleted) is never overwritten. A table file changed since it
//! was committed (a spreadsheet re-save adds a BOM or CRLF, a cell or row edited, a
//! column added) is found from its length, header and the checksum of its last
//! committed bytes, and never cut or appended to: `api2csv repair` sets it aside.
//!
//! Bytes past a file's committed length are a page written but not committed only
//! while a run is under way or was interrupted, and only in a table that run still
//! writes; after a run that ended (`state.json` records no run), they were added
//! outside api2csv. A `state.json` older than the files (a restored backup) is found
//! from `manifest.json`: a file longer than the state commits, whose bytes are
//! exactly those the manifest records (length and CRC-32), holds committed history
//! the state does not know; it is never cut.

use std::path::Path;

use crate::connector::Def;
use crate::error::{Error, Result};
use crate::store::manifest::Manifest;
use crate::store::state::{Account, FileState, State, Target, FILE_NAME};
use crate::store::table_file::{self, table_path};

/// What is wrong with one table file, found by [`problems`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub table: String,
    pub file: String,
    pub kind: ProblemKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Changed since committed: `repair` sets it aside and the table is rebuilt.
    Edited,
    /// Not known to `state.json`: only the user can say what it is.
    Foreign,
    /// Longer than `state.json` commits and exactly as `manifest.json` records it:
    /// the state is older than the file. `repair` sets it aside like an edited one.
    Stale,
}

impl ProblemKind {
    /// Whether `repair` sets the file aside and the table is rebuilt.
    pub fn set_aside(self) -> bool {
        matches!(self, ProblemKind::Edited | ProblemKind::Stale)
    }
}

/// Every problem of the table files of `dir` for connector `def`, given its state
/// (`None`: no state.json). With `deep`, every committed byte is checked against
/// its CRC, not only the length, header and last commit (`repair` can afford it).
pub fn problems(dir: &Path, def: &Def, state: Option<&State>, deep: bool) -> Result<Vec<Problem>> {
    let mut out = Vec::new();
    let manifest = crate::store::manifest::read(dir);
    for spec in def.tables {
        let path = table_path(dir, spec.name);
        let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let problem = |kind, detail: String| Problem { table: spec.name.into(), file: file.clone(), kind, detail };
        let known = state.and_then(|s| s.tables.get(spec.name));
        let Some(table) = known else {
            if path.exists() {
                let why = match state {
                    None => "exists but state.json does not: api2csv did not write it, or its state.json was deleted",
                    Some(_) => "is not known to state.json: api2csv did not write it, or state.json lost its entry",
                };
                out.push(problem(ProblemKind::Foreign, why.into()));
            }
            continue;
        };
        if table.replace.is_some() {
            // A replacement under way: the start of the run finishes or abandons it.
            continue;
        }
        let bom = state.is_some_and(|s| s.output.bom);
        for target in [Target::Table, Target::Refresh] {
            if target == Target::Refresh && table.refresh.is_none() {
                continue;
            }
            let path = table_file::file_path(dir, spec.name, target);
            let committed = table.file_of(target);
            let mut checked = table_file::check(&path, committed, bom)?;
            if let Ok(extra @ 1..) = checked {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                if let Some(detail) = older_state(&path, &name, committed, extra, manifest.as_ref())? {
                    out.push(Problem { table: spec.name.into(), file: name, kind: ProblemKind::Stale, detail });
                    continue;
                }
                let writing = state
                    .and_then(|s| s.run.as_ref())
                    .is_some_and(|r| r.tables.iter().any(|t| t == spec.name) && !r.done.iter().any(|t| t == spec.name));
                if !writing {
                    checked = Err(table_file::Damage::Added { extra });
                }
            }
            let full = (deep && checked.is_ok() && !committed.is_empty() && committed.crc != 0)
                .then(|| table_file::crc_of(&path, 0, committed.file_len).map(|crc| crc == committed.crc));
            if let Some(false) = full.transpose()? {
                checked = Err(table_file::Damage::Content);
            }
            if let Err(damage) = checked {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let detail = format!("changed outside api2csv: {}", damage.describe(committed.file_len));
                out.push(Problem { table: spec.name.into(), file: name, kind: ProblemKind::Edited, detail });
            }
        }
    }
    Ok(out)
}

/// Fails with the first problem of `dir`, saying what to do. With `deep`, every
/// committed byte is checked (a command about to rewrite a table file).
pub fn check_dir(dir: &Path, def: &Def, state: Option<&State>, deep: bool) -> Result<()> {
    if crate::bundle::mirror::is_mirror(dir) {
        return Err(crate::bundle::mirror::refusal(dir));
    }
    if let Some(s) = state.filter(|s| s.connector != def.name) {
        let detail = format!("belongs to connector {}, not {}: use another --out", s.connector, def.name);
        return Err(Error::dir(&dir.join(FILE_NAME), detail));
    }
    let Some(p) = problems(dir, def, state, deep)?.into_iter().next() else { return Ok(()) };
    Err(refusal(dir, &p))
}

/// As [`check_dir`], for a sync that writes `tables`: a table file to be set aside
/// (edited, or newer than the state) of another table does not stop it. Those
/// problems are returned, for the sync to warn about.
pub fn check_for_sync(
    dir: &Path,
    def: &Def,
    state: Option<&State>,
    deep: bool,
    tables: &[&str],
) -> Result<Vec<Problem>> {
    if crate::bundle::mirror::is_mirror(dir) {
        return Err(crate::bundle::mirror::refusal(dir));
    }
    if let Some(s) = state.filter(|s| s.connector != def.name) {
        let detail = format!("belongs to connector {}, not {}: use another --out", s.connector, def.name);
        return Err(Error::dir(&dir.join(FILE_NAME), detail));
    }
    let mut aside = Vec::new();
    for p in problems(dir, def, state, deep)? {
        if p.kind.set_aside() && !tables.contains(&p.table.as_str()) {
            aside.push(p);
            continue;
        }
        let mut error = refusal(dir, &p);
        if let (true, Error::Dir { detail, .. }) = (p.kind.set_aside() && tables.len() > 1, &mut error) {
            detail.push_str(&format!(" (--tables without {} syncs the other tables meanwhile)", p.table));
        }
        return Err(error);
    }
    Ok(aside)
}

/// The error that refuses `problem` of `dir`, with its remedy.
pub fn refusal(dir: &Path, p: &Problem) -> Error {
    let repair = format!("api2csv repair {}", dir.display());
    let remedy = match p.kind {
        ProblemKind::Edited => format!("run `{repair}` to set it aside and rebuild the table"),
        ProblemKind::Stale => format!(
            "put back the state.json that goes with the files, or run `{repair}` to set the file aside and rebuild the table"
        ),
        ProblemKind::Foreign => "move it away (api2csv never overwrites a file it did not write)".to_string(),
    };
    Error::dir(&dir.join(&p.file), format!("{}; {remedy}", p.detail))
}

/// Whether the file at `path` (`extra` bytes longer than `committed`) holds exactly
/// the bytes `manifest` records for it, more than the state commits: then the state
/// is older than the file. The detail saying so, if it is.
fn older_state(
    path: &Path,
    name: &str,
    committed: &FileState,
    extra: u64,
    manifest: Option<&Manifest>,
) -> Result<Option<String>> {
    let Some(entry) = manifest.and_then(|m| m.files.get(name)) else { return Ok(None) };
    let len = committed.file_len + extra;
    if entry.bytes != len || entry.crc32.is_none() || entry.crc32 != Some(table_file::crc_of(path, 0, len)?) {
        return Ok(None);
    }
    Ok(Some(format!(
        "state.json is older than this file: manifest.json records {len} committed bytes, state.json {} (a restored backup?)",
        committed.file_len
    )))
}

/// Fails if `dir`'s state was written for another account than `account`. An
/// identity that either side does not reveal is no evidence of another account.
pub fn check_account(dir: &Path, state: &State, account: &Account) -> Result<()> {
    match &state.account {
        Some(a) if !a.same_as(account) => Err(Error::dir(
            &dir.join(FILE_NAME),
            format!(
                "this directory holds {} ({}), not {} ({}): use another --out for another account",
                a.id.as_deref().unwrap_or_default(),
                a.base_url,
                account.id.as_deref().unwrap_or_default(),
                account.base_url
            ),
        )),
        _ => Ok(()),
    }
}
