//! api2csv copies SaaS REST APIs into plain CSV files, incrementally and crash-safely.
//!
//! The modules, in the order data flows through them:
//!
//! - [`cmd`]: the command line, one file per command; [`config`]: the JSON configuration.
//! - [`connector`]: the one list of APIs, their tables and streams of pages.
//! - [`paginate`]: cursor, page number, steps and tree walk: what to ask next.
//! - [`http`]: one ureq agent, retries with backoff, `Retry-After`; [`pace`]: rate limits.
//! - [`parse`]: page bodies read once with serde_json into column-free batches.
//! - [`flatten`]: the columns of a table; [`timestamp`]: RFC 3339 for known fields.
//! - [`table`]: a table being written: new, changed, repeated; [`index`]: what each
//!   key looked like; [`order`]: a first sync's repeats without memory per key;
//!   [`seen`]: the journal of keys read; [`hashing`]: stable hashes.
//! - [`sink`]: CSV encoding, header and checksum checks, rewrites.
//! - [`commit`]: the committer thread; [`state`] (and [`state_v1`]): `state.json`;
//!   [`replace`]: the one file-replacement protocol; [`fsio`]: durable file steps.
//! - [`sync`] and [`read`]: the engine; [`validate`]: the directory is ours, unedited.
//! - [`compact`], [`repair`], [`manifest`], [`report`]: the other things a run writes.
//! - [`bundle`]: an export carried across an air gap, one file per sync (`bundle`, `apply`).
//! - [`log_setup`], [`progress`], [`signal`]: what users see on stderr, and Ctrl-C.
//! - [`mock`]: embedded mock APIs for the demo and the tests.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod cmd;
pub mod commit;
pub mod compact;
pub mod config;
pub mod connector;
pub mod error;
pub mod flatten;
pub mod fsio;
pub mod hashing;
pub mod http;
pub mod index;
pub mod log_setup;
pub mod manifest;
pub mod mock;
pub mod order;
pub mod pace;
pub mod paginate;
pub mod parse;
pub mod progress;
pub mod read;
pub mod repair;
pub mod replace;
pub mod report;
pub mod seen;
pub mod signal;
pub mod sink;
pub mod state;
pub mod state_v1;
pub mod sync;
pub mod table;
pub mod timestamp;
pub mod validate;
