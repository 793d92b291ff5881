//! A one-pass, allocation-free JSON reader for API pages.
//!
//! serde_json would give us a tree per record (one allocation per key and string) and
//! round floats through `f64`. Pages are read once with this pull parser instead:
//! strings are unescaped into caller buffers, numbers and arrays are kept as the text
//! the API sent, so `64.290` and integers above 2^64 survive byte for byte.

use std::fmt;

/// What went wrong, and the byte offset in the body where it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.what)
    }
}

pub type Result<T> = std::result::Result<T, SyntaxError>;

/// The kind of the next value, seen without consuming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

/// A pull parser over one complete JSON document held in memory.
pub struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    /// After a value inside an object or array, the next call must see `,` or the end.
    need_comma: bool,
}

impl<'a> Parser<'a> {
    pub fn new(buf: &'a [u8]) -> Parser<'a> {
        Parser { buf, pos: 0, need_comma: false }
    }

    fn err<T>(&self, what: &'static str) -> Result<T> {
        Err(SyntaxError { offset: self.pos, what })
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.buf.get(self.pos) {
            self.pos += 1;
        }
    }

    fn byte(&mut self) -> Result<u8> {
        self.skip_ws();
        match self.buf.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err("unexpected end of input"),
        }
    }

    /// The kind of the next value.
    pub fn peek(&mut self) -> Result<Kind> {
        Ok(match self.byte()? {
            b'{' => Kind::Object,
            b'[' => Kind::Array,
            b'"' => Kind::String,
            b'-' | b'0'..=b'9' => Kind::Number,
            b't' | b'f' => Kind::Bool,
            b'n' => Kind::Null,
            _ => return self.err("expected a value"),
        })
    }

    /// Checks that nothing but whitespace follows the document.
    pub fn finish(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            self.err("trailing characters")
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<()> {
        if self.byte()? != b {
            return self.err(what);
        }
        self.pos += 1;
        Ok(())
    }

    /// Enters an object; then call [`Parser::next_key`] until it returns `None`.
    pub fn begin_object(&mut self) -> Result<()> {
        self.expect(b'{', "expected an object")?;
        self.need_comma = false;
        Ok(())
    }

    /// Enters an array; then call [`Parser::next_element`] until it returns false.
    pub fn begin_array(&mut self) -> Result<()> {
        self.expect(b'[', "expected an array")?;
        self.need_comma = false;
        Ok(())
    }

    /// Moves to the next element of the current array; false at its end.
    pub fn next_element(&mut self) -> Result<bool> {
        if self.byte()? == b']' {
            self.pos += 1;
            self.need_comma = true;
            return Ok(false);
        }
        if self.need_comma {
            self.expect(b',', "expected ',' or ']'")?;
        }
        self.need_comma = false;
        Ok(true)
    }

    /// The next key of the current object, unescaped into `key`; false at its end.
    pub fn next_key(&mut self, key: &mut Vec<u8>) -> Result<bool> {
        if self.byte()? == b'}' {
            self.pos += 1;
            self.need_comma = true;
            return Ok(false);
        }
        if self.need_comma {
            self.expect(b',', "expected ',' or '}'")?;
        }
        key.clear();
        self.string_into(key)?;
        self.expect(b':', "expected ':'")?;
        self.need_comma = false;
        Ok(true)
    }

    fn value_done(&mut self) {
        self.need_comma = true;
    }

    /// Reads a string value, appending its unescaped bytes to `out`.
    pub fn string_into(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.expect(b'"', "expected a string")?;
        loop {
            let rest = &self.buf[self.pos..];
            let n = plain_run(rest);
            out.extend_from_slice(&rest[..n]);
            self.pos += n;
            match self.buf.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    self.value_done();
                    return Ok(());
                }
                Some(b'\\') => self.escape(out)?,
                Some(_) => return self.err("control character in string"),
                None => return self.err("unterminated string"),
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let Some(&c) = self.buf.get(self.pos + 1) else {
            return self.err("unterminated escape");
        };
        self.pos += 2;
        let simple = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => return self.unicode_escape(out),
            _ => return self.err("invalid escape"),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32> {
        let Some(digits) = self.buf.get(self.pos..self.pos + 4) else {
            return self.err("short \\u escape");
        };
        let mut v = 0;
        for &d in digits {
            let x = (d as char).to_digit(16);
            let Some(x) = x else { return self.err("invalid \\u escape") };
            v = v * 16 + x;
        }
        self.pos += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if self.buf.get(self.pos..self.pos + 2) != Some(b"\\u") {
                return self.err("lone surrogate");
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return self.err("invalid surrogate pair");
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        let Some(ch) = char::from_u32(code) else {
            return self.err("lone surrogate");
        };
        let mut utf8 = [0; 4];
        out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
        Ok(())
    }

    /// Reads a number and returns its text as sent.
    pub fn number(&mut self) -> Result<&'a [u8]> {
        self.skip_ws();
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while let Some(b'0'..=b'9') = p.buf.get(p.pos) {
                p.pos += 1;
            }
            p.pos > s
        };
        if self.buf.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        if !digits(self) {
            return self.err("invalid number");
        }
        if self.buf.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !digits(self) {
                return self.err("invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.buf.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.buf.get(self.pos) {
                self.pos += 1;
            }
            if !digits(self) {
                return self.err("invalid number");
            }
        }
        self.value_done();
        Ok(&self.buf[start..self.pos])
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<&'a [u8]> {
        self.skip_ws();
        let end = self.pos + word.len();
        if self.buf.get(self.pos..end) != Some(word) {
            return self.err("invalid literal");
        }
        self.pos = end;
        self.value_done();
        Ok(word)
    }

    /// Reads `true` or `false`.
    pub fn boolean(&mut self) -> Result<&'a [u8]> {
        if self.byte()? == b't' {
            self.literal(b"true")
        } else {
            self.literal(b"false")
        }
    }

