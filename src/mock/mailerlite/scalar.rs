//! Wire formats of scalar values: ids as strings of digits, the API's two timestamp
//! shapes, percentages and rates, each serialized exactly as the real API sends it
//! (by hand where `fmt` dominated page time).

use std::borrow::Cow;
use std::fmt;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::DAY;

/// An id sent as a JSON string of digits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Id(pub(super) u64);

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // By hand: `collect_str` goes through `fmt`, which dominated page time.
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = self.0;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        s.serialize_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"))
    }
}

/// Unix seconds sent as `YYYY-MM-DD HH:MM:SS` (UTC).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Stamp(pub(super) i64);

impl Stamp {
    /// The 19 bytes of `YYYY-MM-DD HH:MM:SS`, formatted by hand because this
    /// runs four times per subscriber and `fmt` dominated page time.
    fn text(&self) -> [u8; 19] {
        let (days, secs) = (self.0.div_euclid(DAY), self.0.rem_euclid(DAY) as u32);
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00 00:00:00";
        let parts = [(0, 4, year as u32), (5, 2, month), (8, 2, day)];
        let clock = [(11, 2, secs / 3600), (14, 2, secs / 60 % 60), (17, 2, secs % 60)];
        for (at, width, mut value) in parts.into_iter().chain(clock) {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        out
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.text()).expect("ASCII digits"))
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.text()).expect("ASCII digits"))
    }
}

/// Unix seconds as the ISO form with microseconds that raw models embedded in
/// campaigns use: `2023-09-23T08:12:28.000000Z`.
#[derive(Clone, Copy, Debug)]
pub(super) struct IsoStamp(pub(super) i64);

impl Serialize for IsoStamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let plain = Stamp(self.0).to_string().replace(' ', "T");
        s.collect_str(&format_args!("{plain}.000000Z"))
    }
}

/// A number in hundredths, sent as an integer literal when it is whole (`0`, `100`),
/// as the real API does, and as a decimal otherwise (`64.29`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Hundredths(u64);

impl Serialize for Hundredths {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(100) {
            s.serialize_u64(self.0 / 100)
        } else {
            s.serialize_f64(self.0 as f64 / 100.0)
        }
    }
}

/// A fraction in basis points, sent as `{"float": 0.4216, "string": "42.16%"}`;
/// `float` is an integer literal (`0`, `1`) when whole.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rate(pub(super) u64);

impl Rate {
    pub(super) fn of(part: u64, whole: u64) -> Rate {
        Rate(ten_thousandths(part, whole))
    }

    fn percent(&self) -> String {
        let (int, frac) = (self.0 / 100, self.0 % 100);
        match frac {
            0 => format!("{int}%"),
            f if f % 10 == 0 => format!("{int}.{}%", f / 10),
            f => format!("{int}.{f:02}%"),
        }
    }

    /// The bare fraction as text, as raw group models carry it: `"0.4268"`.
    pub(super) fn fraction_text(&self) -> String {
        (self.0 as f64 / 10_000.0).to_string()
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        if self.0.is_multiple_of(10_000) {
            map.serialize_entry("float", &(self.0 / 10_000))?;
        } else {
            map.serialize_entry("float", &(self.0 as f64 / 10_000.0))?;
        }
        map.serialize_entry("string", &self.percent())?;
        map.end()
    }
}

/// Subscriber `fields`: an object whose keys depend on the account's custom fields.
pub(super) struct FieldValues<'a>(pub(super) &'a [(&'a str, Option<Cow<'a, str>>)]);

impl Serialize for FieldValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Hundredths of a percent of `part` in `whole`, 0 when nothing was sent.
pub(super) fn percent_hundredths(part: u64, whole: u64) -> Hundredths {
    Hundredths(ten_thousandths(part, whole))
}

/// `part / whole` in units of 1/10 000, rounded; 0 when `whole` is 0.
fn ten_thousandths(part: u64, whole: u64) -> u64 {
    (part * 10_000 + whole / 2).checked_div(whole).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::mailerlite::{T0, T_GEN1};

    #[test]
    fn timestamps_are_utc_in_the_real_format() {
        let check = |t: i64| {
            let reference = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
            let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
            assert_eq!(Stamp(t).to_string(), reference.format(&format).unwrap());
        };
        for t in [0, T0, T_GEN1, 951_782_400, 4_107_542_399, 1_709_164_799] {
            check(t);
        }
        (0..2000).for_each(|i| check(T0 + i * 86_413 + i % 7));
    }
}
