//! The key file `.<table>.keys`: the index of a table's committed rows as a sync
//! loaded it, kept so that the next sync reads only the rows committed after it
//! instead of every row of the table.
//!
//! It is a cache, never the truth: it is used only when it proves itself (its own
//! CRC-32, the table and hashing it was made for) and proves that the table's first
//! bytes are the ones it was made from (their length and CRC-32); anything else,
//! and the index is rebuilt from the table, which is what it always was before.
//! It is written beside the table, after the table's rows are read, through a
//! temporary file and a rename; it needs no fsync, as a torn one fails its CRC.
//!
//! Layout, little-endian: the magic, the identity (a hash of the table name,
//! primary key and spreadsheet guard), the table length and CRC-32 it covers; the
//! entries (key hash, fingerprint), sorted by key; their count, and the CRC-32 of
//! everything before it.
//!
//! A large index is not read into memory at all ([`OnDisk`]): a sync looks each key
//! up in the file through a directory of about a quarter of a byte per key, and
//! keeps one bit per key for "read in this sync".

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::store::hashing::stable as hash;

mod spill;
pub use spill::Spill;

const MAGIC: &[u8; 16] = b"api2csv keys v1\n";
const HEAD: u64 = 16 + 8 + 8 + 4;
const TRAILER: u64 = 8 + 4;
const ENTRY: u64 = 16;

pub fn keys_path(dir: &Path, table: &str) -> PathBuf {
    dir.join(format!(".{table}.keys"))
}

/// What a key file was made for: the hashing of keys depends on the key columns
/// and on whether the table's cells carry the spreadsheet guard.
pub fn identity(table: &str, primary_key: &[&str], guarded: bool) -> u64 {
    let mut h = hash(u64::from(guarded), table.as_bytes());
    for k in primary_key {
        h = hash(h, k.as_bytes());
    }
    h
}

/// What a proven key file covers: the first `len` bytes of its table, whose CRC-32
/// is `crc`, with `count` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Covers {
    pub len: u64,
    pub crc: u32,
    pub count: u64,
}

/// The entries a key file of `size` bytes holds, if that is a key file's size.
fn count(size: u64) -> Option<u64> {
    size.checked_sub(HEAD + TRAILER).filter(|b| b % ENTRY == 0).map(|b| b / ENTRY)
}

/// The entries the key file at `path` holds by its size (not yet proven).
pub fn entries_in(path: &Path) -> Option<u64> {
    count(std::fs::metadata(path).ok()?.len())
}

fn entry(e: &[u8]) -> (u64, u64) {
    let k = u64::from_le_bytes(e[..8].try_into().unwrap_or_default());
    let v = u64::from_le_bytes(e[8..16].try_into().unwrap_or_default());
    (k, v)
}

/// Reads the key file at `path` made for `identity`, handing each entry to `f` in
/// order; `None` when there is none or it does not prove itself (its CRC, its size,
/// its entries strictly sorted), and then what `f` was given must be forgotten.
pub fn read(path: &Path, identity: u64, mut f: impl FnMut(u64, u64)) -> Option<Covers> {
    let file = File::open(path).ok()?;
    let count = count(file.metadata().ok()?.len())?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut crc = crc32fast::Hasher::new();
    let mut head = [0u8; HEAD as usize];
    r.read_exact(&mut head).ok()?;
    crc.update(&head);
    let u64_at = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or_default());
    if &head[..16] != MAGIC || u64_at(16) != identity {
        return None;
    }
    let covers_len = u64_at(24);
    let covers_crc = u32::from_le_bytes(head[32..36].try_into().unwrap_or_default());
    let mut buf = vec![0u8; 16 * 4096];
    let (mut left, mut last) = (count, None);
    while left > 0 {
        let n = left.min(4096);
        let chunk = &mut buf[..usize::try_from(n * ENTRY).ok()?];
        r.read_exact(chunk).ok()?;
        crc.update(chunk);
        for e in chunk.chunks_exact(16) {
            let (k, v) = entry(e);
            if last.is_some_and(|l| l >= k) {
                return None;
            }
            last = Some(k);
            f(k, v);
        }
        left -= n;
    }
    let mut tail = [0u8; TRAILER as usize];
    r.read_exact(&mut tail).ok()?;
    crc.update(&tail[..8]);
    let proven = u64::from_le_bytes(tail[..8].try_into().unwrap_or_default()) == count
        && u32::from_le_bytes(tail[8..].try_into().unwrap_or_default()) == crc.finalize();
    proven.then_some(Covers { len: covers_len, crc: covers_crc, count })
}

/// Writes the key file at `path` (through a temporary file and a rename): `entries`,
/// sorted by key, one per key, are the index of the first `len` bytes of the table,
/// whose CRC-32 is `crc`.
pub fn write(
    path: &Path,
    identity: u64,
    len: u64,
    crc: u32,
    entries: impl Iterator<Item = (u64, u64)>,
) -> std::io::Result<()> {
    write_fallible(path, identity, len, crc, entries.map(Ok))
}

