//! A proxy in front of a server that counts the requests passing through it and can
//! hold one of them, so a test kills the binary at a known point of its reading (the
//! first campaign page committed, twenty deletions confirmed) instead of hoping a
//! timer lands there.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Matches = Box<dyn Fn(&str) -> bool + Send>;

#[derive(Default)]
struct Inner {
    /// Request targets (path and query), in arrival order.
    seen: Vec<String>,
    /// Hold the request that is the `n`th (from 1) to match.
    trap: Option<(Matches, usize)>,
    /// A request is being held.
    holding: bool,
    /// The held request may go.
    open: bool,
    /// Every request may go, now and later.
    closed: bool,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
}

pub struct Gate {
    pub origin: String,
    shared: Arc<Shared>,
}

impl Gate {
    /// A proxy for `upstream` (`http://127.0.0.1:PORT`).
    pub fn new(upstream: &str) -> Gate {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let accept = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let shared = Arc::clone(&accept);
                std::thread::spawn(move || forward(client, server, &shared));
            }
        });
        Gate { origin, shared }
    }

    /// Holds the `n`th request from now whose target `matches`, until [`Gate::release`].
    pub fn hold(&self, n: usize, matches: impl Fn(&str) -> bool + Send + 'static) {
        self.shared.inner.lock().unwrap().trap = Some((Box::new(matches), n));
    }

    /// Waits until a request is held; false if none was within `limit`.
    pub fn wait_held(&self, limit: Duration) -> bool {
        let started = Instant::now();
        let mut inner = self.shared.inner.lock().unwrap();
        while !inner.holding {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return false;
            }
            inner = self.shared.changed.wait_timeout(inner, left.min(Duration::from_millis(50))).unwrap().0;
        }
        true
    }

    /// Lets the held request through.
    pub fn release(&self) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.open = true;
        self.shared.changed.notify_all();
    }

    /// How many requests so far had a target that `matches`.
    pub fn count(&self, matches: impl Fn(&str) -> bool) -> usize {
        self.shared.inner.lock().unwrap().seen.iter().filter(|t| matches(t)).count()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.closed = true;
        self.shared.changed.notify_all();
    }
}

/// Copies the answers back as they come, and each request head on once it may pass.
fn forward(client: TcpStream, server: TcpStream, shared: &Shared) {
    let (Ok(mut to_client), Ok(from_server)) = (client.try_clone(), server.try_clone()) else { return };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut &from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut reader = BufReader::new(client);
    let mut to_server = server;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => head.push_str(&line),
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        pass(shared, &target);
        if to_server.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

/// Counts the request and waits while the trap holds it.
fn pass(shared: &Shared, target: &str) {
    let mut inner = shared.inner.lock().unwrap();
    inner.seen.push(target.to_string());
    let sprung = match &mut inner.trap {
        Some((matches, n)) if matches(target) => {
            *n -= 1;
            *n == 0
        }
        _ => false,
    };
    if !sprung || inner.closed {
        return;
    }
    inner.trap = None;
    inner.holding = true;
    shared.changed.notify_all();
    while !inner.open && !inner.closed {
        inner = shared.changed.wait(inner).unwrap();
    }
    inner.holding = false;
    inner.open = false;
}
