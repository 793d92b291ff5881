//! What each primary key last looked like: the index that makes a sync append only
//! new and changed rows, and find the keys that vanished.
//!
//! A row's fingerprint is a hash of what its CSV row shows: every non-empty data cell
//! with its column name, combined order-independently, so a column that appears empty
//! everywhere changes nothing. The index is loaded at the start of every table sync
//! from the committed CSV or from a key file proven to match it ([`load`]), and holds
//! about 17 bytes per key: a sorted array (16) found through a bucket directory (1),
//! plus a small hash table for keys added during this sync, merged in as it grows; a
//! large one stays in its key file ([`keyfile::OnDisk`]). [`rows`] reads the committed
//! rows with their key hashes and fingerprints.

mod load;
mod rows;

pub(crate) use load::in_memory_for_tests;
pub use load::{leave_key_file, load, load_cached};
pub use rows::{scan, KeyedRows};

use crate::error::{Error, Result};
use crate::store::keyfile;

/// Fingerprints use 63 bits; the low bit of a stored entry says "seen in this sync".
const SEEN: u64 = 1;
const TOMBSTONE: u64 = !SEEN;

/// Clears the seen bit and keeps a fingerprint from colliding with the tombstone mark.
fn fp(raw: u64) -> u64 {
    let f = raw & !SEEN;
    if f == TOMBSTONE {
        f - 2
    } else {
        f
    }
}

/// The key file entry of a row with fingerprint `fingerprint`.
pub(crate) fn row_entry(fingerprint: u64) -> u64 {
    fp(fingerprint)
}

/// What a record is relative to the committed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    New,
    Changed,
    Unchanged,
    /// Already read in this sync (the listing served it twice): written at most once.
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key: u64,
    val: u64,
}

#[derive(Debug, Default)]
pub struct KeyIndex {
    /// Sorted by key.
    main: Vec<Entry>,
    /// `dir[b]` is the first index in `main` whose key's top bits are >= b.
    dir: Vec<u32>,
    shift: u32,
    /// Open addressing, key 0 empty: keys first seen in this sync, and with the
    /// index on disk, keys whose fingerprint changed in it.
    added: Vec<Entry>,
    added_len: usize,
    /// A large index stays in its key file; `main` is then empty.
    disk: Option<keyfile::OnDisk>,
}

impl KeyIndex {
    /// Builds the index from `(key, fingerprint or tombstone)` pairs in file order.
    #[cfg(test)]
    fn from_rows(mut rows: Vec<Entry>) -> KeyIndex {
        let mut main = Vec::new();
        merge_later(&mut main, &mut rows);
        KeyIndex::from_latest(main)
    }

    /// Builds the index from the latest entry per key, sorted by key.
    fn from_latest(mut main: Vec<Entry>) -> KeyIndex {
        main.retain(|e| e.val != TOMBSTONE);
        let mut index = KeyIndex { main, ..KeyIndex::default() };
        index.rebuild_dir();
        index.added = vec![Entry { key: 0, val: 0 }; 1024];
        index
    }

    /// The index of a key file left where it lies.
    fn on_disk(disk: keyfile::OnDisk) -> KeyIndex {
        let mut index = KeyIndex::from_latest(Vec::new());
        index.disk = Some(disk);
        index
    }

