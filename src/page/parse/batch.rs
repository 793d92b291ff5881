//! The flattened records of one page body: interned key paths and their leaves,
//! in buffers reused from page to page, and how a repeated key keeps its last value.

use std::collections::HashMap;

use crate::page::timestamp::{self, TimeFormat};
use crate::store::hashing::FxBuild;

/// The key serde_json hands out for a number read with `arbitrary_precision`.
pub(super) const NUMBER_TOKEN: &str = "$serde_json::private::Number";
/// Ends every segment of an encoded key path: a byte that valid UTF-8 never holds.
const END: u8 = 0xFF;
/// Starts the encoded path of a column a connector derives itself (Paligo's `level`):
/// also never in UTF-8, so a derived path cannot equal a key path the API sent.
const DERIVED: u8 = 0xFE;
/// A batch forgets the key paths of earlier pages once it knows this many.
const MAX_PATHS: usize = 10_000;
/// Marks a cell that only records where an object started (for repeated keys).
pub(super) const MARKER: u32 = u32::MAX;

/// One leaf of a record: an interned key path and a range of the value buffer.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub path: u32,
    pub(super) start: u32,
    pub(super) end: u32,
}

impl Cell {
    pub(super) fn is_marker(&self) -> bool {
        self.start == MARKER
    }
}

/// What the reader knows of one interned key path.
#[derive(Debug, Clone, Copy)]
pub(super) struct PathInfo {
    /// The encoded path in `Paths::bytes`, and where its last segment starts.
    pub(super) start: u32,
    pub(super) end: u32,
    pub(super) last: u32,
    /// The enclosing object's path (`ROOT` for a top-level key).
    pub(super) parent: u32,
    /// The path of the key met right after this one last time: records of a page
    /// share their shape, so this guess spares the hash lookup, and one record's
    /// extra key costs one miss, not the rest of the record.
    pub(super) succ: u32,
    /// The record that last met this path (plus one): met twice, a key repeats.
    pub(super) stamp: u32,
    pub(super) time: bool,
    pub(super) capture: Option<u8>,
}

/// What a path is, as the spec says: a timestamp, a captured key.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Facts {
    pub(super) time: bool,
    pub(super) capture: Option<u8>,
}

/// Interned key paths: `a` then `b` is `a\xFFb\xFF`.
#[derive(Debug, Default)]
pub(super) struct Paths {
    pub(super) bytes: Vec<u8>,
    pub(super) info: Vec<PathInfo>,
    pub(super) map: HashMap<Box<[u8]>, u32, FxBuild>,
}

/// The parent of a top-level key, and "no path".
pub(super) const ROOT: u32 = u32::MAX;

impl Paths {
    pub(super) fn len(&self) -> usize {
        self.info.len()
    }

    pub(super) fn get(&self, id: u32) -> &[u8] {
        let p = &self.info[id as usize];
        &self.bytes[p.start as usize..p.end as usize]
    }

    /// True when `id` is key `key` (without its END) directly under `parent`.
    pub(super) fn is(&self, id: u32, parent: u32, key: &[u8]) -> bool {
        match self.info.get(id as usize) {
            Some(p) => p.parent == parent && short_eq(&self.bytes[p.last as usize..p.end as usize - 1], key),
            None => false,
        }
    }

    /// The id of encoded `path`, interned (with its ancestors) if new.
    pub(super) fn intern(&mut self, path: &[u8], facts: impl FnOnce() -> Facts) -> u32 {
        if let Some(&id) = self.map.get(path) {
            return id;
        }
        let parent = match parent_path(path) {
            Some(p) => self.intern(p, Facts::default),
            None => ROOT,
        };
        let id = self.info.len() as u32;
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(path);
        let last = start + parent_path(path).map_or(0, |p| p.len()) as u32;
        let Facts { time, capture } = facts();
        let end = self.bytes.len() as u32;
        self.info.push(PathInfo { start, end, last, parent, succ: ROOT, stamp: 0, time, capture });
        self.map.insert(path.into(), id);
        id
    }

