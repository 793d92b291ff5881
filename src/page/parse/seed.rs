//! The serde seeds and visitors that walk a page body in one pass, writing each
//! record's leaves straight into the batch (see [`super`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;
use serde_json::value::RawValue;
use serde_json::Value;

use super::raw;
use super::{Batch, Envelope, Spec};

/// The whole body: an envelope object (or a bare array); true once records were found.
pub(super) struct PageSeed<'s, 'b> {
    pub(super) spec: &'s Spec<'s>,
    pub(super) batch: &'b mut Batch,
    pub(super) envelope: &'b mut Envelope,
    /// The body (see [`Batch::body`]).
    pub(super) text: &'s str,
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
        if (Records { batch: self.batch, text: self.text, depth: 1 }).visit_seq(seq)? {
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
                    match map.next_value_seed(MaybeRecords { batch: self.batch, text: self.text })? {
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
struct MaybeRecords<'b, 't> {
    batch: &'b mut Batch,
    text: &'t str,
}

impl<'de> DeserializeSeed<'de> for MaybeRecords<'_, '_> {
    type Value = Found;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MaybeRecords<'_, '_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Found, A::Error> {
        self.batch.clear();
        let stray = Records { batch: self.batch, text: self.text, depth: 2 }.visit_seq(seq)?;
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

/// The array of records, `depth` levels deep (inside the body's object, or the body).
struct Records<'b, 't> {
    batch: &'b mut Batch,
    text: &'t str,
    depth: u32,
}

impl<'de> Visitor<'de> for Records<'_, '_> {
    /// Whether an element was not an object (read, and not a record).
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut stray = false;
        loop {
            self.batch.start_record();
            match seq.next_element_seed(Record { batch: self.batch, text: self.text, depth: self.depth })? {
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

/// The `Visitor` methods of a seed for which a scalar in its place is read (and so
/// checked) and answers `$answer`: false for a seed that looks for one kind of
/// container, nothing for one that only reads.
macro_rules! scalars_answer {
    ($answer:expr, $t:ty) => {
        fn visit_bool<E>(self, _: bool) -> Result<$t, E> {
            Ok($answer)
        }

        fn visit_i64<E>(self, _: i64) -> Result<$t, E> {
            Ok($answer)
        }

        fn visit_u64<E>(self, _: u64) -> Result<$t, E> {
            Ok($answer)
        }

        fn visit_f64<E>(self, _: f64) -> Result<$t, E> {
            Ok($answer)
        }

        fn visit_str<E>(self, _: &str) -> Result<$t, E> {
            Ok($answer)
        }

        fn visit_unit<E>(self) -> Result<$t, E> {
            Ok($answer)
        }
    };
}

/// One record (the array of records is `depth` levels deep): an object, flattened;
/// anything else is read and reported.
struct Record<'b, 't> {
    batch: &'b mut Batch,
    text: &'t str,
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for Record<'_, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Record<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        // A one-entry map holding a number's text is serde_json's number, not a record.
        Object { batch: self.batch, text: self.text, top: true, depth: self.depth + 1 }.visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(|_| false)
    }

    scalars_answer!(false, bool);
}

/// An object `depth` levels deep: the record itself (`top`) or one nested in it.
/// The first byte of each value is looked at in the body, past its key: a nested
/// object is read in place, a string by serde_json's own reader; any other value
/// as its text in the body (`&RawValue`), so that a number keeps the token sent and
/// an array its text (and, after an escaped key, whose end in the body is not
/// known, an object or a string too).
struct Object<'b, 't> {
    batch: &'b mut Batch,
    text: &'t str,
    top: bool,
    depth: u32,
}

impl<'de> Visitor<'de> for Object<'_, '_> {
    /// False for serde_json's number (a record that is not an object).
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let b = self.batch;
        let own = b.cur_id;
        let mut first = true;
        while map.next_key_seed(Key { batch: b })?.is_some() {
            if first && b.key_is_number_token {
                // Only a record is read with `deserialize_any`, where a number comes so.
                b.pop_key();
                map.next_value::<de::IgnoredAny>()?;
                return Ok(false);
            }
            if first && !self.top {
                let marker = b.marker(own);
                b.cells.push(marker);
            }
            let capture = if self.top { b.paths.info[b.cur_id as usize].capture } else { None };
            match capture {
                Some(index) => {
                    b.forget_captured(index);
                    let start = b.captured_ids.len() as u32;
                    let array = map.next_value_seed(Capture { batch: b, text: self.text, depth: self.depth + 1 })?;
                    if array {
                        let end = b.captured_ids.len() as u32;
                        b.captured.push((b.ends.len() as u32, index, start, end));
                    }
                }
                None => match value_start(self.text, b.after_key) {
                    Some(b'{') => map.next_value_seed(Nested { batch: b, text: self.text, depth: self.depth })?,
                    Some(b'"') => map.next_value_seed(Text { batch: b })?,
                    _ => map.next_value_seed(Value_ { batch: b, text: self.text, depth: self.depth })?,
                },
            }
            first = false;
            b.pop_key();
        }
        if first && !self.top {
            let marker = b.marker(own);
            b.cells.push(marker);
        }
        Ok(true)
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

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<(), E> {
        let b = self.batch;
        b.key_is_number_token = b.is_number_token(key);
        b.after_key = b.after(key);
        b.push_key(key.as_bytes());
        Ok(())
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        // An escaped key: never serde_json's number token.
        self.batch.key_is_number_token = false;
        self.batch.after_key = usize::MAX;
        self.batch.push_key(key.as_bytes());
        Ok(())
    }
}

/// Any value at the batch's current path, in an object `depth` levels deep.
struct Value_<'b, 't> {
    batch: &'b mut Batch,
    text: &'t str,
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for Value_<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?.get();
        let b = self.batch;
        match raw.as_bytes()[0] {
            b'"' if !raw.as_bytes().contains(&b'\\') => b.leaf(&raw.as_bytes()[1..raw.len() - 1], false),
            b'"' => {
                let mut text = std::mem::take(&mut b.text);
                text.clear();
                let done = raw::unescape(raw.as_bytes(), &mut text);
                if done.is_ok() {
                    b.leaf(&text, false);
                }
                b.text = text;
                done.map_err(raw::error)?;
            }
            b'{' => {
                if self.depth + 1 > raw::MAX_DEPTH {
                    return Err(raw::error(raw::TOO_DEEP));
                }
                let mut de = serde_json::Deserializer::from_str(raw);
                de.deserialize_map(Object { batch: b, text: self.text, top: false, depth: self.depth + 1 })
                    .map_err(|e| raw::error(raw::message(&e)))?;
            }
            b'[' => {
                let mut text = std::mem::take(&mut b.text);
                text.clear();
                let done = raw::array_text(raw, self.depth, &mut text, &mut b.raw);
                if done.is_ok() {
                    b.leaf(&text, false);
                }
                b.text = text;
                done.map_err(raw::error)?;
            }
            b'n' => b.leaf(b"", false),
            b't' | b'f' => b.leaf(raw.as_bytes(), false),
            _ => b.leaf(raw.as_bytes(), true),
        }
        Ok(())
    }
}

/// The first byte of the value after a key whose closing quote ends before `at` in
/// `text` (past the colon and whitespace), if that is where the key lies.
fn value_start(text: &str, at: usize) -> Option<u8> {
    let mut rest = text.as_bytes().get(at..)?.iter().copied().filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match rest.next()? {
        b':' => rest.next(),
        _ => None,
    }
}

/// An object value at the batch's current path, `depth` levels deep in its parent:
/// read in place by the body's reader (seen as `{` ahead, see [`value_start`]).
struct Nested<'b, 't> {
    batch: &'b mut Batch,
    text: &'t str,
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for Nested<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth + 1 > raw::MAX_DEPTH {
            return Err(raw::error(raw::TOO_DEEP));
        }
        d.deserialize_map(Object { batch: self.batch, text: self.text, top: false, depth: self.depth + 1 })?;
        Ok(())
    }
}

/// A string value at the batch's current path (seen as `"` ahead): serde_json
/// lends it from the body, or unescapes it.
struct Text<'b> {
    batch: &'b mut Batch,
}

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.batch.leaf(v.as_bytes(), false);
        Ok(())
    }
}

/// The value of a [`Spec::capture`] key, `depth` levels deep if an array: of each
/// object in it, only the `id` is kept (see [`Batch::captured`]); true if an array.
struct Capture<'b, 't> {
    batch: &'b mut Batch,
    text: &'t str,
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for Capture<'_, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Capture<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let depth = self.depth + 1;
        while seq.next_element_seed(Member { batch: &mut *self.batch, text: self.text, depth })?.is_some() {}
        Ok(true)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        Member { batch: self.batch, text: self.text, depth: self.depth }.visit_map(map).map(|()| false)
    }

    scalars_answer!(false, bool);
}

/// An element of a captured array, `depth` levels deep if a container: of an
/// object, its `id`; anything else is read (and checked) and left.
struct Member<'b, 't> {
    batch: &'b mut Batch,
    text: &'t str,
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for Member<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Member<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let b = self.batch;
        let mut id = None;
        let mut first = true;
        while let Some((key, at)) = map.next_key_seed(MemberKey { batch: b })? {
            if first && key == Kind::Token {
                // serde_json's number: not an object.
                map.next_value::<de::IgnoredAny>()?;
                return Ok(());
            }
            first = false;
            if key == Kind::Other {
                Checked { batch: b, text: self.text }.value(&mut map, at)?;
                continue;
            }
            let raw = map.next_value::<&'de RawValue>()?.get();
            let bytes = raw.as_bytes();
            if key == Kind::Id && (bytes[0] == b'"' || bytes[0] == b'-' || bytes[0].is_ascii_digit()) {
                // A key repeated in the object: the last value stands.
                let start = b.values.len();
                match bytes[0] {
                    b'"' => raw::unescape(bytes, &mut b.values).map_err(raw::error)?,
                    _ => b.values.extend_from_slice(bytes),
                }
                id = Some((start as u32, b.values.len() as u32));
            } else {
                if key == Kind::Id {
                    id = None;
                }
                raw::check(bytes, self.depth).map_err(raw::error)?;
            }
        }
        if let Some(id) = id {
            b.captured_ids.push(id);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let b = &*self.batch;
        while seq.next_element_seed(Checked { batch: b, text: self.text })?.is_some() {}
        Ok(())
    }

