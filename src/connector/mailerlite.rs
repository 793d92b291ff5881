//! MailerLite (connect.mailerlite.com/api): subscribers, groups, memberships, fields
//! and campaigns, from Laravel's two pagination envelopes.
//!
//! The traps, from the fact sheet: `links.next` drops `limit` and filters, so every
//! request is rebuilt from our own parameters; `limit` is capped silently, so a short
//! page never means the end; `/campaigns` without `filter[status]` returns only
//! `ready` campaigns, so it is read once per status. Memberships come from the
//! `groups` of each subscriber (`include=groups`) at no request of their own; a group
//! whose counters disagree with what that pass saw is read member by member.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{Checked, Confirm, Connector, Counts, Def, Request, Rows, Stream, StreamPlan, TableSpec};
use crate::config::{Config, Requirements};
use crate::error::Result;
use crate::http::{Client, Secret};
use crate::mock::{self, MockApi, MockOptions};
use crate::paginate::{Cursor, CursorSignals, Next, Page, PageSignals, Position, Steps};
use crate::parse::{Batch, Envelope, Spec};
use crate::timestamp::TimeFormat;

pub static DEF: Def = Def {
    name: "mailerlite",
    about: "MailerLite (connect.mailerlite.com): subscribers, groups, memberships, fields, campaigns",
    requirements: REQUIREMENTS,
    tables: TABLES,
    time_format: TimeFormat::SpaceSeparatedUtc,
    build: |config| Box::new(MailerLite::new(config)),
    authorization: |config| Secret::new(format!("Bearer {}", config.api_key.expose())),
    mock: |opts: &MockOptions| -> Arc<dyn MockApi> { Arc::new(mock::mailerlite::MailerLite::new(opts)) },
    mock_base_path: mock::mailerlite::BASE_PATH,
    mock_config: |base_url| json!({"base_url": base_url, "api_key": mock::mailerlite::API_KEY}),
};

