//! The committed rows of a table file, read back with their key hashes and
//! fingerprints: what an index is built from.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{fp, TOMBSTONE};
use crate::engine::columns::cell_hash;
use crate::error::{Error, Result};
use crate::store::encode::unguarded;
use crate::store::hashing::key as key_hash;
use crate::store::hashing::stable as hash;
use crate::store::hashing::CrcRead;

/// The committed rows of a table file, each with its key hash, read one at a time
/// into a reused record (rust-csv's `read_byte_record` style). The key hash is of the
/// values as the API sent them: a spreadsheet-safe file's guard is taken off first,
/// so keys compare as the API knows them.
pub struct KeyedRows {
    path: PathBuf,
    reader: csv::Reader<CrcRead<Box<dyn Read>>>,
    header: csv::ByteRecord,
    keys: Vec<usize>,
    guarded: bool,
    names: Vec<u64>,
    record: csv::ByteRecord,
}

impl KeyedRows {
    /// Opens the first `len` bytes of `path`, whose header must hold `primary_key`;
    /// `guarded`: the file is spreadsheet-safe.
    pub fn open(path: &Path, len: u64, primary_key: &[&str], guarded: bool) -> Result<KeyedRows> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        KeyedRows::over(path, Box::new(file.take(len)), primary_key, guarded)
    }

    /// [`KeyedRows::open`] for the rows from byte `from` (a committed length, where a
    /// row begins) to `len`: the header, then those rows.
    pub fn open_from(path: &Path, from: u64, len: u64, primary_key: &[&str], guarded: bool) -> Result<KeyedRows> {
        let bad = |detail: String| Error::State { path: path.to_path_buf(), detail };
        let header_end = {
            let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
            let mut reader = csv::ReaderBuilder::new().from_reader(file.take(len));
            reader.byte_headers().map_err(|e| bad(e.to_string()))?;
            reader.position().byte()
        };
        if header_end > from {
            return KeyedRows::open(path, len, primary_key, guarded);
        }
        let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut header = Vec::new();
        (&mut file).take(header_end).read_to_end(&mut header).map_err(|e| Error::io("read", path, e))?;
        file.seek(SeekFrom::Start(from)).map_err(|e| Error::io("read", path, e))?;
        let rows = std::io::Cursor::new(header).chain(file.take(len.saturating_sub(from)));
        KeyedRows::over(path, Box::new(rows), primary_key, guarded)
    }

    fn over(path: &Path, input: Box<dyn Read>, primary_key: &[&str], guarded: bool) -> Result<KeyedRows> {
        let bad = |detail: String| Error::State { path: path.to_path_buf(), detail };
        let crc = CrcRead::new(input);
        let mut reader = csv::ReaderBuilder::new().from_reader(crc);
        let header = reader.byte_headers().map_err(|e| bad(e.to_string()))?.clone();
        let keys = primary_key
            .iter()
            .map(|k| header.iter().position(|h| h == k.as_bytes()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("the header lacks the primary key {}", primary_key.join(","))))?;
        let names = header.iter().map(|n| hash(0, n)).collect();
        Ok(KeyedRows { path: path.to_path_buf(), reader, header, keys, guarded, names, record: csv::ByteRecord::new() })
    }

    /// The CRC-32 of the bytes read, once every row was read.
    pub fn crc(&self) -> u32 {
        self.reader.get_ref().crc()
    }

    /// The key hash and cells of the next row; `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<(u64, &csv::ByteRecord)>> {
        let read = self.reader.read_byte_record(&mut self.record).map_err(|e| Error::State {
            path: self.path.clone(),
            detail: format!("committed rows are not valid CSV: {e}"),
        })?;
        if !read {
            return Ok(None);
        }
        let key = key_hash(self.keys.iter().map(|&k| unguarded(&self.record[k], self.guarded)));
        Ok(Some((key, &self.record)))
    }

    /// True when the current row is a tombstone (`_deleted` is the last column).
    fn is_tombstone(&self) -> bool {
        self.record.get(self.header.len().saturating_sub(1)) == Some(b"true")
    }

    /// The fingerprint of the current row, or the tombstone mark.
    pub(crate) fn fingerprint(&self) -> u64 {
        if self.is_tombstone() {
            return TOMBSTONE;
        }
        let data_cols = self.header.len().saturating_sub(2);
        fp(fingerprint((0..data_cols).map(|c| (self.names[c], &self.record[c]))))
    }
}

/// Calls `f(key hash, fingerprint or TOMBSTONE, record)` for every committed row;
/// returns the CRC-32 of the bytes read.
pub fn scan(
    path: &Path,
    len: u64,
    primary_key: &[&str],
    guarded: bool,
    mut f: impl FnMut(u64, u64, &csv::ByteRecord),
) -> Result<u32> {
    let mut rows = KeyedRows::open(path, len, primary_key, guarded)?;
    while let Some((key, _)) = rows.next_row()? {
        f(key, rows.fingerprint(), &rows.record);
    }
    Ok(rows.crc())
}

/// The fingerprint of a row from its (column name hash, value) cells.
pub fn fingerprint<'v>(cells: impl Iterator<Item = (u64, &'v [u8])>) -> u64 {
    cells.filter(|(_, v)| !v.is_empty()).fold(0u64, |acc, (name, v)| acc.wrapping_add(cell_hash(name, v)))
}
