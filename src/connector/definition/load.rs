//! Reading a definition: typed serde structs (`deny_unknown_fields`), then every
//! check the contract asks for, each error naming the key path
//! (`tables[2].paging.cursor.from: not a JSON Pointer`).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use super::pointer::{follow, pointer, pointer_text};
use super::times::Format;
use crate::page::timestamp::TimeFormat;

/// A checked definition.
#[derive(Debug)]
pub struct Definition {
    pub name: String,
    pub base_url: String,
    pub auth: Auth,
    pub rate_limit: Option<(u32, u32)>,
    pub tables: Vec<Table>,
}

impl Definition {
    /// The pace asked for: the definition's budget, else a generous default (pacing
    /// also learns from the server's rate-limit headers).
    pub fn requests_per_minute(&self) -> u32 {
        match self.rate_limit {
            Some((requests, per_seconds)) => ((u64::from(requests) * 60) / u64::from(per_seconds)).max(1) as u32,
            None => 600,
        }
    }
}

/// How the credentials are sent; each names configuration keys.
#[derive(Debug)]
pub enum Auth {
    /// `Authorization: Bearer <KEY>`.
    Bearer(String),
    /// HTTP Basic `USER_KEY:PASSWORD_KEY`.
    Basic([String; 2]),
    /// A header of this name holding the secret.
    Header { name: &'static str, value: String },
    /// A query parameter of this name holding the secret.
    Query { name: &'static str, value: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamed {
    name: String,
    value: String,
}

impl Auth {
    /// The configuration key of the secret, and of the user name if any.
    pub fn keys(&self) -> (&str, Option<&str>) {
        match self {
            Auth::Bearer(k) => (k, None),
            Auth::Basic([u, p]) => (p, Some(u)),
            Auth::Header { value, .. } | Auth::Query { value, .. } => (value, None),
        }
    }
}

/// One table of a definition.
#[derive(Debug)]
pub struct Table {
    pub name: String,
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    /// The records pointer's tokens: none for a body that is the array, one for a
    /// top-level key.
    pub records: Vec<String>,
    /// Primary key columns: a field's name, or a nested field's flattened name.
    pub primary_key: Vec<String>,
    /// The primary key fields inside objects (`/meta/id`): their key paths, each
    /// written as one column of the flattened name so that the key is a column.
    pub nested_keys: Vec<Vec<String>>,
    /// Timestamp fields the parser converts to RFC 3339 UTC, and how they arrive.
    pub converted: Vec<&'static str>,
    pub time_format: Option<TimeFormat>,
    /// Timestamp fields converted after the parse (other formats).
    pub post: Vec<(&'static str, Format)>,
    pub paging: Paging,
    /// One listing per value of this query parameter.
    pub per_value: Option<(&'static str, Vec<String>)>,
    /// One listing per record of an earlier table.
    pub for_each: Option<ForEach>,
}

/// `for_each`: one listing per record of an earlier table (the parent), its `key`
/// put into the path for `{as}` and written as the column `as`.
#[derive(Debug, Clone)]
pub struct ForEach {
    /// The parent table's index in the definition, and its name.
    pub parent: usize,
    pub table: String,
    /// The key path of the parent record's value (a field name or a pointer's tokens).
    pub key: Vec<String>,
    /// The placeholder's and the column's name.
    pub as_: String,
}

impl Table {
    pub fn read_as(&self) -> String {
        let how = match &self.paging {
            Paging::Cursor { param, .. } => format!("cursor pages ({param})"),
            Paging::NextUrl(_) => "next_url pages".into(),
            Paging::LinkHeader => "Link header pages".into(),
            Paging::Page(_) => "page-number pages".into(),
            Paging::Offset(_) => "offset pages".into(),
            Paging::None => "one request".into(),
        };
        let listing = match &self.per_value {
            Some((p, values)) => format!("{how} of {} per {p} ({})", self.path, values.join(", ")),
            None => format!("{how} of {}", self.path),
        };
        match &self.for_each {
            Some(f) => format!("{listing}, one listing per {} record ({{{}}})", f.table, f.as_),
            None => listing,
        }
    }
}

/// Where a cursor's next value is.
#[derive(Debug, Clone)]
pub enum From {
    /// A pointer into the body (outside the records).
    Body(Vec<String>),
    /// A pointer into a record of the page: the last (`/data/-1/id`, index `None`)
    /// or the one at an index (`/data/0/id`), and the field's key path in it.
    Record(Option<usize>, Vec<String>),
}

#[derive(Debug)]
pub enum Paging {
    Cursor { param: &'static str, from: From, more: Option<Vec<String>> },
    NextUrl(Vec<String>),
    LinkHeader,
    Page(Numbered),
    Offset(Numbered),
    None,
}

/// Page-number or offset pages.
#[derive(Debug, Clone)]
pub struct Numbered {
    pub param: &'static str,
    pub start: u64,
    pub size_param: Option<&'static str>,
    pub size: Option<u32>,
    /// `last` (page count) or `total` (record count).
    pub end: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDef {
    name: String,
    base_url: String,
    auth: Value,
    #[serde(default)]
    rate_limit: Option<RawRate>,
    tables: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    requests: u32,
    per_seconds: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: String,
    path: String,
    #[serde(default)]
    query: Map<String, Value>,
    records: String,
    primary_key: Vec<String>,
    #[serde(default)]
    timestamps: Map<String, Value>,
    paging: Value,
    #[serde(default)]
    for_each: Option<Value>,
    #[serde(default)]
    per_value: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerValue {
    param: String,
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForEach {
    table: String,
    key: String,
    #[serde(rename = "as")]
    as_: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCursor {
    param: String,
    from: String,
    #[serde(default)]
    more: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPage {
    param: String,
    #[serde(default)]
    start: Option<u64>,
    #[serde(default)]
    size_param: Option<String>,
    #[serde(default)]
    size: Option<u32>,
    #[serde(default)]
    last: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffset {
    param: String,
    #[serde(default)]
    size_param: Option<String>,
    #[serde(default)]
    size: Option<u32>,
    #[serde(default)]
    total: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

type Res<T> = Result<T, String>;

fn typed<T: DeserializeOwned>(at: &str, v: Value) -> Res<T> {
    serde_json::from_value(v).map_err(|e| format!("{at}: {e}"))
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn ptr(at: &str, text: &str) -> Res<Vec<String>> {
    pointer(text).ok_or_else(|| format!("{at}: not a JSON Pointer ({text:?}; RFC 6901: \"\" or /a/b)"))
}

fn param(at: &str, v: &str) -> Res<&'static str> {
    if v.is_empty() {
        return Err(format!("{at}: empty"));
    }
    Ok(leak(v.to_string()))
}

/// Reads and checks a definition's text.
pub fn parse(text: &[u8]) -> Res<Definition> {
    let v: Value = serde_json::from_slice(text).map_err(|e| format!("not valid JSON: {e}"))?;
    if !v.is_object() {
        return Err("a definition is one JSON object".into());
    }
    let raw: RawDef = typed("definition", v)?;
    let name = raw.name;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(format!("name: {name:?} must be letters, digits, _ or -"));
    }
    if name == "mailerlite" || name == "paligo" {
        return Err(format!("name: {name:?} is a built-in connector"));
    }
    crate::net::http::check_base_url(&raw.base_url).map_err(|e| format!("base_url: {e}"))?;
    let base_url = raw.base_url.trim_end_matches('/').to_string();
    let auth = auth(raw.auth)?;
    let rate_limit = match raw.rate_limit {
        Some(r) if r.requests == 0 => return Err("rate_limit.requests: must be at least 1".into()),
        Some(r) if r.per_seconds == 0 => return Err("rate_limit.per_seconds: must be at least 1".into()),
        Some(r) => Some((r.requests, r.per_seconds)),
        None => None,
    };
    if raw.tables.is_empty() {
        return Err("tables: at least one table".into());
    }
    let mut tables: Vec<Table> = Vec::new();
    for (i, t) in raw.tables.into_iter().enumerate() {
        let at = format!("tables[{i}]");
        let t = table(&at, t, &base_url, &tables)?;
        if tables.iter().any(|o| o.name == t.name) {
            return Err(format!("{at}.name: {:?} is already a table", t.name));
        }
        tables.push(t);
    }
    Ok(Definition { name, base_url, auth, rate_limit, tables })
}

fn auth(v: Value) -> Res<Auth> {
    let Value::Object(m) = v else { return Err("auth: must be an object with one key".into()) };
    if m.len() != 1 {
        return Err("auth: exactly one of bearer, basic, header, query".into());
    }
    let (kind, v) = m.into_iter().next().expect("one key");
    let at = format!("auth.{kind}");
    let auth = match kind.as_str() {
        "bearer" => Auth::Bearer(typed(&at, v)?),
        "basic" => Auth::Basic(typed(&at, v)?),
        "header" | "query" => {
            let n: RawNamed = typed(&at, v)?;
            let valid = !n.name.is_empty() && n.name.parse::<http::HeaderName>().is_ok();
            if !valid {
                return Err(format!("{at}.name: {:?} is not a valid name", n.name));
            }
            let name = leak(n.name);
            if kind == "header" {
                Auth::Header { name, value: n.value }
            } else {
                Auth::Query { name, value: n.value }
            }
        }
        _ => return Err(format!("{at}: unknown kind (bearer, basic, header, query)")),
    };
    let (key, user) = auth.keys();
    for (k, name) in [(Some(key), "secret"), (user, "user name")] {
        let Some(k) = k else { continue };
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("{at}: the {name}'s configuration key {k:?} must be letters, digits or _"));
        }
        if crate::config::is_setting(k) {
            return Err(format!("{at}: {k:?} is a configuration setting, not a secret's key"));
        }
    }
    if user == Some(key) {
        return Err(format!("{at}: the user name and the secret need two keys"));
    }
    Ok(auth)
}

fn table(at: &str, v: Value, base_url: &str, earlier: &[Table]) -> Res<Table> {
    if !v.is_object() {
        return Err(format!("{at}: must be an object"));
    }
    let raw: RawTable = typed(at, v)?;
    let name = raw.name;
    if name.is_empty()
        || name.starts_with('.')
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(format!("{at}.name: {name:?} must be letters, digits, _, - or ."));
    }
    if !raw.path.starts_with('/') {
        return Err(format!("{at}.path: must start with /"));
    }
    let for_each = raw.for_each.map(|v| for_each(&format!("{at}.for_each"), v, earlier)).transpose()?;
    check_placeholders(at, &raw.path, for_each.as_ref())?;
    let per_value = match raw.per_value {
        None => None,
        Some(v) => {
            let pv: RawPerValue = typed(&format!("{at}.per_value"), v)?;
            let name = param(&format!("{at}.per_value.param"), &pv.param)?;
            if pv.values.is_empty() {
                return Err(format!("{at}.per_value.values: at least one value"));
            }
            if raw.query.contains_key(name) {
                return Err(format!("{at}.per_value.param: {name:?} is also in query"));
            }
            Some((name, pv.values))
        }
    };
    let sample = match &for_each {
        Some(f) => raw.path.replace(&format!("{{{}}}", f.as_), "x"),
        None => raw.path.clone(),
    };
    let url = format!("{base_url}{sample}");
    url.parse::<http::Uri>().map_err(|e| format!("{at}.path: not a URL path ({e})"))?;
    let mut query = Vec::new();
    for (k, v) in raw.query {
        let v = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(format!("{at}.query.{k}: must be a string")),
        };
        query.push((leak(k), v));
    }
    let records = ptr(&format!("{at}.records"), &raw.records)?;
    if raw.primary_key.is_empty() {
        return Err(format!("{at}.primary_key: at least one field"));
    }
    let (mut primary_key, mut nested_keys) = (Vec::new(), Vec::new());
    for (i, k) in raw.primary_key.iter().enumerate() {
        let key_at = format!("{at}.primary_key[{i}]");
        let tokens = if k.starts_with('/') { ptr(&key_at, k)? } else { vec![k.clone()] };
        match tokens.as_slice() {
            [one] if !one.is_empty() => primary_key.push(one.clone()),
            many if many.len() > 1 && many.iter().all(|t| !t.is_empty()) => {
                // A nested field's column is named as the flattening names it.
                primary_key.push(many.join("_"));
                nested_keys.push(many.to_vec());
            }
            _ => return Err(format!("{key_at}: a field of the record (\"id\", \"/id\" or \"/meta/id\")")),
        }
    }
    let (converted, time_format, post) = super::times::load(at, raw.timestamps)?;
    let paging = paging(&format!("{at}.paging"), raw.paging, &raw.records)?;
    Ok(Table {
        name,
        path: raw.path,
        query,
        records,
        primary_key,
        nested_keys,
        converted,
        time_format,
        post,
        paging,
        per_value,
        for_each,
    })
}

fn for_each(at: &str, v: Value, earlier: &[Table]) -> Res<ForEach> {
    let raw: RawForEach = typed(at, v)?;
    let Some(parent) = earlier.iter().position(|t| t.name == raw.table) else {
        return Err(format!("{at}.table: {:?} is not an earlier table of the definition", raw.table));
    };
    let key_at = format!("{at}.key");
    let key = if raw.key.starts_with('/') { ptr(&key_at, &raw.key)? } else { vec![raw.key] };
    if key.is_empty() || key.iter().any(String::is_empty) {
        return Err(format!("{key_at}: a field of the parent record"));
    }
    let as_at = format!("{at}.as");
    if raw.as_.is_empty() || !raw.as_.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(format!("{as_at}: {:?} must be letters, digits, _ or -", raw.as_));
    }
    Ok(ForEach { parent, table: raw.table, key, as_: raw.as_ })
}

/// A path names `{as}` of its `for_each`, and no other placeholder.
fn check_placeholders(at: &str, path: &str, for_each: Option<&ForEach>) -> Res<()> {
    let mut rest = path;
    let mut named = false;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else { return Err(format!("{at}.path: an unclosed {{")) };
        let name = &rest[open + 1..open + len];
        match for_each {
            Some(f) if f.as_ == name => named = true,
            Some(f) => return Err(format!("{at}.path: {{{name}}} is not {{{}}} (for_each.as)", f.as_)),
            None => return Err(format!("{at}.path: {{{name}}} needs a for_each whose \"as\" is {name:?}")),
        }
        rest = &rest[open + len + 1..];
    }
    match for_each {
        Some(f) if !named => Err(format!("{at}.path: must hold {{{}}} (for_each.as)", f.as_)),
        _ => Ok(()),
    }
}

/// The timestamp fields: those the parser converts as it reads (the first format
/// it knows, and the fields in it), and the others, converted after the parse.
#[allow(clippy::type_complexity)]
fn paging(at: &str, v: Value, records: &str) -> Res<Paging> {
    let Value::Object(m) = v else { return Err(format!("{at}: must be an object with one key")) };
    if m.len() != 1 {
        return Err(format!("{at}: exactly one of cursor, next_url, link_header, page, offset, none"));
    }
    let (kind, v) = m.into_iter().next().expect("one key");
    let at = format!("{at}.{kind}");
    match kind.as_str() {
        "cursor" => {
            let c: RawCursor = typed(&at, v)?;
            let param = param(&format!("{at}.param"), &c.param)?;
            let from_at = format!("{at}.from");
            let tokens = ptr(&from_at, &c.from)?;
            let rec = pointer(records).unwrap_or_default();
            let index = |t: &str| match t {
                "-1" => Some(None),
                t if t == "0" || !t.starts_with('0') && !t.starts_with('+') => t.parse().ok().map(Some),
                _ => None,
            };
            let into_records = tokens.len() > rec.len() && tokens[..rec.len()] == rec[..];
            let from = if let Some(i) = into_records.then(|| index(&tokens[rec.len()])).flatten() {
                let rest = tokens[rec.len() + 1..].to_vec();
                if rest.is_empty() || rest.iter().any(String::is_empty) {
                    return Err(format!("{from_at}: a field of a record ({records}/-1/id)"));
                }
                From::Record(i, rest)
            } else {
                if tokens.is_empty() {
                    return Err(format!("{from_at}: points at the whole body"));
                }
                From::Body(tokens)
            };
            let more = c.more.map(|m| ptr(&format!("{at}.more"), &m)).transpose()?;
            Ok(Paging::Cursor { param, from, more })
        }
        "next_url" => {
            let text: String = typed(&at, v)?;
            let tokens = ptr(&at, &text)?;
            if tokens.is_empty() {
                return Err(format!("{at}: points at the whole body"));
            }
            Ok(Paging::NextUrl(tokens))
        }
        "link_header" => {
            typed::<Empty>(&at, v)?;
            Ok(Paging::LinkHeader)
        }
        "page" => {
            let p: RawPage = typed(&at, v)?;
            let end = p.last.map(|l| ptr(&format!("{at}.last"), &l)).transpose()?;
            Ok(Paging::Page(numbered(&at, p.param, p.start.unwrap_or(1), p.size_param, p.size, end)?))
        }
        "offset" => {
            let o: RawOffset = typed(&at, v)?;
            let end = o.total.map(|l| ptr(&format!("{at}.total"), &l)).transpose()?;
            if o.size.is_none() {
                return Err(format!("{at}.size: required (the step between offsets)"));
            }
            Ok(Paging::Offset(numbered(&at, o.param, 0, o.size_param, o.size, end)?))
        }
        "none" => {
            typed::<Empty>(&at, v)?;
            Ok(Paging::None)
        }
        _ => Err(format!("{at}: unknown paging (cursor, next_url, link_header, page, offset, none)")),
    }
}

fn numbered(
    at: &str,
    p: String,
    start: u64,
    size_param: Option<String>,
    size: Option<u32>,
    end: Option<Vec<String>>,
) -> Res<Numbered> {
    let param = param(&format!("{at}.param"), &p)?;
    let size_param = size_param.map(|s| param_of(&format!("{at}.size_param"), &s)).transpose()?;
    if size == Some(0) {
        return Err(format!("{at}.size: must be at least 1"));
    }
    if size_param.is_some() && size.is_none() {
        return Err(format!("{at}.size: required with size_param"));
    }
    Ok(Numbered { param, start, size_param, size, end })
}

fn param_of(at: &str, v: &str) -> Res<&'static str> {
    param(at, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6901 section 5's examples, against serde_json's `Value::pointer`.
    #[test]
    fn pointers_follow_rfc6901() {
        let doc: Value = serde_json::from_str(
            r#"{"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8}"#,
        )
        .unwrap();
        for p in [
            "", "/foo", "/foo/0", "/", "/a~1b", "/c%d", "/e^f", "/g|h", "/i\\j", "/k\"l", "/ ", "/m~0n", "/foo/01",
            "/foo/2", "/x/y",
        ] {
            let tokens = pointer(p).unwrap();
            assert_eq!(follow(&doc, &tokens), doc.pointer(p), "{p}");
        }
        for bad in ["foo", "/~2", "/a~"] {
            assert!(pointer(bad).is_none(), "{bad}");
        }
    }

    /// A small deterministic generator (xorshift64*), for generated cases.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }

        fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
            of[self.next(of.len())]
        }
    }

    const KEYS: &[&str] = &["a", "", "0", "1", "01", "-", "~", "/", "a/b", "m~n", "~1", "~0", " ", "+1"];

    fn doc(g: &mut Gen, depth: u32) -> Value {
        match (depth, g.next(4)) {
            (0, _) | (_, 0) => Value::from(g.pick(KEYS)),
            (_, 1) => Value::Array((0..g.next(4)).map(|_| doc(g, depth - 1)).collect()),
            (_, 2) => Value::Array(
                (0..g.next(4))
                    .map(|_| Value::Object([("a".to_string(), doc(g, depth - 1))].into_iter().collect()))
                    .collect(),
            ),
            _ => Value::Object((0..g.next(5)).map(|_| (g.pick(KEYS).to_string(), doc(g, depth - 1))).collect()),
        }
    }

    /// Generated documents and pointers (escapes, array indices, bad escapes)
    /// against serde_json's `Value::pointer` as the oracle.
    #[test]
    fn pointers_agree_with_serde_json_on_generated_cases() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let tokens =
            ["a", "", "0", "1", "01", "-", "~0", "~1", "a~1b", "m~0n", "~01", "~10", " ", "+1", "3", "~2", "~"];
        let (mut compared, mut found) = (0, 0);
        for _ in 0..3000 {
            let d = doc(&mut g, 4);
            let n = g.next(4);
            let mut p: String = (0..n).map(|_| format!("/{}", g.pick(&tokens))).collect();
            if g.next(10) == 0 {
                p = p.trim_start_matches('/').to_string();
            }
            match pointer(&p) {
                Some(t) => {
                    assert_eq!(follow(&d, &t), d.pointer(&p), "{p} in {d}");
                    assert_eq!(pointer_text(&t), p, "{p}");
                    compared += 1;
                    found += usize::from(d.pointer(&p).is_some());
                }
                None => assert!(
                    !p.starts_with('/') && !p.is_empty() || p.contains("~2") || p.ends_with('~') || p.contains("~/"),
                    "{p}"
                ),
            }
        }
        assert!(compared > 2000 && found > 300, "{compared} {found}");
    }

    /// The parser's nested records (a pointer) against `Value::pointer`: a body is
    /// read exactly when the pointer names an array of objects, one record each.
    #[test]
    fn nested_records_agree_with_serde_json_pointer() {
        let mut g = Gen(0x2545_f491_4f6c_dd1d);
        let tokens = ["a", "a", "a", "0", "0", "", "1", "01", "-", "~0", "~1", "a~1b", "m~0n", "~01", " ", "+1"];
        let (mut read, mut refused) = (0, 0);
        for _ in 0..6000 {
            let mut fields: Map<String, Value> = Map::new();
            fields.insert("a".into(), doc(&mut g, 3));
            for _ in 0..g.next(4) {
                fields.insert(g.pick(KEYS).to_string(), doc(&mut g, 3));
            }
            let d = Value::Object(fields);
            let p: String = (0..1 + g.next(3)).map(|_| format!("/{}", g.pick(&tokens))).collect();
            let body = d.to_string();
            let spec = crate::page::parse::Spec { records: &[p.as_str()], ..crate::page::parse::Spec::records_in(&[]) };
            let mut batch = crate::page::parse::Batch::default();
            let got = crate::page::parse::parse(body.as_bytes(), &spec, &mut batch);
            match d.pointer(&p) {
                Some(Value::Array(items)) if items.iter().all(Value::is_object) => {
                    assert!(got.is_ok(), "{p} in {body}: {got:?}");
                    assert_eq!(batch.len(), items.len(), "{p} in {body}");
                    read += 1;
                }
                _ => {
                    assert!(got.is_err(), "{p} in {body}");
                    refused += 1;
                }
            }
        }
        assert!(read > 150 && refused > 300, "{read} {refused}");
    }

    fn err(def: &str) -> String {
        parse(def.as_bytes()).unwrap_err()
    }

    #[test]
    fn errors_name_the_key() {
        let good = r#"{"name":"acme","base_url":"https://api.acme.example/v1","auth":{"bearer":"api_key"},
            "tables":[{"name":"a","path":"/a","records":"/data","primary_key":["id"],"paging":{"none":{}}},
                      {"name":"b","path":"/b","records":"/data","primary_key":["id"],"paging":{"cursor":{"param":"c","from":"/data/-1/id","more":"/has_more"}}}]}"#;
        assert!(parse(good.as_bytes()).is_ok());
        let e = err(&good.replace("/data/-1/id", "data"));
        assert!(e.starts_with("tables[1].paging.cursor.from: not a JSON Pointer"), "{e}");
        let e = err(&good.replace("\"more\"", "\"mor\""));
        assert!(e.starts_with("tables[1].paging.cursor: unknown field `mor`"), "{e}");
        let e = err(&good.replace("https://api", "http://api"));
        assert!(e.starts_with("base_url: "), "{e}");
    }
}
