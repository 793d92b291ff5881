//! The Paligo REST API v2 mock: `users/`, `taxonomies/` and `assignments/` under
//! `/api/v2/`, HTTP Basic auth and Paligo's page envelope, as the real API behaves
//! (`shared/api/paligo.md`), not as the Fivetran example assumes.
//!
//! Records are built on demand from (seed, index, version); only which indices are
//! alive, each record's version and the taxonomy tree are stored. Generation `g`
//! replays the deterministic mutations of generations 2..=g over the seed account.
//! [`Paligo::expected`] and [`Paligo::mutations`] give tests the truth without HTTP.

use std::collections::HashMap;

use super::{MockApi, MockOptions, MockRequest, MockResponse};
pub use super::{Mutations, TableMutations};

/// The login the mock accepts (Paligo logins are e-mail addresses).
pub const USERNAME: &str = "api@example.com";
/// The API key the mock accepts.
pub const API_KEY: &str = "mock-paligo-key";
/// The hidden root taxonomy: root-level taxonomies carry it as `parent`, and
/// `taxonomies/?parent=1` lists them like the plain listing. Real Paligo has such a
/// node ("the root one"), but its id is unconfirmed; 1 is our choice.
pub const HIDDEN_ROOT_ID: u64 = 1;
/// Page size when `per_page` is missing or unreadable (invented: undocumented).
pub const DEFAULT_PER_PAGE: usize = 25;
/// Larger `per_page` values are silently capped, so a short page is not the end.
pub const MAX_PER_PAGE: usize = 100;

/// The path the connector writes for a taxonomy: titles from the root down, joined
/// with `" / "`. Inside a title `\` becomes `\\` and `/` becomes `\/`, so a title
/// holding `/` can never be mistaken for two levels.
pub fn taxonomy_path(titles: &[&str]) -> String {
    let escaped: Vec<String> = titles.iter().map(|t| t.replace('\\', "\\\\").replace('/', "\\/")).collect();
    escaped.join(" / ")
}

/// The `Authorization` header value for HTTP Basic auth.
pub fn basic_auth(username: &str, api_key: &str) -> String {
    format!("Basic {}", base64_encode(format!("{username}:{api_key}").as_bytes()))
}

// ---------------------------------------------------------------------------
// Deterministic randomness and the hard values spread through the data.

const TAG_USER: u64 = 1;
const TAG_TAXONOMY: u64 = 2;
const TAG_ASSIGNMENT: u64 = 3;
const TAG_TREE: u64 = 4;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A well-mixed value for (seed, what, a, b): the data's only source of chance.
fn mix(seed: u64, tag: u64, a: u64, b: u64) -> u64 {
    let x = splitmix(seed ^ tag.wrapping_mul(0xA076_1D64_78BD_642F));
    splitmix(splitmix(x ^ a) ^ b.wrapping_mul(0xE703_7ED1_A0B4_28DB))
}

/// `mix` reduced to 0..n.
fn pick(seed: u64, tag: u64, a: u64, b: u64, n: usize) -> usize {
    (mix(seed, tag, a, b) % n.max(1) as u64) as usize
}

/// Values that break naive CSV writers, spreadsheets and path joiners.
const HARD: &[&str] = &[
    "O'Brien, \"The Boss\"",
    "Line one\nLine two",
    "Rocket 🚀 launch ✨",
    "日本語のテキスト",
    "=SUM(A1:A9)",
    "",
    "Ελληνικά и кириллица, العربية",
    "Tab\there, CRLF\r\nend",
    "   spaces around   ",
    "Input/Output > Drivers \\ Legacy",
    "-1+2",
    "@cmd|' /C calc'!A0",
];

/// A hard value for some records: the odd indices of a small account get each of
/// them once (so tiny test accounts see them all), larger ones get a random 1 in 12.
fn hard(seed: u64, tag: u64, i: u32) -> Option<&'static str> {
    let i = i as usize;
    if i % 2 == 1 && i / 2 < HARD.len() {
        return Some(HARD[i / 2]);
    }
    let h = mix(seed, tag, i as u64, 99);
    h.is_multiple_of(12).then(|| HARD[(h >> 8) as usize % HARD.len()])
}

/// A JSON string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serializes")
}

fn js_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_string(), js)
}

fn num_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

// ---------------------------------------------------------------------------
// Ids: a plain offset from the index, except one record per table whose id is
// large enough to break anything that reads numbers as f64 or i32.

struct Ids {
    base: u64,
    big_index: u32,
    big: u64,
}

const USER_IDS: Ids = Ids { base: 1000, big_index: 3, big: (1 << 53) + 1 };
const TAXONOMY_IDS: Ids = Ids { base: 100, big_index: 5, big: (1 << 54) + 1 };
const ASSIGNMENT_IDS: Ids = Ids { base: 3_000_000_000, big_index: 4, big: i64::MAX as u64 };

impl Ids {
    fn id(&self, i: u32) -> u64 {
        if i == self.big_index {
            self.big
        } else {
            self.base + u64::from(i)
        }
    }

    fn index(&self, id: u64) -> Option<u32> {
        if id == self.big {
            return Some(self.big_index);
        }
        let i = u32::try_from(id.checked_sub(self.base)?).ok()?;
        (i != self.big_index).then_some(i)
    }
}

// ---------------------------------------------------------------------------
// Flat tables (users, assignments): which indices live, and each one's version.

/// How many records one generation deletes, changes and adds in a flat table.
struct Plan {
    deletes: usize,
    changes: usize,
    adds: usize,
}

struct Flat {
    versions: Vec<u32>,
    alive: Vec<bool>,
}

impl Flat {
    fn new(n: usize) -> Flat {
        Flat { versions: vec![0; n], alive: vec![true; n] }
    }

    fn live(&self) -> Vec<u32> {
        (0..self.alive.len() as u32).filter(|&i| self.alive[i as usize]).collect()
    }

    fn is_live(&self, i: u32) -> bool {
        self.alive.get(i as usize).copied().unwrap_or(false)
    }

