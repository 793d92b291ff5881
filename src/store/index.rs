//! What each primary key last looked like: the index that makes a sync append only
//! new and changed rows, and find the keys that vanished.
//!
//! A row's fingerprint is a hash of what its CSV row shows: every non-empty data cell
//! with its column name, combined order-independently, so a column that appears empty
//! everywhere changes nothing. The index is rebuilt from the committed CSV at the
//! start of every table sync (so it can never disagree with the file) and holds about
//! 17 bytes per key: a sorted array (16) found through a bucket directory (1), plus a small hash
//! table for keys added during this sync, merged in as it grows.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use crate::engine::columns::cell_hash;
use crate::store::encode::unguarded;
use crate::store::hashing::key as key_hash;
use crate::store::hashing::stable as hash;
use crate::store::hashing::CrcRead;
use crate::store::keyfile;

/// Fingerprints use 63 bits; the low bit of a stored entry says "seen in this sync".
const SEEN: u64 = 1;
pub(crate) const TOMBSTONE: u64 = !SEEN;

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
        let all = self.main.iter().chain(self.added.iter().filter(|e| e.key != 0));
        all.clone().any(|e| e.val & SEEN == 0) || self.disk.as_ref().is_some_and(keyfile::OnDisk::has_unseen)
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

/// Reads the committed rows of a table file into an index; `primary_key` names the
/// key columns, `guarded` says the file is spreadsheet-safe. The last two columns are
/// the tool's (`_synced_at`, `_deleted`). Returns the CRC-32 of the bytes read too, to
/// hold against the committed one.
pub fn load(path: &Path, len: u64, primary_key: &[&str], guarded: bool) -> Result<(KeyIndex, u32)> {
    if len == 0 {
        return Ok((KeyIndex::from_latest(Vec::new()), 0));
    }
    let mut latest = Latest::default();
    let crc = scan(path, len, primary_key, guarded, |key, fingerprint, _| latest.push(key, fingerprint))?;
    Ok((KeyIndex::from_latest(latest.finish()), crc))
}

/// Indexes with more keys than this stay in their key file: 8 MiB of entries is
/// the most a table's index holds in memory.
const IN_MEMORY: u64 = 1 << 19;

/// [`load`], reading only the rows committed after those a proven key file covers
/// (see [`keyfile`]), and leaving a key file that covers all `len` bytes. A large
/// index is looked up in that file rather than read into memory.
pub fn load_cached(
    path: &Path,
    keys: &Path,
    table: &str,
    len: u64,
    primary_key: &[&str],
    guarded: bool,
) -> Result<(KeyIndex, u32)> {
    load_keyed(path, keys, (table, primary_key, guarded), len, in_memory())
}

/// [`IN_MEMORY`]; tests only (`API2CSV_TEST_KEYS_IN_MEMORY=N`) set another bound,
/// so that small accounts take the path of large ones.
fn in_memory() -> u64 {
    in_memory_for_tests().unwrap_or(IN_MEMORY)
}

/// The bound `API2CSV_TEST_KEYS_IN_MEMORY` sets (tests only), on this index and on a
/// first sync's set of keys.
pub(crate) fn in_memory_for_tests() -> Option<u64> {
    std::env::var("API2CSV_TEST_KEYS_IN_MEMORY").ok().and_then(|v| v.parse().ok())
}

