//! Writing an accepted page: each table's rows classified and encoded (a file
//! widened first if needed), and the commit handed to the committer, batched when
//! a page wrote no row.

use std::time::{Duration, Instant};

use super::read::Reader;
use super::session::Session;
use crate::connector::{Rows, Stream};
use crate::engine::table::TableWriter;
use crate::error::Result;
use crate::store::commit::{Append, Commit};
use crate::store::state::{Resume, State};

/// A page that appends nothing only moves the resume position; losing it to a crash
/// costs a re-read, never a row, so such pages are committed at most this often.
const IDLE_COMMIT_INTERVAL: Duration = Duration::from_secs(2);
/// Journaled keys (8 bytes each) an idle commit waits for at most: the journal
/// held in memory stays small however fast unchanged pages arrive.
const IDLE_JOURNAL_LIMIT: usize = 256 << 10;

impl Reader {
    /// Classifies and encodes the accepted page for each table, widening a file
    /// first if needed, and commits. Returns how many rows the tables got, and how
    /// many of them were new to this read.
    pub(super) fn write_page(
        &mut self,
        session: &mut Session,
        stream: &dyn Stream,
        only: Option<usize>,
    ) -> Result<(u64, u64)> {
        let (mut total, mut fresh) = (0, 0);
        let Reader { writers, batch, synced_at, fed, durable, .. } = self;
        fed.clear();
        fed.resize(writers.len(), false);
        for (i, w) in writers.iter_mut().enumerate() {
            if w.summary.skipped || only.is_some_and(|o| o != i) {
                continue;
            }
            let rows = match only {
                Some(_) => Rows::All(batch),
                None => stream.rows(i, batch),
            };
            fed[i] = !rows.is_empty();
            total += rows.len() as u64;
            if !w.advance_order(&rows) {
                session.committer.barrier()?;
                w.switch_to_set()?;
            }
            if w.classify(&rows)? {
                session.committer.barrier()?;
                let mut last = State::from_bytes(durable).expect("the state this process wrote reads back");
                w.widen(session.ctx.dir, &mut last)?;
                *durable = last.to_bytes();
            }
            w.encode(&rows, synced_at);
            w.summary.pages += u64::from(fed[i]);
            fresh += w.fresh;
        }
        let position = stream.position();
        let tables: Vec<&'static str> = match only {
            Some(i) => vec![self.writers[i].spec.name],
            None => self.plan.tables.clone(),
        };
        for t in tables {
            let resume = if only.is_some() { Resume::Verify(position.clone()) } else { Resume::Read(position.clone()) };
            session.state.table(t).resume = Some(resume);
        }
        self.commit(session, false)?;
        Ok((total, fresh))
    }

    pub(super) fn note_bad_times(&mut self) {
        let (n, first) = &mut self.bad_times;
        *n += self.batch.bad_timestamps;
        if first.is_none() {
            first.clone_from(&self.batch.first_bad_timestamp);
        }
    }

    /// Hands what the writers encoded to the committer with the state that counts it.
    /// A page that wrote no row is committed only every few seconds (or when forced).
    pub(super) fn commit(&mut self, session: &mut Session, force: bool) -> Result<()> {
        let rows = self.writers.iter().any(TableWriter::has_pending);
        let journal: usize = self.writers.iter().map(|w| w.keys.journal_pending()).sum();
        let idle = self.last_commit.elapsed() < IDLE_COMMIT_INTERVAL && journal < IDLE_JOURNAL_LIMIT;
        if !rows && !force && idle {
            return Ok(());
        }
        let mut appends: Vec<Append> = Vec::new();
        for w in self.writers.iter_mut().filter(|w| !w.summary.skipped && !w.finished) {
            w.take(&mut || session.committer.buffer(), &mut appends);
            let table = session.state.table(w.spec.name);
            *table.file_mut(w.target) = w.file.clone();
            table.seen_len = w.keys.seen_len;
            table.order = w.keys.order();
        }
        let commit = Commit::new(appends, session.state, session.committer.buffer());
        self.durable.clear();
        self.durable.extend_from_slice(&commit.state);
        session.committer.send(commit)?;
        self.last_commit = Instant::now();
        Ok(())
    }
}
