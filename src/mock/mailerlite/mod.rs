//! The MailerLite mock: `connect.mailerlite.com/api` as the fact sheet
//! (`shared/api/mailerlite.md`) describes it, with its cursor and page envelopes,
//! its filter defaults (campaigns default to `ready`, group members to `active`)
//! and an account generated lazily from `(seed, generation, index)`, so 200 000
//! subscribers cost no memory. Every answer but a 401 names the account in
//! `x-account_id` and `x-user_id`, numbers drawn from the seed. `expected` and
//! `mutations` tell tests what a correct sync must end with, without going through HTTP.
//!
//! The account is spread over one file per noun: `life` (subscriber slots replayed
//! through the generations), `subscriber`, `group`, `field` and `campaign` (the
//! records), `page` and `cursor` (the two envelopes), `expected` (the truth for tests);
//! `draw`, `scalar` and `samples` hold the randomness, wire formats and sample values.

mod campaign;
mod cursor;
mod draw;
#[cfg(any(test, feature = "test-oracles"))]
mod expected;
mod field;
mod group;
mod life;
mod page;
mod samples;
mod scalar;
mod subscriber;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use super::{MockApi, MockOptions, MockRequest, MockResponse};
pub use super::{Mutations, TableMutations};
use campaign::Campaign;
use draw::Draw;
#[cfg(any(test, feature = "test-oracles"))]
pub use expected::primary_key;
use field::{fields_of, Field};
use group::Group;
use page::{page_envelope, Aggregations};
use subscriber::long_text;

/// The only API key the mock accepts, as `Authorization: Bearer <API_KEY>`.
pub const API_KEY: &str = "mock-mailerlite-key";
/// Every route lives under this path, so a client's base URL is `origin + BASE_PATH`.
pub const BASE_PATH: &str = "/api";
/// `limit` when none is given, and its cap: silent unless `reject_large_limit`.
pub const DEFAULT_LIMIT: usize = 25;
pub const MAX_LIMIT: usize = 100;
/// The table names `expected` and `mutations` know.
pub const TABLES: [&str; 5] = ["subscriber", "group", "group_subscriber", "field", "campaign"];
/// Generations above this are treated as this one (slot space is reserved for it).
pub const MAX_GENERATION: u32 = 1000;

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
const TAG_ACCOUNT: u64 = 8;

/// The MailerLite mock for one `(seed, records, generation)`.
pub struct MailerLite {
    seed: u64,
    /// The account's number, as `x-account_id` and the campaigns' `account_id` carry it.
    account: u64,
    /// The key owner's number, as `x-user_id` carries it.
    user: u64,
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
    /// [`MockOptions::skew_group_counts`]: kept so `mutations` rebuilds the same account.
    skew_group_counts: bool,
    /// [`MockOptions::reject_large_limit`].
    reject_large_limit: bool,
    /// Present subscribers per status, for `limit=0`.
    status_totals: [u64; 5],
    long_text: String,
}

impl MailerLite {
    /// Builds the account: groups, fields and campaigns now, subscribers on demand.
    pub fn new(opts: &MockOptions) -> MailerLite {
        let records = opts.records as u64;
        let added_per_generation = (records / 200).max(1);
        let mut identity = Draw::new(&[opts.seed, TAG_ACCOUNT]);
        let mut api = MailerLite {
            seed: opts.seed,
            // Five or six digits, like the real `83510`.
            account: 10_000 + identity.below(990_000),
            user: 100_000 + identity.below(9_900_000),
            generation: opts.generation.clamp(1, MAX_GENERATION),
            records,
            added_per_generation,
            first_slot: added_per_generation * u64::from(MAX_GENERATION),
            fields: Vec::new(),
            groups: Vec::new(),
            campaigns: Vec::new(),
            skew_group_counts: opts.skew_group_counts,
            reject_large_limit: opts.reject_large_limit,
            status_totals: [0; 5],
            long_text: long_text(),
        };
        api.fields = fields_of(api.generation);
        api.groups = api.build_groups();
        api.count_members();
        if api.skew_group_counts {
            api.skew_first_group();
        }
        api.campaigns = (0..CAMPAIGNS).map(|c| api.build_campaign(c)).collect();
        api
    }

