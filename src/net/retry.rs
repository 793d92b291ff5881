//! The retry decision: after a failed attempt, wait how long and try again, or give
//! up. A pure function of the attempt, the outcome and a jitter draw, unit tested
//! (in `http`'s tests) without a network.

use std::time::Duration;

use crate::net::pace::MAX_WAIT;

/// Longest wait a `Retry-After` can impose: [`decide`] cuts longer values to this,
/// and the client fails on them before it asks (see [`next_step`]).
pub const MAX_RETRY_AFTER: Duration = MAX_WAIT;
/// First backoff step; step n waits a uniform draw in 0..BASE·2ⁿ (full jitter).
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// How one attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An HTTP status that is not success, with its `Retry-After` if any.
    Status(u16, Option<Duration>),
    /// No usable response: connection refused or dropped, timeout, DNS.
    Transport,
    /// A 2xx whose body was cut short or refused by the caller's check.
    BadBody,
}

/// How long to wait before retry number `retry` (0-based), or `None` to give up.
/// A 429 or 503 waits what its `Retry-After` says; anything else backs off from
/// `base`. `jitter` is a uniform draw in `0..1`.
pub fn decide(retry: u32, max_retries: u32, outcome: &Outcome, jitter: f64, base: Duration) -> Option<Duration> {
    let retryable = match outcome {
        Outcome::Status(s, _) => matches!(s, 408 | 429 | 500..=599),
        Outcome::Transport | Outcome::BadBody => true,
    };
    if !retryable || retry >= max_retries {
        return None;
    }
    if let Outcome::Status(429 | 503, Some(after)) = outcome {
        return Some((*after).min(MAX_RETRY_AFTER));
    }
    let step = base.saturating_mul(1 << retry.min(16)).min(BACKOFF_CAP);
    Some(step.mul_f64(jitter.clamp(0.0, 1.0)))
}

/// What the client does after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Wait this long (never more than [`MAX_WAIT`]), then try again.
    Retry(Duration),
    /// Not retryable, or out of retries.
    GiveUp,
    /// The server asks for a wait longer than [`MAX_WAIT`]: waiting that long would
    /// look like a hang, so the run fails and says what the server asked.
    TooLong(Duration),
}

