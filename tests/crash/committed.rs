//! What an output directory has committed, read from its files and `state.json` the
//! way `state.rs` says a start must read them, without the code under test: the
//! table file's first `file_len` bytes with their CRC; or, while a replacement is
//! pending, the side file or the target if either holds exactly what `replace`
//! describes, else the old committed bytes. After every fault one of these must hold,
//! and the rows must follow from those committed before the fault.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use api2csv::store::state::{FileState, ReplaceKind, State};

/// A row as column → value, empty cells left out (so a widened row equals itself).
pub type Row = BTreeMap<String, String>;

#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub rows: BTreeMap<String, Vec<Row>>,
    /// Committed length of each table file.
    pub len: BTreeMap<String, u64>,
    /// A sync is under way (interrupted).
    pub run: bool,
}

/// How the rows of a table may move on across a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Appends and widening only: every committed row stays, in order.
    Grow,
    /// Or a compaction of the committed rows.
    Compact,
    /// Or a compaction of whatever a sync committed first (`sync --compact`).
    SyncCompact,
    /// Or a `--full-refresh` rebuild: one row per key, and never an empty file.
    Refresh,
}

/// The committed rows of `dir`; panics if `state.json` does not parse or a file
/// does not hold what it says was committed.
pub fn committed(dir: &Path) -> Committed {
    let state = match State::load(dir) {
        Ok(Some(s)) => s,
        Ok(None) => return Committed::default(),
        Err(e) => panic!("state.json does not parse: {e}\n{}", fs::read_to_string(dir.join("state.json")).unwrap()),
    };
    let mut out = Committed { run: state.run.is_some(), ..Committed::default() };
    for (name, t) in &state.tables {
        let table = dir.join(format!("{name}.csv"));
        let refresh = dir.join(format!("{name}.csv.refresh"));
        let (file, path) = match &t.replace {
            Some(r) => {
                let (side, target) = match r.kind {
                    ReplaceKind::Widen | ReplaceKind::Compact => (dir.join(format!("{name}.csv.new")), table.clone()),
                    ReplaceKind::WidenRefresh => (dir.join(format!("{name}.csv.refresh.new")), refresh.clone()),
                    ReplaceKind::Refresh => (refresh.clone(), table.clone()),
                };
                let old = match r.kind {
                    ReplaceKind::WidenRefresh => t.refresh.clone().unwrap_or_default(),
                    _ => t.file.clone(),
                };
                if exactly(&side, &r.file) || exactly(&target, &r.file) {
                    let path = if exactly(&side, &r.file) { side } else { target.clone() };
                    assert_holds(&path, &r.file, name);
                    (r.file.clone(), path)
                } else {
                    assert_holds(&target, &old, name);
                    (old, target)
                }
            }
            None => (t.file.clone(), table.clone()),
        };
        let refreshing = t.replace.as_ref().is_some_and(|r| r.kind == ReplaceKind::WidenRefresh);
        let (file, path) = if refreshing { (t.file.clone(), table) } else { (file, path) };
        assert_holds(&path, &file, name);
        let rebuilt = t.replace.as_ref().is_some_and(|r| r.kind == ReplaceKind::Refresh);
        if let (Some(r), false) = (&t.refresh, refreshing || rebuilt) {
            assert_holds(&refresh, r, name);
        }
        out.rows.insert(name.clone(), rows(&path, file.file_len));
        out.len.insert(name.clone(), file.file_len);
    }
    out
}

/// `path` has exactly the bytes `file` describes.
fn exactly(path: &Path, file: &FileState) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() == file.file_len) && crc(path, file.file_len) == file.crc
}

/// `path` starts with the bytes `file` describes.
fn assert_holds(path: &Path, file: &FileState, table: &str) {
    if file.file_len == 0 {
        return;
    }
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(len >= file.file_len, "{table}: {} has {len} bytes, {} were committed", path.display(), file.file_len);
    assert_eq!(crc(path, file.file_len), file.crc, "{table}: {} lost its committed bytes", path.display());
}

fn crc(path: &Path, len: u64) -> u32 {
    let bytes = fs::read(path).unwrap_or_default();
    crc32fast::hash(&bytes[..(len as usize).min(bytes.len())])
}

/// The rows in the first `len` bytes of a table file.
pub fn rows(path: &Path, len: u64) -> Vec<Row> {
    if len == 0 {
        return Vec::new();
    }
    let bytes = fs::read(path).unwrap();
    let mut r = csv::ReaderBuilder::new().from_reader(&bytes[..len as usize]);
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header.iter().zip(rec.iter()).filter(|(_, v)| !v.is_empty()).map(|(h, v)| (h.clone(), v.into())).collect()
        })
        .collect()
}

