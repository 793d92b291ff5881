//! One CSV file per table: appended page by page, widened by atomic rewrite.
//!
//! The file only ever grows past its committed length; the engine commits that length
//! in `state.json` after [`TableFile::commit`]. When a page brings a new column, the
//! committed rows are rewritten with an empty cell for it into `<table>.csv.new`,
//! which is committed in the state (`swap_pending`) before it is renamed over the
//! old file, so a crash at any point leaves one consistent pair of files.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::flatten::{Columns, Page, TOOL_COLUMNS};
use crate::state::{rename_durably, TableState};

const BUFFER: usize = 1 << 16;
const NONE: u32 = u32::MAX;

/// The CSV file of one table, open for appending after its committed bytes.
pub struct TableFile {
    path: PathBuf,
    writer: csv::Writer<File>,
    /// Data columns in the file's header (0 while the file is empty).
    header_cols: usize,
    /// Bytes in the file, as of the last commit.
    len: u64,
    /// Per column, the index of its cell in the row being written.
    slots: Vec<u32>,
}

/// The path of table `name` in `dir`.
pub fn table_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.csv"))
}

/// Refuses a table file whose header is not the committed one: a file saved over
/// by a spreadsheet or another tool must not be appended to or cut.
fn check_header(path: &Path, file: &File, committed: &TableState) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(file);
    let mut header = csv::ByteRecord::new();
    let read = reader.read_byte_record(&mut header);
    let expected = committed.columns.iter().map(|(n, _)| n.as_bytes()).chain(TOOL_COLUMNS.map(str::as_bytes));
    if read.is_ok() && header.iter().eq(expected) {
        return Ok(());
    }
    Err(Error::State {
        path: path.to_path_buf(),
        detail: "its header is not the one state.json committed; it was changed outside api2csv".into(),
    })
}

/// Where a `--full-refresh` rebuilds table `name` before it replaces the table file.
pub fn refresh_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.csv.refresh"))
}

/// Renames a committed `--full-refresh` rebuild over the table file, if that had
/// not happened yet; the caller commits the cleared flag.
pub fn finish_refresh_swap(dir: &Path, name: &str, ts: &mut TableState) -> Result<()> {
    if ts.refresh_swap_pending {
        let from = refresh_path(dir, name);
        if from.exists() {
            rename_durably(&from, &table_path(dir, name))?;
        }
        ts.refresh_swap_pending = false;
    }
    Ok(())
}

/// Where a rewritten table file waits before it is renamed over the old one.
pub fn new_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".new");
    PathBuf::from(s)
}

