//! Timestamps the connectors know, written as RFC 3339 UTC (`2025-02-11T09:41:27Z`).
//!
//! MailerLite sends `2025-02-11 09:41:27` (UTC), Paligo Unix seconds. A value that is
//! not a valid date-time in the connector's format is written as sent, never turned
//! into an invalid RFC 3339 string; the caller counts it for one warning per table.
//! The checks are written out by hand because they run on every timestamp of every
//! record; the tests hold them against the `time` crate as the oracle.

use std::io::Write;

/// How a connector's timestamp fields arrive on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// `2025-02-11 09:41:27`, in UTC.
    SpaceSeparatedUtc,
    /// Unix seconds as a JSON integer.
    UnixSeconds,
}

/// Appends `value` (a string the API sent) to `out` as RFC 3339 UTC; false, with
/// `value` appended as sent, when it is not a valid `YYYY-MM-DD HH:MM:SS`. A value
/// already in RFC 3339 UTC form (`…T…Z`) is valid and kept.
pub fn space_separated(value: &[u8], out: &mut Vec<u8>) -> bool {
    let valid = match value.get(10) {
        Some(b' ') if value.len() == 19 => valid_datetime(value),
        Some(b'T') if value.len() == 20 && value[19] == b'Z' => valid_datetime(&value[..19]),
        _ => false,
    };
    if !valid {
        out.extend_from_slice(value);
        return false;
    }
    out.extend_from_slice(&value[..10]);
    out.push(b'T');
    out.extend_from_slice(&value[11..19]);
    out.push(b'Z');
    true
}

/// True when `v` is `YYYY-MM-DD?HH:MM:SS` (any byte at 10) naming a real instant.
fn valid_datetime(v: &[u8]) -> bool {
    let shape = v.len() == 19
        && v.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => true,
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return false;
    }
    let num = |r: std::ops::Range<usize>| v[r].iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
    (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second < 60
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Appends Unix seconds `text` (a JSON number as sent) to `out` as RFC 3339 UTC;
/// false, with `text` appended as sent, when it is not an integer of a year 0–9999.
pub fn unix_seconds(text: &[u8], out: &mut Vec<u8>) -> bool {
    let secs = std::str::from_utf8(text).ok().and_then(|s| s.parse::<i64>().ok());
    match secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok()) {
        Some(t) if (0..=9999).contains(&t.year()) => {
            write_utc(t, out);
            true
        }
        _ => {
            out.extend_from_slice(text);
            false
        }
    }
}

fn write_utc(t: time::OffsetDateTime, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
}

/// A time as RFC 3339 UTC with whole seconds.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let mut out = Vec::with_capacity(20);
    write_utc(t.to_offset(time::UtcOffset::UTC), &mut out);
    String::from_utf8(out).expect("ascii")
}

/// Now, as RFC 3339 UTC.
pub fn now() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;

    /// The oracle: the `time` crate's parser.
    fn oracle(value: &str) -> Option<String> {
        let space = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let t = time::PrimitiveDateTime::parse(value, space).ok().map(|t| t.assume_utc()).or_else(|| {
            let t = time::OffsetDateTime::parse(value, &Rfc3339).ok()?;
            (value.len() == 20 && t.offset().is_utc()).then_some(t)
        })?;
        Some(t.format(&Rfc3339).unwrap())
    }

    fn ours(value: &str) -> Option<String> {
        let mut out = Vec::new();
        let ok = space_separated(value.as_bytes(), &mut out);
        let out = String::from_utf8(out).unwrap();
        if ok {
            Some(out)
        } else {
            assert_eq!(out, value, "an invalid value must be kept as sent");
            None
        }
    }

    #[test]
    fn space_separated_agrees_with_the_time_crate() {
        let mut cases: Vec<String> = [
            "2025-02-11 09:41:27",
            "2025-02-11T09:41:27Z",
            "2024-02-29 23:59:59",
            "2023-02-29 00:00:00",
            "1900-02-29 00:00:00",
            "2000-02-29 00:00:00",
            "2025-13-01 00:00:00",
            "2025-00-10 00:00:00",
            "2025-04-31 00:00:00",
            "2025-01-01 24:00:00",
            "2025-01-01 23:60:00",
            "2025-01-01 23:59:60",
            "2025-1-01 00:00:00",
            "2025-02-11 09:41:27 ",
            "2025-02-11T09:41:27+00:00",
            "0000-01-01 00:00:00",
            "",
            "not a date",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every field swept through its edges.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = |shift: u32, m: u64| (seed >> shift) % m;
            let sep = if r(60, 8) == 0 { 'T' } else { ' ' };
            let z = if sep == 'T' { "Z" } else { "" };
            cases.push(format!(
                "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}{z}",
                r(0, 10000),
                r(14, 14),
                r(18, 33),
                r(24, 26),
                r(30, 62),
                r(36, 62)
            ));
        }
        for case in &cases {
            assert_eq!(ours(case), oracle(case), "{case:?}");
        }
    }

    #[test]
    fn unix_seconds_agree_with_the_time_crate() {
        let mut cases: Vec<String> = ["0", "-1", "1731400000", "253402300799", "253402300800", "-62167219200"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        cases.extend(["-62167219201", "1.5", "1e9", "99999999999999999999", ""].map(String::from));
        let mut seed = 7u64;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            cases.push(((seed >> 1) as i64 % 300_000_000_000).to_string());
        }
        for case in &cases {
            let mut out = Vec::new();
            let ok = unix_seconds(case.as_bytes(), &mut out);
            let want = case
                .parse::<i64>()
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .filter(|t| (0..=9999).contains(&t.year()))
                .map(|t| t.format(&Rfc3339).unwrap());
            match want {
                Some(w) => assert_eq!((ok, String::from_utf8(out).unwrap()), (true, w), "{case}"),
                None => assert_eq!((ok, out), (false, case.as_bytes().to_vec()), "{case}"),
            }
        }
    }

    #[test]
    fn rfc3339_has_whole_seconds_and_z() {
        let t = time::macros::datetime!(2025-02-11 09:41:27.75 +02:00);
        assert_eq!(rfc3339(t), "2025-02-11T07:41:27Z");
    }
}