    pub(super) fn facts(&self, id: u32) -> Facts {
        let p = &self.info[id as usize];
        Facts { time: p.time, capture: p.capture }
    }

    pub(super) fn parent_of(&self, id: u32) -> Option<u32> {
        Some(self.info[id as usize].parent).filter(|&p| p != ROOT)
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.info.clear();
        self.map.clear();
    }
}

/// The flattened records of one page body, buffers reused from page to page.
#[derive(Debug, Default)]
pub struct Batch {
    pub(super) values: Vec<u8>,
    pub(super) cells: Vec<Cell>,
    /// Per record, the end of its cells.
    pub(super) ends: Vec<u32>,
    /// (record, capture key index, range of `captured_ids`) for [`Spec::capture`]
    /// keys that held an array.
    pub(super) captured: Vec<(u32, u8, u32, u32)>,
    /// The `id` of each object of a captured array: a range of `values`.
    pub(super) captured_ids: Vec<(u32, u32)>,
    pub(super) paths: Paths,
    /// Timestamps that were not valid date-times, and the first of them.
    pub bad_timestamps: u64,
    pub first_bad_timestamp: Option<String>,
    // The record being read.
    /// The path of each key entered, outermost first.
    pub(super) ids: Vec<u32>,
    /// Scratch for the encoded path of a key the guess missed.
    pub(super) scratch: Vec<u8>,
    pub(super) cur_id: u32,
    /// The key just entered is serde_json's number token (see [`Batch::is_number_token`]).
    pub(super) key_is_number_token: bool,
    /// Where the body being read lies in memory (see [`Batch::is_number_token`]).
    pub(super) body: (usize, usize),
    /// Where in the body the key just entered ends (past its closing quote), or
    /// `usize::MAX` if it did not come from the body as it is (an escaped key).
    pub(super) after_key: usize,
    /// Reused by the reading of arrays and escaped strings.
    pub(super) raw: super::raw::Scratch,
    pub(super) text: Vec<u8>,
    /// The path of a record's first key last time (see `PathInfo::succ`).
    pub(super) first: u32,
    /// The path of the key met last in this record (`ROOT` at its start).
    pub(super) prev: u32,
    pub(super) has_repeats: bool,
    pub(super) record_start: usize,
    pub(super) spec_timestamps: Vec<String>,
    pub(super) spec_capture: Vec<String>,
    pub(super) time_format: Option<TimeFormat>,
}

impl Batch {
    /// Empties the batch for the next page.
    pub fn clear(&mut self) {
        self.values.clear();
        self.cells.clear();
        self.ends.clear();
        self.captured.clear();
        self.captured_ids.clear();
        self.bad_timestamps = 0;
        self.first_bad_timestamp = None;
        if self.paths.len() > MAX_PATHS {
            self.paths.clear();
            self.first = ROOT;
        }
        self.paths.info.iter_mut().for_each(|p| p.stamp = 0);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The leaves of record `i`, in the order of the record's keys.
    pub fn record(&self, i: usize) -> impl Iterator<Item = &Cell> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.cells[start..self.ends[i] as usize].iter().filter(|c| !c.is_marker())
    }

    pub fn value(&self, cell: &Cell) -> &[u8] {
        &self.values[cell.start as usize..cell.end as usize]
    }

    /// Every value of the batch (captured ids included) as one buffer, in the order
    /// read: the same records read from any body give the same bytes.
    pub fn all_values(&self) -> &[u8] {
        &self.values
    }

    /// The value of the leaf at `path` (an id from [`Batch::path_id`]) in record `i`.
    pub fn value_at(&self, i: usize, path: u32) -> Option<&[u8]> {
        self.record(i).find(|c| c.path == path).map(|c| self.value(c))
    }

    /// The id of key path `segments`, if any record of the batch has it.
    pub fn path_id(&self, segments: &[&str]) -> Option<u32> {
        self.paths.map.get(encode(segments).as_slice()).copied()
    }

    /// The id of a column the connector derives (see [`Batch::push_derived`]).
    #[cfg(test)]
    pub fn derived_id(&self, name: &str) -> Option<u32> {
        self.paths.map.get(encode_derived(name).as_slice()).copied()
    }