/// [`load_cached`] of table `(name, primary key, guarded)`, keeping at most
/// `in_memory` keys in memory.
fn load_keyed(
    path: &Path,
    keys: &Path,
    (table, primary_key, guarded): (&str, &[&str], bool),
    len: u64,
    in_memory: u64,
) -> Result<(KeyIndex, u32)> {
    if len == 0 {
        return Ok((KeyIndex::from_latest(Vec::new()), 0));
    }
    let identity = keyfile::identity(table, primary_key, guarded);
    let io = |e| Error::io("read", path, e);
    // The key file proves itself, then that the table starts with the bytes it covers.
    let mut usable = None;
    if let Some(c) = keyfile::read(keys, identity, |_, _| {}).filter(|c| c.len <= len) {
        let (crc, prefix_crc) = keyfile::crcs(path, len, c.len).map_err(io)?;
        usable = (prefix_crc == c.crc).then_some((c, crc));
    }
    let Some((covers, crc)) = usable else {
        return rebuild(path, keys, (identity, primary_key, guarded), len, in_memory);
    };
    // The rows committed after the key file's: the last of each key, tombstones kept.
    let mut tail = Latest::default();
    if covers.len < len {
        let mut rows = KeyedRows::open_from(path, covers.len, len, primary_key, guarded)?;
        while let Some((key, _)) = rows.next_row()? {
            tail.push(key, rows.fingerprint());
        }
    }
    let mut tail = tail.finish();
    let large = covers.count.saturating_add(tail.len() as u64) > in_memory;
    if large && covers.len == len {
        if let Some((disk, _)) = keyfile::OnDisk::open(keys, identity).filter(|(_, c)| *c == covers) {
            return Ok((KeyIndex::on_disk(disk), crc));
        }
    }
    if large {
        // Key file and tail merged into the next key file, a stream of each; a key
        // file that cannot be written (a full disk) leaves the index in memory.
        match merge_into(keys, identity, (len, crc), &tail) {
            Ok(Some(disk)) => return Ok((KeyIndex::on_disk(disk), crc)),
            Ok(None) => {}
            Err(e) => log::debug!("{}: key file not written: {e}", keys.display()),
        }
    }
    let mut main = Vec::with_capacity(usize::try_from(covers.count).unwrap_or(0));
    let proven = keyfile::read(keys, identity, |key, val| main.push(Entry { key, val }));
    if proven.is_none_or(|c| c != covers) {
        return load(path, len, primary_key, guarded);
    }
    merge_later(&mut main, &mut tail);
    let index = KeyIndex::from_latest(main);
    if covers.len < len {
        let entries = index.main.iter().map(|e| (e.key, e.val));
        if let Err(e) = keyfile::write(keys, identity, len, crc, entries) {
            log::debug!("{}: key file not written: {e}", keys.display());
        }
    }
    Ok((index, crc))
}

/// Reads every committed row into an index and a key file: in memory while it
/// holds at most `in_memory` keys, and beyond that through sorted runs on disk
/// into a key file it is then looked up in.
fn rebuild(
    path: &Path,
    keys: &Path,
    (identity, primary_key, guarded): (u64, &[&str], bool),
    len: u64,
    in_memory: u64,
) -> Result<(KeyIndex, u32)> {
    let mut rows = KeyedRows::open(path, len, primary_key, guarded)?;
    let mut latest = Latest::default();
    let mut spill: Option<keyfile::Spill> = None;
    let mut spillable = true;
    while let Some((key, _)) = rows.next_row()? {
        let f = rows.fingerprint();
        if let Some(s) = &mut spill {
            if let Err(e) = s.push(key, f) {
                // A side file that cannot be written (a full disk): read again, in memory.
                log::debug!("{}: key file not written: {e}", keys.display());
                return load(path, len, primary_key, guarded);
            }
            continue;
        }
        latest.push(key, f);
        if spillable && latest.main.len() as u64 > in_memory {
            let first = std::mem::take(&mut latest).finish();
            let mut s = keyfile::Spill::new(keys);
            match first.iter().try_for_each(|e| s.push(e.key, e.val)) {
                Ok(()) => spill = Some(s),
                Err(e) => {
                    // A directory that takes no side file: the index stays in memory.
                    log::debug!("{}: key file not written: {e}", keys.display());
                    spillable = false;
                    latest = Latest { main: first, chunk: Vec::new() };
                }
            }
        }
    }
    let crc = rows.crc();
    if let Some(s) = spill {
        let written = s.finish(keys, identity, (len, crc), TOMBSTONE);
        match keyfile::OnDisk::open(keys, identity).filter(|(_, c)| written.is_ok() && c.len == len && c.crc == crc) {
            Some((disk, _)) => return Ok((KeyIndex::on_disk(disk), crc)),
            None => {
                log::debug!("{}: key file not written: {written:?}", keys.display());
                return load(path, len, primary_key, guarded);
            }
        }
    }
    let index = KeyIndex::from_latest(latest.finish());
    if let Err(e) = keyfile::write(keys, identity, len, crc, index.main.iter().map(|e| (e.key, e.val))) {
        log::debug!("{}: key file not written: {e}", keys.display());
    }
    Ok((index, crc))
}