    /// Reads `null`.
    pub fn null(&mut self) -> Result<()> {
        self.literal(b"null").map(|_| ())
    }

    /// Skips any value and returns its raw text.
    pub fn skip(&mut self) -> Result<&'a [u8]> {
        self.skip_ws();
        let start = self.pos;
        // One bit per open container, 1 for an object: no allocation, 128 levels deep.
        let mut stack: u128 = 0;
        let mut depth = 0u32;
        loop {
            let opened = match self.peek()? {
                Kind::Object => Some(true),
                Kind::Array => Some(false),
                Kind::String => {
                    self.skip_string()?;
                    None
                }
                Kind::Number => self.number().map(|_| None)?,
                Kind::Bool => self.boolean().map(|_| None)?,
                Kind::Null => self.null().map(|_| None)?,
            };
            if let Some(is_object) = opened {
                if depth == 128 {
                    return self.err("nested too deeply");
                }
                self.pos += 1;
                stack = (stack << 1) | is_object as u128;
                depth += 1;
                let close = if is_object { b'}' } else { b']' };
                if self.byte()? != close {
                    if is_object {
                        self.skip_key()?;
                    }
                    continue;
                }
            }
            // A value ended (or a container is about to close): close containers
            // until a separator announces the next value.
            loop {
                if depth == 0 {
                    self.value_done();
                    return Ok(&self.buf[start..self.pos]);
                }
                let in_object = stack & 1 == 1;
                match (self.byte()?, in_object) {
                    (b',', _) => {
                        self.pos += 1;
                        if in_object {
                            self.skip_key()?;
                        }
                        break;
                    }
                    (b'}', true) | (b']', false) => {
                        self.pos += 1;
                        stack >>= 1;
                        depth -= 1;
                    }
                    _ => return self.err("expected ',' or a closing bracket"),
                }
            }
        }
    }

    fn skip_key(&mut self) -> Result<()> {
        self.skip_string()?;
        self.expect(b':', "expected ':'")
    }

    fn skip_string(&mut self) -> Result<()> {
        self.expect(b'"', "expected a string")?;
        loop {
            let rest = &self.buf[self.pos..];
            let n = plain_run(rest);
            if n == rest.len() {
                return self.err("unterminated string");
            }
            self.pos += n;
            match self.buf[self.pos] {
                b'"' => {
                    self.pos += 1;
                    self.value_done();
                    return Ok(());
                }
                b'\\' => self.pos += 2,
                _ => return self.err("control character in string"),
            }
        }
    }
}