    /// The encoded key path of `id`: segments each followed by 0xFF, or 0xFE and a
    /// derived column's name.
    pub fn path(&self, id: u32) -> &[u8] {
        self.paths.get(id)
    }

    /// The [`Spec::capture`] key `index` of record `i`, if it held an array: the
    /// `id` of each object in it that has a string or number there, as text.
    pub fn captured(&self, i: usize, index: usize) -> Option<impl Iterator<Item = &[u8]>> {
        let (i, index) = (i as u32, index as u8);
        // Captured values are kept in record order.
        let from = self.captured.partition_point(|(r, _, _, _)| *r < i);
        let mut of_record = self.captured[from..].iter().take_while(|(r, _, _, _)| *r == i);
        let &(_, _, start, end) = of_record.find(|(_, k, _, _)| *k == index)?;
        let ids = &self.captured_ids[start as usize..end as usize];
        Some(ids.iter().map(|&(s, e)| &self.values[s as usize..e as usize]))
    }

    /// How many ids the captured arrays of the batch hold, all records together.
    pub fn captured_len(&self) -> usize {
        self.captured_ids.len()
    }

    /// Forgets an earlier value of capture key `index` in the record being read: a
    /// key repeated in a record keeps its last value.
    pub(super) fn forget_captured(&mut self, index: u8) {
        let record = self.ends.len() as u32;
        // Values come in record order, so only this record's are looked at.
        let mut mine = self.captured.iter().rev().take_while(|(r, _, _, _)| *r == record);
        if let Some(back) = mine.position(|(_, k, _, _)| *k == index) {
            self.captured.remove(self.captured.len() - 1 - back);
        }
    }

    /// True when `key`, handed over by serde_json, is the key of its number token:
    /// a number read with `arbitrary_precision`, not a key in the body (the same
    /// text as a key in the body lies in the body).
    pub(super) fn is_number_token(&self, key: &str) -> bool {
        let at = key.as_ptr() as usize;
        key == NUMBER_TOKEN && !(self.body.0..self.body.1).contains(&at)
    }

    /// Where in the body the text after key `key`, lent from the body, starts.
    pub(super) fn after(&self, key: &str) -> usize {
        let at = key.as_ptr() as usize;
        match (self.body.0..self.body.1).contains(&at) {
            true => at - self.body.0 + key.len() + 1,
            false => usize::MAX,
        }
    }

    /// Starts a record built by hand (rows a connector makes from other records).
    pub fn begin_record(&mut self) {
        self.record_start = self.cells.len();
        self.prev = ROOT;
    }

    /// Adds the leaf `segments` = `value` to the record built by hand.
    pub fn push_leaf(&mut self, segments: &[&str], value: &[u8]) {
        encode_into(segments, &mut self.scratch);
        let id = self.intern_scratch();
        self.push_value(id, value);
    }

    /// Adds a derived column's cell to the record built by hand.
    pub fn push_derived(&mut self, name: &str, value: &[u8]) {
        encode_derived_into(name, &mut self.scratch);
        let id = self.intern_scratch();
        self.push_value(id, value);
    }

    /// The path most likely next in the record being read or built: the one met
    /// after the last path last time (see `PathInfo::succ`).
    fn guess(&self) -> u32 {
        if self.prev == ROOT {
            self.first
        } else {
            self.paths.info[self.prev as usize].succ
        }
    }

    /// Notes path `id` as the one after the last, for the next [`Batch::guess`].
    fn follow(&mut self, id: u32) {
        match self.prev {
            ROOT => self.first = id,
            prev => self.paths.info[prev as usize].succ = id,
        }
        self.prev = id;
    }

    /// The id of the encoded path in `scratch`, interned if new, for a record built
    /// by hand: records built alike share their paths' order, so the path after the
    /// last one is tried first (as [`Batch::push_key`] does).
    fn intern_scratch(&mut self) -> u32 {
        let guess = self.guess();
        let id = match self.paths.info.get(guess as usize).is_some_and(|_| self.paths.get(guess) == self.scratch) {
            true => guess,
            false => self.paths.intern(&self.scratch, Facts::default),
        };
        self.follow(id);
        id
    }

