//! The pages of one table of a definition: the engine's positions (cursor, page
//! number) driven by the definition's pointers.

use std::collections::HashSet;

use serde_json::Value;

use super::load::{follow, From, Numbered, Paging, Table};
use crate::connector::{Counts, Reading, Request, Rows, Stream};
use crate::page::paginate::{Cursor, CursorSignals, Each, Next, Page, PageSignals, Position, Steps};
use crate::page::parse::{Batch, Envelope, Spec};

/// One table's listing.
pub struct Listing {
    table: &'static Table,
    /// The table's path, its `{as}` filled in for a `for_each` listing.
    path: String,
    /// The base URL in use (the configuration's or the definition's).
    base: String,
    position: Position,
    seen: HashSet<u64>,
    spec: Spec<'static>,
    /// The query parameter that carries the secret (query auth): never kept from a
    /// next page's URL, so it is neither stored nor sent twice.
    secret_param: Option<&'static str>,
    /// MailerLite's own cursor shape (`cursor` from `/meta/next_cursor`): the engine
    /// may ask for the next page on a guess read from the body's tail, used only once
    /// the full parse names the same cursor.
    follows_cursor: bool,
    /// The page's records with the timestamps the parser does not convert
    /// converted (`Table::post`), if the table has such; made unless `builds` is off
    /// (a `for_each` family builds its children's rows itself).
    built: Option<Batch>,
    builds: bool,
}

impl Listing {
    pub fn new(table: &'static Table, base: &str, secret_param: Option<&'static str>, at: Option<Position>) -> Listing {
        let position = at.unwrap_or_else(|| match &table.per_value {
            Some((_, values)) => Position::Steps(Steps::start(values.clone(), start(table))),
            None => start(table),
        });
        // One key: the parser's fast path; a nested array: its pointer.
        let records: &'static [&'static str] = match table.records.as_slice() {
            [] => &[],
            [k] if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) => Box::leak(Box::new([intern(k.clone())])),
            nested => Box::leak(Box::new([intern(super::load::pointer_text(nested))])),
        };
        let spec = Spec {
            records,
            bare_array: records.is_empty(),
            timestamps: Box::leak(table.converted.clone().into_boxed_slice()),
            time_format: table.time_format,
            capture: &[],
        };
        let follows_cursor = table.per_value.is_none()
            && matches!(&table.paging, Paging::Cursor { param: "cursor", from: From::Body(t), more: None }
                if t.len() == 2 && t[0] == "meta" && t[1] == "next_cursor");
        Listing {
            table,
            path: table.path.clone(),
            base: base.trim_end_matches('/').to_string(),
            position,
            seen: HashSet::new(),
            spec,
            secret_param,
            follows_cursor,
            built: None,
            builds: !table.post.is_empty() || !table.nested_keys.is_empty(),
        }
    }

    /// The listing of `for_each` table `table` for the parent key `key`.
    pub fn child(
        table: &'static Table,
        key: &str,
        base: &str,
        secret_param: Option<&'static str>,
        at: Option<Position>,
    ) -> Listing {
        let mut listing = Listing::new(table, base, secret_param, at);
        if let Some(f) = &table.for_each {
            let encoded = percent_encoding::utf8_percent_encode(key, SEGMENT).to_string();
            listing.path = table.path.replace(&format!("{{{}}}", f.as_), &encoded);
        }
        listing.follows_cursor = false;
        listing.builds = false;
        listing
    }

    fn first(&self) -> Request {
        Request { path: self.path.clone(), query: self.table.query.clone() }
    }
}

/// What a key keeps of itself in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Where a listing of `table` starts.
fn start(table: &Table) -> Position {
    match &table.paging {
        Paging::Cursor { .. } | Paging::NextUrl(_) | Paging::LinkHeader => Position::Cursor(Cursor::start(0)),
        Paging::Page(n) | Paging::Offset(n) => Position::Page(Page::start(n.size.unwrap_or(0))),
        Paging::None => Position::Page(Page::start(0)),
    }
}

/// A value as a cursor: text as sent; null or empty is none.
fn text(v: Option<&Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("the next page's value is neither text nor a number: {other}")),
    }
}

