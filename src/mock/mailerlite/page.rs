//! Laravel's length-aware page envelope (`?page=N`), used by every listing except
//! subscribers: `links`, `meta` with its `UrlWindow` of page links, and `/campaigns`'
//! `meta.aggregations`.

use serde::Serialize;

use super::{Answer, DEFAULT_LIMIT};
use crate::mock::MockRequest;

/// `meta.aggregations` of `/campaigns`: counts per status, whatever the filter.
#[derive(Serialize)]
pub(super) struct Aggregations {
    pub(super) all: usize,
    pub(super) draft: usize,
    pub(super) ready: usize,
    pub(super) sent: usize,
}

#[derive(Serialize)]
struct PageEnvelope<'a, T: Serialize> {
    data: &'a [T],
    links: PageLinks,
    meta: PageMeta,
}

#[derive(Serialize)]
struct PageLinks {
    first: String,
    last: String,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Serialize)]
struct PageMeta {
    current_page: usize,
    from: Option<usize>,
    last_page: usize,
    links: Vec<MetaLink>,
    path: String,
    per_page: usize,
    to: Option<usize>,
    total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    aggregations: Option<Aggregations>,
}

#[derive(Serialize)]
struct MetaLink {
    url: Option<String>,
    label: String,
    active: bool,
}

/// Laravel's length-aware page of `items` (§2b) with `limit` (already capped) per
/// page: `?page=N` links only, null `from`/`to` past the end.
pub(super) fn page_envelope<T: Serialize>(
    req: &MockRequest,
    limit: usize,
    items: &[T],
    aggregations: Option<Aggregations>,
) -> Answer {
    let limit = match limit {
        0 => DEFAULT_LIMIT,
        limit => limit,
    };
    let page = req.param("page").and_then(|p| p.parse::<usize>().ok()).filter(|&p| p >= 1).unwrap_or(1);
    let total = items.len();
    let last_page = total.div_ceil(limit).max(1);
    let start = (page - 1).saturating_mul(limit).min(total);
    let data = &items[start..(start + limit).min(total)];
    let path = format!("{}{}", req.origin, req.path);
    let url = |p: usize| format!("{path}?page={p}");
    let prev = (page > 1).then(|| url(page - 1));
    let next = (page < last_page).then(|| url(page + 1));
    let envelope = PageEnvelope {
        data,
        links: PageLinks { first: url(1), last: url(last_page), prev: prev.clone(), next: next.clone() },
        meta: PageMeta {
            current_page: page,
            from: (!data.is_empty()).then_some(start + 1),
            last_page,
            links: meta_links(page, last_page, &url, prev, next),
            path: path.clone(),
            per_page: limit,
            to: (!data.is_empty()).then_some(start + data.len()),
            total,
            aggregations,
        },
    };
    Ok(serde_json::to_vec(&envelope).expect("a page serializes"))
}

/// `meta.links` as Laravel's `UrlWindow` builds it: every page up to 13 pages,
/// beyond that the ends and a window of three on each side, with `...` gaps.
fn meta_links(
    page: usize,
    last_page: usize,
    url: &dyn Fn(usize) -> String,
    prev: Option<String>,
    next: Option<String>,
) -> Vec<MetaLink> {
    let mut links = vec![MetaLink { url: prev, label: "&laquo; Previous".into(), active: false }];
    for range in page_windows(page, last_page) {
        if links.len() > 1 {
            links.push(MetaLink { url: None, label: "...".into(), active: false });
        }
        for p in range {
            links.push(MetaLink { url: Some(url(p)), label: p.to_string(), active: p == page });
        }
    }
    links.push(MetaLink { url: next, label: "Next &raquo;".into(), active: false });
    links
}

fn page_windows(page: usize, last: usize) -> Vec<std::ops::RangeInclusive<usize>> {
    const ON_EACH_SIDE: usize = 3;
    const WINDOW: usize = ON_EACH_SIDE + 4;
    if last < ON_EACH_SIDE * 2 + 8 {
        return vec![1..=last];
    }
    let finish = last - 1..=last;
    if page <= WINDOW {
        vec![1..=WINDOW + ON_EACH_SIDE, finish]
    } else if page > last - WINDOW {
        vec![1..=2, last - (WINDOW + ON_EACH_SIDE - 1)..=last]
    } else {
        vec![1..=2, page - ON_EACH_SIDE..=page + ON_EACH_SIDE, finish]
    }
}
