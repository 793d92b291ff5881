//! One CSV file per table on disk: where it is, its committed bytes checked before
//! use (header, length, checksums), and the rewritten copy made when a column
//! appears or a compaction drops rows.
//!
//! Rows are encoded by [`super::encode`] into a buffer that the committer appends
//! and syncs (see `commit.rs`); nothing here appends to a live table file. A rewrite
//! (widening, compaction) goes to a side file that `replace.rs` renames into place.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::engine::columns::TOOL_COLUMNS;
use crate::error::{Error, Result};
use crate::store::encode::{header_of, BOM};
use crate::store::fsio::with_suffix;
use crate::store::hashing::CrcRead;
use crate::store::state::{FileState, ReplaceKind, Target};

/// How much of a rewritten file's end its tail checksum covers.
const TAIL: u64 = 64 << 10;

/// The path of table `name` in `dir`.
pub fn table_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.csv"))
}

/// The file of `target`: the table file or its `--full-refresh` rebuild.
pub fn file_path(dir: &Path, name: &str, target: Target) -> PathBuf {
    match target {
        Target::Table => table_path(dir, name),
        Target::Refresh => with_suffix(&table_path(dir, name), ".refresh"),
    }
}

/// The side file a replacement of `kind` renames, and the file it replaces.
pub fn side_and_target(dir: &Path, name: &str, kind: ReplaceKind) -> (PathBuf, PathBuf) {
    let table = file_path(dir, name, Target::Table);
    let refresh = file_path(dir, name, Target::Refresh);
    match kind {
        ReplaceKind::Widen | ReplaceKind::Compact => (with_suffix(&table, ".new"), table),
        ReplaceKind::WidenRefresh => (with_suffix(&refresh, ".new"), refresh),
        ReplaceKind::Refresh => (refresh, table),
    }
}

/// How a table file differs from what `state.json` committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    Missing,
    Shorter { actual: u64 },
    Header(&'static str),
    Content,
    Range { tail_start: u64 },
    Added { extra: u64 },
}

impl Damage {
    pub fn describe(&self, committed: u64) -> String {
        match self {
            Damage::Missing => "it was deleted".into(),
            Damage::Shorter { actual } => format!("it has {actual} bytes but {committed} were committed"),
            Damage::Header(what) => format!("its header {what}"),
            Damage::Content => "its committed rows differ".into(),
            // Bytes past the committed length after a run that ended.
            Damage::Added { extra } => format!("{extra} bytes were added after its {committed} committed bytes"),
            Damage::Range { tail_start } => {
                format!("state.json commits {committed} bytes of it, but its last commit began at byte {tail_start}")
            }
        }
    }
}

/// Checks `path` against `file`: the number of bytes past the committed length (a
/// page written by a run that died before committing it), or what is wrong.
pub fn check(path: &Path, file: &FileState, bom: bool) -> Result<std::result::Result<u64, Damage>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(if file.is_empty() { Ok(0) } else { Err(Damage::Missing) });
        }
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let actual = f.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    if file.is_empty() {
        return Ok(Ok(actual));
    }
    if actual < file.file_len {
        return Ok(Err(Damage::Shorter { actual }));
    }
    let header = header_of(file.names(), bom);
    let mut start = vec![0; header.len().min(file.file_len as usize)];
    f.read_exact(&mut start).map_err(|e| Error::io("read", path, e))?;
    if start != header {
        return Ok(Err(header_damage(&start, &header)));
    }
    // (0, 0): a state from before checksums were kept; they are computed after this check.
    let known = (file.tail_start, file.tail_crc) != (0, 0);
    if known && file.tail_start >= file.file_len {
        // No commit leaves that: state.json was edited, and its length may cut a row.
        // Unchecked, the file would be cut there before anything failed.
        return Ok(Err(Damage::Range { tail_start: file.tail_start }));
    }
    if known && crc_range(&mut f, path, file.tail_start, file.file_len)? != file.tail_crc {
        return Ok(Err(Damage::Content));
    }
    Ok(Ok(actual - file.file_len))
}