    /// Copies the leaves of record `i` of `other` into the record built by hand.
    pub fn copy_record(&mut self, other: &Batch, i: usize) {
        for cell in other.record(i) {
            let id = self.paths.intern(other.path(cell.path), || other.paths.facts(cell.path));
            self.push_value(id, other.value(cell));
        }
    }

    pub fn end_record(&mut self) {
        self.ends.push(self.cells.len() as u32);
    }

    pub(super) fn push_value(&mut self, path: u32, value: &[u8]) {
        let start = self.values.len() as u32;
        self.values.extend_from_slice(value);
        self.cells.push(Cell { path, start, end: self.values.len() as u32 });
    }

    // ---- reading a record ----

    pub(super) fn start_record(&mut self) {
        self.record_start = self.cells.len();
        self.ids.clear();
        self.cur_id = MARKER;
        self.prev = ROOT;
        self.has_repeats = false;
    }

    pub(super) fn finish_record(&mut self) {
        if self.has_repeats {
            self.keep_last_values();
        }
        self.ends.push(self.cells.len() as u32);
    }

    /// Enters key `key` of the object at the current path.
    pub(super) fn push_key(&mut self, key: &[u8]) {
        let depth = self.ids.len() + 1;
        let parent = self.ids.last().copied().unwrap_or(ROOT);
        let guess = self.guess();
        let id = match self.paths.is(guess, parent, key) {
            true => guess,
            false => {
                let (times, captures, format) = (&self.spec_timestamps, &self.spec_capture, self.time_format);
                let top = (depth == 1).then(|| String::from_utf8_lossy(key));
                self.scratch.clear();
                if parent != ROOT {
                    self.scratch.extend_from_slice(self.paths.get(parent));
                }
                self.scratch.extend_from_slice(key);
                self.scratch.push(END);
                self.paths.intern(&self.scratch, || Facts {
                    time: format.is_some() && top.as_ref().is_some_and(|k| times.iter().any(|t| t == k)),
                    capture: top.as_ref().and_then(|k| captures.iter().position(|c| c == k)).map(|p| p as u8),
                })
            }
        };
        self.follow(id);
        let stamp = self.ends.len() as u32 + 1;
        let info = &mut self.paths.info[id as usize];
        self.has_repeats |= info.stamp == stamp;
        info.stamp = stamp;
        self.ids.push(id);
        self.cur_id = id;
    }

    pub(super) fn pop_key(&mut self) {
        self.ids.pop();
        self.cur_id = self.ids.last().copied().unwrap_or(MARKER);
    }

    /// The value of the current path: `bytes` as the cell shows them, or a JSON
    /// number's text (`number`); a timestamp key's value converted to RFC 3339.
    pub(super) fn leaf(&mut self, bytes: &[u8], number: bool) {
        let id = self.cur_id;
        let start = self.values.len() as u32;
        let converted = match (self.paths.info[id as usize].time, self.time_format, number) {
            (true, Some(TimeFormat::SpaceSeparatedUtc), _) if !bytes.is_empty() => {
                timestamp::space_separated(bytes, &mut self.values)
            }
            (true, Some(TimeFormat::UnixSeconds), true) => timestamp::unix_seconds(bytes, &mut self.values),
            _ => {
                self.values.extend_from_slice(bytes);
                true
            }
        };
        if !converted {
            self.bad_timestamp(bytes);
        }
        self.cells.push(Cell { path: id, start, end: self.values.len() as u32 });
    }

    pub(super) fn bad_timestamp(&mut self, bytes: &[u8]) {
        self.bad_timestamps += 1;
        if self.first_bad_timestamp.is_none() {
            self.first_bad_timestamp = Some(String::from_utf8_lossy(bytes).into_owned());
        }
    }

    pub(super) fn marker(&mut self, path: u32) -> Cell {
        Cell { path, start: MARKER, end: MARKER }
    }

