//! What each API offers: its tables, their primary keys and timestamp fields, and
//! the streams of pages that feed them.
//!
//! [`CONNECTORS`] is the one list of APIs the tool knows: the command line, the
//! demo and the tests iterate it. A new API is one file here and one in `mock/`,
//! plus its line in that list.

pub mod definition;
pub mod mailerlite;
pub mod paligo;

use std::collections::BTreeMap;

use crate::config::{Config, Requirements};
use crate::error::Result;
use crate::net::http::{Client, Secret};
use crate::page::paginate::Position;
use crate::page::parse::{Batch, Envelope, Spec};
use crate::page::timestamp::TimeFormat;

/// The APIs api2csv can sync, in the order `--help` lists them.
pub static CONNECTORS: &[&Def] = &[&mailerlite::DEF, &paligo::DEF];

/// The connector named `name`.
pub fn find(name: &str) -> Option<&'static Def> {
    // `MailerLite` as the product is spelled finds it too.
    CONNECTORS.iter().copied().find(|d| d.name.eq_ignore_ascii_case(name)).or_else(|| definition::loaded_named(name))
}

/// The connector that wrote a directory whose state is `state`: a built-in one, or
/// the connector definition the state keeps. An unknown one is an unusable state.
pub fn of_state(state: &crate::store::state::State, dir: &std::path::Path) -> crate::error::Result<&'static Def> {
    if let Some(def) = CONNECTORS.iter().copied().find(|d| d.name == state.connector) {
        return Ok(def);
    }
    definition::from_state(state, dir).unwrap_or_else(|| {
        Err(crate::error::Error::State {
            path: dir.join(crate::store::state::FILE_NAME),
            detail: format!("unknown connector {:?}", state.connector),
        })
    })
}

/// The names of every connector, for messages.
pub fn names() -> String {
    CONNECTORS.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
}

/// One API: everything the tool needs to know about it without a configuration.
pub struct Def {
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    pub requirements: Requirements,
    pub tables: &'static [TableSpec],
    pub time_format: TimeFormat,
    /// The connector for a validated configuration.
    pub build: fn(&Config) -> Box<dyn Connector>,
    /// The `Authorization` header for a configuration.
    pub authorization: fn(&Config) -> Secret,
    /// What `demo` suggests doing with this connector's export, if anything.
    pub demo: Option<DemoHint>,
}

/// What the demo suggests doing with an export: a table to open, and a column to
/// count its rows by.
#[derive(Debug, Clone, Copy)]
pub struct DemoHint {
    pub table: &'static str,
    pub group_by: &'static str,
}

impl std::fmt::Debug for Def {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Def({})", self.name)
    }
}

impl Def {
    pub fn table(&self, name: &str) -> Option<&'static TableSpec> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// What does not apply in `config`: one line each, logged and kept in `last_sync.json`.
    pub fn config_warnings(&self, config: &Config) -> Vec<String> {
        let mut w = Vec::new();
        for key in &config.unknown_keys {
            match crate::config::did_you_mean(key) {
                Some(known) => w.push(format!("configuration: unknown key {key:?} ignored; did you mean {known:?}?")),
                None => w.push(format!("configuration: unknown key {key:?} ignored")),
            }
        }
        if config.sync_frequency_hours.is_some() {
            w.push("configuration: sync_frequency_hours does not apply: api2csv syncs when it is run; schedule it with cron or a systemd timer".into());
        }
        if config.initial_sync_days.is_some() && !self.requirements.filters_by_time {
            w.push(format!("configuration: initial_sync_days does not apply to {}: its API cannot filter by time, so every sync reads every record", self.name));
        }
        w
    }

    /// The timestamp keys of table `name` (none for a table it does not have).
    pub fn timestamps(&self, name: &str) -> &'static [&'static str] {
        self.table(name).map_or(&[], |t| t.timestamps)
    }
}

/// The page size a connector asks for: the configured one until the API refuses
/// it (a 422 about the limit), then the fallback for the rest of the run.
#[derive(Debug)]
pub struct PageSize(std::cell::Cell<u32>);

impl PageSize {
    /// The page size to fall back to when the API refuses a larger one.
    const FALLBACK: u32 = 100;

    pub fn new(configured: u32) -> PageSize {
        PageSize(std::cell::Cell::new(configured))
    }

    pub fn get(&self) -> u32 {
        self.0.get()
    }