/// Writes key file `keys` for `(len, crc)` from the one there and the entries of
/// `later` (sorted, one per key) put over its own: a later tombstone removes its
/// key. The old file is replaced only once the new one is whole; then the new one,
/// proven, to look keys up in.
fn merge_into(
    keys: &Path,
    identity: u64,
    (len, crc): (u64, u32),
    later: &[Entry],
) -> std::io::Result<Option<keyfile::OnDisk>> {
    let mut old = keyfile::entries(keys)?.peekable();
    let mut later = later.iter().peekable();
    let merged = std::iter::from_fn(move || loop {
        let take_old = match (old.peek(), later.peek()) {
            (None, None) => return None,
            (Some(Err(_)), _) | (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(Ok(o)), Some(l)) => o.0 < l.key,
        };
        if take_old {
            return old.next();
        }
        let l = later.next().copied()?;
        if old.peek().is_some_and(|o| o.as_ref().is_ok_and(|o| o.0 == l.key)) {
            old.next();
        }
        if l.val != TOMBSTONE {
            return Some(Ok((l.key, l.val)));
        }
    });
    keyfile::write_fallible(keys, identity, len, crc, merged)?;
    Ok(keyfile::OnDisk::open(keys, identity).filter(|(_, c)| c.len == len && c.crc == crc).map(|(disk, _)| disk))
}

/// The last value pushed for each key, gathered a chunk at a time: 16 bytes per key
/// plus one chunk, however many rows repeat a key.
#[derive(Default)]
pub struct Latest {
    main: Vec<Entry>,
    chunk: Vec<Entry>,
}

impl Latest {
    pub fn push(&mut self, key: u64, val: u64) {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve_exact(LOAD_CHUNK);
        }
        self.chunk.push(Entry { key, val });
        if self.chunk.len() == LOAD_CHUNK {
            merge_later(&mut self.main, &mut self.chunk);
        }
    }

    /// The last entry of each key, sorted by key.
    fn finish(mut self) -> Vec<Entry> {
        merge_later(&mut self.main, &mut self.chunk);
        self.main
    }
}

/// The committed rows of a table file, each with its key hash, read one at a time
/// into a reused record (rust-csv's `read_byte_record` style). The key hash is of the
/// values as the API sent them: a spreadsheet-safe file's guard is taken off first,
/// so keys compare as the API knows them.
pub struct KeyedRows {
    path: PathBuf,
    reader: csv::Reader<CrcRead<Box<dyn Read>>>,
    header: csv::ByteRecord,
    keys: Vec<usize>,
    guarded: bool,
    names: Vec<u64>,
    record: csv::ByteRecord,
}

