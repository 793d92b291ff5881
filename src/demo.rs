//! `api2csv demo` and `api2csv mock`: the embedded mock APIs put to use.
//!
//! The demo runs the real thing end to end with nothing to set up: a mock server on a
//! free loopback port, a sync over real HTTP into real files, then compaction.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use crate::cli::{init_logging, say, summary_text, sync_with};
use crate::config::{self, Config};
use crate::connector;
use crate::error::{Error, Result};
use crate::mock::{self, MockApi, MockOptions, MockServer};
use crate::state::State;
use crate::{compact, sync};

/// Which connectors the demo syncs, with the size of each mock account.
const DEMO: &[(&str, usize)] = &[("mailerlite", 2000), ("paligo", 2000)];

/// The mock API of `connector` and the base path its client uses.
fn mock_api(connector: &str, opts: &MockOptions) -> (Arc<dyn MockApi>, &'static str) {
    match connector {
        "paligo" => (Arc::new(mock::paligo::Paligo::new(opts)), "/api/v2"),
        _ => (Arc::new(mock::mailerlite::MailerLite::new(opts)), "/api"),
    }
}

/// A running mock of `connector` and the configuration that reaches it.
pub struct RunningMock {
    pub server: MockServer,
    pub config: serde_json::Value,
}

/// Starts the mock of `connector` on `addr` (port 0: a free one).
pub fn start_mock(connector: &str, addr: &str, opts: &MockOptions) -> Result<RunningMock> {
    let (api, base_path) = mock_api(connector, opts);
    let server =
        mock::start(api, addr, opts).map_err(|e| Error::Usage(format!("mock: cannot listen on {addr}: {e}")))?;
    let base_url = format!("{}{base_path}", server.origin());
    let config = match connector {
        "paligo" => json!({
            "base_url": base_url,
            "username": mock::paligo::USERNAME,
            "api_key": mock::paligo::API_KEY,
        }),
        _ => json!({"base_url": base_url, "api_key": mock::mailerlite::API_KEY}),
    };
    Ok(RunningMock { server, config })
}

/// `api2csv mock`: serve until killed.
pub fn serve_mock(connector: &str, addr: &str, opts: &MockOptions) -> Result<()> {
    init_logging(false);
    let mock = start_mock(connector, addr, opts)?;
    say(&format!("{connector} mock API listening; configuration for it:\n{}\n", mock.config));
    mock.server.wait();
    Ok(())
}

/// `api2csv demo`: every connector against its mock, into `out/<connector>/`: a
/// first sync, then a second one after the mock account changed (generation 2),
/// which appends only the changes, then compaction.
pub fn run(out: &Path) -> Result<()> {
    init_logging(false);
    for &(name, records) in DEMO {
        let dir = out.join(name);
        for generation in [1, 2] {
            let opts = MockOptions { records, generation, ..MockOptions::default() };
            let mock = start_mock(name, "127.0.0.1:0", &opts)?;
            let config = mock_config(name, &mock)?;
            let what = if generation == 1 { "syncing" } else { "the account changed; syncing again" };
            say(&format!("== {name}: {what} (mock at {}) into {}\n", config.base_url, dir.display()));
            let options = sync::Options { dir: dir.clone(), tables: None, full_refresh: false };
            say(&summary_text(&sync_with(name, &config, &options)?));
        }
        compact::run(&dir)?;
        say(&files_text(&dir)?);
    }
    Ok(())
}

fn mock_config(name: &str, mock: &RunningMock) -> Result<Config> {
    let req = connector::requirements(name).expect("known connector");
    config::from_map(&req, mock.config.as_object().expect("object"), &|_| None)
}

fn files_text(dir: &Path) -> Result<String> {
    let state = State::load(dir)?.unwrap_or_else(|| State::new(""));
    let mut s = String::from("compacted, one row per record:\n");
    for (table, ts) in &state.tables {
        let path = crate::sink::table_path(dir, table);
        s.push_str(&format!("  {:<40} {:>7} rows, {} columns\n", path.display(), ts.rows, ts.columns.len() + 2));
    }
    Ok(s)
}
