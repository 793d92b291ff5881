//! MailerLite (connect.mailerlite.com/api): subscribers, groups, memberships, fields
//! and campaigns, from Laravel's two pagination envelopes.
//!
//! The traps, from `shared/api/mailerlite.md`: `links.next` drops `limit` and filters,
//! so URLs are rebuilt from our own parameters; `limit` is capped silently, so a short
//! page never means the end; `/campaigns` without `filter[status]` returns only
//! `ready` campaigns and `/groups/{id}/subscribers` only active members, so both are
//! read once per status.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{fetch_into, flatten_record, Connector, OnRecord, PageReader, Start, TableSpec};
use crate::config::{Config, Requirements};
use crate::error::{Error, Result};
use crate::flatten::{Columns, Page, TimeFormat};
use crate::http::Client;
use crate::json::{self, Parser};

pub const REQUIREMENTS: Requirements = Requirements {
    connector: "mailerlite",
    api_key_env: "MAILERLITE_API_KEY",
    username_env: None,
    default_base_url: Some("https://connect.mailerlite.com/api"),
    instance_url: None,
    // 120 requests a minute per account (x-ratelimit-limit says so too).
    requests_per_minute: 120,
};

pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "subscriber",
        primary_key: &["id"],
        timestamps: &["subscribed_at", "unsubscribed_at", "created_at", "updated_at", "opted_in_at"],
        read_as: "cursor pages of /subscribers, every status",
    },
    TableSpec {
        name: "group",
        primary_key: &["id"],
        timestamps: &["created_at"],
        read_as: "page-number pages of /groups",
    },
    TableSpec {
        name: "group_subscriber",
        primary_key: &["group_id", "subscriber_id"],
        timestamps: &[],
        read_as: "cursor pages of /groups/{id}/subscribers, per group and per subscriber status",
    },
    TableSpec { name: "field", primary_key: &["id"], timestamps: &[], read_as: "page-number pages of /fields" },
    TableSpec {
        name: "campaign",
        primary_key: &["id"],
        timestamps: &[
            "created_at",
            "updated_at",
            "scheduled_for",
            "queued_at",
            "started_at",
            "finished_at",
            "stopped_at",
            "initial_created_at",
        ],
        read_as: "page-number pages of /campaigns, once per status: draft, ready, sent",
    },
];

/// Every subscriber status (the member listing defaults to `active` alone), in the
/// order a subscriber moves through them: one that changes status while the sync
/// reads moves into a pass still to come, so it is read twice, never missed (and
/// never taken for deleted).
const STATUSES: [&str; 5] = ["unconfirmed", "active", "unsubscribed", "bounced", "junk"];
/// Campaign statuses in lifecycle order, for the same reason.
const CAMPAIGN_STATUSES: [&str; 3] = ["draft", "ready", "sent"];

pub struct MailerLite {
    page_size: String,
}

impl MailerLite {
    pub fn new(config: &Config) -> MailerLite {
        MailerLite { page_size: config.page_size.to_string() }
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        vec![("limit", self.page_size.clone())]
    }
}

impl Connector for MailerLite {
    fn name(&self) -> &'static str {
        "mailerlite"
    }

    fn tables(&self) -> &'static [TableSpec] {
        TABLES
    }

    fn time_format(&self) -> TimeFormat {
        TimeFormat::SpaceSeparatedUtc
    }

    fn open<'a>(&'a self, client: &'a Client, table: &str, start: &Start) -> Result<Box<dyn PageReader + 'a>> {
        let resume = start.resume;
        let pages = match table {
            "subscriber" => Pages::Cursor(CursorPages::new("/subscribers".into(), self.params(), resume)),
            "group" => Pages::Numbered(NumberedPages::new("/groups", self.params(), resume)),
            "field" => Pages::Numbered(NumberedPages::new("/fields", self.params(), resume)),
            "campaign" => return Ok(Box::new(Campaigns::new(client, self, resume))),
            "group_subscriber" => return Ok(Box::new(Memberships::open(client, self, resume)?)),
            _ => unreachable!("unknown mailerlite table {table}"),
        };
        Ok(Box::new(Records { client, pages }))
    }

    fn check(&self, client: &Client) -> Result<String> {
        let total = client.fetch("/subscribers", &[("limit", "0")], |body| {
            let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            Ok(v.get("total").and_then(Value::as_u64))
        })?;
        Ok(match total {
            Some(n) => format!("credentials accepted by {}: the account has {n} subscribers", client.base_url()),
            None => format!("credentials accepted by {}", client.base_url()),
        })
    }
}

