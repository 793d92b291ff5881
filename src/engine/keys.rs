//! What a table's sync knows about the keys it meets: the index of the committed
//! keys (a later sync) or the order or set of the keys written (a first sync), the
//! journal of keys read, and the keys read in each pass of a listing that restarts.

use std::collections::HashSet;

use crate::connector::Confirm;
use crate::error::Result;
use crate::store::hashing::FxBuild;
use crate::store::index::{Change, KeyIndex};
use crate::store::keyset::KeySet;
use crate::store::seen::SeenLog;
use crate::store::state::{Journal, Order};

/// The rows a first sync writes, gathered for its key file: the keys of the page's
/// kept records, then their entries.
pub(super) struct Written {
    pub(super) entries: crate::store::keyfile::Spill,
    pub(super) page: Vec<u64>,
    pub(super) fingerprints: Vec<u64>,
}

#[derive(Default)]
pub struct Keys {
    pub(super) index: Option<KeyIndex>,
    pub(super) order: Option<Order>,
    /// First sync with keys out of order: every key written in this read.
    pub(super) set: Option<KeySet>,
    /// A first sync that wrote every row itself: the key and fingerprint of each row
    /// written, for the key file the next sync loads instead of reading the table.
    pub(super) written: Option<Written>,
    pub(super) seen: Option<SeenLog>,
    pub seen_len: Option<Journal>,
    /// Keys read in passes of the listing, for a table whose deletions are confirmed
    /// (by a re-read or the show route).
    pub(super) passes: Passes,
}

/// The keys a table read in the current pass of its listing, and those read only in
/// passes a restart abandoned: a record deleted during the read (the reason a
/// listing shrinks and restarts) was read there and never again.
#[derive(Debug, Default)]
pub(super) struct Passes {
    pub(super) current: Vec<u64>,
    pub(super) abandoned: HashSet<u64, FxBuild>,
}

impl Keys {
    /// Notes `key` as read on a page: journaled, and counted in the current pass of
    /// the listing.
    pub(super) fn read(&mut self, key: u64, confirm: Confirm) {
        if let Some(seen) = &mut self.seen {
            seen.push(key);
        }
        // Not for a table whose unseen keys are gone without a check: a key
        // wrongly taken for unread costs a check, never a false tombstone.
        if confirm != Confirm::Unseen && self.index.is_some() {
            self.passes.current.push(key);
            if !self.passes.abandoned.is_empty() {
                self.passes.abandoned.remove(&key);
            }
        }
    }

    pub fn order(&self) -> Option<Order> {
        self.order.clone()
    }

    /// A first sync: new unless the key was written in this read already. Without a
    /// set, [`super::table::TableWriter::advance_order`] found every key of the page moving on.
    pub(super) fn first_sync(&mut self, key: u64) -> Result<Change> {
        let Some(set) = &mut self.set else { return Ok(Change::New) };
        match set.insert(key) {
            Ok(true) => Ok(Change::New),
            Ok(false) => Ok(Change::Duplicate),
            Err(e) => Err(crate::error::Error::io("write", &set.path(), e)),
        }
    }

    /// Marks `key` as read (confirmed to exist), for the journal.
    pub fn confirm_seen(&mut self, key: u64) -> Result<()> {
        if let Some(seen) = &mut self.seen {
            seen.push(key);
        }
        match &mut self.index {
            Some(index) => index.mark_seen(key),
            None => Ok(()),
        }
    }

    /// Bytes of journal waiting for a commit (keys read on pages that wrote no row).
    pub fn journal_pending(&self) -> usize {
        self.seen.as_ref().map_or(0, SeenLog::pending)
    }

    /// Whether some committed key was not read in this sync.
    pub fn has_unseen(&self) -> bool {
        self.index.as_ref().is_some_and(KeyIndex::has_unseen)
    }

    /// The listing feeding the table moves on to another listing.
    pub fn new_listing(&mut self) {
        self.passes.current.clear();
    }

    /// The listing feeding the table started over: what its abandoned pass read
    /// counts as read only if a later pass reads it too.
    pub fn restart_pass(&mut self) {
        let Passes { current, abandoned } = &mut self.passes;
        abandoned.extend(current.drain(..));
    }

    /// After the read: keys read only in abandoned passes are taken for not read,
    /// so that the deletion check (a re-read) decides whether they still exist. In
    /// this run only: a resumed run replays the journal, and the next sync decides.
    pub fn forget_abandoned(&mut self) -> Result<()> {
        let abandoned = std::mem::take(&mut self.passes);
        if let Some(index) = &mut self.index {
            for key in abandoned.abandoned {
                index.unmark_seen(key)?;
            }
        }
        Ok(())
    }

    pub fn journaled(&self) -> bool {
        self.seen.is_some()
    }
}
