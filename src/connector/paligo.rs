//! Paligo REST API v2 (`https://<instance>.paligoapp.com/api/v2`): users, the whole
//! taxonomy tree and assignments.
//!
//! Pages are `{page, next_page, total_pages, <resource>: [...]}`; we count pages
//! ourselves with the same `per_page` and filters, and stop on an empty `next_page`
//! or the last page, never on a short page (the server caps `per_page`). The
//! taxonomy listing returns one level at a time, so the tree is walked depth first
//! with `parent=<id>`, adding `parent_id`, `level` and `path` to each taxonomy.

use std::collections::HashSet;

use serde_json::Value;

use super::{
    Checked, Confirm, Connector, Counts, Def, PageSize, Reading, Request, Rows, Stream, StreamPlan, TableSpec,
};
use crate::config::{Config, Requirements};
use crate::error::{Error, Result};
use crate::net::http::{Client, Secret};
use crate::page::paginate::{join_path, warn_if_signals_disagree, Child, Next, Page, PageSignals, Position, Tree};
use crate::page::parse::{Batch, Envelope, Spec};
use crate::page::timestamp::TimeFormat;

pub static DEF: Def = Def {
    name: "paligo",
    about: "Paligo (<instance>.paligoapp.com): users, the taxonomy tree, assignments",
    requirements: REQUIREMENTS,
    tables: TABLES,
    time_format: TimeFormat::UnixSeconds,
    build: |config| Box::new(Paligo::new(config)),
    authorization,
    demo: None,
};

pub const REQUIREMENTS: Requirements = Requirements {
    api_key_name: "api_key",
    username_name: "username",
    api_key_env: "PALIGO_API_KEY",
    username_env: Some("PALIGO_USERNAME"),
    default_base_url: None,
    instance_url: Some(instance_url),
    instance_domain: "paligoapp.com",
    // Show/list endpoints allow about 50 a minute; keys that keep exceeding limits
    // may be suspended, so stay under instead of relying on 429s.
    requests_per_minute: 50,
    filters_by_time: true,
};

fn instance_url(instance: &str) -> String {
    format!("https://{instance}.paligoapp.com/api/v2")
}

fn authorization(config: &Config) -> Secret {
    Secret::new(basic_auth(config.username.as_deref().unwrap_or(""), config.api_key.expose()))
}

/// The `Authorization` value of HTTP Basic `username:api_key` (RFC 7617).
pub fn basic_auth(username: &str, api_key: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{api_key}")))
}

const ASSIGNMENT_TIMES: &[&str] = &["created_at", "start_date", "end_date"];
/// The columns the tree walk adds to each taxonomy.
const DERIVED: &[&str] = &["parent_id", "level", "path"];

pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "users",
        primary_key: &["id"],
        timestamps: &[],
        derived: &[],
        read_as: "pages of users/",
        confirm: Confirm::Show,
    },
    TableSpec {
        name: "taxonomies",
        primary_key: &["id"],
        timestamps: &[],
        derived: DERIVED,
        read_as: "the whole tree: roots, then parent=<id> depth first; adds parent_id, level, path",
        confirm: Confirm::Show,
    },
    TableSpec {
        name: "assignments",
        primary_key: &["id"],
        timestamps: ASSIGNMENT_TIMES,
        derived: &[],
        read_as: "pages of assignments/ (initial_sync_days: created in that window)",
        confirm: Confirm::Show,
    },
];

pub struct Paligo {
    page_size: PageSize,
    initial_sync_days: Option<u32>,
    username: String,
}

impl Paligo {
    pub fn new(config: &Config) -> Paligo {
        Paligo {
            page_size: PageSize::new(config.page_size),
            initial_sync_days: config.initial_sync_days,
            username: config.username.clone().unwrap_or_default(),
        }
    }

    fn page(&self) -> Page {
        Page::start(self.page_size.get())
    }
}

