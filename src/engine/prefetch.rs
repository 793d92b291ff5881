//! The prefetch threads: one or two fetchers fetch and parse pages while the walk writes.
//!
//! A fetcher fetches and parses page n+1 while the walk writes page n; in a cursor
//! listing a second fetcher, where there is one, already asks for page n+2 on a guess
//! while n+1 is parsed (see [`Ahead`]); a single fetcher asks for it next.
//! Nothing of a page reaches a file or the state before the walk accepts it, so a
//! page fetched ahead of an error or a signal is simply dropped.

use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::{mpsc, Condvar, Mutex};

use crate::connector::{Reading, Request};
use crate::error::{Error, Result};
use crate::net::http::Client;
use crate::page::parse::{self, Batch};

/// Sets how many threads fetch and parse pages (1 or 2); see [`fetchers`].
pub const FETCHERS_VAR: &str = "API2CSV_FETCHERS";

/// Threads that fetch and parse pages. Two (the walk's next page, and the one after
/// it asked for on a guess while that is parsed) on a machine with more than two
/// cores; one on two cores or fewer, where a second fetcher only competes for the
/// cores with the walk, the committer and the fetcher it would overlap. On 2 cores,
/// a 100k first sync from a fast local server took about 10% less CPU with one
/// (0.91-0.95 s against 1.02 s on disk, medians of 3), and the unchanged sync about
/// 17% less, at the same or a better wall time. Against a real API, whose latency
/// dwarfs a page's parse, the two differ by that parse per page.
fn fetchers() -> usize {
    static CHOSEN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let set = std::env::var(FETCHERS_VAR).ok();
        match set.as_deref().map(str::trim) {
            Some("1") => return 1,
            Some("2") => return 2,
            Some(v) => log::warn!("{FETCHERS_VAR}={v:?} is neither 1 nor 2: it is ignored"),
            None => {}
        }
        match std::thread::available_parallelism().map(usize::from) {
            Ok(cores) if cores > 2 => 2,
            _ => 1,
        }
    })
}