fn header_damage(found: &[u8], expected: &[u8]) -> Damage {
    let found_bom = found.starts_with(BOM);
    let expected_bom = expected.starts_with(BOM);
    if found_bom && !expected_bom {
        Damage::Header("now starts with a byte order mark (a spreadsheet saved it)")
    } else if found.contains(&b'\r') && !expected.contains(&b'\r') {
        Damage::Header("now ends lines with CRLF (a spreadsheet saved it)")
    } else {
        Damage::Header("differs from the one committed")
    }
}

/// The CRC-32 of bytes `start..end` of `path`.
pub fn crc_of(path: &Path, start: u64, end: u64) -> Result<u32> {
    let mut f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    crc_range(&mut f, path, start, end)
}

fn crc_range(f: &mut File, path: &Path, start: u64, end: u64) -> Result<u32> {
    f.seek(SeekFrom::Start(start)).map_err(|e| Error::io("seek", path, e))?;
    let mut left = end.saturating_sub(start);
    let mut reader = CrcRead::new(f.take(left));
    let mut buf = vec![0; 64 << 10];
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        reader.read_exact(&mut buf[..n]).map_err(|e| Error::io("read", path, e))?;
        left -= n as u64;
    }
    Ok(reader.crc())
}

/// Computes the checksums of a file's committed bytes (a file written before
/// api2csv kept them, or one just rewritten): the whole, and the last 64 KiB as tail.
pub fn checksum(path: &Path, file: &mut FileState) -> Result<()> {
    file.crc = crc_of(path, 0, file.file_len)?;
    file.tail_start = file.file_len.saturating_sub(TAIL);
    file.tail_crc = crc_of(path, file.tail_start, file.file_len)?;
    Ok(())
}

/// Rewrites the committed rows of `src` (its first `len` bytes) into `side` under a
/// new header, keeping each row `keep` approves (given its index and cells) and
/// inserting `added` empty cells before the tool columns. Returns the side file's
/// length, rows, CRC and tail, synced.
pub fn rewrite(
    src: &Path,
    len: u64,
    side: &Path,
    header: &[u8],
    added: usize,
    mut keep: impl FnMut(u64, &csv::ByteRecord) -> bool,
) -> Result<FileState> {
    let input = File::open(src).map_err(|e| Error::io("open", src, e))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(input.take(len));
    let out = crate::store::fsio::create_private(side).map_err(|e| Error::io("create", side, e))?;
    let mut out = Crc::new(out);
    out.write_all(header).map_err(|e| Error::io("write", side, e))?;
    let mut writer = csv::WriterBuilder::new().flexible(true).buffer_capacity(1 << 16).from_writer(out);
    let werr = |e: csv::Error| Error::io("write", side, csv_io(e));
    let mut record = csv::ByteRecord::new();
    let (mut i, mut rows) = (0u64, 0u64);
    let bad = |e: csv::Error| Error::State {
        path: src.to_path_buf(),
        detail: format!("committed rows are not valid CSV: {e}"),
    };
    while reader.read_byte_record(&mut record).map_err(bad)? {
        if keep(i, &record) {
            let tools = record.len().saturating_sub(TOOL_COLUMNS.len());
            for f in record.iter().take(tools) {
                writer.write_field(f).map_err(werr)?;
            }
            for _ in 0..added {
                writer.write_field(b"").map_err(werr)?;
            }
            for f in record.iter().skip(tools) {
                writer.write_field(f).map_err(werr)?;
            }
            writer.write_record(None::<&[u8]>).map_err(werr)?;
            rows += 1;
        }
        i += 1;
    }
    let crc = writer.into_inner().map_err(|e| Error::io("write", side, e.into_error()))?;
    let file_len = crc.len;
    crc.file.sync_all().map_err(|e| Error::io("sync", side, e))?;
    let mut file = FileState { file_len, rows, crc: crc.hasher.finalize(), ..FileState::default() };
    file.tail_start = file_len.saturating_sub(TAIL);
    file.tail_crc = crc_of(side, file.tail_start, file_len)?;
    Ok(file)
}

