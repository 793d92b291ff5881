//! MailerLite (connect.mailerlite.com/api): subscribers, groups, memberships, fields
//! and campaigns, from Laravel's two pagination envelopes.
//!
//! The traps, from the fact sheet: `links.next` drops `limit` and filters, so every
//! request is rebuilt from our own parameters; `limit` is capped silently, so a short
//! page never means the end; `/campaigns` without `filter[status]` returns only
//! `ready` campaigns, so it is read once per status. Memberships come from the
//! `groups` of each subscriber (`include=groups`) at no request of their own; a group
//! whose counters disagree with what that pass saw is read member by member.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::{
    Checked, Confirm, Connector, Counts, Def, DemoHint, PageSize, Reading, Request, Rows, Stream, StreamPlan, TableSpec,
};
use crate::config::{Config, Requirements};
use crate::error::Result;
use crate::net::http::{Client, Secret};
use crate::page::paginate::{
    warn_if_signals_disagree, Cursor, CursorSignals, Next, Page, PageSignals, Position, Steps,
};
use crate::page::parse::{Batch, Envelope, Spec};
use crate::page::timestamp::TimeFormat;

mod subscribers;
use subscribers::Subscribers;

pub static DEF: Def = Def {
    name: "mailerlite",
    about: "MailerLite (connect.mailerlite.com): subscribers, groups, memberships, fields, campaigns",
    requirements: REQUIREMENTS,
    tables: TABLES,
    time_format: TimeFormat::SpaceSeparatedUtc,
    build: |config| Box::new(MailerLite::new(config)),
    authorization: |config| Secret::new(format!("Bearer {}", config.api_key.expose())),
    demo: Some(DemoHint { table: "subscriber", group_by: "status" }),
};

pub const REQUIREMENTS: Requirements = Requirements {
    api_key_name: "api_key",
    username_name: "username",
    api_key_env: "MAILERLITE_API_KEY",
    username_env: None,
    default_base_url: Some("https://connect.mailerlite.com/api"),
    instance_url: None,
    instance_domain: "",
    // 120 requests a minute per account (x-ratelimit-limit says so too).
    requests_per_minute: 120,
    filters_by_time: false,
};

const SUBSCRIBER_TIMES: &[&str] = &["subscribed_at", "unsubscribed_at", "created_at", "updated_at", "opted_in_at"];
const CAMPAIGN_TIMES: &[&str] = &[
    "created_at",
    "updated_at",
    "scheduled_for",
    "queued_at",
    "started_at",
    "finished_at",
    "stopped_at",
    "initial_created_at",
];

pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "subscriber",
        primary_key: &["id"],
        timestamps: SUBSCRIBER_TIMES,
        derived: &[],
        read_as: "cursor pages of /subscribers, every status",
        confirm: Confirm::Unseen,
    },
    TableSpec {
        name: "group",
        primary_key: &["id"],
        timestamps: &["created_at"],
        derived: &[],
        read_as: "page-number pages of /groups",
        confirm: Confirm::Reread,
    },
    TableSpec {
        name: "group_subscriber",
        primary_key: &["group_id", "subscriber_id"],
        timestamps: &[],
        derived: &[],
        read_as: "the groups of each subscriber (/subscribers?include=groups); /groups/{id}/subscribers per status for a group whose counters disagree",
        confirm: Confirm::Unseen,
    },
    TableSpec {
        name: "field",
        primary_key: &["id"],
        timestamps: &[],
        derived: &[],
        read_as: "page-number pages of /fields",
        confirm: Confirm::Reread,
    },
    TableSpec {
        name: "campaign",
        primary_key: &["id"],
        timestamps: CAMPAIGN_TIMES,
        derived: &[],
        read_as: "page-number pages of /campaigns, once per status: draft, ready, sent",
        confirm: Confirm::Reread,
    },
];

/// Every subscriber status, in the order a subscriber moves through them (a member
/// listing defaults to `active` alone).
const STATUSES: [&str; 5] = ["unconfirmed", "active", "unsubscribed", "bounced", "junk"];
/// Campaign statuses in lifecycle order: one that moves on during the read is read twice, never missed.
const CAMPAIGN_STATUSES: [&str; 3] = ["draft", "ready", "sent"];
/// The group counters whose sum is the group's memberships.
const COUNTERS: [&str; 5] = ["active_count", "unsubscribed_count", "unconfirmed_count", "bounced_count", "junk_count"];
/// Run counters: memberships per group by its counters, and as the subscriber pass saw them.
const GROUP_MEMBERS: &str = "group_members";
const MEMBERS_SEEN: &str = "members_seen";
pub struct MailerLite {
    page_size: PageSize,
}

impl MailerLite {
    pub fn new(config: &Config) -> MailerLite {
        MailerLite { page_size: PageSize::new(config.page_size) }
    }
}