/// Asserts that what `after` commits follows from `before` by `change`.
pub fn assert_follows(connector: &str, before: &Committed, after: &Committed, change: Change, step: &str) {
    for (table, old) in &before.rows {
        let new = after.rows.get(table).map(Vec::as_slice).unwrap_or(&[]);
        let kept = new.len() >= old.len() && new[..old.len()] == old[..];
        if kept && change != Change::Refresh {
            let (b, a) = (before.len[table], after.len.get(table).copied().unwrap_or(0));
            assert!(a >= b, "{step}: {table} shrank from {b} to {a} bytes");
            continue;
        }
        let pk = primary_key(connector, table);
        let ok = match change {
            Change::Grow => false,
            Change::Compact => kept || new == compact(old, pk),
            Change::SyncCompact => kept || compacted(new, pk),
            Change::Refresh => kept || (compacted(new, pk) && !new.is_empty()),
        };
        assert!(ok, "{step}: the committed rows of {table} do not follow from those before ({change:?}):\nbefore: {old:?}\nafter: {new:?}");
        if before.len[table] > 0 {
            assert!(after.len.get(table).is_some_and(|&l| l > 0), "{step}: {table} became empty");
        }
    }
}

/// Asserts that no record of the account has a tombstone as its last row (a record
/// taken for deleted) and, when no sync is under way, that every record has a row.
/// `truth` gives the account's records per table.
pub fn assert_live(connector: &str, c: &Committed, truth: &dyn Fn(&str) -> Vec<String>, step: &str) {
    for (table, rows) in &c.rows {
        let pk = primary_key(connector, table);
        let last: HashMap<String, &Row> = rows.iter().map(|r| (key(r, pk), r)).collect();
        for record in truth(table) {
            let v: serde_json::Value = serde_json::from_str(&record).unwrap();
            let scalar = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), String::from);
            let k = pk.iter().map(|p| scalar(&v[p])).collect::<Vec<_>>().join(",");
            match last.get(&k) {
                Some(r) if tombstone(r) => panic!("{step}: {table} {k} has a tombstone but exists"),
                None if !c.run => panic!("{step}: {table} {k} is missing, and no sync is under way"),
                _ => {}
            }
        }
    }
}

pub fn primary_key(connector: &str, table: &str) -> &'static [&'static str] {
    api2csv::connector::tables(connector).unwrap().iter().find(|t| t.name == table).unwrap().primary_key
}

fn key(row: &Row, pk: &[&str]) -> String {
    pk.iter().map(|k| row.get(*k).map_or("", String::as_str)).collect::<Vec<_>>().join(",")
}

fn tombstone(row: &Row) -> bool {
    row.get("_deleted").is_some_and(|d| d == "true")
}

pub fn tombstone_count(rows: &[Row]) -> usize {
    rows.iter().filter(|r| tombstone(r)).count()
}

/// One row per key, its last, without tombstoned keys, in the order of those rows.
pub fn compact(rows: &[Row], pk: &[&str]) -> Vec<Row> {
    let last: HashMap<String, usize> = rows.iter().enumerate().map(|(i, r)| (key(r, pk), i)).collect();
    rows.iter().enumerate().filter(|(i, r)| last[&key(r, pk)] == *i && !tombstone(r)).map(|(_, r)| r.clone()).collect()
}

fn compacted(rows: &[Row], pk: &[&str]) -> bool {
    compact(rows, pk) == rows
}

/// Asserts no key has two consecutive rows alike but for `_synced_at`: a row written
/// twice (a tombstone included) where the changelog should have it once.
pub fn assert_no_repeats(dir: &Path, connector: &str) {
    for spec in api2csv::connector::tables(connector).unwrap() {
        let path = dir.join(format!("{}.csv", spec.name));
        let Ok(meta) = fs::metadata(&path) else { continue };
        let mut last: HashMap<String, Row> = HashMap::new();
        for mut row in rows(&path, meta.len()) {
            row.remove("_synced_at");
            let k = key(&row, spec.primary_key);
            if last.get(&k) == Some(&row) {
                panic!("{}: key {k} has the same row twice in a row: {row:?}", spec.name);
            }
            last.insert(k, row);
        }
    }
}

/// Keys given a tombstone in the rows after the first `skip` of `table`.
pub fn tombstones(dir: &Path, connector: &str, table: &str, skip: usize) -> Vec<String> {
    let path = dir.join(format!("{table}.csv"));
    let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let pk = primary_key(connector, table);
    rows(&path, len).iter().skip(skip).filter(|r| tombstone(r)).map(|r| key(r, pk)).collect()
}

/// Copies the files of directory `from` into a new directory `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Files a finished run must not leave behind: side files and temp files.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let stray = |p: &PathBuf| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.ends_with(".new") || name.ends_with(".refresh") || name.ends_with(".tmp")
    };
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(stray).collect()
}