/// The value at `tokens` in the envelope (whose records were taken out).
fn at<'e>(env: &'e Envelope, tokens: &[String]) -> Option<&'e Value> {
    let (first, rest) = tokens.split_first()?;
    follow(env.get(first)?, rest)
}

fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Splits an absolute URL into (scheme, authority, path and query).
fn parts(url: &str) -> Option<(String, String, String)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let auth = uri.authority()?;
    let port = auth.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    let authority = format!("{}:{port}", auth.host().to_ascii_lowercase());
    let pq = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Some((scheme, authority, pq))
}

/// A link target as an absolute URL: one starting with `/` is on base_url's origin.
fn absolute(base: &str, target: &str) -> String {
    match (target.starts_with('/') && !target.starts_with("//"), base.parse::<http::Uri>()) {
        (true, Ok(b)) => match (b.scheme_str(), b.authority()) {
            (Some(s), Some(a)) => format!("{s}://{a}{target}"),
            _ => target.to_string(),
        },
        _ => target.to_string(),
    }
}

/// The request for a next page's URL, which must be under `base`.
fn under_base(base: &str, url: &str) -> Result<Request, String> {
    let (bs, ba, bp) = parts(base).ok_or("base_url is not a URL")?;
    let (s, a, pq) = parts(url).ok_or_else(|| "the next page's URL is not an absolute URL".to_string())?;
    if s != bs || a != ba {
        let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h).to_string();
        return Err(format!(
            "the next page's URL is on another host ({host}) than base_url: not followed, credentials are never sent elsewhere"
        ));
    }
    let bp = bp.split('?').next().unwrap_or("").trim_end_matches('/');
    let (path, query) = pq.split_once('?').unwrap_or((&pq, ""));
    let rel = path.strip_prefix(bp).filter(|r| r.is_empty() || r.starts_with('/'));
    let Some(rel) = rel else { return Err(format!("the next page's URL is outside base_url's path ({bp})")) };
    let mut q = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
        q.push((intern(dec(k)), dec(v)));
    }
    Ok(Request { path: rel.to_string(), query: q })
}

/// `url` without the query parameter `name`.
fn without_param(url: &str, name: &str) -> String {
    let Some((head, query)) = url.split_once('?') else { return url.to_string() };
    let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| {
            let key = p.split_once('=').map_or(*p, |(k, _)| k);
            percent_encoding::percent_decode_str(key).decode_utf8_lossy() != name
        })
        .collect();
    let mut out = head.to_string();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A query key as `&'static str` (the engine's requests hold static keys): each
/// distinct key is leaked once.
fn intern(key: String) -> &'static str {
    use std::sync::{Mutex, OnceLock};
    static KEYS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut keys = KEYS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = keys.get(key.as_str()) {
        return k;
    }
    let k: &'static str = Box::leak(key.into_boxed_str());
    keys.insert(k);
    k
}

fn numbered_query(req: &mut Request, n: &Numbered, page: &Page, offset: bool) {
    let size = u64::from(n.size.unwrap_or(0));
    let value = if offset { (page.page - 1) * size } else { page.page - 1 + n.start };
    req.query.push((n.param, value.to_string()));
    if let (Some(p), Some(s)) = (n.size_param, n.size) {
        req.query.push((p, s.to_string()));
    }
}

impl Listing {
    /// The request of one listing at `position`.
    fn request_at(&self, position: &Position) -> Option<Request> {
        let mut req = self.first();
        match (&self.table.paging, position) {
            (Paging::Cursor { param, .. }, Position::Cursor(c)) => {
                if let Some(cursor) = &c.cursor {
                    req.query.retain(|(k, _)| k != param);
                    req.query.push((param, cursor.clone()));
                }
            }
            (Paging::NextUrl(_) | Paging::LinkHeader, Position::Cursor(c)) => {
                if let Some(url) = &c.cursor {
                    req = under_base(&self.base, url).ok()?;
                }
            }
            (Paging::Page(n), Position::Page(p)) => numbered_query(&mut req, n, p, false),
            (Paging::Offset(n), Position::Page(p)) => numbered_query(&mut req, n, p, true),
            (Paging::None, Position::Page(_)) => {}
            _ => return None,
        }
        Some(req)
    }

