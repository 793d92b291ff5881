//! The records: users, taxonomies and assignments as Paligo serves them, built from
//! their index and version, with the ids, sample values and JSON text they need.

use super::draw::{hard, mix, pick, TAG_ASSIGNMENT, TAG_TAXONOMY, TAG_USER};
use super::{Paligo, HIDDEN_ROOT_ID};

/// A JSON string literal.
pub(super) fn js(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serializes")
}

fn js_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_string(), js)
}

pub(super) fn num_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

/// Ids: a plain offset from the index, except one record per table whose id is
/// large enough to break anything that reads numbers as f64 or i32.
pub(super) struct Ids {
    base: u64,
    big_index: u32,
    big: u64,
}

pub(super) const USER_IDS: Ids = Ids { base: 1000, big_index: 3, big: (1 << 53) + 1 };
pub(super) const TAXONOMY_IDS: Ids = Ids { base: 100, big_index: 5, big: (1 << 54) + 1 };
pub(super) const ASSIGNMENT_IDS: Ids = Ids { base: 3_000_000_000, big_index: 4, big: i64::MAX as u64 };

impl Ids {
    pub(super) fn id(&self, i: u32) -> u64 {
        if i == self.big_index {
            self.big
        } else {
            self.base + u64::from(i)
        }
    }

    pub(super) fn index(&self, id: u64) -> Option<u32> {
        if id == self.big {
            return Some(self.big_index);
        }
        let i = u32::try_from(id.checked_sub(self.base)?).ok()?;
        (i != self.big_index).then_some(i)
    }
}

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

pub(super) struct User {
    id: u64,
    username: String,
    name: Option<String>,
    email: String,
    pub(super) kind: &'static str,
}

impl User {
    pub(super) fn json(&self) -> String {
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

pub(super) struct Taxonomy {
    pub(super) id: u64,
    pub(super) title: String,
    pub(super) color: u8,
    parent: u64,
}

impl Taxonomy {
    pub(super) fn json(&self) -> String {
        format!(r#"{{"id":{},"title":{},"color":{},"parent":{}}}"#, self.id, js(&self.title), self.color, self.parent)
    }
}

pub(super) struct Assignment {
    id: u64,
    document_id: u64,
    pub(super) kind: &'static str,
    pub(super) status: &'static str,
    pub(super) lang: Option<&'static str>,
    issuer: Option<String>,
    pub(super) issuer_id: u64,
    message: String,
    created_at: i64,
    start_date: i64,
    end_date: Option<i64>,
    pub(super) user_statuses: Vec<(u64, &'static str)>,
}

impl Assignment {
    pub(super) fn json(&self) -> String {
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

impl Paligo {
    pub(super) fn user(&self, i: u32) -> User {
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

    pub(super) fn taxonomy(&self, i: u32) -> Taxonomy {
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

    pub(super) fn assignment(&self, i: u32) -> Assignment {
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
