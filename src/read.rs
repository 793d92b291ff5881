//! Reading one stream of pages into its tables, and finishing each table: the
//! check for deleted records and the tombstones, then the swap of a full refresh.
//!
//! Per page: fetch (retries end there), parse into a batch and check the envelope
//! (a refused body is retried and leaves no trace), let the stream accept it (paging
//! signals), classify and encode each table's rows, and hand the commit to the
//! committer. The threads overlap: a fetcher fetches and parses page n+1 (and, in a
//! cursor listing, the other fetcher already asks for page n+2 on a guess, see
//! [`Ahead`]) while this one writes page n and the committer makes page n-1 durable.
//! The walk (the stream's state) stays on this thread.

use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::{mpsc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::commit::{Append, Commit, Committer};
use crate::connector::{Confirm, Reading, Request, Rows, Stream, StreamPlan};
use crate::error::{Error, Result};
use crate::http::Client;
use crate::paginate::Position;
use crate::parse::{self, Batch};
use crate::progress::{Progress, Snapshot};
use crate::state::{Resume, State, Target};
use crate::sync::Ctx;
use crate::table::{TableSummary, TableWriter};
use crate::{hashing, replace, timestamp};

/// A page that appends nothing only moves the resume position; losing it to a crash
/// costs a re-read, never a row, so such pages are committed at most this often.
const IDLE_COMMIT_INTERVAL: Duration = Duration::from_secs(2);
/// Journaled keys (8 bytes each) an idle commit waits for at most: the journal
/// held in memory stays small however fast unchanged pages arrive.
const IDLE_JOURNAL_LIMIT: usize = 256 << 10;
/// Pages in a row of one pass of a listing whose records repeat, exactly, a page
/// already read in that pass: the server loops. Re-reading records is no loop (a
/// listing restarted, a member listing after the subscriber pass, shifted pages
/// repeat a record, rarely a whole page, never page after page).
const REPEATED_PAGES: u32 = 10;
/// Times one listing may start over within a run (a forgotten position, a refused
/// page size) before that is an error: each restart forgets the pass's positions.
const RESTARTS: u32 = 5;
/// Threads that fetch and parse pages: the walk's next page, and the one after it
/// asked for on a guess while that is parsed.
const FETCHERS: usize = 2;
/// Show-route checks between two commits of the deletion check.
const CHECKS_PER_COMMIT: usize = 20;

/// The stream being read and the writers of its tables.
pub struct Reader {
    plan: StreamPlan,
    writers: Vec<TableWriter>,
    /// The page being written, and the buffers of the one before it, which the
    /// next page is parsed into.
    batch: Batch,
    spare: Batch,
    envelope: parse::Envelope,
    synced_at: String,
    last_commit: Instant,
    /// Timestamps of the stream's records that were not valid date-times: how many,
    /// and the first.
    bad_times: (u64, Option<String>),
    /// The client's figures when the stream started, for its own.
    stats_before: crate::http::Stats,
    /// Which tables the last page brought rows to.
    fed: Vec<bool>,
    /// The state as last made durable (the last commit, once the committer is idle,
    /// or the last save), serialized: what a widening commits with its replacement.
    /// The state in hand may be ahead of it: a page that wrote no row moves the read
    /// position without a commit, and the keys it read reach the journal only with
    /// the next.
    durable: Vec<u8>,
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
    pub fn open(
        ctx: &Ctx,
        state: &mut State,
        committer: &mut Committer,
        plan: &StreamPlan,
        pending: &[&'static str],
    ) -> Result<Reader> {
        committer.barrier()?;
        let mut writers = Vec::new();
        for &t in &plan.tables {
            let spec = ctx.def.table(t).expect("a table of the connector");
            // The table's own state says which file it is written to: in a
            // `--full-refresh` run, a table whose rebuild is already in place, or one a
            // plain sync added to the run, has no `.refresh` file.
            let rebuilding = state.tables.get(t).is_some_and(|s| s.refresh.is_some());
            let target = if rebuilding { Target::Refresh } else { Target::Table };
            let w = if pending.contains(&t) {
                TableWriter::open(ctx.dir, spec, state, target, true)?
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
            stats_before: ctx.client.stats(),
            fed: Vec::new(),
            durable: state.to_bytes(),
        })
    }

    pub fn summaries(&self) -> Vec<TableSummary> {
        self.writers.iter().filter(|w| !w.summary.skipped).map(|w| w.summary.clone()).collect()
    }

    /// Reads the stream (unless an interrupted run had) and finishes each table.
    pub fn run(
        &mut self,
        ctx: &Ctx,
        state: &mut State,
        committer: &mut Committer,
        progress: &mut Progress,
    ) -> Result<()> {
        let first = self.plan.tables[0];
        let pending = self.writers.iter().filter(|w| !w.summary.skipped).map(|w| w.spec.name);
        let positions: Vec<Option<Resume>> =
            pending.map(|t| state.tables.get(t).and_then(|s| s.resume.clone())).collect();
        // Pending tables are read together: all still reading (a position, or none
        // yet), or all past their read.
        let resume = positions.iter().find_map(|r| match r {
            Some(Resume::Read(p)) => Some(Some(p.clone())),
            _ => None,
        });
        let resume = resume.or_else(|| positions.iter().all(Option::is_none).then_some(None));
        let label = self.plan.tables.join(" + ");
        progress.start_table(&label, ctx.checked.totals.get(first).copied());
        // The interrupted run's keys of the first table, counted in its journal.
        let journal = state.tables.get(first).and_then(|t| t.seen_len.as_ref());
        progress.resumed_after(journal.map_or(0, |j| crate::seen::keys_in(j.len)));
        if let Some(position) = resume {
            let mut stream = ctx.connector.open(&self.plan, position);
            stream.set_created_since(state.tables.get(first).and_then(|t| t.created_since));
            self.pages(ctx, state, committer, progress, stream.as_mut(), None)?;
            self.writers.iter_mut().for_each(TableWriter::forget_abandoned);
            let deletes = state.run.as_ref().is_some_and(|r| r.deletes);
            for w in self.writers.iter().filter(|w| !w.summary.skipped) {
                let t = w.spec.name;
                let after = match w.spec.confirm {
                    Confirm::Reread if deletes && w.has_unseen() => {
                        Resume::Verify(ctx.connector.reread(t, None).position())
                    }
                    _ => Resume::Confirm,
                };
                state.table(t).resume = Some(after);
            }
        }
        for i in 0..self.writers.len() {
            if !self.writers[i].summary.skipped {
                self.finish_table(ctx, state, committer, progress, i)?;
            }
        }
        progress.finish_table(&self.snapshot(ctx));
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
    fn pages(
        &mut self,
        ctx: &Ctx,
        state: &mut State,
        committer: &mut Committer,
        progress: &mut Progress,
        stream: &mut dyn Stream,
        only: Option<usize>,
    ) -> Result<()> {
        let client = ctx.client;
        let ahead = Ahead::new();
        let result = std::thread::scope(|scope| {
            let (outbox, done) = mpsc::channel::<Fetched>();
            let mut workers = Vec::new();
            for _ in 0..FETCHERS {
                let (ahead, outbox) = (&ahead, outbox.clone());
                let worker = std::thread::Builder::new().name("fetcher".into()).spawn_scoped(scope, move || {
                    // A fetcher that panics ends the read: the other one stops too,
                    // and the walk's wait for a page ends in an error, not forever.
                    let _close = CloseOnPanic(ahead);
                    while let Some((job, guess)) = ahead.task() {
                        let Some(fetched) = fetch(client, job, Some((ahead, guess))) else { continue };
                        if outbox.send(fetched).is_err() {
                            break;
                        }
                    }
                });
                workers.extend(worker.ok());
            }
            drop(outbox);
            // With one fetcher a guess would only queue behind its page: without
            // two, pages are fetched here.
            let done = (workers.len() == FETCHERS).then_some(done);
            if done.is_none() {
                ahead.close();
            }
            let mut prefetch = Prefetch { client, ahead: &ahead, done, waiting: None, in_flight: false };
            let mut result = self.read(ctx, state, committer, progress, stream, only, &mut prefetch);
            // Whatever is still in flight is not wanted (on success, at most a guess
            // the walk turned down): its backoff or pacing wait ends now.
            client.cancel(true);
            drop(prefetch);
            for worker in workers {
                if worker.join().is_err() && result.is_ok() {
                    let detail = "a thread fetching pages failed".to_string();
                    result = Err(Error::Request { url: client.base_url().to_string(), detail });
                }
            }
            result
        });
        client.cancel(false);
        // A guess turned down after the last page taken still cost its requests.
        let wasted = std::mem::take(&mut ahead.locked().wasted);
        self.writers[only.unwrap_or(0)].summary.requests += wasted;
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        ctx: &Ctx,
        state: &mut State,
        committer: &mut Committer,
        progress: &mut Progress,
        stream: &mut dyn Stream,
        only: Option<usize>,
        ahead: &mut Prefetch,
    ) -> Result<()> {
        let mut pass = Pass::default();
        let bound = ctx.checked.totals.get(self.plan.tables[0]).map(|n| n.saturating_mul(2) + 1000);
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
            if ctx.interrupt.received().is_some() {
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
                    if about_page_size(message) && stream.shrink_page_size() =>
                {
                    true
                }
                Err(e) => return Err(e),
            };
            if moved_on {
                let next = stream.request();
                // The same listing again from its start: a new pass, whose loop
                // guard starts afresh; another listing: a new listing.
                if next.as_ref().is_some_and(|n| same_listing(&request, n) || restarted(&request, n)) {
                    if !pass.restart() {
                        let detail = format!("the listing started over {RESTARTS} times in this run (the server forgot its position or refused the page size each time)");
                        return Err(Error::Response { url, detail });
                    }
                    if only.is_none() {
                        self.writers.iter_mut().for_each(TableWriter::restart_pass);
                    }
                } else {
                    pass = Pass::default();
                    self.writers.iter_mut().for_each(TableWriter::new_listing);
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
            let mut counts = state.run.as_mut().map(|r| std::mem::take(&mut r.counts)).unwrap_or_default();
            let accepted = stream.accept(&self.envelope, &self.batch, &mut counts);
            if let Some(run) = state.run.as_mut() {
                run.counts = counts;
            }
            accepted.map_err(|detail| Error::Response { url: url.clone(), detail })?;
            self.note_bad_times();
            let next = stream.request();
            let continues = next.as_ref().is_some_and(|next| same_listing(&request, next));
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
            self.write_page(ctx, state, committer, stream, only)?;
            if !continues {
                pass = Pass::default();
                self.writers.iter_mut().for_each(TableWriter::new_listing);
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
                        ctx.checked.totals[self.plan.tables[0]]
                    );
                    return Err(Error::Response { url, detail });
                }
            }
            progress.update(&self.snapshot(ctx));
        }
        self.spare = spare;
        Ok(())
    }
}

/// A page for a fetcher thread: the request, how to read its body, and the buffers
/// to parse it into.
struct Job {
    request: Request,
    reading: Reading,
    batch: Batch,
    /// The page after this one may be asked for on a guess before this one is
    /// parsed: the walk is not about to give the listing up.
    lead: bool,
}

/// A fetched page: its parsed body or why there is none, and the requests it took.
struct Fetched {
    request: Request,
    url: String,
    result: Result<parse::Envelope>,
    batch: Batch,
    requests: u64,
}

/// Fetches and parses the page of `job`, retrying what the client retries and
/// bodies that do not parse or whose envelope the check refuses. With `ahead`, at
/// the first body: a guessed page (`guess`) learns whether the walk wants it (`None`
/// when it does not), and a cursor page that may lead has its next page asked for
/// on a guess before it is parsed.
fn fetch(client: &Client, job: Job, ahead: Option<(&Ahead, Option<u64>)>) -> Option<Fetched> {
    let Job { request, reading, mut batch, lead } = job;
    let query: Vec<(&str, &str)> = request.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = client.url(&request.path, &query);
    let mut requests = 0;
    let guess = ahead.and_then(|(_, guess)| guess);
    // Whether the walk wants the page, and whether it may lead: known from the start
    // for a page the walk asked for, from the walk's verdict for a guessed one.
    let wanted = Cell::new(if guess.is_some() { None } else { Some(lead) });
    // A guess stops as soon as the walk turns it down, retries and waits included.
    let still_wanted = || match (ahead, guess) {
        (Some((ahead, _)), Some(id)) if wanted.get().is_none() => ahead.current(id),
        _ => true,
    };
    let mut first = true;
    let result = client.get_counted(&url, &mut requests, &still_wanted, |reply| {
        if let (Some((ahead, _)), true) = (ahead, std::mem::take(&mut first)) {
            if let Some(id) = guess {
                wanted.set(ahead.verdict(id));
            }
            let Some(lead) = wanted.get() else { return Ok(None) };
            let next = if lead && reading.follows_cursor { parse::next_cursor_hint(reply.body) } else { None };
            ahead.lead(guess, next.map(|c| (request.with_cursor(&c), reading)));
        }
        let mut envelope = parse::parse(reply.body, &reading.spec, &mut batch).map_err(|e| e.0)?;
        envelope.link_next = crate::connector::definition::link_next(reply.headers);
        (reading.check)(&envelope)?;
        Ok(Some(envelope))
    });
    if let (Some((ahead, _)), Some(id), None) = (ahead, guess, wanted.get()) {
        // No body came (the request failed, or the guess was turned down): the
        // walk's verdict decides whether the failure is its page's.
        wanted.set(ahead.verdict(id));
        if wanted.get().is_some() {
            ahead.lead(Some(id), None);
        }
    }
    let result = match (result, wanted.get()) {
        (_, None) | (Ok(None), _) => {
            if let Some((ahead, _)) = ahead {
                ahead.unwanted(batch, requests);
            }
            return None;
        }
        (Ok(Some(envelope)), _) => Ok(envelope),
        (Err(e), _) => Err(e),
    };
    Some(Fetched { request, url, result, batch, requests })
}

/// What the fetcher threads share with the walk: the pages to fetch, and the one
/// asked for on a guess.
///
/// A cursor page names its next page at the end of its body, so while it is parsed
/// the other fetcher asks for the page named there ([`parse::next_cursor_hint`]).
/// The walk still decides: the guessed page is used only when the walk's next
/// request is exactly the guessed one, and is dropped otherwise, so a wrong guess
/// costs a request and never a row. At most one guess is out at a time, and only
/// after a page the walk let lead (not in a listing it may give up). The guessed
/// page is read as the page that named it: a stream reads equal requests alike.
struct Ahead {
    queue: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Pages to fetch, with the id of their guess for a guessed one.
    tasks: VecDeque<(Job, Option<u64>)>,
    /// The guessed page, and, once given, the walk's verdict: wanted, and whether
    /// it may lead. A guess the walk did not want is removed.
    guess: Option<(u64, Request, Option<bool>)>,
    guesses: u64,
    /// Batches for guessed pages.
    batches: Vec<Batch>,
    /// Requests made for pages the walk did not want, counted once the read ends.
    wasted: u64,
    /// The requests asked for so far (hashed): one is never guessed again, so a
    /// page that names itself or an earlier page (an error the walk reports) costs
    /// no request more than before.
    asked: HashSet<u64>,
    hasher: std::collections::hash_map::RandomState,
    closed: bool,
}

impl Ahead {
    fn new() -> Ahead {
        Ahead { queue: Mutex::new(Queue::default()), changed: Condvar::new() }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next page to fetch; `None` once the walk has ended.
    fn task(&self) -> Option<(Job, Option<u64>)> {
        let mut q = self.locked();
        loop {
            if q.closed {
                return None;
            }
            while let Some((job, guess)) = q.tasks.pop_front() {
                // A guess the walk has already turned down is not asked for.
                if guess.is_some_and(|id| q.guess.as_ref().is_none_or(|g| g.0 != id)) {
                    q.batches.push(job.batch);
                    continue;
                }
                return Some((job, guess));
            }
            q = self.changed.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Whether guess `id` is still out: not turned down, and the read goes on.
    fn current(&self, id: u64) -> bool {
        let q = self.locked();
        !q.closed && q.guess.as_ref().is_some_and(|g| g.0 == id)
    }

    /// Waits for the walk's verdict on guess `id`: `Some(lead)` if it wants the page.
    fn verdict(&self, id: u64) -> Option<bool> {
        let mut q = self.locked();
        loop {
            match &q.guess {
                Some((g, _, verdict)) if *g == id => {
                    if let Some(lead) = verdict {
                        return Some(*lead);
                    }
                }
                _ => return None,
            }
            if q.closed {
                return None;
            }
            q = self.changed.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// A wanted page's first body is in: its guess (if it was one) is settled, and
    /// `next`, if any, is asked for on a guess.
    fn lead(&self, settled: Option<u64>, next: Option<(Request, Reading)>) {
        let mut q = self.locked();
        if settled.is_some() && q.guess.as_ref().map(|g| g.0) == settled {
            q.guess = None;
        }
        let Some((request, reading)) = next else { return };
        let hash = q.hasher.hash_one(&request);
        if q.guess.is_some() || q.closed || !q.asked.insert(hash) {
            return;
        }
        q.guesses += 1;
        let id = q.guesses;
        let batch = q.batches.pop().unwrap_or_default();
        q.guess = Some((id, request.clone(), None));
        q.tasks.push_back((Job { request, reading, batch, lead: false }, Some(id)));
        drop(q);
        self.changed.notify_all();
    }

    fn unwanted(&self, batch: Batch, requests: u64) {
        let mut q = self.locked();
        q.batches.push(batch);
        q.wasted += requests;
    }

    /// The walk's next page: the guess if it is that page, else a task.
    fn start(&self, job: Job) {
        let mut q = self.locked();
        match q.guess.take() {
            Some((id, request, None)) if request == job.request => {
                q.guess = Some((id, request, Some(job.lead)));
                q.batches.push(job.batch);
            }
            _ => {
                let hash = q.hasher.hash_one(&job.request);
                q.asked.insert(hash);
                q.tasks.push_back((job, None));
            }
        }
        drop(q);
        self.changed.notify_all();
    }

    /// A new pass of a listing: its requests may be asked for on a guess again.
    fn forget(&self) {
        self.locked().asked.clear();
    }

    fn close(&self) {
        self.locked().closed = true;
        self.changed.notify_all();
    }
}

/// Closes the queue when the fetcher holding it panics.
struct CloseOnPanic<'a>(&'a Ahead);

impl Drop for CloseOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.close();
        }
    }
}

/// The page the walk asked for last: on the fetcher threads, or, if they could not
/// be started, fetched here when it is taken.
struct Prefetch<'c> {
    client: &'c Client,
    ahead: &'c Ahead,
    done: Option<mpsc::Receiver<Fetched>>,
    waiting: Option<Job>,
    in_flight: bool,
}

impl Prefetch<'_> {
    fn start(&mut self, job: Job) {
        debug_assert!(!self.in_flight && self.waiting.is_none(), "one page ahead at most");
        match &self.done {
            Some(_) => {
                self.ahead.start(job);
                self.in_flight = true;
            }
            None => self.waiting = Some(job),
        }
    }

    /// The page started last, once fetched; `None` if none was started.
    fn take(&mut self) -> Result<Option<Fetched>> {
        if let Some(job) = self.waiting.take() {
            return Ok(fetch(self.client, job, None));
        }
        if !std::mem::take(&mut self.in_flight) {
            return Ok(None);
        }
        let done = self.done.as_ref().expect("a page in flight has a thread");
        match done.recv() {
            Ok(fetched) => Ok(Some(fetched)),
            Err(_) => Err(Error::Request {
                url: self.client.base_url().to_string(),
                detail: "the threads fetching pages stopped".into(),
            }),
        }
    }
}

impl Prefetch<'_> {
    /// A new pass of a listing: its requests may be asked for on a guess again.
    fn forget(&self) {
        self.ahead.forget();
    }
}