/// The parts of a Laravel envelope that drive paging.
#[derive(Debug, Default)]
struct Envelope {
    records: usize,
    next_cursor: Option<String>,
    has_next_link: bool,
    current_page: Option<u64>,
    last_page: Option<u64>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    next_cursor: Option<String>,
    #[serde(default)]
    current_page: Option<u64>,
    #[serde(default)]
    last_page: Option<u64>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    next: Option<String>,
}

/// GETs one page and runs `on_record` on each element of `data`.
fn fetch_envelope(
    client: &Client,
    path: &str,
    query: &[(&str, &str)],
    page: &mut Page,
    cols: &mut Columns,
    on_record: &mut OnRecord,
) -> Result<Envelope> {
    fetch_into(client, path, query, page, cols, |body, page, cols| parse_envelope(body, page, cols, on_record))
}

fn parse_envelope(
    body: &[u8],
    page: &mut Page,
    cols: &mut Columns,
    on_record: &mut OnRecord,
) -> std::result::Result<Envelope, String> {
    let s = |e: json::SyntaxError| e.to_string();
    let mut p = Parser::new(body);
    let mut env = Envelope::default();
    let mut key = Vec::new();
    let mut saw_data = false;
    p.begin_object().map_err(s)?;
    while p.next_key(&mut key).map_err(s)? {
        match key.as_slice() {
            b"data" => {
                saw_data = true;
                p.begin_array().map_err(s)?;
                while p.next_element().map_err(s)? {
                    on_record(&mut p, page, cols).map_err(s)?;
                    env.records += 1;
                }
            }
            b"meta" => {
                let meta: Meta = serde_json::from_slice(p.skip().map_err(s)?).map_err(|e| format!("meta: {e}"))?;
                env.next_cursor = meta.next_cursor.filter(|c| !c.is_empty());
                env.current_page = meta.current_page;
                env.last_page = meta.last_page;
            }
            b"links" => {
                let links: Links = serde_json::from_slice(p.skip().map_err(s)?).map_err(|e| format!("links: {e}"))?;
                env.has_next_link = links.next.is_some_and(|n| !n.is_empty());
            }
            _ => drop(p.skip().map_err(s)?),
        }
    }
    p.finish().map_err(s)?;
    if !saw_data {
        return Err("the body has no \"data\" array".into());
    }
    Ok(env)
}

/// Cursor-style pages: follow `meta.next_cursor` with our own `limit` and filters.
struct CursorPages {
    path: String,
    params: Vec<(&'static str, String)>,
    cursor: Option<String>,
    done: bool,
    seen: HashSet<u64>,
}

impl CursorPages {
    fn new(path: String, params: Vec<(&'static str, String)>, resume: &Value) -> CursorPages {
        let cursor = resume.get("cursor").and_then(Value::as_str).map(str::to_string);
        let done = resume.get("done").and_then(Value::as_bool).unwrap_or(false);
        CursorPages { path, params, cursor, done, seen: HashSet::new() }
    }

    fn fetch(&mut self, client: &Client, page: &mut Page, cols: &mut Columns, on_record: &mut OnRecord) -> Result<()> {
        let mut query: Vec<(&str, &str)> = self.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(c) = &self.cursor {
            query.push(("cursor", c));
        }
        let env = fetch_envelope(client, &self.path, &query, page, cols, on_record)?;
        match env.next_cursor {
            Some(next) if env.records > 0 => {
                if !self.seen.insert(hash(&next)) || self.cursor.as_ref() == Some(&next) {
                    let url = client.url(&self.path, &query);
                    return Err(Error::Response { url, detail: format!("cursor {next} repeats") });
                }
                self.cursor = Some(next);
            }
            _ => self.done = true,
        }
        Ok(())
    }

    fn position(&self) -> Value {
        if self.done {
            json!({"done": true})
        } else {
            json!({"cursor": self.cursor})
        }
    }
}

/// Page-number pages: stop on `links.next == null` or `current_page >= last_page`.
struct NumberedPages {
    path: &'static str,
    params: Vec<(&'static str, String)>,
    next: u64,
    done: bool,
}

impl NumberedPages {
    fn new(path: &'static str, params: Vec<(&'static str, String)>, resume: &Value) -> NumberedPages {
        let next = resume.get("page").and_then(Value::as_u64).unwrap_or(1).max(1);
        let done = resume.get("done").and_then(Value::as_bool).unwrap_or(false);
        NumberedPages { path, params, next, done }
    }