pub const REQUIREMENTS: Requirements = Requirements {
    connector: "mailerlite",
    api_key_env: "MAILERLITE_API_KEY",
    username_env: None,
    default_base_url: Some("https://connect.mailerlite.com/api"),
    instance_url: None,
    // 120 requests a minute per account (x-ratelimit-limit says so too).
    requests_per_minute: 120,
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
/// The page size to fall back to when the API refuses a larger one.
const FALLBACK_PAGE_SIZE: u32 = 100;

pub struct MailerLite {
    page_size: Cell<u32>,
}

impl MailerLite {
    pub fn new(config: &Config) -> MailerLite {
        MailerLite { page_size: Cell::new(config.page_size) }
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
        let host = crate::http::check_base_url(client.base_url()).map(|b| b.host).unwrap_or_default();
        let identity = match &account {
            Some(id) => format!("account {id}"),
            None => format!("host {host}"),
        };
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
                Box::new(Listing::steps(self, "/campaigns", CAMPAIGN_TIMES, position, start))
            }
            "group" => Box::new(Listing::pages(self, "/groups", &["created_at"], position)),
            _ => Box::new(Listing::pages(self, "/fields", &[], position)),
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
    Ok(PageSignals { current_page, last_page, has_next })
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

/// Advances a page or cursor position after a page.
fn advance(pos: &mut Position, env: &Envelope, seen: &mut HashSet<u64>) -> std::result::Result<Next, String> {
    match pos {
        Position::Page(p) => p.advance(&page_signals(env)?),
        Position::Cursor(c) => c.advance(&cursor_signals(env)?, seen),
        _ => Ok(Next::Done),
    }
}

fn check_envelope(pos: &Position, env: &Envelope) -> std::result::Result<(), String> {
    match pos {
        Position::Cursor(_) => cursor_signals(env).map(drop),
        _ => page_signals(env).map(drop),
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

    fn spec(&self) -> Spec<'static> {
        Spec {
            records: &["data"],
            bare_array: false,
            timestamps: self.timestamps,
            time_format: Some(TimeFormat::SpaceSeparatedUtc),
            capture: &[],
        }
    }

    fn check(&self, envelope: &Envelope, _batch: &Batch) -> std::result::Result<(), String> {
        check_envelope(self.current().0, envelope)
    }

    fn accept(&mut self, env: &Envelope, _batch: &Batch, _: &mut Counts) -> std::result::Result<(), String> {
        let page = self.ml.page();
        match &mut self.position {
            Position::Steps(s) => {
                if advance(&mut s.inner, env, &mut self.seen)? == Next::Done {
                    s.next_step(page);
                }
            }
            p => {
                if advance(p, env, &mut self.seen)? == Next::Done {
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
        restart_listing(&mut self.position, self.ml.page())
    }

    fn position(&self) -> Position {
        self.position.clone()
    }

    fn shrink_page_size(&mut self) -> bool {
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
    if ml.page_size.get() <= FALLBACK_PAGE_SIZE {
        return false;
    }
    log::warn!(
        "the API refused {} records per page; using {FALLBACK_PAGE_SIZE} for the rest of the run",
        ml.page_size.get()
    );
    ml.page_size.set(FALLBACK_PAGE_SIZE);
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

/// The subscriber pass (`include=groups` when memberships are wanted), then the
/// groups (their rows, and their counters for the memberships), then the member
/// listings of each group whose counters disagree with what the pass saw.
struct Subscribers<'c> {
    ml: &'c MailerLite,
    /// Which table of the plan each is: subscriber, group, group_subscriber.
    subscribers: Option<usize>,
    groups: Option<usize>,
    members: Option<usize>,
    position: Position,
    seen: HashSet<u64>,
    /// Memberships of the page just accepted, as records of their own.
    built: Batch,
    /// The step the page just accepted belonged to.
    last_step: String,
}

const PASS: &str = "subscribers";
const GROUPS: &str = "groups";

impl<'c> Subscribers<'c> {
    fn new(ml: &'c MailerLite, plan: &StreamPlan, position: Option<Position>) -> Subscribers<'c> {
        let index = |t: &str| plan.tables.iter().position(|p| *p == t);
        let (subscribers, groups, members) = (index("subscriber"), index("group"), index("group_subscriber"));
        let position = position.unwrap_or_else(|| {
            let mut steps = Vec::new();
            if subscribers.is_some() || members.is_some() {
                steps.push(PASS.to_string());
            }
            if groups.is_some() || members.is_some() {
                steps.push(GROUPS.to_string());
            }
            let first = if steps[0] == PASS { ml.cursor() } else { ml.page() };
            Position::Steps(Steps::start(steps, first))
        });
        Subscribers {
            ml,
            subscribers,
            groups,
            members,
            position,
            seen: HashSet::new(),
            built: Batch::default(),
            last_step: String::new(),
        }
    }

    fn steps(&self) -> &Steps {
        match &self.position {
            Position::Steps(s) => s,
            _ => unreachable!("the subscriber stream is a sequence of steps"),
        }
    }

    fn steps_mut(&mut self) -> &mut Steps {
        match &mut self.position {
            Position::Steps(s) => s,
            _ => unreachable!("the subscriber stream is a sequence of steps"),
        }
    }

    /// A step is over: start the next, adding member listings once the counters are in.
    fn next_step(&mut self, finished: &str, counts: &Counts) {
        if finished == GROUPS && self.members.is_some() {
            let steps = disagreeing_groups(counts);
            self.steps_mut().steps.extend(steps);
        }
        let next = self.steps().steps.get(self.steps().index + 1).cloned();
        let start = match next.as_deref() {
            Some(GROUPS) => self.ml.page(),
            _ => self.ml.cursor(),
        };
        self.steps_mut().next_step(start);
    }

    /// The request for member listing step `step` (`group:status`).
    fn member_request(step: &str, pos: &Position) -> Request {
        let (group, status) = step.split_once(':').unwrap_or((step, "active"));
        Request {
            path: format!("/groups/{group}/subscribers"),
            query: query(pos, &[("filter[status]", status.to_string())]),
        }
    }

    /// Memberships from the `groups` of each subscriber of the page.
    fn memberships_of_subscribers(&mut self, batch: &Batch, counts: &mut Counts) {
        self.built.clear();
        let Some(id_path) = batch.path_id(&["id"]) else { return };
        let seen = counts.entry(MEMBERS_SEEN.to_string()).or_default();
        for i in 0..batch.len() {
            let Some(subscriber) = batch.value_at(i, id_path) else { continue };
            let Some(Value::Array(groups)) = batch.captured(i, 0) else { continue };
            for g in groups {
                let Some(group) = scalar(g.get("id")) else { continue };
                *seen.entry(group.clone()).or_default() += 1;
                self.built.begin_record();
                self.built.push_leaf(&["group_id"], group.as_bytes());
                self.built.push_leaf(&["subscriber_id"], subscriber);
                self.built.end_record();
            }
        }
    }

    /// Memberships from a member listing of `group`.
    fn memberships_of_group(&mut self, group: &str, batch: &Batch) {
        self.built.clear();
        let Some(id_path) = batch.path_id(&["id"]) else { return };
        for i in 0..batch.len() {
            let Some(subscriber) = batch.value_at(i, id_path) else { continue };
            self.built.begin_record();
            self.built.push_leaf(&["group_id"], group.as_bytes());
            self.built.push_leaf(&["subscriber_id"], subscriber);
            self.built.end_record();
        }
    }
}

/// A member listing per status for each group whose counters disagree with the
/// memberships the subscriber pass saw.
fn disagreeing_groups(counts: &Counts) -> Vec<String> {
    let empty = BTreeMap::new();
    let expected = counts.get(GROUP_MEMBERS).unwrap_or(&empty);
    let seen = counts.get(MEMBERS_SEEN).unwrap_or(&empty);
    let mut steps = Vec::new();
    for (group, &want) in expected {
        let got = seen.get(group).copied().unwrap_or(0);
        if got != want {
            log::info!("group {group}: its counters say {want} members, the subscriber pass saw {got}; reading its member listings");
            steps.extend(STATUSES.iter().map(|s| format!("{group}:{s}")));
        }
    }
    steps
}

/// A JSON scalar as the text a cell would hold.
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Stream for Subscribers<'_> {
    fn request(&self) -> Option<Request> {
        let s = self.steps();
        match s.current()? {
            PASS => {
                let include = self.members.map(|_| ("include", "groups".to_string()));
                Some(Request {
                    path: "/subscribers".into(),
                    query: query(&s.inner, &include.into_iter().collect::<Vec<_>>()),
                })
            }
            GROUPS => Some(Request { path: "/groups".into(), query: query(&s.inner, &[]) }),
            step => Some(Self::member_request(step, &s.inner)),
        }
    }

    fn spec(&self) -> Spec<'static> {
        let step = self.steps().current();
        let timestamps: &'static [&'static str] = match step {
            Some(PASS) => SUBSCRIBER_TIMES,
            Some(GROUPS) => &["created_at"],
            _ => &[],
        };
        let capture: &'static [&'static str] = if step == Some(PASS) { &["groups"] } else { &[] };
        Spec {
            records: &["data"],
            bare_array: false,
            timestamps,
            time_format: Some(TimeFormat::SpaceSeparatedUtc),
            capture,
        }
    }

    fn check(&self, envelope: &Envelope, _batch: &Batch) -> std::result::Result<(), String> {
        check_envelope(&self.steps().inner, envelope)
    }

    fn accept(&mut self, env: &Envelope, batch: &Batch, counts: &mut Counts) -> std::result::Result<(), String> {
        let step = self.steps().current().unwrap_or("").to_string();
        self.built.clear();
        match step.as_str() {
            PASS if self.members.is_some() => self.memberships_of_subscribers(batch, counts),
            PASS => {}
            GROUPS => count_group_members(batch, counts.entry(GROUP_MEMBERS.to_string()).or_default()),
            step => {
                let group = step.split(':').next().unwrap_or("").to_string();
                self.memberships_of_group(&group, batch);
            }
        }
        let Position::Steps(s) = &mut self.position else { unreachable!() };
        let done = advance(&mut s.inner, env, &mut self.seen)? == Next::Done;
        if done {
            self.seen.clear();
            self.next_step(&step, counts);
        }
        self.last_step = step;
        Ok(())
    }

    fn rows<'a>(&'a self, table: usize, batch: &'a Batch) -> Rows<'a> {
        let step = self.last_step.as_str();
        let t = Some(table);
        if t == self.members {
            Rows::All(&self.built)
        } else if (t == self.subscribers && step == PASS) || (t == self.groups && step == GROUPS) {
            Rows::All(batch)
        } else {
            Rows::Some(batch, &[])
        }
    }

    fn not_found(&mut self) -> bool {
        let step = self.steps().current().unwrap_or("").to_string();
        if step != PASS && step != GROUPS {
            log::warn!("group {} no longer exists; its memberships are skipped", step.split(':').next().unwrap_or(""));
            let cursor = self.ml.cursor();
            self.steps_mut().next_step(cursor);
            return true;
        }
        let start = if step == PASS { self.ml.cursor() } else { self.ml.page() };
        restart_listing(&mut self.steps_mut().inner, start)
    }

    fn position(&self) -> Position {
        self.position.clone()
    }

    fn shrink_page_size(&mut self) -> bool {
        shrink(self.ml, &mut self.position)
    }
}