impl Drop for Prefetch<'_> {
    fn drop(&mut self) {
        self.ahead.close();
    }
}

impl Reader {
    /// Classifies and encodes the accepted page for each table, widening a file
    /// first if needed, and commits. Returns how many rows the tables got, and how
    /// many of them were new to this read.
    fn write_page(
        &mut self,
        ctx: &Ctx,
        state: &mut State,
        committer: &mut Committer,
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
                committer.barrier()?;
                w.switch_to_set()?;
            }
            if w.classify(&rows) {
                committer.barrier()?;
                let mut last = State::from_bytes(durable).expect("the state this process wrote reads back");
                w.widen(ctx.dir, &mut last)?;
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
            state.table(t).resume = Some(resume);
        }
        self.commit(state, committer, false)?;
        Ok((total, fresh))
    }

    fn note_bad_times(&mut self) {
        let (n, first) = &mut self.bad_times;
        *n += self.batch.bad_timestamps;
        if first.is_none() {
            first.clone_from(&self.batch.first_bad_timestamp);
        }
    }

    /// Hands what the writers encoded to the committer with the state that counts it.
    /// A page that wrote no row is committed only every few seconds (or when forced).
    fn commit(&mut self, state: &mut State, committer: &mut Committer, force: bool) -> Result<()> {
        let rows = self.writers.iter().any(TableWriter::has_pending);
        let journal: usize = self.writers.iter().map(TableWriter::journal_pending).sum();
        let idle = self.last_commit.elapsed() < IDLE_COMMIT_INTERVAL && journal < IDLE_JOURNAL_LIMIT;
        if !rows && !force && idle {
            return Ok(());
        }
        let mut appends: Vec<Append> = Vec::new();
        for w in self.writers.iter_mut().filter(|w| !w.summary.skipped && !w.finished) {
            w.take(&mut || committer.buffer(), &mut appends);
            let table = state.table(w.spec.name);
            *table.file_mut(w.target) = w.file.clone();
            table.seen_len = w.seen_len;
            table.order = w.order();
        }
        let commit = Commit::new(appends, state, committer.buffer());
        self.durable.clear();
        self.durable.extend_from_slice(&commit.state);
        committer.send(commit)?;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// After the read: the deletion check and tombstones, the swap of a full refresh,
    /// and the table marked done.
    fn finish_table(
        &mut self,
        ctx: &Ctx,
        state: &mut State,
        committer: &mut Committer,
        progress: &mut Progress,
        i: usize,
    ) -> Result<()> {
        let table = self.writers[i].spec.name;
        let spec = self.writers[i].spec;
        let deletes = state.run.as_ref().is_some_and(|r| r.deletes) && self.writers[i].journaled();
        if deletes {
            if let Some(Resume::Verify(position)) = state.tables.get(table).and_then(|t| t.resume.clone()) {
                let mut stream = ctx.connector.reread(table, Some(position));
                self.pages(ctx, state, committer, progress, stream.as_mut(), Some(i))?;
            }
            committer.barrier()?;
            state.table(table).resume = Some(Resume::Confirm);
            match spec.confirm {
                Confirm::Show => self.confirm(ctx, state, committer, i)?,
                Confirm::Unseen | Confirm::Reread => {
                    let gone: Vec<Vec<Vec<u8>>> = self.writers[i].unseen()?.into_iter().map(|(_, v)| v).collect();
                    self.writers[i].tombstones(&gone, &self.synced_at.clone());
                    self.commit(state, committer, true)?;
                }
            }
        }
        self.commit(state, committer, true)?;
        committer.barrier()?;
        let run = state.run.clone().expect("a run");
        state.table(table).finish_read(&run.started_at);
        if self.writers[i].target == Target::Refresh {
            let rebuilt = state.table(table).refresh.clone().unwrap_or_default();
            state.run.as_mut().expect("a run").done.push(table.to_string());
            replace::replace(ctx.dir, state, table, crate::state::ReplaceKind::Refresh, rebuilt)?;
            self.durable = state.to_bytes();
        } else {
            state.run.as_mut().expect("a run").done.push(table.to_string());
            state.save(ctx.dir)?;
            self.durable = state.to_bytes();
        }
        self.writers[i].finished = true;
        let _ = crate::fsio::remove_if_present(&crate::seen::seen_path(ctx.dir, table));
        Ok(())
    }

    /// Asks the show route about each key the read did not see; writes tombstones for
    /// those it answers 404 for, and journals the others, committing every few keys
    /// so that an interrupted check resumes where it stopped.
    fn confirm(&mut self, ctx: &Ctx, state: &mut State, committer: &mut Committer, i: usize) -> Result<()> {
        let unseen = self.writers[i].unseen()?;
        let table = self.writers[i].spec.name;
        let mut kept = 0;
        let synced_at = self.synced_at.clone();
        for chunk in unseen.chunks(CHECKS_PER_COMMIT) {
            let mut gone = Vec::new();
            for (key, values) in chunk {
                if ctx.interrupt.received().is_some() {
                    return Err(Error::Interrupted);
                }
                let before = ctx.client.stats().requests;
                if ctx.connector.still_exists(ctx.client, table, values)? {
                    self.writers[i].confirm_seen(*key);
                    kept += 1;
                } else {
                    gone.push(values.clone());
                }
                self.writers[i].summary.requests += ctx.client.stats().requests - before;
            }
            self.writers[i].tombstones(&gone, &synced_at);
            self.commit(state, committer, true)?;
        }
        if kept > 0 {
            log::info!("{table}: {kept} records missing from the listing still exist (the listing shifted while it was read); not deleted");
        }
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
    let mut h = hashing::stable(0, b"page");
    for i in 0..batch.len() {
        for cell in batch.record(i) {
            h = hashing::stable(h, batch.path(cell.path));
            h = hashing::stable(h, batch.value(cell));
        }
        h = hashing::stable(h, b"\n");
    }
    h
}

/// True if `next` starts `req`'s listing over with another page size.
fn restarted(req: &Request, next: &Request) -> bool {
    let strip = |r: &Request| -> Vec<(&'static str, String)> {
        r.query.iter().filter(|(k, _)| !matches!(*k, "page" | "cursor" | "limit" | "per_page")).cloned().collect()
    };
    req.path == next.path && strip(req) == strip(next)
}

/// True if `next` reads on in the same listing as `req` (only its page or cursor differ).
fn same_listing(req: &Request, next: &Request) -> bool {
    let strip = |r: &Request| -> Vec<(&'static str, String)> {
        r.query.iter().filter(|(k, _)| !matches!(*k, "page" | "cursor")).cloned().collect()
    };
    req.path == next.path && strip(req) == strip(next)
}

/// A 422 that is about the page size (`limit`, `per_page`).
fn about_page_size(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("limit") || m.contains("per_page") || m.contains("per page")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(cursor: &str) -> Job {
        let request = Request { path: "/subscribers".into(), query: vec![("limit", "100".into())] };
        let reading = Reading { spec: parse::Spec::records_in(&["data"]), check: |_| Ok(()), follows_cursor: true };
        let request = if cursor.is_empty() { request } else { request.with_cursor(cursor) };
        Job { request, reading, batch: Batch::default(), lead: true }
    }

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
    }

    #[test]
    fn a_refused_page_size_is_told_by_the_field_or_the_message() {
        assert!(about_page_size("The given data was invalid. (limit: The limit must not be greater than 100.)"));
        assert!(about_page_size("per_page must be at most 100"));
        assert!(!about_page_size("The given data was invalid. (email: The email must be valid.)"));
    }

    #[test]
    fn a_fetcher_that_panics_releases_the_other() {
        let ahead = Ahead::new();
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| ahead.task().is_none());
            let panicking = scope.spawn(|| {
                let _close = CloseOnPanic(&ahead);
                panic!("a fetcher fails");
            });
            assert!(panicking.join().is_err());
            assert!(waiting.join().unwrap(), "the other fetcher still waits for work");
        });
    }

    #[test]
    fn a_guess_is_adopted_only_for_the_same_request_and_never_twice() {
        let ahead = Ahead::new();
        let first = job("");
        ahead.start(job(""));
        let (task, guess) = ahead.task().unwrap();
        assert_eq!((task.request, guess), (first.request.clone(), None));
        // The page names cursor A: A is asked for on a guess.
        ahead.lead(None, Some((first.request.with_cursor("A"), first.reading)));
        let (guessed, id) = ahead.task().unwrap();
        let id = id.expect("a guessed task");
        assert!(ahead.current(id));
        // The walk asks for B instead: the guess is turned down, B is a task.
        ahead.start(job("B"));
        assert!(!ahead.current(id));
        assert_eq!(ahead.verdict(id), None);
        let (task, guess) = ahead.task().unwrap();
        assert_eq!((task.request, guess), (job("B").request, None));
        // Neither A nor B is guessed again; C is, and the walk adopts it.
        for cursor in ["A", "B"] {
            ahead.lead(None, Some((guessed.request.with_cursor(cursor), guessed.reading)));
            assert!(ahead.locked().guess.is_none(), "{cursor} guessed twice");
        }
        ahead.lead(None, Some((guessed.request.with_cursor("C"), guessed.reading)));
        let (_, id) = ahead.task().unwrap();
        let id = id.unwrap();
        ahead.start(Job { lead: false, ..job("C") });
        assert_eq!(ahead.verdict(id), Some(false));
        assert!(ahead.locked().tasks.is_empty(), "an adopted guess is not fetched again");
    }
}
