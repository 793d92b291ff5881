//! The keys a first sync wrote, when its listing sends them in no order: a set
//! whose memory does not grow with the table. Up to [`MEMORY`] keys are held in a
//! hash set; beyond, they are merged into a sorted file beside the table
//! (`.<table>.keyset`), found through a directory of one key per 4 KiB block and
//! a Bloom filter of fixed size, which spares the file almost every lookup of a
//! key it does not hold. Every answer is exact: the filter only decides whether the
//! file is read.
//!
//! The file is the set's own scratch space, made and read by one process: a
//! resumed run builds its set again from the committed table.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::store::hashing::FxBuild;

/// Keys held in memory before they go to the file (about 4.5 MiB of set).
const MEMORY: usize = 1 << 18;
/// Keys a block of the file holds, and a directory entry stands for.
const BLOCK: u64 = 512;
/// Bits of the Bloom filter (4 MiB), and the hashes a key sets.
const BLOOM_BITS: u64 = 1 << 25;
const BLOOM_HASHES: u32 = 4;

pub fn keyset_path(dir: &Path, table: &str) -> PathBuf {
    dir.join(format!(".{table}.keyset"))
}

pub struct KeySet {
    recent: HashSet<u64, FxBuild>,
    memory: usize,
    path: PathBuf,
    /// The keys merged into the file so far: its handle, count and directory.
    file: Option<(File, u64, Vec<u64>)>,
    bloom: Vec<u64>,
}

impl KeySet {
    /// An empty set whose file, if it needs one, is `path`.
    pub fn new(path: &Path) -> KeySet {
        KeySet::with_memory(path, MEMORY)
    }

    /// [`KeySet::new`], holding at most `memory` keys in memory.
    pub fn with_memory(path: &Path, memory: usize) -> KeySet {
        KeySet {
            recent: HashSet::default(),
            memory: memory.max(1),
            path: path.to_path_buf(),
            file: None,
            bloom: Vec::new(),
        }
    }

    /// Adds `key`; false if it was in the set already.
    pub fn insert(&mut self, key: u64) -> std::io::Result<bool> {
        if self.recent.contains(&key) || self.in_file(key)? {
            return Ok(false);
        }
        self.recent.insert(key);
        if self.recent.len() >= self.memory {
            self.spill()?;
        }
        Ok(true)
    }

    fn bloom_bits(key: u64) -> impl Iterator<Item = u64> {
        // The key is a hash already: its rotations are independent enough.
        (0..BLOOM_HASHES).map(move |i| key.rotate_left(i * 16) % BLOOM_BITS)
    }

    fn in_file(&self, key: u64) -> std::io::Result<bool> {
        let Some((file, count, dir)) = &self.file else { return Ok(false) };
        if !KeySet::bloom_bits(key).all(|b| self.bloom[(b / 64) as usize] & (1 << (b % 64)) != 0) {
            return Ok(false);
        }
        // The block whose first key is the last one not above `key`.
        let block = dir.partition_point(|&first| first <= key);
        if block == 0 {
            return Ok(false);
        }
        let start = (block as u64 - 1) * BLOCK;
        let n = BLOCK.min(count - start) as usize;
        let (mut buf, mut keys) = ([0u8; BLOCK as usize * 8], [0u64; BLOCK as usize]);
        file.read_exact_at(&mut buf[..n * 8], start * 8)?;
        for (k, c) in keys.iter_mut().zip(buf[..n * 8].chunks_exact(8)) {
            *k = u64::from_le_bytes(c.try_into().unwrap_or_default());
        }
        Ok(keys[..n].binary_search(&key).is_ok())
    }

    /// Merges the keys in memory into the file (a new one, written beside it).
    fn spill(&mut self) -> std::io::Result<()> {
        let mut fresh: Vec<u64> = self.recent.drain().collect();
        fresh.sort_unstable();
        if self.bloom.is_empty() {
            self.bloom = vec![0u64; (BLOOM_BITS / 64) as usize];
        }
        for &k in &fresh {
            for b in KeySet::bloom_bits(k) {
                self.bloom[(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        let tmp = self.path.with_extension("keyset.new");
        let mut out = BufWriter::with_capacity(1 << 16, crate::store::fsio::create_private(&tmp)?);
        let mut old = self.file.take().map(|(file, count, _)| (BufReader::with_capacity(1 << 16, file), count));
        let mut next_old = || -> std::io::Result<Option<u64>> {
            let Some((r, left)) = &mut old else { return Ok(None) };
            if *left == 0 {
                return Ok(None);
            }
            *left -= 1;
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            Ok(Some(u64::from_le_bytes(b)))
        };
        let (mut dir, mut count) = (Vec::new(), 0u64);
        let mut put = |k: u64, out: &mut BufWriter<File>| -> std::io::Result<()> {
            if count % BLOCK == 0 {
                dir.push(k);
            }
            count += 1;
            out.write_all(&k.to_le_bytes())
        };
        let mut a = next_old()?;
        let mut fresh = fresh.into_iter().peekable();
        loop {
            match (a, fresh.peek().copied()) {
                (None, None) => break,
                (Some(x), Some(y)) if y < x => {
                    put(y, &mut out)?;
                    fresh.next();
                }
                (Some(x), _) => {
                    put(x, &mut out)?;
                    a = next_old()?;
                }
                (None, Some(y)) => {
                    put(y, &mut out)?;
                    fresh.next();
                }
            }
        }
        out.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = Some((File::open(&self.path)?, count, dir));
        Ok(())
    }

    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

/// The file is scratch space: it goes with the set (a process killed leaves it, and
/// the next set of the table writes over it).
impl Drop for KeySet {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a `HashSet`: the same answer to every insert, keys in memory, in the
    /// file, and past the file's last block alike.
    #[test]
    fn answers_as_a_hash_set_does_wherever_the_keys_are() {
        let dir = crate::store::fsio::test_dir("keyset");
        let mut next = crate::store::hashing::xorshift(0x2545_F491_4F6C_DD1Du64);
        for (memory, n, range) in [(1, 300, 200u64), (7, 5000, 3000), (1000, 20_000, 1 << 40), (600, 4000, 2500)] {
            let path = keyset_path(&dir, "t");
            let mut ours = KeySet::with_memory(&path, memory);
            let mut oracle = HashSet::new();
            for i in 0..n {
                let key = if i % 3 == 0 { next() } else { next() % range + 1 };
                assert_eq!(ours.insert(key).unwrap(), oracle.insert(key), "key {key}, memory {memory}");
            }
            assert!(ours.file.is_some() && path.exists());
            drop(ours);
            assert!(!path.exists());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
