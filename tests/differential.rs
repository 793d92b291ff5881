//! The page reader and column naming against serde_json as the oracle.
//!
//! The oracle is `serde_json::Value` with the crate's features (`preserve_order`,
//! `arbitrary_precision`): a body it refuses must be refused whole; otherwise each
//! record's leaves (key path → text: strings as sent, numbers as their token in the
//! body, arrays as `serde_json::to_string` with numbers as sent, null as empty, `{}`
//! nothing) in first-seen order must
//! be what `parse::parse` puts in a batch, and every distinct key path must get its
//! own column, named as `flatten` documents. Bodies come from a generator (odd keys,
//! repeats, every kind of value, nesting, corruption), from every truncation point
//! and byte damage of the embedded mocks' pages, and from `testdata/`, which the
//! binary also syncs end to end. One batch and one set of columns are reused across
//! bodies, as a sync reuses them across pages.
//!
//! `API2CSV_FUZZ_ITERATIONS` (default 3000) scales every loop; `API2CSV_FUZZ_SEED`
//! picks another generator seed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use api2csv::engine::columns::{Columns, TOOL_COLUMNS};
use api2csv::mock::{mailerlite, paligo, MockApi, MockOptions, MockRequest};
use api2csv::page::parse::{self, Batch, KeyPath, Spec};
use serde_json::Value;

use crate::expected::{assert_table, leaves_of, mark_numbers, unmark};
use crate::hostile::{one_line, param, serve_with, Reply, Server};
use crate::workdir::Workdir;

/// A record's leaves: key path → text, in first-seen order.
type Leaves = Vec<(Vec<String>, String)>;

/// What a body holds, per record: its leaves and, per captured key that held an
/// array, the `id` (a string or a number) of each object in it.
type Page = Vec<(Leaves, Vec<Option<Vec<String>>>)>;

const MAILERLITE: Spec = Spec::records_in(&["data"]);
const MAILERLITE_GROUPS: Spec =
    Spec { records: &["data"], bare_array: false, timestamps: &[], time_format: None, capture: &["groups"] };
const PALIGO: Spec =
    Spec { records: &["users", "data", "items"], bare_array: true, timestamps: &[], time_format: None, capture: &[] };
const SPECS: [Spec; 3] = [MAILERLITE, MAILERLITE_GROUPS, PALIGO];

/// The Paligo spec for a listing of `resource`.
fn paligo_spec(resource: &str) -> Spec<'static> {
    let records: &'static [&'static str] = match resource {
        "taxonomies" => &["taxonomies", "data", "items"],
        "assignments" => &["assignments", "data", "items"],
        _ => PALIGO.records,
    };
    Spec { records, ..PALIGO }
}

