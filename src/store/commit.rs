//! Commits off the critical path: a second thread makes pages durable while the
//! main thread fetches and parses the next one.
//!
//! A commit is a list of appends (table files, `.seen` journals) and the state that
//! counts them. The committer writes the appends in order, fdatasyncs every file it
//! touched, and only then rewrites `state.json` atomically: a page's state is never
//! durable before its rows, and pages are committed in the order they were read.
//! When pages come faster than the disk syncs, the commits waiting in the queue
//! share one round of syncs and one state write (the latest), which is safe for the
//! same reason one commit is: the state written counts only bytes already synced.
//! Rounds start at most one [`WINDOW`] apart: a commit that comes sooner after the
//! last round waits for others to join it (unless enough wait, or the run waits for
//! them all). On a fast source that turns a round every page or two into one every
//! ten pages or more, and each round saved is a set of fdatasyncs, a state rewrite
//! and a directory fsync, and the thread wake-ups around them. A commit that comes
//! later than that (a real API's pace) goes at once.
//! Files are opened for each round, so a file renamed over in between (widening) is
//! never appended to through a stale handle.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::store::fsio::write_atomic;
use crate::store::state::State;

/// Bytes to append to a file.
pub struct Append {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// A table file, whose SHA-256 the manifest wants (not a journal).
    pub hashed: bool,
}

/// One page's worth of durable change: the appends, and `state.json` as it is to
/// read once they are durable (serialized by the caller into a recycled buffer,
/// cheaper than a copy of the state).
pub struct Commit {
    pub appends: Vec<Append>,
    pub state: Vec<u8>,
}

impl Commit {
    pub fn new(appends: Vec<Append>, state: &State, mut buffer: Vec<u8>) -> Commit {
        buffer.clear();
        serde_json::to_writer(&mut buffer, state).expect("state serializes");
        buffer.push(b'\n');
        Commit { appends, state: buffer }
    }
}

/// The committer's answer to one commit: its buffers back, and whether it stuck.
struct Ack {
    buffers: Vec<Vec<u8>>,
    result: std::result::Result<(), Error>,
}

/// Commits waiting at most; beyond, the main thread waits for the disk. A disk whose
/// fsync stalls for milliseconds (a busy VM's) then costs one long round of syncs for
/// many pages, not one round per two pages: with 2, a 100k first sync on such a disk
/// took 1.0-7.0 s (median 3.4 s); with 16, 1.0-1.5 s. A page's commit is its rows
/// (tens of KB) and a state: 32 of them are about 2 MB.
const QUEUE: usize = 32;

/// The least time between the starts of two rounds, unless [`ROUND`] commits wait
/// or the run waits for them all. Each round costs the kernel an fdatasync per
/// file, a state rewrite and a directory fsync; on a 100k first sync
/// from a fast local server (1000 pages in under a second) rounds of about two pages
/// cost 1.31 s of CPU (median of 5), rounds gathered over 10 ms 1.14 s, over 20 ms
/// 1.11 s, over 40 ms 1.09 s, none slower in wall time. A kill loses at most this
/// much more work, which the next run reads again: a page is only ever counted in
/// the state once its rows are durable. Against a real API, whose pages take
/// longer than this to arrive, nothing waits.
const WINDOW: Duration = Duration::from_millis(20);

/// A round starts early once this many commits wait, before the queue fills and
/// the main thread has to wait for the disk.
const ROUND: usize = QUEUE / 2;

/// What the main thread tells the committer while it gathers a round.
#[derive(Default)]
struct Gather {
    /// How long a round gathers at most ([`WINDOW`]).
    window: Duration,
    /// Commits sent so far.
    sent: AtomicUsize,
    /// Someone waits for every commit to be durable: start the round now.
    hurry: AtomicBool,
    /// Rounds of syncs made so far (for the debug log).
    rounds: AtomicUsize,
}

/// The SHA-256 of files written from their first byte by this committer, for the
/// manifest: file, length hashed, digest.
pub type Digests = Vec<(PathBuf, u64, String)>;