/// [`decide`], except that a `Retry-After` beyond [`MAX_WAIT`] on a 429 or 503 is
/// not cut short but refused: the server would refuse a request sent earlier.
pub fn next_step(retry: u32, max_retries: u32, outcome: &Outcome, jitter: f64, base: Duration) -> Next {
    match outcome {
        Outcome::Status(429 | 503, Some(after)) if *after > MAX_WAIT => Next::TooLong(*after),
        _ => decide(retry, max_retries, outcome, jitter, base).map_or(Next::GiveUp, Next::Retry),
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date, relative to `now`. A number
/// too large for 64 bits is the longest wait there is, not a missing header.
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format).ok()?.assume_utc();
    // In nanoseconds since 1970 (i128: no date overflows it), then back to a Duration.
    let ahead = at.unix_timestamp_nanos().saturating_sub(now.unix_timestamp_nanos());
    let secs = u64::try_from(ahead.div_euclid(1_000_000_000)).unwrap_or(0);
    let nanos = u32::try_from(ahead.rem_euclid(1_000_000_000)).unwrap_or(0);
    Some(if ahead > 0 { Duration::new(secs, nanos) } else { Duration::ZERO })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::net::pace::{Announced, Pacer};

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    /// A small deterministic generator (splitmix64): the same cases on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// A header value a server might send, or garble.
        fn value(&mut self) -> String {
            let date = |r: &mut Rng| {
                let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
                let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
                format!(
                    "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
                    days[usize::try_from(r.below(7)).unwrap()],
                    1 + r.below(28),
                    months[usize::try_from(r.below(12)).unwrap()],
                    [1, 1970, 2026, 2027, 9999][usize::try_from(r.below(5)).unwrap()],
                    r.below(24),
                    r.below(60),
                    r.below(60)
                )
            };
            match self.below(17) {
                0 => self.below(10).to_string(),
                1 => self.below(1000).to_string(),
                2 => self.below(1_000_000).to_string(),
                3 => self.next().to_string(),
                4 => u64::MAX.to_string(),
                5 => "184467440737095516150000".into(),
                6 => format!("-{}", self.below(1000)),
                7 => format!("{}.{}", self.below(100), self.below(100)),
                8 => date(self),
                9 => (1_700_000_000 + self.below(400_000_000)).to_string(),
                10 => format!("{}, {};w={}", self.below(100), self.below(100), self.below(100)),
                15 => format!("\"default\";q={};w={}", self.below(100), self.value()),
                16 => format!("\"default\";r={};t={}", self.below(3), self.value()),
                11 => ["", " ", "soon", "0x10", "1e9", "NaN", "\u{0}"][usize::try_from(self.below(7)).unwrap()].into(),
                12 => "86400".into(),
                _ => "0".into(),
            }
        }
    }

    /// Random rate-limit headers and `Retry-After` values, in random order and at
    /// random moments, never make the pacer or the retry decision panic, and never
    /// plan a wait longer than the cap: a longer demand is refused instead.
    #[test]
    fn random_rate_limit_headers_give_bounded_waits_and_no_panic() {
        let names = [
            ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"],
            ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"],
            ["ratelimit-policy", "ratelimit", "x-ratelimit-policy"],
        ];
        let mut rng = Rng(0x5EED);
        let (mut refused, mut too_long, mut learned) = (0, 0, 0);
        for case in 0..400 {
            let t0 = Instant::now();
            let budgets = [None, Some((120, s(60.0))), Some((50, s(60.0))), Some((1, s(1.0)))];
            let mut p = Pacer::new(budgets[case % budgets.len()]);
            let mut now = t0;
            let now_utc = time::OffsetDateTime::now_utc();
            for _ in 0..40 {
                now = now.checked_add(Duration::from_millis(rng.below(3000))).unwrap();
                match p.wait(now) {
                    Ok(wait) => assert!(wait <= MAX_WAIT, "case {case}: a wait of {wait:?}"),
                    Err(e) => {
                        assert!(e.wait > MAX_WAIT && !e.demand.is_empty(), "case {case}: {e:?}");
                        too_long += 1;
                        continue;
                    }
                }
                p.sent(now);
                let spelling = names[usize::try_from(rng.below(3)).unwrap()];
                let mut values: Vec<(&str, String)> = Vec::new();
                for name in spelling {
                    if rng.below(4) > 0 {
                        values.push((name, rng.value()));
                    }
                }
                let header = |n: &str| values.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
                p.announced_all(now, Announced::from_headers(header, rng.next()));
                if rng.below(5) == 0 {
                    refused += 1;
                    let after = parse_retry_after(&rng.value(), now_utc);
                    p.refused(now, after);
                    let status = [429, 503, 500][usize::try_from(rng.below(3)).unwrap()];
                    let outcome = Outcome::Status(status, after);
                    let jitter = f64::from(u32::try_from(rng.below(1 << 20)).unwrap()) / f64::from(1u32 << 20);
                    let retry = u32::try_from(rng.below(8)).unwrap();
                    match next_step(retry, 5, &outcome, jitter, Duration::from_millis(500)) {
                        Next::Retry(wait) => assert!(wait <= MAX_WAIT, "case {case}: retry in {wait:?}"),
                        Next::TooLong(wait) => assert!(wait > MAX_WAIT && status != 500, "case {case}: {wait:?}"),
                        Next::GiveUp => assert!(retry >= 5, "case {case}: gave up on retry {retry}"),
                    }
                }
                if let Some((n, window)) = p.budget() {
                    assert!(n > 0 && window <= MAX_WAIT, "case {case}: learned {n} per {window:?}");
                    learned += usize::from(budgets[case % budgets.len()].is_none());
                }
            }
        }
        // The generator reaches every branch: refusals, refused waits and learned windows.
        assert!(refused > 1000 && too_long > 100 && learned > 100, "{refused} {too_long} {learned}");
    }
}
