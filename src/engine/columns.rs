//! The columns of a table: which key path each CSV column holds, under which name.
//!
//! A key path becomes the name of its segments joined with `_` (`fields.name` →
//! `fields_name`), with control characters and U+FEFF (a byte order mark, which CSV
//! readers strip from a file's first bytes) replaced by `_`. Columns are told apart
//! by their path, never their name, so two paths that join to the same name stay
//! apart: the later one gets the first free name of `NAME__2`, `NAME__3`, …. The
//! tool's own columns (`_synced_at`, `_deleted`) and the names of columns a
//! connector derives (Paligo's `level`) are reserved: a key the API sends under such
//! a name gets a suffix, and the derived column keeps the documented name.
//!
//! Columns are registered only from rows that are written, in the order first seen,
//! after the page that brought them was accepted.

use std::collections::{HashMap, HashSet};

use crate::page::parse::{self, Batch, KeyPath};
use crate::store::hashing::{self, FxBuild};
use crate::store::state::FileState;

/// The tool's own columns, always last, in this order.
pub const TOOL_COLUMNS: [&str; 2] = ["_synced_at", "_deleted"];

/// A page path not (yet) mapped to a column.
pub const NONE: u32 = u32::MAX;
const UNKNOWN: u32 = u32::MAX - 1;

/// One data column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub path: KeyPath,
    /// Hash of the name: fingerprints combine names, not positions.
    pub name_hash: u64,
}

/// The data columns of a table in first-seen order.
#[derive(Debug, Default)]
pub struct Columns {
    list: Vec<Column>,
    by_path: HashMap<Vec<u8>, u32, FxBuild>,
    taken: HashSet<String>,
    reserved: HashSet<String>,
    /// Batch path id → column (NONE: unregistered), for the batch being read.
    page_map: Vec<u32>,
}

impl Columns {
    /// Columns for a table whose connector derives the columns `derived`.
    pub fn new(derived: &[&str]) -> Columns {
        let reserved = TOOL_COLUMNS.iter().chain(derived).map(|s| s.to_string()).collect();
        Columns { reserved, ..Columns::default() }
    }

