//! The one way a table file is replaced: widening, compaction and the end of a
//! full refresh all go through [`replace`], and every start goes through [`recover`].
//!
//! The side file is complete and durable before the state that says "replace" is
//! committed; then the rename and a directory fsync; then the state that says
//! "replaced" is committed before anything can create another side file. A side
//! file is renamed into place only if it matches what the state committed (length,
//! header, tail checksum); otherwise it is removed. `state.rs` walks through a power
//! cut after each step.

use std::path::Path;

use crate::error::Result;
use crate::store::fsio::{remove_if_present, rename_durably, sync_dir};
use crate::store::state::{FileState, ReplaceKind, State, Target};
use crate::store::table_file::{matches, side_and_target};

/// Replaces the file of `table` with its durable side file of `kind`, which holds `file`.
pub fn replace(dir: &Path, state: &mut State, table: &str, kind: ReplaceKind, file: FileState) -> Result<()> {
    let empty = holds_nothing(kind, &file);
    state.table(table).begin_replace(kind, file);
    state.save(dir)?;
    let (side, target) = side_and_target(dir, table, kind);
    if empty {
        remove_both(dir, &side, &target)?;
    } else {
        rename_durably(&side, &target)?;
    }
    state.table(table).finish_replace();
    state.save(dir)
}

/// A full refresh that found no record rebuilt an empty table, which has no file
/// (as a table that never had a record): the old file goes instead of a rename.
fn holds_nothing(kind: ReplaceKind, file: &FileState) -> bool {
    kind == ReplaceKind::Refresh && file.is_empty()
}

/// Removes a side file (if one was ever created) and its target, durably.
fn remove_both(dir: &Path, side: &Path, target: &Path) -> Result<()> {
    remove_if_present(side)?;
    remove_if_present(target)?;
    sync_dir(dir)
}

/// What [`recover`] did, for `repair` to report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Replacements finished: (table, what).
    pub finished: Vec<(String, &'static str)>,
    /// Side files removed because no committed state described them.
    pub removed: Vec<String>,
}

/// Finishes or abandons every pending replacement, for every table (those an
/// interrupted run had finished included), and removes side files that no state
/// describes. Commits the state if anything changed.
pub fn recover(dir: &Path, state: &mut State) -> Result<Recovered> {
    let mut out = Recovered::default();
    let bom = state.output.bom;
    let names: Vec<String> = state.tables.keys().cloned().collect();
    let mut changed = false;
    for name in &names {
        let Some(pending) = state.table(name).replace.clone() else { continue };
        let (side, target) = side_and_target(dir, name, pending.kind);
        if holds_nothing(pending.kind, &pending.file) {
            remove_both(dir, &side, &target)?;
            state.table(name).finish_replace();
            out.finished.push((name.clone(), kind_name(pending.kind)));
        } else if matches(&side, &pending.file, bom)? {
            rename_durably(&side, &target)?;
            state.table(name).finish_replace();
            out.finished.push((name.clone(), kind_name(pending.kind)));
        } else if matches(&target, &pending.file, bom)? {
            // Renamed before the crash; only the state was behind.
            remove(&side, &mut out.removed)?;
            state.table(name).finish_replace();
            out.finished.push((name.clone(), kind_name(pending.kind)));
        } else {
            remove(&side, &mut out.removed)?;
            state.table(name).abandon_replace();
        }
        changed = true;
    }
    if changed {
        sync_dir(dir)?;
        state.save(dir)?;
    }
    for name in &names {
        let t = &state.tables[name];
        for kind in [ReplaceKind::Widen, ReplaceKind::WidenRefresh] {
            let (side, _) = side_and_target(dir, name, kind);
            remove(&side, &mut out.removed)?;
        }
        if t.refresh.is_none() {
            let refresh = crate::store::table_file::file_path(dir, name, Target::Refresh);
            remove(&refresh, &mut out.removed)?;
        }
    }
    remove(&crate::store::fsio::tmp_path(&dir.join(crate::store::state::FILE_NAME)), &mut out.removed)?;
    Ok(out)
}

/// Removes `path` if it is there, and notes its name in `removed`.
fn remove(path: &Path, removed: &mut Vec<String>) -> Result<()> {
    if remove_if_present(path)? {
        removed.push(file_name(path));
    }
    Ok(())
}

