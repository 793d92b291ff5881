//! The page stage: one response body becomes an envelope and a batch of records.
//!
//! [`parse`] reads a body once into a column-free [`parse::Batch`]; [`paginate`] keeps
//! the position in a listing and decides what to ask next (cursor, page number, steps,
//! tree walk); [`timestamp`] writes the fields a connector declares as times in
//! RFC 3339. Batches go on to [`crate::engine`].

pub(crate) mod paginate;
pub mod parse;
pub mod timestamp;
