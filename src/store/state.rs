//! `state.json`: the commit record of an output directory, and every transition
//! of the state that crosses a crash.
//!
//! It says, per table, which bytes of `<table>.csv` are committed (length, row
//! count, columns, CRC-32 of the whole and of the last commit's bytes), where
//! reading resumes, and whether a file replacement is under way. Fields change only
//! through the methods below, called by the engine, the sink and `compact`.
//!
//! # A power cut at each step
//!
//! A page commit is: append the page's rows to the CSV (and the keys read to the
//! `.seen` journal), fdatasync them, then rewrite `state.json` (temp file, fsync,
//! rename, directory fsync). Cut after the append but before the rename, and the
//! next run finds the old state: the CSV is longer than its committed length, the
//! extra bytes are cut off and the page is fetched again, so nothing is doubled. Cut
//! after the rename, and the state already counts the page, whose bytes are durable
//! because they were synced first, so nothing is lost. The temp file never replaces
//! `state.json` half written: the rename is atomic.
//!
//! A file replacement (widening, compact, full refresh: see `replace.rs`) is: write
//! the side file and fsync it; commit a state whose `replace` describes the side
//! file (length, header, CRC); rename the side file over the target and fsync the
//! directory; commit a state that applied `replace`. A cut before the first commit
//! leaves a side file no state describes: removed on the next start. A cut between
//! the commits leaves `replace` set: the next start renames the side file if it is
//! still there and matches what `replace` describes (else the rename had happened:
//! the target matches it), then commits the applied state before anything else can
//! write a side file. A side file that does not match (a second crash while writing
//! a new one) is removed, never renamed. So at every instant one of the two files is
//! complete and the state says which.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::page::paginate::Position;
use crate::store::fsio::write_atomic;

mod v1;

pub const FILE_NAME: &str = "state.json";
const VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    pub connector: String,
    /// The account this directory belongs to; absent in directories written before
    /// api2csv recorded it (adopted on their next sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// How the table files are written; kept once chosen.
    #[serde(default)]
    pub output: OutputOptions,
    /// Present while a sync is under way or was interrupted; a rerun continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    #[serde(default)]
    pub tables: BTreeMap<String, TableState>,
    /// For a connector definition: each table's digest of what identifies its rows
    /// (path, records pointer, primary key), to refuse a changed one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub definition: BTreeMap<String, String>,
    /// For a connector definition: the definition itself, so that `compact` and
    /// `repair` know its tables without the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition_source: Option<serde_json::Value>,
    /// Read from an older version: checksums are to be computed from the files.
    #[serde(skip)]
    pub upgraded: bool,
}

/// Who the data belongs to: where it came from and the identity the API reveals.
///
/// `id` is `account N` (MailerLite's `x-account_id`) or `user U at HOST:PORT` (a
/// username, which means something on one instance only); none while the API has
/// not revealed one. Older api2csv versions wrote two other forms, read as follows:
/// `host H` (MailerLite with no `x-account_id`) is no identity at all; `user U at H`
/// or `U@H` without a port is completed with the port of the `base_url` recorded
/// alongside it (they were always written together), and, should that URL not name
/// host `H`, compares on user and host only until a sync records the full form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub base_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Account {
    /// The identity of user `user` of the instance at `authority` (`host:port`).
    pub fn user_at(user: &str, authority: &str) -> String {
        format!("user {user} at {authority}")
    }

    /// Whether a directory recorded as `self` may take the data of `now`: not when
    /// both reveal an identity and the identities differ.
    pub fn same_as(&self, now: &Account) -> bool {
        match (&self.id, &now.id) {
            (Some(had), Some(now)) => had == now || legacy_user_host(had).is_some_and(|h| same_user_host(h, now)),
            _ => true,
        }
    }

    /// Brings an identity in a form older versions wrote up to date (see above).
    fn upgrade(&mut self) {
        let Some(id) = &self.id else { return };
        if id.starts_with("host ") {
            self.id = None;
            return;
        }
        let Some((user, host)) = legacy_user_host(id) else { return };
        let base = crate::net::http::check_base_url(&self.base_url).ok();
        if let Some(base) = base.filter(|b| b.host.eq_ignore_ascii_case(host)) {
            self.id = Some(Account::user_at(user, &base.authority));
        }
    }
}

