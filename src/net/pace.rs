//! Pacing: at most N requests in any sliding window, so a sync stays under an API's
//! rate limit instead of bursting into 429s (Paligo may suspend keys that keep
//! exceeding its limits).
//!
//! Real hosts start with their documented budget (MailerLite 120 a minute, Paligo
//! 50). Any host can teach a tighter one: `x-ratelimit-limit` gives the count, and
//! the first 429's `Retry-After` gives the window, measured from the first request
//! the server counted in it to the moment it says the window resets. Until a server
//! has refused a request, a host without a documented budget (the mock on loopback)
//! is not paced at all: most never refuse one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The longest single wait api2csv accepts, whoever asks for it: a `Retry-After`
/// (seconds or a date), a reset the server announces, a window it teaches. A
/// longer demand ends the run with one line naming it, rather than a hang.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Added to a learned window: the server's clock and ours disagree a little, and a
/// request is counted when it arrives, not when it leaves.
const SAFETY: Duration = Duration::from_millis(50);

/// Send times kept while unpaced, so that a window announced later counts the
/// requests already sent in it.
const UNPACED_HISTORY: usize = 1024;

/// A reset header above this many seconds is a Unix time (GitHub sends one), not a delay.
const UNIX_TIME_FROM: u64 = 1_000_000_000;

/// What one response says about the rate limit: `x-ratelimit-*`, or the IETF
/// drafts' `ratelimit-*`, `ratelimit-policy` and `ratelimit` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Announced {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// How long until the current window resets.
    pub reset: Option<Duration>,
    /// The window the limit counts in (`ratelimit-policy: 10;w=60`).
    pub window: Option<Duration>,
}

impl Announced {
    /// Reads the headers through `header` (a lookup by lower-case name) at
    /// `now_unix` (seconds since 1970). A value that is not a non-negative integer
    /// says nothing; one too large for 64 bits is the largest there is.
    pub fn from_headers<'h>(header: impl Fn(&str) -> Option<&'h str>, now_unix: u64) -> Announced {
        let first = |names: [&str; 2]| names.iter().find_map(|n| header(n).and_then(count));
        let policy = header("ratelimit-policy").or_else(|| header("x-ratelimit-policy"));
        // The newest draft puts remaining and reset in one `ratelimit: "default";r=5;t=30`.
        let combined = header("ratelimit");
        let reset = first(["x-ratelimit-reset", "ratelimit-reset"]).or_else(|| combined.and_then(|v| param(v, "t")));
        let reset =
            reset.map(|n| Duration::from_secs(if n >= UNIX_TIME_FROM { n.saturating_sub(now_unix) } else { n }));
        // `ratelimit-limit: 10, 10;w=60` (an older draft) names the window too.
        let window =
            policy.and_then(|p| param(p, "w")).or_else(|| header("ratelimit-limit").and_then(|v| param(v, "w")));
        Announced {
            limit: first(["x-ratelimit-limit", "ratelimit-limit"])
                .or_else(|| policy.and_then(|p| param(p, "q").or(count(p)))),
            remaining: first(["x-ratelimit-remaining", "ratelimit-remaining"])
                .or_else(|| combined.and_then(|v| param(v, "r"))),
            reset,
            window: window.filter(|&w| w > 0).map(Duration::from_secs),
        }
    }
}

/// A count as these headers send it: `10`, or the first item of `10, 10;w=60`.
fn count(value: &str) -> Option<u64> {
    let item = value.split([',', ';']).next()?.trim();
    if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(item.parse().unwrap_or(u64::MAX))
}

/// The first parameter `key` of a structured header value: `w` of `10;w=60` or of
/// `"default";q=10;w=60`.
fn param(value: &str, key: &str) -> Option<u64> {
    value.split([',', ';']).find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim() == key).then(|| count(v))?
    })
}

/// A wait longer than [`MAX_WAIT`], and what the server said that asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    pub wait: Duration,
    pub demand: String,
}

/// How long from when the server said no request may go, and why. Kept as a
/// start and a length, so that no demand, however large, overflows an `Instant`.
#[derive(Debug, Clone)]
struct Block {
    from: Instant,
    wait: Duration,
    /// What the server said: `Retry-After: 60`.
    demand: String,
}

impl Block {
    fn left(&self, now: Instant) -> Duration {
        self.wait.saturating_sub(now.saturating_duration_since(self.from))
    }
}

