//! Rate limiting: a fixed-window request counter that admits or refuses each request
//! and says what the rate-limit headers should count down. Windows are measured from
//! server start: window `k` covers seconds `[k * SECS, (k + 1) * SECS)`.

use std::time::{Duration, Instant};

/// The rate limit MailerLite advertises; used for the headers when no limit is set.
const DEFAULT_LIMIT: u32 = 120;

/// A fixed-window request counter.
pub(super) struct Limiter {
    start: Instant,
    window: u64,
    count: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    Allowed { limit: u32, remaining: u32 },
    Limited { limit: u32, retry_after: u64 },
}

impl Limiter {
    pub(super) fn new() -> Limiter {
        Limiter { start: Instant::now(), window: 0, count: 0 }
    }

    /// Admits at most `n` requests per window of `secs` seconds.
    pub(super) fn admit(&mut self, n: u32, secs: u32) -> Admission {
        self.admit_at(self.start.elapsed(), n, secs)
    }

    /// [`Limiter::admit`] at `elapsed` since start, so tests need no clock.
    fn admit_at(&mut self, elapsed: Duration, n: u32, secs: u32) -> Admission {
        let window = elapsed.as_secs() / u64::from(secs);
        if window != self.window {
            self.window = window;
            self.count = 0;
        }
        if self.count >= n {
            // Whole seconds, rounded up, so waiting that long always lands in the
            // next window; a refused request does not count.
            let window_end = (window + 1) * u64::from(secs);
            let retry_after = window_end.saturating_sub(elapsed.as_secs()).max(1);
            return Admission::Limited { limit: n, retry_after };
        }
        self.count += 1;
        Admission::Allowed { limit: n, remaining: n - self.count }
    }

    /// Without a limit the headers still count down, but never to 0, so a client
    /// that paces on `remaining` is never told to wait.
    pub(super) fn count_unlimited(&mut self) -> Admission {
        let remaining = DEFAULT_LIMIT - 1 - self.count % (DEFAULT_LIMIT - 1);
        self.count = self.count.wrapping_add(1);
        Admission::Allowed { limit: DEFAULT_LIMIT, remaining }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn remaining_counts_down_to_a_429_and_a_new_window_starts_over() {
        let mut limiter = Limiter::new();
        let allowed = |remaining| Admission::Allowed { limit: 3, remaining };
        assert_eq!(limiter.admit_at(at(0), 3, 10), allowed(2));
        assert_eq!(limiter.admit_at(at(4_000), 3, 10), allowed(1));
        assert_eq!(limiter.admit_at(at(9_999), 3, 10), allowed(0));
        assert_eq!(limiter.admit_at(at(9_999), 3, 10), Admission::Limited { limit: 3, retry_after: 1 });
        assert_eq!(limiter.admit_at(at(10_000), 3, 10), allowed(2));
    }

    #[test]
    fn waiting_retry_after_lets_the_next_request_through_and_no_less_does() {
        for secs in [1, 2, 7, 60] {
            for offset in [0, 1, 499, 999, 1_000, 1_500, 5_999, 59_999] {
                let mut limiter = Limiter::new();
                let refused = offset + u64::from(secs) * 1000;
                assert!(matches!(limiter.admit_at(at(refused), 1, secs), Admission::Allowed { remaining: 0, .. }));
                let Admission::Limited { retry_after, .. } = limiter.admit_at(at(refused), 1, secs) else {
                    panic!("a second request in the window of {secs} s must be refused");
                };
                assert!((1..=u64::from(secs)).contains(&retry_after), "{retry_after} of {secs}");
                let early = limiter.admit_at(at(refused + (retry_after - 1) * 1000), 1, secs);
                assert!(matches!(early, Admission::Limited { .. }), "Retry-After is not longer than needed");
                let waited = limiter.admit_at(at(refused + retry_after * 1000), 1, secs);
                assert_eq!(waited, Admission::Allowed { limit: 1, remaining: 0 }, "{secs} s window, at {offset} ms");
            }
        }
    }
}