/// [`write`] from entries that may fail to be read: the first failure leaves the
/// key file there as it was.
pub fn write_fallible(
    path: &Path,
    identity: u64,
    len: u64,
    crc: u32,
    entries: impl Iterator<Item = std::io::Result<(u64, u64)>>,
) -> std::io::Result<()> {
    let mut w = KeyWriter::create(path, identity, len, crc)?;
    for e in entries {
        let pushed = e.and_then(|(k, v)| w.push(k, v));
        if let Err(e) = pushed {
            let _ = std::fs::remove_file(&w.tmp);
            return Err(e);
        }
    }
    w.finish()
}

/// A key file being written, an entry at a time.
struct KeyWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    sum: crc32fast::Hasher,
    count: u64,
}

impl KeyWriter {
    fn create(path: &Path, identity: u64, len: u64, crc: u32) -> std::io::Result<KeyWriter> {
        let tmp = path.with_extension("keys.tmp");
        let out = BufWriter::with_capacity(1 << 16, crate::store::fsio::create_private(&tmp)?);
        let mut w = KeyWriter { path: path.to_path_buf(), tmp, out, sum: crc32fast::Hasher::new(), count: 0 };
        w.put(MAGIC)?;
        w.put(&identity.to_le_bytes())?;
        w.put(&len.to_le_bytes())?;
        w.put(&crc.to_le_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sum.update(bytes);
        self.out.write_all(bytes)
    }

    fn push(&mut self, k: u64, v: u64) -> std::io::Result<()> {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&k.to_le_bytes());
        e[8..].copy_from_slice(&v.to_le_bytes());
        self.count += 1;
        self.put(&e)
    }

    fn finish(mut self) -> std::io::Result<()> {
        let count = self.count;
        self.put(&count.to_le_bytes())?;
        let total = self.sum.clone().finalize();
        self.out.write_all(&total.to_le_bytes())?;
        self.out.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&self.tmp, &self.path)
    }
}

/// The entries of a key file [`read`] has just proven, in order.
pub fn entries(path: &Path) -> std::io::Result<impl Iterator<Item = std::io::Result<(u64, u64)>>> {
    let file = File::open(path)?;
    let count = count(file.metadata()?.len()).unwrap_or(0);
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut head = [0u8; HEAD as usize];
    r.read_exact(&mut head)?;
    Ok((0..count).map(move |_| {
        let mut e = [0u8; 16];
        r.read_exact(&mut e)?;
        Ok(entry(&e))
    }))
}

/// A proven key file looked up where it lies: a directory of the first entry of
/// each bucket of key hashes (about 16 entries a bucket) and a bit per entry for
/// "read in this sync".
#[derive(Debug)]
pub struct OnDisk {
    file: File,
    path: PathBuf,
    count: u64,
    shift: u32,
    dir: Vec<u32>,
    seen: Vec<u64>,
}

impl OnDisk {
    /// Opens the key file at `path`, proving it as [`read`] does.
    pub fn open(path: &Path, identity: u64) -> Option<(OnDisk, Covers)> {
        let file = File::open(path).ok()?;
        let count = count(file.metadata().ok()?.len())?;
        let bits = (u64::BITS - (count / 16).leading_zeros()).clamp(4, 28);
        let shift = 64 - bits;
        let buckets = 1usize << bits;
        let mut dir = Vec::with_capacity(buckets + 1);
        let mut i = 0u32;
        let covers = read(path, identity, |k, _| {
            let b = usize::try_from(k >> shift).unwrap_or(usize::MAX);
            while dir.len() <= b {
                dir.push(i);
            }
            i = i.saturating_add(1);
        })?;
        if u64::from(i) != covers.count || covers.count >= u64::from(u32::MAX) {
            return None;
        }
        while dir.len() <= buckets {
            dir.push(i);
        }
        let seen = vec![0u64; usize::try_from(count.div_ceil(64)).ok()?];
        let disk = OnDisk { file, path: path.to_path_buf(), count, shift, dir, seen };
        Some((disk, covers))
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The position and value of `key`, if the file holds it.
    pub fn find(&self, key: u64) -> std::io::Result<Option<(u64, u64)>> {
        let b = usize::try_from(key >> self.shift).unwrap_or(usize::MAX);
        let (mut lo, hi) = (u64::from(self.dir[b]), u64::from(self.dir[b + 1]));
        let mut buf = [0u8; 64 * 16];
        while lo < hi {
            let n = (hi - lo).min(64);
            let chunk = &mut buf[..(n * ENTRY) as usize];
            self.file.read_exact_at(chunk, HEAD + lo * ENTRY)?;
            if let Some(i) = chunk.chunks_exact(16).position(|e| entry(e).0 == key) {
                let at = lo + i as u64;
                return Ok(Some((at, entry(&chunk[i * 16..]).1)));
            }
            lo += n;
        }
        Ok(None)
    }

    pub fn is_seen(&self, at: u64) -> bool {
        self.seen[(at / 64) as usize] & (1 << (at % 64)) != 0
    }

    pub fn set_seen(&mut self, at: u64, seen: bool) {
        let word = &mut self.seen[(at / 64) as usize];
        if seen {
            *word |= 1 << (at % 64);
        } else {
            *word &= !(1 << (at % 64));
        }
    }

    /// Whether some key was not read in this sync.
    pub fn has_unseen(&self) -> bool {
        let full = self.count / 64;
        let words = usize::try_from(full).unwrap_or(usize::MAX);
        let rest = self.count % 64;
        self.seen[..words].iter().any(|&w| w != u64::MAX) || (rest > 0 && self.seen[words] != (1u64 << rest) - 1)
    }

    /// The keys not read in this sync, in key order.
    pub fn unseen(&self) -> std::io::Result<Vec<u64>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096 * 16];
        let mut at = 0u64;
        while at < self.count {
            let n = (self.count - at).min(4096);
            let chunk = &mut buf[..(n * ENTRY) as usize];
            self.file.read_exact_at(chunk, HEAD + at * ENTRY)?;
            for (i, e) in chunk.chunks_exact(16).enumerate() {
                if !self.is_seen(at + i as u64) {
                    out.push(entry(e).0);
                }
            }
            at += n;
        }
        Ok(out)
    }
}

