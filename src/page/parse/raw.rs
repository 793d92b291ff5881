//! JSON text as the body sent it: strings unescaped into a reused buffer, arrays
//! copied (compacted) when serde_json would write them the same way, numbers as sent.
//!
//! Every function here reads text serde_json's skip of a value (`&RawValue`) has
//! already checked: structure, numbers, escapes and control characters. What that
//! skip does not check, and a full read would refuse, is checked here: a lone
//! surrogate in a `\u` escape, and nesting past serde_json's limit.

use std::collections::HashMap;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The deepest nesting serde_json reads (its limit of 128 levels, the 128th refused).
pub(super) const MAX_DEPTH: u32 = 127;

/// The error serde_json gives for nesting past its limit.
pub(super) const TOO_DEEP: &str = "recursion limit exceeded";
const LONE: &str = "lone leading surrogate in hex escape";
const END_OF_ESCAPE: &str = "unexpected end of hex escape";

/// Appends the characters of JSON string `raw` (quotes included) to `out`.
pub(super) fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    let s = &raw[1..raw.len() - 1];
    let mut i = 0;
    while let Some(k) = s[i..].iter().position(|&b| b == b'\\') {
        let k = i + k;
        out.extend_from_slice(&s[i..k]);
        i = k + 2;
        let b = match s.get(k + 1) {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let (c, used) = code_point(s, k)?;
                i = k + used;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            _ => return Err("invalid escape"),
        };
        out.push(b);
    }
    out.extend_from_slice(&s[i..]);
    Ok(())
}

/// The character of the `\u` escape at `s[at]` (a surrogate pair takes two), and
/// how many bytes it took; a lone surrogate is refused as serde_json refuses it.
fn code_point(s: &[u8], at: usize) -> Result<(char, usize), &'static str> {
    let n = hex4(s, at + 2)?;
    let (cp, used) = match n {
        0xDC00..=0xDFFF => return Err(LONE),
        0xD800..=0xDBFF => {
            if s.get(at + 6) != Some(&b'\\') || s.get(at + 7) != Some(&b'u') {
                return Err(END_OF_ESCAPE);
            }
            let n2 = hex4(s, at + 8)?;
            if !(0xDC00..=0xDFFF).contains(&n2) {
                return Err(LONE);
            }
            (0x1_0000 + ((n - 0xD800) << 10 | (n2 - 0xDC00)), 12)
        }
        n => (n, 6),
    };
    Ok((char::from_u32(cp).ok_or(LONE)?, used))
}

fn hex4(s: &[u8], at: usize) -> Result<u32, &'static str> {
    let digits = s.get(at..at + 4).ok_or(END_OF_ESCAPE)?;
    let mut n = 0;
    for &d in digits {
        n = n << 4 | (d as char).to_digit(16).ok_or("invalid escape")?;
    }
    Ok(n)
}

/// Checks what the skip of value `raw`, nested in `depth` levels, left unchecked.
pub(super) fn check(raw: &[u8], depth: u32) -> Result<(), &'static str> {
    let opens = || raw.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if !raw.contains(&b'\\') && (depth as usize + opens()) <= MAX_DEPTH as usize {
        return Ok(());
    }
    let (mut i, mut level, mut deepest) = (0, 0u32, 0u32);
    while i < raw.len() {
        match raw[i] {
            b'"' => {
                i += 1;
                loop {
                    match raw[i] {
                        b'"' => break,
                        b'\\' if raw[i + 1] == b'u' => i += code_point(raw, i)?.1,
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
            }
            b'[' | b'{' => {
                level += 1;
                deepest = deepest.max(level);
            }
            b']' | b'}' => level -= 1,
            _ => {}
        }
        i += 1;
    }
    if depth + deepest > MAX_DEPTH {
        return Err(TOO_DEEP);
    }
    Ok(())
}

/// Reused buffers of [`array_text`].
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// Per open container: whether it is an object, where its keys start in `keys`,
    /// and whether a string met now is a key.
    frames: Vec<(bool, usize, bool)>,
    /// The keys (their text in the body) of the objects open.
    keys: Vec<(usize, usize)>,
}

/// Keys an object may have for [`array_text`] to look for repeats among them one by one.
const MAX_KEYS: usize = 64;