    /// The account's number: the `x-account_id` header and every `account_id` in
    /// the records, different for each seed.
    pub fn account_id(&self) -> String {
        self.account.to_string()
    }

    /// `x-account_id` and `x-user_id`, which every real answer but a 401 carries.
    fn identity_headers(&self) -> [(String, String); 2] {
        [("x-account_id".into(), self.account_id()), ("x-user_id".into(), self.user.to_string())]
    }
}

impl MockApi for MailerLite {
    fn handle(&self, req: &MockRequest) -> MockResponse {
        let expected = format!("Bearer {API_KEY}");
        if req.authorization.as_deref().map(str::trim) != Some(expected.as_str()) {
            // The real 401 carries no rate-limit headers; the server adds none to a 401.
            return json(401, br#"{"message":"Unauthenticated."}"#.to_vec());
        }
        let mut response = match self.route(req) {
            Ok(body) => json(200, body),
            Err(error) => error,
        };
        response.headers.extend(self.identity_headers());
        response
    }

    fn too_many_requests(&self, retry_after_secs: u64) -> MockResponse {
        let mut response = json(429, br#"{"message":"Too Many Attempts."}"#.to_vec());
        response.headers.push(("Retry-After".into(), retry_after_secs.to_string()));
        response.headers.extend(self.identity_headers());
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

/// Laravel's validation failure body; a struct, so `message` comes first as on the wire.
#[derive(serde::Serialize)]
struct Invalid<'a> {
    message: &'a str,
    errors: BTreeMap<&'a str, [&'a str; 1]>,
}

/// Laravel's validation failure for one parameter, the older generic wording.
fn invalid(field: &str, message: &str) -> MockResponse {
    unprocessable("The given data was invalid.", field, message)
}

/// A 422 whose `message` repeats the first error, as newer Laravel words it.
fn unprocessable(summary: &str, field: &str, message: &str) -> MockResponse {
    let body = Invalid { message: summary, errors: BTreeMap::from([(field, [message])]) };
    json(422, serde_json::to_vec(&body).expect("an error body serializes"))
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
        page_envelope(req, self.limit(req)?, &groups, None)
    }

    fn list_fields(&self, req: &MockRequest) -> Answer {
        let kind = req.param("filter[type]");
        let fields: Vec<&Field> = self.fields.iter().filter(|f| kind.is_none_or(|k| f.kind == k)).collect();
        page_envelope(req, self.limit(req)?, &fields, None)
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
        page_envelope(req, self.limit(req)?, &campaigns, Some(self.aggregations()))
    }

    fn aggregations(&self) -> Aggregations {
        let count = |status| self.campaigns.iter().filter(|c| c.status == status).count();
        Aggregations { all: self.campaigns.len(), draft: count("draft"), ready: count("ready"), sent: count("sent") }
    }

    /// `limit`: default 25; above 100 silently capped, or refused when
    /// [`MockOptions::reject_large_limit`] asks for it; 0 is kept for the count form.
    fn limit(&self, req: &MockRequest) -> Result<usize, MockResponse> {
        let limit = match req.param("limit") {
            None | Some("") => return Ok(DEFAULT_LIMIT),
            Some(text) => text.parse::<usize>().map_err(|_| invalid("limit", "The limit must be an integer."))?,
        };
        if limit > MAX_LIMIT && self.reject_large_limit {
            const TOO_LARGE: &str = "The limit may not be greater than 100.";
            return Err(unprocessable(TOO_LARGE, "limit", TOO_LARGE));
        }
        Ok(limit.min(MAX_LIMIT))
    }
}
