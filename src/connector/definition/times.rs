//! A definition's `timestamps` formats that the page parser does not convert as it
//! reads (it knows Unix seconds and `[year]-[month]-[day] [hour]:[minute]:[second]`):
//! `rfc3339` (any offset, written in UTC), `unix_millis`, and any `time` crate format
//! description (read as UTC unless it holds an offset). Each converts one value to
//! RFC 3339 UTC; a value that does not fit is written as sent.

use time::format_description::well_known::Rfc3339;
use time::format_description::OwnedFormatItem;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::load::Table;
use crate::page::parse::{decode, Batch, KeyPath};
use crate::page::timestamp::TimeFormat;
use serde_json::{Map, Value};

/// How one timestamp field arrives.
#[derive(Debug)]
pub enum Format {
    Rfc3339,
    UnixSeconds,
    UnixMillis,
    Described(OwnedFormatItem),
}

impl Format {
    /// The format named by a definition (`rfc3339`, `unix_seconds`, `unix_millis`)
    /// or described (`[year]-[month]-[day]`).
    pub fn parse(text: &str) -> Result<Format, String> {
        Ok(match text {
            "rfc3339" => Format::Rfc3339,
            "unix_seconds" => Format::UnixSeconds,
            "unix_millis" => Format::UnixMillis,
            other => Format::Described(time::format_description::parse_owned::<2>(other).map_err(|e| {
                format!("neither rfc3339, unix_seconds, unix_millis nor a time format description ({e})")
            })?),
        })
    }

    /// `value` (as the API sent it, a number's text or a string) as RFC 3339 UTC.
    pub fn convert(&self, value: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(value).ok()?;
        let t = match self {
            Format::Rfc3339 => OffsetDateTime::parse(text, &Rfc3339).ok()?,
            Format::UnixSeconds => OffsetDateTime::from_unix_timestamp(text.parse().ok()?).ok()?,
            Format::UnixMillis => {
                let millis: i128 = text.parse().ok()?;
                OffsetDateTime::from_unix_timestamp_nanos(millis.checked_mul(1_000_000)?).ok()?
            }
            Format::Described(f) => OffsetDateTime::parse(text, f)
                .or_else(|_| PrimitiveDateTime::parse(text, f).map(PrimitiveDateTime::assume_utc))
                .or_else(|_| Date::parse(text, f).map(|d| d.midnight().assume_utc()))
                .ok()?,
        };
        let t = t.to_offset(UtcOffset::UTC);
        if !(0..=9999).contains(&t.year()) {
            return None;
        }
        t.format(&Rfc3339).ok()
    }
}

/// Copies the records of `batch` into `out`: with `first` as each record's first
/// column (a record's own field of that name gives way), the `table`'s `post`
/// timestamps converted to RFC 3339 UTC (a value that does not fit is kept as
/// sent), and its nested primary key fields as one top-level field each.
pub fn rebuild(batch: &Batch, out: &mut Batch, first: Option<(&str, &[u8])>, table: &Table) {
    out.clear();
    let post = &table.post;
    let convert: Vec<(u32, &Format)> = post.iter().filter_map(|(f, fmt)| Some((batch.path_id(&[f])?, fmt))).collect();
    let renamed: Vec<(u32, String)> = table
        .nested_keys
        .iter()
        .filter_map(|k| Some((batch.path_id(&k.iter().map(String::as_str).collect::<Vec<_>>())?, k.join("_"))))
        .collect();
    let skip = first.and_then(|(name, _)| batch.path_id(&[name]));
    let mut segments: std::collections::HashMap<u32, Vec<String>> = std::collections::HashMap::new();
    for i in 0..batch.len() {
        out.begin_record();
        if let Some((name, value)) = first {
            out.push_leaf(&[name], value);
        }
        for cell in batch.record(i).filter(|c| Some(c.path) != skip) {
            let segs =
                segments.entry(cell.path).or_insert_with(|| match renamed.iter().find(|(id, _)| *id == cell.path) {
                    Some((_, name)) => vec![name.clone()],
                    None => match decode(batch.path(cell.path)) {
                        KeyPath::Json(s) => s,
                        KeyPath::Derived(name) => vec![name],
                    },
                });
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let value = batch.value(cell);
            match convert.iter().find(|(id, _)| *id == cell.path).and_then(|(_, f)| f.convert(value)) {
                Some(t) => out.push_leaf(&segs, t.as_bytes()),
                None => out.push_leaf(&segs, value),
            }
        }
        out.end_record();
    }
}

/// What a table's `timestamps` object says: see [`load`].
type Loaded = (Vec<&'static str>, Option<TimeFormat>, Vec<(&'static str, Format)>);

/// A table's `timestamps` object at key path `at`: the fields the page parser converts
/// (one format it knows), its format, and the fields converted after the parse.
pub(super) fn load(at: &str, m: Map<String, Value>) -> Result<Loaded, String> {
    let (mut fields, mut parser, mut post) = (Vec::new(), None, Vec::new());
    for (field, v) in m {
        let key_at = format!("{at}.timestamps.{field}");
        let Value::String(f) = v else { return Err(format!("{key_at}: must be a string")) };
        if field.is_empty() {
            return Err(format!("{key_at}: a field name"));
        }
        let format = Format::parse(&f).map_err(|e| format!("{key_at}: {e}"))?;
        let native = match f.as_str() {
            "unix_seconds" => Some(TimeFormat::UnixSeconds),
            "[year]-[month]-[day] [hour]:[minute]:[second]" => Some(TimeFormat::SpaceSeparatedUtc),
            _ => None,
        };
        match native {
            Some(n) if parser.is_none_or(|p| p == n) => {
                parser = Some(n);
                fields.push(&*Box::leak(field.into_boxed_str()));
            }
            _ => post.push((&*Box::leak(field.into_boxed_str()), format)),
        }
    }
    Ok((fields, parser, post))
}

#[cfg(test)]
mod tests {
    use super::Format;

    fn conv(format: &str, value: &str) -> Option<String> {
        Format::parse(format).unwrap().convert(value.as_bytes())
    }

    #[test]
    fn each_format_is_written_as_rfc3339_utc() {
        assert_eq!(conv("rfc3339", "2024-01-02T03:04:05+02:00").as_deref(), Some("2024-01-02T01:04:05Z"));
        assert_eq!(conv("rfc3339", "2024-01-02T03:04:05.250Z").as_deref(), Some("2024-01-02T03:04:05.25Z"));
        assert_eq!(conv("rfc3339", "2024-01-02 03:04:05"), None);
        assert_eq!(conv("unix_seconds", "1700000000").as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(conv("unix_millis", "1700000000123").as_deref(), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!(conv("unix_millis", "-1000").as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(conv("unix_millis", "1.5"), None);
        assert_eq!(conv("unix_millis", "99999999999999999999999"), None);
        let d = "[day].[month].[year] [hour]:[minute]";
        assert_eq!(conv(d, "02.01.2024 03:04").as_deref(), Some("2024-01-02T03:04:00Z"));
        assert_eq!(conv(d, "31.02.2024 03:04"), None);
        assert_eq!(conv("[year]-[month]-[day]", "2024-01-02").as_deref(), Some("2024-01-02T00:00:00Z"));
        let o = "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]";
        assert_eq!(conv(o, "2024-01-02 03:04:05 -01:30").as_deref(), Some("2024-01-02T04:34:05Z"));
        assert!(Format::parse("[yaer]").is_err());
    }
}