    /// Moves one listing at `position` past an accepted page.
    fn accept_at(&mut self, position: &mut Position, env: &Envelope, batch: &Batch) -> Result<Next, String> {
        let next = match (&self.table.paging, position) {
            (Paging::Cursor { from, more, .. }, Position::Cursor(c)) => {
                let mut next = match from {
                    From::Record(index, field) => {
                        let segments: Vec<&str> = field.iter().map(String::as_str).collect();
                        let record = match index {
                            None => batch.len().checked_sub(1),
                            Some(i) => Some(*i).filter(|&i| i < batch.len()),
                        };
                        record
                            .zip(batch.path_id(&segments))
                            .and_then(|(i, p)| batch.value_at(i, p))
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .filter(|v| !v.is_empty())
                    }
                    From::Body(tokens) => text(at(env, tokens))?,
                };
                if let Some(more) = more {
                    if matches!(at(env, more), Some(Value::Bool(false)) | None | Some(Value::Null)) {
                        next = None;
                    }
                }
                c.advance(&CursorSignals { next_cursor: next }, &mut self.seen)?
            }
            (Paging::NextUrl(_) | Paging::LinkHeader, Position::Cursor(c)) => {
                let next = match &self.table.paging {
                    Paging::NextUrl(tokens) => text(at(env, tokens))?,
                    _ => env.link_next.clone().filter(|l| !l.is_empty()).map(|l| absolute(&self.base, &l)),
                };
                let next = match (next, self.secret_param) {
                    (Some(url), Some(name)) => Some(without_param(&url, name)),
                    (next, _) => next,
                };
                if let Some(url) = &next {
                    under_base(&self.base, url)?;
                }
                c.advance(&CursorSignals { next_cursor: next }, &mut self.seen)?
            }
            (Paging::Page(n) | Paging::Offset(n), Position::Page(p)) => {
                let offset = matches!(self.table.paging, Paging::Offset(_));
                let end = n.end.as_ref().map(|t| number(at(env, t)));
                let last_page = match end {
                    Some(None) => return Err("the page count/total is missing or not a number".into()),
                    Some(Some(v)) if offset => Some(v.div_ceil(u64::from(n.size.unwrap_or(1)))),
                    Some(Some(v)) => Some(v),
                    None => None,
                };
                let full = n.size.is_none_or(|s| batch.len() >= s as usize);
                let has_next = !batch.is_empty() && (last_page.is_some() || full);
                let last_page = last_page.map(|l| l.max(1));
                p.advance(&PageSignals { current_page: None, last_page, has_next, records: None })?
            }
            _ => Next::Done,
        };
        Ok(next)
    }
}

impl Stream for Listing {
    fn request(&self) -> Option<Request> {
        match (&self.position, &self.table.per_value) {
            (Position::Steps(steps), Some((param, _))) => {
                let mut req = self.request_at(&steps.inner)?;
                req.query.retain(|(k, _)| k != param);
                req.query.push((param, steps.current()?.to_string()));
                Some(req)
            }
            (at, _) => self.request_at(at),
        }
    }

    fn reading(&self) -> Reading {
        Reading {
            spec: self.spec,
            check: |_| Ok(()),
            next_guess: self
                .follows_cursor
                .then_some(crate::connector::meta_next_cursor as crate::connector::NextGuess),
        }
    }

    fn accept(&mut self, env: &Envelope, batch: &Batch, _: &mut Counts) -> Result<(), String> {
        let mut position = std::mem::replace(&mut self.position, Position::Done);
        let result = match &mut position {
            Position::Steps(steps) => {
                let mut inner = std::mem::replace(&mut *steps.inner, Position::Done);
                let r = self.accept_at(&mut inner, env, batch);
                *steps.inner = inner;
                match r {
                    Ok(Next::Done) => {
                        // The next value's listing starts afresh, its cursors included.
                        self.seen.clear();
                        Ok(steps.next_step(start(self.table)))
                    }
                    other => other,
                }
            }
            at => self.accept_at(at, env, batch),
        };
        self.position = match result {
            Ok(Next::Done) => Position::Done,
            _ => position,
        };
        if result.is_ok() && self.builds {
            super::times::rebuild(batch, self.built.get_or_insert_with(Batch::default), None, self.table);
        }
        result.map(drop)
    }