fn iterations() -> usize {
    std::env::var("API2CSV_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

// ---- the oracle ----

/// What serde_json reads from `body` under `spec`; `None` when the body must be refused.
fn oracle(body: &[u8], spec: &Spec) -> Option<Page> {
    serde_json::from_slice::<Value>(body).ok()?;
    // Read again with numbers as marked strings, so that they keep the token sent.
    let v: Value = serde_json::from_str(&mark_numbers(std::str::from_utf8(body).ok()?)).unwrap();
    let records = match &v {
        Value::Array(a) if spec.bare_array => a,
        Value::Object(m) => spec.records.iter().find_map(|k| m.get(*k))?.as_array()?,
        _ => return None,
    };
    let ids = |v: Option<&Value>| -> Option<Vec<String>> {
        let ids = v?.as_array()?.iter().filter_map(|g| g.get("id")?.as_str().map(unmark));
        Some(ids.collect())
    };
    let page = records.iter().map(|r| {
        let m = r.as_object()?;
        let mut leaves = Vec::new();
        for (k, child) in m.iter().filter(|(k, _)| !spec.capture.contains(&k.as_str())) {
            leaves_of(child, &mut vec![k.clone()], &mut leaves);
        }
        let leaves = leaves.into_iter().map(|(path, text)| (path, unmark(&text))).collect();
        Some((leaves, spec.capture.iter().map(|c| ids(m.get(*c))).collect()))
    });
    page.collect()
}

/// The names `flatten` documents, given to key paths in first-seen order: segments
/// joined with `_`, control characters and U+FEFF made `_`, a taken or reserved name
/// followed by the first free `__2`, `__3`, ….
#[derive(Default)]
struct NameOracle {
    by_path: HashMap<Vec<String>, String>,
    taken: HashSet<String>,
    order: Vec<(Vec<String>, String)>,
}

impl NameOracle {
    fn see(&mut self, path: &[String]) {
        if self.by_path.contains_key(path) {
            return;
        }
        let base: String =
            path.join("_").chars().map(|c| if c.is_control() || c == '\u{feff}' { '_' } else { c }).collect();
        let free = |n: &String| !self.taken.contains(n) && !TOOL_COLUMNS.contains(&n.as_str());
        let name = std::iter::once(base.clone()).chain((2..).map(|k| format!("{base}__{k}"))).find(free).unwrap();
        self.taken.insert(name.clone());
        self.by_path.insert(path.to_vec(), name.clone());
        self.order.push((path.to_vec(), name));
    }
}

// ---- the reader ----

/// What `parse::parse` reads into `batch`; `None` when it refuses the body (and
/// then the batch must be empty).
fn ours(body: &[u8], spec: &Spec, batch: &mut Batch) -> Option<Page> {
    if parse::parse(body, spec, batch).is_err() {
        assert!(batch.is_empty(), "a refused body left records in the batch");
        return None;
    }
    let page = (0..batch.len()).map(|i| {
        let leaves = batch.record(i).map(|c| {
            let KeyPath::Json(segs) = parse::decode(batch.path(c.path)) else { panic!("a derived path") };
            (segs, String::from_utf8(batch.value(c).to_vec()).expect("cells are UTF-8"))
        });
        (leaves.collect(), (0..spec.capture.len()).map(|k| captured(batch, i, k)).collect())
    });
    Some(page.collect())
}

fn captured(batch: &Batch, i: usize, k: usize) -> Option<Vec<String>> {
    Some(batch.captured(i, k)?.map(|id| String::from_utf8(id.to_vec()).expect("ids are UTF-8")).collect())
}

/// The reader and its columns, reused across bodies as a sync reuses them.
struct Reader {
    batch: Batch,
    columns: Columns,
    names: NameOracle,
}

impl Reader {
    fn new() -> Reader {
        Reader { batch: Batch::default(), columns: Columns::new(&[]), names: NameOracle::default() }
    }

    /// Starts a new table: columns from scratch (the batch is kept).
    fn new_table(&mut self) {
        self.columns = Columns::new(&[]);
        self.names = NameOracle::default();
    }

    /// Reads `body`, compares it with the oracle and registers its columns; true if
    /// it was accepted.
    fn check(&mut self, body: &[u8], spec: &Spec, what: &dyn Fn() -> String) -> bool {
        let want = oracle(body, spec);
        let got = ours(body, spec, &mut self.batch);
        if got != want {
            let file = dump(body);
            panic!(
                "{}: the reader and serde_json disagree on {} ({} bytes)\nours:   {got:?}\noracle: {want:?}",
                what(),
                file.display(),
                body.len()
            );
        }
        let Some(page) = got else { return false };
        self.columns.begin_page();
        for i in 0..self.batch.len() {
            let paths: Vec<u32> = self.batch.record(i).map(|c| c.path).collect();
            for p in paths {
                self.columns.register(&self.batch, p);
            }
        }
        for (leaves, _) in &page {
            for (path, _) in leaves {
                self.names.see(path);
            }
        }
        let named: Vec<(Vec<String>, String)> = self
            .columns
            .iter()
            .map(|c| match &c.path {
                KeyPath::Json(segs) => (segs.clone(), c.name.clone()),
                KeyPath::Derived(_) => panic!("a derived column"),
            })
            .collect();
        assert_eq!(named, self.names.order, "{}: column names", what());
        true
    }
}

/// Keeps a body that broke a test, for a reproduction.
fn dump(body: &[u8]) -> PathBuf {
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("differential-{}.json", std::process::id()));
    std::fs::write(&file, body).unwrap();
    file
}

// ---- generated documents ----

/// xorshift64: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Keys as JSON source: empty, `_`, NUL, BOM (raw and escaped), the same key spelled
/// with different escapes, the tool's column names, names that join alike.
const KEYS: &[&str] = &[
    "id",
    "a",
    "b",
    "a_b",
    "",
    "_",
    "__",
    r"\u0000",
    r"a\u0000b",
    "\u{feff}id",
    r"\ufeffid",
    r"\ufeff",
    "é",
    r"\u00e9",
    "𝄞",
    r"\ud834\udd1e",
    r#"\"q"#,
    r"\\",
    r"\/",
    "/",
    "x y",
    r"\n",
    r"\u001f",
    "\u{7f}",
    "_synced_at",
    "_deleted",
    "_synced_at__2",
    "a__2",
    "data",
    "users",
    "groups",
    "$serde_json::private::Numbe",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "7",
    "-12",
    "0.0",
    "-0.0",
    "64.290",
    "1e5",
    "1E5",
    "1e+5",
    "-2.5E-3",
    "1.0e0",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890.000001",
    "1e400",
    "5e-400",
];

const STRINGS: &[&str] = &[
    r#""""#,
    r#""x""#,
    r#""a\"b""#,
    r#""\u00e9\n\t\r\b\f\/\\""#,
    r#""=1+1""#,
    r#""\ud83d\ude00""#,
    "\"😀 Zoë 陈伟 محمد\"",
    r#""\u0000""#,
    r#""line1\r\nline2""#,
    r#"" lead and trail ""#,
    r#""a,b;c""#,
    r#""\ufeffbom""#,
];

const SPACE: &[&str] = &["", "", "", "", " ", "\n", "\t", "\r\n", "  "];

struct Gen {
    rng: Rng,
    /// The keys of the document being made: [`KEYS`], or a handful, so that keys
    /// repeat at every depth.
    keys: &'static [&'static str],
}