/// The user and host of an identity an older version wrote without a port:
/// `user U at H` or `U@H`.
fn legacy_user_host(id: &str) -> Option<(&str, &str)> {
    let (user, host) = match id.strip_prefix("user ") {
        Some(rest) => rest.rsplit_once(" at ")?,
        None if !id.starts_with("account ") => id.rsplit_once('@')?,
        None => return None,
    };
    // With a port, the host is `name:port` or `[v6]:port`; a bare IPv6 has colons too.
    let has_port = host.starts_with('[')
        || host.split_once(':').is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (!has_port && !user.is_empty() && !host.is_empty()).then_some((user, host))
}

/// Whether `now` (`user U at HOST:PORT`) is user `user` at host `host`, whatever the port.
fn same_user_host((user, host): (&str, &str), now: &str) -> bool {
    let Some((now_user, authority)) = now.strip_prefix("user ").and_then(|r| r.rsplit_once(" at ")) else {
        return false;
    };
    let now_host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let now_host = now_host.trim_start_matches('[').trim_end_matches(']');
    now_user == user && now_host.eq_ignore_ascii_case(host)
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputOptions {
    /// Table files start with a UTF-8 byte order mark (for Excel).
    #[serde(default)]
    pub bom: bool,
    /// Cells starting with `=`, `+`, `-`, `@`, tab, CR or `'` get a leading `'`.
    #[serde(default)]
    pub spreadsheet_safe: bool,
}

/// A sync that has started and not yet finished every table it was asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub started_at: String,
    /// A random number naming this run: its journals carry it, so a journal left by
    /// another run (or copied from another directory) is never taken for its own.
    /// 0 in a state from before it was kept.
    #[serde(default)]
    pub id: u64,
    /// The tables this run writes, in the order they are read.
    pub tables: Vec<String>,
    /// Tables of this run that are complete.
    pub done: Vec<String>,
    #[serde(default)]
    pub full_refresh: bool,
    /// Whether keys not seen get tombstones: only a run over every table that is
    /// not a full refresh can tell a deleted record from one not read.
    #[serde(default)]
    pub deletes: bool,
    /// Counters a connector keeps across pages and restarts, by name and key
    /// (MailerLite: memberships seen per group).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The committed bytes of one CSV file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileState {
    /// Bytes committed; anything after them is cut off on the next start.
    pub file_len: u64,
    /// Data rows in those bytes (tombstones included).
    pub rows: u64,
    /// Data columns in header order: CSV name and key path (a derived column's path
    /// is its name).
    pub columns: Vec<(String, Vec<String>)>,
    /// Names of the columns the connector derives rather than reads (Paligo's `level`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derived: Vec<String>,
    /// CRC-32 of the committed bytes.
    #[serde(default)]
    pub crc: u32,
    /// The last commit's bytes, `tail_start..file_len`, and their CRC-32: checked on
    /// every start, so an edited file is found without reading all of it.
    #[serde(default)]
    pub tail_start: u64,
    #[serde(default)]
    pub tail_crc: u32,
}

/// The committed bytes of a table's `.seen` journal: its length, run header
/// included, and their CRC-32. A journal is used only if it proves itself by both
/// and by the run named in its header (see `seen.rs`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "JournalForm")]
pub struct Journal {
    pub len: u64,
    /// `None` in a state from before journals were checksummed: not proven.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc: Option<u32>,
}

/// A journal as states write it: a bare length before checksums were kept.
#[derive(Deserialize)]
#[serde(untagged)]
enum JournalForm {
    Len(u64),
    Full {
        len: u64,
        #[serde(default)]
        crc: Option<u32>,
    },
}

