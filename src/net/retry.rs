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
