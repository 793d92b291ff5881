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
//! primary key and spreadsheet guard), the table length and CRC-32 it covers, the
//! entry count, the entries (key hash, fingerprint), and the CRC-32 of all that.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::store::hashing::stable as hash;

const MAGIC: &[u8; 16] = b"api2csv keys v1\n";
const HEAD: usize = MAGIC.len() + 8 + 8 + 4 + 8;

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

/// A proven key file: the table bytes it covers and its entries, sorted by key.
pub struct Covered {
    pub len: u64,
    pub crc: u32,
    pub entries: Vec<(u64, u64)>,
}

/// Reads the key file at `path` made for `identity`; `None` when there is none or it
/// does not prove itself (it is then simply not used).
pub fn read(path: &Path, identity: u64) -> Option<Covered> {
    let file = File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut crc = crc32fast::Hasher::new();
    let mut head = [0u8; HEAD];
    r.read_exact(&mut head).ok()?;
    crc.update(&head);
    let u64_at = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or_default());
    let m = MAGIC.len();
    if &head[..m] != MAGIC || u64_at(m) != identity {
        return None;
    }
    let len = u64_at(m + 8);
    let covered_crc = u32::from_le_bytes(head[m + 16..m + 20].try_into().unwrap_or_default());
    let count = u64_at(m + 20);
    // The size must be the one the count says before anything is allocated for it.
    if count.checked_mul(16).and_then(|n| n.checked_add(HEAD as u64 + 4)) != Some(size) {
        return None;
    }
    let mut entries = Vec::with_capacity(usize::try_from(count).ok()?);
    let mut buf = vec![0u8; 16 * 4096];
    let mut left = count;
    while left > 0 {
        let n = left.min(4096);
        let chunk = &mut buf[..usize::try_from(n).ok()? * 16];
        r.read_exact(chunk).ok()?;
        crc.update(chunk);
        for e in chunk.chunks_exact(16) {
            let k = u64::from_le_bytes(e[..8].try_into().unwrap_or_default());
            let v = u64::from_le_bytes(e[8..].try_into().unwrap_or_default());
            entries.push((k, v));
        }
        left -= n;
    }
    let mut tail = [0u8; 4];
    r.read_exact(&mut tail).ok()?;
    let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
    (u32::from_le_bytes(tail) == crc.finalize() && sorted).then_some(Covered { len, crc: covered_crc, entries })
}

/// Writes the key file at `path`: `entries` (sorted by key, one per key) are the
/// index of the first `len` bytes of the table, whose CRC-32 is `crc`.
pub fn write(
    path: &Path,
    identity: u64,
    len: u64,
    crc: u32,
    entries: impl ExactSizeIterator<Item = (u64, u64)>,
) -> std::io::Result<()> {
    let tmp = path.with_extension("keys.tmp");
    let mut w = BufWriter::with_capacity(1 << 16, crate::store::fsio::create_private(&tmp)?);
    let mut sum = crc32fast::Hasher::new();
    let mut put = |w: &mut BufWriter<File>, bytes: &[u8]| {
        sum.update(bytes);
        w.write_all(bytes)
    };
    put(&mut w, MAGIC)?;
    put(&mut w, &identity.to_le_bytes())?;
    put(&mut w, &len.to_le_bytes())?;
    put(&mut w, &crc.to_le_bytes())?;
    put(&mut w, &(entries.len() as u64).to_le_bytes())?;
    for (k, v) in entries {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&k.to_le_bytes());
        e[8..].copy_from_slice(&v.to_le_bytes());
        put(&mut w, &e)?;
    }
    let total = sum.finalize();
    w.write_all(&total.to_le_bytes())?;
    w.into_inner().map_err(|e| e.into_error())?;
    std::fs::rename(&tmp, path)
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
        let dir = std::env::temp_dir().join(format!("api2csv-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = keys_path(&dir, "t");
        let id = identity("t", &["id"], false);
        let entries = vec![(1u64, 10u64), (5, 50), (9, 90)];
        write(&path, id, 123, 77, entries.iter().copied()).unwrap();
        let c = read(&path, id).unwrap();
        assert_eq!((c.len, c.crc, c.entries), (123, 77, entries));
        assert!(read(&path, identity("t", &["id"], true)).is_none(), "another guard");
        assert!(read(&path, identity("u", &["id"], false)).is_none(), "another table");
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
        let dir = std::env::temp_dir().join(format!("api2csv-keyfile-crc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
}
