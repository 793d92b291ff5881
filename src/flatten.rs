//! The columns of a table and the buffer of flattened rows for one page.
//!
//! A nested key path becomes one column: `fields.name` → `fields_name`. Columns are
//! identified by their path, not their name, so two paths that join to the same name
//! (campaign `language_id` and `language.id`) stay apart: the later one gets the
//! first free name of `NAME__2`, `NAME__3`, …. Arrays become their compact JSON text,
//! null a registered but empty cell, an empty object nothing.
//!
//! Rows of a page live in one value buffer and one cell list that are reused from
//! page to page: flattening a record allocates nothing once the columns are known.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::json::{self, Kind, Parser};

/// The tool's own columns, always last, in this order.
pub const TOOL_COLUMNS: [&str; 2] = ["_synced_at", "_deleted"];

/// Separates path segments in a column's identity; JSON keys do not contain NUL in practice.
const SEP: u8 = 0;

/// How the connector's known timestamp fields arrive on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// MailerLite: `2025-02-11 09:41:27`, in UTC.
    SpaceSeparatedUtc,
    /// Paligo: Unix seconds as a JSON integer.
    UnixSeconds,
}

/// One data column: its CSV name and its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub path: Vec<String>,
    is_time: bool,
}

/// The data columns of a table in first-seen order.
#[derive(Debug, Clone)]
pub struct Columns {
    list: Vec<Column>,
    /// Per column, its path identity (as in `by_path`), to check a guess cheaply.
    keys: Vec<Box<[u8]>>,
    by_path: HashMap<Box<[u8]>, u32, BuildHasherDefault<FxHasher>>,
    names: HashSet<String>,
    time_keys: &'static [&'static str],
    time_format: Option<TimeFormat>,
}

impl Columns {
    /// Columns for a table whose top-level `time_keys` are timestamps in `time_format`.
    pub fn new(time_keys: &'static [&'static str], time_format: Option<TimeFormat>) -> Columns {
        let names = TOOL_COLUMNS.iter().map(|s| s.to_string()).collect();
        Columns { list: Vec::new(), keys: Vec::new(), by_path: HashMap::default(), names, time_keys, time_format }
    }

    /// Restores columns committed earlier, keeping their names.
    pub fn restore(&mut self, committed: &[(String, Vec<String>)]) {
        for (name, path) in committed {
            let segs: Vec<&str> = path.iter().map(String::as_str).collect();
            self.insert(&path_key(&segs), Some(name.clone()));
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

    /// The index of the column for key path `path`, if it was seen.
    pub fn position_of(&self, path: &[&str]) -> Option<usize> {
        self.by_path.get(path_key(path).as_slice()).map(|&i| i as usize)
    }

    /// The column for `path` (segments joined by NUL), added if new. Records of a
    /// page share their shape, so `guess` (the column at the same place in the
    /// previous record) is usually right and spares the hash lookup.
    fn lookup(&mut self, path: &[u8], guess: Option<u32>) -> (u32, bool) {
        if let Some(g) = guess.filter(|&g| self.keys.get(g as usize).is_some_and(|k| **k == *path)) {
            return (g, self.list[g as usize].is_time);
        }
        if let Some(&i) = self.by_path.get(path) {
            return (i, self.list[i as usize].is_time);
        }
        let i = self.insert(path, None);
        (i, self.list[i as usize].is_time)
    }

    fn insert(&mut self, path: &[u8], name: Option<String>) -> u32 {
        let segs: Vec<String> = path.split(|&b| b == SEP).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
        let name = name.unwrap_or_else(|| self.free_name(&segs.join("_")));
        let is_time = self.time_format.is_some() && segs.len() == 1 && self.time_keys.contains(&segs[0].as_str());
        self.names.insert(name.clone());
        let i = self.list.len() as u32;
        self.list.push(Column { name, path: segs, is_time });
        self.keys.push(path.into());
        self.by_path.insert(path.into(), i);
        i
    }

    fn free_name(&self, base: &str) -> String {
        if !self.names.contains(base) {
            return base.to_string();
        }
        (2..).map(|n| format!("{base}__{n}")).find(|n| !self.names.contains(n)).unwrap()
    }
}

/// The identity of a key path.
pub fn path_key(segs: &[&str]) -> Vec<u8> {
    segs.join("\0").into_bytes()
}

/// One non-empty cell of a row: a column and a range of the page's value buffer.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub col: u32,
    start: u32,
    end: u32,
}

/// A position in a [`Page`].
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    values: usize,
    cells: usize,
    rows: usize,
}