impl TableFile {
    /// Opens the table file at its committed state, finishing an interrupted swap and
    /// cutting off whatever an interrupted page wrote past the committed length.
    pub fn open(path: &Path, committed: &TableState) -> Result<TableFile> {
        let pending = new_path(path);
        if committed.swap_pending && pending.exists() {
            rename_durably(&pending, path)?;
        } else if pending.exists() {
            fs::remove_file(&pending).map_err(|e| Error::io("remove", &pending, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(committed.file_len == 0)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let actual = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        if actual < committed.file_len {
            return Err(Error::State {
                path: path.to_path_buf(),
                detail: format!(
                    "the file has {actual} bytes but {} are committed; it was changed outside api2csv",
                    committed.file_len
                ),
            });
        }
        if committed.file_len > 0 {
            check_header(path, &file, committed)?;
        }
        file.set_len(committed.file_len).map_err(|e| Error::io("truncate", path, e))?;
        let header_cols = if committed.file_len == 0 { 0 } else { committed.columns.len() };
        Self::with_file(path, file, header_cols, committed.file_len)
    }

    fn with_file(path: &Path, mut file: File, header_cols: usize, len: u64) -> Result<TableFile> {
        file.seek(SeekFrom::End(0)).map_err(|e| Error::io("seek", path, e))?;
        let writer = csv::WriterBuilder::new().buffer_capacity(BUFFER).from_writer(file);
        Ok(TableFile { path: path.to_path_buf(), writer, header_cols, len, slots: Vec::new() })
    }

    /// Data columns in the file's header.
    pub fn header_cols(&self) -> usize {
        self.header_cols
    }

    /// True when rows were committed and one of `rows` of `page` has a value in a
    /// column the header lacks: the caller must [`TableFile::widen`] before writing.
    /// A column that is empty in every written row never forces a rewrite.
    pub fn needs_widening(&self, page: &Page, rows: &[u32]) -> bool {
        let width = self.header_cols as u32;
        self.len > 0 && rows.iter().any(|&i| page.row(i as usize).iter().any(|c| c.col >= width))
    }

    /// Appends `rows` of `page` (not yet durable: see [`TableFile::commit`]).
    pub fn write_page(&mut self, page: &Page, rows: &[u32], cols: &Columns, synced_at: &str) -> Result<()> {
        debug_assert!(!self.needs_widening(page, rows));
        if self.len == 0 && self.header_cols == 0 {
            self.write_header(cols)?;
        }
        for &i in rows {
            let row = page.row(i as usize);
            self.slots.clear();
            self.slots.resize(self.header_cols, NONE);
            for (k, cell) in row.iter().enumerate() {
                if (cell.col as usize) < self.header_cols {
                    self.slots[cell.col as usize] = k as u32;
                }
            }
            for c in 0..self.header_cols {
                let k = self.slots[c];
                let v = if k == NONE { &b""[..] } else { page.value(&row[k as usize]) };
                self.writer.write_field(v).map_err(|e| self.csv_err(e))?;
            }
            self.end_row(synced_at, false)?;
        }
        Ok(())
    }

    /// Appends a tombstone: the primary key cells, `_deleted` true.
    pub fn write_tombstone(&mut self, key: &[(usize, &[u8])], synced_at: &str) -> Result<()> {
        for c in 0..self.header_cols {
            let v = key.iter().find(|(k, _)| *k == c).map_or(&b""[..], |(_, v)| v);
            self.writer.write_field(v).map_err(|e| self.csv_err(e))?;
        }
        self.end_row(synced_at, true)
    }

    fn end_row(&mut self, synced_at: &str, deleted: bool) -> Result<()> {
        let deleted: &[u8] = if deleted { b"true" } else { b"false" };
        self.writer.write_field(synced_at).map_err(|e| self.csv_err(e))?;
        self.writer.write_field(deleted).map_err(|e| self.csv_err(e))?;
        self.writer.write_record(None::<&[u8]>).map_err(|e| self.csv_err(e))
    }

    fn write_header(&mut self, cols: &Columns) -> Result<()> {
        let names = cols.iter().map(|c| c.name.as_str()).chain(TOOL_COLUMNS);
        self.writer.write_record(names).map_err(|e| self.csv_err(e))?;
        self.header_cols = cols.len();
        Ok(())
    }

    fn csv_err(&self, e: csv::Error) -> Error {
        let io = match e.into_kind() {
            csv::ErrorKind::Io(io) => io,
            other => std::io::Error::other(format!("{other:?}")),
        };
        Error::io("write", &self.path, io)
    }

    /// Makes everything written so far durable and returns the file's length, which
    /// the caller then commits in the state.
    pub fn commit(&mut self) -> Result<u64> {
        self.writer.flush().map_err(|e| Error::io("write", &self.path, e))?;
        let f = self.writer.get_ref();
        f.sync_data().map_err(|e| Error::io("sync", &self.path, e))?;
        self.len = f.metadata().map_err(|e| Error::io("stat", &self.path, e))?.len();
        Ok(self.len)
    }

    /// Rewrites the committed rows with the columns of `cols` into `<table>.csv.new`
    /// and returns its length. The caller commits that length with `swap_pending`
    /// set and then calls [`TableFile::swap`].
    pub fn widen(&mut self, cols: &Columns) -> Result<u64> {
        let old = self.header_cols;
        let pending = new_path(&self.path);
        let src = File::open(&self.path).map_err(|e| Error::io("open", &self.path, e))?;
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(std::io::Read::take(src, self.len));
        let out = File::create(&pending).map_err(|e| Error::io("create", &pending, e))?;
        let mut tmp = TableFile::with_file(&pending, out, 0, 0)?;
        tmp.write_header(cols)?;
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record).map_err(|e| self.read_err(e))? {
            for i in 0..old {
                tmp.writer.write_field(&record[i]).map_err(|e| tmp.csv_err(e))?;
            }
            for _ in old..cols.len() {
                tmp.writer.write_field(b"").map_err(|e| tmp.csv_err(e))?;
            }
            for i in old..record.len() {
                tmp.writer.write_field(&record[i]).map_err(|e| tmp.csv_err(e))?;
            }
            tmp.writer.write_record(None::<&[u8]>).map_err(|e| tmp.csv_err(e))?;
        }
        tmp.commit()
    }

    /// Renames the committed `<table>.csv.new` over the table file and reopens it.
    pub fn swap(&mut self, cols: &Columns, len: u64) -> Result<()> {
        rename_durably(&new_path(&self.path), &self.path)?;
        let file =
            OpenOptions::new().read(true).write(true).open(&self.path).map_err(|e| Error::io("open", &self.path, e))?;
        *self = TableFile::with_file(&self.path.clone(), file, cols.len(), len)?;
        Ok(())
    }

    fn read_err(&self, e: csv::Error) -> Error {
        Error::State { path: self.path.clone(), detail: format!("committed rows are not valid CSV: {e}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Parser;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("api2csv-sink-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn page_of(records: &[&str], cols: &mut Columns) -> Page {
        let mut page = Page::default();
        for r in records {
            page.flatten_record(&mut Parser::new(r.as_bytes()), cols).unwrap();
            page.end_row();
        }
        page
    }

    fn committed(cols: &Columns, len: u64) -> TableState {
        let columns = cols.iter().map(|c| (c.name.clone(), c.path.clone())).collect();
        TableState { file_len: len, columns, ..TableState::default() }
    }

    #[test]
    fn widening_pads_earlier_rows_and_uncommitted_bytes_are_cut() {
        let d = dir("widen");
        let path = table_path(&d, "t");
        let mut cols = Columns::new(&[], None);
        let mut f = TableFile::open(&path, &TableState::default()).unwrap();
        let page = page_of(&[r#"{"id":"1","a":"x,y"}"#], &mut cols);
        f.write_page(&page, &[0], &cols, "T1").unwrap();
        let len = f.commit().unwrap();
        let page = page_of(&[r#"{"id":"2","b":{"c":"line\nbreak"},"a":null}"#], &mut cols);
        assert!(f.needs_widening(&page, &[0]));
        let new_len = f.widen(&cols).unwrap();
        f.swap(&cols, new_len).unwrap();
        f.write_page(&page, &[0], &cols, "T2").unwrap();
        f.commit().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "id,a,b_c,_synced_at,_deleted\n1,\"x,y\",,T1,false\n2,,\"line\nbreak\",T2,false\n");
        assert!(len < new_len);

        // A page written but never committed disappears on the next open.
        let state = committed(&cols, text.len() as u64);
        let mut f = TableFile::open(&path, &state).unwrap();
        f.write_page(&page_of(&[r#"{"id":"3"}"#], &mut cols), &[0], &cols, "T3").unwrap();
        f.commit().unwrap();
        drop(TableFile::open(&path, &state).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn a_committed_swap_is_finished_on_open() {
        let d = dir("swap");
        let path = table_path(&d, "t");
        fs::write(&path, "id,_synced_at,_deleted\n").unwrap();
        fs::write(new_path(&path), "id,x,_synced_at,_deleted\n").unwrap();
        let mut state = TableState { file_len: 25, swap_pending: true, ..TableState::default() };
        state.columns = vec![("id".into(), vec!["id".into()]), ("x".into(), vec!["x".into()])];
        drop(TableFile::open(&path, &state).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "id,x,_synced_at,_deleted\n");
        assert!(!new_path(&path).exists());
    }

    #[test]
    fn a_file_shorter_than_committed_is_an_error() {
        let d = dir("short");
        let path = table_path(&d, "t");
        fs::write(&path, "id\n").unwrap();
        let state = TableState { file_len: 100, ..TableState::default() };
        let err = TableFile::open(&path, &state).err().unwrap();
        assert_eq!(err.exit_status(), 2);
    }
}