impl From<JournalForm> for Journal {
    fn from(form: JournalForm) -> Journal {
        match form {
            JournalForm::Len(len) => Journal { len, crc: None },
            JournalForm::Full { len, crc } => Journal { len, crc },
        }
    }
}

/// Where a table's sync stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Resume {
    /// Reading the listing(s) that feed the table.
    Read(Position),
    /// Reading a page-numbered listing once more: keys it still lacks are gone.
    Verify(Position),
    /// Asking the API about each key the read did not see (show route, 404: gone).
    Confirm,
}

/// A file replacement whose side file is complete and durable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Replace {
    pub kind: ReplaceKind,
    /// What the side file holds, and so what the target holds once renamed.
    pub file: FileState,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ReplaceKind {
    /// `<table>.csv.new` → `<table>.csv`: a new column added to the committed rows.
    Widen,
    /// `<table>.csv.new` → `<table>.csv`: one row per key.
    Compact,
    /// `<table>.csv.refresh.new` → `<table>.csv.refresh`: the rebuild widened.
    WidenRefresh,
    /// `<table>.csv.refresh` → `<table>.csv`: a finished `--full-refresh` rebuild.
    Refresh,
}

/// Which file of a table is being appended to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Table,
    /// `<table>.csv.refresh`, a `--full-refresh` rebuild.
    Refresh,
}

/// First-sync duplicate detection without memory per key: while the keys' leading
/// column moves on in one direction, a key can repeat only within the run sharing
/// its leading value, which each candidate keeps (see `engine::order`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Order {
    pub last: Vec<String>,
    /// Orders still consistent with every key so far.
    #[serde(default)]
    pub candidates: Vec<OrderCandidate>,
    /// The keys went back once: duplicates are found with a set, rebuilt from the file.
    #[serde(default)]
    pub unordered: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderCandidate {
    /// Key columns, most significant first.
    pub columns: Vec<usize>,
    /// Per key column: 0 not seen moving yet, 1 ascending, -1 descending.
    pub dirs: Vec<i8>,
    /// The keys since the leading column last moved: a hash of the other columns'
    /// values of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run: Vec<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TableState {
    pub file: FileState,
    /// Where the sync of this table resumes; null when it is not under way.
    #[serde(default)]
    pub resume: Option<Resume>,
    /// The committed part of the journal of keys read (`.<table>.seen`); absent when
    /// this sync cannot delete anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_len: Option<Journal>,
    /// Records created before this Unix time are not synced (`initial_sync_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_since: Option<i64>,
    /// A `--full-refresh` rebuild in progress: the state of `<table>.csv.refresh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<FileState>,
    /// A replacement whose side file is durable and may not have been renamed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<Replace>,
    /// First-sync duplicate detection; see [`Order`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// Set by `repair`: the next sync rebuilds the table from scratch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rebuild: bool,
    /// When the last complete read of this table started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_complete_sync: Option<String>,
}

impl State {
    pub fn new(connector: &str) -> State {
        State {
            version: VERSION,
            connector: connector.to_string(),
            account: None,
            output: OutputOptions::default(),
            run: None,
            tables: BTreeMap::new(),
            definition: BTreeMap::new(),
            definition_source: None,
            upgraded: false,
        }
    }

    /// Reads `dir/state.json`; `None` if there is none. Unreadable is an error, never
    /// a restart. A state written by an older api2csv is brought up to date.
    pub fn load(dir: &Path) -> Result<Option<State>> {
        let path = dir.join(FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let bad = |detail: String| Error::State { path: path.clone(), detail };
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let version = serde_json::from_slice::<Versioned>(&bytes).map_err(|e| bad(e.to_string()))?.version;
        let mut state: State = match version {
            1 => v1::upgrade(&bytes).map_err(bad)?,
            VERSION => serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?,
            v => {
                return Err(bad(format!(
                    "version {v} is not supported (expected {VERSION}); is it from a newer api2csv?"
                )))
            }
        };
        if let Some(account) = &mut state.account {
            account.upgrade();
        }
        Ok(Some(state))
    }

    /// Replaces `dir/state.json` atomically and durably.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(FILE_NAME), &self.to_bytes())
    }

