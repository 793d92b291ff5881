//! The walk over one stream's pages: each page fetched (on the prefetch threads,
//! see [`super::prefetch`]), checked, accepted by the stream (paging signals), then
//! written ([`super::write`]); at the end of the read each table is finished
//! ([`super::finish`]).
//!
//! Per page: fetch (retries end there), parse into a batch and check the envelope
//! (a refused body is retried and leaves no trace), let the stream accept it (paging
//! signals), classify and encode each table's rows, and hand the commit to the
//! committer. The threads overlap: a fetcher fetches and parses page n+1 (and, in a
//! cursor listing, the other fetcher already asks for page n+2 on a guess) while
//! this one writes page n and the committer makes page n-1 durable. The walk (the
//! stream's state) stays on this thread.

use std::collections::HashSet;
use std::time::Instant;

use super::prefetch::{self, Fetched, Job, Prefetch};
use super::session::{Ctx, Session};
use crate::connector::{Confirm, Stream, StreamPlan};
use crate::engine::table::{TableSummary, TableWriter};
use crate::error::{Error, Result};
use crate::page::paginate::Position;
use crate::page::parse::{self, Batch};
use crate::page::timestamp;
use crate::store::hashing;
use crate::store::state::{Resume, Target};
use crate::term::progress::Snapshot;

/// Pages in a row of one pass of a listing whose records repeat, exactly, a page
/// already read in that pass: the server loops. Re-reading records is no loop (a
/// listing restarted, a member listing after the subscriber pass, shifted pages
/// repeat a record, rarely a whole page, never page after page).
const REPEATED_PAGES: u32 = 10;
/// Times one listing may start over within a run (a forgotten position, a refused
/// page size) before that is an error: each restart forgets the pass's positions.
const RESTARTS: u32 = 5;

/// The stream being read and the writers of its tables.
pub struct Reader {
    pub(super) plan: StreamPlan,
    pub(super) writers: Vec<TableWriter>,
    /// The page being written, and the buffers of the one before it, which the
    /// next page is parsed into.
    pub(super) batch: Batch,
    pub(super) spare: Batch,
    pub(super) envelope: parse::Envelope,
    pub(super) synced_at: String,
    pub(super) last_commit: Instant,
    /// Timestamps of the stream's records that were not valid date-times: how many,
    /// and the first.
    pub(super) bad_times: (u64, Option<String>),
    /// The client's figures when the stream started, for its own.
    pub(super) stats_before: crate::net::http::Stats,
    /// Which tables the last page brought rows to.
    pub(super) fed: Vec<bool>,
    /// The state as last made durable (the last commit, once the committer is idle,
    /// or the last save), serialized: what a widening commits with its replacement.
    /// The state in hand may be ahead of it: a page that wrote no row moves the read
    /// position without a commit, and the keys it read reach the journal only with
    /// the next.
    pub(super) durable: Vec<u8>,
}

/// Where a position stands, for the line that says a run resumes.
pub fn describe(p: &Position) -> String {
    match p {
        Position::Cursor(c) => format!("page {} of a cursor listing", c.pages + 1),
        Position::Page(p) => format!("page {}", p.page),
        Position::Steps(s) => format!("{} ({})", s.current().unwrap_or("done"), describe(&s.inner)),
        Position::Tree(t) => match t.current() {
            Some(f) => format!("level {} of the tree, under {}", f.level, f.parent.as_deref().unwrap_or("the roots")),
            None => "the end of the tree".into(),
        },
        Position::Each(e) => match e.keys.get(e.child).and_then(|k| k.get(e.index)) {
            Some(key) => format!("the listing for {key} ({})", describe(&e.inner)),
            None => describe(&e.parent),
        },
        Position::Done => "the end of its listing".into(),
    }
}

