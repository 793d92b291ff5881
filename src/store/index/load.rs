//! Loading an index: from every committed row, or from a key file that proves it
//! covers the table's first bytes and the rows after them; a large one into its key
//! file, through sorted runs, rather than into memory.

use std::path::Path;

use super::rows::{scan, KeyedRows};
use super::{merge_later, Entry, KeyIndex, LOAD_CHUNK, TOMBSTONE};
use crate::error::{Error, Result};
use crate::store::keyfile;

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
    // The key file is read once: into memory, or, by its size too large for that,
    // into a directory to look keys up in where it lies. It proves itself, then that
    // the table starts with the bytes it covers.
    let base = if keyfile::entries_in(keys).is_some_and(|n| n > in_memory) {
        keyfile::OnDisk::open(keys, identity).map(|(disk, c)| (Base::Disk(disk), c))
    } else {
        let mut main = Vec::new();
        keyfile::read(keys, identity, |key, val| main.push(Entry { key, val })).map(|c| (Base::Memory(main), c))
    };
    let mut usable = None;
    if let Some((base, c)) = base.filter(|(_, c)| c.len <= len) {
        let (crc, prefix_crc) = keyfile::crcs(path, len, c.len).map_err(|e| Error::io("read", path, e))?;
        usable = (prefix_crc == c.crc).then_some((base, c, crc));
    }
    let Some((base, covers, crc)) = usable else {
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
    let mut main = match base {
        Base::Disk(disk) if covers.len == len => return Ok((KeyIndex::on_disk(disk), crc)),
        Base::Memory(main) if covers.count.saturating_add(tail.len() as u64) <= in_memory => main,
        _ => {
            // Key file and tail merged into the next key file, a stream of each; a
            // key file that cannot be written (a full disk) leaves the index in memory.
            match merge_into(keys, identity, (len, crc), &tail) {
                Ok(Some(disk)) => return Ok((KeyIndex::on_disk(disk), crc)),
                Ok(None) => {}
                Err(e) => log::debug!("{}: key file not written: {e}", keys.display()),
            }
            let mut main = Vec::with_capacity(usize::try_from(covers.count).unwrap_or(0));
            let proven = keyfile::read(keys, identity, |key, val| main.push(Entry { key, val }));
            if proven.is_none_or(|c| c != covers) {
                return load(path, len, primary_key, guarded);
            }
            main
        }
    };
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

/// Leaves the key file of `table` in `dir` from `entries` (each row written, in file
/// order) for the first `len` bytes of the table, whose CRC-32 is `crc`: a first
/// sync's, a refresh's, a compaction's. One that cannot be written costs the next
/// sync a read of the table, nothing else.
pub fn leave_key_file(
    entries: keyfile::Spill,
    dir: &Path,
    (table, primary_key, guarded): (&str, &[&str], bool),
    (len, crc): (u64, u32),
) {
    let keys = keyfile::keys_path(dir, table);
    let identity = keyfile::identity(table, primary_key, guarded);
    if let Err(e) = entries.finish(&keys, identity, (len, crc), TOMBSTONE) {
        log::debug!("{}: key file not written: {e}", keys.display());
    }
}

/// A proven key file as [`load_keyed`] read it.
enum Base {
    Memory(Vec<Entry>),
    Disk(keyfile::OnDisk),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::hashing::key as key_hash;
    use crate::store::index::fp;

    /// The key file is only a shortcut: whatever prefix of the table it covers (or
    /// a stale one, from another version of the table), and whether the index is read
    /// into memory or looked up on disk, it answers every question as the index of a
    /// read of every row does.
    #[test]
    fn an_index_loaded_through_a_key_file_is_the_index_of_every_row() {
        let dir = crate::store::fsio::test_dir("index-keys");
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
        let dir = crate::store::fsio::test_dir("index-runs");
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