    /// A state this process serialized, read back.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<State, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("state serializes");
        bytes.push(b'\n');
        bytes
    }

    pub fn table(&mut self, name: &str) -> &mut TableState {
        self.tables.entry(name.to_string()).or_default()
    }
}

impl FileState {
    /// Whether the file holds no committed byte.
    pub fn is_empty(&self) -> bool {
        self.file_len == 0
    }

    /// `bytes` holding `rows` rows were appended: they are the new tail, and the
    /// whole file's CRC is combined with theirs.
    pub fn append_committed(&mut self, bytes: &[u8], rows: u64) {
        let mut tail = crc32fast::Hasher::new();
        tail.update(bytes);
        let mut whole = crc32fast::Hasher::new_with_initial_len(self.crc, self.file_len);
        whole.combine(&tail);
        self.tail_start = self.file_len;
        self.tail_crc = tail.finalize();
        self.file_len += bytes.len() as u64;
        self.rows += rows;
        self.crc = whole.finalize();
    }

    /// The names of the data columns, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(n, _)| n.as_str())
    }
}

impl TableState {
    /// The file appended to for `target`.
    pub fn file_mut(&mut self, target: Target) -> &mut FileState {
        match target {
            Target::Table => &mut self.file,
            Target::Refresh => self.refresh.get_or_insert_with(FileState::default),
        }
    }

    pub fn file_of(&self, target: Target) -> &FileState {
        match (target, &self.refresh) {
            (Target::Refresh, Some(r)) => r,
            _ => &self.file,
        }
    }

    /// Records that the side file of `kind` is complete and durable, holding `file`.
    pub fn begin_replace(&mut self, kind: ReplaceKind, file: FileState) {
        self.replace = Some(Replace { kind, file });
    }

    /// The rename happened: the target now holds what `replace` described.
    pub fn finish_replace(&mut self) {
        let Some(Replace { kind, file }) = self.replace.take() else { return };
        match kind {
            ReplaceKind::Widen | ReplaceKind::Compact => self.file = file,
            ReplaceKind::WidenRefresh => self.refresh = Some(file),
            ReplaceKind::Refresh => {
                self.file = file;
                self.refresh = None;
            }
        }
    }

    /// The side file is gone or damaged and the target still holds the old bytes.
    pub fn abandon_replace(&mut self) {
        self.replace = None;
    }

    /// Starts a `--full-refresh` rebuild of the table into its `.refresh` file.
    pub fn start_refresh(&mut self) {
        self.refresh = Some(FileState::default());
        self.order = None;
    }

    /// Forgets the table's file (set aside by `repair`): the next sync writes it anew.
    pub fn mark_rebuild(&mut self) {
        *self = TableState { rebuild: true, created_since: self.created_since, ..TableState::default() };
    }

