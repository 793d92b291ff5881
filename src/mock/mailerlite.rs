//! The MailerLite mock: `connect.mailerlite.com/api` as the fact sheet
//! (`shared/api/mailerlite.md`) describes it, with its cursor and page envelopes,
//! its filter defaults (campaigns default to `ready`, group members to `active`)
//! and an account generated lazily from `(seed, generation, index)`, so 200 000
//! subscribers cost no memory. `expected` and `mutations` tell tests what a
//! correct sync must end with, without going through HTTP.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::{splitmix64, MockApi, MockOptions, MockRequest, MockResponse};
pub use super::{Mutations, TableMutations};

/// The only API key the mock accepts, as `Authorization: Bearer <API_KEY>`.
pub const API_KEY: &str = "mock-mailerlite-key";
/// Every route lives under this path, so a client's base URL is `origin + BASE_PATH`.
pub const BASE_PATH: &str = "/api";
/// `limit` when none is given, and its silent cap.
pub const DEFAULT_LIMIT: usize = 25;
pub const MAX_LIMIT: usize = 100;
/// The table names `expected` and `mutations` know.
pub const TABLES: [&str; 5] = ["subscriber", "group", "group_subscriber", "field", "campaign"];
/// Generations above this are treated as this one (slot space is reserved for it).
pub const MAX_GENERATION: u32 = 1000;

const ACCOUNT_ID: u64 = 83510;
/// Subscriber ids are `SUBSCRIBER_BASE - slot * ID_STRIDE - jitter`, jitter < ID_STRIDE,
/// so they are 18 digits, strictly decreasing with the slot, and map back to it.
const SUBSCRIBER_BASE: u64 = 179_000_000_000_000_000;
const ID_STRIDE: u64 = 1_000_000_000;
const GROUP_BASE: u64 = 151_877_204_465_977_130;
const CAMPAIGN_BASE: u64 = 162_011_934_870_619_202;
const EMAIL_BASE: u64 = 162_011_934_889_493_571;
const CAMPAIGNS: usize = 30;
/// 2019-01-01 and 2025-01-01 UTC: generation 1 was created between them.
const T0: i64 = 1_546_300_800;
const T_GEN1: i64 = 1_735_689_600;
const DAY: i64 = 86_400;

/// Domain-separation tags for the hash streams.
const TAG_LIFE: u64 = 1;
const TAG_CONTENT: u64 = 2;
const TAG_EVENT: u64 = 3;
const TAG_TIME: u64 = 4;
const TAG_ID: u64 = 5;
const TAG_GROUP: u64 = 6;
const TAG_CAMPAIGN: u64 = 7;

// ---------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------

/// A splitmix64 stream keyed by a tuple, so every record draws the same values
/// whatever order it is generated in.
struct Draw(u64);

impl Draw {
    fn new(parts: &[u64]) -> Draw {
        let mut state = 0x4d61_696c_6572_4c74;
        for &part in parts {
            state ^= part;
            state = splitmix64(&mut state);
        }
        Draw(state)
    }

    fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------
// Wire formats of scalar values
// ---------------------------------------------------------------------------

/// An id sent as a JSON string of digits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Id(u64);

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // By hand: `collect_str` goes through `fmt`, which dominated page time.
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = self.0;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        s.serialize_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"))
    }
}

/// Unix seconds sent as `YYYY-MM-DD HH:MM:SS` (UTC).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp(i64);

impl Stamp {
    /// The 19 bytes of `YYYY-MM-DD HH:MM:SS`, formatted by hand because this
    /// runs four times per subscriber and `fmt` dominated page time.
    fn text(&self) -> [u8; 19] {
        let (days, secs) = (self.0.div_euclid(DAY), self.0.rem_euclid(DAY) as u32);
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00 00:00:00";
        let parts = [(0, 4, year as u32), (5, 2, month), (8, 2, day)];
        let clock = [(11, 2, secs / 3600), (14, 2, secs / 60 % 60), (17, 2, secs % 60)];
        for (at, width, mut value) in parts.into_iter().chain(clock) {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        out
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.text()).expect("ASCII digits"))
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.text()).expect("ASCII digits"))
    }
}

/// Unix seconds as the ISO form with microseconds that raw models embedded in
/// campaigns use: `2023-09-23T08:12:28.000000Z`.
#[derive(Clone, Copy, Debug)]
struct IsoStamp(i64);

impl Serialize for IsoStamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let plain = Stamp(self.0).to_string().replace(' ', "T");
        s.collect_str(&format_args!("{plain}.000000Z"))
    }
}

/// A number in hundredths, sent as an integer literal when it is whole (`0`, `100`),
/// as the real API does, and as a decimal otherwise (`64.29`).
#[derive(Clone, Copy, Debug)]
struct Hundredths(u64);

impl Serialize for Hundredths {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(100) {
            s.serialize_u64(self.0 / 100)
        } else {
            s.serialize_f64(self.0 as f64 / 100.0)
        }
    }
}

/// A fraction in basis points, sent as `{"float": 0.4216, "string": "42.16%"}`;
/// `float` is an integer literal (`0`, `1`) when whole.
#[derive(Clone, Copy, Debug)]
struct Rate(u64);

impl Rate {
    fn of(part: u64, whole: u64) -> Rate {
        Rate(ten_thousandths(part, whole))
    }

    fn percent(&self) -> String {
        let (int, frac) = (self.0 / 100, self.0 % 100);
        match frac {
            0 => format!("{int}%"),
            f if f % 10 == 0 => format!("{int}.{}%", f / 10),
            f => format!("{int}.{f:02}%"),
        }
    }

    /// The bare fraction as text, as raw group models carry it: `"0.4268"`.
    fn fraction_text(&self) -> String {
        (self.0 as f64 / 10_000.0).to_string()
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        if self.0.is_multiple_of(10_000) {
            map.serialize_entry("float", &(self.0 / 10_000))?;
        } else {
            map.serialize_entry("float", &(self.0 as f64 / 10_000.0))?;
        }
        map.serialize_entry("string", &self.percent())?;
        map.end()
    }
}

/// Subscriber `fields`: an object whose keys depend on the account's custom fields.
struct FieldValues<'a>(&'a [(&'a str, Option<Cow<'a, str>>)]);

impl Serialize for FieldValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

// ---------------------------------------------------------------------------
// Sample values, hard ones included on purpose
// ---------------------------------------------------------------------------

const FIRST_NAMES: [&str; 16] = [
    "Maria",
    "Jonas",
    "Sofia",
    "Liam",
    "Emma",
    "Noah",
    "Olivia",
    "Lukas",
    "Αθηνά",
    "Γιώργος",
    "陈伟",
    "さくら",
    "محمد",
    "Fatima",
    "José",
    "Zoë",
];
const LAST_NAMES: [&str; 12] = [
    "Keller",
    "Müller",
    "Smith",
    "O'Brien",
    "Nguyen",
    "Papadopoulos",
    "王",
    "田中",
    "الحسن",
    "García",
    "van der Berg",
    "Kowalski",
];
const EMAIL_NAMES: [&str; 8] = ["maria", "jonas", "sofia", "liam", "emma", "noah", "olivia", "lukas"];
const COMPANIES: [&str; 7] =
    ["Northwind GmbH", "Acme Inc.", "Globex", "Initech", "Umbrella Corp", "Contoso Ltd.", "Wayne Enterprises"];
const PLACES: [(&str, &str); 7] = [
    ("Germany", "Leipzig"),
    ("Greece", "Αθήνα"),
    ("Japan", "東京"),
    ("Egypt", "القاهرة"),
    ("United States", "New York"),
    ("France", "Paris"),
    ("Brazil", "São Paulo"),
];
const STATES: [&str; 3] = ["CA", "NY", "Bavaria"];
const PLANS: [&str; 3] = ["free", "pro", "business"];
const SOURCES: [&str; 3] = ["api", "import", "manual"];
/// Values a CSV writer or a spreadsheet can get wrong; `None` is a JSON null.
/// Index `LONG` stands for a 10 KB string built once per account.
const TRICKY: [Option<&str>; 16] = [
    Some("O\"Brien \"The Boss\" Ltd"),
    Some("Smith, Jones, and Partners"),
    Some("line one\r\nline two"),
    Some("first\nsecond\n"),
    Some("🎉 Party Supplies 🥳"),
    Some("Ελληνική Εταιρεία"),
    Some("株式会社東京"),
    Some("شركة القاهرة"),
    Some("=SUM(A1:A2)"),
    Some("+49 30 1234567"),
    Some("-5 Discount"),
    Some("@handle"),
    Some(""),
    Some("  padded both sides  "),
    None,
    Some("LONG"),
];
const LONG: usize = 15;
const GROUP_NAMES: [&str; 12] = [
    "Newsletter",
    "VIP, Customers",
    "Ελληνικά",
    "=Leads",
    "Kunden \"Premium\"",
    "Webinar 2024",
    "東京 subscribers",
    "  Spaced group  ",
    "عملاء",
    "Beta testers 🚀",
    "+Partners",
    "-Churned",
];
const CAMPAIGN_NAMES: [&str; 10] = [
    "October product update",
    "Sale: 50% off, today only!",
    "Ελληνικό newsletter",
    "=HYPERLINK(\"http://example.org\")",
    "Line one\r\nLine two",
    "  Spaced subject  ",
    "🎉 Launch day",
    "東京からのお知らせ",
    "نشرة إخبارية",
    "Weekly digest",
];

// ---------------------------------------------------------------------------
// The account model
// ---------------------------------------------------------------------------

/// The five subscriber statuses, in the order `filter[status]` documents them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Active,
    Unsubscribed,
    Unconfirmed,
    Bounced,
    Junk,
}

impl Status {
    const ALL: [Status; 5] = [Status::Active, Status::Unsubscribed, Status::Unconfirmed, Status::Bounced, Status::Junk];

    fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Unsubscribed => "unsubscribed",
            Status::Unconfirmed => "unconfirmed",
            Status::Bounced => "bounced",
            Status::Junk => "junk",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Mostly active, as in a real list.
    fn draw(d: &mut Draw) -> Status {
        match d.below(100) {
            0..=79 => Status::Active,
            80..=87 => Status::Unsubscribed,
            88..=92 => Status::Unconfirmed,
            93..=96 => Status::Bounced,
            _ => Status::Junk,
        }
    }
}