/// The flattened rows of one page.
#[derive(Debug, Default)]
pub struct Page {
    values: Vec<u8>,
    cells: Vec<Cell>,
    row_ends: Vec<usize>,
    path: Vec<u8>,
    key: Vec<u8>,
    /// Columns of the leaves of the previous record, in order, and of this one so far.
    shape: Vec<u32>,
    next_shape: Vec<u32>,
}

impl Page {
    pub fn clear(&mut self) {
        self.values.clear();
        self.cells.clear();
        self.row_ends.clear();
    }

    pub fn len(&self) -> usize {
        self.row_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.row_ends.is_empty()
    }

    /// The cells of row `i`, in the order they were added.
    pub fn row(&self, i: usize) -> &[Cell] {
        let start = if i == 0 { 0 } else { self.row_ends[i - 1] };
        &self.cells[start..self.row_ends[i]]
    }

    pub fn value(&self, cell: &Cell) -> &[u8] {
        &self.values[cell.start as usize..cell.end as usize]
    }

    /// Ends the row being built.
    pub fn end_row(&mut self) {
        self.row_ends.push(self.cells.len());
    }

    /// Where the page stands now, to [`Page::rollback`] to if a body fails to parse.
    pub fn mark(&self) -> Mark {
        Mark { values: self.values.len(), cells: self.cells.len(), rows: self.row_ends.len() }
    }

    pub fn rollback(&mut self, mark: Mark) {
        self.values.truncate(mark.values);
        self.cells.truncate(mark.cells);
        self.row_ends.truncate(mark.rows);
    }

    /// Adds a cell to the row being built; an empty value leaves the cell empty.
    pub fn push(&mut self, cols: &mut Columns, path: &[&str], value: &[u8]) {
        let (col, _) = cols.lookup(&path_key(path), None);
        let start = self.values.len();
        self.values.extend_from_slice(value);
        self.push_cell(col, start);
    }

    fn push_cell(&mut self, col: u32, start: usize) {
        if self.values.len() > start {
            self.cells.push(Cell { col, start: start as u32, end: self.values.len() as u32 });
        }
    }

    /// Copies the value of column `path` in the row being built into `out`.
    pub fn pending_value(&self, cols: &Columns, path: &[&str], out: &mut Vec<u8>) -> bool {
        let Some(&col) = cols.by_path.get(path_key(path).as_slice()) else { return false };
        let start = self.row_ends.last().copied().unwrap_or(0);
        match self.cells[start..].iter().rfind(|c| c.col == col) {
            Some(c) => {
                out.extend_from_slice(self.value(c));
                true
            }
            None => false,
        }
    }

    /// Flattens the object at the parser into the row being built.
    pub fn flatten_record(&mut self, p: &mut Parser, cols: &mut Columns) -> json::Result<()> {
        self.path.clear();
        self.next_shape.clear();
        let r = self.flatten_object(p, cols);
        std::mem::swap(&mut self.shape, &mut self.next_shape);
        r
    }

    fn flatten_object(&mut self, p: &mut Parser, cols: &mut Columns) -> json::Result<()> {
        p.begin_object()?;
        let base = self.path.len();
        let mut key = std::mem::take(&mut self.key);
        while p.next_key(&mut key)? {
            if base > 0 {
                self.path.push(SEP);
            }
            self.path.extend_from_slice(&key);
            let r = self.flatten_value(p, cols);
            self.path.truncate(base);
            r?;
        }
        self.key = key;
        Ok(())
    }

    fn flatten_value(&mut self, p: &mut Parser, cols: &mut Columns) -> json::Result<()> {
        let kind = p.peek()?;
        if kind == Kind::Object {
            return self.flatten_object(p, cols);
        }
        let guess = self.shape.get(self.next_shape.len()).copied();
        let (col, is_time) = cols.lookup(&self.path, guess);
        self.next_shape.push(col);
        let start = self.values.len();
        match kind {
            Kind::Object => unreachable!(),
            Kind::Array => json::compact_into(p.skip()?, &mut self.values),
            Kind::String => {
                p.string_into(&mut self.values)?;
                if is_time && cols.time_format == Some(TimeFormat::SpaceSeparatedUtc) {
                    space_separated_to_rfc3339(&mut self.values, start);
                }
            }
            Kind::Number => {
                let raw = p.number()?;
                if is_time && cols.time_format == Some(TimeFormat::UnixSeconds) {
                    unix_to_rfc3339(raw, &mut self.values);
                } else {
                    self.values.extend_from_slice(raw);
                }
            }
            Kind::Bool => self.values.extend_from_slice(p.boolean()?),
            Kind::Null => p.null()?,
        }
        self.push_cell(col, start);
        Ok(())
    }
}

