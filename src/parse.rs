//! Page bodies, read once with serde_json into a [`Batch`] of flattened records.
//!
//! A `DeserializeSeed` walks the body in one pass and writes each record's leaves
//! (key path, value) straight into reused buffers: no tree per record. Numbers keep
//! the text the API sent (serde_json's `arbitrary_precision`), arrays become their
//! compact JSON text, and a key repeated in one object keeps its last value in its
//! first position, exactly as `serde_json::Value` (with `preserve_order`) reads it.
//! Whatever serde_json refuses (RFC 8259 as it reads it: bad escapes, lone
//! surrogates, leading zeros, nesting past 128 levels) fails the whole body.
//!
//! Nothing here knows about columns or files: a batch is only turned into rows once
//! the connector has accepted the whole body, so a body that is retried leaves no trace.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::hashing::FxBuild;
use crate::timestamp::{self, TimeFormat};

/// The key serde_json hands out for a number read with `arbitrary_precision`.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";
/// Ends every segment of an encoded key path: a byte that valid UTF-8 never holds.
const END: u8 = 0xFF;
/// Starts the encoded path of a column a connector derives itself (Paligo's `level`):
/// also never in UTF-8, so a derived path cannot equal a key path the API sent.
const DERIVED: u8 = 0xFE;
/// A batch forgets the key paths of earlier pages once it knows this many.
const MAX_PATHS: usize = 10_000;
/// Marks a cell that only records where an object started (for repeated keys).
const MARKER: u32 = u32::MAX;

/// What to read out of a page body.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// Top-level keys that may hold the array of records, most preferred first.
    pub records: &'a [&'a str],
    /// A bare JSON array is accepted as the records (Paligo's docs show one).
    pub bare_array: bool,
    /// Top-level keys of a record that hold timestamps, and how they arrive.
    pub timestamps: &'a [&'a str],
    pub time_format: Option<TimeFormat>,
    /// Top-level keys of a record kept as a `Value` (see [`Batch::captured`]) and
    /// left out of its cells.
    pub capture: &'a [&'a str],
}

impl Spec<'_> {
    pub const fn records_in(key: &'static [&'static str]) -> Spec<'static> {
        Spec { records: key, bare_array: false, timestamps: &[], time_format: None, capture: &[] }
    }
}

/// The rest of a page body: every top-level key but the records.
#[derive(Debug, Default)]
pub struct Envelope {
    pub fields: Map<String, Value>,
    /// Which key held the records; `None` for a bare array.
    pub records_key: Option<String>,
}

impl Envelope {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }
}

/// Why a body was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One leaf of a record: an interned key path and a range of the value buffer.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub path: u32,
    start: u32,
    end: u32,
}

impl Cell {
    fn is_marker(&self) -> bool {
        self.start == MARKER
    }
}

/// What the reader knows of one interned key path.
#[derive(Debug, Clone, Copy)]
struct PathInfo {
    /// The encoded path in `Paths::bytes`, and where its last segment starts.
    start: u32,
    end: u32,
    last: u32,
    /// The enclosing object's path (`ROOT` for a top-level key).
    parent: u32,
    /// The path of the key met right after this one last time: records of a page
    /// share their shape, so this guess spares the hash lookup, and one record's
    /// extra key costs one miss, not the rest of the record.
    succ: u32,
    /// The record that last met this path (plus one): met twice, a key repeats.
    stamp: u32,
    time: bool,
    capture: Option<u8>,
}

/// What a path is, as the spec says: a timestamp, a captured key.
#[derive(Debug, Clone, Copy, Default)]
struct Facts {
    time: bool,
    capture: Option<u8>,
}

/// Interned key paths: `a` then `b` is `a\xFFb\xFF`.
#[derive(Debug, Default)]
struct Paths {
    bytes: Vec<u8>,
    info: Vec<PathInfo>,
    map: HashMap<Box<[u8]>, u32, FxBuild>,
}

/// The parent of a top-level key, and "no path".
const ROOT: u32 = u32::MAX;

impl Paths {
    fn len(&self) -> usize {
        self.info.len()
    }

    fn get(&self, id: u32) -> &[u8] {
        let p = &self.info[id as usize];
        &self.bytes[p.start as usize..p.end as usize]
    }

    /// True when `id` is key `key` (without its END) directly under `parent`.
    fn is(&self, id: u32, parent: u32, key: &[u8]) -> bool {
        match self.info.get(id as usize) {
            Some(p) => p.parent == parent && short_eq(&self.bytes[p.last as usize..p.end as usize - 1], key),
            None => false,
        }
    }