impl Reader {
    /// Opens the writers of `pending` (tables of `plan` not done yet).
    pub fn open(session: &mut Session, plan: &StreamPlan, pending: &[&'static str]) -> Result<Reader> {
        session.committer.barrier()?;
        let mut writers = Vec::new();
        for &t in &plan.tables {
            let spec = session.ctx.def.table(t).expect("a table of the connector");
            // The table's own state says which file it is written to: in a
            // `--full-refresh` run, a table whose rebuild is already in place, or one a
            // plain sync added to the run, has no `.refresh` file.
            let rebuilding = session.state.tables.get(t).is_some_and(|s| s.refresh.is_some());
            let target = if rebuilding { Target::Refresh } else { Target::Table };
            let w = if pending.contains(&t) {
                TableWriter::open(session.ctx.dir, spec, session.state, target, true)?
            } else {
                // Finished by the interrupted run: read along, write nothing.
                TableWriter::skipped(spec, target)
            };
            writers.push(w);
        }
        Ok(Reader {
            plan: plan.clone(),
            writers,
            batch: Batch::default(),
            spare: Batch::default(),
            envelope: parse::Envelope::default(),
            synced_at: timestamp::now(),
            last_commit: Instant::now(),
            bad_times: (0, None),
            stats_before: session.ctx.client.stats(),
            fed: Vec::new(),
            durable: session.state.to_bytes(),
        })
    }

    pub fn summaries(&self) -> Vec<TableSummary> {
        self.writers.iter().filter(|w| !w.summary.skipped).map(|w| w.summary.clone()).collect()
    }

    /// Reads the stream (unless an interrupted run had) and finishes each table.
    pub fn run(&mut self, session: &mut Session) -> Result<()> {
        let first = self.plan.tables[0];
        let pending = self.writers.iter().filter(|w| !w.summary.skipped).map(|w| w.spec.name);
        let positions: Vec<Option<Resume>> =
            pending.map(|t| session.state.tables.get(t).and_then(|s| s.resume.clone())).collect();
        // Pending tables are read together: all still reading (a position, or none
        // yet), or all past their read.
        let resume = positions.iter().find_map(|r| match r {
            Some(Resume::Read(p)) => Some(Some(p.clone())),
            _ => None,
        });
        let resume = resume.or_else(|| positions.iter().all(Option::is_none).then_some(None));
        let label = self.plan.tables.join(" + ");
        session.progress.start_table(&label, session.ctx.checked.totals.get(first).copied());
        // The interrupted run's keys of the first table, counted in its journal.
        let journal = session.state.tables.get(first).and_then(|t| t.seen_len.as_ref());
        session.progress.resumed_after(journal.map_or(0, |j| crate::store::seen::keys_in(j.len)));
        if let Some(position) = resume {
            let mut stream = session.ctx.connector.open(&self.plan, position);
            stream.set_created_since(session.state.tables.get(first).and_then(|t| t.created_since));
            self.pages(session, stream.as_mut(), None)?;
            for w in &mut self.writers {
                w.keys.forget_abandoned()?;
            }
            let deletes = session.state.run.as_ref().is_some_and(|r| r.deletes);
            for w in self.writers.iter().filter(|w| !w.summary.skipped) {
                let t = w.spec.name;
                let after = match w.spec.confirm {
                    Confirm::Reread if deletes && w.keys.has_unseen() => {
                        Resume::Verify(session.ctx.connector.reread(t, None).position())
                    }
                    _ => Resume::Confirm,
                };
                session.state.table(t).resume = Some(after);
            }
        }
        for i in 0..self.writers.len() {
            if !self.writers[i].summary.skipped {
                self.finish_table(session, i)?;
            }
        }
        session.progress.finish_table(&self.snapshot(session.ctx));
        if let (n @ 1.., first) = &self.bad_times {
            log::warn!(
                "{first_table}: {n} timestamps were not valid date-times and are written as sent (the first: {:?})",
                first.as_deref().unwrap_or(""),
                first_table = self.plan.tables[0],
            );
        }
        for w in &self.writers {
            if w.keyless > 0 {
                log::warn!("{}: {} records without a primary key were skipped", w.spec.name, w.keyless);
            }
        }
        Ok(())
    }

    fn snapshot(&self, ctx: &Ctx) -> Snapshot {
        let mut s = Snapshot::default();
        for w in self.writers.iter().filter(|w| !w.summary.skipped) {
            s.pages = s.pages.max(w.summary.pages);
            s.read += w.summary.read;
            s.new += w.summary.new;
            s.changed += w.summary.changed;
            s.unchanged += w.summary.unchanged;
            s.deleted += w.summary.deleted;
        }
        let first = self.writers.iter().find(|w| w.spec.name == self.plan.tables[0]);
        s.counted = first.map_or(0, |w| w.summary.read);
        let (now, before) = (ctx.client.stats(), self.stats_before);
        s.requests = now.requests - before.requests;
        s.retries = now.retries - before.retries;
        s.waited = now.waited.saturating_sub(before.waited);
        s
    }

    /// Reads pages until the stream is done. With `only`, a re-read for the deletion
    /// check of that writer: its rows alone, and repeats are expected.
    ///
    /// The next page is fetched and parsed on a fetcher thread while this one is
    /// written: as soon as a page is accepted the stream knows its next request
    /// (and a guessed page may already be in).
    /// Nothing of a page reaches a file or the state before it is accepted here, so
    /// a page fetched ahead of an error or a signal is simply dropped.
    pub(super) fn pages(&mut self, session: &mut Session, stream: &mut dyn Stream, only: Option<usize>) -> Result<()> {
        let client = session.ctx.client;
        let (result, wasted) = prefetch::run(client, |ahead| self.read(session, stream, only, ahead));
        // A guess turned down after the last page taken still cost its requests.
        self.writers[only.unwrap_or(0)].summary.requests += wasted;
        result
    }

    fn read(
        &mut self,
        session: &mut Session,
        stream: &mut dyn Stream,
        only: Option<usize>,
        ahead: &mut Prefetch,
    ) -> Result<()> {
        let mut pass = Pass::default();
        let bound = session.ctx.checked.totals.get(self.plan.tables[0]).map(|n| n.saturating_mul(2) + 1000);
        let mut spare = std::mem::take(&mut self.spare);
        if let Some(request) = stream.request() {
            let lead = only.is_none();
            ahead.start(Job { request, reading: stream.reading(), batch: std::mem::take(&mut spare), lead });
        }
        while let Some(fetched) = ahead.take()? {
            let Fetched { request, url, result, batch, requests } = fetched;
            // Charged to the stream's first table (or the one re-read) now, so that a
            // page that ends the read in an error still counts; moved below to the
            // table the page fed.
            let page_of = only.unwrap_or(0);
            self.writers[page_of].summary.requests += requests;
            if session.ctx.interrupt.received().is_some() {
                return Err(Error::Interrupted);
            }
            spare = std::mem::replace(&mut self.batch, batch);
            let moved_on = match result {
                Ok(envelope) => {
                    self.envelope = envelope;
                    false
                }
                // The stream moves on instead: a 404 for a position the server no
                // longer knows, a refused page size.
                Err(Error::Api { status: 404 | 410, .. }) if stream.not_found() => true,
                Err(Error::Api { status: 422, ref message, .. })
                    if stream.refuses_page_size(message) && stream.shrink_page_size() =>
                {
                    true
                }
                Err(e) => return Err(e),
            };
            if moved_on {
                let next = stream.request();
                // The same listing again from its start: a new pass, whose loop
                // guard starts afresh; another listing: a new listing.
                if next.as_ref().is_some_and(|n| request.same_listing(n) || request.restarted_by(n)) {
                    if !pass.restart() {
                        let detail = format!("the listing started over {RESTARTS} times in this run (the server forgot its position or refused the page size each time)");
                        return Err(Error::Response { url, detail });
                    }
                    if only.is_none() {
                        self.writers.iter_mut().for_each(|w| w.keys.restart_pass());
                    }
                } else {
                    pass = Pass::default();
                    self.writers.iter_mut().for_each(|w| w.keys.new_listing());
                }
                ahead.forget();
                if let Some(request) = next {
                    ahead.start(Job {
                        request,
                        reading: stream.reading(),
                        batch: std::mem::take(&mut spare),
                        lead: false,
                    });
                }
                continue;
            }
            let mut counts = session.state.run.as_mut().map(|r| std::mem::take(&mut r.counts)).unwrap_or_default();
            let accepted = stream.accept(&self.envelope, &self.batch, &mut counts);
            if let Some(run) = session.state.run.as_mut() {
                run.counts = counts;
            }
            accepted.map_err(|detail| Error::Response { url: url.clone(), detail })?;
            self.note_bad_times();
            let next = stream.request();
            let continues = next.as_ref().is_some_and(|next| request.same_listing(next));
            if pass.repeats(content_hash(&self.batch)) >= REPEATED_PAGES && continues {
                let detail = format!("{REPEATED_PAGES} pages in a row repeated pages already read in this pass: the listing repeats itself or never ends");
                return Err(Error::Response { url, detail });
            }
            if let Some(next) = &next {
                // A listing that repeats itself lately asks for no page on a guess.
                let lead = only.is_none() && pass.repeated == 0;
                ahead.start(Job {
                    request: next.clone(),
                    reading: stream.reading(),
                    batch: std::mem::take(&mut spare),
                    lead,
                });
            }
            self.write_page(session, stream, only)?;
            if !continues {
                pass = Pass::default();
                self.writers.iter_mut().for_each(|w| w.keys.new_listing());
            }
            let fed = (0..self.writers.len()).find(|&i| only.is_none_or(|o| o == i) && self.fed[i]);
            if let Some(fed) = fed.filter(|&f| f != page_of) {
                self.writers[page_of].summary.requests -= requests;
                self.writers[fed].summary.requests += requests;
            }
            if let Some(bound) = bound.filter(|_| only.is_none()) {
                if self.writers[0].received > bound {
                    let detail = format!(
                        "more records than the {} the account announced",
                        session.ctx.checked.totals[self.plan.tables[0]]
                    );
                    return Err(Error::Response { url, detail });
                }
            }
            session.progress.update(&self.snapshot(session.ctx));
        }
        self.spare = spare;
        Ok(())
    }
}

/// The loop guard of one pass of a listing: a hash of the records of each page read
/// in it, and how many pages in a row repeated one of them. A restart begins a new
/// pass; the restarts of the listing are counted.
#[derive(Default)]
struct Pass {
    pages: HashSet<u64>,
    repeated: u32,
    restarts: u32,
}

impl Pass {
    /// Notes a page of records hashing to `hash`: the pages in a row that repeated one.
    fn repeats(&mut self, hash: u64) -> u32 {
        self.repeated = if self.pages.insert(hash) { 0 } else { self.repeated.saturating_add(1) };
        self.repeated
    }

