//! What a sync did, for people (the summary on stdout) and for scripts
//! (`DIR/last_sync.json`, written atomically after every run, ok or not).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::fsio::write_atomic;
use crate::sync::Report;
use crate::table::TableSummary;

pub const FILE_NAME: &str = "last_sync.json";

#[derive(Debug, Serialize)]
pub struct LastSync<'a> {
    pub version: u32,
    pub connector: &'a str,
    /// `ok`, `failed` or `interrupted`.
    pub status: &'static str,
    pub exit_status: i32,
    pub started_at: &'a str,
    pub finished_at: String,
    pub seconds: f64,
    pub requests: u64,
    pub retries: u64,
    /// Requests the API refused with 429.
    pub rate_limited: u64,
    pub rate_limit_wait_seconds: f64,
    pub pages_committed: u64,
    /// Where the interrupted run this one continued stood.
    pub resumed: Option<&'a str>,
    pub error: Option<String>,
    /// What the run warned about its configuration (an unknown key), so that a `-q`
    /// run from cron does not hide it.
    pub warnings: &'a [String],
    pub tables: BTreeMap<&'a str, &'a TableSummary>,
}

/// Writes `DIR/last_sync.json` for `report`.
pub fn write(
    dir: &Path,
    connector: &str,
    report: &Report,
    exit_status: i32,
    error: Option<String>,
    warnings: &[String],
) -> Result<()> {
    let status = match exit_status {
        0 => "ok",
        130 | 143 => "interrupted",
        _ => "failed",
    };
    let last = LastSync {
        version: 1,
        connector,
        status,
        exit_status,
        started_at: &report.started_at,
        finished_at: crate::timestamp::now(),
        seconds: (report.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        requests: report.stats.requests,
        retries: report.stats.retries,
        rate_limited: report.stats.refused,
        rate_limit_wait_seconds: (report.stats.waited.as_secs_f64() * 10.0).round() / 10.0,
        pages_committed: report.pages_committed,
        resumed: report.resumed.as_deref(),
        error,
        warnings,
        tables: report.tables.iter().filter(|t| !t.skipped).map(|t| (t.table.as_str(), t)).collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&last).expect("serializes");
    bytes.push(b'\n');
    write_atomic(&dir.join(FILE_NAME), &bytes)
}

/// The summary table a sync prints on stdout.
pub fn summary_text(report: &Report) -> String {
    let mut s = format!(
        "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}\n",
        "table", "read", "new", "changed", "unchanged", "deleted", "pages", "requests"
    );
    for t in &report.tables {
        if t.skipped {
            s.push_str(&format!("{:<18} finished by the interrupted run\n", t.table));
        } else {
            s.push_str(&format!(
                "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}\n",
                t.table, t.read, t.new, t.changed, t.unchanged, t.deleted, t.pages, t.requests
            ));
        }
    }
    let stats = &report.stats;
    // The tables' requests add up to the total but for the account check before them.
    let tables: u64 = report.tables.iter().filter(|t| !t.skipped).map(|t| t.requests).sum();
    let check = match stats.requests.saturating_sub(tables) {
        0 => String::new(),
        1 => "1 for the account check, ".to_string(),
        n => format!("{n} for the account check, "),
    };
    s.push_str(&format!(
        "{} requests ({check}{} retried, {} refused by the rate limit, {:.1}s waiting for it) in {:.1}s\n",
        stats.requests,
        stats.retries,
        stats.refused,
        stats.waited.as_secs_f64(),
        report.started.elapsed().as_secs_f64()
    ));
    s
}