/// `2025-02-11 09:41:27` → `2025-02-11T09:41:27Z`; anything else is left as sent.
fn space_separated_to_rfc3339(values: &mut Vec<u8>, start: usize) {
    let v = &values[start..];
    let shape = v.len() == 19
        && v.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if shape {
        values[start + 10] = b'T';
        values.push(b'Z');
    }
}

/// Unix seconds → RFC 3339 UTC; text that is not an integer in range is kept as sent.
fn unix_to_rfc3339(raw: &[u8], out: &mut Vec<u8>) {
    use std::io::Write;
    let secs = std::str::from_utf8(raw).ok().and_then(|s| s.parse::<i64>().ok());
    match secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok()) {
        Some(t) if (0..=9999).contains(&t.year()) => {
            let _ = write!(
                out,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
        }
        _ => out.extend_from_slice(raw),
    }
}

/// Formats a time as RFC 3339 UTC with whole seconds.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let mut out = Vec::new();
    unix_to_rfc3339(t.unix_timestamp().to_string().as_bytes(), &mut out);
    String::from_utf8(out).expect("ascii")
}

/// FxHash (rustc's): a fast hash for short keys that only we choose.
#[derive(Default)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        for &b in chunks.remainder() {
            self.add(b as u64);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flatten(doc: &str, cols: &mut Columns) -> Vec<(String, String)> {
        let mut page = Page::default();
        page.flatten_record(&mut Parser::new(doc.as_bytes()), cols).unwrap();
        page.end_row();
        page.row(0)
            .iter()
            .map(|c| {
                let name = cols.get(c.col as usize).name.clone();
                (name, String::from_utf8(page.value(c).to_vec()).unwrap())
            })
            .collect()
    }

    #[test]
    fn nested_objects_become_underscore_columns() {
        let mut cols = Columns::new(&["created_at"], Some(TimeFormat::SpaceSeparatedUtc));
        let row = flatten(
            r#"{"id":"1","open_rate":{"float":0.50,"string":"50%"},"created_at":"2025-02-11 09:41:27",
               "tags":[ 1, {"a" : "b c"} ],"phone":null,"empty":{}}"#,
            &mut cols,
        );
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "open_rate_float", "open_rate_string", "created_at", "tags", "phone"]);
        assert_eq!(
            row,
            [
                ("id".into(), "1".into()),
                ("open_rate_float".into(), "0.50".into()),
                ("open_rate_string".into(), "50%".into()),
                ("created_at".into(), "2025-02-11T09:41:27Z".into()),
                ("tags".into(), r#"[1,{"a":"b c"}]"#.into()),
            ]
        );
    }

    #[test]
    fn colliding_paths_get_distinct_names() {
        let mut cols = Columns::new(&[], None);
        flatten(r#"{"language_id":"4","language":{"id":"4"},"_synced_at":"x"}"#, &mut cols);
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["language_id", "language_id__2", "_synced_at__2"]);
        // The order of first sight decides, and restoring keeps the names.
        let committed: Vec<_> = cols.iter().map(|c| (c.name.clone(), c.path.clone())).collect();
        let mut again = Columns::new(&[], None);
        again.restore(&committed);
        flatten(r#"{"language":{"id":"5"},"language_id":"5"}"#, &mut again);
        assert_eq!(again.len(), 3);
        assert_eq!(again.get(1).path, ["language", "id"]);
    }

    #[test]
    fn unix_seconds_become_rfc3339() {
        let mut cols = Columns::new(&["created_at", "end_date"], Some(TimeFormat::UnixSeconds));
        let row = flatten(r#"{"created_at":1731400000,"end_date":null,"n":1731400000}"#, &mut cols);
        assert_eq!(row[0].1, "2024-11-12T08:26:40Z");
        assert_eq!(row[1].1, "1731400000");
    }

    #[test]
    fn unusual_timestamps_pass_through() {
        let mut cols = Columns::new(&["t"], Some(TimeFormat::SpaceSeparatedUtc));
        assert_eq!(flatten(r#"{"t":"2025-02-11T09:41:27Z"}"#, &mut cols)[0].1, "2025-02-11T09:41:27Z");
        assert_eq!(flatten(r#"{"t":""}"#, &mut cols).len(), 0);
    }
}