#[derive(Debug, Clone)]
pub struct Pacer {
    /// Requests allowed per window, and the window; `None`: unpaced.
    budget: Option<(usize, Duration)>,
    /// When the requests of the current window were sent, oldest first.
    sent: VecDeque<Instant>,
    /// The limit the server announces, if any.
    announced: Option<usize>,
    /// The `remaining` the server last announced.
    remaining: Option<u64>,
    /// When the server's current window began, as far as we can tell: the send time
    /// of the first request it counted after a reset.
    window_began: Option<Instant>,
    last_sent: Option<Instant>,
    /// No request before this: the server said its window is used up until then.
    block: Option<Block>,
}

impl Pacer {
    /// A pacer with a documented budget of `limit` requests per `window`, or none.
    pub fn new(budget: Option<(u32, Duration)>) -> Pacer {
        Pacer {
            budget: budget.map(|(n, w)| (usize::try_from(n.max(1)).unwrap_or(usize::MAX), w)),
            sent: VecDeque::new(),
            announced: None,
            remaining: None,
            window_began: None,
            last_sent: None,
            block: None,
        }
    }

    /// The budget in force: (requests, window), which the tests look at.
    #[cfg(test)]
    pub fn budget(&self) -> Option<(usize, Duration)> {
        self.budget
    }

    /// How long to wait at `now` before the next request may go.
    pub fn delay(&self, now: Instant) -> Duration {
        let blocked = self.block.as_ref().map_or(Duration::ZERO, |b| b.left(now));
        let Some((limit, window)) = self.budget else { return blocked };
        let paced = match self.sent.front() {
            Some(&oldest) if self.sent.len() >= limit => {
                oldest.checked_add(window).map_or(window, |end| end.saturating_duration_since(now))
            }
            _ => Duration::ZERO,
        };
        paced.max(blocked)
    }

    /// [`Pacer::delay`], or what the server demanded when that is longer than [`MAX_WAIT`].
    pub fn wait(&self, now: Instant) -> Result<Duration, TooLong> {
        let wait = self.delay(now);
        if wait <= MAX_WAIT {
            return Ok(wait);
        }
        let demand = match &self.block {
            Some(b) if b.left(now) == wait => b.demand.clone(),
            _ => format!("a rate limit of {} requests per {:.1}s", self.budget.map_or(0, |b| b.0), wait.as_secs_f64()),
        };
        Err(TooLong { wait, demand })
    }

    /// Notes a request sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.sent.push_back(now);
        self.keep(self.budget.map_or(UNPACED_HISTORY, |(n, _)| n));
    }

    /// Forgets all but the last `n` send times.
    fn keep(&mut self, n: usize) {
        while self.sent.len() > n {
            self.sent.pop_front();
        }
    }

    /// Notes the rate-limit headers of the answer to the request sent last.
    pub fn announced(&mut self, limit: Option<u64>, remaining: Option<u64>) {
        if let Some(limit) = limit.filter(|&l| l > 0) {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            self.announced = Some(limit);
            if let Some((_, w)) = self.budget.filter(|&(n, _)| limit < n) {
                self.budget = Some((limit, w));
                self.keep(limit);
            }
        }
        if let (Some(r), Some(limit)) = (remaining, self.announced) {
            // The first request of a window leaves limit - 1; a count that went up
            // means the window reset before this request.
            let first = usize::try_from(r.saturating_add(1)).map_or(true, |n| n >= limit);
            let reset = first || self.remaining.is_some_and(|prev| r > prev);
            if reset || self.window_began.is_none() {
                self.window_began = self.last_sent;
            }
            self.remaining = Some(r);
        }
    }

    /// Notes everything a response announced at `now`: [`Pacer::announced`], and a
    /// window used up until its announced reset holds back the next request until then.
    pub fn announced_all(&mut self, now: Instant, a: Announced) {
        self.announced(a.limit, a.remaining);
        if let (Some(limit), Some(window)) = (self.announced, a.window) {
            self.learn(limit, window.saturating_add(SAFETY), "announces");
        }
        let (Some(0), Some(reset)) = (a.remaining, a.reset) else { return };
        let demand =
            format!("its rate limit is used up (remaining 0) until the reset it announced in {} s", reset.as_secs());
        self.block_until(now, reset, demand);
    }

    /// No request before `after` (and a margin) from `now`, unless an earlier
    /// demand holds them back longer.
    fn block_until(&mut self, now: Instant, after: Duration, demand: String) {
        let wait = after.saturating_add(SAFETY);
        if self.block.as_ref().is_none_or(|b| b.left(now) < wait) {
            self.block = Some(Block { from: now, wait, demand });
        }
    }

    /// A 429 arrived at `now` saying the window resets after `retry_after`. If the
    /// server had counted its window down to 0, learn the window (from its first
    /// request to that reset) and pace to it from now on; a 429 while requests
    /// remained (a server in trouble, another client sharing the limit) teaches
    /// nothing, and neither does a window longer than [`MAX_WAIT`].
    pub fn refused(&mut self, now: Instant, retry_after: Option<Duration>) {
        let exhausted = self.remaining == Some(0);
        let (Some(after), Some(began), Some(limit), true) = (retry_after, self.window_began, self.announced, exhausted)
        else {
            return;
        };
        let Some(reset) = now.checked_add(after).filter(|_| after <= MAX_WAIT) else { return };
        let window = reset.saturating_duration_since(began).saturating_add(SAFETY);
        self.learn(limit, window, "allows");
        // Every request of the refused window counts against it: none goes before its reset.
        self.sent.clear();
        self.block_until(now, after, format!("Retry-After: {}", after.as_secs()));
        self.window_began = None;
        self.remaining = None;
    }

    /// Paces to `limit` requests per `window` from now on, if that is stricter than
    /// the budget in force and the window is no longer than [`MAX_WAIT`].
    fn learn(&mut self, limit: usize, window: Duration, how: &str) {
        let tighter = match self.budget {
            None => true,
            Some((n, w)) => limit < n || slower(window, limit, w, n),
        };
        if tighter && !window.is_zero() && window <= MAX_WAIT {
            log::info!(
                "rate limit: the server {how} {limit} requests per {:.1}s; pacing to that",
                window.as_secs_f64()
            );
            self.budget = Some((limit, window));
            self.keep(limit);
        }
    }
}