/// Appends array `raw` (nested in `depth` levels) to `out` as serde_json writes the
/// `Value` it reads (compact; strings escaped its way; of a repeated key the last
/// value, in its first position), numbers as sent. Most arrays are copied as they
/// are, less any whitespace; others are read again, member by member.
pub(super) fn array_text(raw: &str, depth: u32, out: &mut Vec<u8>, scratch: &mut Scratch) -> Result<(), String> {
    let start = out.len();
    match copy_canonical(raw.as_bytes(), out, scratch) {
        Some(deepest) if depth + deepest > MAX_DEPTH => Err(TOO_DEEP.into()),
        Some(_) => Ok(()),
        None => {
            out.truncate(start);
            check(raw.as_bytes(), depth)?;
            write_value(raw, out).map_err(|e| e.to_string())
        }
    }
}

/// Copies `raw` to `out` without whitespace outside strings, if what remains is what
/// serde_json writes: every escape as it writes escapes, no key repeated in an
/// object. Returns the deepest nesting, or `None` if the text is not so.
pub(super) fn copy_canonical(raw: &[u8], out: &mut Vec<u8>, scratch: &mut Scratch) -> Option<u32> {
    let Scratch { frames, keys } = scratch;
    frames.clear();
    keys.clear();
    let (mut i, mut deepest) = (0, 0u32);
    while i < raw.len() {
        let b = raw[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'"' => {
                let from = i;
                i += 1;
                loop {
                    match raw[i] {
                        b'"' => break,
                        b'\\' => i += canonical_escape(&raw[i..])?,
                        _ => i += 1,
                    }
                }
                i += 1;
                let text = &raw[from..i];
                if let Some((true, first, key @ true)) = frames.last_mut() {
                    *key = false;
                    let mine = &keys[*first..];
                    if mine.len() >= MAX_KEYS || mine.iter().any(|&(s, e)| &raw[s..e] == text) {
                        return None;
                    }
                    keys.push((from, i));
                }
                out.extend_from_slice(text);
                continue;
            }
            b'[' | b'{' => {
                frames.push((b == b'{', keys.len(), b == b'{'));
                deepest = deepest.max(frames.len() as u32);
            }
            b']' | b'}' => {
                if let Some((_, first, _)) = frames.pop() {
                    keys.truncate(first);
                }
            }
            b',' => {
                if let Some((true, _, key)) = frames.last_mut() {
                    *key = true;
                }
            }
            _ => {}
        }
        out.push(b);
        i += 1;
    }
    Some(deepest)
}

/// The length of the escape at the start of `s` if serde_json writes that character
/// so: `\"`, `\\`, the short forms of its five control characters, and `\u00xx`
/// (lower-case hex) for the other characters below U+0020.
fn canonical_escape(s: &[u8]) -> Option<usize> {
    match s.get(1)? {
        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        b'u' => {
            let hex = s.get(2..6)?;
            let lower = hex.iter().all(|&d| d.is_ascii_digit() || (b'a'..=b'f').contains(&d));
            let n = std::str::from_utf8(hex).ok().and_then(|h| u32::from_str_radix(h, 16).ok())?;
            (lower && n < 0x20 && !matches!(n, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)).then_some(6)
        }
        _ => None,
    }
}

/// Writes value `raw` as serde_json writes the `Value` it reads, numbers as sent.
/// Reads each level again: only for arrays [`copy_canonical`] cannot copy.
fn write_value(raw: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match raw.as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(raw)?;
            out.push(b'[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                write_value(item.get(), out)?;
            }
            out.push(b']');
        }
        Some(b'{') => {
            let mut de = serde_json::Deserializer::from_str(raw);
            let members = de.deserialize_map(Members)?;
            de.end()?;
            out.push(b'{');
            for (k, (key, value)) in members.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_value(value.get(), out)?;
            }
            out.push(b'}');
        }
        Some(b'"') => {
            let s: String = serde_json::from_str(raw)?;
            serde_json::to_writer(&mut *out, &s)?;
        }
        _ => out.extend_from_slice(raw.as_bytes()),
    }
    Ok(())
}

/// The members of an object in first-seen key order, each key's last value.
struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(String, &'de RawValue)> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: &'de RawValue = map.next_value()?;
            match at.get(&key) {
                Some(&i) => members[i].1 = value,
                None => {
                    at.insert(key.clone(), members.len());
                    members.push((key, value));
                }
            }
        }
        Ok(members)
    }
}

/// Strips the position serde_json adds to its messages (an inner reader's position
/// means nothing to the body's reader, which adds its own).
pub(super) fn message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// An error of the body's reader with `text`.
pub(super) fn error<E: de::Error>(text: impl std::fmt::Display) -> E {
    E::custom(text)
}