impl Connector for MailerLite {
    fn def(&self) -> &'static Def {
        &DEF
    }

    fn check(&self, client: &Client) -> Result<Checked> {
        let (total, account) = client.get("/subscribers", &[("limit", "0")], |reply| {
            let v: Value = serde_json::from_slice(reply.body).map_err(|e| format!("invalid JSON: {e}"))?;
            let account = reply.headers.get("x-account_id").and_then(|v| v.to_str().ok()).map(str::to_string);
            Ok((v.get("total").and_then(Value::as_u64), account))
        })?;
        let identity = account.as_ref().map(|id| format!("account {id}"));
        let mut message = format!("credentials accepted by {}", client.base_url());
        if let Some(id) = &account {
            message.push_str(&format!(" (account {id})"));
        }
        let mut totals = BTreeMap::new();
        if let Some(n) = total {
            message.push_str(&format!(": the account has {n} subscribers"));
            totals.insert("subscriber".to_string(), n);
        }
        Ok(Checked { identity, message, totals })
    }

    fn streams(&self, tables: &[&'static str]) -> Vec<StreamPlan> {
        let want = |t: &str| tables.contains(&t);
        let mut plans = Vec::new();
        // One stream for the three: memberships need the subscriber pass and the
        // groups' counters, and /groups is read once.
        let members: Vec<&'static str> =
            ["subscriber", "group", "group_subscriber"].into_iter().filter(|t| want(t)).collect();
        if !members.is_empty() {
            plans.push(StreamPlan { name: "subscriber", tables: members });
        }
        for t in ["field", "campaign"] {
            if want(t) {
                plans.push(StreamPlan { name: t, tables: vec![t] });
            }
        }
        plans
    }

    fn open(&self, plan: &StreamPlan, position: Option<Position>) -> Box<dyn Stream + '_> {
        match plan.name {
            "subscriber" => Box::new(Subscribers::new(self, plan, position)),
            table => self.reread(table, position),
        }
    }

    fn reread(&self, table: &str, position: Option<Position>) -> Box<dyn Stream + '_> {
        match table {
            "campaign" => {
                let start = || Steps::start(CAMPAIGN_STATUSES.map(String::from).to_vec(), self.page());
                Box::new(Listing::steps(self, "/campaigns", DEF.timestamps("campaign"), position, start))
            }
            "group" => Box::new(Listing::pages(self, "/groups", DEF.timestamps("group"), position)),
            _ => Box::new(Listing::pages(self, "/fields", DEF.timestamps("field"), position)),
        }
    }
}

impl MailerLite {
    fn page(&self) -> Position {
        Position::Page(Page::start(self.page_size.get()))
    }

    fn cursor(&self) -> Position {
        Position::Cursor(Cursor::start(self.page_size.get()))
    }
}

/// The paging signals of a Laravel page envelope: `meta` must be there.
fn page_signals(env: &Envelope) -> std::result::Result<PageSignals, String> {
    let meta = env.get("meta").filter(|m| m.is_object()).ok_or("the body has no \"meta\" object")?;
    let links_next =
        env.get("links").and_then(|l| l.get("next")).and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let last_page = meta.get("last_page").and_then(Value::as_u64);
    let current_page = meta.get("current_page").and_then(Value::as_u64);
    // Without links, the page numbers alone tell whether more follow.
    let has_next =
        links_next || (env.get("links").is_none() && current_page.zip(last_page).is_some_and(|(c, l)| c < l));
    Ok(PageSignals { current_page, last_page, has_next, records: None })
}

/// The paging signals of a Laravel cursor envelope.
fn cursor_signals(env: &Envelope) -> std::result::Result<CursorSignals, String> {
    let meta = env.get("meta").filter(|m| m.is_object()).ok_or("the body has no \"meta\" object")?;
    match meta.get("next_cursor") {
        None | Some(Value::Null) => Ok(CursorSignals { next_cursor: None }),
        Some(Value::String(c)) => Ok(CursorSignals { next_cursor: Some(c.clone()) }),
        Some(other) => Err(format!("meta.next_cursor is not a string: {other}")),
    }
}

/// Advances a page or cursor position of `listing` after a page of `records` records.
fn advance(
    pos: &mut Position,
    listing: &str,
    env: &Envelope,
    records: usize,
    seen: &mut HashSet<u64>,
) -> std::result::Result<Next, String> {
    match pos {
        Position::Page(p) => {
            let signals = PageSignals { records: u64::try_from(records).ok(), ..page_signals(env)? };
            warn_if_signals_disagree(listing, p, &signals);
            p.advance(&signals)
        }
        Position::Cursor(c) => c.advance(&cursor_signals(env)?, seen),
        _ => Ok(Next::Done),
    }
}

/// How to read a page of a listing at `pos`.
fn reading(pos: &Position, spec: Spec<'static>) -> Reading {
    match pos {
        Position::Cursor(_) => {
            Reading { spec, check: |env| cursor_signals(env).map(drop), next_guess: Some(super::meta_next_cursor) }
        }
        _ => Reading { spec, check: |env| page_signals(env).map(drop), next_guess: None },
    }
}

