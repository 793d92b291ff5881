//! Cursor pages of subscribers: Laravel's cursor (base64url JSON), the walk over
//! slots in descending id order in either direction, and the envelope with Laravel's
//! rules for which cursors exist.

use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use base64::Engine as _;
use serde::Serialize;

use super::life::{Life, Status};
use super::{invalid, Answer, MailerLite, DEFAULT_LIMIT, ID_STRIDE, SUBSCRIBER_BASE};
use crate::mock::MockRequest;

#[derive(Serialize)]
struct CursorLinks {
    first: Option<String>,
    last: Option<String>,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Serialize)]
struct CursorMeta {
    path: String,
    per_page: usize,
    next_cursor: Option<String>,
    prev_cursor: Option<String>,
}

/// Laravel's cursor: base64url, unpadded, of `{"id":…,"_pointsToNextItems":…}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    id: u64,
    points_to_next: bool,
}

#[derive(serde::Deserialize)]
struct CursorJson {
    id: u64,
    #[serde(rename = "_pointsToNextItems")]
    points_to_next_items: bool,
}

impl Cursor {
    fn encode(&self) -> String {
        let json = format!(r#"{{"id":{},"_pointsToNextItems":{}}}"#, self.id, self.points_to_next);
        URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(text: &str) -> Option<Cursor> {
        let parsed: CursorJson = serde_json::from_slice(&URL_SAFE_NO_PAD_INDIFFERENT.decode(text).ok()?).ok()?;
        Some(Cursor { id: parsed.id, points_to_next: parsed.points_to_next_items })
    }
}

impl MailerLite {
    /// `/subscribers` (all statuses unless filtered) or, with `group`, that
    /// group's members (only `active` ones unless filtered).
    pub(super) fn list_subscribers(&self, req: &MockRequest, group: Option<usize>) -> Answer {
        let status = match req.param("filter[status]").filter(|s| !s.is_empty()) {
            None => group.map(|_| Status::Active),
            Some(text) => Some(
                Status::parse(text)
                    .ok_or_else(|| invalid("filter.status", "The selected filter.status is invalid."))?,
            ),
        };
        let limit = match (self.limit(req)?, group) {
            (0, None) => return Ok(self.count_body(status)),
            (0, Some(_)) => DEFAULT_LIMIT,
            (limit, _) => limit,
        };
        let cursor = match req.param("cursor").filter(|c| !c.is_empty()) {
            None => None,
            Some(text) => Some(Cursor::decode(text).ok_or_else(|| invalid("cursor", "The cursor is invalid."))?),
        };
        let with_groups = req.param("include").is_some_and(|v| v.split(',').any(|i| i.trim() == "groups"));
        let wanted =
            |life: &Life| status.is_none_or(|s| life.status == s) && group.is_none_or(|g| life.groups.contains(g));
        let (page, has_more) = self.walk(cursor, limit, &wanted);
        let mut body = Vec::with_capacity(page.len() * 900 + 512);
        body.extend_from_slice(b"{\"data\":[");
        for (i, (slot, life)) in page.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            self.write_subscriber(&mut body, *slot, life, with_groups);
        }
        let ids = page.first().zip(page.last()).map(|(f, l)| (self.subscriber_id(f.0), self.subscriber_id(l.0)));
        self.close_cursor_page(&mut body, req, limit, cursor, ids, has_more);
        Ok(body)
    }

    /// Writes `links` and `meta` after the data, with Laravel's rules for which
    /// cursors exist: none past an end, no `prev` on the first page.
    fn close_cursor_page(
        &self,
        body: &mut Vec<u8>,
        req: &MockRequest,
        limit: usize,
        cursor: Option<Cursor>,
        ids: Option<(u64, u64)>,
        has_more: bool,
    ) {
        let forward = cursor.is_none_or(|c| c.points_to_next);
        let (next, prev) = match ids {
            None => (None, None),
            Some((first, last)) => (
                (has_more || !forward).then(|| Cursor { id: last, points_to_next: true }.encode()),
                (cursor.is_some() && (has_more || forward))
                    .then(|| Cursor { id: first, points_to_next: false }.encode()),
            ),
        };
        let path = format!("{}{}", req.origin, req.path);
        let link = |c: &Option<String>| c.as_ref().map(|c| format!("{path}?cursor={c}"));
        let links = CursorLinks { first: None, last: None, prev: link(&prev), next: link(&next) };
        let meta = CursorMeta { path, per_page: limit, next_cursor: next, prev_cursor: prev };
        body.extend_from_slice(b"],\"links\":");
        serde_json::to_writer(&mut *body, &links).expect("writing to a Vec cannot fail");
        body.extend_from_slice(b",\"meta\":");
        serde_json::to_writer(&mut *body, &meta).expect("writing to a Vec cannot fail");
        body.push(b'}');
    }

    /// `{"total": N}`, the answer to `limit=0`.
    fn count_body(&self, status: Option<Status>) -> Vec<u8> {
        let total: u64 = match status {
            Some(s) => self.status_totals[s as usize],
            None => self.status_totals.iter().sum(),
        };
        format!("{{\"total\":{total}}}").into_bytes()
    }

    /// Up to `limit` wanted subscribers next to the cursor, in descending id
    /// order, and whether more lie beyond them in the cursor's direction.
    fn walk(&self, cursor: Option<Cursor>, limit: usize, wanted: &dyn Fn(&Life) -> bool) -> (Vec<(u64, Life)>, bool) {
        let slots = self.slots();
        let mut page = Vec::with_capacity(limit + 1);
        let mut take = |slot: u64| {
            if let Some(life) = self.life(slot).filter(|l| wanted(l)) {
                page.push((slot, life));
            }
            page.len() > limit
        };
        match cursor {
            Some(Cursor { id, points_to_next: false }) => {
                let end = self.first_slot_below(id, true).clamp(slots.start, slots.end);
                (slots.start..end).rev().find(|&slot| take(slot));
            }
            _ => {
                let start = cursor.map_or(slots.start, |c| self.first_slot_below(c.id, false).max(slots.start));
                (start..slots.end).find(|&slot| take(slot));
            }
        }
        let has_more = page.len() > limit;
        page.truncate(limit);
        if cursor.is_some_and(|c| !c.points_to_next) {
            page.reverse();
        }
        (page, has_more)
    }

    /// The first slot whose id is below `id` (or equal to it, with `inclusive`).
    fn first_slot_below(&self, id: u64, inclusive: bool) -> u64 {
        let Some(distance) = SUBSCRIBER_BASE.checked_sub(id) else {
            return 0;
        };
        let slot = distance / ID_STRIDE;
        let slot_id = self.subscriber_id(slot);
        if slot_id < id || (inclusive && slot_id == id) {
            slot
        } else {
            slot + 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_matches_laravel_encoding() {
        let real = "eyJpZCI6MTQ4MjAzNTE3NzYwMzI1NDAwLCJfcG9pbnRzVG9OZXh0SXRlbXMiOnRydWV9";
        let cursor = Cursor::decode(real).unwrap();
        assert_eq!(cursor, Cursor { id: 148_203_517_760_325_400, points_to_next: true });
        assert_eq!(cursor.encode(), real);
        for id in [0, 1, 12, 123, u64::MAX] {
            let c = Cursor { id, points_to_next: id % 2 == 0 };
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(Cursor::decode("not*base64"), None);
        assert_eq!(Cursor::decode("eyJpZCI6"), None);
    }
}