/// True when `a` requests per `wa` is a slower pace than `b` per `wb`.
fn slower(wa: Duration, a: usize, wb: Duration, b: usize) -> bool {
    let n = |x: usize| u128::try_from(x).unwrap_or(u128::MAX);
    wa.as_nanos().saturating_mul(n(b)) > wb.as_nanos().saturating_mul(n(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn never_more_than_the_budget_in_any_window() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Some((3, s(60.0))));
        for i in 0..3 {
            assert_eq!(p.delay(t0 + s(i as f64)), Duration::ZERO);
            p.sent(t0 + s(i as f64));
        }
        assert_eq!(p.delay(t0 + s(10.0)), s(50.0));
        p.sent(t0 + s(60.0));
        assert_eq!(p.delay(t0 + s(60.0)), s(1.0));
        assert_eq!(p.delay(t0 + s(200.0)), Duration::ZERO);
    }

    #[test]
    fn an_announced_stricter_limit_applies_at_once() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Some((120, s(60.0))));
        p.sent(t0);
        p.sent(t0);
        p.announced(Some(2), Some(0));
        assert_eq!(p.delay(t0), s(60.0));
        p.announced(Some(500), None);
        assert_eq!(p.delay(t0), s(60.0));
    }

    #[test]
    fn an_unpaced_host_learns_the_window_from_its_first_429() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None);
        // 20 requests go out in 0.2 s; the server counts them down.
        for i in 0..20u64 {
            let at = t0 + s(0.01 * i as f64);
            assert_eq!(p.delay(at), Duration::ZERO);
            p.sent(at);
            p.announced(Some(20), Some(19 - i));
        }
        // The 21st is refused: the window resets in 2 s.
        p.sent(t0 + s(0.2));
        p.refused(t0 + s(0.2), Some(s(2.0)));
        let (limit, window) = p.budget().unwrap();
        assert_eq!(limit, 20);
        assert!((window.as_secs_f64() - 2.25).abs() < 0.001, "{window:?}");
        // Nothing goes before the reset; then 20 go at once, and the next waits a window.
        assert!(p.delay(t0 + s(1.0)) > s(1.0));
        let reset = t0 + window;
        assert_eq!(p.delay(reset), Duration::ZERO);
        for i in 0..20 {
            let at = reset + s(0.01 * i as f64);
            assert_eq!(p.delay(at), Duration::ZERO, "{i}");
            p.sent(at);
            p.announced(Some(20), Some(19 - i));
        }
        assert!(p.delay(reset + s(0.2)) >= s(2.0));
    }

    #[test]
    fn a_429_without_retry_after_or_limit_teaches_nothing() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None);
        p.sent(t0);
        p.refused(t0, Some(s(1.0)));
        assert_eq!(p.budget(), None);
        p.announced(Some(5), Some(0));
        p.refused(t0, None);
        assert_eq!(p.budget(), None);
        // Requests remained: an injected or shared 429, not the window's end.
        p.announced(Some(5), Some(3));
        p.refused(t0, Some(s(1.0)));
        assert_eq!(p.budget(), None);
    }

    #[test]
    fn rate_limit_headers_of_both_spellings_are_read() {
        let now_unix = 1_800_000_000;
        let read = |pairs: &[(&str, &str)]| {
            let pairs = pairs.to_vec();
            Announced::from_headers(move |n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v), now_unix)
        };
        let a = read(&[("x-ratelimit-limit", " 120 "), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "7")]);
        assert_eq!(a, Announced { limit: Some(120), remaining: Some(0), reset: Some(s(7.0)), window: None });
        let a = read(&[
            ("ratelimit-limit", "10, 10;w=60"),
            ("ratelimit-remaining", "3"),
            ("ratelimit-reset", "1800000030"),
        ]);
        assert_eq!(a, Announced { limit: Some(10), remaining: Some(3), reset: Some(s(30.0)), window: Some(s(60.0)) });
        let a = read(&[("ratelimit-policy", "\"default\";q=100;w=10"), ("ratelimit", "\"default\";r=0;t=4")]);
        assert_eq!(a, Announced { limit: Some(100), remaining: Some(0), reset: Some(s(4.0)), window: Some(s(10.0)) });
        let a = read(&[("x-ratelimit-limit", "-1"), ("x-ratelimit-remaining", "1.5"), ("x-ratelimit-reset", "soon")]);
        assert_eq!(a, Announced::default());
        let a = read(&[("x-ratelimit-remaining", "99999999999999999999999")]);
        assert_eq!(a.remaining, Some(u64::MAX));
    }

    #[test]
    fn a_retry_after_of_u64_max_neither_panics_nor_teaches_a_window() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None);
        p.sent(t0);
        p.announced(Some(3), Some(0));
        p.refused(t0, Some(Duration::from_secs(u64::MAX)));
        assert_eq!(p.budget(), None);
        assert!(p.wait(t0).is_ok_and(|w| w <= MAX_WAIT));
    }

    #[test]
    fn a_day_long_retry_after_is_not_learned_as_the_window() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None);
        for i in 0..3u64 {
            p.sent(t0);
            p.announced(Some(3), Some(2 - i));
        }
        p.refused(t0 + s(0.1), Some(s(86400.0)));
        assert_eq!(p.budget(), None);
        // A window up to the cap is learned; none longer.
        let mut p = Pacer::new(None);
        p.sent(t0);
        p.announced(Some(1), Some(0));
        p.refused(t0 + s(1.0), Some(MAX_WAIT));
        assert_eq!(p.budget(), None, "a window of the cap plus the margin is longer than the cap");
        let mut p = Pacer::new(None);
        p.sent(t0);
        p.announced(Some(1), Some(0));
        p.refused(t0, Some(s(200.0)));
        assert_eq!(p.budget().map(|b| b.0), Some(1));
    }

    #[test]
    fn a_used_up_window_with_an_announced_reset_holds_back_the_next_request() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None);
        p.sent(t0);
        p.announced_all(t0, Announced { limit: Some(5), remaining: Some(1), reset: Some(s(4.0)), window: None });
        assert_eq!(p.wait(t0), Ok(Duration::ZERO), "a request remains");
        p.sent(t0);
        p.announced_all(t0, Announced { limit: Some(5), remaining: Some(0), reset: Some(s(4.0)), window: None });
        assert_eq!(p.wait(t0 + s(1.0)), Ok(s(3.05)));
        assert_eq!(p.wait(t0 + s(5.0)), Ok(Duration::ZERO));
        // A reset beyond the cap is not waited for: it is refused, naming the demand.
        p.announced_all(t0, Announced { limit: Some(5), remaining: Some(0), reset: Some(s(86400.0)), window: None });
        let err = p.wait(t0).unwrap_err();
        assert!(err.wait > MAX_WAIT && err.demand.contains("86400 s"), "{err:?}");
    }

    #[test]
    fn an_announced_window_counts_the_requests_already_sent() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None);
        p.sent(t0);
        p.sent(t0 + s(0.1));
        p.announced_all(
            t0 + s(0.1),
            Announced { limit: Some(2), remaining: Some(0), reset: None, window: Some(s(1.0)) },
        );
        assert_eq!(p.budget(), Some((2, s(1.05))));
        assert_eq!(p.wait(t0 + s(0.2)), Ok(s(0.85)));
    }
}
