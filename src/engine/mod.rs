//! The engine: one sync run, from the directory check to the last commit.
//!
//! [`sync`] checks the directory and the credentials, then runs each stream in a
//! [`session`]; [`read`] walks a stream's pages, fetched ahead by the [`prefetch`]
//! threads; [`write`] encodes and commits each page; [`finish`] ends each table
//! (deletion check, tombstones, refresh swap); [`table`] is one table being written (new, changed, repeated rows), [`keys`]
//! what it knows of the keys it meets;
//! [`columns`] maps key paths to CSV columns and [`encoding`] a page's rows to them; [`order`] finds a first sync's repeats
//! without memory per key; [`report`] says what the run did. Bytes go on to
//! [`crate::store`].

pub mod columns;
pub(crate) mod encoding;
pub(crate) mod finish;
pub(crate) mod keys;
pub(crate) mod order;
pub(crate) mod prefetch;
pub(crate) mod read;
pub(crate) mod report;
pub(crate) mod session;
pub(crate) mod sync;
pub(crate) mod table;
pub(crate) mod write;