    scalars_answer!((), ());
}

/// What a key of a captured array's object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Id,
    /// serde_json's number token (see [`Batch::is_number_token`]).
    Token,
    Other,
}

/// A key of a captured array's object: what it is, and where the text after it
/// starts in the body (see [`Batch::after`]).
struct MemberKey<'b> {
    batch: &'b Batch,
}

impl<'de> DeserializeSeed<'de> for MemberKey<'_> {
    type Value = (Kind, usize);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(Kind, usize), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MemberKey<'_> {
    type Value = (Kind, usize);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<(Kind, usize), E> {
        let kind = match key {
            "id" => Kind::Id,
            _ if self.batch.is_number_token(key) => Kind::Token,
            _ => Kind::Other,
        };
        Ok((kind, self.batch.after(key)))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(Kind, usize), E> {
        Ok((if key == "id" { Kind::Id } else { Kind::Other }, usize::MAX))
    }
}

/// Any value, read for what a full read of it checks and then forgotten: serde_json
/// unescapes its strings and counts its nesting as it reads a `Value`.
#[derive(Clone, Copy)]
struct Checked<'b, 't> {
    batch: &'b Batch,
    text: &'t str,
}

impl<'de> Checked<'_, '_> {
    /// The value of the key `map` just read, whose text ends at `at` (see
    /// [`Batch::after`]): a number, `true`, `false` or `null` is only skipped (the
    /// skip checks all there is, and `arbitrary_precision` would copy a number).
    fn value<A: MapAccess<'de>>(self, map: &mut A, at: usize) -> Result<(), A::Error> {
        match value_start(self.text, at) {
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => map.next_value::<de::IgnoredAny>().map(drop),
            _ => map.next_value_seed(self),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Checked<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some((_, at)) = map.next_key_seed(MemberKey { batch: self.batch })? {
            self.value(&mut map, at)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    scalars_answer!((), ());
}
