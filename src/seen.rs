//! The journal of keys read during a table sync, so that a sync killed and resumed
//! still knows, at its end, which committed keys it never saw: those get tombstones.
//! Keys confirmed to exist by the API's show route are journaled too, so checks
//! resume where they stopped.
//!
//! `DIR/.<table>.seen` holds one little-endian u64 key hash (`hashing::key`, stable
//! across versions) per key; its committed length is in `state.json` next to the
//! CSV's, and anything past it is cut off on open, exactly like a table file. The
//! committer appends the journal before it writes the state that counts it.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::commit::Append;
use crate::error::{Error, Result};

pub struct SeenLog {
    path: PathBuf,
    pending: Vec<u8>,
    /// Length once everything handed to the committer is written.
    len: u64,
}

pub fn seen_path(dir: &Path, table: &str) -> PathBuf {
    dir.join(format!(".{table}.seen"))
}

impl SeenLog {
    /// Opens the journal at its committed length `len` and returns the keys in it.
    pub fn open(path: &Path, len: u64) -> Result<(SeenLog, Vec<u64>)> {
        let file = crate::fsio::private_options()
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
        let mut bytes = Vec::with_capacity(len as usize);
        (&file).take(len).read_to_end(&mut bytes).map_err(|e| Error::io("read", path, e))?;
        let keys = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        Ok((SeenLog { path: path.to_path_buf(), pending: Vec::new(), len }, keys))
    }

    /// Bytes pushed and not yet taken.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn push(&mut self, key: u64) {
        self.pending.extend_from_slice(&key.to_le_bytes());
    }

    /// The keys pushed since the last take, for the committer, and the journal's
    /// length once they are written.
    pub fn take(&mut self, recycled: Vec<u8>) -> (Append, u64) {
        let mut recycled = recycled;
        recycled.clear();
        let bytes = std::mem::replace(&mut self.pending, recycled);
        self.len += bytes.len() as u64;
        (Append { path: self.path.clone(), bytes, hashed: false }, self.len)
    }
}
