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

/// Added to a learned window: the server's clock and ours disagree a little, and a
/// request is counted when it arrives, not when it leaves.
const SAFETY: Duration = Duration::from_millis(50);

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
}

impl Pacer {
    /// A pacer with a documented budget of `limit` requests per `window`, or none.
    pub fn new(budget: Option<(u32, Duration)>) -> Pacer {
        Pacer {
            budget: budget.map(|(n, w)| (n.max(1) as usize, w)),
            sent: VecDeque::new(),
            announced: None,
            remaining: None,
            window_began: None,
            last_sent: None,
        }
    }

    /// The budget in force: (requests, window).
    pub fn budget(&self) -> Option<(usize, Duration)> {
        self.budget
    }

    /// How long to wait at `now` before the next request may go.
    pub fn delay(&self, now: Instant) -> Duration {
        let Some((limit, window)) = self.budget else { return Duration::ZERO };
        match self.sent.front() {
            Some(&oldest) if self.sent.len() >= limit => (oldest + window).saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// Notes a request sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.sent.push_back(now);
        let keep = self.budget.map_or(0, |(n, _)| n);
        while self.sent.len() > keep {
            self.sent.pop_front();
        }
    }

    /// Notes the rate-limit headers of the answer to the request sent last.
    pub fn announced(&mut self, limit: Option<u64>, remaining: Option<u64>) {
        if let Some(limit) = limit.filter(|&l| l > 0) {
            let limit = limit.min(u32::MAX as u64) as usize;
            self.announced = Some(limit);
            if let Some((_, w)) = self.budget.filter(|&(n, _)| limit < n) {
                self.budget = Some((limit, w));
                while self.sent.len() > limit {
                    self.sent.pop_front();
                }
            }
        }
        if let (Some(r), Some(limit)) = (remaining, self.announced) {
            // The first request of a window leaves limit - 1; a count that went up
            // means the window reset before this request.
            let reset = r + 1 >= limit as u64 || self.remaining.is_some_and(|prev| r > prev);
            if reset || self.window_began.is_none() {
                self.window_began = self.last_sent;
            }
            self.remaining = Some(r);
        }
    }

    /// A 429 arrived at `now` saying the window resets after `retry_after`. If the
    /// server had counted its window down to 0, learn the window (from its first
    /// request to that reset) and pace to it from now on; a 429 while requests
    /// remained (a server in trouble, another client sharing the limit) teaches nothing.
    pub fn refused(&mut self, now: Instant, retry_after: Option<Duration>) {
        let exhausted = self.remaining == Some(0);
        let (Some(after), Some(began), Some(limit), true) = (retry_after, self.window_began, self.announced, exhausted)
        else {
            return;
        };
        let window = (now + after).saturating_duration_since(began) + SAFETY;
        let tighter = match self.budget {
            None => true,
            Some((n, w)) => limit < n || window.as_secs_f64() / limit as f64 > w.as_secs_f64() / n as f64,
        };
        if tighter && !window.is_zero() {
            log::info!(
                "rate limit: the server allows {limit} requests per {:.1}s; pacing to that",
                window.as_secs_f64()
            );
            self.budget = Some((limit, window));
        }
        // Every request of the refused window counts against it.
        self.sent.clear();
        for _ in 0..limit {
            self.sent.push_back(began);
        }
        self.window_began = None;
        self.remaining = None;
    }
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
}
