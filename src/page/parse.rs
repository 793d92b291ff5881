//! Page bodies, read once with serde_json into a [`Batch`] of flattened records.
//!
//! A `DeserializeSeed` walks the body in one pass and writes each record's leaves
//! (key path, value) straight into reused buffers: no tree per record. A nested
//! object is read in place and a string by serde_json's reader (the value's first
//! byte is looked at in the body, past its key); any other value is read as its text
//! in the body (`&RawValue`): a number keeps the token the API sent
//! (`1E22` stays `1E22`), an array becomes its JSON text as serde_json would write it
//! (copied from the body, less whitespace, when that is the same; see `raw.rs`), and
//! a key repeated in one object keeps its last value in its first position, exactly
//! as `serde_json::Value` (with `preserve_order`) reads it.
//! Whatever serde_json refuses (RFC 8259 as it reads it: bad escapes, lone
//! surrogates, leading zeros, nesting past 128 levels) fails the whole body.
//!
//! Nothing here knows about columns or files: a batch is only turned into rows once
//! the connector has accepted the whole body, so a body that is retried leaves no trace.

use std::fmt;

use serde::de::DeserializeSeed;
use serde::Deserialize as _;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::page::timestamp::TimeFormat;

mod batch;
mod raw;
mod seed;
use batch::ROOT;
pub use batch::{decode, encode, encode_derived, Batch, Cell, KeyPath};
use seed::PageSeed;

/// What to read out of a page body.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// Top-level keys that may hold the array of records, most preferred first; or
    /// one RFC 6901 JSON Pointer (`/data/items`) to a nested array.
    pub records: &'a [&'a str],
    /// A bare JSON array is accepted as the records (Paligo's docs show one).
    pub bare_array: bool,
    /// Top-level keys of a record that hold timestamps, and how they arrive.
    pub timestamps: &'a [&'a str],
    pub time_format: Option<TimeFormat>,
    /// Top-level keys of a record whose array's object ids are kept (see
    /// [`Batch::captured`]), left out of its cells.
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
    if spec.records.first().is_some_and(|p| p.starts_with('/')) {
        return parse_nested(body, spec, batch);
    }
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
    batch.body = (text.as_ptr() as usize, text.as_ptr() as usize + text.len());
    let mut de = serde_json::Deserializer::from_str(text);
    let mut envelope = Envelope::default();
    let seed = PageSeed { spec, batch, envelope: &mut envelope, text };
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

/// [`parse`] with the records at a JSON Pointer (a connector definition's nested
/// `records`): the array is found as raw text (numbers as sent) and read as a bare
/// array's records; the envelope is the whole body, read as a `Value`.
fn parse_nested(body: &[u8], spec: &Spec, batch: &mut Batch) -> Result<Envelope, ParseError> {
    batch.clear();
    let pointer = spec.records[0];
    let text = std::str::from_utf8(body).map_err(|e| ParseError(format!("invalid JSON: not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError(format!("invalid JSON: {e}")))?;
    let records = raw_at(text, pointer).ok_or_else(|| ParseError(format!("the body has no array at {pointer:?}")))?;
    let inner = Spec { records: &[], bare_array: true, ..*spec };
    let mut envelope = parse(records.get().as_bytes(), &inner, batch)?;
    if let Value::Object(fields) = value {
        envelope.fields = fields;
    }
    Ok(envelope)
}

/// The array at `pointer` in `body`, as its text; RFC 6901 as `Value::pointer`
/// reads it (a key repeated in an object keeps its last value).
fn raw_at<'b>(body: &'b str, pointer: &str) -> Option<&'b RawValue> {
    let mut at: &'b RawValue = serde_json::from_str(body).ok()?;
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        let text = at.get().trim_start();
        at = if text.starts_with('{') {
            let map: std::collections::HashMap<String, &'b RawValue> = serde_json::from_str(at.get()).ok()?;
            map.get(&token).copied()?
        } else if text.starts_with('[') {
            if token.starts_with('+') || (token.starts_with('0') && token.len() > 1) {
                return None;
            }
            let items: Vec<&'b RawValue> = serde_json::from_str(at.get()).ok()?;
            items.get(token.parse::<usize>().ok()?).copied()?
        } else {
            return None;
        };
    }
    at.get().trim_start().starts_with('[').then_some(at)
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

#[cfg(test)]
mod tests;
