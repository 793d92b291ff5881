//! api2csv copies SaaS REST APIs into plain CSV files, incrementally and crash-safely.
//!
//! The modules, in the order data flows through them:
//!
//! - [`config`]: the connector's JSON configuration and its validation.
//! - [`http`]: one ureq agent, retries with backoff, `Retry-After`.
//! - [`pace`]: at most N requests a minute, the API's documented limit.
//! - [`connector`]: what each API offers: tables, primary keys, how pages are read.
//! - [`json`]: a one-pass reader of JSON pages that flattens records without allocating.
//! - [`flatten`]: columns of a table and the flattened row buffer.
//! - [`index`]: the fingerprint of each primary key's latest row: what changed.
//! - [`seen`]: the journal of keys read, so a resumed sync still finds deletions.
//! - [`sink`]: one CSV file per table, appended per page, widened atomically.
//! - [`state`]: `state.json`, rewritten atomically after every page, and the directory lock.
//! - [`sync`]: the engine tying pages, sink and state together.
//! - [`compact`]: rewrites a changelog CSV to one row per primary key.
//! - [`mock`]: embedded mock APIs for the demo and the tests.
#![forbid(unsafe_code)]

pub mod cli;
pub mod compact;
pub mod config;
pub mod connector;
pub mod demo;
pub mod error;
pub mod flatten;
pub mod hashing;
pub mod http;
pub mod index;
pub mod json;
pub mod log_setup;
pub mod manifest;
pub mod mock;
pub mod pace;
pub mod parse;
pub mod progress;
pub mod seen;
pub mod sink;
pub mod state;
pub mod sync;
pub mod timestamp;