/// Runs `walk` with the fetcher threads started, and stops them when it returns.
/// Returns its result, and the requests made for pages the walk did not want.
pub(super) fn run(client: &Client, walk: impl FnOnce(&mut Prefetch) -> Result<()>) -> (Result<()>, u64) {
    let fetchers = fetchers();
    let ahead = Ahead::new(fetchers == 1);
    let result = std::thread::scope(|scope| {
        let (outbox, done) = mpsc::channel::<Fetched>();
        let mut workers = Vec::new();
        for _ in 0..fetchers {
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
        // A fetcher that could not be started: pages are fetched here, without
        // guesses (a guess would wait for a fetcher that is not there).
        let done = (workers.len() == fetchers).then_some(done);
        if done.is_none() {
            ahead.close();
        }
        let mut prefetch = Prefetch { client, ahead: &ahead, done, waiting: None, in_flight: false };
        let mut result = walk(&mut prefetch);
        // Whatever is still in flight is not wanted (on success, at most a guess
        // the walk turned down): its backoff or pacing wait ends now.
        client.cancel(true);
        drop(prefetch);
        for worker in workers {
            if worker.join().is_err() && result.is_ok() {
                result = Err(Error::Internal(format!("a thread fetching pages from {} failed", client.base_url())));
            }
        }
        result
    });
    client.cancel(false);
    let wasted = std::mem::take(&mut ahead.locked().wasted);
    (result, wasted)
}

/// A page for a fetcher thread: the request, how to read its body, and the buffers
/// to parse it into.
pub(super) struct Job {
    pub(super) request: Request,
    pub(super) reading: Reading,
    pub(super) batch: Batch,
    /// The page after this one may be asked for on a guess before this one is
    /// parsed: the walk is not about to give the listing up.
    pub(super) lead: bool,
}

/// A fetched page: its parsed body or why there is none, and the requests it took.
pub(super) struct Fetched {
    pub(super) request: Request,
    pub(super) url: String,
    pub(super) result: Result<parse::Envelope>,
    pub(super) batch: Batch,
    pub(super) requests: u64,
}

/// Fetches and parses the page of `job`, retrying what the client retries and
/// bodies that do not parse or whose envelope the check refuses. With `ahead`, at
/// the first body: a guessed page (`guess`) learns whether the walk wants it (`None`
/// when it does not), and a cursor page that may lead has its next page asked for
/// on a guess before it is parsed. A fetcher on its own parses a guessed page before
/// it waits for the walk's verdict: the walk still writes the page before, and the
/// next page is not asked for before this one is parsed anyway.
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
    // The guess this page led, while it may still be replaced.
    let mut led = None;
    let read = |reply: &crate::net::http::Reply, batch: &mut Batch| -> std::result::Result<parse::Envelope, String> {
        let mut envelope = parse::parse(reply.body, &reading.spec, batch).map_err(|e| e.0)?;
        envelope.link_next = crate::connector::definition::link_next(reply.headers);
        (reading.check)(&envelope)?;
        Ok(envelope)
    };
    let result = client.get_counted(&url, &mut requests, &still_wanted, |reply| {
        let mut read_ahead = None;
        if let Some((ahead, _)) = ahead {
            let first = std::mem::take(&mut first);
            if let (true, Some(id)) = (first, guess) {
                if ahead.alone {
                    read_ahead = Some(read(reply, &mut batch));
                }
                wanted.set(ahead.verdict(id));
            }
            let Some(lead) = wanted.get() else { return Ok(None) };
            let next = if lead { reading.next_guess.and_then(|guess| guess(&request, reply.body)) } else { None };
            if first {
                led = ahead.lead(guess, next.map(|next| (next, reading)));
            } else if lead && led.is_none_or(|id| ahead.withdraw(id, next.as_ref())) {
                // A retry: the guess made on a body that was refused is replaced by
                // this body's while no fetcher has taken it (a lone fetcher, busy
                // here, never has), so it is not asked for on a stale cursor.
                led = ahead.lead(None, next.map(|next| (next, reading)));
            }
        }
        let envelope = match read_ahead {
            Some(envelope) => envelope?,
            None => read(reply, &mut batch)?,
        };
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
    /// One fetcher: it parses a guessed page before it waits for its verdict.
    alone: bool,
    queue: Mutex<Queue>,
    /// Signals a task to fetch (one waiting fetcher is woken a task) or the end.
    work: Condvar,
    /// Signals a change of the guess: its verdict, its end, or the end of the read.
    settled: Condvar,
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
    fn new(alone: bool) -> Ahead {
        Ahead { alone, queue: Mutex::new(Queue::default()), work: Condvar::new(), settled: Condvar::new() }
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
            q = self.work.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
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
            q = self.settled.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// A wanted page's first body is in: its guess (if it was one) is settled, and
    /// `next`, if any, is asked for on a guess. Returns the id of that guess.
    fn lead(&self, settled: Option<u64>, next: Option<(Request, Reading)>) -> Option<u64> {
        let mut q = self.locked();
        if settled.is_some() && q.guess.as_ref().map(|g| g.0) == settled {
            q.guess = None;
        }
        let (request, reading) = next?;
        let hash = q.hasher.hash_one(&request);
        if q.guess.is_some() || q.closed || !q.asked.insert(hash) {
            return None;
        }
        q.guesses += 1;
        let id = q.guesses;
        let batch = q.batches.pop().unwrap_or_default();
        q.guess = Some((id, request.clone(), None));
        q.tasks.push_back((Job { request, reading, batch, lead: false }, Some(id)));
        drop(q);
        // Only the fetcher that settled the guess waited on it: no verdict to signal.
        self.work.notify_one();
        Some(id)
    }

    /// A retried page names `next` where its refused body named guess `id`: the
    /// guess is withdrawn if it asks for something else and no fetcher has taken it
    /// nor the walk given its verdict. Returns whether a new guess may be made.
    fn withdraw(&self, id: u64, next: Option<&Request>) -> bool {
        let mut q = self.locked();
        let Some((out, request, None)) = &q.guess else { return false };
        if *out != id || Some(request) == next {
            return false;
        }
        let Some(at) = q.tasks.iter().position(|(_, guess)| *guess == Some(id)) else { return false };
        let (job, _) = q.tasks.remove(at).expect("a position in the queue");
        q.batches.push(job.batch);
        q.guess = None;
        true
    }

    fn unwanted(&self, batch: Batch, requests: u64) {
        let mut q = self.locked();
        q.batches.push(batch);
        q.wasted += requests;
    }

    /// The walk's next page: the guess if it is that page, else a task.
    fn start(&self, job: Job) {
        let mut q = self.locked();
        let guessed = q.guess.is_some();
        let task = match q.guess.take() {
            Some((id, request, None)) if request == job.request => {
                q.guess = Some((id, request, Some(job.lead)));
                q.batches.push(job.batch);
                false
            }
            _ => {
                let hash = q.hasher.hash_one(&job.request);
                q.asked.insert(hash);
                q.tasks.push_back((job, None));
                true
            }
        };
        drop(q);
        // The guess has its verdict, or is turned down: its fetcher may wait on it.
        // A fetcher waiting for work is woken only for a task (waking both, one went
        // back to sleep every page).
        if guessed {
            self.settled.notify_all();
        }
        if task {
            self.work.notify_one();
        }
    }

    /// A new pass of a listing: its requests may be asked for on a guess again.
    fn forget(&self) {
        self.locked().asked.clear();
    }

    fn close(&self) {
        self.locked().closed = true;
        self.work.notify_all();
        self.settled.notify_all();
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
pub(super) struct Prefetch<'c> {
    client: &'c Client,
    ahead: &'c Ahead,
    done: Option<mpsc::Receiver<Fetched>>,
    waiting: Option<Job>,
    in_flight: bool,
}

impl Prefetch<'_> {
    pub(super) fn start(&mut self, job: Job) {
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
    pub(super) fn take(&mut self) -> Result<Option<Fetched>> {
        if let Some(job) = self.waiting.take() {
            return Ok(fetch(self.client, job, None));
        }
        if !std::mem::take(&mut self.in_flight) {
            return Ok(None);
        }
        let done = self.done.as_ref().expect("a page in flight has a thread");
        match done.recv() {
            Ok(fetched) => Ok(Some(fetched)),
            Err(_) => {
                Err(Error::Internal(format!("the threads fetching pages from {} stopped", self.client.base_url())))
            }
        }
    }
}

impl Prefetch<'_> {
    /// A new pass of a listing: its requests may be asked for on a guess again.
    pub(super) fn forget(&self) {
        self.ahead.forget();
    }
}

impl Drop for Prefetch<'_> {
    fn drop(&mut self) {
        self.ahead.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(cursor: &str) -> Job {
        let request = Request { path: "/subscribers".into(), query: vec![("limit", "100".into())] };
        let reading = Reading {
            spec: parse::Spec::records_in(&["data"]),
            check: |_| Ok(()),
            next_guess: Some(crate::connector::meta_next_cursor),
        };
        let request = if cursor.is_empty() { request } else { request.with_cursor(cursor) };
        Job { request, reading, batch: Batch::default(), lead: true }
    }

    #[test]
    fn a_fetcher_that_panics_releases_the_other() {
        let ahead = Ahead::new(false);
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
        let ahead = Ahead::new(false);
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

    #[test]
    fn a_retried_page_replaces_its_guess_only_while_nobody_took_it() {
        let ahead = Ahead::new(true);
        let first = job("");
        let guessed = |cursor| Some((first.request.with_cursor(cursor), first.reading));
        // The refused body named A; the retry names A again: the guess stays.
        let a = ahead.lead(None, guessed("A")).expect("A is guessed");
        assert!(!ahead.withdraw(a, Some(&job("A").request)));
        // The retry names B: A is withdrawn before any fetcher took it, and B guessed.
        assert!(ahead.withdraw(a, Some(&job("B").request)));
        assert!(!ahead.current(a));
        let b = ahead.lead(None, guessed("B")).expect("B is guessed");
        let (task, id) = ahead.task().unwrap();
        assert_eq!((task.request, id), (job("B").request, Some(b)), "A is never asked for");
        // Once taken, a guess is left to the walk's verdict.
        assert!(!ahead.withdraw(b, Some(&job("C").request)));
        assert!(ahead.current(b));
        // So is one the walk has adopted, and one that is not out any more.
        ahead.start(job("B"));
        assert!(!ahead.withdraw(b, None));
        assert!(!ahead.withdraw(a, None));
    }
}