impl KeyedRows {
    /// Opens the first `len` bytes of `path`, whose header must hold `primary_key`;
    /// `guarded`: the file is spreadsheet-safe.
    pub fn open(path: &Path, len: u64, primary_key: &[&str], guarded: bool) -> Result<KeyedRows> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        KeyedRows::over(path, Box::new(file.take(len)), primary_key, guarded)
    }

    /// [`KeyedRows::open`] for the rows from byte `from` (a committed length, where a
    /// row begins) to `len`: the header, then those rows.
    pub fn open_from(path: &Path, from: u64, len: u64, primary_key: &[&str], guarded: bool) -> Result<KeyedRows> {
        let bad = |detail: String| Error::State { path: path.to_path_buf(), detail };
        let header_end = {
            let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
            let mut reader = csv::ReaderBuilder::new().from_reader(file.take(len));
            reader.byte_headers().map_err(|e| bad(e.to_string()))?;
            reader.position().byte()
        };
        if header_end > from {
            return KeyedRows::open(path, len, primary_key, guarded);
        }
        let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut header = Vec::new();
        (&mut file).take(header_end).read_to_end(&mut header).map_err(|e| Error::io("read", path, e))?;
        file.seek(SeekFrom::Start(from)).map_err(|e| Error::io("read", path, e))?;
        let rows = std::io::Cursor::new(header).chain(file.take(len.saturating_sub(from)));
        KeyedRows::over(path, Box::new(rows), primary_key, guarded)
    }

    fn over(path: &Path, input: Box<dyn Read>, primary_key: &[&str], guarded: bool) -> Result<KeyedRows> {
        let bad = |detail: String| Error::State { path: path.to_path_buf(), detail };
        let crc = CrcRead::new(input);
        let mut reader = csv::ReaderBuilder::new().from_reader(crc);
        let header = reader.byte_headers().map_err(|e| bad(e.to_string()))?.clone();
        let keys = primary_key
            .iter()
            .map(|k| header.iter().position(|h| h == k.as_bytes()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("the header lacks the primary key {}", primary_key.join(","))))?;
        let names = header.iter().map(|n| hash(0, n)).collect();
        Ok(KeyedRows { path: path.to_path_buf(), reader, header, keys, guarded, names, record: csv::ByteRecord::new() })
    }

    /// The CRC-32 of the bytes read, once every row was read.
    pub fn crc(&self) -> u32 {
        self.reader.get_ref().crc()
    }

    /// The key hash and cells of the next row; `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<(u64, &csv::ByteRecord)>> {
        let read = self.reader.read_byte_record(&mut self.record).map_err(|e| Error::State {
            path: self.path.clone(),
            detail: format!("committed rows are not valid CSV: {e}"),
        })?;
        if !read {
            return Ok(None);
        }
        let key = key_hash(self.keys.iter().map(|&k| unguarded(&self.record[k], self.guarded)));
        Ok(Some((key, &self.record)))
    }

    /// True when the current row is a tombstone (`_deleted` is the last column).
    fn is_tombstone(&self) -> bool {
        self.record.get(self.header.len().saturating_sub(1)) == Some(b"true")
    }

    /// The fingerprint of the current row, or the tombstone mark.
    fn fingerprint(&self) -> u64 {
        if self.is_tombstone() {
            return TOMBSTONE;
        }
        let data_cols = self.header.len().saturating_sub(2);
        fp(fingerprint((0..data_cols).map(|c| (self.names[c], &self.record[c]))))
    }
}

/// Calls `f(key hash, fingerprint or TOMBSTONE, record)` for every committed row;
/// returns the CRC-32 of the bytes read.
pub fn scan(
    path: &Path,
    len: u64,
    primary_key: &[&str],
    guarded: bool,
    mut f: impl FnMut(u64, u64, &csv::ByteRecord),
) -> Result<u32> {
    let mut rows = KeyedRows::open(path, len, primary_key, guarded)?;
    while let Some((key, _)) = rows.next_row()? {
        f(key, rows.fingerprint(), &rows.record);
    }
    Ok(rows.crc())
}

