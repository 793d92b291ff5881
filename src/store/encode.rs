//! Rows encoded as CSV, page by page, into a buffer the committer appends: the
//! header, RFC 4180 quoting, and the guard of a spreadsheet-safe file.

use crate::engine::columns::TOOL_COLUMNS;

/// A UTF-8 byte order mark, which Excel wants at the start of a CSV file.
pub(crate) const BOM: &[u8] = b"\xef\xbb\xbf";

/// Whether a cell is guarded in a spreadsheet-safe file: a value a spreadsheet would
/// run as a formula (OWASP's CSV-injection rule), and one that starts with `'`
/// already, which gets one more so that the guard can always be taken off again
/// (`=2` is written `'=2`, `'=2` is written `''=2`).
pub fn needs_guard(v: &[u8]) -> bool {
    matches!(v.first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\''))
}

/// `value` as written: with a leading `'` if it needs a guard and `safe` is on.
pub fn written<'v>(value: &'v [u8], safe: bool, scratch: &'v mut Vec<u8>) -> &'v [u8] {
    if safe && needs_guard(value) {
        scratch.clear();
        scratch.push(b'\'');
        scratch.extend_from_slice(value);
        scratch
    } else {
        value
    }
}

/// `cell` as the API sent it, from a file written with `safe`: without the guard
/// [`written`] added, exactly. (In a file written before `'` was guarded too, a
/// value the API sent as `'=…` reads back as `=…`: that file cannot tell them apart.)
pub fn unguarded(cell: &[u8], safe: bool) -> &[u8] {
    match cell.split_first() {
        Some((b'\'', rest)) if safe && needs_guard(rest) => rest,
        _ => cell,
    }
}

/// The header line of a file with data columns `names`. Names are never guarded:
/// they are keys the API chose, and reading the file back must give them exactly.
pub fn header_of<'n>(names: impl Iterator<Item = &'n str>, bom: bool) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    for name in names.chain(TOOL_COLUMNS) {
        w.write_field(name).expect("writes to memory");
    }
    w.write_record(None::<&[u8]>).expect("writes to memory");
    let mut out = if bom { BOM.to_vec() } else { Vec::new() };
    out.extend(w.into_inner().expect("writes to memory"));
    out
}