impl Connector for Paligo {
    fn def(&self) -> &'static Def {
        &DEF
    }

    fn check(&self, client: &Client) -> Result<Checked> {
        // One user per page: the number of pages is the number of users.
        let users = client.get("/users/", &[("page", "1"), ("per_page", "1")], |reply| {
            let mut batch = Batch::default();
            let env = crate::page::parse::parse(reply.body, &spec("users", &[]), &mut batch).map_err(|e| e.0)?;
            signals(&env).map(|s| s.last_page)
        })?;
        // A username means something on one instance only: the whole authority (host
        // and port) is part of the identity, so two instances on one host stay apart.
        let authority = crate::net::http::check_base_url(client.base_url()).map(|b| b.authority).unwrap_or_default();
        let mut checked = Checked {
            identity: Some(crate::store::state::Account::user_at(&self.username, &authority)),
            message: format!("credentials of {} accepted by {}", self.username, client.base_url()),
            ..Checked::default()
        };
        if let Some(n) = users {
            checked.message.push_str(&format!(": {n} users"));
            checked.totals.insert("users".into(), n);
        }
        Ok(checked)
    }

    fn streams(&self, tables: &[&'static str]) -> Vec<StreamPlan> {
        tables.iter().map(|&t| StreamPlan { name: t, tables: vec![t] }).collect()
    }

    fn open(&self, plan: &StreamPlan, position: Option<Position>) -> Box<dyn Stream + '_> {
        self.reread(plan.name, position)
    }

    fn reread(&self, table: &str, position: Option<Position>) -> Box<dyn Stream + '_> {
        match table {
            "taxonomies" => Box::new(Taxonomies::new(self, position)),
            "assignments" => Box::new(Listing::new(self, "assignments", DEF.timestamps("assignments"), position)),
            _ => Box::new(Listing::new(self, "users", DEF.timestamps("users"), position)),
        }
    }

    fn still_exists(&self, client: &Client, table: &str, key: &[Vec<u8>]) -> Result<bool> {
        let id = String::from_utf8_lossy(&key[0]);
        let path =
            format!("/{table}/{}/", percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC));
        let shown = client.get(&path, &[], |reply| {
            serde_json::from_slice::<serde::de::IgnoredAny>(reply.body).map_err(|e| format!("invalid JSON: {e}"))
        });
        match shown {
            Ok(_) => Ok(true),
            Err(Error::Api { status: 404 | 410, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn created_since(&self, table: &str) -> Option<i64> {
        let days = self.initial_sync_days.filter(|_| table == "assignments")?;
        Some(time::OffsetDateTime::now_utc().unix_timestamp() - i64::from(days) * 86_400)
    }
}

fn spec(resource: &'static str, timestamps: &'static [&'static str]) -> Spec<'static> {
    let records: &'static [&'static str] = match resource {
        "users" => &["users", "data", "items"],
        "taxonomies" => &["taxonomies", "data", "items"],
        _ => &["assignments", "data", "items"],
    };
    Spec { records, bare_array: true, timestamps, time_format: Some(DEF.time_format), capture: &[] }
}

/// A number the API may send as a JSON number or a numeric string.
fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The paging signals of a Paligo envelope; a bare array is a single last page.
fn signals(env: &Envelope) -> std::result::Result<PageSignals, String> {
    if env.records_key.is_none() {
        return Ok(PageSignals::default());
    }
    let has_next = match env.get("next_page") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(other) => return Err(format!("next_page is neither a URL nor empty: {other}")),
    };
    Ok(PageSignals {
        current_page: number(env.get("page")),
        last_page: number(env.get("total_pages")),
        has_next,
        records: None,
    })
}

/// The paging signals of a page and the number of records it held.
fn signals_of(env: &Envelope, batch: &Batch) -> std::result::Result<PageSignals, String> {
    Ok(PageSignals { records: u64::try_from(batch.len()).ok(), ..signals(env)? })
}

fn query(page: &Page, extra: Option<(&'static str, String)>) -> Vec<(&'static str, String)> {
    let mut q = vec![("per_page", page.page_size.to_string()), ("page", page.page.to_string())];
    q.extend(extra);
    q
}

/// `users/` or `assignments/`, optionally only what was created since a cut-off.
struct Listing<'c> {
    paligo: &'c Paligo,
    resource: &'static str,
    timestamps: &'static [&'static str],
    position: Position,
    /// The `initial_sync_days` cut-off, in Unix seconds.
    since: Option<i64>,
    keep: Vec<u32>,
}

impl<'c> Listing<'c> {
    fn new(
        paligo: &'c Paligo,
        resource: &'static str,
        ts: &'static [&'static str],
        at: Option<Position>,
    ) -> Listing<'c> {
        let position = at.unwrap_or_else(|| Position::Page(paligo.page()));
        Listing { paligo, resource, timestamps: ts, position, since: None, keep: Vec::new() }
    }
}

