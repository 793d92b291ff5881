//! What each API offers: its tables, their primary keys and timestamp fields, and a
//! page reader per table that resumes from a committed position.
//!
//! A new API is one file here (and one in `mock/`), registered in [`NAMES`] and
//! [`requirements`]/[`build`].

pub mod mailerlite;
pub mod paligo;

use serde_json::Value;

use crate::config::{Config, Requirements};
use crate::error::Result;
use crate::flatten::{Columns, Page, TimeFormat};
use crate::http::{is_loopback, scheme_and_host, Client, ClientConfig, Secret};
use crate::json::{self, Parser};

/// The connectors, in the order `--help` lists them.
pub const NAMES: &[&str] = &["mailerlite", "paligo"];

/// One table of a connector.
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    pub primary_key: &'static [&'static str],
    /// Top-level keys holding timestamps, written as RFC 3339 UTC.
    pub timestamps: &'static [&'static str],
    /// How the table is read, for `api2csv tables`.
    pub read_as: &'static str,
}

/// An API the tool can sync.
pub trait Connector {
    fn name(&self) -> &'static str;
    fn tables(&self) -> &'static [TableSpec];
    fn time_format(&self) -> TimeFormat;
    /// A reader of `table` that starts where `start` says.
    fn open<'a>(&'a self, client: &'a Client, table: &str, start: &Start) -> Result<Box<dyn PageReader + 'a>>;
    /// For a table's first sync: records created before this Unix time are never
    /// synced (`initial_sync_days`). The cut-off is kept for every later sync.
    fn created_since(&self, _table: &str) -> Option<i64> {
        None
    }
    /// One cheap request that proves the credentials; returns what to tell the user.
    fn check(&self, client: &Client) -> Result<String>;
    /// Whether the record of `table` with primary key `key` still exists, asked of a
    /// key that a complete read did not see, before it gets a tombstone. Page-number
    /// paging can skip a record when others are deleted during the read; where the
    /// API can show single records, this keeps such a record from looking deleted.
    fn still_exists(&self, _client: &Client, _table: &str, _key: &[Vec<u8>]) -> Result<bool> {
        Ok(false)
    }
}

/// Where a table's reading starts.
#[derive(Debug, Clone, Copy)]
pub struct Start<'v> {
    /// The committed position; null: at the beginning.
    pub resume: &'v Value,
    /// Skip records created before this Unix time.
    pub created_since: Option<i64>,
}

/// The pages of one table, read lazily, one per call.
pub trait PageReader {
    /// Reads the next page's records into `page`; false once the table is finished
    /// (the page may still hold the last records).
    fn next_page(&mut self, page: &mut Page, cols: &mut Columns) -> Result<bool>;
    /// Where reading resumes after the pages returned so far.
    fn position(&self) -> Value;
}

/// What to do with each record of a page: flatten it into a row, or pick fields.
pub type OnRecord<'r> = dyn FnMut(&mut Parser, &mut Page, &mut Columns) -> json::Result<()> + 'r;

/// The usual [`OnRecord`]: the whole record becomes one row.
pub fn flatten_record(p: &mut Parser, page: &mut Page, cols: &mut Columns) -> json::Result<()> {
    page.flatten_record(p, cols)?;
    page.end_row();
    Ok(())
}

/// GETs `path` and lets `parse` read the body into `page`. A body that `parse`
/// rejects leaves `page` as it was and is retried like a failed request.
pub fn fetch_into<T>(
    client: &Client,
    path: &str,
    query: &[(&str, &str)],
    page: &mut Page,
    cols: &mut Columns,
    mut parse: impl FnMut(&[u8], &mut Page, &mut Columns) -> std::result::Result<T, String>,
) -> Result<T> {
    client.fetch(path, query, |body| {
        std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
        let mark = page.mark();
        let parsed = parse(body, page, cols);
        if parsed.is_err() {
            page.rollback(mark);
        }
        parsed
    })
}

/// The configuration rules of connector `name`.
pub fn requirements(name: &str) -> Option<Requirements> {
    match name {
        "mailerlite" => Some(mailerlite::REQUIREMENTS),
        "paligo" => Some(paligo::REQUIREMENTS),
        _ => None,
    }
}

/// The connector `name` for a validated configuration.
pub fn build(name: &str, config: &Config) -> Option<Box<dyn Connector>> {
    match name {
        "mailerlite" => Some(Box::new(mailerlite::MailerLite::new(config))),
        "paligo" => Some(Box::new(paligo::Paligo::new(config))),
        _ => None,
    }
}

/// The tables of connector `name`, without a configuration.
pub fn tables(name: &str) -> Option<&'static [TableSpec]> {
    match name {
        "mailerlite" => Some(mailerlite::TABLES),
        "paligo" => Some(paligo::TABLES),
        _ => None,
    }
}

/// The HTTP client for connector `name` and `config`, with the connector's
/// `Authorization` header, paced to the API's rate limit unless it is on loopback
/// (the embedded mock, which limits only when asked to with `--rate-limit`).
pub fn client(name: &str, config: &Config) -> Client {
    let loopback = scheme_and_host(&config.base_url).is_some_and(|(_, host)| is_loopback(host));
    let pace = requirements(name).map(|r| r.requests_per_minute).filter(|_| !loopback);
    Client::new(ClientConfig {
        base_url: config.base_url.clone(),
        authorization: Secret::new(authorization(name, config)),
        timeout: config.timeout,
        retries: config.retries,
        requests_per_minute: pace,
    })
}

/// The `Authorization` header of connector `name`: MailerLite takes a bearer token,
/// Paligo HTTP Basic `username:api_key`.
pub fn authorization(name: &str, config: &Config) -> String {
    match name {
        "paligo" => {
            let user = config.username.as_deref().unwrap_or("");
            format!("Basic {}", base64(format!("{user}:{}", config.api_key.expose()).as_bytes()))
        }
        _ => format!("Bearer {}", config.api_key.expose()),
    }
}

/// Standard base64 with padding, for HTTP Basic credentials.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, base_url: &str) -> Config {
        let mut map = serde_json::Map::new();
        map.insert("api_key".into(), "k".into());
        map.insert("username".into(), "u".into());
        map.insert("base_url".into(), base_url.into());
        crate::config::from_map(&requirements(name).unwrap(), &map, &|_| None).unwrap()
    }

    #[test]
    fn real_apis_are_paced_and_the_loopback_mock_is_not() {
        let c = client("paligo", &config("paligo", "https://acme.paligoapp.com/api/v2"));
        assert_eq!(c.requests_per_minute(), Some(50));
        let c = client("mailerlite", &config("mailerlite", "https://connect.mailerlite.com/api"));
        assert_eq!(c.requests_per_minute(), Some(120));
        let c = client("mailerlite", &config("mailerlite", "http://127.0.0.1:9/api"));
        assert_eq!(c.requests_per_minute(), None);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")];
        for (plain, encoded) in cases {
            assert_eq!(super::base64(plain.as_bytes()), encoded);
        }
    }
}