    /// Restores the columns of a committed file, keeping their names.
    pub fn restore(&mut self, file: &FileState) {
        for (name, path) in &file.columns {
            let key =
                if file.derived.contains(name) { KeyPath::Derived(name.clone()) } else { KeyPath::Json(path.clone()) };
            self.push(key, name.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, i: usize) -> &Column {
        &self.list[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Column> {
        self.list.iter()
    }

    /// The first `n` columns as a file state records them.
    pub fn committed(&self, n: usize) -> (Vec<(String, Vec<String>)>, Vec<String>) {
        let mut columns = Vec::with_capacity(n);
        let mut derived = Vec::new();
        for c in &self.list[..n] {
            match &c.path {
                KeyPath::Json(segs) => columns.push((c.name.clone(), segs.clone())),
                KeyPath::Derived(name) => {
                    columns.push((c.name.clone(), vec![name.clone()]));
                    derived.push(c.name.clone());
                }
            }
        }
        (columns, derived)
    }

    /// Starts mapping the paths of a new batch.
    pub fn begin_page(&mut self) {
        self.page_map.clear();
    }

    /// The column of batch path `path`, or [`NONE`] if it has none yet.
    pub fn column_of(&mut self, batch: &Batch, path: u32) -> u32 {
        let i = path as usize;
        if i >= self.page_map.len() {
            self.page_map.resize(i + 1, UNKNOWN);
        }
        if self.page_map[i] == UNKNOWN {
            self.page_map[i] = self.by_path.get(batch.path(path)).copied().unwrap_or(NONE);
        }
        self.page_map[i]
    }

    /// The column of batch path `path`, registered if new.
    pub fn register(&mut self, batch: &Batch, path: u32) -> u32 {
        let col = self.column_of(batch, path);
        if col != NONE {
            return col;
        }
        let key = parse::decode(batch.path(path));
        let name = match &key {
            KeyPath::Derived(name) => name.clone(),
            KeyPath::Json(segs) => self.free_name(&name_of(segs)),
        };
        let col = self.push(key, name);
        self.page_map[path as usize] = col;
        col
    }

    fn push(&mut self, path: KeyPath, name: String) -> u32 {
        let encoded = match &path {
            KeyPath::Json(segs) => parse::encode(&segs.iter().map(String::as_str).collect::<Vec<_>>()),
            KeyPath::Derived(name) => parse::encode_derived(name),
        };
        let i = self.list.len() as u32;
        self.taken.insert(name.clone());
        let name_hash = hashing::stable(0, name.as_bytes());
        self.list.push(Column { name, path, name_hash });
        self.by_path.insert(encoded, i);
        i
    }

    fn free_name(&self, base: &str) -> String {
        let free = |n: &str| !self.taken.contains(n) && !self.reserved.contains(n);
        if free(base) {
            return base.to_string();
        }
        (2..).map(|n| format!("{base}__{n}")).find(|n| free(n)).expect("a free name")
    }
}

/// The name of JSON key path `segs`.
fn name_of(segs: &[String]) -> String {
    segs.join("_").chars().map(|c| if c.is_control() || c == '\u{feff}' { '_' } else { c }).collect()
}

/// The contribution of one non-empty cell to a row's fingerprint.
pub fn cell_hash(name_hash: u64, value: &[u8]) -> u64 {
    hashing::stable(name_hash, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::parse::{parse, Spec};

    fn names(doc: &str, cols: &mut Columns) -> Vec<String> {
        let mut batch = Batch::default();
        parse(format!(r#"{{"data":[{doc}]}}"#).as_bytes(), &Spec::records_in(&["data"]), &mut batch).unwrap();
        cols.begin_page();
        let paths: Vec<u32> = batch.record(0).map(|c| c.path).collect();
        for p in paths {
            cols.register(&batch, p);
        }
        cols.iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn colliding_paths_get_distinct_names() {
        let mut cols = Columns::new(&[]);
        let got = names(r#"{"language_id":"4","language":{"id":"4"},"_synced_at":"x","a_b":1,"a":{"b":2}}"#, &mut cols);
        assert_eq!(got, ["language_id", "language_id__2", "_synced_at__2", "a_b", "a_b__2"]);
        // Restoring keeps the names, whatever order paths come in later.
        let (columns, derived) = cols.committed(cols.len());
        let mut again = Columns::new(&[]);
        again.restore(&FileState { columns, derived, ..FileState::default() });
        let got = names(r#"{"language":{"id":"5"},"language_id":"5","x__2":1}"#, &mut again);
        assert_eq!(got.len(), 6);
        assert_eq!(got[5], "x__2");
    }

    #[test]
    fn odd_keys_get_deterministic_names() {
        let mut cols = Columns::new(&[]);
        let got = names(r#"{"id":"3","":{"id":"999"},"a\u0000b":1,"a_b":2,"\ufeffid":4,"x":{"":5},"_":7}"#, &mut cols);
        assert_eq!(got, ["id", "_id", "a_b", "a_b__2", "_id__2", "x_", "_"]);
    }

    #[test]
    fn derived_columns_keep_their_names_and_api_keys_give_way() {
        let mut cols = Columns::new(&["level"]);
        let mut batch = Batch::default();
        parse(br#"{"data":[{"id":1,"level":"api"}]}"#, &Spec::records_in(&["data"]), &mut batch).unwrap();
        let mut out = Batch::default();
        out.begin_record();
        out.copy_record(&batch, 0);
        out.push_derived("level", b"3");
        out.end_record();
        cols.begin_page();
        let paths: Vec<u32> = out.record(0).map(|c| c.path).collect();
        for p in paths {
            cols.register(&out, p);
        }
        let got: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(got, ["id", "level__2", "level"]);
        let (columns, derived) = cols.committed(3);
        assert_eq!(derived, ["level"]);
        let mut again = Columns::new(&["level"]);
        again.restore(&FileState { columns, derived, ..FileState::default() });
        again.begin_page();
        assert_eq!(again.column_of(&out, out.derived_id("level").unwrap()), 2);
        assert_eq!(again.column_of(&out, out.path_id(&["level"]).unwrap()), 1);
    }
}