impl Stream for Listing<'_> {
    fn request(&self) -> Option<Request> {
        let Position::Page(p) = &self.position else { return None };
        Some(Request { path: format!("/{}/", self.resource), query: query(p, None) })
    }

    fn reading(&self) -> Reading {
        Reading { spec: spec(self.resource, self.timestamps), check: |env| signals(env).map(drop), next_guess: None }
    }

    fn accept(&mut self, env: &Envelope, batch: &Batch, _: &mut Counts) -> std::result::Result<(), String> {
        self.keep.clear();
        if let Some(since) = self.since {
            let created = batch.path_id(&["created_at"]);
            for i in 0..batch.len() {
                let at = created.and_then(|p| batch.value_at(i, p)).unwrap_or(b"");
                // A record without a creation time (missing, null, not a time) is
                // kept: it cannot be dated.
                if created_before(at, since) != Some(true) {
                    self.keep.push(u32::try_from(i).map_err(|_| "a page of over 4 billion records")?);
                }
            }
        }
        let Position::Page(p) = &mut self.position else { return Ok(()) };
        let signals = signals_of(env, batch)?;
        warn_if_signals_disagree(&format!("{}/", self.resource), p, &signals);
        if p.advance(&signals)? == Next::Done {
            self.position = Position::Done;
        }
        Ok(())
    }

    fn rows<'a>(&'a self, _table: usize, batch: &'a Batch) -> Rows<'a> {
        match self.since {
            Some(_) => Rows::Some(batch, &self.keep),
            None => Rows::All(batch),
        }
    }

    fn not_found(&mut self) -> bool {
        match &mut self.position {
            Position::Page(p) if p.page > 1 => {
                *p = Page::start(p.page_size);
                true
            }
            _ => false,
        }
    }

    fn position(&self) -> Position {
        self.position.clone()
    }

    fn set_created_since(&mut self, since: Option<i64>) {
        self.since = since;
    }

    fn shrink_page_size(&mut self) -> bool {
        if !self.paligo.page_size.fall_back() {
            return false;
        }
        self.position = Position::Page(self.paligo.page());
        true
    }
}

/// Whether a `created_at` cell (as written: RFC 3339 once converted, else as sent)
/// is before Unix time `since`; `None` when it holds no time. Every numeric form
/// Paligo may send counts: an integer, a float (`1731141000.0`), either as a string.
fn created_before(cell: &[u8], since: i64) -> Option<bool> {
    let text = std::str::from_utf8(cell).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Some(t.unix_timestamp() < since);
    }
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs < since);
    }
    // A float: compared in whole seconds, its fraction only breaking a tie.
    let secs = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
    let since = since.to_string().parse::<f64>().ok()?;
    Some(secs < since)
}

/// The taxonomy tree, depth first, each taxonomy with `parent_id`, `level`, `path`.
struct Taxonomies<'c> {
    paligo: &'c Paligo,
    position: Position,
    /// Ids met in this read: a node listed under two parents is walked once.
    visited: HashSet<String>,
    built: Batch,
}

impl<'c> Taxonomies<'c> {
    fn new(paligo: &'c Paligo, at: Option<Position>) -> Taxonomies<'c> {
        let position = at.unwrap_or_else(|| Position::Tree(Tree::start(paligo.page_size.get())));
        Taxonomies { paligo, position, visited: HashSet::new(), built: Batch::default() }
    }

    fn tree(&mut self) -> Option<&mut Tree> {
        match &mut self.position {
            Position::Tree(t) => Some(t),
            _ => None,
        }
    }
}

impl Stream for Taxonomies<'_> {
    fn request(&self) -> Option<Request> {
        let Position::Tree(t) = &self.position else { return None };
        let frame = t.current()?;
        Some(Request {
            path: "/taxonomies/".into(),
            query: query(&frame.page, frame.parent.clone().map(|p| ("parent", p))),
        })
    }

    fn reading(&self) -> Reading {
        Reading { spec: spec("taxonomies", &[]), check: |env| signals(env).map(drop), next_guess: None }
    }