    /// Falls back after a refusal; false when already there, and the refusal stands.
    pub fn fall_back(&self) -> bool {
        if self.get() <= Self::FALLBACK {
            return false;
        }
        log::warn!("the API refused {} records per page; using {} for the rest of the run", self.get(), Self::FALLBACK);
        self.0.set(Self::FALLBACK);
        true
    }
}

/// How a key that a complete read did not see is confirmed gone before it gets a
/// tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// The listing cannot skip a record (cursor pages): not seen means gone.
    Unseen,
    /// Page-number pages can skip a record when the listing shifts: read the listing
    /// once more; what it still lacks is gone.
    Reread,
    /// Ask the API's show route for the record: 404 (or 410) means gone.
    Show,
}

/// One table of a connector.
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    pub primary_key: &'static [&'static str],
    /// Top-level keys holding timestamps, written as RFC 3339 UTC.
    pub timestamps: &'static [&'static str],
    /// Columns the connector adds itself (Paligo's `parent_id`, `level`, `path`).
    pub derived: &'static [&'static str],
    /// How the table is read, for `api2csv tables`.
    pub read_as: &'static str,
    pub confirm: Confirm,
}

/// What the one request of `check` learned.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// The account the credentials belong to, when the API reveals it (MailerLite's
    /// `x-account_id` comes and goes with API versions; none says nothing about it).
    pub identity: Option<String>,
    /// What to tell the user.
    pub message: String,
    /// Records per table, where the API announced a count.
    pub totals: BTreeMap<String, u64>,
}