impl Gen {
    fn ws(&mut self) -> &'static str {
        self.rng.pick(SPACE)
    }

    fn key(&mut self) -> String {
        if self.keys.len() == KEYS.len() && self.rng.percent(15) {
            // Many distinct paths, so the batch's path table fills and is renewed.
            let n = 1 + self.rng.below(2);
            return (0..n).map(|_| (b'a' + self.rng.below(26) as u8) as char).collect();
        }
        self.rng.pick(self.keys).to_string()
    }

    fn object(&mut self, depth: usize) -> String {
        let n = self.rng.below(if depth == 0 { 7 } else { 4 });
        let members: Vec<String> = (0..n)
            .map(|_| {
                let (w1, w2, w3) = (self.ws(), self.ws(), self.ws());
                format!(r#"{w1}"{}"{w2}:{w3}{}"#, self.key(), self.value(depth + 1))
            })
            .collect();
        format!("{{{}{}}}", members.join(","), self.ws())
    }

    fn array(&mut self, depth: usize) -> String {
        let items: Vec<String> =
            (0..self.rng.below(4)).map(|_| format!("{}{}", self.ws(), self.value(depth + 1))).collect();
        format!("[{}{}]", items.join(","), self.ws())
    }

    fn value(&mut self, depth: usize) -> String {
        let kinds = if depth > 4 { 6 } else { 10 };
        match self.rng.below(kinds) {
            0 => "null".into(),
            1 => self.rng.pick(&["true", "false"]).into(),
            2 => self.rng.pick(NUMBERS).into(),
            3 => self.rng.pick(STRINGS).into(),
            4 | 5 => format!(r#""s{}""#, self.rng.below(100)),
            6 | 7 => self.object(depth),
            8 => self.array(depth),
            _ => self.rng.pick(&["{}", "[]", "{ }", "[{}]"]).into(),
        }
    }

    fn records(&mut self) -> String {
        let records: Vec<String> = (0..self.rng.below(5)).map(|_| format!("{}{}", self.ws(), self.object(0))).collect();
        format!("[{}{}]", records.join(","), self.ws())
    }

    /// A page body: an envelope (or a bare array) around generated records, with
    /// records keys in any order, repeated, or holding something else.
    fn body(&mut self) -> String {
        self.keys = if self.rng.percent(30) { &["a", "b", "", r"\u0061"] } else { KEYS };
        if self.rng.percent(5) {
            return self.records();
        }
        let mut members = Vec::new();
        for _ in 0..1 + self.rng.below(5) {
            let key = self.rng.pick(&["data", "data", "users", "items", "meta", "links", "page", "next_page"]);
            let value = match key {
                "data" | "users" | "items" if self.rng.percent(90) => self.records(),
                _ => self.value(1),
            };
            members.push(format!(r#"{}"{key}"{}:{}{value}"#, self.ws(), self.ws(), self.ws()));
        }
        format!("{}{{{}}}{}", self.ws(), members.join(","), self.ws())
    }

    /// `body` damaged: a byte dropped or doubled, a hostile snippet inserted, cut short.
    fn damage(&mut self, body: String) -> Vec<u8> {
        let mut b = body.into_bytes();
        let at = self.rng.below(b.len() + 1);
        match self.rng.below(4) {
            0 if at < b.len() => {
                b.remove(at);
            }
            1 if at < b.len() => b.insert(at, b[at]),
            2 => {
                let snippets: &[&[u8]] = &[
                    b"\\", b"\"", b"\\x41", b"\\u12", b"\\ud800", b"0", b"00", b"-", b",", b":", b"}", b"]", b"{",
                    b"[", b" ", b"\0", b"\xff", b"\xc3", b"e", b".", b"\x7f",
                ];
                let s = snippets[self.rng.below(snippets.len())];
                b.splice(at..at, s.iter().copied());
            }
            _ => b.truncate(at),
        }
        b
    }
}

fn seed() -> u64 {
    let seed: u64 = std::env::var("API2CSV_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    // splitmix64's finaliser: nearby seeds give unrelated streams (and never 0).
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

/// Reads `n` generated bodies (30% of them damaged) with one reader; returns how
/// many were accepted and refused.
fn generated(n: usize) -> (usize, usize) {
    let mut gen = Gen { rng: Rng(seed()), keys: KEYS };
    let mut reader = Reader::new();
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..n {
        if i % 50 == 0 {
            reader.new_table();
        }
        let spec = &SPECS[gen.rng.below(SPECS.len())];
        let text = gen.body();
        let body = if gen.rng.percent(30) { gen.damage(text) } else { text.into_bytes() };
        let what = || format!("document {i} (seed {})", seed());
        if reader.check(&body, spec, &what) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    (accepted, refused)
}

#[test]
fn generated_documents_agree_with_serde_json() {
    let n = iterations();
    let (accepted, refused) = generated(n);
    // The generator reaches both sides of the oracle.
    assert!(accepted > n / 3 && refused > n / 10, "{accepted} accepted, {refused} refused");
}

/// serde_json keeps the last value of a repeated key, so a records key that a later
/// one replaces may hold anything: `{"data":null,"data":[…]}` is a page of records,
/// and so is `{"items":5,"users":[…]}` where `users` is preferred.
#[test]
fn a_replaced_records_key_may_hold_anything() {
    let mut reader = Reader::new();
    for (body, spec) in [
        (r#"{"data":true,"data":[{"id":"1"}],"meta":{"next_cursor":null}}"#, &MAILERLITE),
        (r#"{"data":[1],"data":[{"id":"1"}],"meta":{"next_cursor":null}}"#, &MAILERLITE),
        (r#"{"data":null,"users":[{"id":1}],"next_page":""}"#, &PALIGO),
        (r#"{"items":{"id":1},"users":[{"id":1}],"next_page":""}"#, &PALIGO),
    ] {
        assert!(reader.check(body.as_bytes(), spec, &|| body.to_string()), "{body}");
    }
}

/// Nesting around serde_json's limit of 128 levels: the reader must agree on the
/// exact depth where a body stops being readable, for objects, arrays and both.
#[test]
fn nesting_at_the_recursion_limit_agrees_with_serde_json() {
    let mut reader = Reader::new();
    let mut both = (false, false);
    for depth in 120..=135 {
        for (open, close) in [(r#"{"a":"#, "}"), ("[", "]"), (r#"{"a":["#, "]}")] {
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            let body = format!(r#"{{"data":[{{"id":"1","x":{nested}}}],"meta":{{"next_cursor":null}}}}"#);
            let accepted = reader.check(body.as_bytes(), &MAILERLITE, &|| format!("depth {depth} of {open}"));
            if accepted {
                both.0 = true;
            } else {
                both.1 = true;
            }
        }
    }
    assert_eq!(both, (true, true), "the depths tried do not straddle the limit");
}

// ---- the embedded mocks' pages ----

/// A GET as the mock sees it.
fn get(path: &str, query: &[(&str, &str)], authorization: &str) -> MockRequest {
    MockRequest {
        method: "GET".into(),
        path: path.into(),
        query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        authorization: Some(authorization.into()),
        origin: "http://127.0.0.1:9".into(),
    }
}

/// Bodies of real-shaped pages from the embedded mocks, each with its spec; the
/// campaigns of every status, or of one.
fn mock_pages(seed: u64, all_statuses: bool) -> Vec<(String, Vec<u8>, Spec<'static>)> {
    let opts = MockOptions { seed, records: 40, ..MockOptions::default() };
    let mut pages = Vec::new();
    let ml = mailerlite::MailerLite::new(&opts);
    let auth = format!("Bearer {}", mailerlite::API_KEY);
    let mut ask = |name: &str, path: &str, query: &[(&str, &str)], spec: Spec<'static>| -> Vec<u8> {
        let body = ml.handle(&get(path, query, &auth)).body;
        pages.push((format!("mailerlite {name} (seed {seed})"), body.clone(), spec));
        body
    };
    let first = ask("subscribers", "/api/subscribers", &[("limit", "3"), ("include", "groups")], MAILERLITE_GROUPS);
    let next: Value = serde_json::from_slice(&first).unwrap();
    let cursor = next["meta"]["next_cursor"].as_str().expect("a second page").to_string();
    ask("subscribers p2", "/api/subscribers", &[("limit", "3"), ("cursor", &cursor)], MAILERLITE);
    ask("count", "/api/subscribers", &[("limit", "0")], MAILERLITE);
    ask("groups", "/api/groups", &[("limit", "3"), ("page", "1")], MAILERLITE);
    ask("fields", "/api/fields", &[("limit", "5"), ("page", "1")], MAILERLITE);
    // Campaigns are the largest records (5 KB each): one status per seed by default.
    let statuses = ["sent", "draft", "ready"];
    let statuses = if all_statuses { &statuses[..] } else { &statuses[seed as usize % 3..][..1] };
    for status in statuses {
        ask(status, "/api/campaigns", &[("limit", "1"), ("filter[status]", status), ("page", "1")], MAILERLITE);
    }
    let pg = paligo::Paligo::new(&opts);
    let auth = paligo::basic_auth(paligo::USERNAME, paligo::API_KEY);
    let mut ask = |name: &str, resource: &str, query: &[(&str, &str)]| -> Vec<u8> {
        let body = pg.handle(&get(&format!("/api/v2/{resource}/"), query, &auth)).body;
        pages.push((format!("paligo {name} (seed {seed})"), body.clone(), paligo_spec(resource)));
        body
    };
    let users: Value = serde_json::from_slice(&ask("users", "users", &[("per_page", "3"), ("page", "2")])).unwrap();
    let roots: Value = serde_json::from_slice(&ask("taxonomies", "taxonomies", &[("per_page", "3")])).unwrap();
    let parent = roots["taxonomies"][0]["id"].to_string();
    ask("children", "taxonomies", &[("per_page", "3"), ("parent", &parent)]);
    ask("assignments", "assignments", &[("per_page", "2"), ("page", "1")]);
    ask("show", &format!("users/{}", users["users"][0]["id"]), &[]);
    pages
}

/// Every prefix of every page is refused, the page itself read as serde_json reads
/// it, and a page damaged at random places agrees with the oracle too.
///
/// A page is one object with nothing after its closing brace, so no shorter prefix
/// is JSON: the reader must refuse each, and serde_json is asked about every 16th
/// only (reading each prefix twice in a debug build would take the test past a few
/// seconds).
#[test]
fn mock_pages_cut_anywhere_or_damaged_agree_with_serde_json() {
    let mut reader = Reader::new();
    let mut rng = Rng(seed());
    let rounds = (iterations() / 3000).max(1) as u64;
    let mut records = 0;
    for seed in 1..=rounds {
        for (name, body, spec) in mock_pages(seed, rounds > 1) {
            reader.new_table();
            assert_eq!(body.last(), Some(&b'}'), "{name}");
            for cut in 0..body.len() {
                let prefix = &body[..cut];
                if cut % 16 == 0 {
                    assert!(!reader.check(prefix, &spec, &|| format!("{name} cut at {cut}")), "{name}: {cut}");
                } else {
                    let refused = parse::parse(prefix, &spec, &mut reader.batch).is_err();
                    assert!(refused && reader.batch.is_empty(), "{name}: the prefix of {cut} bytes was read");
                }
            }
            let whole = reader.check(&body, &spec, &|| name.clone());
            assert_eq!(whole, !name.contains("count") && !name.contains("show"), "{name}");
            records += reader.batch.len();
            for _ in 0..100 {
                let mut damaged = body.clone();
                let at = rng.below(damaged.len());
                let bytes = b"\"\\{}[],:0-.ex \x00\xff\xc3";
                damaged[at] = bytes[rng.below(bytes.len())];
                reader.check(&damaged, &spec, &|| format!("{name} with byte {at} damaged"));
            }
        }
    }
    assert!(records > 10, "the mocks served only {records} records");
}

// ---- fixtures ----

fn fixtures(connector: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(connector);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{}: too few fixtures", dir.display());
    files
}

/// Each fixture's name says whether serde_json reads it; the reader must agree
/// with serde_json on it, alone and after every other fixture.
#[test]
fn fixtures_agree_with_serde_json() {
    let mut reader = Reader::new();
    for (connector, spec) in [("mailerlite", MAILERLITE), ("paligo", PALIGO)] {
        for (name, body) in fixtures(connector) {
            let readable = oracle(&body, &spec).is_some();
            assert_eq!(
                readable,
                !name.starts_with("invalid-"),
                "{connector}/{name}: the oracle disagrees with its name"
            );
            reader.check(&body, &spec, &|| format!("{connector}/{name}"));
            let mut alone = Reader::new();
            alone.check(&body, &spec, &|| format!("{connector}/{name} alone"));
        }
    }
}

/// A server answering every listing with an empty page except the one a fixture
/// is served as: the subscribers (MailerLite) or the users (Paligo).
fn serve_fixture(connector: &'static str, body: Vec<u8>) -> Server {
    serve_with(move |target| {
        let empty_ml = r#"{"data":[],"links":{"next":null},"meta":{"current_page":1,"last_page":1}}"#;
        match connector {
            "mailerlite" if param(target, "limit").as_deref() == Some("0") => Reply::ok(r#"{"total":5}"#),
            "mailerlite" if target.starts_with("/api/subscribers") => Reply::ok(body.clone()),
            "mailerlite" => Reply::ok(empty_ml),
            _ if target.starts_with("/api/v2/users/?page=1&per_page=1") => {
                Reply::ok(r#"{"page":1,"next_page":"","total_pages":1,"users":[]}"#)
            }
            _ if target.starts_with("/api/v2/users/") => Reply::ok(body.clone()),
            _ => Reply::ok(r#"{"page":1,"next_page":"","total_pages":1,"taxonomies":[],"assignments":[]}"#),
        }
    })
}

/// The records of a readable fixture, as JSON texts for `assert_table` (the
/// MailerLite subscriber table leaves the captured `groups` out).
fn fixture_records(connector: &str, spec: &Spec, body: &[u8]) -> Vec<String> {
    // Numbers as marked strings, so that the records keep their tokens as sent.
    let v: Value = serde_json::from_str(&mark_numbers(std::str::from_utf8(body).unwrap())).unwrap();
    let records = match &v {
        Value::Array(a) => a.clone(),
        Value::Object(m) => spec.records.iter().find_map(|k| m.get(*k)).unwrap().as_array().unwrap().clone(),
        _ => unreachable!(),
    };
    records
        .into_iter()
        .map(|mut r| {
            if connector == "mailerlite" {
                r.as_object_mut().unwrap().shift_remove("groups");
            }
            serde_json::to_string(&r).unwrap()
        })
        .collect()
}

/// The binary syncs each fixture: a readable one into exactly its records (each
/// fixture's records have distinct ids), an unreadable one into nothing, exit 1.
#[test]
fn fixtures_sync_end_to_end() {
    for (connector, table, spec) in [("mailerlite", "subscriber", MAILERLITE), ("paligo", "users", PALIGO)] {
        for (name, body) in fixtures(connector) {
            let readable = !name.starts_with("invalid-");
            let records = if readable { fixture_records(connector, &spec, &body) } else { Vec::new() };
            let server = serve_fixture(connector, body);
            let wd = Workdir::new("diff-fixture");
            let config = format!(
                r#"{{"username":"u","api_key":"k","base_url":"{}/api{}","retry_attempts":1}}"#,
                server.origin,
                if connector == "paligo" { "/v2" } else { "" }
            );
            wd.write("c.json", &config);
            let mut cmd = wd.command(&["sync", connector, "--config", "c.json", "--out", "out"]);
            let file = wd.path(&format!("out/{table}.csv"));
            if readable {
                wd.stdout(&mut cmd);
                if records.is_empty() {
                    assert!(!file.exists(), "{connector}/{name}");
                } else {
                    assert_table(&wd.path("out"), connector, table, &records);
                }
            } else {
                let line = one_line(&wd.fails(&mut cmd, 1));
                assert!(line.contains("/users/") || line.contains("/subscribers"), "{connector}/{name}: {line}");
                assert!(!file.exists(), "{connector}/{name}: rows written");
            }
        }
    }
}