    /// Rewrites the current record's cells as `serde_json::Value` would read it: of
    /// a repeated key only the last value counts, in the key's first position.
    pub(super) fn keep_last_values(&mut self) {
        let events = &self.cells[self.record_start..];
        let mut last: HashMap<u32, usize> = HashMap::new();
        for (i, c) in events.iter().enumerate() {
            last.insert(c.path, i);
        }
        let parent = |id: u32| self.paths.parent_of(id);
        // Where the live instance of each object starts: its last occurrence.
        let live_after = |id: u32| parent(id).map(|p| last[&p]);
        let mut first_in_live: HashMap<u32, usize> = HashMap::new();
        for (i, c) in events.iter().enumerate() {
            if live_after(c.path).is_none_or(|after| i > after) {
                first_in_live.entry(c.path).or_insert(i);
            }
        }
        let is_live = |i: usize, id: u32| -> bool {
            let mut id = id;
            let mut i = i;
            loop {
                if last[&id] != i {
                    return false;
                }
                match parent(id) {
                    None => return true,
                    Some(p) => {
                        if i <= last[&p] {
                            return false;
                        }
                        i = last[&p];
                        id = p;
                    }
                }
            }
        };
        let order = |id: u32| -> Vec<usize> {
            let mut chain = vec![first_in_live[&id]];
            let mut id = id;
            while let Some(p) = parent(id) {
                chain.push(first_in_live[&p]);
                id = p;
            }
            chain.reverse();
            chain
        };
        let mut live: Vec<(Vec<usize>, Cell)> = events
            .iter()
            .enumerate()
            .filter(|(i, c)| !c.is_marker() && is_live(*i, c.path))
            .map(|(_, c)| (order(c.path), *c))
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        self.cells.truncate(self.record_start);
        self.cells.extend(live.into_iter().map(|(_, c)| c));
    }
}

/// Slice equality for keys of a few bytes, by words: a call to `memcmp`, or a loop
/// over bytes, costs more than the compare itself.
pub(super) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    match n {
        0..=3 => a == b,
        4..=8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => {
            // Whole words, then the last word again, overlapping.
            let mut i = 0;
            while i + 8 < n {
                if word(a, i) != word(b, i) {
                    return false;
                }
                i += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        }
    }
}

/// The encoded path of `segments`.
pub fn encode(segments: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(segments, &mut out);
    out
}

fn encode_into(segments: &[&str], out: &mut Vec<u8>) {
    out.clear();
    for s in segments {
        out.extend_from_slice(s.as_bytes());
        out.push(END);
    }
}

/// The encoded path of the derived column `name`.
pub fn encode_derived(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_derived_into(name, &mut out);
    out
}

fn encode_derived_into(name: &str, out: &mut Vec<u8>) {
    out.clear();
    out.push(DERIVED);
    out.extend_from_slice(name.as_bytes());
    out.push(END);
}

/// A decoded key path: JSON key segments, or a derived column's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPath {
    Json(Vec<String>),
    Derived(String),
}

/// Decodes a path from [`Batch::path`].
pub fn decode(path: &[u8]) -> KeyPath {
    if let Some(rest) = path.strip_prefix(&[DERIVED]) {
        return KeyPath::Derived(String::from_utf8_lossy(&rest[..rest.len().saturating_sub(1)]).into_owned());
    }
    let segs = path.split(|&b| b == END).map(|s| String::from_utf8_lossy(s).into_owned());
    let mut segs: Vec<String> = segs.collect();
    segs.pop(); // after the final END
    KeyPath::Json(segs)
}

/// The encoded path without its last segment; `None` for a top-level key.
pub(super) fn parent_path(path: &[u8]) -> Option<&[u8]> {
    let body = &path[..path.len() - 1];
    body.iter().rposition(|&b| b == END).map(|i| &path[..=i])
}

#[cfg(test)]
mod tests {
    /// Against slice equality, for every length up to 40 and a difference at each byte.
    #[test]
    fn agrees_with_slice_equality() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(super::short_eq(&a, &a.clone()));
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x40;
                assert_eq!(super::short_eq(&a, &b), a == b, "{n} {i}");
            }
            assert!(!super::short_eq(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
    }
}