    /// Keys in the index (with it on disk, changed keys count twice).
    pub fn len(&self) -> usize {
        let disk = self.disk.as_ref().map_or(0, |d| usize::try_from(d.len()).unwrap_or(usize::MAX));
        self.main.len() + self.added_len + disk
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn rebuild_dir(&mut self) {
        // A bucket per 2 to 4 keys: a lookup scans a cache line or two, and the
        // directory costs about a byte per key.
        let bits = (usize::BITS - (self.main.len() / 4).leading_zeros()).clamp(8, 22);
        self.shift = 64 - bits;
        let buckets = 1usize << bits;
        self.dir = Vec::with_capacity(buckets + 1);
        let mut i = 0;
        for b in 0..=buckets as u64 {
            while i < self.main.len() && (self.main[i].key >> self.shift) < b {
                i += 1;
            }
            self.dir.push(i as u32);
        }
    }

    /// Touches the slots of `keys` in the index in memory, so that their lookups,
    /// one by one after, find them cached: touched together, the cache misses of
    /// independent keys overlap, where looked up one by one each waits for the last.
    pub fn warm(&self, keys: impl Iterator<Item = u64>) {
        if self.main.is_empty() {
            return;
        }
        let mut sum = 0u64;
        for key in keys {
            let lo = self.dir[(key >> self.shift) as usize] as usize;
            sum = sum.wrapping_add(self.main.get(lo).map_or(0, |e| e.key));
        }
        std::hint::black_box(sum);
    }

    fn find_main(&self, key: u64) -> Option<usize> {
        if self.main.is_empty() {
            return None;
        }
        let b = (key >> self.shift) as usize;
        let (lo, hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        self.main[lo..hi].iter().position(|e| e.key == key).map(|i| lo + i)
    }

    fn find_added(&self, key: u64) -> (usize, bool) {
        let mask = self.added.len() - 1;
        let mut i = (key as usize) & mask;
        loop {
            match self.added[i].key {
                0 => return (i, false),
                k if k == key => return (i, true),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Records that `key` was read with fingerprint `fingerprint`, and says how it
    /// compares with the committed version; `changed` says it differs whatever the
    /// fingerprint (it has a value in a column the file does not have yet).
    pub fn observe(&mut self, key: u64, fingerprint: u64, changed: bool) -> Result<Change> {
        let f = fp(fingerprint);
        let (i, found) = self.find_added(key);
        if found {
            return Ok(update(&mut self.added[i], f, changed));
        }
        if let Some(m) = self.find_main(key) {
            return Ok(update(&mut self.main[m], f, changed));
        }
        if let Some(disk) = &mut self.disk {
            if let Some((at, val)) = disk.find(key).map_err(|e| Error::io("read", &disk.path(), e))? {
                if disk.is_seen(at) {
                    return Ok(Change::Duplicate);
                }
                disk.set_seen(at, true);
                if fp(val) == f && !changed {
                    return Ok(Change::Unchanged);
                }
                // The fingerprint written now is the one a later read compares with.
                self.add(i, Entry { key, val: f | SEEN });
                return Ok(Change::Changed);
            }
        }
        self.add(i, Entry { key, val: f | SEEN });
        Ok(Change::New)
    }

    fn add(&mut self, i: usize, e: Entry) {
        self.added[i] = e;
        self.added_len += 1;
        if self.added_len * 4 >= self.added.len() * 3 {
            self.grow();
        }
    }

    /// Marks `key` as read in this sync (replaying a committed journal).
    pub fn mark_seen(&mut self, key: u64) -> Result<()> {
        self.set_seen(key, true)
    }

    /// Takes back that `key` was read in this sync (it was read only in a pass of
    /// its listing that was abandoned); its latest fingerprint stays.
    pub fn unmark_seen(&mut self, key: u64) -> Result<()> {
        self.set_seen(key, false)
    }

    fn set_seen(&mut self, key: u64, seen: bool) -> Result<()> {
        let set = |e: &mut Entry| if seen { e.val |= SEEN } else { e.val &= !SEEN };
        if let (i, true) = self.find_added(key) {
            set(&mut self.added[i]);
        } else if let Some(m) = self.find_main(key) {
            set(&mut self.main[m]);
        } else if let Some(disk) = &mut self.disk {
            if let Some((at, _)) = disk.find(key).map_err(|e| Error::io("read", &disk.path(), e))? {
                disk.set_seen(at, seen);
            }
        }
        Ok(())
    }

    /// Whether some committed key was not read in this sync.
    pub fn has_unseen(&self) -> bool {
        let mut all = self.main.iter().chain(self.added.iter().filter(|e| e.key != 0));
        all.any(|e| e.val & SEEN == 0) || self.disk.as_ref().is_some_and(keyfile::OnDisk::has_unseen)
    }

    /// Keys committed before that were not read in this sync.
    pub fn unseen(&self) -> Result<Vec<u64>> {
        let all = self.main.iter().chain(self.added.iter().filter(|e| e.key != 0));
        let mut out: Vec<u64> = all.filter(|e| e.val & SEEN == 0).map(|e| e.key).collect();
        if let Some(disk) = &self.disk {
            // A key changed in this sync was marked read on disk when it was added.
            out.extend(disk.unseen().map_err(|e| Error::io("read", &disk.path(), e))?);
        }
        Ok(out)
    }

    /// Doubles the added table, or merges it into `main` once it is a fair share of it.
    fn grow(&mut self) {
        if self.disk.is_none() && self.added_len >= (self.main.len() / 8).max(1 << 16) {
            let mut added: Vec<Entry> = self.added.iter().copied().filter(|e| e.key != 0).collect();
            merge_later(&mut self.main, &mut added);
            self.rebuild_dir();
            self.added = vec![Entry { key: 0, val: 0 }; 1024];
            self.added_len = 0;
            return;
        }
        let doubled = vec![Entry { key: 0, val: 0 }; self.added.len() * 2];
        let old = std::mem::replace(&mut self.added, doubled);
        for e in old.into_iter().filter(|e| e.key != 0) {
            let (i, _) = self.find_added(e.key);
            self.added[i] = e;
        }
    }
}

fn update(e: &mut Entry, f: u64, changed: bool) -> Change {
    if e.val & SEEN != 0 {
        return Change::Duplicate;
    }
    let was = fp(e.val);
    e.val = f | SEEN;
    if was == f && !changed {
        Change::Unchanged
    } else {
        Change::Changed
    }
}

/// Rows read per chunk while an index is loaded: each chunk is sorted and merged in
/// place, so loading needs the index and one chunk, never twice the index.
const LOAD_CHUNK: usize = 1 << 16;

/// Merges `later` (entries read after all of `main`'s, in file order) into `main`,
/// which is sorted by key with one entry per key and stays so: for a key in both,
/// or twice in `later`, the last read wins. In place from the back: `main` grows by
/// the new keys only. Leaves `later` empty, its allocation kept for the next chunk.
fn merge_later(main: &mut Vec<Entry>, later: &mut Vec<Entry>) {
    later.reverse();
    later.sort_by_key(|e| e.key); // stable: the first of equal keys is the latest
    later.dedup_by_key(|e| e.key);
    let (m, n) = (main.len(), later.len());
    main.resize(m + n, Entry { key: 0, val: 0 });
    // main[..i] and later[..j] are still to merge; main[k..] is merged.
    let (mut i, mut j, mut k) = (m, n, m + n);
    while j > 0 {
        let y = later[j - 1];
        if i > 0 && main[i - 1].key > y.key {
            main[k - 1] = main[i - 1];
            i -= 1;
        } else {
            if i > 0 && main[i - 1].key == y.key {
                i -= 1; // replaced by the later entry
            }
            main[k - 1] = y;
            j -= 1;
        }
        k -= 1;
    }
    // Each replaced key left one slot between the unmoved part and the merged one.
    main.drain(i..k);
    later.clear();
}

#[cfg(test)]
mod tests {
    use super::rows::fingerprint;
    use super::*;
    use crate::store::hashing::stable as hash;

    fn fp_of(cells: &[(&str, &str)]) -> u64 {
        fingerprint(cells.iter().map(|(n, v)| (hash(0, n.as_bytes()), v.as_bytes())))
    }

    #[test]
    fn fingerprints_ignore_empty_cells_and_cell_order() {
        let a = fp_of(&[("id", "1"), ("name", "x")]);
        assert_eq!(a, fp_of(&[("name", "x"), ("id", "1"), ("phone", "")]));
        assert_ne!(a, fp_of(&[("id", "1"), ("name", "y")]));
        assert_ne!(a, fp_of(&[("id", "1"), ("nam", "ex")]));
    }

    #[test]
    fn observe_tells_new_changed_and_unchanged_and_tracks_unseen() {
        let rows = vec![
            Entry { key: 10, val: 100 },
            Entry { key: 20, val: 200 },
            Entry { key: 10, val: 102 },
            Entry { key: 30, val: 300 },
            Entry { key: 30, val: TOMBSTONE },
        ];
        let mut index = KeyIndex::from_rows(rows);
        assert_eq!(index.len(), 2);
        assert_eq!(index.observe(10, 102, false).unwrap(), Change::Unchanged);
        assert_eq!(index.observe(30, 300, false).unwrap(), Change::New);
        assert_eq!(index.observe(30, 300, false).unwrap(), Change::Duplicate);
        assert_eq!(index.unseen().unwrap(), [20]);
        assert_eq!(index.observe(20, 204, false).unwrap(), Change::Changed);
        assert!(index.unseen().unwrap().is_empty());
    }

    /// The oracle: a stable sort of the reversed rows keeps the last of each key.
    fn latest_per_key(mut rows: Vec<Entry>) -> Vec<Entry> {
        rows.reverse();
        rows.sort_by_key(|e| e.key);
        rows.dedup_by_key(|e| e.key);
        rows
    }

    #[test]
    fn merging_chunk_by_chunk_keeps_the_last_entry_per_key_as_a_stable_sort_does() {
        let mut next = crate::store::hashing::xorshift(0x9E37_79B9_7F4A_7C15u64);
        for round in 0..300 {
            let n = (next() % 400) as usize;
            let keys = 1 + next() % if round % 2 == 0 { 20 } else { 1000 };
            let rows: Vec<Entry> = (0..n).map(|i| Entry { key: 1 + next() % keys, val: (i as u64) << 1 }).collect();
            for chunk in [1, 2, 3, 7, 64, 500] {
                let mut main = Vec::new();
                for part in rows.chunks(chunk) {
                    merge_later(&mut main, &mut part.to_vec());
                }
                assert_eq!(main, latest_per_key(rows.clone()), "round {round}, chunks of {chunk}");
            }
        }
    }

    #[test]
    fn many_new_keys_merge_into_the_sorted_part() {
        let mut index =
            KeyIndex::from_rows((1..=1000u64).map(|k| Entry { key: hash(0, &k.to_le_bytes()), val: 8 }).collect());
        for k in 1..=300_000u64 {
            let key = hash(0, &k.to_le_bytes());
            let expected = if k <= 1000 { Change::Unchanged } else { Change::New };
            assert_eq!(index.observe(key, 8, false).unwrap(), expected, "{k}");
        }
        assert_eq!(index.len(), 300_000);
        for k in (1..=300_000u64).step_by(997) {
            assert_eq!(index.observe(hash(0, &k.to_le_bytes()), 8, false).unwrap(), Change::Duplicate);
        }
        assert!(index.unseen().unwrap().is_empty());
    }
}
