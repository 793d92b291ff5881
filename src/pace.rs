//! Client-side pacing: at most N requests in any sliding window, so a long sync
//! stays under an API's documented rate limit instead of bursting into 429s
//! (Paligo may suspend keys that keep exceeding its limits).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Pacer {
    limit: usize,
    window: Duration,
    /// When the last `limit` requests were sent, oldest first.
    sent: VecDeque<Instant>,
}

impl Pacer {
    pub fn new(limit: u32, window: Duration) -> Pacer {
        Pacer { limit: limit.max(1) as usize, window, sent: VecDeque::new() }
    }

    /// How long to wait at `now` before the next request may go.
    pub fn delay(&self, now: Instant) -> Duration {
        match self.sent.front() {
            Some(&oldest) if self.sent.len() >= self.limit => (oldest + self.window).saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// Notes a request sent at `now`.
    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
        while self.sent.len() > self.limit {
            self.sent.pop_front();
        }
    }

    /// Adopts the limit the API announces (`x-ratelimit-limit`), if it is stricter.
    pub fn announce(&mut self, limit: u32) {
        if limit > 0 && (limit as usize) < self.limit {
            self.limit = limit as usize;
            while self.sent.len() > self.limit {
                self.sent.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_limit_in_any_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pacer::new(3, s(60));
        for i in 0..3 {
            assert_eq!(p.delay(t0 + s(i)), Duration::ZERO);
            p.record(t0 + s(i));
        }
        // The fourth waits until the first leaves the window.
        assert_eq!(p.delay(t0 + s(10)), s(50));
        p.record(t0 + s(60));
        assert_eq!(p.delay(t0 + s(60)), s(1));
        assert_eq!(p.delay(t0 + s(200)), Duration::ZERO);
    }

    #[test]
    fn an_announced_stricter_limit_applies_at_once() {
        let t0 = Instant::now();
        let mut p = Pacer::new(120, Duration::from_secs(60));
        p.record(t0);
        p.record(t0);
        p.announce(2);
        assert_eq!(p.delay(t0), Duration::from_secs(60));
        p.announce(500);
        assert_eq!(p.delay(t0), Duration::from_secs(60));
    }
}