fn kind_name(kind: ReplaceKind) -> &'static str {
    match kind {
        ReplaceKind::Widen => "widened header",
        ReplaceKind::Compact => "compaction",
        ReplaceKind::WidenRefresh => "widened rebuild",
        ReplaceKind::Refresh => "full refresh",
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::table_file::{checksum, table_path};
    use std::fs;

    fn dir(name: &str) -> std::path::PathBuf {
        crate::store::fsio::test_dir(&format!("replace-{name}"))
    }

    fn file_of(path: &Path, names: &[&str]) -> FileState {
        let columns = names.iter().map(|n| (n.to_string(), vec![n.to_string()])).collect();
        let mut f = FileState { file_len: fs::metadata(path).unwrap().len(), columns, ..FileState::default() };
        checksum(path, &mut f).unwrap();
        f
    }

    fn setup(d: &Path) -> (State, FileState) {
        let old = "id,_synced_at,_deleted\n1,T,false\n2,T,false\n";
        fs::write(table_path(d, "t"), old).unwrap();
        let mut state = State::new("x");
        state.table("t").file = file_of(&table_path(d, "t"), &["id"]);
        let side = d.join("t.csv.new");
        fs::write(&side, "id,_synced_at,_deleted\n2,T,false\n").unwrap();
        let new = file_of(&side, &["id"]);
        (state, new)
    }

    #[test]
    fn a_pending_replace_is_finished_when_its_side_file_matches() {
        let d = dir("finish");
        let (mut state, new) = setup(&d);
        state.table("t").begin_replace(ReplaceKind::Compact, new.clone());
        let r = recover(&d, &mut state).unwrap();
        assert_eq!(r.finished, [("t".to_string(), "compaction")]);
        assert_eq!(state.tables["t"].file, new);
        assert_eq!(fs::read_to_string(table_path(&d, "t")).unwrap(), "id,_synced_at,_deleted\n2,T,false\n");
        assert_eq!(State::load(&d).unwrap().unwrap().tables["t"].replace, None);
    }

    #[test]
    fn a_damaged_side_file_is_removed_never_renamed() {
        let d = dir("damaged");
        let (mut state, new) = setup(&d);
        let old = state.tables["t"].file.clone();
        state.table("t").begin_replace(ReplaceKind::Compact, new);
        // A second compaction died while writing a new side file.
        fs::write(d.join("t.csv.new"), "id,_synced_at,_deleted\n").unwrap();
        let r = recover(&d, &mut state).unwrap();
        assert!(r.finished.is_empty());
        assert_eq!(r.removed, ["t.csv.new"]);
        assert_eq!(state.tables["t"].file, old);
        assert_eq!(fs::read_to_string(table_path(&d, "t")).unwrap(), "id,_synced_at,_deleted\n1,T,false\n2,T,false\n");
    }

    #[test]
    fn a_rename_that_happened_is_recognised() {
        let d = dir("renamed");
        let (mut state, new) = setup(&d);
        fs::rename(d.join("t.csv.new"), table_path(&d, "t")).unwrap();
        state.table("t").begin_replace(ReplaceKind::Widen, new.clone());
        recover(&d, &mut state).unwrap();
        assert_eq!(state.tables["t"].file, new);
    }

    #[test]
    fn an_empty_rebuild_removes_the_table_file_even_after_a_crash() {
        let d = dir("empty-refresh");
        let (mut state, _) = setup(&d);
        state.table("t").start_refresh();
        replace(&d, &mut state, "t", ReplaceKind::Refresh, FileState::default()).unwrap();
        assert!(!table_path(&d, "t").exists());
        assert_eq!((state.tables["t"].file.clone(), state.tables["t"].refresh.clone()), (FileState::default(), None));
        // Killed after the state said "replace": the start of the next run finishes it.
        let (mut state, _) = setup(&d);
        state.table("t").start_refresh();
        state.table("t").begin_replace(ReplaceKind::Refresh, FileState::default());
        let r = recover(&d, &mut state).unwrap();
        assert_eq!(r.finished, [("t".to_string(), "full refresh")]);
        assert!(!table_path(&d, "t").exists());
        assert!(state.tables["t"].file.is_empty());
    }

    #[test]
    fn stray_side_files_are_removed() {
        let d = dir("stray");
        let (mut state, _) = setup(&d);
        fs::write(d.join("t.csv.refresh"), "x").unwrap();
        fs::write(d.join("state.json.tmp"), "x").unwrap();
        let r = recover(&d, &mut state).unwrap();
        assert_eq!(r.removed, ["t.csv.new", "t.csv.refresh", "state.json.tmp"]);
    }
}