/// The CRC-32 of the first `len` bytes of `path`, and of its first `prefix` bytes.
pub fn crcs(path: &Path, len: u64, prefix: u64) -> std::io::Result<(u32, u32)> {
    let mut r = File::open(path)?.take(len);
    let mut sum = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 18];
    let mut at = 0u64;
    let mut prefix_crc = (prefix == 0).then(|| sum.clone().finalize());
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let end = at + n as u64;
        if prefix_crc.is_none() && prefix <= end {
            let k = usize::try_from(prefix - at).unwrap_or(n);
            sum.update(&chunk[..k]);
            prefix_crc = Some(sum.clone().finalize());
            sum.update(&chunk[k..]);
        } else {
            sum.update(chunk);
        }
        at = end;
    }
    if at != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "shorter than its committed length"));
    }
    Ok((sum.finalize(), prefix_crc.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_used_only_when_it_proves_itself() {
        let dir = crate::store::fsio::test_dir("keyfile");
        let path = keys_path(&dir, "t");
        let id = identity("t", &["id"], false);
        let entries = vec![(1u64, 10u64), (5, 50), (9, 90)];
        write(&path, id, 123, 77, entries.iter().copied()).unwrap();
        let mut got = Vec::new();
        let c = read(&path, id, |k, v| got.push((k, v))).unwrap();
        assert_eq!((c, got), (Covers { len: 123, crc: 77, count: 3 }, entries.clone()));
        let read = |path: &Path, id: u64| read(path, id, |_, _| {});
        assert!(read(&path, identity("t", &["id"], true)).is_none(), "another guard");
        assert!(read(&path, identity("u", &["id"], false)).is_none(), "another table");
        let (disk, covers) = OnDisk::open(&path, id).unwrap();
        assert_eq!((covers.count, disk.find(5).unwrap(), disk.find(6).unwrap()), (3, Some((1, 50)), None));
        let bytes = std::fs::read(&path).unwrap();
        // Every cut, and every flipped byte, is refused.
        for cut in 0..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(read(&path, id).is_none(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x20;
            std::fs::write(&path, &b).unwrap();
            assert!(read(&path, id).is_none(), "flip at {at}");
        }
        // Unsorted entries are not an index.
        write(&path, id, 1, 1, [(5u64, 1u64), (1, 1)].into_iter()).unwrap();
        assert!(read(&path, id).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn crcs_of_a_prefix_and_the_whole() {
        let dir = crate::store::fsio::test_dir("keyfile-crc");
        let path = dir.join("f");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let crc = |b: &[u8]| crc32fast::hash(b);
        for prefix in [0u64, 1, 262_143, 262_144, 262_145, 600_000, 700_000] {
            let len = 700_000;
            assert_eq!(crcs(&path, len, prefix).unwrap(), (crc(&data), crc(&data[..prefix as usize])), "{prefix}");
        }
        assert_eq!(crcs(&path, 10, 4).unwrap(), (crc(&data[..10]), crc(&data[..4])));
        assert!(crcs(&path, 700_001, 4).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A key file is replaced only by a whole one: entries that fail to be read
    /// part way leave the old file, proven, where it was.
    #[test]
    fn a_failed_write_leaves_the_key_file_as_it_was() {
        let dir = crate::store::fsio::test_dir("keyfile-fail");
        let path = keys_path(&dir, "t");
        write(&path, 7, 100, 1, [(1u64, 1u64), (2, 2), (3, 3)].into_iter()).unwrap();
        let broken = [Ok((1u64, 9u64)), Err(std::io::Error::other("a read failed"))];
        assert!(write_fallible(&path, 7, 200, 2, broken.into_iter()).is_err());
        let mut got = Vec::new();
        let covers = read(&path, 7, |k, v| got.push((k, v))).unwrap();
        assert_eq!((covers.len, got), (100, vec![(1, 1), (2, 2), (3, 3)]));
        assert!(!path.with_extension("keys.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
