//! Reading table files back and comparing them with the mock's own records, value by
//! value, through an independent flattener written from the output contract.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

/// A CSV file read back.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub fn read_table(path: &Path) -> Table {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r.records().map(|rec| rec.unwrap().iter().map(String::from).collect()).collect();
    Table { header, rows }
}

/// CSV column name → key path, as committed in state.json.
pub fn column_paths(dir: &Path, table: &str) -> HashMap<String, Vec<String>> {
    let state: Value = serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let cols = state["tables"][table]["file"]["columns"].as_array().unwrap_or_else(|| panic!("no columns for {table}"));
    cols.iter()
        .map(|c| {
            let name = c[0].as_str().unwrap().to_string();
            let path = c[1].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
            (name, path)
        })
        .collect()
}

/// The non-empty cells a record must produce, keyed by key path.
pub fn flatten(record: &Value, timestamps: &[&str], unix: bool) -> BTreeMap<Vec<String>, String> {
    let mut leaves = Vec::new();
    leaves_of(record, &mut Vec::new(), &mut leaves);
    let mut out: BTreeMap<Vec<String>, String> = leaves.into_iter().map(|(p, v)| (p, unmark(&v))).collect();
    for (path, v) in out.iter_mut() {
        if path.len() == 1 && timestamps.contains(&path[0].as_str()) && !v.is_empty() {
            *v = timestamp(v, unix);
        }
    }
    out.retain(|_, v| !v.is_empty());
    out
}

/// The leaves of `v` below `path`: (key path, cell text), in the order serde_json
/// keeps them.
pub fn leaves_of(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let cell = match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(k.clone());
                leaves_of(child, path, out);
                path.pop();
            }
            return;
        }
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(_) => serde_json::to_string(v).unwrap(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
    };
    out.push((path.clone(), cell));
}

fn timestamp(v: &str, unix: bool) -> String {
    if v.is_empty() {
        return String::new();
    }
    if unix {
        let secs: i64 = v.parse().unwrap_or_else(|_| panic!("not unix seconds: {v}"));
        let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
        return format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
    }
    if v.len() == 19 && v.as_bytes()[10] == b' ' {
        format!("{}T{}Z", &v[..10], &v[11..])
    } else {
        v.to_string()
    }
}

/// The rows of a table file by primary key, each as key path → non-empty value.
/// Panics if a key appears twice or a row is a tombstone (the file must be compacted).
pub fn rows_by_key(dir: &Path, table: &str, pk: &[&str]) -> BTreeMap<String, BTreeMap<Vec<String>, String>> {
    let t = read_table(&dir.join(format!("{table}.csv")));
    let paths = column_paths(dir, table);
    let n = t.header.len();
    assert_eq!(&t.header[n - 2..], ["_synced_at", "_deleted"], "{table}: tool columns last");
    let key_idx: Vec<usize> = pk.iter().map(|k| t.header.iter().position(|h| h == k).unwrap()).collect();
    let mut out = BTreeMap::new();
    for row in &t.rows {
        assert_eq!(row.len(), n, "{table}: row width");
        assert_eq!(row[n - 1], "false", "{table}: compacted files hold no tombstones");
        let key = key_idx.iter().map(|&i| row[i].as_str()).collect::<Vec<_>>().join(",");
        let cells = t.header[..n - 2]
            .iter()
            .zip(row)
            .filter(|(_, v)| !v.is_empty())
            .map(|(h, v)| {
                (paths.get(h).unwrap_or_else(|| panic!("{table}: column {h} not in state")).clone(), v.clone())
            })
            .collect();
        assert!(out.insert(key.clone(), cells).is_none(), "{table}: key {key} twice");
    }
    out
}

/// Asserts that `table` in `dir` holds exactly `records`, record by record.
pub fn assert_table(dir: &Path, connector: &str, table: &str, records: &[String]) {
    let spec = api2csv::connector::tables(connector).unwrap().iter().find(|t| t.name == table).unwrap();
    let unix = connector == "paligo";
    let got = rows_by_key(dir, table, spec.primary_key);
    let mut want = BTreeMap::new();
    for text in records {
        // Numbers are kept as sent: read as marked strings (see `mark_numbers`).
        let v: Value = serde_json::from_str(&mark_numbers(text)).unwrap();
        let key = spec.primary_key.iter().map(|k| scalar(&v[k])).collect::<Vec<_>>().join(",");
        want.insert(key, flatten(&v, spec.timestamps, unix));
    }
    assert_eq!(got.len(), want.len(), "{table}: number of records");
    for (key, cells) in &want {
        let Some(row) = got.get(key) else { panic!("{table}: record {key} missing") };
        if row != cells {
            for (p, v) in cells {
                assert_eq!(row.get(p), Some(v), "{table} {key}: {p:?}");
            }
            for (p, v) in row {
                assert_eq!(cells.get(p), Some(v), "{table} {key}: {p:?} should be empty");
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => unmark(s),
        other => other.to_string(),
    }
}

/// Marks a number turned into a string by [`mark_numbers`].
pub const MARK: &str = "\u{1}N";

/// `body` (valid JSON) with every number outside strings turned into the string
/// [`MARK`] + its token, so that the oracle, which rewrites a number's exponent
/// (`1E22` as `1e+22`), keeps the token as sent; [`unmark`] turns them back.
pub fn mark_numbers(body: &str) -> String {
    let b = body.as_bytes();
    let mut out = String::new();
    let (mut i, mut in_string) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_string {
            if c == b'\\' {
                out.push_str(&body[i..i + 2]);
                i += 2;
                continue;
            }
            in_string = c != b'"';
        } else if c == b'"' {
            in_string = true;
        } else if c == b'-' || c.is_ascii_digit() {
            let n = b[i..].iter().take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).count();
            out.push_str(&format!("\"\\u0001N{}\"", &body[i..i + n]));
            i += n;
            continue;
        }
        let len = body[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&body[i..i + len]);
        i += len;
    }
    out
}

/// A leaf's text from the oracle with its numbers as sent.
pub fn unmark(text: &str) -> String {
    if let Some(token) = text.strip_prefix(MARK) {
        return token.to_string();
    }
    let quoted = "\"\\u0001N";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(quoted) {
        out.push_str(&rest[..at]);
        let token = &rest[at + quoted.len()..];
        let end = token.find('"').expect("a marked number ends");
        out.push_str(&token[..end]);
        rest = &token[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Data rows in a table file (before compaction: every appended row).
pub fn row_count(dir: &Path, table: &str) -> usize {
    read_table(&dir.join(format!("{table}.csv"))).rows.len()
}