/// The groups a subscriber belongs to (at most a handful).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Memberships {
    groups: [u16; 6],
    len: u8,
}

impl Memberships {
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.groups[..self.len as usize].iter().map(|&g| g as usize)
    }

    fn contains(&self, group: usize) -> bool {
        self.iter().any(|g| g == group)
    }

    fn toggle(&mut self, group: usize) {
        let found = self.iter().position(|g| g == group);
        if let Some(at) = found {
            self.groups.copy_within(at + 1..self.len as usize, at);
            self.len -= 1;
        } else if (self.len as usize) < self.groups.len() {
            self.groups[self.len as usize] = group as u16;
            self.len += 1;
        }
    }

    fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let mut kept = Memberships::default();
        for g in self.iter().filter(|&g| keep(g)) {
            kept.toggle(g);
        }
        *self = kept;
    }
}

/// What the generations did to one subscriber slot so far.
#[derive(Clone, Copy, Debug)]
struct Life {
    born: u32,
    status: Status,
    /// Number of content updates; each one changes `plan_tier`.
    version: u32,
    /// Generation of the last update or status change, 0 when none.
    changed: u32,
    /// Generation that unsubscribed this subscriber, 0 when none did.
    unsubscribed: u32,
    groups: Memberships,
}

/// A custom or default field of the account.
#[derive(Serialize, Clone, Debug)]
struct Field {
    id: Id,
    name: &'static str,
    key: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    is_default: bool,
    used_in_automations: bool,
}

const DEFAULT_FIELDS: [(&str, &str); 8] = [
    ("Name", "name"),
    ("Last name", "last_name"),
    ("Company", "company"),
    ("Country", "country"),
    ("City", "city"),
    ("Phone", "phone"),
    ("State", "state"),
    ("Zip", "z_i_p"),
];
/// Custom fields: (name, key, type, first generation that has it).
const CUSTOM_FIELDS: [(&str, &str, &str, u32); 4] = [
    ("Plan tier", "plan_tier", "text", 1),
    ("Score", "score", "number", 1),
    ("Birthday", "birthday", "date", 1),
    ("Loyalty level", "loyalty_level", "text", 2),
];

fn fields_of(generation: u32) -> Vec<Field> {
    let defaults = DEFAULT_FIELDS.iter().enumerate().map(|(i, &(name, key))| Field {
        id: Id(i as u64 + 1),
        name,
        key,
        kind: "text",
        is_default: true,
        used_in_automations: false,
    });
    let custom = CUSTOM_FIELDS.iter().enumerate().filter(|f| f.1 .3 <= generation).map(|(i, &(name, key, kind, _))| {
        Field { id: Id(947_151 + i as u64), name, key, kind, is_default: false, used_in_automations: i == 0 }
    });
    defaults.chain(custom).collect()
}

/// A group, with counts computed from the members at this generation.
#[derive(Serialize, Clone, Debug)]
struct Group {
    id: Id,
    name: String,
    active_count: u64,
    sent_count: u64,
    opens_count: u64,
    open_rate: Rate,
    clicks_count: u64,
    click_rate: Rate,
    unsubscribed_count: u64,
    unconfirmed_count: u64,
    bounced_count: u64,
    junk_count: u64,
    created_at: Stamp,
    #[serde(skip)]
    alive: bool,
}

impl Group {
    fn count(&mut self, status: Status) {
        let counter = match status {
            Status::Active => &mut self.active_count,
            Status::Unsubscribed => &mut self.unsubscribed_count,
            Status::Unconfirmed => &mut self.unconfirmed_count,
            Status::Bounced => &mut self.bounced_count,
            Status::Junk => &mut self.junk_count,
        };
        *counter += 1;
    }
}

/// Time of the events of generation `g` (>= 2): one week apart after generation 1.
fn generation_time(g: u32) -> i64 {
    T_GEN1 + i64::from(g - 1) * 7 * DAY
}

// ---------------------------------------------------------------------------
// Campaigns: a few dozen, built whole at start; key order is the real one (§3e)
// ---------------------------------------------------------------------------

#[derive(Serialize, Clone, Debug)]
struct Campaign {
    id: Id,
    account_id: Id,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    missing_data: Vec<&'static str>,
    settings: Settings,
    filter: Vec<Vec<FilterRule>>,
    filter_for_humans: Vec<Vec<String>>,
    delivery_schedule: Option<&'static str>,
    language_id: &'static str,
    language: Language,
    created_at: Stamp,
    updated_at: Stamp,
    scheduled_for: Option<Stamp>,
    queued_at: Option<Stamp>,
    started_at: Option<Stamp>,
    finished_at: Option<Stamp>,
    stopped_at: Option<Stamp>,
    default_email_id: Id,
    emails: Vec<Email>,
    used_in_automations: bool,
    type_for_humans: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<Stats>,
    is_stopped: bool,
    has_winner: Option<bool>,
    winner_version_for_human: Option<&'static str>,
    winner_sending_time_for_humans: Option<&'static str>,
    winner_selected_manually_at: Option<Stamp>,
    can: Can,
    uses_ecommerce: bool,
    ecommerce_stats: Option<()>,
    uses_survey: bool,
    can_be_scheduled: bool,
    is_smart_sending_index_option_finished: bool,
    is_applied_for_smart_sending_index_option: bool,
    warnings: Vec<&'static str>,
    next_step: Option<&'static str>,
    initial_created_at: Option<Stamp>,
    is_currently_sending_out: bool,
    can_be_copied: bool,
    has_basic_filter: bool,
    basic_filter_for_humans: BasicFilter,
    is_eligible_for_sending: bool,
    needs_repair: bool,
}

#[derive(Serialize, Clone, Debug)]
struct Settings {
    track_opens: bool,
    use_google_analytics: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ecommerce_tracking: Option<bool>,
}

/// `{"operator": "in_any", "args": ["groups", ["<id>", …]]}`.
#[derive(Serialize, Clone, Debug)]
struct FilterRule {
    operator: &'static str,
    args: (&'static str, Vec<Id>),
}

#[derive(Serialize, Clone, Copy, Debug)]
struct Language {
    id: &'static str,
    shortcode: &'static str,
    iso639: &'static str,
    name: &'static str,
    direction: &'static str,
}

const LANGUAGES: [Language; 3] = [
    Language { id: "4", shortcode: "en", iso639: "en-US", name: "English", direction: "ltr" },
    Language { id: "7", shortcode: "de", iso639: "de-DE", name: "German", direction: "ltr" },
    Language { id: "2", shortcode: "ar", iso639: "ar-SA", name: "Arabic", direction: "rtl" },
];

#[derive(Serialize, Clone, Debug)]
struct Email {
    id: Id,
    account_id: Id,
    emailable_id: Id,
    emailable_type: &'static str,
    #[serde(rename = "type")]
    kind: Option<&'static str>,
    from: &'static str,
    from_name: &'static str,
    reply_to: &'static str,
    name: Option<&'static str>,
    subject: String,
    plain_text: String,
    screenshot_url: String,
    generate_screenshot_timestamp: Option<Stamp>,
    preview_url: String,
    created_at: Stamp,
    updated_at: Stamp,
    is_designed: bool,
    /// A number here, while the campaign's `language_id` is a string.
    language_id: u64,
    language: Language,
    is_winner: bool,
    stats: Stats,
    send_after: Option<Stamp>,
    track_opens: bool,
    uses_survey: bool,
    uses_quiz: bool,
    preheader: Option<&'static str>,
}

/// Email stats; the campaign-level copy lacks the `forward_rate` and social keys.
#[derive(Serialize, Clone, Debug)]
struct Stats {
    sent: u64,
    opens_count: u64,
    unique_opens_count: u64,
    open_rate: Rate,
    clicks_count: u64,
    unique_clicks_count: u64,
    click_rate: Rate,
    unsubscribes_count: u64,
    unsubscribe_rate: Rate,
    spam_count: u64,
    spam_rate: Rate,
    hard_bounces_count: u64,
    hard_bounce_rate: Rate,
    soft_bounces_count: u64,
    soft_bounce_rate: Rate,
    forwards_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    forward_rate: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    social_interactions_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    social_interaction_rate: Option<Rate>,
    click_to_open_rate: Rate,
}

impl Stats {
    /// Stats of an email sent to `sent` recipients (all zero for drafts).
    fn draw(d: &mut Draw, sent: u64) -> Stats {
        let unique_opens = d.below(sent + 1);
        let opens = unique_opens + d.below(unique_opens / 4 + 1);
        let unique_clicks = d.below(unique_opens + 1);
        let clicks = unique_clicks + d.below(unique_clicks / 4 + 1);
        let unsubscribes = d.below(sent / 50 + 1);
        let hard = d.below(sent / 100 + 1);
        let soft = d.below(sent / 100 + 1);
        Stats {
            sent,
            opens_count: opens,
            unique_opens_count: unique_opens,
            open_rate: Rate::of(unique_opens, sent),
            clicks_count: clicks,
            unique_clicks_count: unique_clicks,
            click_rate: Rate::of(unique_clicks, sent),
            unsubscribes_count: unsubscribes,
            unsubscribe_rate: Rate::of(unsubscribes, sent),
            spam_count: 0,
            spam_rate: Rate(0),
            hard_bounces_count: hard,
            hard_bounce_rate: Rate::of(hard, sent),
            soft_bounces_count: soft,
            soft_bounce_rate: Rate::of(soft, sent),
            forwards_count: 0,
            forward_rate: Some(Rate(0)),
            social_interactions_count: Some(0),
            social_interaction_rate: Some(Rate(0)),
            click_to_open_rate: Rate::of(unique_clicks, unique_opens),
        }
    }