    fn fetch(&mut self, client: &Client, page: &mut Page, cols: &mut Columns, on_record: &mut OnRecord) -> Result<()> {
        let number = self.next.to_string();
        let mut query: Vec<(&str, &str)> = self.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        query.push(("page", &number));
        let env = fetch_envelope(client, self.path, &query, page, cols, on_record)?;
        if let Some(current) = env.current_page.filter(|&c| c != self.next) {
            let url = client.url(self.path, &query);
            return Err(Error::Response { url, detail: format!("asked for page {}, got page {current}", self.next) });
        }
        let last = env.current_page.zip(env.last_page).is_some_and(|(c, l)| c >= l);
        self.done = !env.has_next_link || last || env.records == 0;
        self.next += 1;
        Ok(())
    }

    fn position(&self) -> Value {
        if self.done {
            json!({"done": true})
        } else {
            json!({"page": self.next})
        }
    }
}

enum Pages {
    Cursor(CursorPages),
    Numbered(NumberedPages),
}

/// A table whose rows are the flattened records of one listing.
struct Records<'a> {
    client: &'a Client,
    pages: Pages,
}

impl PageReader for Records<'_> {
    fn next_page(&mut self, page: &mut Page, cols: &mut Columns) -> Result<bool> {
        match &mut self.pages {
            Pages::Cursor(c) if !c.done => c.fetch(self.client, page, cols, &mut flatten_record)?,
            Pages::Numbered(n) if !n.done => n.fetch(self.client, page, cols, &mut flatten_record)?,
            _ => {}
        }
        Ok(!matches!(
            &self.pages,
            Pages::Cursor(CursorPages { done: true, .. }) | Pages::Numbered(NumberedPages { done: true, .. })
        ))
    }

    fn position(&self) -> Value {
        match &self.pages {
            Pages::Cursor(c) => c.position(),
            Pages::Numbered(n) => n.position(),
        }
    }
}

/// Campaigns, read once per status because the API defaults to `ready` alone.
struct Campaigns<'a> {
    client: &'a Client,
    params: Vec<(&'static str, String)>,
    status: usize,
    pages: NumberedPages,
}