    /// The table's read is over: no position, no journal.
    pub fn finish_read(&mut self, started_at: &str) {
        self.resume = None;
        self.seen_len = None;
        self.order = None;
        self.rebuild = false;
        self.last_complete_sync = Some(started_at.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> std::path::PathBuf {
        crate::store::fsio::test_dir(&format!("state-{name}"))
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let dir = tempdir("rt");
        assert_eq!(State::load(&dir).unwrap(), None);
        let mut s = State::new("mailerlite");
        s.table("subscriber").file.file_len = 42;
        s.table("subscriber").resume = Some(Resume::Confirm);
        s.save(&dir).unwrap();
        assert_eq!(State::load(&dir).unwrap(), Some(s));
        fs::write(dir.join(FILE_NAME), b"{\"version\": 2, \"conn").unwrap();
        let err = State::load(&dir).unwrap_err();
        assert_eq!(err.exit_status(), 2);
        assert!(err.to_string().starts_with("cannot use state file"), "{err}");
        fs::write(dir.join(FILE_NAME), br#"{"version": 9, "connector": "x"}"#).unwrap();
        assert!(State::load(&dir).unwrap_err().to_string().contains("newer api2csv"));
    }

    #[test]
    fn a_position_that_does_not_parse_is_an_error() {
        let dir = tempdir("badpos");
        let text = r#"{"version":2,"connector":"paligo","tables":{"users":{"file":{"file_len":0,"rows":0,"columns":[]},"resume":{"Read":{"Frobnicate":1}}}}}"#;
        fs::write(dir.join(FILE_NAME), text).unwrap();
        let err = State::load(&dir).unwrap_err();
        assert_eq!(err.exit_status(), 2, "{err}");
    }

    #[test]
    fn older_identities_are_read_with_their_port() {
        let load = |account: &str| {
            let dir = tempdir("legacy-id");
            let text = format!(r#"{{"version":2,"connector":"paligo","account":{account}}}"#);
            fs::write(dir.join(FILE_NAME), text).unwrap();
            State::load(&dir).unwrap().unwrap().account.unwrap()
        };
        let id = |account: &str| load(account).id;
        let url = r#""base_url":"http://127.0.0.1:8080/api/v2""#;
        // Written with the base URL that names the port: completed exactly.
        assert_eq!(id(&format!(r#"{{{url},"id":"user ann at 127.0.0.1"}}"#)).unwrap(), "user ann at 127.0.0.1:8080");
        assert_eq!(id(&format!(r#"{{{url},"id":"ann@127.0.0.1"}}"#)).unwrap(), "user ann at 127.0.0.1:8080");
        let default_port =
            r#"{"base_url":"https://Acme.paligoapp.com/api/v2","id":"user a@b.c at acme.paligoapp.com"}"#;
        assert_eq!(id(default_port).unwrap(), "user a@b.c at acme.paligoapp.com:443");
        // MailerLite without x-account_id recorded its host: no identity.
        assert_eq!(id(r#"{"base_url":"https://connect.mailerlite.com/api","id":"host connect.mailerlite.com"}"#), None);
        assert_eq!(id(r#"{"base_url":"x","id":"account 83510"}"#).unwrap(), "account 83510");
        assert_eq!(id(&format!(r#"{{{url},"id":"user ann at [::1]:9"}}"#)).unwrap(), "user ann at [::1]:9");

        // A URL that does not name the host: user and host compare, any port.
        let odd = load(r#"{"base_url":"https://elsewhere.example","id":"user ann at 127.0.0.1"}"#);
        let now = |id: &str| Account { base_url: String::new(), id: Some(id.into()) };
        assert!(odd.same_as(&now("user ann at 127.0.0.1:9090")));
        assert!(!odd.same_as(&now("user bob at 127.0.0.1:9090")));
        assert!(!odd.same_as(&now("user ann at 127.0.0.2:9090")));
        let full = load(&format!(r#"{{{url},"id":"user ann at 127.0.0.1"}}"#));
        assert!(full.same_as(&now("user ann at 127.0.0.1:8080")));
        assert!(!full.same_as(&now("user ann at 127.0.0.1:9090")));
        // What either side does not reveal is no evidence of another account.
        let none = Account { base_url: String::new(), id: None };
        assert!(none.same_as(&now("account 1")) && now("account 1").same_as(&none));
        assert!(!now("account 1").same_as(&now("account 2")));
    }

    #[test]
    fn replacements_apply_to_their_target() {
        let mut t = TableState::default();
        let new = FileState { file_len: 9, ..FileState::default() };
        t.begin_replace(ReplaceKind::Widen, new.clone());
        t.finish_replace();
        assert_eq!((t.file.clone(), t.replace.clone()), (new.clone(), None));
        t.start_refresh();
        let rebuilt = FileState { file_len: 20, ..FileState::default() };
        t.begin_replace(ReplaceKind::WidenRefresh, rebuilt.clone());
        t.finish_replace();
        assert_eq!(t.refresh, Some(rebuilt.clone()));
        t.begin_replace(ReplaceKind::Refresh, rebuilt.clone());
        t.finish_replace();
        assert_eq!((t.file.clone(), t.refresh.clone()), (rebuilt, None));
    }
}