/// The query for a page at `pos` with extra parameters.
fn query(pos: &Position, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut q = extra.to_vec();
    match pos {
        Position::Page(p) => {
            q.insert(0, ("limit", p.page_size.to_string()));
            q.push(("page", p.page.to_string()));
        }
        Position::Cursor(c) => {
            q.insert(0, ("limit", c.page_size.to_string()));
            q.extend(c.cursor.clone().map(|c| ("cursor", c)));
        }
        _ => {}
    }
    q
}

/// A page-numbered listing (groups, fields), or one per step (campaign statuses).
struct Listing<'c> {
    ml: &'c MailerLite,
    path: &'static str,
    timestamps: &'static [&'static str],
    position: Position,
    seen: HashSet<u64>,
}

impl<'c> Listing<'c> {
    fn pages(ml: &'c MailerLite, path: &'static str, ts: &'static [&'static str], at: Option<Position>) -> Listing<'c> {
        let position = at.unwrap_or_else(|| ml.page());
        Listing { ml, path, timestamps: ts, position, seen: HashSet::new() }
    }

    fn steps(
        ml: &'c MailerLite,
        path: &'static str,
        ts: &'static [&'static str],
        at: Option<Position>,
        start: impl FnOnce() -> Steps,
    ) -> Listing<'c> {
        let position = at.unwrap_or_else(|| Position::Steps(start()));
        Listing { ml, path, timestamps: ts, position, seen: HashSet::new() }
    }

    /// The listing being read and the status filter of its step.
    fn current(&self) -> (&Position, Option<&str>) {
        match &self.position {
            Position::Steps(s) => (&s.inner, s.current()),
            p => (p, None),
        }
    }
}

impl Stream for Listing<'_> {
    fn request(&self) -> Option<Request> {
        let (pos, status) = self.current();
        if *pos == Position::Done {
            return None;
        }
        let extra: Vec<(&'static str, String)> =
            status.map(|s| ("filter[status]", s.to_string())).into_iter().collect();
        Some(Request { path: self.path.to_string(), query: query(pos, &extra) })
    }

    fn reading(&self) -> Reading {
        let spec = Spec {
            records: &["data"],
            bare_array: false,
            timestamps: self.timestamps,
            time_format: Some(DEF.time_format),
            capture: &[],
        };
        reading(self.current().0, spec)
    }

    fn accept(&mut self, env: &Envelope, batch: &Batch, _: &mut Counts) -> std::result::Result<(), String> {
        let page = self.ml.page();
        match &mut self.position {
            Position::Steps(s) => {
                if advance(&mut s.inner, self.path, env, batch.len(), &mut self.seen)? == Next::Done {
                    s.next_step(page);
                }
            }
            p => {
                if advance(p, self.path, env, batch.len(), &mut self.seen)? == Next::Done {
                    *p = Position::Done;
                }
            }
        }
        Ok(())
    }

    fn rows<'a>(&'a self, _table: usize, batch: &'a Batch) -> Rows<'a> {
        Rows::All(batch)
    }

    fn not_found(&mut self) -> bool {
        // A restart forgets the abandoned pass's cursors: they are met again.
        self.seen.clear();
        restart_listing(&mut self.position, self.ml.page())
    }

    fn position(&self) -> Position {
        self.position.clone()
    }

    fn shrink_page_size(&mut self) -> bool {
        self.seen.clear();
        shrink(self.ml, &mut self.position)
    }
}

/// A 404 for a page past the first: the listing shrank since; read it again from
/// its first page (records already read are not written twice).
fn restart_listing(pos: &mut Position, start: Position) -> bool {
    let inner = match pos {
        Position::Steps(s) => &mut *s.inner,
        p => p,
    };
    let at_start =
        matches!(inner, Position::Page(p) if p.page == 1) || matches!(inner, Position::Cursor(c) if c.cursor.is_none());
    if at_start {
        return false;
    }
    *inner = match inner {
        Position::Cursor(c) => Position::Cursor(Cursor::start(c.page_size)),
        _ => start,
    };
    true
}

/// The API refused the page size: fall back to 100 for the rest of the run.
fn shrink(ml: &MailerLite, pos: &mut Position) -> bool {
    if !ml.page_size.fall_back() {
        return false;
    }
    let inner = match pos {
        Position::Steps(s) => &mut *s.inner,
        p => p,
    };
    *inner = match inner {
        Position::Cursor(_) => ml.cursor(),
        _ => ml.page(),
    };
    true
}

/// Adds each group's counters up: the memberships the group says it has.
fn count_group_members(batch: &Batch, counts: &mut BTreeMap<String, u64>) {
    let Some(id_path) = batch.path_id(&["id"]) else { return };
    let counters: Vec<Option<u32>> = COUNTERS.iter().map(|c| batch.path_id(&[c])).collect();
    for i in 0..batch.len() {
        let Some(id) = batch.value_at(i, id_path) else { continue };
        let number = |p: &Option<u32>| {
            p.and_then(|p| batch.value_at(i, p)).and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
        };
        let sum = counters.iter().map(number).map(|n| n.unwrap_or(0)).sum();
        counts.insert(String::from_utf8_lossy(id).into_owned(), sum);
    }
}