    /// Deletes first, then changes among the survivors, so that no change is hidden
    /// by a deletion of the same record; added records come last and stay untouched.
    fn mutate(&mut self, seed: u64, tag: u64, gen: u32, plan: &Plan) {
        let live = self.live();
        for p in pick_distinct(seed, tag, gen, 0, plan.deletes.min(live.len() / 2), live.len()) {
            self.alive[live[p] as usize] = false;
        }
        let live = self.live();
        for p in pick_distinct(seed, tag, gen, 1, plan.changes.min(live.len()), live.len()) {
            self.versions[live[p] as usize] += 1;
        }
        self.versions.extend(std::iter::repeat_n(0, plan.adds));
        self.alive.extend(std::iter::repeat_n(true, plan.adds));
    }
}

/// `count` distinct positions in 0..len (count <= len).
fn pick_distinct(seed: u64, tag: u64, gen: u32, salt: u64, count: usize, len: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(count);
    let mut j = 0;
    while out.len() < count {
        let p = pick(seed, tag, u64::from(gen) * 16 + salt, 1000 + j, len);
        if !out.contains(&p) {
            out.push(p);
        }
        j += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// The taxonomy tree, stored: a parent per node (None = root level), liveness,
// and the children lists the `parent=` listing serves.

/// Nodes 0..CHAIN form a chain root → … → level 6 that is never moved or deleted,
/// so the tree is always at least six levels deep.
const CHAIN: u32 = 6;
/// Random nodes attach no deeper than this (moves may go deeper).
const MAX_LEVEL: u32 = 8;

struct Tree {
    parent: Vec<Option<u32>>,
    alive: Vec<bool>,
    roots: Vec<u32>,
    children: Vec<Vec<u32>>,
}

impl Tree {
    fn new(seed: u64, n: usize) -> Tree {
        let mut parent = Vec::with_capacity(n);
        let mut level: Vec<u32> = Vec::with_capacity(n);
        for i in 0..n as u32 {
            let p = Self::initial_parent(seed, i, &parent, &level);
            level.push(p.map_or(1, |p| level[p as usize] + 1));
            parent.push(p);
        }
        let mut tree = Tree { parent, alive: vec![true; n], roots: Vec::new(), children: Vec::new() };
        tree.reindex();
        tree
    }

    fn initial_parent(seed: u64, i: u32, parent: &[Option<u32>], level: &[u32]) -> Option<u32> {
        if i == 0 || (i >= CHAIN && mix(seed, TAG_TREE, u64::from(i), 0).is_multiple_of(20)) {
            return None;
        }
        if i < CHAIN {
            return Some(i - 1);
        }
        let mut p = pick(seed, TAG_TREE, u64::from(i), 1, i as usize) as u32;
        while level[p as usize] >= MAX_LEVEL {
            p = parent[p as usize].expect("a deep node has a parent");
        }
        Some(p)
    }

    /// Rebuilds the root and children lists, in index order.
    fn reindex(&mut self) {
        self.roots.clear();
        self.children = vec![Vec::new(); self.parent.len()];
        for i in 0..self.parent.len() as u32 {
            if !self.alive[i as usize] {
                continue;
            }
            match self.parent[i as usize] {
                Some(p) => self.children[p as usize].push(i),
                None => self.roots.push(i),
            }
        }
    }

    fn is_live(&self, i: u32) -> bool {
        self.alive.get(i as usize).copied().unwrap_or(false)
    }

    /// Whether `node` is `top` or lies below it.
    fn within(&self, mut node: u32, top: u32) -> bool {
        loop {
            if node == top {
                return true;
            }
            match self.parent[node as usize] {
                Some(p) => node = p,
                None => return false,
            }
        }
    }

    /// One generation: a leaf deleted, a subtree moved, a leaf added.
    fn mutate(&mut self, seed: u64, gen: u32) {
        let g = u64::from(gen) << 32;
        self.delete_leaf(seed, g);
        self.move_subtree(seed, g);
        self.add_leaf(seed, g);
    }

    fn movable(&self) -> impl Iterator<Item = u32> + '_ {
        (CHAIN..self.parent.len() as u32).filter(|&i| self.alive[i as usize])
    }

    fn delete_leaf(&mut self, seed: u64, g: u64) {
        let leaves: Vec<u32> = self.movable().filter(|&i| self.children[i as usize].is_empty()).collect();
        if !leaves.is_empty() {
            let i = leaves[pick(seed, TAG_TREE, g, 1, leaves.len())];
            self.alive[i as usize] = false;
            self.reindex();
        }
    }

    /// Prefers a node with children, so a whole subtree's paths and levels change.
    fn move_subtree(&mut self, seed: u64, g: u64) {
        let mut candidates: Vec<u32> = self.movable().filter(|&i| !self.children[i as usize].is_empty()).collect();
        if candidates.is_empty() {
            candidates = self.movable().collect();
        }
        if candidates.is_empty() {
            return;
        }
        let node = candidates[pick(seed, TAG_TREE, g, 2, candidates.len())];
        let old = self.parent[node as usize];
        let mut targets: Vec<Option<u32>> = (0..self.parent.len() as u32)
            .filter(|&j| self.alive[j as usize] && !self.within(j, node))
            .map(Some)
            .collect();
        targets.push(None);
        targets.retain(|&t| t != old);
        self.parent[node as usize] = targets[pick(seed, TAG_TREE, g, 3, targets.len())];
        self.reindex();
    }

    fn add_leaf(&mut self, seed: u64, g: u64) {
        let live: Vec<u32> = (0..self.parent.len() as u32).filter(|&i| self.alive[i as usize]).collect();
        let p = live[pick(seed, TAG_TREE, g, 4, live.len())];
        self.parent.push(Some(p));
        self.alive.push(true);
        self.reindex();
    }
}

// ---------------------------------------------------------------------------
// Records.

const USER_TYPES: &[&str] =
    &["admin", "author", "reviewer", "contributor", "publisher", "itadmin", "translationmanager", "webdavuser"];
const FIRST: &[&str] = &["Anna", "Björn", "Chen", "Dmitri", "Emeka", "Fatima", "Gustav", "Hana", "Jonas", "Kana"];
const LAST: &[&str] = &["Berg", "Ito", "Lindqvist", "Novak", "Okafor", "Schmidt", "Søndergaard", "Wu", "Zhang"];
const TOPICS: &[&str] =
    &["Hardware", "Software", "Safety", "Installation", "Maintenance", "Audience", "Region", "Product line"];
const ASSIGNMENT_TYPES: &[&str] = &["contribution", "review", "translation", "translationreview"];
const STATUSES: &[&str] = &["draft", "started", "finished"];
const USER_STATUSES: &[&str] = &["approved", "rejected", "pending"];
const LANGS: &[&str] = &["en", "de", "sv", "ja", "fr", "pt-BR", "zh-Hans"];
const MESSAGES: &[&str] = &[
    "Please review the installation chapter before Friday.",
    "Translate the release notes.",
    "Check the safety warnings against the new standard.",
    "Update the screenshots for version 4.",
];
/// Titles of the chain nodes; two of them hold the characters the path rule escapes.
const CHAIN_TITLES: &[&str] =
    &["Products", "Printers", "Input/Output > Drivers \\ Legacy", "Firmware", "Back\\/slash\\", "Deepest"];
/// 2020-09-13: created_at values grow from here with the index.
const BASE_TIME: i64 = 1_600_000_000;

struct User {
    id: u64,
    username: String,
    name: Option<String>,
    email: String,
    kind: &'static str,
}

impl User {
    fn json(&self) -> String {
        format!(
            r#"{{"id":{},"username":{},"name":{},"email":{},"type":{}}}"#,
            self.id,
            js(&self.username),
            js_opt(self.name.as_deref()),
            js(&self.email),
            js(self.kind)
        )
    }
}

struct Taxonomy {
    id: u64,
    title: String,
    color: u8,
    parent: u64,
}

impl Taxonomy {
    fn json(&self) -> String {
        format!(r#"{{"id":{},"title":{},"color":{},"parent":{}}}"#, self.id, js(&self.title), self.color, self.parent)
    }
}

struct Assignment {
    id: u64,
    document_id: u64,
    kind: &'static str,
    status: &'static str,
    lang: Option<&'static str>,
    issuer: Option<String>,
    issuer_id: u64,
    message: String,
    created_at: i64,
    start_date: i64,
    end_date: Option<i64>,
    user_statuses: Vec<(u64, &'static str)>,
}

impl Assignment {
    fn json(&self) -> String {
        let statuses: Vec<String> =
            self.user_statuses.iter().map(|(u, s)| format!(r#"{{"user_id":{u},"status":{}}}"#, js(s))).collect();
        format!(
            concat!(
                r#"{{"id":{},"document_id":{},"type":{},"status":{},"lang":{},"issuer":{},"issuer_id":{},"#,
                r#""message":{},"created_at":{},"start_date":{},"end_date":{},"user_statuses":[{}]}}"#
            ),
            self.id,
            self.document_id,
            js(self.kind),
            js(self.status),
            js_opt(self.lang),
            js_opt(self.issuer.as_deref()),
            self.issuer_id,
            js(&self.message),
            self.created_at,
            self.start_date,
            num_opt(self.end_date),
            statuses.join(",")
        )
    }
}

/// One assignment message of 10 KiB, for buffers that assume short cells.
fn long_message() -> String {
    let line = "This message is long on purpose, \"quoted\", with commas; and a newline.\n";
    let mut s = line.repeat(10 * 1024 / line.len() + 1);
    s.truncate(10 * 1024);
    s
}

// ---------------------------------------------------------------------------
// The account.

/// The Paligo mock for one (seed, records, generation).
pub struct Paligo {
    seed: u64,
    records: usize,
    generation: u32,
    /// Users of generation 1: issuers and assignees are drawn from them.
    seed_users: usize,
    users: Flat,
    tree: Tree,
    assignments: Flat,
}

impl Paligo {
    /// Builds generation 1 from the seed, then replays generations 2..=g.
    pub fn new(opts: &MockOptions) -> Paligo {
        let records = opts.records;
        let seed_users = (records / 7).max(5);
        let mut p = Paligo {
            seed: opts.seed,
            records,
            generation: opts.generation.max(1),
            seed_users,
            users: Flat::new(seed_users),
            tree: Tree::new(opts.seed, (records / 4).max(20)),
            assignments: Flat::new(records),
        };
        for gen in 2..=p.generation {
            p.mutate(gen);
        }
        p
    }

    /// A user renamed, one deleted, two added; a taxonomy leaf deleted, a subtree
    /// moved, a leaf added; about 1% of assignments added, deleted and re-statused.
    fn mutate(&mut self, gen: u32) {
        let users = Plan { deletes: 1, changes: 1, adds: 2 };
        self.users.mutate(self.seed, TAG_USER, gen, &users);
        self.tree.mutate(self.seed, gen);
        let n = (self.assignments.alive.len() / 100).max(1);
        let assignments = Plan { deletes: n, changes: n, adds: n };
        self.assignments.mutate(self.seed, TAG_ASSIGNMENT, gen, &assignments);
    }

    fn user(&self, i: u32) -> User {
        let seed = self.seed;
        let h = mix(seed, TAG_USER, u64::from(i), 0);
        let version = self.users.versions[i as usize];
        let base = match hard(seed, TAG_USER, i) {
            Some(s) => s.to_string(),
            None => format!("{} {}", FIRST[h as usize % FIRST.len()], LAST[(h >> 16) as usize % LAST.len()]),
        };
        // A null name where one is expected; a rename always yields a name.
        let name = match version {
            0 if h % 23 == 7 => None,
            0 => Some(base),
            v => Some(format!("{base} (renamed {v})")),
        };
        let username = format!("user{i}@example.com");
        let email = match h % 17 {
            0 => String::new(),
            1 => format!("User{i}@Example.COM"),
            _ => username.clone(),
        };
        User { id: USER_IDS.id(i), username, name, email, kind: USER_TYPES[(h >> 32) as usize % USER_TYPES.len()] }
    }

    fn taxonomy(&self, i: u32) -> Taxonomy {
        let h = mix(self.seed, TAG_TAXONOMY, u64::from(i), 0);
        let title = match CHAIN_TITLES.get(i as usize) {
            Some(t) => t.to_string(),
            None => match hard(self.seed, TAG_TAXONOMY, i) {
                Some(s) => s.to_string(),
                None => format!("{} {}", TOPICS[h as usize % TOPICS.len()], i),
            },
        };
        let parent = self.tree.parent[i as usize].map_or(HIDDEN_ROOT_ID, |p| TAXONOMY_IDS.id(p));
        Taxonomy { id: TAXONOMY_IDS.id(i), title, color: (h >> 8) as u8 % 5, parent }
    }

    fn assignment(&self, i: u32) -> Assignment {
        let seed = self.seed;
        let at = |k: u64| mix(seed, TAG_ASSIGNMENT, u64::from(i), k);
        let issuer = pick(seed, TAG_ASSIGNMENT, u64::from(i), 1, self.seed_users) as u32;
        let created_at = BASE_TIME + i64::from(i) * 5400 + (at(2) % 3600) as i64;
        let start_date = created_at + (at(3) % (7 * 86_400)) as i64;
        let version = self.assignments.versions[i as usize] as usize;
        Assignment {
            id: ASSIGNMENT_IDS.id(i),
            document_id: if i % 97 == 5 { (1 << 53) + at(4) % 1000 } else { 2000 + at(4) % 100_000 },
            kind: ASSIGNMENT_TYPES[at(5) as usize % ASSIGNMENT_TYPES.len()],
            status: STATUSES[(at(6) as usize + version) % STATUSES.len()],
            lang: (at(7) % 13 != 0).then(|| LANGS[(at(7) >> 8) as usize % LANGS.len()]),
            issuer: self.user(issuer).name,
            issuer_id: USER_IDS.id(issuer),
            message: self.message(i, at(8)),
            created_at,
            start_date,
            end_date: (at(9) % 6 != 0).then(|| start_date + 86_400 * (1 + (at(9) >> 8) as i64 % 30)),
            user_statuses: self.user_statuses(at(10)),
        }
    }

    fn message(&self, i: u32, h: u64) -> String {
        if i == 2 {
            return long_message();
        }
        match hard(self.seed, TAG_ASSIGNMENT, i) {
            Some(s) => s.to_string(),
            None => MESSAGES[h as usize % MESSAGES.len()].to_string(),
        }
    }

    /// Up to three distinct seed users, none in a quarter of the assignments.
    fn user_statuses(&self, h: u64) -> Vec<(u64, &'static str)> {
        let first = (h >> 8) as usize % self.seed_users;
        (0..(h % 4) as usize)
            .map(|k| {
                let user = ((first + k) % self.seed_users) as u32;
                let status = USER_STATUSES[(h >> (16 + 2 * k)) as usize % USER_STATUSES.len()];
                (USER_IDS.id(user), status)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// The truth for tests: what a complete sync must end with, and what changed.

const TABLES: &[&str] = &["users", "taxonomies", "assignments"];

impl Paligo {
    /// Every record of `table` a sync must end with, as the exact JSON text the API
    /// serves. Taxonomies get `parent_id` (null at root level), `level` (1 at root
    /// level) and `path` ([`taxonomy_path`]) appended, as the connector computes them.
    pub fn expected(&self, table: &str) -> Vec<String> {
        self.records(table).into_iter().map(|(_, json)| json).collect()
    }

    /// What generation g added, changed and deleted compared with g - 1 (against an
    /// empty account for generation 1), found by diffing [`Paligo::expected`] by id,
    /// so every taxonomy below a moved one counts as changed.
    pub fn mutations(&self) -> Mutations {
        let before = (self.generation > 1).then(|| {
            let opts = MockOptions {
                seed: self.seed,
                records: self.records,
                generation: self.generation - 1,
                ..MockOptions::default()
            };
            Paligo::new(&opts)
        });
        let tables = TABLES
            .iter()
            .map(|&t| {
                let old = before.as_ref().map_or_else(Vec::new, |b| b.records(t));
                (t.to_string(), diff(old, self.records(t)))
            })
            .collect();
        Mutations { tables }
    }

    fn records(&self, table: &str) -> Vec<(u64, String)> {
        match table {
            "users" => self.users.live().into_iter().map(|i| (USER_IDS.id(i), self.user(i).json())).collect(),
            "assignments" => {
                let live = self.assignments.live().into_iter();
                live.map(|i| (ASSIGNMENT_IDS.id(i), self.assignment(i).json())).collect()
            }
            "taxonomies" => {
                let mut out = Vec::new();
                for &root in &self.tree.roots {
                    self.walk(root, None, &mut Vec::new(), &mut out);
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// Depth-first through the tree, carrying the titles from the root down.
    fn walk(&self, i: u32, parent_id: Option<u64>, titles: &mut Vec<String>, out: &mut Vec<(u64, String)>) {
        let t = self.taxonomy(i);
        titles.push(t.title.clone());
        let path = taxonomy_path(&titles.iter().map(String::as_str).collect::<Vec<_>>());
        let served = t.json();
        let json = format!(
            r#"{},"parent_id":{},"level":{},"path":{}}}"#,
            &served[..served.len() - 1],
            num_opt(parent_id),
            titles.len(),
            js(&path)
        );
        out.push((t.id, json));
        for &child in &self.tree.children[i as usize] {
            self.walk(child, Some(t.id), titles, out);
        }
        titles.pop();
    }
}

/// Ids added, changed and deleted from `old` to `new`, in numeric order.
fn diff(old: Vec<(u64, String)>, new: Vec<(u64, String)>) -> TableMutations {
    let mut old: HashMap<u64, String> = old.into_iter().collect();
    let (mut added, mut changed) = (Vec::new(), Vec::new());
    for (id, json) in new {
        match old.remove(&id) {
            None => added.push(id),
            Some(before) if before != json => changed.push(id),
            Some(_) => {}
        }
    }
    let mut deleted: Vec<u64> = old.into_keys().collect();
    let strings = |mut ids: Vec<u64>| {
        ids.sort_unstable();
        ids.into_iter().map(|id| id.to_string()).collect()
    };
    TableMutations { added: strings(added), changed: strings(changed), deleted: strings(std::mem::take(&mut deleted)) }
}

// ---------------------------------------------------------------------------
// HTTP.

impl MockApi for Paligo {
    fn handle(&self, req: &MockRequest) -> MockResponse {
        if !authorized(req.authorization.as_deref()) {
            return error(401, "Unauthorized");
        }
        if req.method != "GET" {
            return error(405, "Method not allowed");
        }
        let Some(route) = req.path.strip_prefix("/api/v2/") else {
            return not_found();
        };
        // Real clients use both `users/` and `users`; the docs don't say which one
        // the server rejects, so the mock takes both.
        let route = route.strip_suffix('/').unwrap_or(route);
        match route.split_once('/') {
            None => self.list(route, req),
            Some((resource, id)) => self.show(resource, id),
        }
    }

    fn too_many_requests(&self, retry_after_secs: u64) -> MockResponse {
        let mut response = error(429, "Too many requests");
        response.headers.push(("Retry-After".to_string(), retry_after_secs.to_string()));
        response
    }
}

impl Paligo {
    /// A bare object, as `users/{id}/` returns it. The hidden root is not served.
    fn show(&self, resource: &str, id: &str) -> MockResponse {
        let Ok(id) = id.parse::<u64>() else {
            return not_found();
        };
        let body = match resource {
            "users" => USER_IDS.index(id).filter(|&i| self.users.is_live(i)).map(|i| self.user(i).json()),
            "taxonomies" => TAXONOMY_IDS.index(id).filter(|&i| self.tree.is_live(i)).map(|i| self.taxonomy(i).json()),
            "assignments" => {
                let index = ASSIGNMENT_IDS.index(id).filter(|&i| self.assignments.is_live(i));
                index.map(|i| self.assignment(i).json())
            }
            _ => None,
        };
        body.map_or_else(not_found, |b| json_response(200, b))
    }

    fn list(&self, resource: &str, req: &MockRequest) -> MockResponse {
        let (matching, filters): (Vec<u32>, &[&str]) = match resource {
            "users" => (self.matching_users(req), &["type"]),
            "taxonomies" => (self.matching_taxonomies(req), &["parent", "title", "color"]),
            "assignments" => (self.matching_assignments(req), &["status", "lang", "type", "issuer", "users"]),
            _ => return not_found(),
        };
        let page = Page::of(req, matching.len());
        let items: Vec<String> = matching[page.range()].iter().map(|&i| self.render(resource, i)).collect();
        json_response(200, page.envelope(req, resource, filters, &items))
    }

    fn render(&self, resource: &str, i: u32) -> String {
        match resource {
            "users" => self.user(i).json(),
            "taxonomies" => self.taxonomy(i).json(),
            _ => self.assignment(i).json(),
        }
    }

    fn matching_users(&self, req: &MockRequest) -> Vec<u32> {
        let live = self.users.live();
        match req.param("type") {
            None => live,
            Some(kind) => live.into_iter().filter(|&i| self.user(i).kind == kind).collect(),
        }
    }

    /// Root level without `parent` (or with the hidden root's id), else the direct
    /// children of `parent`; an unknown parent gives an empty list (invented).
    fn matching_taxonomies(&self, req: &MockRequest) -> Vec<u32> {
        let level = match req.param("parent").map(|p| p.parse::<u64>()) {
            None | Some(Ok(HIDDEN_ROOT_ID)) => self.tree.roots.clone(),
            Some(Ok(id)) => TAXONOMY_IDS
                .index(id)
                .filter(|&i| self.tree.is_live(i))
                .map(|i| self.tree.children[i as usize].clone())
                .unwrap_or_default(),
            Some(Err(_)) => Vec::new(),
        };
        level.into_iter().filter(|&i| self.taxonomy_matches(i, req)).collect()
    }

    /// `title` matches a substring (invented: the docs don't say); `color` exactly.
    fn taxonomy_matches(&self, i: u32, req: &MockRequest) -> bool {
        let t = self.taxonomy(i);
        req.param("title").is_none_or(|s| t.title.contains(s))
            && req.param("color").is_none_or(|c| c.parse::<u8>() == Ok(t.color))
    }

    fn matching_assignments(&self, req: &MockRequest) -> Vec<u32> {
        let live = self.assignments.live();
        let filtered = ["status", "lang", "type", "issuer", "users"].iter().any(|k| req.param(k).is_some());
        if !filtered {
            return live;
        }
        live.into_iter().filter(|&i| assignment_matches(&self.assignment(i), req)).collect()
    }
}

/// `issuer` and `users` take a user id; `users` matches any entry of `user_statuses`.
fn assignment_matches(a: &Assignment, req: &MockRequest) -> bool {
    let is = |key: &str, value: Option<&str>| req.param(key).is_none_or(|v| Some(v) == value);
    let id = |v: &str| v.parse::<u64>().ok();
    is("status", Some(a.status))
        && is("type", Some(a.kind))
        && is("lang", a.lang)
        && req.param("issuer").is_none_or(|v| id(v) == Some(a.issuer_id))
        && req.param("users").is_none_or(|v| a.user_statuses.iter().any(|&(u, _)| id(v) == Some(u)))
}

/// One page of a listing: which slice it is and the envelope around it.
struct Page {
    page: usize,
    per_page: usize,
    total_pages: usize,
    count: usize,
}

impl Page {
    /// An unreadable or zero `page`/`per_page` falls back to the default (invented).
    fn of(req: &MockRequest, count: usize) -> Page {
        let number = |key: &str| req.param(key).and_then(|v| v.parse::<usize>().ok()).filter(|&n| n >= 1);
        let page = number("page").unwrap_or(1);
        let per_page = number("per_page").unwrap_or(DEFAULT_PER_PAGE).min(MAX_PER_PAGE);
        // An empty listing still has one (empty) page (invented).
        let total_pages = count.div_ceil(per_page).max(1);
        Page { page, per_page, total_pages, count }
    }

    /// Past the end this is empty: the page answers `[]` with `next_page` "".
    fn range(&self) -> std::ops::Range<usize> {
        let start = (self.page - 1).saturating_mul(self.per_page).min(self.count);
        start..start.saturating_add(self.per_page).min(self.count)
    }

    /// Absolute, and keeping `per_page` and the filters, so a client may follow it
    /// or count pages itself; "" on the last page, as real Paligo sends it.
    fn next_page(&self, req: &MockRequest, resource: &str, filters: &[&str]) -> String {
        if self.page >= self.total_pages {
            return String::new();
        }
        let mut url = format!("{}/api/v2/{resource}/?page={}&per_page={}", req.origin, self.page + 1, self.per_page);
        for (key, value) in req.query.iter().filter(|(k, _)| filters.contains(&k.as_str())) {
            url.push_str(&format!("&{}={}", percent_encode(key), percent_encode(value)));
        }
        url
    }

    /// Keys in the order Paligo sends them: page, next_page, total_pages, records.
    fn envelope(&self, req: &MockRequest, resource: &str, filters: &[&str], items: &[String]) -> String {
        format!(
            r#"{{"page":{},"next_page":{},"total_pages":{},"{resource}":[{}]}}"#,
            self.page,
            js(&self.next_page(req, resource, filters)),
            self.total_pages,
            items.join(",")
        )
    }
}

fn json_response(status: u16, body: String) -> MockResponse {
    let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    MockResponse { status, headers, body: body.into_bytes() }
}

/// Paligo promises JSON for errors too, but no source shows the shape: invented.
fn error(status: u16, message: &str) -> MockResponse {
    json_response(status, format!(r#"{{"message":{}}}"#, js(message)))
}

fn not_found() -> MockResponse {
    error(404, "Not found")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// HTTP Basic auth: a dozen lines of base64 instead of a dependency.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The scheme is case-insensitive (RFC 7617); the credentials must match exactly.
fn authorized(header: Option<&str>) -> bool {
    let Some((scheme, credentials)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    let expected = format!("{USERNAME}:{API_KEY}");
    scheme.eq_ignore_ascii_case("basic") && base64_decode(credentials.trim()).is_some_and(|d| d == expected.as_bytes())
}

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (k, &b)| n | u32::from(b) << (16 - 8 * k));
        for k in 0..4 {
            let sextet = (n >> (18 - 6 * k)) as usize & 63;
            out.push(if k <= chunk.len() { char::from(B64[sextet]) } else { '=' });
        }
    }
    out
}

/// Strict: whole quads, padding only at the very end.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (q, quad) in bytes.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && (q + 1) * 4 != bytes.len()) {
            return None;
        }
        let mut n = 0u32;
        for &b in &quad[..4 - pad] {
            n = n << 6 | B64.iter().position(|&c| c == b)? as u32;
        }
        n <<= 6 * pad;
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const ORIGIN: &str = "http://127.0.0.1:4000";

    fn account(records: usize, generation: u32) -> Paligo {
        Paligo::new(&MockOptions { seed: 7, records, generation, ..MockOptions::default() })
    }

    fn request(path: &str, query: &[(&str, &str)]) -> MockRequest {
        MockRequest {
            method: "GET".to_string(),
            path: path.to_string(),
            query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            authorization: Some(basic_auth(USERNAME, API_KEY)),
            origin: ORIGIN.to_string(),
        }
    }

    fn get(api: &Paligo, path: &str, query: &[(&str, &str)]) -> (u16, String) {
        let response = api.handle(&request(path, query));
        (response.status, String::from_utf8(response.body).unwrap())
    }

    fn json(body: &str) -> Value {
        serde_json::from_str(body).unwrap()
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let (mut out, mut i) = (Vec::new(), 0);
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// Splits an absolute `next_page` URL into the path and query the server sees.
    fn split_url(url: &str) -> (String, Vec<(String, String)>) {
        let rest = url.strip_prefix(ORIGIN).expect("next_page is absolute");
        let (path, query) = rest.split_once('?').unwrap();
        let pairs = query.split('&').map(|kv| kv.split_once('=').unwrap());
        (path.to_string(), pairs.map(|(k, v)| (percent_decode(k), percent_decode(v))).collect())
    }

    /// Follows `next_page` from the first page; returns every page body.
    fn pages(api: &Paligo, path: &str, query: &[(&str, &str)]) -> Vec<String> {
        let mut req = request(path, query);
        let mut bodies = Vec::new();
        loop {
            let response = api.handle(&req);
            assert_eq!(response.status, 200);
            let body = String::from_utf8(response.body).unwrap();
            let next = json(&body)["next_page"].as_str().unwrap().to_string();
            bodies.push(body);
            if next.is_empty() {
                return bodies;
            }
            (req.path, req.query) = split_url(&next);
        }
    }

    fn items(bodies: &[String], key: &str) -> Vec<Value> {
        bodies.iter().flat_map(|b| json(b)[key].as_array().unwrap().clone()).collect()
    }

    fn by_id(mut values: Vec<Value>) -> Vec<Value> {
        values.sort_by_key(|v| v["id"].as_u64().unwrap());
        values
    }

    fn expected_values(api: &Paligo, table: &str) -> Vec<Value> {
        by_id(api.expected(table).iter().map(|s| json(s)).collect())
    }

    /// The whole tree as a connector reads it: roots, then `parent=` per node.
    fn walk_tree(api: &Paligo) -> Vec<Value> {
        let mut out = Vec::new();
        let mut queue: Vec<(Value, Option<u64>, Vec<String>)> =
            items(&pages(api, "/api/v2/taxonomies/", &[]), "taxonomies")
                .into_iter()
                .map(|t| (t, None, Vec::new()))
                .collect();
        while let Some((mut t, parent_id, mut titles)) = queue.pop() {
            titles.push(t["title"].as_str().unwrap().to_string());
            let id = t["id"].as_u64().unwrap().to_string();
            let children =
                items(&pages(api, "/api/v2/taxonomies", &[("parent", &id), ("per_page", "3")]), "taxonomies");
            for child in children {
                queue.push((child, t["id"].as_u64(), titles.clone()));
            }
            let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
            t["parent_id"] = parent_id.into();
            t["level"] = titles.len().into();
            t["path"] = taxonomy_path(&refs).into();
            out.push(t);
        }
        by_id(out)
    }

    #[test]
    fn envelope_keys_in_order_and_empty_next_page_on_last_page() {
        let api = account(40, 1);
        let (status, body) = get(&api, "/api/v2/assignments/", &[("per_page", "30")]);
        assert_eq!(status, 200);
        let at = |key: &str| body.find(&format!("\"{key}\":")).unwrap();
        assert!(body.starts_with("{\"page\":1,"));
        assert!(at("page") < at("next_page") && at("next_page") < at("total_pages"));
        assert!(at("total_pages") < at("assignments"));
        assert_eq!(json(&body)["total_pages"], 2);
        let expected_next = format!("{ORIGIN}/api/v2/assignments/?page=2&per_page=30");
        assert_eq!(json(&body)["next_page"], expected_next.as_str());
        let (_, last) = get(&api, "/api/v2/assignments/", &[("per_page", "30"), ("page", "2")]);
        assert_eq!(json(&last)["next_page"], "");
        assert_eq!(json(&last)["assignments"].as_array().unwrap().len(), 10);
    }

    #[test]
    fn page_past_the_end_is_empty() {
        let api = account(40, 1);
        let (status, body) = get(&api, "/api/v2/users/", &[("page", "9")]);
        assert_eq!(status, 200);
        assert_eq!(body, r#"{"page":9,"next_page":"","total_pages":1,"users":[]}"#);
    }

    #[test]
    fn both_slash_forms_answer_the_same() {
        let api = account(40, 1);
        for resource in ["users", "taxonomies", "assignments"] {
            let (status, with) = get(&api, &format!("/api/v2/{resource}/"), &[]);
            assert_eq!(status, 200);
            assert_eq!(get(&api, &format!("/api/v2/{resource}"), &[]), (200, with.clone()));
            let id = json(&with)[resource][0]["id"].to_string();
            let (status, shown) = get(&api, &format!("/api/v2/{resource}/{id}/"), &[]);
            assert_eq!(status, 200);
            assert_eq!(json(&shown), json(&with)[resource][0]);
            assert_eq!(get(&api, &format!("/api/v2/{resource}/{id}"), &[]), (200, shown));
        }
    }

    #[test]
    fn unknown_routes_and_ids_are_404_json() {
        let api = account(40, 1);
        for path in ["/api/v2/groups/", "/api/v2/", "/users/", "/api/v2/users/abc/", "/api/v2/users/1/x/"] {
            let (status, body) = get(&api, path, &[]);
            assert_eq!((status, json(&body)["message"].as_str()), (404, Some("Not found")), "{path}");
        }
        let hidden = format!("/api/v2/taxonomies/{HIDDEN_ROOT_ID}/");
        assert_eq!(get(&api, &hidden, &[]).0, 404);
        assert_eq!(get(&api, "/api/v2/assignments/3000000040/", &[]).0, 404);
    }

    #[test]
    fn per_page_is_capped_and_defaults_to_25() {
        let api = account(250, 1);
        let (_, body) = get(&api, "/api/v2/assignments/", &[("per_page", "1000")]);
        let page = json(&body);
        assert_eq!(page["assignments"].as_array().unwrap().len(), MAX_PER_PAGE);
        assert_eq!(page["total_pages"], 3);
        assert!(page["next_page"].as_str().unwrap().contains("per_page=100"));
        let (_, body) = get(&api, "/api/v2/assignments/", &[]);
        assert_eq!(json(&body)["assignments"].as_array().unwrap().len(), DEFAULT_PER_PAGE);
        assert_eq!(json(&body)["total_pages"], 10);
    }

    #[test]
    fn next_page_keeps_filters() {
        let api = account(400, 1);
        let query = [("status", "draft"), ("per_page", "5"), ("lang", "pt-BR")];
        let bodies = pages(&api, "/api/v2/assignments/", &query);
        let next = json(&bodies[0])["next_page"].as_str().unwrap().to_string();
        assert!(next.ends_with("&status=draft&lang=pt-BR"), "{next}");
        let found = items(&bodies, "assignments");
        assert!(!found.is_empty());
        assert!(found.iter().all(|a| a["status"] == "draft" && a["lang"] == "pt-BR"));
        let all = expected_values(&api, "assignments");
        let count = all.iter().filter(|a| a["status"] == "draft" && a["lang"] == "pt-BR").count();
        assert_eq!(found.len(), count);
    }

    #[test]
    fn users_type_filter() {
        let api = account(400, 1);
        let found = items(&pages(&api, "/api/v2/users/", &[("type", "reviewer")]), "users");
        let count = expected_values(&api, "users").iter().filter(|u| u["type"] == "reviewer").count();
        assert!(count > 0);
        assert_eq!(found.len(), count);
        assert!(found.iter().all(|u| u["type"] == "reviewer"));
    }

    #[test]
    fn taxonomy_listing_without_parent_is_root_level_only() {
        let api = account(400, 1);
        let roots = items(&pages(&api, "/api/v2/taxonomies/", &[]), "taxonomies");
        assert!(roots.len() > 1);
        assert!(roots.iter().all(|t| t["parent"] == HIDDEN_ROOT_ID));
        assert!(roots.len() < api.expected("taxonomies").len());
        let hidden = HIDDEN_ROOT_ID.to_string();
        let same = items(&pages(&api, "/api/v2/taxonomies/", &[("parent", &hidden)]), "taxonomies");
        assert_eq!(roots, same);
    }

    #[test]
    fn taxonomy_tree_is_at_least_five_levels_deep() {
        for (records, generation) in [(0, 1), (40, 3), (20_000, 1)] {
            let api = account(records, generation);
            let levels = expected_values(&api, "taxonomies").iter().map(|t| t["level"].as_u64().unwrap()).max();
            assert!(levels.unwrap() >= 5, "records {records}");
        }
    }

    #[test]
    fn sizes_follow_records() {
        let api = account(20_000, 1);
        assert_eq!(api.expected("users").len(), 2857);
        assert_eq!(api.expected("taxonomies").len(), 5000);
        assert_eq!(api.expected("assignments").len(), 20_000);
        let tiny = account(0, 1);
        assert_eq!((tiny.expected("users").len(), tiny.expected("taxonomies").len()), (5, 20));
    }

    #[test]
    fn expected_equals_what_paging_serves() {
        for generation in [1, 2, 4] {
            let api = account(60, generation);
            for table in ["users", "assignments"] {
                let bodies = pages(&api, &format!("/api/v2/{table}/"), &[("per_page", "7")]);
                assert_eq!(by_id(items(&bodies, table)), expected_values(&api, table));
                // Byte for byte, too: every expected record is served as that text.
                let served = bodies.concat();
                assert!(api.expected(table).iter().all(|record| served.contains(record.as_str())));
            }
        }
    }

    #[test]
    fn expected_taxonomies_equal_the_walked_tree() {
        for generation in [1, 2, 5] {
            let api = account(100, generation);
            assert_eq!(walk_tree(&api), expected_values(&api, "taxonomies"), "generation {generation}");
        }
    }

    #[test]
    fn hard_values_are_present() {
        let api = account(200, 1);
        let all = [api.expected("users"), api.expected("taxonomies"), api.expected("assignments")].concat();
        let text = all.concat();
        for needle in ["\\n", "🚀", "日本語", "\"=SUM", "\"\"", "null", "O'Brien, \\\"The Boss\\\"", "9007199254740993"]
        {
            assert!(text.contains(needle), "{needle}");
        }
        assert!(text.contains(&i64::MAX.to_string()));
        let long = expected_values(&api, "assignments").iter().map(|a| a["message"].as_str().unwrap().len()).max();
        assert_eq!(long, Some(10 * 1024));
        let paths: Vec<Value> = expected_values(&api, "taxonomies");
        let tricky = paths.iter().find(|t| t["title"] == "Input/Output > Drivers \\ Legacy").unwrap();
        assert_eq!(tricky["path"], "Products / Printers / Input\\/Output > Drivers \\\\ Legacy");
        assert!(paths.iter().any(|t| t["level"] == 6 && t["id"] == (1u64 << 54) + 1));
    }

    #[test]
    fn taxonomy_path_escapes_backslash_then_slash() {
        assert_eq!(taxonomy_path(&["a/b", "c\\", "d"]), "a\\/b / c\\\\ / d");
        assert_eq!(taxonomy_path(&["x\\/y"]), "x\\\\\\/y");
        assert_eq!(taxonomy_path(&["", "only"]), " / only");
    }

    #[test]
    fn auth_failures_are_401() {
        let api = account(40, 1);
        let wrong = [
            None,
            Some(basic_auth(USERNAME, "wrong")),
            Some(basic_auth("other@example.com", API_KEY)),
            Some("Bearer mock-paligo-key".to_string()),
            Some("Basic !!!!".to_string()),
            Some(format!("Basic {}", base64_encode(API_KEY.as_bytes()))),
        ];
        for authorization in wrong {
            let req = MockRequest { authorization: authorization.clone(), ..request("/api/v2/users/", &[]) };
            let response = api.handle(&req);
            assert_eq!(response.status, 401, "{authorization:?}");
            assert_eq!(String::from_utf8(response.body).unwrap(), r#"{"message":"Unauthorized"}"#);
        }
        let lower = format!("basic {}", base64_encode(format!("{USERNAME}:{API_KEY}").as_bytes()));
        let req = MockRequest { authorization: Some(lower), ..request("/api/v2/users/", &[]) };
        assert_eq!(api.handle(&req).status, 200);
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_encode(b"api@example.com:mock-paligo-key"), "YXBpQGV4YW1wbGUuY29tOm1vY2stcGFsaWdvLWtleQ==");
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            assert_eq!(base64_decode(&base64_encode(text.as_bytes())).unwrap(), text.as_bytes());
        }
        assert_eq!(base64_decode("Zg=a"), None);
        assert_eq!(base64_decode("Zg==Zg=="), None);
    }

    #[test]
    fn too_many_requests_has_retry_after() {
        let response = account(10, 1).too_many_requests(7);
        assert_eq!(response.status, 429);
        assert!(response.headers.contains(&("Retry-After".to_string(), "7".to_string())));
        assert!(json(std::str::from_utf8(&response.body).unwrap())["message"].is_string());
        assert!(account(10, 1).rate_limit_headers(50, 3).is_empty());
    }

    /// The diff of two walks over HTTP, as a sync would see it.
    fn served_diff(before: &Paligo, after: &Paligo, table: &str) -> TableMutations {
        let read = |api: &Paligo| -> Vec<(u64, String)> {
            let values = if table == "taxonomies" {
                walk_tree(api)
            } else {
                items(&pages(api, &format!("/api/v2/{table}/"), &[("per_page", "100")]), table)
            };
            values.into_iter().map(|v| (v["id"].as_u64().unwrap(), v.to_string())).collect()
        };
        diff(read(before), read(after))
    }

    #[test]
    fn mutations_of_generation_2_are_exact() {
        let (before, after) = (account(300, 1), account(300, 2));
        let mutations = after.mutations();
        let names: Vec<&str> = mutations.tables.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["users", "taxonomies", "assignments"]);
        for (table, m) in &mutations.tables {
            assert_eq!(*m, served_diff(&before, &after, table), "{table}");
        }
        let table = |name: &str| &mutations.tables.iter().find(|(t, _)| t == name).unwrap().1;
        assert_eq!((table("users").added.len(), table("users").deleted.len()), (2, 1));
        assert_eq!(table("users").changed.len(), 1);
        let taxonomies = table("taxonomies");
        assert_eq!((taxonomies.added.len(), taxonomies.deleted.len()), (1, 1));
        // The moved node has children, so its whole subtree changes path and level.
        assert!(taxonomies.changed.len() >= 2, "{taxonomies:?}");
        let assignments = table("assignments");
        assert_eq!((assignments.added.len(), assignments.deleted.len()), (3, 3));
        assert!(assignments.changed.len() >= 3);
    }

    #[test]
    fn show_follows_the_generation() {
        let api = account(300, 2);
        for (table, m) in api.mutations().tables {
            for id in &m.deleted {
                assert_eq!(get(&api, &format!("/api/v2/{table}/{id}/"), &[]).0, 404, "{table} {id}");
            }
            for id in m.added.iter().chain(&m.changed) {
                assert_eq!(get(&api, &format!("/api/v2/{table}/{id}/"), &[]).0, 200, "{table} {id}");
            }
        }
    }

    #[test]
    fn generation_1_mutations_are_all_additions() {
        let api = account(30, 1);
        for (table, m) in api.mutations().tables {
            assert_eq!(m.added.len(), api.expected(&table).len());
            assert!(m.changed.is_empty() && m.deleted.is_empty());
        }
    }

    #[test]
    fn same_options_same_data() {
        let (a, b) = (account(120, 3), account(120, 3));
        for table in TABLES {
            assert_eq!(a.expected(table), b.expected(table));
        }
        let other = Paligo::new(&MockOptions { seed: 8, records: 120, ..MockOptions::default() });
        assert_ne!(a.expected("assignments"), other.expected("assignments"));
    }
}