    /// The listing starts over: a new pass; false once it has done so too often.
    fn restart(&mut self) -> bool {
        let restarts = self.restarts.saturating_add(1);
        *self = Pass { restarts, ..Pass::default() };
        restarts <= RESTARTS
    }
}

/// A hash of the records of a page, as parsed (paths and values): two pages hash
/// alike when they hold the same records in the same order, whatever their paging
/// signals say.
fn content_hash(batch: &Batch) -> u64 {
    // The values in one pass over the buffer that holds them all, then the shape:
    // each cell's path (hashed once a page: paths repeat in every record) and length.
    let mut paths: Vec<u64> = Vec::new();
    let mut h = hashing::stable(0, batch.all_values());
    for i in 0..batch.len() {
        for cell in batch.record(i) {
            let id = cell.path as usize;
            if id >= paths.len() {
                paths.resize(id + 1, 0);
            }
            if paths[id] == 0 {
                paths[id] = hashing::stable(1, batch.path(cell.path)) | 1;
            }
            h = hashing::fold(h ^ paths[id], batch.value(cell).len() as u64);
        }
        h = hashing::fold(h, u64::MAX);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_counts_repeated_pages_in_a_row_and_restarts_afresh() {
        let mut pass = Pass::default();
        // Shifted pages repeat a page now and then: the count starts over.
        assert_eq!([1, 2, 1, 3, 2, 4].map(|h| pass.repeats(h)), [0, 0, 1, 0, 1, 0]);
        // A loop repeats page after page.
        assert_eq!([1, 2, 3, 4].map(|h| pass.repeats(h)), [1, 2, 3, 4]);
        // A restart forgets the pages of the abandoned pass, not that it restarted.
        assert!(pass.restart());
        assert_eq!(pass.repeats(1), 0);
        for _ in 1..RESTARTS {
            assert!(pass.restart());
        }
        assert!(!pass.restart());
    }

    #[test]
    fn page_hashes_see_records_not_paging_signals() {
        let spec = parse::Spec::records_in(&["data"]);
        let hash = |body: &str| {
            let mut batch = Batch::default();
            parse::parse(body.as_bytes(), &spec, &mut batch).unwrap();
            content_hash(&batch)
        };
        let a = hash(r#"{"data":[{"id":"1"},{"id":"2"}],"meta":{"next_cursor":"x"}}"#);
        assert_eq!(a, hash(r#"{"data":[{"id":"1"},{"id":"2"}],"meta":{"next_cursor":"y"}}"#));
        assert_ne!(a, hash(r#"{"data":[{"id":"2"},{"id":"1"}],"meta":{"next_cursor":"x"}}"#));
        assert_ne!(a, hash(r#"{"data":[{"id":"12"}],"meta":{"next_cursor":"x"}}"#));
        assert_ne!(hash(r#"{"data":[{"a":"1"}]}"#), hash(r#"{"data":[{"b":"1"}]}"#));
        // The same bytes cut into other cells or other records.
        assert_ne!(hash(r#"{"data":[{"a":"12","b":""}]}"#), hash(r#"{"data":[{"a":"1","b":"2"}]}"#));
        assert_ne!(hash(r#"{"data":[{"a":"1","b":"2"}]}"#), hash(r#"{"data":[{"a":"1"},{"b":"2"}]}"#));
    }
}
