//! Paligo's page envelope: which slice of a listing a request gets, and the
//! `page`/`next_page`/`total_pages` object around it, `next_page` keeping the filters.

use super::record::js;
use super::{DEFAULT_PER_PAGE, MAX_PER_PAGE};
use crate::mock::MockRequest;

/// One page of a listing: which slice it is and the envelope around it.
pub(super) struct Page {
    page: usize,
    per_page: usize,
    total_pages: usize,
    count: usize,
}

impl Page {
    /// An unreadable or zero `page`/`per_page` falls back to the default (invented).
    pub(super) fn of(req: &MockRequest, count: usize) -> Page {
        let number = |key: &str| req.param(key).and_then(|v| v.parse::<usize>().ok()).filter(|&n| n >= 1);
        let page = number("page").unwrap_or(1);
        let per_page = number("per_page").unwrap_or(DEFAULT_PER_PAGE).min(MAX_PER_PAGE);
        // An empty listing still has one (empty) page (invented).
        let total_pages = count.div_ceil(per_page).max(1);
        Page { page, per_page, total_pages, count }
    }

    /// Past the end this is empty: the page answers `[]` with `next_page` "".
    pub(super) fn range(&self) -> std::ops::Range<usize> {
        let start = (self.page - 1).saturating_mul(self.per_page).min(self.count);
        start..start.saturating_add(self.per_page).min(self.count)
    }

    /// Absolute, and keeping `per_page` and the filters, so a client may follow it
    /// or count pages itself; "" on the last page, as real Paligo sends it.
    fn next_page(&self, req: &MockRequest, resource: &str, filters: &[&str]) -> String {
        if self.page >= self.total_pages {
            return String::new();
        }
        let mut url = format!("{}/api/v2/{resource}/?page={}&per_page={}", req.origin, self.page + 1, self.per_page);
        for (key, value) in req.query.iter().filter(|(k, _)| filters.contains(&k.as_str())) {
            url.push_str(&format!("&{}={}", percent_encode(key), percent_encode(value)));
        }
        url
    }

    /// Keys in the order Paligo sends them: page, next_page, total_pages, records.
    pub(super) fn envelope(&self, req: &MockRequest, resource: &str, filters: &[&str], items: &[String]) -> String {
        format!(
            r#"{{"page":{},"next_page":{},"total_pages":{},"{resource}":[{}]}}"#,
            self.page,
            js(&self.next_page(req, resource, filters)),
            self.total_pages,
            items.join(",")
        )
    }
}

/// Whether `per_page` asks for more than the cap, which is granted less in silence
/// unless the mock is told to refuse it.
pub(super) fn above_cap(req: &MockRequest) -> bool {
    req.param("per_page").and_then(|v| v.parse::<usize>().ok()).is_some_and(|n| n > MAX_PER_PAGE)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
