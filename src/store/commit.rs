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
//! Files are opened for each round, so a file renamed over in between (widening) is
//! never appended to through a stale handle.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

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

/// The SHA-256 of files written from their first byte by this committer, for the
/// manifest: file, length hashed, digest.
pub type Digests = Vec<(PathBuf, u64, String)>;

pub struct Committer {
    dir: PathBuf,
    tx: Option<SyncSender<Commit>>,
    acks: Receiver<Ack>,
    thread: Option<JoinHandle<Digests>>,
    /// Commits sent and not yet answered.
    pending: usize,
    /// Commits that stuck.
    pub committed: u64,
    failed: Option<Error>,
    spare: Vec<Vec<u8>>,
}

impl Committer {
    pub fn start(dir: PathBuf) -> Committer {
        let (tx, rx) = mpsc::sync_channel::<Commit>(QUEUE);
        let (ack_tx, acks) = mpsc::channel();
        let state_path = dir.join(crate::store::state::FILE_NAME);
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || run(rx, ack_tx, state_path))
            .expect("a thread can be spawned");
        Committer {
            dir,
            tx: Some(tx),
            acks,
            thread: Some(thread),
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
        Ok(())
    }

    /// Waits until every commit sent is durable.
    pub fn barrier(&mut self) -> Result<()> {
        self.collect(true)
    }

    /// Stops the committer once every commit is durable; the SHA-256 of each file it
    /// wrote from the first byte (a first sync, a rebuild), computed on the way.
    pub fn finish(mut self) -> Result<Digests> {
        self.barrier()?;
        drop(self.tx.take());
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
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx: Receiver<Commit>, acks: mpsc::Sender<Ack>, state_path: PathBuf) -> Digests {
    let mut broken = false;
    let mut hashing = Hashing::default();
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        while let Ok(more) = rx.try_recv() {
            round.push(more);
        }
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