pub struct Committer {
    dir: PathBuf,
    tx: Option<SyncSender<Commit>>,
    acks: Receiver<Ack>,
    thread: Option<JoinHandle<Digests>>,
    gather: Arc<Gather>,
    /// Commits sent and not yet answered.
    pending: usize,
    /// Commits that stuck.
    pub committed: u64,
    failed: Option<Error>,
    spare: Vec<Vec<u8>>,
}

impl Committer {
    pub fn start(dir: PathBuf) -> Committer {
        Committer::with_window(dir, WINDOW)
    }

    fn with_window(dir: PathBuf, window: Duration) -> Committer {
        let (tx, rx) = mpsc::sync_channel::<Commit>(QUEUE);
        let (ack_tx, acks) = mpsc::channel();
        let state_path = dir.join(crate::store::state::FILE_NAME);
        let gather = Arc::new(Gather { window, ..Gather::default() });
        let theirs = Arc::clone(&gather);
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || run(rx, ack_tx, state_path, &theirs))
            .expect("a thread can be spawned");
        Committer {
            dir,
            tx: Some(tx),
            acks,
            thread: Some(thread),
            gather,
            pending: 0,
            committed: 0,
            failed: None,
            spare: Vec::new(),
        }
    }

    /// A buffer to encode the next page into.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Queues a commit; fails with the error of an earlier commit that did not stick.
    pub fn send(&mut self, commit: Commit) -> Result<()> {
        self.collect(false)?;
        let tx = self.tx.as_ref().expect("the committer runs");
        tx.send(commit)
            .map_err(|_| Error::Internal(format!("cannot commit {}: the committer stopped", self.dir.display())))?;
        self.pending += 1;
        self.gather.sent.fetch_add(1, Ordering::Release);
        if self.pending >= ROUND {
            self.wake();
        }
        Ok(())
    }

    /// Waits until every commit sent is durable.
    pub fn barrier(&mut self) -> Result<()> {
        if self.pending == 0 {
            return self.collect(false);
        }
        self.gather.hurry.store(true, Ordering::Release);
        self.wake();
        let result = self.collect(true);
        self.gather.hurry.store(false, Ordering::Release);
        result
    }

    /// Ends the committer's wait for more commits (a spurious wake-up is harmless:
    /// it only starts a round early).
    fn wake(&self) {
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    /// Stops the committer once every commit is durable; the SHA-256 of each file it
    /// wrote from the first byte (a first sync, a rebuild), computed on the way.
    pub fn finish(mut self) -> Result<Digests> {
        self.barrier()?;
        drop(self.tx.take());
        let rounds = self.gather.rounds.load(Ordering::Acquire);
        log::debug!("{} commits made durable in {rounds} rounds of syncs", self.committed);
        Ok(self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default())
    }

    fn collect(&mut self, wait: bool) -> Result<()> {
        loop {
            let ack = if wait && self.pending > 0 { self.acks.recv().ok() } else { self.acks.try_recv().ok() };
            let Some(ack) = ack else { break };
            self.pending -= 1;
            self.spare.extend(ack.buffers);
            match ack.result {
                Ok(()) => self.committed += 1,
                Err(e) => {
                    self.failed.get_or_insert(e);
                }
            }
        }
        match self.failed.take() {
            Some(e) => {
                self.failed =
                    Some(Error::Internal(format!("cannot commit {}: an earlier commit failed", self.dir.display())));
                Err(e)
            }
            None => Ok(()),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.tx.take());
        self.gather.hurry.store(true, Ordering::Release);
        self.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx: Receiver<Commit>, acks: mpsc::Sender<Ack>, state_path: PathBuf, gather: &Gather) -> Digests {
    let mut broken = false;
    let mut hashing = Hashing::default();
    let mut received = 0;
    // When the last round started: the next one starts a window later at the
    // earliest, so a commit that comes sooner waits for others to join it, and one
    // that comes later (the source is the slow side) goes at once.
    let mut last: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        if let Some(last) = last {
            wait_for_more(gather, received + 1, last + gather.window);
        }
        last = Some(Instant::now());
        let mut round = vec![first];
        while let Ok(more) = rx.try_recv() {
            round.push(more);
        }
        received += round.len();
        gather.rounds.fetch_add(1, Ordering::Release);
        let result = if broken { Err(stopped()) } else { durable(&round, &state_path, &mut hashing) };
        broken |= result.is_err();
        let mut result = Some(result);
        for commit in round {
            let mut buffers: Vec<Vec<u8>> = commit.appends.into_iter().map(|a| a.bytes).collect();
            buffers.push(commit.state);
            let r = result.take().unwrap_or_else(|| if broken { Err(stopped()) } else { Ok(()) });
            let _ = acks.send(Ack { buffers, result: r });
        }
    }
    hashing.digests()
}