    fn rows<'a>(&'a self, _table: usize, batch: &'a Batch) -> Rows<'a> {
        match &self.built {
            Some(built) => Rows::All(built),
            None => Rows::All(batch),
        }
    }

    fn not_found(&mut self) -> bool {
        false
    }

    fn position(&self) -> Position {
        self.position.clone()
    }
}

/// A table and the tables read `for_each` of its records, in plan order (depth
/// first: the table, then each child's subtree).
#[derive(Debug)]
pub struct Node {
    pub table: &'static Table,
    pub children: Vec<Node>,
}

impl Node {
    /// How many tables the subtree holds.
    fn size(&self) -> usize {
        1 + self.children.iter().map(Node::size).sum::<usize>()
    }
}

/// A table's listing and, after each of its pages, the listings of its `for_each`
/// tables for each record of that page (each itself a family, for their own
/// children). A child listing the server no longer knows (404: the parent was
/// deleted meanwhile) is skipped, and its rows are not seen.
pub struct Family {
    node: &'static Node,
    parent: Listing,
    /// For a child's listing: its `as` column and the parent key, first in each row.
    own: Option<(&'static str, String)>,
    base: String,
    secret_param: Option<&'static str>,
    /// Per child, the keys of the page in hand; whose listing of which child is read.
    keys: Vec<Vec<String>>,
    child: usize,
    index: usize,
    current: Option<Box<Family>>,
    /// The page just accepted was this table's own; else it was child `fed_child`'s,
    /// whose family is `finished` if that page ended its listing, else the current.
    fed_own: bool,
    fed_child: usize,
    finished: Option<Box<Family>>,
    /// An own page's rows, the `as` column first.
    built: Batch,
}

impl Family {
    pub fn new(node: &'static Node, base: &str, secret_param: Option<&'static str>, at: Option<Position>) -> Family {
        Family::open(node, None, base, secret_param, at)
    }

    fn open(
        node: &'static Node,
        key: Option<&str>,
        base: &str,
        secret_param: Option<&'static str>,
        at: Option<Position>,
    ) -> Family {
        let (parent_at, keys, child, index, inner) = match at {
            Some(Position::Each(e)) => (Some(*e.parent), e.keys, e.child, e.index, Some(*e.inner)),
            Some(Position::Done) => (Some(Position::Done), Vec::new(), 0, 0, None),
            Some(other) if node.children.is_empty() => (Some(other), Vec::new(), 0, 0, None),
            _ => (None, Vec::new(), 0, 0, None),
        };
        let (parent, own) = match (key, &node.table.for_each) {
            (Some(key), Some(f)) => (
                Listing::child(node.table, key, base, secret_param, parent_at),
                Some((f.as_.as_str(), key.to_string())),
            ),
            _ => (Listing::new(node.table, base, secret_param, parent_at), None),
        };
        let mut family = Family {
            node,
            parent,
            own,
            base: base.to_string(),
            secret_param,
            keys,
            child,
            index,
            current: None,
            fed_own: true,
            fed_child: 0,
            finished: None,
            built: Batch::default(),
        };
        family.parent.follows_cursor = false;
        match inner {
            Some(Position::Done) | None => family.current = None,
            Some(inner) => family.open_child(Some(inner)),
        }
        family
    }

    /// Opens the listing of the child and key in turn, if any.
    fn open_child(&mut self, at: Option<Position>) {
        let key = self.keys.get(self.child).and_then(|k| k.get(self.index));
        self.current = match (self.node.children.get(self.child), key) {
            (Some(node), Some(key)) => Some(Box::new(Family::open(node, Some(key), &self.base, self.secret_param, at))),
            _ => None,
        };
    }

    /// Moves to the next key's listing.
    fn next_child(&mut self) {
        self.index += 1;
        self.settle();
    }