impl<'a> Campaigns<'a> {
    fn new(client: &'a Client, ml: &MailerLite, resume: &Value) -> Campaigns<'a> {
        let status = resume.get("status").and_then(Value::as_u64).unwrap_or(0) as usize;
        let params = ml.params();
        let pages = NumberedPages::new("/campaigns", Self::status_params(&params, status), resume);
        Campaigns { client, params, status, pages }
    }

    fn status_params(params: &[(&'static str, String)], status: usize) -> Vec<(&'static str, String)> {
        let mut p = params.to_vec();
        if let Some(s) = CAMPAIGN_STATUSES.get(status) {
            p.push(("filter[status]", s.to_string()));
        }
        p
    }
}

impl PageReader for Campaigns<'_> {
    fn next_page(&mut self, page: &mut Page, cols: &mut Columns) -> Result<bool> {
        if self.status >= CAMPAIGN_STATUSES.len() {
            return Ok(false);
        }
        self.pages.fetch(self.client, page, cols, &mut flatten_record)?;
        if self.pages.done {
            self.status += 1;
            let params = Self::status_params(&self.params, self.status);
            self.pages = NumberedPages::new("/campaigns", params, &Value::Null);
        }
        Ok(self.status < CAMPAIGN_STATUSES.len())
    }

    fn position(&self) -> Value {
        let mut p = self.pages.position();
        p["status"] = json!(self.status);
        p
    }
}

/// Every membership: for each group (in id order, so a resume finds its place) and
/// each subscriber status, the cursor pages of the group's members.
struct Memberships<'a> {
    client: &'a Client,
    params: Vec<(&'static str, String)>,
    groups: Vec<String>,
    group: usize,
    status: usize,
    pages: CursorPages,
    id: Vec<u8>,
}

impl<'a> Memberships<'a> {
    fn open(client: &'a Client, ml: &MailerLite, resume: &Value) -> Result<Memberships<'a>> {
        let mut groups = list_group_ids(client, ml)?;
        groups.sort_by(|a, b| numeric_order(a, b));
        groups.dedup();
        let at = resume.get("group").and_then(Value::as_str).unwrap_or("");
        let group = groups.iter().position(|g| numeric_order(g, at).is_ge()).unwrap_or(groups.len());
        let same = groups.get(group).is_some_and(|g| g == at);
        let status = if same { resume.get("status").and_then(Value::as_u64).unwrap_or(0) as usize } else { 0 };
        let mut m = Memberships {
            client,
            params: ml.params(),
            groups,
            group,
            status,
            pages: CursorPages::new(String::new(), Vec::new(), &Value::Null),
            id: Vec::new(),
        };
        m.pages = m.member_pages(if same { resume } else { &Value::Null });
        Ok(m)
    }

    fn member_pages(&self, resume: &Value) -> CursorPages {
        let Some(group) = self.groups.get(self.group) else {
            return CursorPages::new(String::new(), Vec::new(), &json!({"done": true}));
        };
        let mut params = self.params.clone();
        params.push(("filter[status]", STATUSES[self.status].to_string()));
        CursorPages::new(format!("/groups/{group}/subscribers"), params, resume)
    }

    fn advance(&mut self) {
        self.status += 1;
        if self.status == STATUSES.len() {
            self.status = 0;
            self.group += 1;
        }
        self.pages = self.member_pages(&Value::Null);
    }
}

impl PageReader for Memberships<'_> {
    fn next_page(&mut self, page: &mut Page, cols: &mut Columns) -> Result<bool> {
        if self.group >= self.groups.len() {
            return Ok(false);
        }
        let group = self.groups[self.group].clone();
        let id = &mut self.id;
        let mut on_record = |p: &mut Parser, page: &mut Page, cols: &mut Columns| {
            id.clear();
            if json::field(p, b"id", id)? {
                page.push(cols, &["group_id"], group.as_bytes());
                page.push(cols, &["subscriber_id"], id);
                page.end_row();
            }
            Ok(())
        };
        if !self.pages.done {
            match self.pages.fetch(self.client, page, cols, &mut on_record) {
                Err(Error::Api { status: 404, url, .. }) => {
                    log::warn!("{url}: group {group} no longer exists; its memberships are skipped");
                    self.pages.done = true;
                    self.status = STATUSES.len() - 1;
                }
                r => r?,
            }
        }
        if self.pages.done {
            self.advance();
        }
        Ok(self.group < self.groups.len())
    }

    fn position(&self) -> Value {
        match self.groups.get(self.group) {
            Some(g) => {
                let mut p = self.pages.position();
                p["group"] = json!(g);
                p["status"] = json!(self.status);
                p
            }
            None => json!({"done": true}),
        }
    }
}

/// The ids of every group, from all pages of `/groups`.
fn list_group_ids(client: &Client, ml: &MailerLite) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut pages = NumberedPages::new("/groups", ml.params(), &Value::Null);
    let (mut page, mut cols) = (Page::default(), Columns::new(&[], None));
    let mut id = Vec::new();
    while !pages.done {
        let mut on_record = |p: &mut Parser, _: &mut Page, _: &mut Columns| {
            id.clear();
            if json::field(p, b"id", &mut id)? {
                ids.push(String::from_utf8_lossy(&id).into_owned());
            }
            Ok(())
        };
        pages.fetch(client, &mut page, &mut cols, &mut on_record)?;
    }
    Ok(ids)
}

/// Orders numeric id strings by value without parsing them (they may exceed u64).
fn numeric_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_yield_records_and_paging_facts() {
        let body = br#"{"data":[{"id":"2","fields":{"name":"A"}},{"id":"1","fields":{"name":null}}],
            "links":{"first":null,"last":null,"prev":null,"next":"https://x/api/subscribers?cursor=abc"},
            "meta":{"path":"https://x/api/subscribers","per_page":2,"next_cursor":"abc","prev_cursor":null}}"#;
        let (mut page, mut cols) = (Page::default(), Columns::new(&[], None));
        let env = parse_envelope(body, &mut page, &mut cols, &mut flatten_record).unwrap();
        assert_eq!((env.records, env.next_cursor.as_deref(), env.has_next_link), (2, Some("abc"), true));
        assert_eq!(page.len(), 2);
        assert_eq!(cols.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id", "fields_name"]);
    }

    #[test]
    fn broken_bodies_are_rejected_and_leave_the_page_untouched() {
        let (mut page, mut cols) = (Page::default(), Columns::new(&[], None));
        for body in [&br#"{"data":[{"id":"1"},{"id":"#[..], b"<html>502</html>", br#"{"message":"x"}"#] {
            let mark = page.mark();
            assert!(parse_envelope(body, &mut page, &mut cols, &mut flatten_record).is_err());
            page.rollback(mark);
            assert_eq!(page.len(), 0);
        }
    }

    #[test]
    fn ids_order_numerically() {
        let mut ids = vec!["99", "100", "1000000000000000000000", "7"];
        ids.sort_by(|a, b| numeric_order(a, b));
        assert_eq!(ids, ["7", "99", "100", "1000000000000000000000"]);
    }
}