/// A file writer that keeps the CRC-32 and length of what went through it.
struct Crc {
    file: File,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl Crc {
    fn new(file: File) -> Crc {
        Crc { file, hasher: crc32fast::Hasher::new(), len: 0 }
    }
}

impl Write for Crc {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// True if `path` holds exactly what `file` describes (length, header, tail).
pub fn matches(path: &Path, file: &FileState, bom: bool) -> Result<bool> {
    let actual = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("stat", path, e)),
    };
    Ok(actual == file.file_len && check(path, file, bom)?.is_ok())
}

/// A csv write error as the `io::Error` under it, so that a full disk stays ENOSPC.
fn csv_io(e: csv::Error) -> std::io::Error {
    if !matches!(e.kind(), csv::ErrorKind::Io(_)) {
        return std::io::Error::other(e);
    }
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        _ => unreachable!("an io error, just checked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_write_error_keeps_its_io_error() {
        let full = csv_io(csv::Error::from(std::io::Error::from_raw_os_error(28)));
        assert_eq!(full.raw_os_error(), Some(28), "{full}");
        let e = Error::io("write", Path::new("t.csv"), full);
        let source = std::error::Error::source(&e).expect("an io error has its source");
        assert_eq!(source.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error), Some(28));
    }

    fn dir(name: &str) -> PathBuf {
        crate::store::fsio::test_dir(&format!("table-file-{name}"))
    }

    fn committed(path: &Path, names: &[&str]) -> FileState {
        let len = fs::metadata(path).unwrap().len();
        let columns = names.iter().map(|n| (n.to_string(), vec![n.to_string()])).collect();
        let mut f = FileState { file_len: len, columns, ..FileState::default() };
        checksum(path, &mut f).unwrap();
        f
    }

    #[test]
    fn edits_are_told_apart_from_uncommitted_bytes() {
        let d = dir("check");
        let p = d.join("t.csv");
        let text = "id,name,_synced_at,_deleted\n1,Ann,T,false\n2,Bob,T,false\n";
        fs::write(&p, text).unwrap();
        let f = committed(&p, &["id", "name"]);
        assert_eq!(check(&p, &f, false).unwrap(), Ok(0));
        fs::write(&p, format!("{text}3,Ca")).unwrap();
        assert_eq!(check(&p, &f, false).unwrap(), Ok(4));
        let cases = [
            (format!("\u{feff}{text}"), "byte order mark"),
            (text.replace('\n', "\r\n"), "CRLF"),
            (text.replace("Bob", "Bib"), "committed rows differ"),
            (text.replace("Ann", "Annabel"), "committed rows differ"),
            (text.replace("id,name", "id,name,extra").replace("T,false", "T,false,"), "header"),
            (text.replace("2,Bob,T,false\n", ""), "bytes but"),
        ];
        for (edited, what) in cases {
            fs::write(&p, &edited).unwrap();
            let damage = check(&p, &f, false).unwrap().unwrap_err();
            assert!(damage.describe(f.file_len).contains(what), "{edited:?}: {damage:?}");
        }
        fs::write(&p, text).unwrap();
        // state.json edited: its length cuts row 1, and its last commit was row 2.
        let cut = FileState { file_len: 35, tail_start: 42, ..f.clone() };
        assert_eq!(check(&p, &cut, false).unwrap(), Err(Damage::Range { tail_start: 42 }));
        fs::remove_file(&p).unwrap();
        assert_eq!(check(&p, &f, false).unwrap(), Err(Damage::Missing));
    }

    #[test]
    fn rewrites_add_empty_cells_before_the_tool_columns() {
        let d = dir("rewrite");
        let p = d.join("t.csv");
        fs::write(&p, "id,a,_synced_at,_deleted\n1,\"x,y\",T1,false\n2,,T2,true\n").unwrap();
        let side = d.join("t.csv.new");
        let header = header_of(["id", "a", "b"].into_iter(), false);
        let len = fs::metadata(&p).unwrap().len();
        let f = rewrite(&p, len, &side, &header, 1, |_, _| true).unwrap();
        let text = fs::read_to_string(&side).unwrap();
        assert_eq!(text, "id,a,b,_synced_at,_deleted\n1,\"x,y\",,T1,false\n2,,,T2,true\n");
        assert_eq!((f.file_len, f.rows), (text.len() as u64, 2));
        assert_eq!(f.crc, crc_of(&side, 0, f.file_len).unwrap());
    }
}