/// Lets commits gather after the first of a round (the `taken`th sent) until
/// `deadline`, unless [`ROUND`] of them wait or someone waits for them all.
fn wait_for_more(gather: &Gather, taken: usize, deadline: Instant) {
    loop {
        if gather.hurry.load(Ordering::Acquire) {
            return;
        }
        let waiting = gather.sent.load(Ordering::Acquire).saturating_sub(taken) + 1;
        let now = Instant::now();
        if waiting >= ROUND || now >= deadline {
            return;
        }
        std::thread::park_timeout(deadline - now);
    }
}

/// SHA-256 of files followed from their first byte: kept only while every byte of
/// the file went through here (a file replaced in between, by a widening, is dropped).
#[derive(Default)]
struct Hashing {
    files: HashMap<PathBuf, (Sha256, u64)>,
}

impl Hashing {
    /// Notes `bytes` appended to `path`, which had `len` bytes before.
    fn appended(&mut self, path: &std::path::Path, len: u64, bytes: &[u8]) {
        if len == 0 {
            self.files.insert(path.to_path_buf(), (Sha256::new(), 0));
        }
        match self.files.get_mut(path) {
            Some((h, hashed)) if *hashed == len => {
                h.update(bytes);
                *hashed += bytes.len() as u64;
            }
            Some(_) => drop(self.files.remove(path)),
            None => {}
        }
    }

    fn digests(self) -> Digests {
        self.files.into_iter().map(|(path, (h, len))| (path, len, format!("{:x}", h.finalize()))).collect()
    }
}

fn stopped() -> Error {
    Error::Internal("cannot commit .: an earlier commit failed".into())
}