    /// Skips children without keys left; past the last, back to this table's pages.
    fn settle(&mut self) {
        let children = self.node.children.len();
        while self.child < children && self.index >= self.keys.get(self.child).map_or(0, Vec::len) {
            self.index = 0;
            self.child += 1;
        }
        self.open_child(None);
        if self.current.is_none() {
            self.keys.clear();
            (self.child, self.index) = (0, 0);
        }
    }

    /// The plan index (relative to this table) where child `c`'s subtree starts.
    fn offset(&self, c: usize) -> usize {
        1 + self.node.children[..c].iter().map(Node::size).sum::<usize>()
    }
}

/// The value of `key` in each record of `batch` that has one (text as sent).
fn keys_of(batch: &Batch, key: &[String]) -> Vec<String> {
    let segments: Vec<&str> = key.iter().map(String::as_str).collect();
    let Some(path) = batch.path_id(&segments) else { return Vec::new() };
    (0..batch.len())
        .filter_map(|i| batch.value_at(i, path))
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

impl Stream for Family {
    fn request(&self) -> Option<Request> {
        match &self.current {
            Some(c) => c.request(),
            None => self.parent.request(),
        }
    }

    fn reading(&self) -> Reading {
        match &self.current {
            Some(c) => c.reading(),
            None => self.parent.reading(),
        }
    }

    fn accept(&mut self, env: &Envelope, batch: &Batch, counts: &mut Counts) -> Result<(), String> {
        self.finished = None;
        if let Some(current) = self.current.as_mut() {
            current.accept(env, batch, counts)?;
            (self.fed_own, self.fed_child) = (false, self.child);
            if current.position() == Position::Done {
                self.finished = self.current.take();
                self.next_child();
            }
            return Ok(());
        }
        self.parent.accept(env, batch, counts)?;
        self.fed_own = true;
        if let Some((name, key)) = &self.own {
            super::times::rebuild(batch, &mut self.built, Some((name, key.as_bytes())), self.node.table);
        }
        self.keys = self
            .node
            .children
            .iter()
            .map(|c| c.table.for_each.as_ref().map(|f| keys_of(batch, &f.key)).unwrap_or_default())
            .collect();
        (self.child, self.index) = (0, 0);
        self.settle();
        Ok(())
    }

    fn rows<'a>(&'a self, table: usize, batch: &'a Batch) -> Rows<'a> {
        let none = Rows::Some(batch, &[]);
        if self.fed_own {
            return match (table, &self.own) {
                (0, Some(_)) => Rows::All(&self.built),
                (0, None) => self.parent.rows(0, batch),
                _ => none,
            };
        }
        let Some(fed) = self.finished.as_ref().or(self.current.as_ref()) else { return none };
        let (c, off) = (self.fed_child, self.offset(self.fed_child));
        match table.checked_sub(off) {
            Some(rel) if rel < self.node.children[c].size() => fed.rows(rel, batch),
            _ => none,
        }
    }

    fn not_found(&mut self) -> bool {
        match self.current.as_mut() {
            Some(c) => {
                if !c.not_found() {
                    // The child's own listing is gone: on to the next key.
                    self.next_child();
                }
                true
            }
            None if self.own.is_some() => false,
            None => self.parent.not_found(),
        }
    }

    fn position(&self) -> Position {
        let parent = self.parent.position();
        match &self.current {
            None if parent == Position::Done => Position::Done,
            current => Position::Each(Each {
                parent: Box::new(parent),
                keys: self.keys.clone(),
                child: self.child,
                index: self.index,
                inner: Box::new(current.as_ref().map_or(Position::Done, |c| c.position())),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_urls_stay_under_base() {
        let base = "https://api.acme.example/v1";
        let r = under_base(base, "https://API.acme.example:443/v1/tickets?page=2&x=a%20b").unwrap();
        assert_eq!(r.path, "/tickets");
        assert_eq!(r.query, vec![("page", "2".to_string()), ("x", "a b".to_string())]);
        assert!(under_base(base, "https://evil.example/v1/tickets").unwrap_err().contains("another host"));
        assert!(under_base(base, "http://api.acme.example/v1/tickets").is_err());
        assert!(under_base(base, "https://api.acme.example/v2/tickets").is_err());
        assert!(under_base(base, "/v1/tickets").is_err());
    }
}
