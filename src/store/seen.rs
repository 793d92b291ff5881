//! The journal of keys read during a table sync, so that a sync killed and resumed
//! still knows, at its end, which committed keys it never saw: those get tombstones.
//! Keys confirmed to exist by the API's show route are journaled too, so checks
//! resume where they stopped.
//!
//! `DIR/.<table>.seen` starts with a header, [`MAGIC`] and the id of the run that
//! writes it, then holds one little-endian u64 key hash (`hashing::key`, stable
//! across versions) per key. Its committed length and the CRC-32 of those bytes are
//! in `state.json` next to the CSV's; anything past the length is cut off on open,
//! exactly like a table file. The committer appends the journal before it writes the
//! state that counts it.
//!
//! A journal is trusted only if it proves itself: its committed bytes are all there,
//! their CRC-32 is the one committed, and its header names the run under way. One
//! that does not (deleted, zeroed, copied from another directory or left by another
//! run) is never read: the sync reads the table's listing again from its start, so
//! no key is taken for deleted on its word.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::commit::Append;
use crate::store::state::Journal;

/// The first bytes of a journal, before the run id.
const MAGIC: &[u8; 8] = b"a2c.seen";
/// Magic and run id.
const HEADER: u64 = 16;

/// How many keys a journal of committed length `len` holds (its header aside).
pub fn keys_in(len: u64) -> u64 {
    len.saturating_sub(HEADER) / 8
}

pub struct SeenLog {
    path: PathBuf,
    pending: Vec<u8>,
    /// The journal once everything handed to the committer is written.
    journal: Journal,
}

pub fn seen_path(dir: &Path, table: &str) -> PathBuf {
    dir.join(format!(".{table}.seen"))
}

/// The header of a journal written by run `run`.
fn header(run: u64) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&run.to_le_bytes());
    h
}

/// The committed bytes of the journal at `path` if they prove themselves against
/// `journal` and run `run` (see the module doc); `None` if they do not.
pub fn proven(path: &Path, journal: &Journal, run: u64) -> Result<Option<Vec<u8>>> {
    let Some(crc) = journal.crc else { return Ok(None) };
    if journal.len < HEADER || !(journal.len - HEADER).is_multiple_of(8) {
        return Ok(None);
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let mut bytes = Vec::with_capacity(journal.len as usize);
    (&file).take(journal.len).read_to_end(&mut bytes).map_err(|e| Error::io("read", path, e))?;
    let ok = bytes.len() as u64 == journal.len
        && crc32fast::hash(&bytes) == crc
        && bytes[..HEADER as usize] == header(run)[..];
    Ok(ok.then_some(bytes))
}

impl SeenLog {
    /// Opens the journal of run `run` at its committed part `journal` and returns the
    /// keys in it. An empty journal is started afresh; one that does not prove itself
    /// is an error (the start of the sync set such a table to be read again).
    pub fn open(path: &Path, journal: Journal, run: u64) -> Result<(SeenLog, Vec<u64>)> {
        let bytes = if journal.len == 0 {
            Vec::new()
        } else {
            proven(path, &journal, run)?.ok_or_else(|| Error::State {
                path: path.to_path_buf(),
                detail: "the journal of keys read does not match state.json".into(),
            })?
        };
        let file = crate::store::fsio::private_options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        file.set_len(journal.len).map_err(|e| Error::io("truncate", path, e))?;
        let keys = match bytes.get(HEADER as usize..) {
            Some(keys) => keys.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
            None => Vec::new(),
        };
        let mut log = SeenLog { path: path.to_path_buf(), pending: Vec::new(), journal };
        if journal.len == 0 {
            log.journal.crc = Some(crc32fast::hash(&[]));
            log.pending = header(run);
        }
        Ok((log, keys))
    }

    /// Bytes pushed and not yet taken.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn push(&mut self, key: u64) {
        self.pending.extend_from_slice(&key.to_le_bytes());
    }

    /// The keys pushed since the last take, for the committer, and the journal once
    /// they are written.
    pub fn take(&mut self, recycled: Vec<u8>) -> (Append, Journal) {
        let mut recycled = recycled;
        recycled.clear();
        let bytes = std::mem::replace(&mut self.pending, recycled);
        let mut crc = crc32fast::Hasher::new_with_initial(self.journal.crc.unwrap_or_default());
        crc.update(&bytes);
        self.journal = Journal { len: self.journal.len + bytes.len() as u64, crc: Some(crc.finalize()) };
        (Append { path: self.path.clone(), bytes, hashed: false }, self.journal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_proves_itself_only_for_its_run_and_bytes() {
        let dir = crate::store::fsio::test_dir("seen");
        let path = seen_path(&dir, "t");
        let (mut log, keys) = SeenLog::open(&path, Journal::default(), 7).unwrap();
        assert!(keys.is_empty());
        log.push(1);
        log.push(2);
        let (append, journal) = log.take(Vec::new());
        std::fs::write(&path, &append.bytes).unwrap();
        assert_eq!(SeenLog::open(&path, journal, 7).unwrap().1, [1, 2]);
        assert!(proven(&path, &journal, 8).unwrap().is_none(), "another run's journal");
        assert!(proven(&path, &Journal { crc: None, ..journal }, 7).unwrap().is_none(), "no checksum");
        std::fs::write(&path, vec![0; append.bytes.len()]).unwrap();
        assert!(proven(&path, &journal, 7).unwrap().is_none(), "zeroed");
        assert!(SeenLog::open(&path, journal, 7).is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(proven(&path, &journal, 7).unwrap().is_none(), "deleted");
    }
}