/// Appends, syncs each file once, then writes the latest state.
fn durable(round: &[Commit], state_path: &std::path::Path, hashing: &mut Hashing) -> Result<()> {
    let mut touched: Vec<(PathBuf, std::fs::File, u64)> = Vec::new();
    for commit in round {
        for a in commit.appends.iter().filter(|a| !a.bytes.is_empty()) {
            let i = match touched.iter().position(|(p, _, _)| *p == a.path) {
                Some(i) => i,
                None => {
                    let open = crate::store::fsio::private_options().append(true).create(true).open(&a.path);
                    let f = open.map_err(|e| Error::io("open", &a.path, e))?;
                    let len = f.metadata().map_err(|e| Error::io("stat", &a.path, e))?.len();
                    touched.push((a.path.clone(), f, len));
                    touched.len() - 1
                }
            };
            let (_, f, len) = &mut touched[i];
            f.write_all(&a.bytes).map_err(|e| Error::io("write", &a.path, e))?;
            if a.hashed {
                hashing.appended(&a.path, *len, &a.bytes);
            }
            *len += a.bytes.len() as u64;
        }
    }
    for (path, f, _) in &touched {
        f.sync_data().map_err(|e| Error::io("sync", path, e))?;
    }
    let last = round.last().expect("a round has a commit");
    write_atomic(state_path, &last.state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Longer than any test runs: a wait that returns did not wait for the window.
    const FOREVER: Duration = Duration::from_secs(3600);

    /// Runs `wait_for_more(gather, taken, FOREVER from now)` on a thread, which
    /// `nudge` gets, and asserts that it returns.
    fn returns(gather: Gather, taken: usize, nudge: impl FnOnce(&Gather, &std::thread::Thread)) {
        let gather = Arc::new(gather);
        let (theirs, (tx, rx)) = (Arc::clone(&gather), mpsc::channel());
        let waiter = std::thread::spawn(move || {
            wait_for_more(&theirs, taken, Instant::now() + FOREVER);
            tx.send(()).unwrap();
        });
        nudge(&gather, waiter.thread());
        assert!(rx.recv_timeout(Duration::from_secs(60)).is_ok(), "the round never started");
        waiter.join().unwrap();
    }

    #[test]
    fn a_round_gathers_until_its_deadline_when_nothing_else_comes() {
        let gather = Gather { sent: AtomicUsize::new(1), ..Gather::default() };
        let started = Instant::now();
        wait_for_more(&gather, 1, started + Duration::from_millis(30));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_round_starts_at_once_when_enough_commits_wait() {
        let gather = Gather { sent: AtomicUsize::new(5 + ROUND - 1), ..Gather::default() };
        returns(gather, 5, |_, _| {});
    }

    #[test]
    fn a_barrier_ends_the_gathering() {
        let gather = Gather { sent: AtomicUsize::new(1), ..Gather::default() };
        returns(gather, 1, |gather, waiter| {
            std::thread::sleep(Duration::from_millis(20));
            gather.hurry.store(true, Ordering::Release);
            waiter.unpark();
        });
    }

    fn commit(table: &Path, i: u32) -> Commit {
        let append = Append { path: table.to_path_buf(), bytes: format!("{i}\n").into_bytes(), hashed: true };
        Commit { appends: vec![append], state: format!("{{\"n\":{i}}}\n").into_bytes() }
    }

    /// The first commit goes at once, however long the window: only a commit that
    /// comes within a window of the last round waits (here until the barrier).
    #[test]
    fn the_first_commit_goes_at_once_and_a_barrier_ends_the_window() {
        let dir = crate::store::fsio::test_dir("commit-first");
        let mut c = Committer::with_window(dir.clone(), FOREVER);
        let (table, state) = (dir.join("t.csv"), dir.join("state.json"));
        c.send(commit(&table, 0)).unwrap();
        let started = Instant::now();
        while std::fs::read(&state).ok().as_deref() != Some(&b"{\"n\":0}\n"[..]) {
            assert!(started.elapsed() < Duration::from_secs(60), "the first commit waited");
            std::thread::sleep(Duration::from_millis(1));
        }
        c.send(commit(&table, 1)).unwrap();
        c.barrier().unwrap();
        assert_eq!(std::fs::read(&state).unwrap(), b"{\"n\":1}\n");
        assert_eq!(c.gather.rounds.load(Ordering::Acquire), 2);
        drop(c);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Commits sent faster than the disk syncs share rounds; every one is answered,
    /// the appends land in order, and the state is the last one sent.
    #[test]
    fn commits_share_rounds_and_end_in_the_last_state() {
        let dir = crate::store::fsio::test_dir("commit-share");
        let mut c = Committer::start(dir.clone());
        let table = dir.join("t.csv");
        let mut want = Vec::new();
        for i in 0..100u32 {
            want.extend_from_slice(format!("{i}\n").as_bytes());
            c.send(commit(&table, i)).unwrap();
        }
        c.barrier().unwrap();
        assert_eq!(c.committed, 100);
        let rounds = c.gather.rounds.load(Ordering::Acquire);
        assert!((1..100).contains(&rounds), "{rounds} rounds for 100 commits");
        let digests = c.finish().unwrap();
        assert_eq!(std::fs::read(&table).unwrap(), want);
        assert_eq!(std::fs::read_to_string(dir.join("state.json")).unwrap(), "{\"n\":99}\n");
        let hex = format!("{:x}", Sha256::digest(&want));
        assert_eq!(digests, vec![(table, want.len() as u64, hex)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
