//! The end of a table's read: the check for deleted records and their tombstones,
//! the swap of a full refresh, and the table marked done.

use super::read::Reader;
use super::session::Session;
use crate::connector::Confirm;
use crate::error::{Error, Result};
use crate::store::replace;
use crate::store::state::{Resume, Target};

/// Show-route checks between two commits of the deletion check.
const CHECKS_PER_COMMIT: usize = 20;

impl Reader {
    /// After the read: the deletion check and tombstones, the swap of a full refresh,
    /// and the table marked done.
    pub(super) fn finish_table(&mut self, session: &mut Session, i: usize) -> Result<()> {
        let table = self.writers[i].spec.name;
        let spec = self.writers[i].spec;
        let deletes = session.state.run.as_ref().is_some_and(|r| r.deletes) && self.writers[i].keys.journaled();
        if deletes {
            if let Some(Resume::Verify(position)) = session.state.tables.get(table).and_then(|t| t.resume.clone()) {
                let mut stream = session.ctx.connector.reread(table, Some(position));
                self.pages(session, stream.as_mut(), Some(i))?;
            }
            session.committer.barrier()?;
            session.state.table(table).resume = Some(Resume::Confirm);
            match spec.confirm {
                Confirm::Show => self.confirm(session, i)?,
                Confirm::Unseen | Confirm::Reread => {
                    let gone: Vec<Vec<Vec<u8>>> = self.writers[i].unseen()?.into_iter().map(|(_, v)| v).collect();
                    self.writers[i].tombstones(&gone, &self.synced_at.clone());
                    self.commit(session, true)?;
                }
            }
        }
        self.commit(session, true)?;
        session.committer.barrier()?;
        let run = session.state.run.clone().expect("a run");
        session.state.table(table).finish_read(&run.started_at);
        if self.writers[i].target == Target::Refresh {
            let rebuilt = session.state.table(table).refresh.clone().unwrap_or_default();
            session.state.run.as_mut().expect("a run").done.push(table.to_string());
            replace::replace(
                session.ctx.dir,
                session.state,
                table,
                crate::store::state::ReplaceKind::Refresh,
                rebuilt,
            )?;
            self.durable = session.state.to_bytes();
            // The rebuilt file is the table now: its key file is the rebuild's.
            let file = session.state.table(table).file.clone();
            self.writers[i].write_key_file(session.ctx.dir, &file);
        } else {
            session.state.run.as_mut().expect("a run").done.push(table.to_string());
            session.state.save(session.ctx.dir)?;
            self.durable = session.state.to_bytes();
            let file = session.state.table(table).file.clone();
            self.writers[i].write_key_file(session.ctx.dir, &file);
        }
        self.writers[i].finished = true;
        let _ = crate::store::fsio::remove_if_present(&crate::store::seen::seen_path(session.ctx.dir, table));
        Ok(())
    }

    /// Asks the show route about each key the read did not see; writes tombstones for
    /// those it answers 404 for, and journals the others, committing every few keys
    /// so that an interrupted check resumes where it stopped.
    fn confirm(&mut self, session: &mut Session, i: usize) -> Result<()> {
        let unseen = self.writers[i].unseen()?;
        let table = self.writers[i].spec.name;
        let mut kept = 0;
        let synced_at = self.synced_at.clone();
        for chunk in unseen.chunks(CHECKS_PER_COMMIT) {
            let mut gone = Vec::new();
            for (key, values) in chunk {
                if session.ctx.interrupt.received().is_some() {
                    return Err(Error::Interrupted);
                }
                let before = session.ctx.client.stats().requests;
                if session.ctx.connector.still_exists(session.ctx.client, table, values)? {
                    self.writers[i].keys.confirm_seen(*key)?;
                    kept += 1;
                } else {
                    gone.push(values.clone());
                }
                self.writers[i].summary.requests += session.ctx.client.stats().requests - before;
            }
            self.writers[i].tombstones(&gone, &synced_at);
            self.commit(session, true)?;
        }
        if kept > 0 {
            log::info!("{table}: {kept} records missing from the listing still exist (the listing shifted while it was read); not deleted");
        }
        Ok(())
    }
}
