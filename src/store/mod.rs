//! The store: the output directory and its crash protocol.
//!
//! [`state`] is `state.json` (version 1 upgraded by a private child module);
//! [`commit`] is the one writer of it during a run; [`replace`] the one way a table
//! file is replaced; [`fsio`] the durable file steps under both. [`encode`] turns
//! rows into CSV bytes; [`table_file`] checks a file's committed bytes and rewrites it; [`index`] remembers what each key
//! looked like, [`keyfile`] keeps that index beside the table between syncs, [`keyset`]
//! is a first sync's set of keys written when they come in no order, and [`seen`]
//! journals the keys read; [`hashing`] holds the hashes
//! that must never change. [`validate`] proves the directory is ours and unedited;
//! [`compact`], [`repair`] and [`manifest`] are the other things written to it.

pub(crate) mod commit;
pub(crate) mod compact;
pub mod encode;
pub(crate) mod fsio;
pub(crate) mod hashing;
pub(crate) mod index;
pub(crate) mod keyfile;
pub(crate) mod keyset;
pub(crate) mod manifest;
pub(crate) mod repair;
pub(crate) mod replace;
pub(crate) mod seen;
pub mod state;
pub(crate) mod table_file;
pub(crate) mod validate;
