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

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::timestamp::TimeFormat;

mod batch;
use batch::ROOT;
pub use batch::{decode, encode, encode_derived, Batch, Cell, KeyPath};

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
    /// The target of the response's RFC 8288 `rel="next"` link, if any.
    pub link_next: Option<String>,
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

/// Parses `body` per `spec`: records into `batch` (cleared first), the rest into
/// the envelope. Fails, with `batch` emptied, when the body is not valid JSON or
/// holds no records array.
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
                        b.leaf(text.as_bytes(), true);
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
                        // A key repeated in the record: the last value stands. Values
                        // come in record order, so only this record's are looked at.
                        let mut mine = b.captured.iter().rev().take_while(|(r, _, _)| *r == record);
                        if let Some(back) = mine.position(|(_, k, _)| *k == index) {
                            b.captured.remove(b.captured.len() - 1 - back);
                        }
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
        self.batch.leaf(if v { b"true" } else { b"false" }, false);
        Ok(Outcome::Done)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Outcome, E> {
        self.batch.leaf(integer_text(v, &mut [0; 24]), true);
        Ok(Outcome::Done)
    }

    fn visit_u64<E>(self, v: u64) -> Result<Outcome, E> {
        self.batch.leaf(integer_text(v, &mut [0; 24]), true);
        Ok(Outcome::Done)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Outcome, E> {
        // Not reached with `arbitrary_precision`, which hands floats over as text.
        self.batch.leaf(v.to_string().as_bytes(), true);
        Ok(Outcome::Done)
    }

    fn visit_str<E>(self, v: &str) -> Result<Outcome, E> {
        self.batch.leaf(v.as_bytes(), false);
        Ok(Outcome::Done)
    }

    /// Strings from a slice arrive borrowed or copied; an owned one is the text of
    /// a number inside serde_json's number map.
    fn visit_string<E>(self, v: String) -> Result<Outcome, E> {
        if self.maybe_number {
            return Ok(Outcome::Number(v));
        }
        self.batch.leaf(v.as_bytes(), false);
        Ok(Outcome::Done)
    }

    fn visit_unit<E>(self) -> Result<Outcome, E> {
        self.batch.leaf(b"", false);
        Ok(Outcome::Done)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Outcome, A::Error> {
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        let mut text = Vec::new();
        serde_json::to_writer(&mut text, &value).map_err(de::Error::custom)?;
        self.batch.leaf(&text, false);
        Ok(Outcome::Done)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Outcome, A::Error> {
        Object { batch: self.batch, top: false }.visit_map(map)
    }
}

/// How far from its end a body's `meta` object may start for [`next_cursor_hint`].
const HINT_TAIL: usize = 4096;

/// A guess at a cursor page's `meta.next_cursor` from the end of its body alone,
/// so that the next page can be asked for while this one is parsed. The body must
/// end in `"meta": {…}}` (the last top-level key, as MailerLite sends it), the key
/// after `{` or `,`; serde_json reads the object. In a body that is valid JSON that
/// is the top-level `meta`, the last of its name; other bodies may mislead it, so
/// the guess is only ever used once the full parse names the same cursor.
pub fn next_cursor_hint(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        next_cursor: Option<String>,
    }
    const KEY: &[u8] = b"\"meta\"";
    let end = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if body[end] != b'}' {
        return None;
    }
    let from = end.saturating_sub(HINT_TAIL);
    let at = from + body[from..end].windows(KEY.len()).rposition(|w| w == KEY)?;
    let before = body[..at].iter().rposition(|b| !b.is_ascii_whitespace()).map(|i| body[i]);
    if !matches!(before, Some(b'{' | b',')) {
        return None;
    }
    let after = &body[at + KEY.len()..end];
    let colon = after.iter().position(|b| !b.is_ascii_whitespace())?;
    if after[colon] != b':' {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(&after[colon + 1..]);
    let meta = Meta::deserialize(&mut de).ok()?;
    de.end().ok()?;
    meta.next_cursor.filter(|c| !c.is_empty())
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
