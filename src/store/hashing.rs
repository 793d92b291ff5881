//! The hashes api2csv uses, and which of them must never change.
//!
//! [`stable`] (wyhash's mixing) hashes primary keys and row contents. Key hashes are
//! journaled in `.<table>.seen` files and compared by a later process, possibly a
//! newer api2csv resuming an older one's run, so its values are a contract: the
//! test at the bottom pins them. [`FxHasher`] (rustc's) is for in-memory maps only.

use std::hash::{BuildHasherDefault, Hasher};

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;

fn mix(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// A fast 64-bit hash of `bytes`. Stable across versions and machines (little-endian
/// reads, fixed constants): its values cross processes.
pub fn stable(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ P0;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h ^ u64::from_le_bytes(c.try_into().expect("8 bytes")), P1);
    }
    mix(mix(h ^ tail(chunks.remainder()), P1) ^ bytes.len() as u64, P0)
}

/// The 0 to 7 bytes of `rest` as a little-endian word padded with zeros, read
/// without a copy (most values end in a short tail).
fn tail(rest: &[u8]) -> u64 {
    let n = rest.len();
    let u32_at = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().expect("4 bytes")) as u64;
    match n {
        0 => 0,
        // The two reads overlap; the bytes they share are the same.
        4..=7 => u32_at(0) | u32_at(n - 4) << (8 * (n - 4)),
        _ => rest[0] as u64 | (rest[n / 2] as u64) << (8 * (n / 2)) | (rest[n - 1] as u64) << (8 * (n - 1)),
    }
}

/// Folds `word` into running hash `h` (a hash for this process only: not pinned).
pub fn fold(h: u64, word: u64) -> u64 {
    mix(h ^ word, P1)
}

/// The hash of a primary key's values, in key order (never 0, which marks empty
/// slots in the key index).
pub fn key<'v>(values: impl Iterator<Item = &'v [u8]>) -> u64 {
    let mut h = P1;
    for v in values {
        h = stable(h, v);
    }
    h.max(1)
}

/// FxHash: a fast hash for in-memory maps of short keys that only we choose.
#[derive(Default)]
pub struct FxHasher(u64);

pub type FxBuild = BuildHasherDefault<FxHasher>;

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.add(b as u64);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// The one CRC-32 reader: reads through, keeping the CRC-32 of what was read (the
/// checksums of table files in `state.json`).
pub struct CrcRead<R> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R> CrcRead<R> {
    pub fn new(inner: R) -> CrcRead<R> {
        CrcRead { inner, hasher: crc32fast::Hasher::new() }
    }

    /// The CRC-32 of the bytes read so far.
    pub fn crc(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

impl<R: std::io::Read> std::io::Read for CrcRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A xorshift generator of test inputs, from `seed` (not 0).
#[cfg(test)]
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These values are journaled on disk by one version and read by the next: a
    /// change here breaks every interrupted sync. Never update them.
    #[test]
    fn key_hashes_are_pinned() {
        assert_eq!(stable(0, b""), 0x34d2_fe82_dacc_aea6);
        assert_eq!(stable(0, b"id"), 0xd866_e302_5167_d502);
        assert_eq!(stable(7, b"165968862226941797"), 0xec98_6c99_4c09_2f38);
        assert_eq!(key([&b"165968862226941797"[..]].into_iter()), 0x419a_7618_47ae_9bd6);
        assert_eq!(key([&b"151877204465977130"[..], &b"148203517760325412"[..]].into_iter()), 0xe748_7654_f4e2_b057);
    }

    #[test]
    fn a_tail_is_its_bytes_padded_with_zeros() {
        let bytes: Vec<u8> = (1..=8).map(|b| b * 0x1f).collect();
        for n in 0..8 {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(tail(&bytes[..n]), u64::from_le_bytes(padded), "{n} bytes");
        }
    }
}