    fn for_campaign(&self) -> Stats {
        Stats { forward_rate: None, social_interactions_count: None, social_interaction_rate: None, ..self.clone() }
    }
}

#[derive(Serialize, Clone, Debug)]
struct Can {
    update: bool,
    delete: bool,
    send: bool,
    copy: bool,
    resend: bool,
}

#[derive(Serialize, Clone, Debug)]
struct BasicFilter {
    included_groups: Vec<RawGroup>,
    excluded_groups: Vec<RawGroup>,
    included_segments: Vec<RawGroup>,
    excluded_segments: Vec<RawGroup>,
    all_active_subscribers: bool,
}

/// The internal group model embedded in campaigns: numeric ids above 2^53, ISO
/// times with microseconds, rates as strings. A snapshot from when the campaign
/// was made, so later changes to the group do not touch it.
#[derive(Serialize, Clone, Debug)]
struct RawGroup {
    id: u64,
    account_id: u64,
    created_at: IsoStamp,
    updated_at: IsoStamp,
    deleted_at: Option<IsoStamp>,
    name: String,
    active_count: u64,
    open_rate: String,
    click_rate: String,
    serial_no: u64,
    sent_count: u64,
    opens_count: u64,
    clicks_count: u64,
    unsubscribed_count: u64,
    unconfirmed_count: u64,
    bounced_count: u64,
    junk_count: u64,
}

/// Status of campaign `c` (0 = newest) at generation 1: 4 ready, 8 drafts, the rest sent.
fn initial_campaign_status(c: usize) -> &'static str {
    match c {
        0..=3 => "ready",
        4..=11 => "draft",
        _ => "sent",
    }
}

/// The generation (>= 2) that sends draft `c`, one draft per generation.
fn sent_in_generation(c: usize) -> Option<u32> {
    (4..=11).contains(&c).then(|| c as u32 - 2)
}

// ---------------------------------------------------------------------------
// The account
// ---------------------------------------------------------------------------

/// The MailerLite mock for one `(seed, records, generation)`.
pub struct MailerLite {
    seed: u64,
    generation: u32,
    records: u64,
    /// Subscribers added per generation after the first.
    added_per_generation: u64,
    /// Slot of the newest generation-1 subscriber; later additions take the
    /// slots just below it, so their ids are higher and they are listed first.
    first_slot: u64,
    fields: Vec<Field>,
    groups: Vec<Group>,
    campaigns: Vec<Campaign>,
    /// Present subscribers per status, for `limit=0`.
    status_totals: [u64; 5],
    long_text: String,
}

impl MailerLite {
    /// Builds the account: groups, fields and campaigns now, subscribers on demand.
    pub fn new(opts: &MockOptions) -> MailerLite {
        let records = opts.records as u64;
        let added_per_generation = (records / 200).max(1);
        let mut api = MailerLite {
            seed: opts.seed,
            generation: opts.generation.clamp(1, MAX_GENERATION),
            records,
            added_per_generation,
            first_slot: added_per_generation * u64::from(MAX_GENERATION),
            fields: Vec::new(),
            groups: Vec::new(),
            campaigns: Vec::new(),
            status_totals: [0; 5],
            long_text: long_text(),
        };
        api.fields = fields_of(api.generation);
        api.groups = api.build_groups();
        api.count_members();
        api.campaigns = (0..CAMPAIGNS).map(|c| api.build_campaign(c)).collect();
        api
    }

    /// Slots that can hold a subscriber at this generation, newest first.
    fn slots(&self) -> std::ops::Range<u64> {
        let lowest = self.first_slot - u64::from(self.generation - 1) * self.added_per_generation;
        lowest..self.first_slot + self.records
    }

    /// The generation whose additions include `slot`.
    fn born(&self, slot: u64) -> u32 {
        if slot >= self.first_slot {
            1
        } else {
            ((self.first_slot - 1 - slot) / self.added_per_generation) as u32 + 2
        }
    }

    fn subscriber_id(&self, slot: u64) -> u64 {
        let jitter = Draw::new(&[self.seed, TAG_ID, slot]).below(ID_STRIDE);
        SUBSCRIBER_BASE - slot * ID_STRIDE - jitter
    }

    fn group_alive(&self, group: usize, generation: u32) -> bool {
        // From generation 3 on, the last group is deleted.
        !(generation >= 3 && group + 1 == self.group_count())
    }

    fn group_count(&self) -> usize {
        (self.records / 1000).clamp(3, 50) as usize
    }

    /// Replays the generations on one slot; `None` when it holds no subscriber now.
    fn life(&self, slot: u64) -> Option<Life> {
        if !self.slots().contains(&slot) {
            return None;
        }
        let born = self.born(slot);
        let mut d = Draw::new(&[self.seed, TAG_LIFE, slot]);
        let mut life = Life {
            born,
            status: Status::draw(&mut d),
            version: 0,
            changed: 0,
            unsubscribed: 0,
            groups: self.initial_groups(&mut d),
        };
        for g in born + 1..=self.generation {
            if !self.apply_event(&mut life, g, slot) {
                return None;
            }
        }
        let generation = self.generation;
        life.groups.retain(|group| self.group_alive(group, generation));
        Some(life)
    }

    fn initial_groups(&self, d: &mut Draw) -> Memberships {
        let wanted = match d.below(100) {
            0..=24 => 0,
            25..=64 => 1,
            65..=89 => 2,
            _ => 3,
        };
        let mut groups = Memberships::default();
        while (groups.len as usize) < wanted {
            let group = d.below(self.group_count() as u64) as usize;
            if !groups.contains(group) {
                groups.toggle(group);
            }
        }
        groups
    }

    /// What generation `g` does to a subscriber; false when it deletes it.
    fn apply_event(&self, life: &mut Life, g: u32, slot: u64) -> bool {
        let mut e = Draw::new(&[self.seed, TAG_EVENT, u64::from(g), slot]);
        match e.below(1000) {
            0..=4 => return false,
            5..=24 => {
                life.version += 1;
                life.changed = g;
            }
            25..=39 if life.status == Status::Active => {
                life.status = Status::Unsubscribed;
                life.unsubscribed = g;
                life.changed = g;
            }
            40..=59 => {
                let group = e.below(self.group_count() as u64) as usize;
                if self.group_alive(group, g) {
                    life.groups.toggle(group);
                }
            }
            _ => {}
        }
        true
    }

    fn event_time(&self, g: u32, slot: u64) -> i64 {
        generation_time(g) - Draw::new(&[self.seed, TAG_TIME, u64::from(g), slot]).below(DAY as u64) as i64
    }

    fn created_at(&self, slot: u64, born: u32, d: &mut Draw) -> i64 {
        if born == 1 {
            let span = (T_GEN1 - DAY - T0) as u64;
            let step = (span / self.records.max(1)).max(1);
            let newest = T_GEN1 - DAY;
            newest - ((slot - self.first_slot) * step + d.below(step)) as i64
        } else {
            let batch_start = self.first_slot - u64::from(born - 1) * self.added_per_generation;
            let offset = (slot - batch_start) as i64;
            generation_time(born) - 3 * DAY - offset * 5 - d.below(5) as i64
        }
    }

    fn tricky(&self, index: usize) -> Option<Cow<'_, str>> {
        match TRICKY[index] {
            _ if index == LONG => Some(Cow::Borrowed(self.long_text.as_str())),
            value => value.map(Cow::Borrowed),
        }
    }
}

/// A 10 KB text of words and punctuation: long cells must survive unchanged.
fn long_text() -> String {
    let mut text = String::with_capacity(10_300);
    while text.len() < 10_240 {
        text.push_str("Lorem ipsum, dolor \"sit\" amet; ");
    }
    text.truncate(10_240);
    text
}

// ---------------------------------------------------------------------------
// Subscribers, generated one at a time
// ---------------------------------------------------------------------------

/// A subscriber as `/subscribers` sends it, keys in the real order (§3a).
#[derive(Serialize)]
struct Subscriber<'a> {
    id: Id,
    email: String,
    status: &'static str,
    source: &'static str,
    sent: u64,
    opens_count: u64,
    clicks_count: u64,
    open_rate: Hundredths,
    click_rate: Hundredths,
    ip_address: Option<String>,
    subscribed_at: Stamp,
    unsubscribed_at: Option<Stamp>,
    created_at: Stamp,
    updated_at: Stamp,
    fields: FieldValues<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<&'a Group>>,
    opted_in_at: Option<Stamp>,
    optin_ip: Option<String>,
}

/// Hundredths of a percent of `part` in `whole`, 0 when nothing was sent.
fn percent_hundredths(part: u64, whole: u64) -> Hundredths {
    Hundredths(ten_thousandths(part, whole))
}

/// `part / whole` in units of 1/10 000, rounded; 0 when `whole` is 0.
fn ten_thousandths(part: u64, whole: u64) -> u64 {
    (part * 10_000 + whole / 2).checked_div(whole).unwrap_or(0)
}

impl MailerLite {
    /// Appends the JSON of the subscriber in `slot` to `out`.
    fn write_subscriber(&self, out: &mut Vec<u8>, slot: u64, life: &Life, with_groups: bool) {
        let mut d = Draw::new(&[self.seed, TAG_CONTENT, slot]);
        let created = self.created_at(slot, life.born, &mut d);
        let first_update = match life.born {
            1 => created + d.below((T_GEN1 - created) as u64) as i64,
            _ => created,
        };
        let updated = match life.changed {
            0 => first_update,
            g => self.event_time(g, slot),
        };
        let unsubscribed_at = (life.status == Status::Unsubscribed).then(|| match life.unsubscribed {
            0 => Stamp(first_update),
            g => Stamp(self.event_time(g, slot)),
        });
        let email = format!("{}.{slot}@example.org", d.pick(&EMAIL_NAMES));
        let values = self.field_values(slot, life, &mut d);
        let (sent, source) = (d.below(61), d.pick(&SOURCES));
        let opens = d.below(sent + 1);
        let clicks = d.below(opens + 1);
        let ip_address = d.chance(20).then(|| format!("203.0.113.{}", d.below(255)));
        let opted_in_at = d.chance(15).then(|| Stamp(created + 60 + d.below(600) as i64));
        let groups = with_groups.then(|| life.groups.iter().map(|g| &self.groups[g]).collect());
        let subscriber = Subscriber {
            id: Id(self.subscriber_id(slot)),
            email,
            status: life.status.as_str(),
            source,
            sent,
            opens_count: opens,
            clicks_count: clicks,
            open_rate: percent_hundredths(opens, sent),
            click_rate: percent_hundredths(clicks, sent),
            optin_ip: opted_in_at.and(ip_address.clone()),
            ip_address,
            subscribed_at: Stamp(created),
            unsubscribed_at,
            created_at: Stamp(created),
            updated_at: Stamp(updated),
            fields: FieldValues(&values),
            groups,
            opted_in_at,
        };
        serde_json::to_writer(out, &subscriber).expect("writing to a Vec cannot fail");
    }