/// The length of the prefix of `s` that a string can hold without a closer look:
/// no `"`, no `\`, no control character. Eight bytes at a time, since strings are
/// most of a page.
fn plain_run(s: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        // A byte below 0x20 borrows in `w - 0x20..`; bytes >= 0x80 are excluded by `!w`.
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        let special = has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64)) | control;
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + s[i..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(s.len() - i)
}

/// Reads the object at `p`, copying the string or number under `key` into `out`;
/// false if the object has no such scalar.
pub fn field(p: &mut Parser, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
    let mut k = Vec::new();
    let mut found = false;
    p.begin_object()?;
    while p.next_key(&mut k)? {
        match p.peek()? {
            Kind::String if k == key => {
                p.string_into(out)?;
                found = true;
            }
            Kind::Number if k == key => {
                out.extend_from_slice(p.number()?);
                found = true;
            }
            _ => drop(p.skip()?),
        }
    }
    Ok(found)
}

/// Appends `raw` JSON text without the whitespace between tokens.
pub fn compact_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_objects_strings_and_numbers_exactly() {
        let doc = br#" { "a" : "x\"y\u00e9\ud83d\ude00" , "n": 123456789012345678901234, "f": 64.290 } "#;
        let mut p = Parser::new(doc);
        let mut key = Vec::new();
        let mut val = Vec::new();
        p.begin_object().unwrap();
        assert!(p.next_key(&mut key).unwrap());
        assert_eq!(key, b"a");
        p.string_into(&mut val).unwrap();
        assert_eq!(String::from_utf8(val).unwrap(), "x\"yé😀");
        assert!(p.next_key(&mut key).unwrap());
        assert_eq!(p.number().unwrap(), b"123456789012345678901234");
        assert!(p.next_key(&mut key).unwrap());
        assert_eq!(p.number().unwrap(), b"64.290");
        assert!(!p.next_key(&mut key).unwrap());
        p.finish().unwrap();
    }

    #[test]
    fn skip_returns_raw_text_of_nested_values() {
        let doc = br#"[ {"a": [1, {"b": "]}"}], "c": null}, true, "s" ]"#;
        let mut p = Parser::new(doc);
        p.begin_array().unwrap();
        assert!(p.next_element().unwrap());
        assert_eq!(p.skip().unwrap(), &br#"{"a": [1, {"b": "]}"}], "c": null}"#[..]);
        assert!(p.next_element().unwrap());
        assert_eq!(p.skip().unwrap(), b"true");
        assert!(p.next_element().unwrap());
        assert_eq!(p.skip().unwrap(), b"\"s\"");
        assert!(!p.next_element().unwrap());
        p.finish().unwrap();
    }

    #[test]
    fn skip_handles_empty_containers() {
        let doc = br#"{"a": {}, "b": [], "c": [[], {}]}"#;
        let mut p = Parser::new(doc);
        assert_eq!(p.skip().unwrap(), &doc[..]);
        p.finish().unwrap();
    }

    #[test]
    fn rejects_truncated_and_garbage_input() {
        for bad in [&b"{\"a\": [1, 2"[..], b"{\"a\" 1}", b"[1 2]", b"<html>", b"{\"a\":\"x", b"[01x]"] {
            let mut p = Parser::new(bad);
            let r = p.skip().and_then(|_| p.finish());
            assert!(r.is_err(), "accepted {:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn plain_runs_stop_at_the_first_special_byte() {
        let cases: [(&[u8], usize); 8] = [
            (b"abcdefghijklmnop\"x", 16),
            (b"abc\"", 3),
            (b"abcdefg\\h", 7),
            (b"abcdefghij\nk", 10),
            (b"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"", 10),
            (b"\x7f\xff\x80 ~abcdefgh\x1f", 13),
            (b"plain", 5),
            (b"", 0),
        ];
        for (s, n) in cases {
            assert_eq!(plain_run(s), n, "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn compacts_outside_strings_only() {
        let mut out = Vec::new();
        compact_into(b"[ 1 , { \"a b\" : \"c \\\" d\" } ]", &mut out);
        assert_eq!(out, b"[1,{\"a b\":\"c \\\" d\"}]");
    }
}