    fn accept(&mut self, env: &Envelope, batch: &Batch, _: &mut Counts) -> std::result::Result<(), String> {
        let Position::Tree(tree) = &self.position else { return Ok(()) };
        let frame = tree.current().ok_or("the tree walk is over")?.clone();
        let (id_path, title_path) = (batch.path_id(&["id"]), batch.path_id(&["title"]));
        let level = frame.level.to_string();
        self.built.clear();
        let mut children = Vec::new();
        // A child met before is not walked again; one that is this listing's own
        // parent or an ancestor of it is a cycle in the API's tree.
        let mut cycles = Vec::new();
        for i in 0..batch.len() {
            let text = |p: Option<u32>| {
                String::from_utf8_lossy(p.and_then(|p| batch.value_at(i, p)).unwrap_or(b"")).into_owned()
            };
            let (id, title) = (text(id_path), text(title_path));
            let path = join_path(frame.parent.as_ref().map(|_| frame.path.as_str()), &title);
            self.built.begin_record();
            self.built.copy_record(batch, i);
            self.built.push_derived("parent_id", frame.parent.as_deref().unwrap_or("").as_bytes());
            self.built.push_derived("level", level.as_bytes());
            self.built.push_derived("path", path.as_bytes());
            self.built.end_record();
            if id.is_empty() {
                continue;
            }
            if self.visited.insert(id.clone()) {
                children.push(Child { id, path });
            } else if frame.parent.as_ref() == Some(&id) || frame.ancestors.contains(&id) {
                cycles.push(id);
            }
        }
        let signals = signals_of(env, batch)?;
        warn_if_signals_disagree("taxonomies/", &frame.page, &signals);
        let tree = self.tree().expect("a tree");
        cycles.extend(tree.advance(&signals, children)?);
        for id in cycles {
            log::warn!("taxonomy {id} is listed under its own descendant (a cycle in the parent links); it is kept where it was first met");
        }
        if tree.current().is_none() {
            self.position = Position::Done;
        }
        Ok(())
    }

    fn rows<'a>(&'a self, _table: usize, _batch: &'a Batch) -> Rows<'a> {
        Rows::All(&self.built)
    }

    fn not_found(&mut self) -> bool {
        let Some(tree) = self.tree() else { return false };
        match tree.current() {
            Some(frame) if frame.parent.is_some() => {
                log::warn!(
                    "taxonomy {} no longer exists; its children are not listed",
                    frame.parent.as_deref().unwrap_or("")
                );
                tree.drop_current();
                if tree.current().is_none() {
                    self.position = Position::Done;
                }
                true
            }
            Some(frame) if frame.page.page > 1 => {
                let size = frame.page.page_size;
                *tree = Tree::start(size);
                true
            }
            _ => false,
        }
    }

    fn position(&self) -> Position {
        self.position.clone()
    }

    fn shrink_page_size(&mut self) -> bool {
        if !self.paligo.page_size.fall_back() {
            return false;
        }
        self.position = Position::Tree(Tree::start(self.paligo.page_size.get()));
        self.visited.clear();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_rfc7617() {
        // RFC 7617, section 2.
        assert_eq!(basic_auth("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    fn envelope(body: &str) -> Envelope {
        crate::page::parse::parse(body.as_bytes(), &spec("users", &[]), &mut Batch::default()).unwrap()
    }

    #[test]
    fn every_numeric_form_of_created_at_is_dated() {
        let since = 1_731_300_000;
        for older in ["2024-11-09T08:30:00Z", "1731141000", "1731141000.0", "1.731141e9", " 1731141000 "] {
            assert_eq!(created_before(older.as_bytes(), since), Some(true), "{older}");
        }
        for newer in ["2024-11-12T08:26:40Z", "1731400000", "1731400000.5", "1731300000"] {
            assert_eq!(created_before(newer.as_bytes(), since), Some(false), "{newer}");
        }
        for undated in ["", "soon", "NaN", "inf"] {
            assert_eq!(created_before(undated.as_bytes(), since), None, "{undated}");
        }
    }

    #[test]
    fn envelopes_give_paging_signals() {
        let s = signals(&envelope(r#"{"page":2,"next_page":"","total_pages":"2","users":[{"id":57}]}"#)).unwrap();
        assert_eq!((s.current_page, s.last_page, s.has_next), (Some(2), Some(2), false));
        let s = signals(&envelope(r#"{"page":1,"next_page":"https://x/users/?page=2","users":[]}"#)).unwrap();
        assert!(s.has_next);
        let s = signals(&envelope(r#"[{"id":1}]"#)).unwrap();
        assert!(!s.has_next);
        assert!(signals(&envelope(r#"{"next_page":7,"users":[]}"#)).is_err());
    }
}