    /// The `fields` object: the eight defaults, then one key per custom field.
    fn field_values(&self, slot: u64, life: &Life, d: &mut Draw) -> Vec<(&'static str, Option<Cow<'_, str>>)> {
        let name = d.pick(&FIRST_NAMES);
        let last_name = d.pick(&LAST_NAMES);
        let company = self.company(slot, d);
        let (country, city) = d.pick(&PLACES);
        let phone = d.chance(30).then(|| format!("+49 30 {:07}", d.below(10_000_000)));
        let state = d.chance(20).then(|| d.pick(&STATES));
        let zip = d.chance(70).then(|| format!("{:05}", d.below(100_000)));
        let plan = d.below(4) as usize;
        let plan_tier = match life.version {
            0 => PLANS.get(plan).copied(),
            v => Some(PLANS[(plan + v as usize) % PLANS.len()]),
        };
        let score = d.chance(60).then(|| d.below(101).to_string());
        let birthday =
            d.chance(40).then(|| format!("{}-{:02}-{:02}", 1950 + d.below(55), 1 + d.below(12), 1 + d.below(28)));
        let mut values = vec![
            ("name", Some(Cow::Borrowed(name))),
            ("last_name", Some(Cow::Borrowed(last_name))),
            ("company", company),
            ("country", Some(Cow::Borrowed(country))),
            ("city", Some(Cow::Borrowed(city))),
            ("phone", phone.map(Cow::Owned)),
            ("state", state.map(Cow::Borrowed)),
            ("z_i_p", zip.map(Cow::Owned)),
            ("plan_tier", plan_tier.map(Cow::Borrowed)),
            ("score", score.map(Cow::Owned)),
            ("birthday", birthday.map(Cow::Owned)),
        ];
        // Fields added by later generations exist, empty, on every subscriber.
        for field in &self.fields[values.len()..] {
            values.push((field.key, None));
        }
        values
    }

    /// The first generation-1 subscribers get one hard value each, so even a
    /// small account has them all; after that about one in thirty does.
    fn company(&self, slot: u64, d: &mut Draw) -> Option<Cow<'_, str>> {
        let company = d.pick(&COMPANIES);
        let hard = d.below(TRICKY.len() as u64 * 30) as usize;
        match slot.checked_sub(self.first_slot) {
            Some(position) if position < TRICKY.len() as u64 => self.tricky(position as usize),
            _ if hard < TRICKY.len() => self.tricky(hard),
            _ => Some(Cow::Borrowed(company)),
        }
    }
}

// ---------------------------------------------------------------------------
// Groups and campaigns, built whole at start
// ---------------------------------------------------------------------------

impl MailerLite {
    fn group_id(&self, group: usize) -> u64 {
        let jitter = Draw::new(&[self.seed, TAG_ID, u64::MAX - group as u64]).below(1_000_000);
        GROUP_BASE + group as u64 * ID_STRIDE + jitter
    }

    /// The name a group was created with; group 0 is renamed in generation 2.
    fn group_name(&self, group: usize, generation: u32) -> String {
        let base = GROUP_NAMES[group % GROUP_NAMES.len()];
        match (group, group / GROUP_NAMES.len()) {
            (0, _) if generation >= 2 => format!("{base} (weekly)"),
            (_, 0) => base.to_string(),
            (_, round) => format!("{base} {round}"),
        }
    }

    fn build_groups(&self) -> Vec<Group> {
        (0..self.group_count()).map(|g| self.build_group(g)).collect()
    }

    /// A group with its own send statistics; member counts come later.
    fn build_group(&self, group: usize) -> Group {
        let mut d = Draw::new(&[self.seed, TAG_GROUP, group as u64]);
        let sent_count = if group % 5 == 2 { 0 } else { 1 + d.below(40) };
        let opens_count = d.below(5000) * sent_count.min(1);
        let clicks_count = d.below(opens_count + 1);
        let open_rate = match (sent_count, group % 7) {
            (0, _) => Rate(0),
            (_, 3) => Rate(10_000),
            _ => Rate(d.below(10_001)),
        };
        Group {
            id: Id(self.group_id(group)),
            name: self.group_name(group, self.generation),
            active_count: 0,
            sent_count,
            opens_count,
            open_rate,
            clicks_count,
            click_rate: Rate(d.below(open_rate.0 + 1)),
            unsubscribed_count: 0,
            unconfirmed_count: 0,
            bounced_count: 0,
            junk_count: 0,
            created_at: Stamp(T0 + group as i64 * 30 * DAY + d.below(DAY as u64) as i64),
            alive: self.group_alive(group, self.generation),
        }
    }

    /// One pass over every subscriber, for the group counts and `limit=0` totals.
    fn count_members(&mut self) {
        for slot in self.slots() {
            let Some(life) = self.life(slot) else {
                continue;
            };
            self.status_totals[life.status as usize] += 1;
            for group in life.groups.iter() {
                self.groups[group].count(life.status);
            }
        }
    }

    fn build_campaign(&self, c: usize) -> Campaign {
        let mut d = Draw::new(&[self.seed, TAG_CAMPAIGN, c as u64]);
        let id = CAMPAIGN_BASE - c as u64 * ID_STRIDE - d.below(1_000_000);
        let created = T_GEN1 - (c as i64 + 1) * 5 * DAY - d.below(DAY as u64) as i64;
        let sent_generation = sent_in_generation(c).filter(|&g| g <= self.generation);
        let status = if sent_generation.is_some() { "sent" } else { initial_campaign_status(c) };
        let (kind, type_for_humans) = match c {
            14 => ("ab", "A/B split"),
            20 => ("resend", "Auto resend"),
            _ => ("regular", "Regular"),
        };
        let name = match c / CAMPAIGN_NAMES.len() {
            0 => CAMPAIGN_NAMES[c].to_string(),
            round => format!("{} #{round}", CAMPAIGN_NAMES[c % CAMPAIGN_NAMES.len()]),
        };
        let language = match c % 7 {
            3 => LANGUAGES[1],
            4 => LANGUAGES[2],
            _ => LANGUAGES[0],
        };
        let groups = self.campaign_groups(c, &mut d);
        let times = CampaignTimes::new(status, created, sent_generation, c, &mut d);
        let recipients = 50 + d.below(2000);
        let emails = self.campaign_emails(c, id, &name, status, language, &times, recipients);
        let sent = status == "sent";
        Campaign {
            id: Id(id),
            account_id: Id(ACCOUNT_ID),
            name,
            kind,
            status,
            missing_data: if status == "draft" && c == 6 { vec!["content"] } else { Vec::new() },
            settings: Settings {
                track_opens: true,
                use_google_analytics: c.is_multiple_of(3),
                ecommerce_tracking: (c % 9 != 4).then_some(false),
            },
            filter: groups.filter(),
            filter_for_humans: groups.for_humans(),
            delivery_schedule: match status {
                "sent" if c.is_multiple_of(2) => Some("instant"),
                "sent" | "ready" => Some("scheduled"),
                _ => None,
            },
            language_id: language.id,
            language,
            created_at: Stamp(created),
            updated_at: Stamp(times.updated),
            scheduled_for: times.scheduled.map(Stamp),
            queued_at: times.started.map(|t| Stamp(t - 1)),
            started_at: times.started.map(Stamp),
            finished_at: times.finished.map(Stamp),
            stopped_at: None,
            default_email_id: emails[0].id,
            stats: sent.then(|| emails[0].stats.for_campaign()),
            emails,
            used_in_automations: false,
            type_for_humans,
            is_stopped: false,
            has_winner: (kind == "ab").then_some(sent),
            winner_version_for_human: (kind == "ab" && sent).then_some("A"),
            winner_sending_time_for_humans: (kind == "ab").then_some("4 hours"),
            winner_selected_manually_at: None,
            can: Can {
                update: status != "sent",
                delete: status != "ready",
                send: status == "draft",
                copy: true,
                resend: sent,
            },
            uses_ecommerce: false,
            ecommerce_stats: None,
            uses_survey: false,
            can_be_scheduled: status == "draft" && c != 6,
            is_smart_sending_index_option_finished: false,
            is_applied_for_smart_sending_index_option: false,
            warnings: Vec::new(),
            next_step: None,
            initial_created_at: None,
            is_currently_sending_out: false,
            can_be_copied: true,
            has_basic_filter: true,
            basic_filter_for_humans: groups.basic,
            is_eligible_for_sending: status == "ready",
            needs_repair: false,
        }
    }

    /// The groups a campaign is sent to, as a snapshot taken at generation 1.
    fn campaign_groups(&self, c: usize, d: &mut Draw) -> CampaignGroups {
        let wanted = if c % 6 == 5 { 0 } else { 1 + d.below(2) as usize };
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < wanted.min(self.group_count()) {
            let group = d.below(self.group_count() as u64) as usize;
            if !chosen.contains(&group) {
                chosen.push(group);
            }
        }
        let raw = chosen.iter().map(|&g| self.raw_group(g, c)).collect();
        CampaignGroups {
            ids: chosen.iter().map(|&g| Id(self.group_id(g))).collect(),
            names: chosen.iter().map(|&g| self.group_name(g, 1)).collect(),
            basic: BasicFilter {
                included_groups: raw,
                excluded_groups: Vec::new(),
                included_segments: Vec::new(),
                excluded_segments: Vec::new(),
                all_active_subscribers: wanted == 0,
            },
        }
    }

