//! Rate limiting: a fixed-window request counter that admits or refuses each request
//! and says what the rate-limit headers should count down.

use std::time::Instant;

/// The rate limit MailerLite advertises; used for the headers when no limit is set.
const DEFAULT_LIMIT: u32 = 120;

/// A fixed-window request counter.
pub(super) struct Limiter {
    start: Instant,
    window: u64,
    count: u32,
}

pub(super) enum Admission {
    Allowed { limit: u32, remaining: u32 },
    Limited { limit: u32, retry_after: u64 },
}

impl Limiter {
    pub(super) fn new() -> Limiter {
        Limiter { start: Instant::now(), window: 0, count: 0 }
    }

    pub(super) fn admit(&mut self, n: u32, secs: u32) -> Admission {
        let elapsed = self.start.elapsed();
        let window = elapsed.as_secs() / u64::from(secs);
        if window != self.window {
            self.window = window;
            self.count = 0;
        }
        if self.count >= n {
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