/// The fingerprint of a row from its (column name hash, value) cells.
pub fn fingerprint<'v>(cells: impl Iterator<Item = (u64, &'v [u8])>) -> u64 {
    cells.filter(|(_, v)| !v.is_empty()).fold(0u64, |acc, (name, v)| acc.wrapping_add(cell_hash(name, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The key file is only a shortcut: whatever prefix of the table it covers (or
    /// a stale one, from another version of the table), and whether the index is read
    /// into memory or looked up on disk, it answers every question as the index of a
    /// read of every row does.
    #[test]
    fn an_index_loaded_through_a_key_file_is_the_index_of_every_row() {
        let dir = std::env::temp_dir().join(format!("api2csv-index-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (table, keys) = (dir.join("t.csv"), dir.join(".t.keys"));
        let mut next = crate::store::hashing::xorshift(0x2545_F491_4F6C_DD1Du64);
        let t = ("t", &["id"][..], false);
        let mut on_disk = 0;
        for round in 0..60 {
            let mut text = String::from("id,name,_synced_at,_deleted\n");
            let mut ends = vec![text.len() as u64];
            for _ in 0..(next() % 60) {
                let id = next() % 25;
                let deleted = next().is_multiple_of(5);
                let name = if next().is_multiple_of(3) { String::new() } else { format!("\"n,{}\"", next() % 4) };
                text.push_str(&format!("{id},{name},t,{deleted}\n"));
                ends.push(text.len() as u64);
            }
            std::fs::write(&table, &text).unwrap();
            let _ = std::fs::remove_file(&keys);
            let whole = |len: u64| load(&table, len, &["id"], false).unwrap();
            for step in 0..8 {
                let at = ends[(next() as usize) % ends.len()];
                let in_memory = if step % 2 == 0 { 0 } else { IN_MEMORY };
                let (mut want, want_crc) = whole(at);
                let (mut got, got_crc) = load_keyed(&table, &keys, t, at, in_memory).unwrap();
                assert_eq!(got_crc, want_crc, "round {round} at {at}");
                assert!(in_memory == 0 || got.disk.is_none(), "round {round} at {at}");
                on_disk += usize::from(got.disk.is_some());
                same_answers(&mut got, &mut want, &mut next);
            }
            if round % 4 == 0 {
                // The table rewritten under a key file made for the old one.
                let rewritten = text.replacen("t,", "u,", 1);
                std::fs::write(&table, &rewritten).unwrap();
                let len = rewritten.len() as u64;
                let (mut got, _) = load_keyed(&table, &keys, t, len, 0).unwrap();
                same_answers(&mut got, &mut whole(len).0, &mut next);
            }
        }
        assert!(on_disk > 50, "the index on disk was tried {on_disk} times");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Puts the same random questions to both indexes: observe (new, changed,
    /// unchanged, repeat), mark and unmark, then what was not seen.
    fn same_answers(got: &mut KeyIndex, want: &mut KeyIndex, next: &mut impl FnMut() -> u64) {
        let unseen = |i: &KeyIndex| {
            let mut u = i.unseen().unwrap();
            u.sort_unstable();
            u
        };
        assert_eq!(unseen(got), unseen(want));
        let fps: Vec<u64> = want.main.iter().map(|e| fp(e.val)).collect();
        for _ in 0..400 {
            let key = match next() % 2 {
                0 if !want.main.is_empty() => want.main[(next() as usize) % want.main.len()].key,
                _ => key_hash([format!("{}", next() % 30).as_bytes()].into_iter()),
            };
            let f = match next() % 3 {
                0 if !fps.is_empty() => fps[(next() as usize) % fps.len()],
                _ => (next() % 4) << 1,
            };
            match next() % 6 {
                0 => {
                    got.mark_seen(key).unwrap();
                    want.mark_seen(key).unwrap();
                }
                1 => {
                    got.unmark_seen(key).unwrap();
                    want.unmark_seen(key).unwrap();
                }
                _ => {
                    let changed = next().is_multiple_of(9);
                    assert_eq!(got.observe(key, f, changed).unwrap(), want.observe(key, f, changed).unwrap());
                }
            }
            assert_eq!(got.has_unseen(), want.has_unseen());
        }
        assert_eq!(unseen(got), unseen(want));
    }

    /// A table too large for memory is indexed through sorted runs on disk: the
    /// key file they merge into gives the answers a read into memory gives.
    #[test]
    fn a_large_table_is_indexed_through_runs_on_disk() {
        let dir = std::env::temp_dir().join(format!("api2csv-index-runs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (table, keys) = (dir.join("t.csv"), dir.join(".t.keys"));
        let mut next = crate::store::hashing::xorshift(0x9E37_79B9_7F4A_7C15u64);
        let mut text = String::from("id,name,_synced_at,_deleted\n");
        for _ in 0..150_000 {
            let (id, name, deleted) = (next() % 90_000, next() % 3, next().is_multiple_of(11));
            text.push_str(&format!("{id},{name},t,{deleted}\n"));
        }
        std::fs::write(&table, &text).unwrap();
        let len = text.len() as u64;
        let (mut want, want_crc) = load(&table, len, &["id"], false).unwrap();
        let (mut got, crc) = load_keyed(&table, &keys, ("t", &["id"], false), len, 1000).unwrap();
        assert!(got.disk.is_some() && !dir.join(".t.keys.runs").exists());
        assert_eq!((crc, got.len()), (want_crc, want.len()));
        same_answers(&mut got, &mut want, &mut next);
        // And the key file it left is used as it is.
        let (mut again, _) = load_keyed(&table, &keys, ("t", &["id"], false), len, 1000).unwrap();
        let (mut want, _) = load(&table, len, &["id"], false).unwrap();
        same_answers(&mut again, &mut want, &mut next);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
