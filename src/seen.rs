//! The journal of keys read during a table sync, so that a sync killed and resumed
//! still knows, at its end, which committed keys it never saw: those get tombstones.
//!
//! `DIR/.<table>.seen` holds one little-endian u64 key hash per record read; its
//! committed length is in `state.json` next to the CSV's, and anything past it is
//! cut off on open, exactly like a table file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub struct SeenLog {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    len: u64,
}

pub fn seen_path(dir: &Path, table: &str) -> PathBuf {
    dir.join(format!(".{table}.seen"))
}

impl SeenLog {
    /// Opens the journal at its committed length `len`.
    pub fn open(path: &Path, len: u64) -> Result<SeenLog> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let actual = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        if actual < len {
            let detail = format!("the journal has {actual} bytes but {len} are committed");
            return Err(Error::State { path: path.to_path_buf(), detail });
        }
        file.set_len(len).map_err(|e| Error::io("truncate", path, e))?;
        file.seek(SeekFrom::End(0)).map_err(|e| Error::io("seek", path, e))?;
        Ok(SeenLog { path: path.to_path_buf(), file, buf: Vec::new(), len })
    }

    /// Every committed key, in order.
    pub fn replay(&self, mut f: impl FnMut(u64)) -> Result<()> {
        let mut bytes = Vec::with_capacity(self.len as usize);
        let file = File::open(&self.path).map_err(|e| Error::io("open", &self.path, e))?;
        file.take(self.len).read_to_end(&mut bytes).map_err(|e| Error::io("read", &self.path, e))?;
        for chunk in bytes.chunks_exact(8) {
            f(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        Ok(())
    }

    pub fn push(&mut self, key: u64) {
        self.buf.extend_from_slice(&key.to_le_bytes());
    }

    /// Writes and fsyncs what was pushed; returns the length to commit.
    pub fn commit(&mut self) -> Result<u64> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf).map_err(|e| Error::io("write", &self.path, e))?;
            self.file.sync_data().map_err(|e| Error::io("sync", &self.path, e))?;
            self.len += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(self.len)
    }
}
