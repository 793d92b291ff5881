//! Embedded mock APIs: a small HTTP/1.1 server on loopback that answers like the real
//! MailerLite and Paligo APIs, with deterministic data from a seed, optional fault
//! injection and rate limiting. Used by `api2csv mock`, `api2csv demo` and the tests.
//!
//! This module holds the contract between the server and the APIs it serves; the
//! server itself lives in `server` (transport), `wire` (HTTP/1.1 framing), `fault`
//! and `limiter`, and each API in its own directory.

mod fault;
mod limiter;
pub mod mailerlite;
pub mod paligo;
mod server;
mod wire;

use std::sync::Arc;

pub use server::{start, MockServer};

/// The mock of one connector: how to build it, and the configuration that reaches it.
/// The connectors know nothing of their mocks; this table ties them together.
struct MockOf {
    connector: &'static str,
    api: fn(&MockOptions) -> Arc<dyn MockApi>,
    /// What the mock's base URL ends with after its origin.
    base_path: &'static str,
    config: fn(base_url: &str) -> serde_json::Value,
}

static MOCKS: &[MockOf] = &[
    MockOf {
        connector: "mailerlite",
        api: |opts| Arc::new(mailerlite::MailerLite::new(opts)),
        base_path: mailerlite::BASE_PATH,
        config: |base_url| serde_json::json!({"base_url": base_url, "api_key": mailerlite::API_KEY}),
    },
    MockOf {
        connector: "paligo",
        api: |opts| Arc::new(paligo::Paligo::new(opts)),
        base_path: "/api/v2",
        config: |base_url| serde_json::json!({"base_url": base_url, "username": paligo::USERNAME, "api_key": paligo::API_KEY}),
    },
];

/// A running mock and the configuration that reaches it.
pub struct RunningMock {
    pub server: MockServer,
    pub config: serde_json::Value,
}

/// Starts the mock of connector `def` on `addr` (port 0: a free one).
pub fn start_mock(def: &crate::connector::Def, addr: &str, opts: &MockOptions) -> crate::error::Result<RunningMock> {
    use crate::error::Error;
    let Some(mock) = MOCKS.iter().find(|m| m.connector == def.name) else {
        return Err(Error::Usage(format!("there is no embedded mock of {}", def.name)));
    };
    let server =
        start((mock.api)(opts), addr, opts).map_err(|e| Error::Usage(format!("mock: cannot listen on {addr}: {e}")))?;
    let config = (mock.config)(&format!("{}{}", server.origin(), mock.base_path));
    Ok(RunningMock { server, config })
}

/// One request as the per-API handler sees it.
#[derive(Debug, Clone)]
pub struct MockRequest {
    pub method: String,
    /// Path without the query string, percent-decoded, e.g. `/api/subscribers`.
    pub path: String,
    /// Query parameters in order, percent-decoded (`filter[status]` stays as that key).
    pub query: Vec<(String, String)>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// `http://127.0.0.1:PORT`, for building the absolute URLs the APIs return.
    pub origin: String,
}

impl MockRequest {
    /// The first value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A complete response; the server may still damage it when injecting faults.
#[derive(Debug, Clone)]
pub struct MockResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Settings shared by every mock API.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Seed of the deterministic data generator.
    pub seed: u64,
    /// Size of the account: subscribers (MailerLite), assignments (Paligo).
    pub records: usize,
    /// Probability in 0..1 that a request gets an injected fault.
    pub fault_rate: f64,
    /// At most `requests` per `seconds` window; more get a 429 with `Retry-After`.
    pub rate_limit: Option<(u32, u32)>,
    /// 1 is the seed's account; each later generation mutates it deterministically.
    pub generation: u32,
    /// Test hook (MailerLite): the first alive group reports one active member more
    /// than it has, in `/groups` and in `include=groups`, while its memberships stay
    /// true, so a client's check of counters against listings has something to find.
    pub skew_group_counts: bool,
    /// A page size above 100 (MailerLite `limit`, Paligo `per_page`) gets a 422
    /// instead of being capped silently, as a stricter server version might do.
    pub reject_large_limit: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            seed: 1,
            records: 1000,
            fault_rate: 0.0,
            rate_limit: None,
            generation: 1,
            skew_group_counts: false,
            reject_large_limit: false,
        }
    }
}

/// For one table, the primary keys a generation added, changed or deleted (keys of
/// several columns joined with `,`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableMutations {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub deleted: Vec<String>,
}

/// What generation `g` changed relative to `g - 1`, per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mutations {
    pub tables: Vec<(String, TableMutations)>,
}

impl Mutations {
    /// The mutations of `table`, if it has any.
    pub fn table(&self, table: &str) -> Option<&TableMutations> {
        self.tables.iter().find(|(name, _)| name == table).map(|(_, m)| m)
    }
}

/// What one API does; the server around it does transport, faults and rate limits.
pub trait MockApi: Send + Sync + 'static {
    /// Answer a request that passed fault injection and rate limiting.
    fn handle(&self, req: &MockRequest) -> MockResponse;
    /// The 429 this API sends when the rate limit is exceeded.
    fn too_many_requests(&self, retry_after_secs: u64) -> MockResponse;
    /// Rate-limit headers this API adds to every answer (MailerLite has them, Paligo not).
    fn rate_limit_headers(&self, _limit: u32, _remaining: u32) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// splitmix64: tiny, fast and good enough to make faults and generated data
/// reproducible; shared by the server's fault draws and the MailerLite generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