    /// The id of encoded `path`, interned (with its ancestors) if new.
    fn intern(&mut self, path: &[u8], facts: impl FnOnce() -> Facts) -> u32 {
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

    fn facts(&self, id: u32) -> Facts {
        let p = &self.info[id as usize];
        Facts { time: p.time, capture: p.capture }
    }

    fn parent_of(&self, id: u32) -> Option<u32> {
        Some(self.info[id as usize].parent).filter(|&p| p != ROOT)
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.info.clear();
        self.map.clear();
    }
}

/// The flattened records of one page body, buffers reused from page to page.
#[derive(Debug, Default)]
pub struct Batch {
    values: Vec<u8>,
    cells: Vec<Cell>,
    /// Per record, the end of its cells.
    ends: Vec<u32>,
    /// (record, capture key index, value) for [`Spec::capture`] keys.
    captured: Vec<(u32, u8, Value)>,
    paths: Paths,
    /// Timestamps that were not valid date-times, and the first of them.
    pub bad_timestamps: u64,
    pub first_bad_timestamp: Option<String>,
    // The record being read.
    /// The path of each key entered, outermost first.
    ids: Vec<u32>,
    /// Scratch for the encoded path of a key the guess missed.
    scratch: Vec<u8>,
    cur_id: u32,
    /// The key just entered is serde_json's number token.
    key_is_number_token: bool,
    /// The path of a record's first key last time (see `PathInfo::succ`).
    first: u32,
    /// The path of the key met last in this record (`ROOT` at its start).
    prev: u32,
    has_repeats: bool,
    record_start: usize,
    spec_timestamps: Vec<String>,
    spec_capture: Vec<String>,
    time_format: Option<TimeFormat>,
}

impl Batch {
    /// Empties the batch for the next page.
    pub fn clear(&mut self) {
        self.values.clear();
        self.cells.clear();
        self.ends.clear();
        self.captured.clear();
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

    /// The value of the leaf at `path` (an id from [`Batch::path_id`]) in record `i`.
    pub fn value_at(&self, i: usize, path: u32) -> Option<&[u8]> {
        self.record(i).find(|c| c.path == path).map(|c| self.value(c))
    }

    /// The id of key path `segments`, if any record of the batch has it.
    pub fn path_id(&self, segments: &[&str]) -> Option<u32> {
        self.paths.map.get(encode(segments).as_slice()).copied()
    }

    /// The id of a column the connector derives (see [`Batch::push_derived`]).
    pub fn derived_id(&self, name: &str) -> Option<u32> {
        self.paths.map.get(encode_derived(name).as_slice()).copied()
    }

    /// The encoded key path of `id`: segments each followed by 0xFF, or 0xFE and a
    /// derived column's name.
    pub fn path(&self, id: u32) -> &[u8] {
        self.paths.get(id)
    }

    /// The [`Spec::capture`] value `index` of record `i`.
    pub fn captured(&self, i: usize, index: usize) -> Option<&Value> {
        let i = i as u32;
        let index = index as u8;
        self.captured.iter().find(|(r, k, _)| *r == i && *k == index).map(|(_, _, v)| v)
    }

    /// Starts a record built by hand (rows a connector makes from other records).
    pub fn begin_record(&mut self) {
        self.record_start = self.cells.len();
    }

    /// Adds the leaf `segments` = `value` to the record built by hand.
    pub fn push_leaf(&mut self, segments: &[&str], value: &[u8]) {
        let id = self.paths.intern(&encode(segments), Facts::default);
        self.push_value(id, value);
    }

    /// Adds a derived column's cell to the record built by hand.
    pub fn push_derived(&mut self, name: &str, value: &[u8]) {
        let id = self.paths.intern(&encode_derived(name), Facts::default);
        self.push_value(id, value);
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

    fn push_value(&mut self, path: u32, value: &[u8]) {
        let start = self.values.len() as u32;
        self.values.extend_from_slice(value);
        self.cells.push(Cell { path, start, end: self.values.len() as u32 });
    }

    // ---- reading a record ----

    fn start_record(&mut self) {
        self.record_start = self.cells.len();
        self.ids.clear();
        self.cur_id = MARKER;
        self.prev = ROOT;
        self.has_repeats = false;
    }

    fn finish_record(&mut self) {
        if self.has_repeats {
            self.keep_last_values();
        }
        self.ends.push(self.cells.len() as u32);
    }

    /// Enters key `key` of the object at the current path.
    fn push_key(&mut self, key: &[u8]) {
        let depth = self.ids.len() + 1;
        let parent = self.ids.last().copied().unwrap_or(ROOT);
        let guess = if self.prev == ROOT { self.first } else { self.paths.info[self.prev as usize].succ };
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
        match self.prev {
            ROOT => self.first = id,
            prev => self.paths.info[prev as usize].succ = id,
        }
        self.prev = id;
        let stamp = self.ends.len() as u32 + 1;
        let info = &mut self.paths.info[id as usize];
        self.has_repeats |= info.stamp == stamp;
        info.stamp = stamp;
        self.ids.push(id);
        self.cur_id = id;
        self.key_is_number_token = key == NUMBER_TOKEN.as_bytes();
    }

    fn pop_key(&mut self) {
        self.ids.pop();
        self.cur_id = self.ids.last().copied().unwrap_or(MARKER);
    }

    fn leaf(&mut self, bytes: &[u8]) {
        let id = self.cur_id;
        let start = self.values.len() as u32;
        match (self.paths.info[id as usize].time, self.time_format) {
            (true, Some(TimeFormat::SpaceSeparatedUtc)) if !bytes.is_empty() => {
                if !timestamp::space_separated(bytes, &mut self.values) {
                    self.bad_timestamp(bytes);
                }
            }
            _ => self.values.extend_from_slice(bytes),
        }
        self.cells.push(Cell { path: id, start, end: self.values.len() as u32 });
    }

    fn number_leaf(&mut self, text: &[u8]) {
        if self.paths.info[self.cur_id as usize].time && self.time_format == Some(TimeFormat::UnixSeconds) {
            let start = self.values.len() as u32;
            if !timestamp::unix_seconds(text, &mut self.values) {
                self.bad_timestamp(text);
            }
            self.cells.push(Cell { path: self.cur_id, start, end: self.values.len() as u32 });
        } else {
            self.leaf(text);
        }
    }

    fn bad_timestamp(&mut self, bytes: &[u8]) {
        self.bad_timestamps += 1;
        if self.first_bad_timestamp.is_none() {
            self.first_bad_timestamp = Some(String::from_utf8_lossy(bytes).into_owned());
        }
    }

    fn marker(&mut self, path: u32) -> Cell {
        Cell { path, start: MARKER, end: MARKER }
    }

    /// Rewrites the current record's cells as `serde_json::Value` would read it: of
    /// a repeated key only the last value counts, in the key's first position.
    fn keep_last_values(&mut self) {
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
fn short_eq(a: &[u8], b: &[u8]) -> bool {
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
    for s in segments {
        out.extend_from_slice(s.as_bytes());
        out.push(END);
    }
    out
}

/// The encoded path of the derived column `name`.
pub fn encode_derived(name: &str) -> Vec<u8> {
    let mut out = vec![DERIVED];
    out.extend_from_slice(name.as_bytes());
    out.push(END);
    out
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
fn parent_path(path: &[u8]) -> Option<&[u8]> {
    let body = &path[..path.len() - 1];
    body.iter().rposition(|&b| b == END).map(|i| &path[..=i])
}

/// Parses `body` per `spec`: records into `batch` (cleared first), the rest into
/// the envelope. Fails, leaving `batch` to be cleared, when the body is not valid
/// JSON or holds no records array.
pub fn parse(body: &[u8], spec: &Spec, batch: &mut Batch) -> Result<Envelope, ParseError> {
    batch.clear();
    let same = batch.time_format == spec.time_format
        && batch.spec_timestamps.iter().map(String::as_str).eq(spec.timestamps.iter().copied())
        && batch.spec_capture.iter().map(String::as_str).eq(spec.capture.iter().copied());
    if !same {
        // What a path is (a timestamp, captured) depends on the spec: a batch reused
        // for another listing forgets the paths it knew.
        batch.spec_timestamps = spec.timestamps.iter().map(|s| s.to_string()).collect();
        batch.spec_capture = spec.capture.iter().map(|s| s.to_string()).collect();
        batch.time_format = spec.time_format;
        batch.paths.clear();
        batch.first = ROOT;
    }
    // UTF-8 checked once for the whole body, not string by string: serde_json then
    // reads it as a `str` (RFC 8259 allows nothing else, so nothing valid is refused).
    let text = std::str::from_utf8(body).map_err(|e| ParseError(format!("invalid JSON: not UTF-8: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let mut envelope = Envelope::default();
    let seed = PageSeed { spec, batch, envelope: &mut envelope };
    let found = seed.deserialize(&mut de).and_then(|found| de.end().map(|()| found));
    match found {
        Ok(true) => Ok(envelope),
        Ok(false) => {
            batch.clear();
            let keys = spec.records.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(" or ");
            Err(ParseError(format!("the body has no {keys} array")))
        }
        Err(e) => {
            batch.clear();
            Err(ParseError(format!("invalid JSON: {e}")))
        }
    }
}

/// The whole body: an envelope object (or a bare array); true once records were found.
struct PageSeed<'s, 'b> {
    spec: &'s Spec<'s>,
    batch: &'b mut Batch,
    envelope: &'b mut Envelope,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object holding the records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        if !self.spec.bare_array {
            return Err(de::Error::custom("expected a JSON object, found an array"));
        }
        if (Records { batch: self.batch }).visit_seq(seq)? {
            return Err(de::Error::custom("a record is not a JSON object"));
        }
        Ok(true)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        // The most preferred records key met so far (its index in `spec.records`)
        // decides, as serde_json's last value of it: whether it holds records, and
        // whether one of them is not an object.
        let (mut best, mut holds, mut stray): (Option<usize>, bool, bool) = (None, false, false);
        while let Some(key) = map.next_key::<String>()? {
            let rank = self.spec.records.iter().position(|k| *k == key);
            let value = match rank {
                Some(r) if best.is_none_or(|b| r <= b) => {
                    best = Some(r);
                    match map.next_value_seed(MaybeRecords { batch: self.batch })? {
                        Found::Records { stray: s } => {
                            (holds, stray) = (true, s);
                            self.envelope.records_key = Some(key);
                            continue;
                        }
                        Found::Other(value) => {
                            // The records replaced by something else: there are none.
                            self.batch.clear();
                            (holds, stray) = (false, false);
                            self.envelope.records_key = None;
                            value
                        }
                    }
                }
                _ => map.next_value()?,
            };
            self.envelope.fields.insert(key, value);
        }
        if holds && stray {
            return Err(de::Error::custom("a record is not a JSON object"));
        }
        Ok(holds)
    }
}

/// What a records key held: records (with whether one of them is not an object),
/// or another value, kept for the envelope.
enum Found {
    Records { stray: bool },
    Other(Value),
}

/// The value of a records key: an array is read as the records (replacing those of
/// an earlier key); anything else is read as a value, as serde_json reads it, since
/// a later key may replace it.
struct MaybeRecords<'b> {
    batch: &'b mut Batch,
}

impl<'de> DeserializeSeed<'de> for MaybeRecords<'_> {
    type Value = Found;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MaybeRecords<'_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Found, A::Error> {
        self.batch.clear();
        let stray = Records { batch: self.batch }.visit_seq(seq)?;
        Ok(Found::Records { stray })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Found, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Found::Other)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Found, E> {
        Ok(Found::Other(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Found, E> {
        Ok(Found::Other(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Found, E> {
        Ok(Found::Other(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Found, E> {
        Ok(Found::Other(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Found, E> {
        Ok(Found::Other(Value::from(v)))
    }

    fn visit_unit<E>(self) -> Result<Found, E> {
        Ok(Found::Other(Value::Null))
    }
}

/// The array of records.
struct Records<'b> {
    batch: &'b mut Batch,
}

impl<'de> Visitor<'de> for Records<'_> {
    /// Whether an element was not an object (read, and not a record).
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut stray = false;
        loop {
            self.batch.start_record();
            match seq.next_element_seed(Record { batch: self.batch })? {
                None => return Ok(stray),
                Some(true) => self.batch.finish_record(),
                Some(false) => {
                    // Not an object: read, then forgotten, leaves included.
                    self.batch.cells.truncate(self.batch.record_start);
                    stray = true;
                }
            }
        }
    }
}

/// One record: an object, flattened; anything else is read and reported.
struct Record<'b> {
    batch: &'b mut Batch,
}

impl<'de> DeserializeSeed<'de> for Record<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Record<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        // A one-entry map holding a number's text is serde_json's number, not a record.
        match (Object { batch: self.batch, top: true }).visit_map(map)? {
            Outcome::Done => Ok(true),
            Outcome::Number(_) => Ok(false),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(|_| false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// What reading a value found: done, or the text of a number that serde_json
/// handed over as a one-entry map (`arbitrary_precision`).
enum Outcome {
    Done,
    Number(String),
}

/// An object: the record itself (`top`) or one nested in it.
struct Object<'b> {
    batch: &'b mut Batch,
    top: bool,
}

impl<'de> Visitor<'de> for Object<'_> {
    type Value = Outcome;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outcome, A::Error> {
        let b = self.batch;
        let own = b.cur_id;
        let start = b.cells.len();
        let mut first = true;
        while map.next_key_seed(Key { batch: b })?.is_some() {
            if first && b.key_is_number_token {
                match map.next_value_seed(Value_ { batch: b, maybe_number: true })? {
                    Outcome::Number(text) if self.top => {
                        // A number where a record should be: not a record.
                        b.pop_key();
                        return Ok(Outcome::Number(text));
                    }
                    Outcome::Number(text) => {
                        b.pop_key();
                        b.number_leaf(text.as_bytes());
                        return Ok(Outcome::Done);
                    }
                    Outcome::Done if self.top => {}
                    Outcome::Done => {
                        // A real object whose first key happens to be the token.
                        let marker = b.marker(own);
                        b.cells.insert(start, marker);
                    }
                }
            } else {
                if first && !self.top {
                    let marker = b.marker(own);
                    b.cells.push(marker);
                }
                let capture = if self.top { b.paths.info[b.cur_id as usize].capture } else { None };
                match capture {
                    Some(index) => {
                        let value: Value = map.next_value()?;
                        let record = b.ends.len() as u32;
                        b.captured.retain(|(r, k, _)| !(*r == record && *k == index));
                        b.captured.push((record, index, value));
                    }
                    None => drop(map.next_value_seed(Value_ { batch: b, maybe_number: false })?),
                }
            }
            first = false;
            b.pop_key();
        }
        if first && !self.top {
            let marker = b.marker(own);
            b.cells.push(marker);
        }
        Ok(Outcome::Done)
    }
}

/// A key: entered into the batch's current path.
struct Key<'b> {
    batch: &'b mut Batch,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        self.batch.push_key(key.as_bytes());
        Ok(())
    }
}

/// Any value at the batch's current path.
struct Value_<'b> {
    batch: &'b mut Batch,
    /// The value of a map's first key that may be serde_json's number token.
    maybe_number: bool,
}

impl<'de> DeserializeSeed<'de> for Value_<'_> {
    type Value = Outcome;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Outcome, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value_<'_> {
    type Value = Outcome;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Outcome, E> {
        self.batch.leaf(if v { b"true" } else { b"false" });
        Ok(Outcome::Done)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Outcome, E> {
        self.batch.number_leaf(integer_text(v, &mut [0; 24]));
        Ok(Outcome::Done)
    }

    fn visit_u64<E>(self, v: u64) -> Result<Outcome, E> {
        self.batch.number_leaf(integer_text(v, &mut [0; 24]));
        Ok(Outcome::Done)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Outcome, E> {
        // Not reached with `arbitrary_precision`, which hands floats over as text.
        self.batch.number_leaf(v.to_string().as_bytes());
        Ok(Outcome::Done)
    }

    fn visit_str<E>(self, v: &str) -> Result<Outcome, E> {
        self.batch.leaf(v.as_bytes());
        Ok(Outcome::Done)
    }

    /// Strings from a slice arrive borrowed or copied; an owned one is the text of
    /// a number inside serde_json's number map.
    fn visit_string<E>(self, v: String) -> Result<Outcome, E> {
        if self.maybe_number {
            return Ok(Outcome::Number(v));
        }
        self.batch.leaf(v.as_bytes());
        Ok(Outcome::Done)
    }

    fn visit_unit<E>(self) -> Result<Outcome, E> {
        self.batch.leaf(b"");
        Ok(Outcome::Done)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Outcome, A::Error> {
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        let mut text = Vec::new();
        serde_json::to_writer(&mut text, &value).map_err(de::Error::custom)?;
        self.batch.leaf(&text);
        Ok(Outcome::Done)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Outcome, A::Error> {
        Object { batch: self.batch, top: false }.visit_map(map)
    }
}

/// Formats an integer without allocating.
fn integer_text(v: impl fmt::Display, buf: &mut [u8; 24]) -> &[u8] {
    use std::io::Write;
    let mut w = &mut buf[..];
    write!(w, "{v}").expect("an integer fits in 24 bytes");
    let n = 24 - w.len();
    &buf[..n]
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod short_eq_tests {
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