/// Appends one CSV field to `out`, as the csv crate's writer does with its defaults
/// (RFC 4180: quoted when it holds `,`, `"`, CR or LF; a `"` inside doubled). Written
/// out because it runs for every cell of every row, and the crate's buffered writer
/// cannot hand over its bytes without being rebuilt; `encodes_as_the_csv_crate_does`
/// holds it against the crate byte for byte.
pub(super) fn push_field(out: &mut Vec<u8>, v: &[u8]) {
    if !needs_quotes(v) {
        out.extend_from_slice(v);
        return;
    }
    out.push(b'"');
    let mut rest = v;
    while let Some(i) = rest.iter().position(|&b| b == b'"') {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'"');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// True when `v` holds a byte that makes a CSV field need quotes; eight at a time.
fn needs_quotes(v: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has = |w: u64, b: u8| (w ^ (ONES * b as u64)).wrapping_sub(ONES) & !(w ^ (ONES * b as u64)) & HIGHS;
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        if has(w, b',') | has(w, b'"') | has(w, b'\n') | has(w, b'\r') != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
}

/// Encodes rows into CSV bytes for the committer to append, buffers reused.
pub struct Encoder {
    out: Vec<u8>,
    /// What ends each row of the page: its `_synced_at` and `_deleted` fields.
    tail: Vec<u8>,
    scratch: Vec<u8>,
    safe: bool,
}

impl Encoder {
    pub fn new(safe: bool) -> Encoder {
        Encoder { out: Vec::new(), tail: Vec::new(), scratch: Vec::new(), safe }
    }

    /// Appends raw bytes (a header) to the buffer.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Starts the rows of a page synced at `synced_at`: their tool columns are
    /// encoded once, for all of them.
    pub fn begin_page(&mut self, synced_at: &str) {
        self.tail.clear();
        push_field(&mut self.tail, synced_at.as_bytes());
        self.tail.extend_from_slice(b",false\n");
    }

    /// Appends a row of the page begun last: the value of each data column of the
    /// file, in order (empty where the record has none).
    pub fn row(&mut self, values: &[&[u8]]) {
        for v in values {
            let v = written(v, self.safe, &mut self.scratch);
            push_field(&mut self.out, v);
            self.out.push(b',');
        }
        self.out.extend_from_slice(&self.tail);
    }

    /// Appends a tombstone: the primary key cells `(column, value)` as the API sent
    /// them, `_deleted` true.
    pub fn tombstone(&mut self, key: &[(usize, &[u8])], width: usize, synced_at: &str) {
        for c in 0..width {
            let v = key.iter().find(|(k, _)| *k == c).map_or(&b""[..], |(_, v)| v);
            let v = written(v, self.safe, &mut self.scratch);
            push_field(&mut self.out, v);
            self.out.push(b',');
        }
        push_field(&mut self.out, synced_at.as_bytes());
        self.out.extend_from_slice(b",true\n");
    }

    /// The bytes encoded so far; the encoder starts over with `recycled` as its buffer.
    pub fn take(&mut self, recycled: Vec<u8>) -> Vec<u8> {
        let mut recycled = recycled;
        recycled.clear();
        std::mem::replace(&mut self.out, recycled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_cell_reads_back_as_sent() {
        let mut scratch = Vec::new();
        for v in ["", "1", "-2", "=SUM(A1)", "+x", "@a", "\tx", "\rx", "'", "'1", "a'", "-"] {
            for safe in [false, true] {
                let w = written(v.as_bytes(), safe, &mut scratch).to_vec();
                let guarded = w.len() == v.len() + 1 && w.starts_with(b"'") && &w[1..] == v.as_bytes();
                assert_eq!(guarded, safe && needs_guard(v.as_bytes()), "{v:?}");
                assert_eq!(unguarded(&w, safe), v.as_bytes(), "{v:?}, safe {safe}");
            }
        }
        // Only what the guard could have added is taken off.
        assert_eq!(unguarded(b"'1", true), b"'1");
        assert_eq!(unguarded(b"'-2", false), b"'-2");
    }

    #[test]
    fn the_guard_keeps_distinct_values_distinct() {
        let mut scratch = Vec::new();
        let values = ["=2", "'=2", "''=2", "'", "''", "2", "'2", "-", "'-"];
        let written: Vec<Vec<u8>> = values.iter().map(|v| written(v.as_bytes(), true, &mut scratch).to_vec()).collect();
        assert_eq!(written[..3], [&b"'=2"[..], b"''=2", b"'''=2"]);
        let distinct: std::collections::HashSet<&Vec<u8>> = written.iter().collect();
        assert_eq!(distinct.len(), values.len(), "{written:?}");
        for (v, w) in values.iter().zip(&written) {
            assert_eq!(unguarded(w, true), v.as_bytes());
        }
    }

    #[test]
    fn headers_quote_and_keep_names_as_sent() {
        assert_eq!(header_of(["id", "a,b"].into_iter(), false), b"id,\"a,b\",_synced_at,_deleted\n");
        assert_eq!(&header_of(["=x"].into_iter(), true)[..6], b"\xef\xbb\xbf=x,");
    }

    /// The oracle: the csv crate's writer, over generated fields with every kind of
    /// byte that matters and every length around the eight-byte steps.
    #[test]
    fn encodes_as_the_csv_crate_does() {
        let alphabet: &[&[u8]] = &[b"a", b",", b"\"", b"\n", b"\r", b" ", "é".as_bytes(), b"'", b"\t", b"x"];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut fields: Vec<Vec<u8>> = Vec::new();
            for _ in 0..3 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let len = (seed >> 33) % 20;
                let mut f = Vec::new();
                for i in 0..len {
                    let pick = (seed >> (i % 50)) as usize % alphabet.len();
                    let pick = if (seed >> 60).is_multiple_of(3) { pick } else { 0 };
                    f.extend_from_slice(alphabet[pick]);
                }
                fields.push(f);
            }
            let mut ours = Vec::new();
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    ours.push(b',');
                }
                push_field(&mut ours, f);
            }
            ours.push(b'\n');
            let mut theirs = csv::Writer::from_writer(Vec::new());
            theirs.write_record(&fields).unwrap();
            assert_eq!(ours, theirs.into_inner().unwrap(), "{fields:?}");
        }
    }

    #[test]
    fn encoded_rows_are_their_columns_then_the_tool_columns() {
        let mut e = Encoder::new(true);
        e.begin_page("T");
        e.row(&[b"x", b"=1"]);
        e.row(&[b"", b"a,b"]);
        e.tombstone(&[(0, b"k")], 3, "T");
        assert_eq!(e.take(Vec::new()), b"x,'=1,T,false\n,\"a,b\",T,false\nk,,,T,true\n");
    }
}
