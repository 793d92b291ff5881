//! `repair`: what to do with a directory whose files no longer match `state.json`.
//!
//! A table file changed outside api2csv is renamed to `<table>.csv.edited-<UTC time>`
//! (never deleted) and its table marked for a full rebuild by the next sync; a
//! deleted table file's table too. Pending replacements are finished and leftover
//! side files removed, as every command does on start. A file `state.json` does not
//! know is left alone: only the user can say what it is; repair says what it takes.

use std::path::{Path, PathBuf};

use crate::connector::{self, CONNECTORS};
use crate::error::{Error, Result};
use crate::fsio::{remove_if_present, rename_durably, sync_dir, DirLock};
use crate::sink::table_path;
use crate::state::{State, FILE_NAME};
use crate::validate::{self, ProblemKind};

/// What repair did, and what it leaves to the user.
#[derive(Debug, Default)]
pub struct Repaired {
    pub actions: Vec<String>,
    pub unresolved: Vec<String>,
}

pub fn run(dir: &Path) -> Result<Repaired> {
    if !dir.is_dir() {
        return Err(Error::dir(dir, "no such directory"));
    }
    let mut out = Repaired::default();
    if !dir.join(FILE_NAME).exists() {
        // Nothing here is repair's to change, so no lock file either: a directory
        // holding only a user's own CSV stays exactly as it was.
        unknown_files(dir, &mut out);
        return Ok(out);
    }
    let _lock = DirLock::acquire(dir)?;
    let Some(mut state) = State::load(dir)? else {
        unknown_files(dir, &mut out);
        return Ok(out);
    };
    let def = connector::of_state(&state, dir)?;
    let recovered = crate::replace::recover(dir, &mut state)?;
    for (table, what) in recovered.finished {
        out.actions.push(format!("finished the interrupted {what} of {table}.csv"));
    }
    for file in recovered.removed {
        out.actions.push(format!("removed the leftover {file}"));
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year]-[month]-[day]T[hour][minute][second]Z"))
        .expect("formats");
    for p in validate::problems(dir, def, Some(&state), true)? {
        match p.kind {
            ProblemKind::Foreign => out.unresolved.push(format!(
                "{}: {}; move it away (or delete it) and run the sync again",
                dir.join(&p.file).display(),
                p.detail
            )),
            ProblemKind::Edited | ProblemKind::Stale => {
                let from = dir.join(&p.file);
                if from.exists() {
                    let to = free_name(&from, &stamp);
                    rename_durably(&from, &to)?;
                    let name = to.file_name().unwrap_or_default().to_string_lossy();
                    out.actions.push(format!(
                        "{} {}: renamed to {name}; the next sync rebuilds {}",
                        p.file, p.detail, p.table
                    ));
                } else {
                    out.actions.push(format!("{} {}: the next sync rebuilds {}", p.file, p.detail, p.table));
                }
                rebuild(dir, &mut state, &p.table)?;
            }
        }
    }
    if !out.actions.is_empty() {
        state.save(dir)?;
        sync_dir(dir)?;
    }
    Ok(out)
}

/// Marks `table` for a full rebuild: its history was set aside with its file.
fn rebuild(dir: &Path, state: &mut State, table: &str) -> Result<()> {
    state.table(table).mark_rebuild();
    if let Some(run) = state.run.as_mut() {
        run.done.retain(|t| t != table);
        run.deletes = false;
    }
    remove_if_present(&crate::seen::seen_path(dir, table))?;
    remove_if_present(&crate::sink::file_path(dir, table, crate::state::Target::Refresh))?;
    Ok(())
}

/// `<file>.edited-<stamp>`, or with `-2`, `-3`… if taken.
fn free_name(path: &Path, stamp: &str) -> PathBuf {
    let base = crate::fsio::with_suffix(path, &format!(".edited-{stamp}"));
    if !base.exists() {
        return base;
    }
    (2..).map(|n| crate::fsio::with_suffix(&base, &format!("-{n}"))).find(|p| !p.exists()).expect("a free name")
}

/// Table files in a directory without `state.json`.
fn unknown_files(dir: &Path, out: &mut Repaired) {
    for def in CONNECTORS {
        for t in def.tables {
            let path = table_path(dir, t.name);
            if path.exists() {
                out.unresolved.push(format!(
                    "{}: there is no state.json, so api2csv cannot tell what in it was committed; move it away to sync into this directory",
                    path.display()
                ));
            }
        }
    }
}
