//! The output directory belongs to one account and holds only what api2csv wrote:
//! checked before a run writes a single byte, read only.
//!
//! A table file that `state.json` does not know (a user's own `subscriber.csv`, or
//! files whose state was deleted) is never overwritten. A table file changed since it
//! was committed (a spreadsheet re-save adds a BOM or CRLF, a cell or row edited, a
//! column added) is found from its length, header and the checksum of its last
//! committed bytes, and never cut or appended to: `api2csv repair` sets it aside.

use std::path::Path;

use crate::connector::Def;
use crate::error::{Error, Result};
use crate::sink::{self, table_path};
use crate::state::{Account, State, Target, FILE_NAME};

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
}

/// Every problem of the table files of `dir` for connector `def`, given its state
/// (`None`: no state.json). With `deep`, every committed byte is checked against
/// its CRC, not only the length, header and last commit (`repair` can afford it).
pub fn problems(dir: &Path, def: &Def, state: Option<&State>, deep: bool) -> Result<Vec<Problem>> {
    let mut out = Vec::new();
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
            let path = sink::file_path(dir, spec.name, target);
            let committed = table.file_of(target);
            let mut checked = sink::check(&path, committed, bom)?;
            let full = (deep && checked.is_ok() && !committed.is_empty() && committed.crc != 0)
                .then(|| sink::crc_of(&path, 0, committed.file_len).map(|crc| crc == committed.crc));
            if let Some(false) = full.transpose()? {
                checked = Err(sink::Damage::Content);
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

/// Fails with the first problem of `dir`, saying what to do.
pub fn check_dir(dir: &Path, def: &Def, state: Option<&State>) -> Result<()> {
    if crate::bundle::mirror::is_mirror(dir) {
        return Err(crate::bundle::mirror::refusal(dir));
    }
    if let Some(s) = state.filter(|s| s.connector != def.name) {
        let detail = format!("belongs to connector {}, not {}: use another --out", s.connector, def.name);
        return Err(Error::dir(&dir.join(FILE_NAME), detail));
    }
    let Some(p) = problems(dir, def, state, false)?.into_iter().next() else { return Ok(()) };
    let remedy = match p.kind {
        ProblemKind::Edited => format!("run `api2csv repair {}` to set it aside and rebuild the table", dir.display()),
        ProblemKind::Foreign => "move it away (api2csv never overwrites a file it did not write)".to_string(),
    };
    Err(Error::dir(&dir.join(&p.file), format!("{}; {remedy}", p.detail)))
}

/// Fails if `dir`'s state was written for another account than `account`.
pub fn check_account(dir: &Path, state: &State, account: &Account) -> Result<()> {
    match &state.account {
        Some(a) if a.id != account.id => Err(Error::dir(
            &dir.join(FILE_NAME),
            format!(
                "this directory holds {} ({}), not {} ({}): use another --out for another account",
                a.id, a.base_url, account.id, account.base_url
            ),
        )),
        _ => Ok(()),
    }
}
