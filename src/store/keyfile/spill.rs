//! Entries for a key file gathered in the order their rows were written, and
//! merged, sorted, the last entry of each key standing.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{entry, KeyWriter, ENTRY};

/// Entries gathered for a key file, in the order their rows were written: kept in
/// memory up to a run's worth, then as sorted runs in a side file, merged into the
/// key file at the end (the last entry for a key wins, and a tombstone removes it).
pub struct Spill {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    runs: Vec<(u64, u64)>,
    at: u64,
    chunk: Vec<(u64, u64)>,
}

/// Entries a run holds: 1 MiB.
const RUN: usize = 1 << 16;

impl Spill {
    /// Gathers entries for key file `keys`; its side file is made only when needed.
    pub fn new(keys: &Path) -> Spill {
        Spill::at(&keys.with_extension("keys.runs"))
    }

    /// Gathers entries whose side file, if one is needed, is `runs`.
    pub fn at(runs: &Path) -> Spill {
        Spill { path: runs.to_path_buf(), out: None, runs: Vec::new(), at: 0, chunk: Vec::new() }
    }

    /// Adds an entry read after all those before it.
    pub fn push(&mut self, key: u64, val: u64) -> std::io::Result<()> {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve_exact(RUN);
        }
        self.chunk.push((key, val));
        if self.chunk.len() == RUN {
            self.flush_run()?;
        }
        Ok(())
    }

    /// The chunk, each key's last entry only, sorted by key.
    fn sorted_chunk(&mut self) -> Vec<(u64, u64)> {
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.reverse();
        chunk.sort_by_key(|e| e.0); // stable: the first of equal keys is the latest
        chunk.dedup_by_key(|e| e.0);
        chunk
    }

    fn flush_run(&mut self) -> std::io::Result<()> {
        let mut chunk = self.sorted_chunk();
        let out = match &mut self.out {
            Some(out) => out,
            None => self.out.insert(BufWriter::with_capacity(1 << 16, crate::store::fsio::create_private(&self.path)?)),
        };
        let start = self.at;
        for &(k, v) in &chunk {
            out.write_all(&k.to_le_bytes())?;
            out.write_all(&v.to_le_bytes())?;
        }
        self.at += chunk.len() as u64 * ENTRY;
        self.runs.push((start, chunk.len() as u64));
        chunk.clear();
        self.chunk = chunk;
        Ok(())
    }

    /// Merges the runs into the key file `keys` for the first `len` bytes of the
    /// table (CRC-32 `crc`), leaving out keys whose last entry is `tombstone`.
    pub fn finish(self, keys: &Path, identity: u64, (len, crc): (u64, u32), tombstone: u64) -> std::io::Result<()> {
        let mut w = KeyWriter::create(keys, identity, len, crc)?;
        let mut written = Ok(());
        let merged = self.merged(|k, v| {
            if v != tombstone && written.is_ok() {
                written = w.push(k, v);
            }
        });
        if let Err(e) = merged.and(written) {
            let _ = std::fs::remove_file(&w.tmp);
            return Err(e);
        }
        w.finish()
    }

    /// Hands `f` the last entry of each key, in key order; removes the side file.
    pub fn merged(mut self, mut f: impl FnMut(u64, u64)) -> std::io::Result<()> {
        if self.out.is_none() {
            // One run's worth: straight from memory.
            self.sorted_chunk().into_iter().for_each(|(k, v)| f(k, v));
            return Ok(());
        }
        self.merge_runs(&mut f)
    }

    fn merge_runs(&mut self, f: &mut impl FnMut(u64, u64)) -> std::io::Result<()> {
        self.flush_run()?;
        if let Some(out) = &mut self.out {
            out.flush()?;
        }
        let mut readers = Vec::with_capacity(self.runs.len());
        for &(start, count) in &self.runs {
            let mut file = File::open(&self.path)?;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start))?;
            readers.push((BufReader::with_capacity(1 << 15, file), count));
        }
        let next = |r: usize, readers: &mut Vec<(BufReader<File>, u64)>| -> std::io::Result<Option<(u64, u64)>> {
            let (reader, left) = &mut readers[r];
            if *left == 0 {
                return Ok(None);
            }
            *left -= 1;
            let mut e = [0u8; 16];
            reader.read_exact(&mut e)?;
            Ok(Some(entry(&e)))
        };
        let mut heap = std::collections::BinaryHeap::new();
        for r in 0..readers.len() {
            if let Some((k, v)) = next(r, &mut readers)? {
                heap.push(std::cmp::Reverse((k, r, v)));
            }
        }
        while let Some(std::cmp::Reverse((key, r, mut val))) = heap.pop() {
            if let Some((k, v)) = next(r, &mut readers)? {
                heap.push(std::cmp::Reverse((k, r, v)));
            }
            // Equal keys pop in run order: the last run's entry stands.
            while let Some(&std::cmp::Reverse((k, r2, v2))) = heap.peek() {
                if k != key {
                    break;
                }
                heap.pop();
                val = v2;
                if let Some((k, v)) = next(r2, &mut readers)? {
                    heap.push(std::cmp::Reverse((k, r2, v)));
                }
            }
            f(key, val);
        }
        Ok(())
    }
}

/// The side file is scratch space: it goes with the runs, merged or not (a process
/// killed leaves it, and the next gathering for the table writes over it).
impl Drop for Spill {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keyfile::keys_path;

    /// The merged runs give, for each key, the entry pushed last: as a stable sort
    /// of the reversed entries does, over runs in memory and on disk alike.
    #[test]
    fn merged_runs_keep_the_last_entry_of_each_key() {
        let dir = crate::store::fsio::test_dir("keyfile-runs");
        let mut next = crate::store::hashing::xorshift(0x9E37_79B9_7F4A_7C15u64);
        for (n, keys) in [(10usize, 5u64), (RUN, 1000), (RUN + 1, 70_000), (3 * RUN + 17, 50_000), (200_000, 3)] {
            let entries: Vec<(u64, u64)> = (0..n).map(|i| (next() % keys + 1, i as u64)).collect();
            let mut want = entries.clone();
            want.reverse();
            want.sort_by_key(|e| e.0);
            want.dedup_by_key(|e| e.0);
            let mut spill = Spill::new(&keys_path(&dir, "t"));
            entries.iter().for_each(|&(k, v)| spill.push(k, v).unwrap());
            let mut got = Vec::new();
            spill.merged(|k, v| got.push((k, v))).unwrap();
            assert!(got == want, "{n} entries of {keys} keys");
            assert!(!dir.join(".t.keys.runs").exists(), "the side file is removed");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
