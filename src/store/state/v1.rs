//! `state.json` as api2csv 0.1 wrote it (version 1), brought up to version 2.
//!
//! The committed files carry over: lengths, rows, columns, pending renames. What
//! cannot carry over is an interrupted run's resume positions, whose shapes changed:
//! such a run is dropped with a warning, and the next sync reads those tables again
//! (what was appended stays; the change index keeps it from being appended twice).
//! Version 1 kept no checksums; they are computed from the files on the next start.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{FileState, ReplaceKind, State, TableState};

#[derive(Deserialize)]
struct V1 {
    connector: String,
    #[serde(default)]
    run: Option<Value>,
    #[serde(default)]
    tables: BTreeMap<String, TableV1>,
}

#[derive(Deserialize)]
struct TableV1 {
    file_len: u64,
    rows: u64,
    columns: Vec<(String, Vec<String>)>,
    #[serde(default)]
    swap_pending: bool,
    #[serde(default)]
    created_since: Option<i64>,
    #[serde(default)]
    refresh_swap_pending: bool,
    #[serde(default)]
    last_complete_sync: Option<String>,
}

pub fn upgrade(bytes: &[u8]) -> Result<State, String> {
    let old: V1 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut state = State::new(&old.connector);
    if old.run.is_some_and(|r| !r.is_null()) {
        log::warn!("state.json is from api2csv 0.1: its interrupted sync starts over (nothing committed is lost)");
    }
    for (name, t) in old.tables {
        // The columns the connector derives for this table, as version 1 stored them.
        let spec = crate::connector::find(&old.connector).and_then(|d| d.table(&name)).map_or(&[][..], |t| t.derived);
        let derived = if !spec.is_empty() {
            let derived = |(n, p): &(String, Vec<String>)| spec.contains(&n.as_str()) && p == std::slice::from_ref(n);
            t.columns.iter().filter(|c| derived(c)).map(|(n, _)| n.clone()).collect()
        } else {
            Vec::new()
        };
        let file =
            FileState { file_len: t.file_len, rows: t.rows, columns: t.columns, derived, ..FileState::default() };
        let mut table = TableState {
            file: file.clone(),
            created_since: t.created_since,
            last_complete_sync: t.last_complete_sync,
            ..TableState::default()
        };
        if t.refresh_swap_pending {
            table.begin_replace(ReplaceKind::Refresh, file);
        } else if t.swap_pending {
            table.begin_replace(ReplaceKind::Widen, file);
        }
        state.tables.insert(name, table);
    }
    state.upgraded = true;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_files_carry_over_and_runs_are_dropped() {
        let v1 = br#"{"version":1,"connector":"paligo","run":{"started_at":"x","tables":["users"],"done":[]},
            "tables":{"taxonomies":{"file_len":120,"rows":3,"columns":[["id",["id"]],["level",["level"]]],"resume":{"stack":[]},
            "swap_pending":true,"created_since":5}}}"#;
        let s = upgrade(v1).unwrap();
        assert!(s.run.is_none());
        let t = &s.tables["taxonomies"];
        assert_eq!(
            (t.file.file_len, t.file.derived.clone(), t.created_since),
            (120, vec!["level".to_string()], Some(5))
        );
        assert_eq!(t.replace.as_ref().unwrap().kind, ReplaceKind::Widen);
        assert!(t.resume.is_none());
        assert!(s.upgraded);
    }
}
