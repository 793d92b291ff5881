//! api2csv copies SaaS REST APIs into plain CSV files, incrementally and crash-safely.
//!
//! The folders, in the order data flows through them:
//!
//! - [`cli`]: the command line, one file per command; [`config`]: the JSON configuration.
//! - [`connector`]: the one list of APIs; everything an API is known by (tables,
//!   streams of pages, query keys, quirks) lives here and nowhere else.
//! - [`net`]: the HTTP client, retries, `Retry-After`, pacing under rate limits.
//! - [`page`]: one body read once into a batch; paging positions; timestamps.
//! - [`engine`]: one sync run: the walk over pages, read-ahead, each table being
//!   written, the end of a table, the report.
//! - [`store`]: the output directory and its crash protocol: `state.json`, commits,
//!   file replacement, CSV encoding, key index, validation, compact, repair, manifest.
//! - [`bundle`]: an export carried across an air gap, one file per sync (`bundle`, `apply`).
//! - [`term`]: what users see on stderr (logging, progress), and Ctrl-C.
//! - [`mock`]: embedded mock APIs for the demo and the tests.
//! - [`error`]: the one error type, and the exit status it maps to.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod cli;
pub mod config;
pub mod connector;
pub mod engine;
pub mod error;
pub mod mock;
pub mod net;
pub mod page;
pub mod store;
pub mod term;