/// An API the tool can sync, for one configuration.
pub trait Connector {
    fn def(&self) -> &'static Def;
    /// One cheap request that proves the credentials.
    fn check(&self, client: &Client) -> Result<Checked>;
    /// The streams that feed `tables` (in table order), each with the tables it writes.
    fn streams(&self, tables: &[&'static str]) -> Vec<StreamPlan>;
    /// Opens `plan` at `position` (none: the start).
    fn open(&self, plan: &StreamPlan, position: Option<Position>) -> Box<dyn Stream + '_>;
    /// A stream that reads the listing of `table` once more (for [`Confirm::Reread`]).
    fn reread(&self, table: &str, position: Option<Position>) -> Box<dyn Stream + '_>;
    /// Whether the record of `table` with primary key `key` still exists ([`Confirm::Show`]).
    fn still_exists(&self, _client: &Client, _table: &str, _key: &[Vec<u8>]) -> Result<bool> {
        Ok(false)
    }
    /// For a table's first sync: records created before this Unix time are never
    /// synced (`initial_sync_days`). The cut-off is kept for every later sync.
    fn created_since(&self, _table: &str) -> Option<i64> {
        None
    }
}

/// A stream of pages and the tables it writes, in the order read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    pub name: &'static str,
    pub tables: Vec<&'static str>,
}

/// A request for one page: a path under the base URL and its query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    pub path: String,
    pub query: Vec<(&'static str, String)>,
}

impl Request {
    /// The next page of a cursor listing: the same query with `cursor` last, as
    /// MailerLite's listings put it.
    pub fn with_cursor(&self, cursor: &str) -> Request {
        let mut query: Vec<(&'static str, String)> =
            self.query.iter().filter(|(k, _)| *k != "cursor").cloned().collect();
        query.push(("cursor", cursor.to_string()));
        Request { path: self.path.clone(), query }
    }

    /// True if `next` reads on in the same listing (only its page or cursor differ).
    pub fn same_listing(&self, next: &Request) -> bool {
        self.same_but(next, &|k| POSITION_KEYS.contains(&k))
    }

    /// True if `next` starts this listing over with another page size.
    pub fn restarted_by(&self, next: &Request) -> bool {
        self.same_but(next, &|k| POSITION_KEYS.contains(&k) || SIZE_KEYS.contains(&k))
    }

    fn same_but(&self, next: &Request, ignored: &dyn Fn(&str) -> bool) -> bool {
        let strip = |r: &Request| -> Vec<(&'static str, String)> {
            r.query.iter().filter(|(k, _)| !ignored(k)).cloned().collect()
        };
        self.path == next.path && strip(self) == strip(next)
    }
}

/// What a stream makes of one accepted page, per table of its plan.
pub enum Rows<'a> {
    /// Every record of the page.
    All(&'a Batch),
    /// Some of them, by index.
    Some(&'a Batch, &'a [u32]),
}

impl<'a> Rows<'a> {
    pub fn batch(&self) -> &'a Batch {
        match self {
            Rows::All(b) | Rows::Some(b, _) => b,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Rows::All(b) => b.len(),
            Rows::Some(_, idx) => idx.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th record's index in the batch.
    pub fn record(&self, i: usize) -> usize {
        match self {
            Rows::All(_) => i,
            Rows::Some(_, idx) => idx[i] as usize,
        }
    }
}

/// How to read the body of one request: what to parse out of it, and the check of
/// its envelope. Plain data, so the page can be fetched and parsed on another thread
/// while the stream's previous page is written.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub spec: Spec<'static>,
    /// An error refuses the body, which is retried and leaves no trace.
    pub check: fn(&Envelope) -> std::result::Result<(), String>,
    /// How to guess the next page from this page's raw body, so that it may be
    /// asked for while this page is parsed (`None`: no guess).
    pub next_guess: Option<NextGuess>,
}

/// A guess at a listing's next request from the raw body of a page; the walk uses
/// the guessed page only if its own next request is the same.
pub type NextGuess = fn(&Request, &[u8]) -> Option<Request>;

/// The guess for a cursor listing whose bodies end in `"meta": {"next_cursor": …}`
/// and whose next page is this request with that `cursor` ([`Request::with_cursor`]).
pub fn meta_next_cursor(request: &Request, body: &[u8]) -> Option<Request> {
    crate::page::parse::next_cursor_hint(body).map(|c| request.with_cursor(&c))
}

/// Query keys that move through a listing (the page or cursor).
const POSITION_KEYS: [&str; 2] = ["page", "cursor"];
/// Query keys that set the page size.
const SIZE_KEYS: [&str; 2] = ["limit", "per_page"];

/// A 422 that is about the page size (`limit`, `per_page`).
pub fn about_page_size(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("limit") || m.contains("per_page") || m.contains("per page")
}

/// The run's counters that streams keep across pages and restarts.
pub type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// The pages of one listing (or a sequence of listings), read lazily.
pub trait Stream {
    /// The request for the next page; `None` once the stream is done.
    fn request(&self) -> Option<Request>;
    /// How to read the body of that request.
    fn reading(&self) -> Reading;
    /// Takes an accepted page and moves on; an error ends the sync (a listing that
    /// does not move, runs past what the account holds).
    fn accept(&mut self, envelope: &Envelope, batch: &Batch, counts: &mut Counts) -> std::result::Result<(), String>;
    /// The rows of the page just accepted for table number `table` of the plan.
    fn rows<'a>(&'a self, table: usize, batch: &'a Batch) -> Rows<'a>;
    /// The request answered 404 or 410: the position is unknown to the server (a page
    /// gone, a parent deleted). Returns false when that is an error after all.
    fn not_found(&mut self) -> bool;
    /// Where the stream resumes after the pages accepted so far.
    fn position(&self) -> Position;
    /// Whether a 422 with this message refuses the page size.
    fn refuses_page_size(&self, message: &str) -> bool {
        about_page_size(message)
    }
    /// The API refused the page size (422): fall back to a smaller one and start the
    /// current listing over. False when there is none smaller to try.
    fn shrink_page_size(&mut self) -> bool {
        false
    }
    /// Skip records created before this Unix time (`initial_sync_days`).
    fn set_created_since(&mut self, _since: Option<i64>) {}
}

/// The HTTP client for `def` and `config`, paced to the API's documented budget
/// unless it is on loopback (the embedded mock: paced only once it refuses a request).
pub fn client(def: &Def, config: &Config, interrupt: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>) -> Client {
    let loopback = crate::net::http::check_base_url(&config.base_url).is_ok_and(|b| b.loopback);
    let budget = (!loopback).then_some((def.requirements.requests_per_minute, std::time::Duration::from_secs(60)));
    Client::new(crate::net::http::ClientConfig {
        base_url: config.base_url.clone(),
        authorization: (def.authorization)(config),
        auth_place: definition::auth_place(def),
        timeout: config.timeout,
        retries: config.retries,
        budget,
        interrupt,
    })
}

/// The tables of connector `name`.
pub fn tables(name: &str) -> Option<&'static [TableSpec]> {
    find(name).map(|d| d.tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_page_size_is_told_by_the_field_or_the_message() {
        assert!(about_page_size("The given data was invalid. (limit: The limit must not be greater than 100.)"));
        assert!(about_page_size("per_page must be at most 100"));
        assert!(!about_page_size("The given data was invalid. (email: The email must be valid.)"));
    }
}