    fn raw_group(&self, group: usize, c: usize) -> RawGroup {
        let mut d = Draw::new(&[self.seed, TAG_GROUP, group as u64, c as u64]);
        let created = T0 + group as i64 * 30 * DAY;
        let opens_count = d.below(5000);
        RawGroup {
            id: self.group_id(group),
            account_id: ACCOUNT_ID,
            created_at: IsoStamp(created),
            updated_at: IsoStamp(T_GEN1 - (c as i64 + 1) * 5 * DAY),
            deleted_at: None,
            name: self.group_name(group, 1),
            active_count: d.below(2000),
            open_rate: Rate(d.below(10_001)).fraction_text(),
            click_rate: Rate(d.below(2_001)).fraction_text(),
            serial_no: 1_068_790 + group as u64,
            sent_count: d.below(40),
            opens_count,
            clicks_count: d.below(opens_count + 1),
            unsubscribed_count: d.below(50),
            unconfirmed_count: d.below(10),
            bounced_count: d.below(10),
            junk_count: d.below(3),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn campaign_emails(
        &self,
        c: usize,
        campaign_id: u64,
        name: &str,
        status: &str,
        language: Language,
        times: &CampaignTimes,
        recipients: u64,
    ) -> Vec<Email> {
        let count = if c == 14 { 2 } else { 1 };
        (0..count)
            .map(|e| {
                let mut d = Draw::new(&[self.seed, TAG_CAMPAIGN, c as u64, e]);
                let id = EMAIL_BASE - c as u64 * ID_STRIDE - e * 7;
                let sent = if status == "sent" { recipients / count } else { 0 };
                Email {
                    id: Id(id),
                    account_id: Id(ACCOUNT_ID),
                    emailable_id: Id(campaign_id),
                    emailable_type: "campaigns",
                    kind: d.pick(&[Some("builder"), Some("builder_html"), None]),
                    from: "news@example.org",
                    from_name: "Example Team",
                    reply_to: "support@example.org",
                    name: None,
                    subject: if e == 0 { name.to_string() } else { format!("{name} (B)") },
                    plain_text: "Hello,\n\nYou have received a newsletter from {$account}.\n\
                                 ...{$unsubscribe}\n"
                        .to_string(),
                    screenshot_url: format!(
                        "https://storage.googleapis.com/mailerlite-screenshots-prod/screenshot/emails/{id}/1284x736.png"
                    ),
                    generate_screenshot_timestamp: None,
                    preview_url: format!("https://preview.mailerlite.io/preview/{ACCOUNT_ID}/emails/{id}"),
                    created_at: Stamp(times.created),
                    updated_at: Stamp(times.created + 600 + d.below(3600) as i64),
                    is_designed: d.chance(70),
                    language_id: language.id.parse().unwrap_or(0),
                    language,
                    is_winner: c == 14 && e == 0 && status == "sent",
                    stats: Stats::draw(&mut d, sent),
                    send_after: None,
                    track_opens: true,
                    uses_survey: false,
                    uses_quiz: false,
                    preheader: (c % 4 == 1).then_some("Don't miss this"),
                }
            })
            .collect()
    }
}

/// The campaign's included groups in the three shapes a campaign carries them.
struct CampaignGroups {
    ids: Vec<Id>,
    names: Vec<String>,
    basic: BasicFilter,
}

impl CampaignGroups {
    fn filter(&self) -> Vec<Vec<FilterRule>> {
        if self.ids.is_empty() {
            return Vec::new();
        }
        vec![vec![FilterRule { operator: "in_any", args: ("groups", self.ids.clone()) }]]
    }

    fn for_humans(&self) -> Vec<Vec<String>> {
        if self.names.is_empty() {
            return Vec::new();
        }
        vec![vec![format!("In any group: {}", self.names.join(", "))]]
    }
}

/// When a campaign was edited, scheduled and sent, by its status.
struct CampaignTimes {
    created: i64,
    updated: i64,
    scheduled: Option<i64>,
    started: Option<i64>,
    finished: Option<i64>,
}

impl CampaignTimes {
    fn new(status: &str, created: i64, sent_in: Option<u32>, c: usize, d: &mut Draw) -> CampaignTimes {
        let edited = created + d.below(3 * DAY as u64) as i64;
        let send = match sent_in {
            Some(g) => generation_time(g) - DAY / 2 - d.below(3600) as i64,
            None => created + DAY + d.below(DAY as u64) as i64,
        };
        let duration = 60 + d.below(600) as i64;
        match status {
            "sent" => CampaignTimes {
                created,
                updated: send + 3 + duration,
                scheduled: Some(send),
                started: Some(send + 3),
                finished: Some(send + 3 + duration),
            },
            "ready" => CampaignTimes {
                created,
                updated: edited,
                scheduled: Some(T_GEN1 + 30 * DAY + c as i64 * DAY),
                started: None,
                finished: None,
            },
            _ => CampaignTimes { created, updated: edited, scheduled: None, started: None, finished: None },
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP: routes, parameters, errors
// ---------------------------------------------------------------------------

impl MockApi for MailerLite {
    fn handle(&self, req: &MockRequest) -> MockResponse {
        let expected = format!("Bearer {API_KEY}");
        if req.authorization.as_deref().map(str::trim) != Some(expected.as_str()) {
            // The real 401 carries no rate-limit headers; the server adds none to a 401.
            return json(401, br#"{"message":"Unauthenticated."}"#.to_vec());
        }
        match self.route(req) {
            Ok(body) => json(200, body),
            Err(error) => error,
        }
    }

    fn too_many_requests(&self, retry_after_secs: u64) -> MockResponse {
        let mut response = json(429, br#"{"message":"Too Many Attempts."}"#.to_vec());
        response.headers.push(("Retry-After".into(), retry_after_secs.to_string()));
        response
    }

    fn rate_limit_headers(&self, limit: u32, remaining: u32) -> Vec<(String, String)> {
        vec![("x-ratelimit-limit".into(), limit.to_string()), ("x-ratelimit-remaining".into(), remaining.to_string())]
    }
}

/// An error response, ready to send.
type Answer = Result<Vec<u8>, MockResponse>;

fn json(status: u16, body: Vec<u8>) -> MockResponse {
    let headers = vec![("Cache-Control".into(), "no-cache, private".into())];
    MockResponse { status, headers, body }
}

/// Laravel's validation failure for one parameter.
fn invalid(field: &str, message: &str) -> MockResponse {
    let errors = BTreeMap::from([(field, [message])]);
    let body = serde_json::json!({"message": "The given data was invalid.", "errors": errors});
    json(422, body.to_string().into_bytes())
}

/// Laravel's model-not-found body, pretty-printed with four spaces like the real one.
fn not_found(model: &str, id: &str) -> MockResponse {
    let message = format!("No query results for model [{model}] {id}");
    let quoted = serde_json::to_string(&message).expect("a string serializes");
    json(404, format!("{{\n    \"message\": {quoted}\n}}").into_bytes())
}

impl MailerLite {
    fn route(&self, req: &MockRequest) -> Answer {
        let path = req.path.strip_prefix(BASE_PATH).unwrap_or("");
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if req.method != "GET" && req.method != "HEAD" {
            let message = format!(
                "The {} method is not supported for route {}. Supported methods: GET, HEAD.",
                req.method,
                req.path.trim_start_matches('/')
            );
            return Err(json(405, serde_json::json!({ "message": message }).to_string().into_bytes()));
        }
        match segments.as_slice() {
            ["subscribers"] => self.list_subscribers(req, None),
            ["groups"] => self.list_groups(req),
            ["groups", id, "subscribers"] => self.list_group_members(req, id),
            ["fields"] => self.list_fields(req),
            ["campaigns"] => self.list_campaigns(req),
            _ => {
                let message = format!("The route {} could not be found.", req.path.trim_start_matches('/'));
                Err(json(404, serde_json::json!({ "message": message }).to_string().into_bytes()))
            }
        }
    }

    fn list_group_members(&self, req: &MockRequest, id: &str) -> Answer {
        let group = self
            .groups
            .iter()
            .position(|g| g.alive && g.id.0.to_string() == *id)
            .ok_or_else(|| not_found("App\\Models\\Group\\Group", id))?;
        self.list_subscribers(req, Some(group))
    }

    fn list_groups(&self, req: &MockRequest) -> Answer {
        let name = req.param("filter[name]").map(str::to_lowercase);
        let matches = |g: &&Group| name.as_ref().is_none_or(|n| g.name.to_lowercase().contains(n));
        let groups: Vec<&Group> = self.groups.iter().filter(|g| g.alive).filter(matches).collect();
        page_envelope(req, &groups, None)
    }

    fn list_fields(&self, req: &MockRequest) -> Answer {
        let kind = req.param("filter[type]");
        let fields: Vec<&Field> = self.fields.iter().filter(|f| kind.is_none_or(|k| f.kind == k)).collect();
        page_envelope(req, &fields, None)
    }

    /// Without `filter[status]` only `ready` campaigns come back, as on the real API.
    fn list_campaigns(&self, req: &MockRequest) -> Answer {
        let status = req.param("filter[status]").unwrap_or("ready");
        if !["sent", "draft", "ready"].contains(&status) {
            return Err(invalid("filter.status", "The selected filter.status is invalid."));
        }
        let kind = req.param("filter[type]");
        let campaigns: Vec<&Campaign> =
            self.campaigns.iter().filter(|c| c.status == status && kind.is_none_or(|k| c.kind == k)).collect();
        page_envelope(req, &campaigns, Some(self.aggregations()))
    }

    fn aggregations(&self) -> Aggregations {
        let count = |status| self.campaigns.iter().filter(|c| c.status == status).count();
        Aggregations { all: self.campaigns.len(), draft: count("draft"), ready: count("ready"), sent: count("sent") }
    }
}

/// `meta.aggregations` of `/campaigns`: counts per status, whatever the filter.
#[derive(Serialize)]
struct Aggregations {
    all: usize,
    draft: usize,
    ready: usize,
    sent: usize,
}

/// `limit`: default 25, silently capped at 100; `Some(0)` is kept for the count form.
fn limit_param(req: &MockRequest) -> Result<usize, MockResponse> {
    match req.param("limit") {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<usize>()
            .map(|limit| limit.min(MAX_LIMIT))
            .map_err(|_| invalid("limit", "The limit must be an integer.")),
    }
}

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct PageEnvelope<'a, T: Serialize> {
    data: &'a [T],
    links: PageLinks,
    meta: PageMeta,
}

#[derive(Serialize)]
struct PageLinks {
    first: String,
    last: String,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Serialize)]
struct PageMeta {
    current_page: usize,
    from: Option<usize>,
    last_page: usize,
    links: Vec<MetaLink>,
    path: String,
    per_page: usize,
    to: Option<usize>,
    total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    aggregations: Option<Aggregations>,
}

#[derive(Serialize)]
struct MetaLink {
    url: Option<String>,
    label: String,
    active: bool,
}

/// Laravel's length-aware page of `items` (§2b): `?page=N` links only, null
/// `from`/`to` past the end.
fn page_envelope<T: Serialize>(req: &MockRequest, items: &[T], aggregations: Option<Aggregations>) -> Answer {
    let limit = match limit_param(req)? {
        0 => DEFAULT_LIMIT,
        limit => limit,
    };
    let page = req.param("page").and_then(|p| p.parse::<usize>().ok()).filter(|&p| p >= 1).unwrap_or(1);
    let total = items.len();
    let last_page = total.div_ceil(limit).max(1);
    let start = (page - 1).saturating_mul(limit).min(total);
    let data = &items[start..(start + limit).min(total)];
    let path = format!("{}{}", req.origin, req.path);
    let url = |p: usize| format!("{path}?page={p}");
    let prev = (page > 1).then(|| url(page - 1));
    let next = (page < last_page).then(|| url(page + 1));
    let envelope = PageEnvelope {
        data,
        links: PageLinks { first: url(1), last: url(last_page), prev: prev.clone(), next: next.clone() },
        meta: PageMeta {
            current_page: page,
            from: (!data.is_empty()).then_some(start + 1),
            last_page,
            links: meta_links(page, last_page, &url, prev, next),
            path: path.clone(),
            per_page: limit,
            to: (!data.is_empty()).then_some(start + data.len()),
            total,
            aggregations,
        },
    };
    Ok(serde_json::to_vec(&envelope).expect("a page serializes"))
}

/// `meta.links` as Laravel's `UrlWindow` builds it: every page up to 13 pages,
/// beyond that the ends and a window of three on each side, with `...` gaps.
fn meta_links(
    page: usize,
    last_page: usize,
    url: &dyn Fn(usize) -> String,
    prev: Option<String>,
    next: Option<String>,
) -> Vec<MetaLink> {
    let mut links = vec![MetaLink { url: prev, label: "&laquo; Previous".into(), active: false }];
    for range in page_windows(page, last_page) {
        if links.len() > 1 {
            links.push(MetaLink { url: None, label: "...".into(), active: false });
        }
        for p in range {
            links.push(MetaLink { url: Some(url(p)), label: p.to_string(), active: p == page });
        }
    }
    links.push(MetaLink { url: next, label: "Next &raquo;".into(), active: false });
    links
}

fn page_windows(page: usize, last: usize) -> Vec<std::ops::RangeInclusive<usize>> {
    const ON_EACH_SIDE: usize = 3;
    const WINDOW: usize = ON_EACH_SIDE + 4;
    if last < ON_EACH_SIDE * 2 + 8 {
        return vec![1..=last];
    }
    let finish = last - 1..=last;
    if page <= WINDOW {
        vec![1..=WINDOW + ON_EACH_SIDE, finish]
    } else if page > last - WINDOW {
        vec![1..=2, last - (WINDOW + ON_EACH_SIDE - 1)..=last]
    } else {
        vec![1..=2, page - ON_EACH_SIDE..=page + ON_EACH_SIDE, finish]
    }
}

#[derive(Serialize)]
struct CursorLinks {
    first: Option<String>,
    last: Option<String>,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Serialize)]
struct CursorMeta {
    path: String,
    per_page: usize,
    next_cursor: Option<String>,
    prev_cursor: Option<String>,
}

/// Laravel's cursor: base64url, unpadded, of `{"id":…,"_pointsToNextItems":…}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    id: u64,
    points_to_next: bool,
}

#[derive(serde::Deserialize)]
struct CursorJson {
    id: u64,
    #[serde(rename = "_pointsToNextItems")]
    points_to_next_items: bool,
}

impl Cursor {
    fn encode(&self) -> String {
        let json = format!(r#"{{"id":{},"_pointsToNextItems":{}}}"#, self.id, self.points_to_next);
        base64url_encode(json.as_bytes())
    }

    fn decode(text: &str) -> Option<Cursor> {
        let parsed: CursorJson = serde_json::from_slice(&base64url_decode(text)?).ok()?;
        Some(Cursor { id: parsed.id, points_to_next: parsed.points_to_next_items })
    }
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let word = chunk.iter().enumerate().fold(0u32, |w, (i, &b)| w | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(BASE64URL[(word >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes unpadded base64url (a trailing `=` is tolerated); `None` when malformed.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut word = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let value = BASE64URL.iter().position(|&b| b == c)? as u32;
            word |= value << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((word >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Cursor pages of subscribers
// ---------------------------------------------------------------------------

impl MailerLite {
    /// `/subscribers` (all statuses unless filtered) or, with `group`, that
    /// group's members (only `active` ones unless filtered).
    fn list_subscribers(&self, req: &MockRequest, group: Option<usize>) -> Answer {
        let status = match req.param("filter[status]").filter(|s| !s.is_empty()) {
            None => group.map(|_| Status::Active),
            Some(text) => Some(
                Status::parse(text)
                    .ok_or_else(|| invalid("filter.status", "The selected filter.status is invalid."))?,
            ),
        };
        let limit = match (limit_param(req)?, group) {
            (0, None) => return Ok(self.count_body(status)),
            (0, Some(_)) => DEFAULT_LIMIT,
            (limit, _) => limit,
        };
        let cursor = match req.param("cursor").filter(|c| !c.is_empty()) {
            None => None,
            Some(text) => Some(Cursor::decode(text).ok_or_else(|| invalid("cursor", "The cursor is invalid."))?),
        };
        let with_groups = req.param("include").is_some_and(|v| v.split(',').any(|i| i.trim() == "groups"));
        let wanted =
            |life: &Life| status.is_none_or(|s| life.status == s) && group.is_none_or(|g| life.groups.contains(g));
        let (page, has_more) = self.walk(cursor, limit, &wanted);
        let mut body = Vec::with_capacity(page.len() * 900 + 512);
        body.extend_from_slice(b"{\"data\":[");
        for (i, (slot, life)) in page.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            self.write_subscriber(&mut body, *slot, life, with_groups);
        }
        let ids = page.first().zip(page.last()).map(|(f, l)| (self.subscriber_id(f.0), self.subscriber_id(l.0)));
        self.close_cursor_page(&mut body, req, limit, cursor, ids, has_more);
        Ok(body)
    }

    /// Writes `links` and `meta` after the data, with Laravel's rules for which
    /// cursors exist: none past an end, no `prev` on the first page.
    fn close_cursor_page(
        &self,
        body: &mut Vec<u8>,
        req: &MockRequest,
        limit: usize,
        cursor: Option<Cursor>,
        ids: Option<(u64, u64)>,
        has_more: bool,
    ) {
        let forward = cursor.is_none_or(|c| c.points_to_next);
        let (next, prev) = match ids {
            None => (None, None),
            Some((first, last)) => (
                (has_more || !forward).then(|| Cursor { id: last, points_to_next: true }.encode()),
                (cursor.is_some() && (has_more || forward))
                    .then(|| Cursor { id: first, points_to_next: false }.encode()),
            ),
        };
        let path = format!("{}{}", req.origin, req.path);
        let link = |c: &Option<String>| c.as_ref().map(|c| format!("{path}?cursor={c}"));
        let links = CursorLinks { first: None, last: None, prev: link(&prev), next: link(&next) };
        let meta = CursorMeta { path, per_page: limit, next_cursor: next, prev_cursor: prev };
        body.extend_from_slice(b"],\"links\":");
        serde_json::to_writer(&mut *body, &links).expect("writing to a Vec cannot fail");
        body.extend_from_slice(b",\"meta\":");
        serde_json::to_writer(&mut *body, &meta).expect("writing to a Vec cannot fail");
        body.push(b'}');
    }

    /// `{"total": N}`, the answer to `limit=0`.
    fn count_body(&self, status: Option<Status>) -> Vec<u8> {
        let total: u64 = match status {
            Some(s) => self.status_totals[s as usize],
            None => self.status_totals.iter().sum(),
        };
        format!("{{\"total\":{total}}}").into_bytes()
    }

    /// Up to `limit` wanted subscribers next to the cursor, in descending id
    /// order, and whether more lie beyond them in the cursor's direction.
    fn walk(&self, cursor: Option<Cursor>, limit: usize, wanted: &dyn Fn(&Life) -> bool) -> (Vec<(u64, Life)>, bool) {
        let slots = self.slots();
        let mut page = Vec::with_capacity(limit + 1);
        let mut take = |slot: u64| {
            if let Some(life) = self.life(slot).filter(|l| wanted(l)) {
                page.push((slot, life));
            }
            page.len() > limit
        };
        match cursor {
            Some(Cursor { id, points_to_next: false }) => {
                let end = self.first_slot_below(id, true).clamp(slots.start, slots.end);
                (slots.start..end).rev().find(|&slot| take(slot));
            }
            _ => {
                let start = cursor.map_or(slots.start, |c| self.first_slot_below(c.id, false).max(slots.start));
                (start..slots.end).find(|&slot| take(slot));
            }
        }
        let has_more = page.len() > limit;
        page.truncate(limit);
        if cursor.is_some_and(|c| !c.points_to_next) {
            page.reverse();
        }
        (page, has_more)
    }

    /// The first slot whose id is below `id` (or equal to it, with `inclusive`).
    fn first_slot_below(&self, id: u64, inclusive: bool) -> u64 {
        let Some(distance) = SUBSCRIBER_BASE.checked_sub(id) else {
            return 0;
        };
        let slot = distance / ID_STRIDE;
        let slot_id = self.subscriber_id(slot);
        if slot_id < id || (inclusive && slot_id == id) {
            slot
        } else {
            slot + 1
        }
    }
}

// ---------------------------------------------------------------------------
// What a correct sync ends with, for the tests
// ---------------------------------------------------------------------------

impl MailerLite {
    /// The generation this account was built for.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Every record of `table` ([`TABLES`]) as the exact JSON text the API
    /// serves for it (subscribers without `groups`); empty for an unknown table.
    /// `group_subscriber` rows are `{"group_id":"…","subscriber_id":"…"}`, one
    /// per membership whatever the subscriber's status.
    pub fn expected(&self, table: &str) -> Vec<String> {
        match table {
            "subscriber" => self.expected_subscribers(),
            "group_subscriber" => self.expected_memberships(),
            "group" => self.groups.iter().filter(|g| g.alive).map(to_json).collect(),
            "field" => self.fields.iter().map(to_json).collect(),
            "campaign" => self.campaigns.iter().map(to_json).collect(),
            _ => Vec::new(),
        }
    }

    fn expected_subscribers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for slot in self.slots() {
            if let Some(life) = self.life(slot) {
                let mut text = Vec::with_capacity(900);
                self.write_subscriber(&mut text, slot, &life, false);
                out.push(String::from_utf8(text).expect("serde_json writes UTF-8"));
            }
        }
        out
    }

    fn expected_memberships(&self) -> Vec<String> {
        let mut out = Vec::new();
        for slot in self.slots() {
            let Some(life) = self.life(slot) else {
                continue;
            };
            let subscriber = self.subscriber_id(slot);
            for group in life.groups.iter() {
                let group = self.groups[group].id.0;
                out.push(format!(r#"{{"group_id":"{group}","subscriber_id":"{subscriber}"}}"#));
            }
        }
        out
    }

    /// Exactly what changed since generation `g - 1`, found by diffing the two
    /// generations' `expected` records by primary key, comparing only what a CSV
    /// row shows (a null and a missing key are the same empty cell).
    pub fn mutations(&self) -> Mutations {
        if self.generation <= 1 {
            return Mutations::default();
        }
        let previous = MailerLite::new(&MockOptions {
            seed: self.seed,
            records: self.records as usize,
            generation: self.generation - 1,
            ..MockOptions::default()
        });
        let tables =
            TABLES.iter().map(|&t| (t.to_string(), diff(t, &previous.expected(t), &self.expected(t)))).collect();
        Mutations { tables }
    }
}

fn to_json<T: Serialize>(item: &T) -> String {
    serde_json::to_string(item).expect("records serialize")
}

/// The primary key of a record of `table`; `group_id,subscriber_id` for memberships.
pub fn primary_key(table: &str, record: &serde_json::Value) -> String {
    let text = |key: &str| record[key].as_str().map(str::to_string).unwrap_or_else(|| record[key].to_string());
    match table {
        "group_subscriber" => format!("{},{}", text("group_id"), text("subscriber_id")),
        _ => text("id"),
    }
}

fn diff(table: &str, old: &[String], new: &[String]) -> TableMutations {
    let key_of = |text: &str| primary_key(table, &parse(text));
    let mut old: HashMap<String, &str> = old.iter().map(|t| (key_of(t), t.as_str())).collect();
    let mut result = TableMutations::default();
    for text in new {
        let value = parse(text);
        let key = primary_key(table, &value);
        match old.remove(&key) {
            None => result.added.push(key),
            // Equal text is the common case; parse only when it differs.
            Some(before) if before != text && cells(&parse(before)) != cells(&value) => result.changed.push(key),
            Some(_) => {}
        }
    }
    result.deleted = old.into_keys().collect();
    for keys in [&mut result.added, &mut result.changed, &mut result.deleted] {
        keys.sort();
    }
    result
}

fn parse(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("the mock writes JSON")
}

fn cells(value: &serde_json::Value) -> BTreeMap<String, String> {
    let mut cells = BTreeMap::new();
    visible_cells(value, String::new(), &mut cells);
    cells
}

/// Flattens a record the way a CSV row shows it: nested objects by path, arrays
/// as JSON text, and neither null nor `""` as a cell.
fn visible_cells(value: &serde_json::Value, path: String, cells: &mut BTreeMap<String, String>) {
    use serde_json::Value;
    let text = match value {
        Value::Object(map) => {
            for (key, child) in map {
                visible_cells(child, format!("{path}.{key}"), cells);
            }
            return;
        }
        Value::Null => return,
        Value::String(s) if s.is_empty() => return,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    cells.insert(path, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::HashSet;

    fn account(records: usize, generation: u32) -> MailerLite {
        MailerLite::new(&MockOptions { seed: 42, records, generation, ..MockOptions::default() })
    }

    fn request(target: &str, authorization: Option<String>) -> MockRequest {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        MockRequest {
            method: "GET".into(),
            path: path.into(),
            query: crate::mock::wire::parse_query(query),
            authorization,
            origin: "http://mock".into(),
        }
    }

    fn get(api: &MailerLite, target: &str) -> (u16, Value) {
        let response = api.handle(&request(target, Some(format!("Bearer {API_KEY}"))));
        (response.status, serde_json::from_slice(&response.body).unwrap())
    }

    fn ok(api: &MailerLite, target: &str) -> Value {
        let (status, body) = get(api, target);
        assert_eq!(status, 200, "{target}: {body}");
        body
    }

    fn keys(value: &Value) -> Vec<&str> {
        value.as_object().unwrap().keys().map(String::as_str).collect()
    }

    /// Every record of a cursor endpoint, following `meta.next_cursor`.
    fn all_pages(api: &MailerLite, target: &str) -> Vec<Value> {
        let mut records = Vec::new();
        let mut page = ok(api, target);
        loop {
            records.extend(page["data"].as_array().unwrap().iter().cloned());
            let Some(cursor) = page["meta"]["next_cursor"].as_str() else {
                break;
            };
            let separator = if target.contains('?') { '&' } else { '?' };
            page = ok(api, &format!("{target}{separator}cursor={cursor}"));
        }
        records
    }

    /// Every record of a page-number endpoint, following `links.next`.
    fn all_numbered_pages(api: &MailerLite, target: &str) -> Vec<Value> {
        let mut records = Vec::new();
        for page in 1.. {
            let body = ok(api, &format!("{target}&page={page}"));
            records.extend(body["data"].as_array().unwrap().iter().cloned());
            if body["links"]["next"].is_null() {
                break;
            }
        }
        records
    }

    fn texts(records: &[Value]) -> HashSet<String> {
        records.iter().map(Value::to_string).collect()
    }

    fn expected(api: &MailerLite, table: &str) -> HashSet<String> {
        api.expected(table).into_iter().collect()
    }

    #[test]
    fn cursor_envelope_and_subscriber_have_the_real_keys() {
        let api = account(50, 1);
        let page = ok(&api, "/api/subscribers?limit=5");
        assert_eq!(keys(&page), ["data", "links", "meta"]);
        assert_eq!(keys(&page["links"]), ["first", "last", "prev", "next"]);
        assert_eq!(keys(&page["meta"]), ["path", "per_page", "next_cursor", "prev_cursor"]);
        assert_eq!(page["meta"]["path"], "http://mock/api/subscribers");
        assert_eq!(page["meta"]["per_page"], 5);
        assert!(page["links"]["first"].is_null() && page["links"]["prev"].is_null());
        let cursor = page["meta"]["next_cursor"].as_str().unwrap();
        assert_eq!(page["links"]["next"], format!("http://mock/api/subscribers?cursor={cursor}"));
        let subscriber = &page["data"][0];
        let order = [
            "id",
            "email",
            "status",
            "source",
            "sent",
            "opens_count",
            "clicks_count",
            "open_rate",
            "click_rate",
            "ip_address",
            "subscribed_at",
            "unsubscribed_at",
            "created_at",
            "updated_at",
            "fields",
            "opted_in_at",
            "optin_ip",
        ];
        assert_eq!(keys(subscriber), order);
        let fields = [
            "name",
            "last_name",
            "company",
            "country",
            "city",
            "phone",
            "state",
            "z_i_p",
            "plan_tier",
            "score",
            "birthday",
        ];
        assert_eq!(keys(&subscriber["fields"]), fields);
        assert_eq!(subscriber["id"].as_str().unwrap().len(), 18);
        assert_eq!(subscriber["created_at"].as_str().unwrap().len(), "2025-02-11 09:41:27".len());
    }

    #[test]
    fn include_groups_adds_group_objects_before_opted_in_at() {
        let api = account(50, 1);
        let page = ok(&api, "/api/subscribers?limit=50&include=groups");
        let with_groups = page["data"].as_array().unwrap().iter().find(|s| s["groups"] != Value::Array(vec![]));
        let subscriber = with_groups.expect("some subscriber is in a group");
        let names = keys(subscriber);
        let at = names.iter().position(|&k| k == "groups").unwrap();
        assert_eq!(names[at - 1..=at + 1], ["fields", "groups", "opted_in_at"]);
        assert_eq!(keys(&subscriber["groups"][0])[..3], ["id", "name", "active_count"]);
        assert_eq!(keys(&subscriber["groups"][0]["open_rate"]), ["float", "string"]);
    }

    #[test]
    fn timestamps_are_utc_in_the_real_format() {
        let check = |t: i64| {
            let reference = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
            let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
            assert_eq!(Stamp(t).to_string(), reference.format(&format).unwrap());
        };
        for t in [0, T0, T_GEN1, 951_782_400, 4_107_542_399, 1_709_164_799] {
            check(t);
        }
        (0..2000).for_each(|i| check(T0 + i * 86_413 + i % 7));
    }

    #[test]
    fn cursor_matches_laravel_encoding() {
        let real = "eyJpZCI6MTQ4MjAzNTE3NzYwMzI1NDAwLCJfcG9pbnRzVG9OZXh0SXRlbXMiOnRydWV9";
        let cursor = Cursor::decode(real).unwrap();
        assert_eq!(cursor, Cursor { id: 148_203_517_760_325_400, points_to_next: true });
        assert_eq!(cursor.encode(), real);
        for id in [0, 1, 12, 123, u64::MAX] {
            let c = Cursor { id, points_to_next: id % 2 == 0 };
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(Cursor::decode("not*base64"), None);
        assert_eq!(Cursor::decode("eyJpZCI6"), None);
    }

    #[test]
    fn paging_returns_every_subscriber_once_in_descending_id_order() {
        let api = account(60, 1);
        let records = all_pages(&api, "/api/subscribers?limit=7");
        let ids: Vec<u64> = records.iter().map(|s| s["id"].as_str().unwrap().parse().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(texts(&records), expected(&api, "subscriber"));
        assert_eq!(records.len(), 60);
        let statuses: HashSet<&str> = records.iter().map(|s| s["status"].as_str().unwrap()).collect();
        assert!(statuses.len() >= 3, "no status filter means every status: {statuses:?}");
    }

    #[test]
    fn prev_cursor_leads_back_to_the_previous_page() {
        let api = account(60, 1);
        let first = ok(&api, "/api/subscribers?limit=10");
        let next = first["meta"]["next_cursor"].as_str().unwrap();
        let second = ok(&api, &format!("/api/subscribers?limit=10&cursor={next}"));
        let prev = second["meta"]["prev_cursor"].as_str().unwrap();
        let back = ok(&api, &format!("/api/subscribers?limit=10&cursor={prev}"));
        assert_eq!(back["data"], first["data"]);
        assert!(back["meta"]["prev_cursor"].is_null());
        assert!(back["meta"]["next_cursor"].is_string());
    }

    #[test]
    fn limit_is_capped_at_100_and_zero_counts() {
        let api = account(250, 1);
        let page = ok(&api, "/api/subscribers?limit=500");
        assert_eq!(page["meta"]["per_page"], 100);
        assert_eq!(page["data"].as_array().unwrap().len(), 100);
        assert_eq!(ok(&api, "/api/subscribers")["meta"]["per_page"], 25);
        assert_eq!(ok(&api, "/api/subscribers?limit=0"), serde_json::json!({"total": 250}));
        assert_eq!(ok(&api, "/api/groups?limit=1000")["meta"]["per_page"], 100);
    }

    #[test]
    fn bad_cursor_and_bad_key_get_the_real_errors() {
        let api = account(10, 1);
        let (status, body) = get(&api, "/api/subscribers?cursor=garbage!");
        assert_eq!(status, 422);
        let errors = serde_json::json!({"message": "The given data was invalid.", "errors": {"cursor": ["The cursor is invalid."]}});
        assert_eq!(body, errors);
        let response = api.handle(&request("/api/subscribers", Some("Bearer nope".into())));
        assert_eq!((response.status, response.body.as_slice()), (401, &br#"{"message":"Unauthenticated."}"#[..]));
        assert_eq!(api.handle(&request("/api/subscribers", None)).status, 401);
    }

    #[test]
    fn status_filter_keeps_only_that_status() {
        let api = account(200, 1);
        let records = all_pages(&api, "/api/subscribers?limit=100&filter[status]=unsubscribed");
        assert!(!records.is_empty());
        assert!(records.iter().all(|s| s["status"] == "unsubscribed"));
        assert_eq!(get(&api, "/api/subscribers?filter[status]=gone").0, 422);
    }

    #[test]
    fn page_envelope_has_the_real_keys_and_labels() {
        let api = account(10, 1);
        let page = ok(&api, "/api/campaigns?filter[status]=sent&limit=5&page=2");
        assert_eq!(keys(&page), ["data", "links", "meta"]);
        assert_eq!(keys(&page["links"]), ["first", "last", "prev", "next"]);
        let meta = ["current_page", "from", "last_page", "links", "path", "per_page", "to", "total", "aggregations"];
        assert_eq!(keys(&page["meta"]), meta);
        assert_eq!(page["links"]["prev"], "http://mock/api/campaigns?page=1");
        assert_eq!((page["meta"]["from"].as_u64(), page["meta"]["to"].as_u64()), (Some(6), Some(10)));
        let links = page["meta"]["links"].as_array().unwrap();
        assert_eq!(links[0]["label"], "&laquo; Previous");
        assert_eq!(links.last().unwrap()["label"], "Next &raquo;");
        assert_eq!(
            links[2],
            serde_json::json!({"url": "http://mock/api/campaigns?page=2", "label": "2", "active": true})
        );
        let past = ok(&api, "/api/groups?page=9");
        assert_eq!(past["data"], Value::Array(vec![]));
        assert!(past["meta"]["from"].is_null() && past["meta"]["to"].is_null());
        assert!(past["links"]["next"].is_null());
        let single = ok(&api, "/api/fields");
        assert!(single["meta"]["links"][0]["url"].is_null() && single["meta"]["links"][2]["url"].is_null());
    }

    #[test]
    fn campaigns_default_to_ready() {
        let api = account(10, 1);
        let default = ok(&api, "/api/campaigns?limit=100");
        let statuses: HashSet<&str> =
            default["data"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, HashSet::from(["ready"]));
        let aggregations = &default["meta"]["aggregations"];
        assert_eq!(keys(aggregations), ["all", "draft", "ready", "sent"]);
        assert_eq!(aggregations["all"], CAMPAIGNS);
        let mut all = Vec::new();
        for status in ["sent", "draft", "ready"] {
            all.extend(all_numbered_pages(&api, &format!("/api/campaigns?filter[status]={status}&limit=7")));
        }
        assert_eq!(texts(&all), expected(&api, "campaign"));
        let created: Vec<&str> = all[..5].iter().map(|c| c["created_at"].as_str().unwrap()).collect();
        assert!(created.windows(2).all(|w| w[0] > w[1]), "newest first");
    }

    #[test]
    fn campaign_has_the_real_shape() {
        let api = account(10, 1);
        let sent = ok(&api, "/api/campaigns?filter[status]=sent&limit=1");
        let campaign = &sent["data"][0];
        let names = keys(campaign);
        assert_eq!(names[..6], ["id", "account_id", "name", "type", "status", "missing_data"]);
        assert_eq!(names[names.len() - 3..], ["basic_filter_for_humans", "is_eligible_for_sending", "needs_repair"]);
        assert!(campaign["stats"].is_object() && campaign["ecommerce_stats"].is_null());
        assert!(campaign["language_id"].is_string() && campaign["emails"][0]["language_id"].is_u64());
        let draft = ok(&api, "/api/campaigns?filter[status]=draft&limit=1");
        assert!(draft["data"][0].get("stats").is_none());
        assert!(draft["data"][0]["emails"][0]["stats"].is_object());
        let text = api.expected("campaign").join("\n");
        assert!(text.contains(r#""included_groups":[{"id":151877"#), "group ids are JSON numbers");
        assert!(text.contains(".000000Z\""));
    }

    #[test]
    fn group_members_default_to_active() {
        let api = account(400, 1);
        let groups = all_numbered_pages(&api, "/api/groups?limit=2");
        assert_eq!(texts(&groups), expected(&api, "group"));
        let mut memberships = HashSet::new();
        for group in &groups {
            let id = group["id"].as_str().unwrap();
            let active = all_pages(&api, &format!("/api/groups/{id}/subscribers?limit=30"));
            assert!(active.iter().all(|s| s["status"] == "active"));
            assert_eq!(active.len() as u64, group["active_count"].as_u64().unwrap());
            for status in Status::ALL {
                let target = format!("/api/groups/{id}/subscribers?limit=100&filter[status]={}", status.as_str());
                for member in all_pages(&api, &target) {
                    assert_eq!(member["status"], status.as_str());
                    let sid = member["id"].as_str().unwrap();
                    memberships.insert(format!(r#"{{"group_id":"{id}","subscriber_id":"{sid}"}}"#));
                }
            }
        }
        assert_eq!(memberships, expected(&api, "group_subscriber"));
    }

    #[test]
    fn unknown_group_is_a_pretty_printed_404() {
        let api = account(10, 1);
        let response = api.handle(&request("/api/groups/121212/subscribers", Some(format!("Bearer {API_KEY}"))));
        assert_eq!(response.status, 404);
        let body = "{\n    \"message\": \"No query results for model [App\\\\Models\\\\Group\\\\Group] 121212\"\n}";
        assert_eq!(String::from_utf8(response.body).unwrap(), body);
    }

    #[test]
    fn fields_are_defaults_then_custom() {
        let api = account(10, 1);
        let fields = ok(&api, "/api/fields?limit=100")["data"].as_array().unwrap().clone();
        assert_eq!(keys(&fields[0]), ["id", "name", "key", "type", "is_default", "used_in_automations"]);
        assert_eq!(fields[7]["key"], "z_i_p");
        assert_eq!(fields[7]["id"], "8");
        assert!(fields[..8].iter().all(|f| f["is_default"] == true));
        assert!(fields[8..].iter().all(|f| f["is_default"] == false));
    }

    #[test]
    fn hard_values_are_present() {
        let api = account(40, 1);
        let text = api.expected("subscriber").join("\n");
        for needle in [
            "\\\"The Boss\\\"",
            "Smith, Jones",
            "\\r\\n",
            "🎉",
            "Ελληνική",
            "株式会社",
            "شركة",
            "\"=SUM(A1:A2)\"",
            "\"+49",
            "\"-5 Discount\"",
            "\"@handle\"",
            "\"company\":\"\"",
            "\"company\":null",
            "\"  padded both sides  \"",
            "\"open_rate\":0,",
        ] {
            assert!(text.contains(needle), "missing {needle}");
        }
        assert!(text.len() > 10_240);
    }

    #[test]
    fn the_account_is_deterministic() {
        assert_eq!(account(30, 2).expected("subscriber"), account(30, 2).expected("subscriber"));
        let other = MailerLite::new(&MockOptions { seed: 43, records: 30, ..MockOptions::default() });
        assert_ne!(other.expected("subscriber"), account(30, 1).expected("subscriber"));
    }

    #[test]
    fn generation_one_has_no_mutations() {
        assert!(account(20, 1).mutations().tables.is_empty());
    }

    #[test]
    fn generation_two_differs_exactly_by_its_mutations() {
        let (old, new) = (account(1500, 1), account(1500, 2));
        let mutations = new.mutations();
        for table in TABLES {
            let by_key = |api: &MailerLite| -> HashMap<String, String> {
                api.expected(table)
                    .into_iter()
                    .map(|t| (primary_key(table, &serde_json::from_str(&t).unwrap()), t))
                    .collect()
            };
            let (before, after) = (by_key(&old), by_key(&new));
            let m = mutations.table(table).unwrap();
            let added: HashSet<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
            let deleted: HashSet<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
            assert_eq!(added, m.added.iter().collect(), "{table} added");
            assert_eq!(deleted, m.deleted.iter().collect(), "{table} deleted");
            for key in &m.changed {
                assert_ne!(before[key], after[key], "{table} {key} listed as changed");
            }
            for (key, text) in after.iter().filter(|(k, _)| !m.changed.contains(k)) {
                let unchanged = text.replace(",\"loyalty_level\":null", "");
                assert!(before.get(key).is_none_or(|b| *b == unchanged), "{table} {key} changed unlisted");
            }
        }
        let count = |table: &str| {
            let m = mutations.table(table).unwrap();
            (m.added.len(), m.changed.len(), m.deleted.len())
        };
        let (added, changed, deleted) = count("subscriber");
        assert!(added > 0 && changed > 0 && deleted > 0, "{:?}", count("subscriber"));
        assert!(changed < 1500 / 10, "a new empty field is not a change: {changed}");
        assert_eq!(count("field"), (1, 0, 0));
        assert_eq!(count("campaign"), (0, 1, 0));
        assert!(mutations.table("group").unwrap().changed.contains(&new.groups[0].id.0.to_string()));
        let (added, _, deleted) = count("group_subscriber");
        assert!(added > 0 && deleted > 0);
        assert!(new.expected("subscriber")[0].contains("\"loyalty_level\":null"));
    }

    #[test]
    fn generation_three_deletes_a_group() {
        let mutations = account(100, 3).mutations();
        assert_eq!(mutations.table("group").unwrap().deleted.len(), 1);
        assert_eq!(mutations.table("campaign").unwrap().changed.len(), 1);
    }
}
