//! Paligo REST API v2 (`https://<instance>.paligoapp.com/api/v2`): users, the whole
//! taxonomy tree and assignments.
//!
//! Pages are `{page, next_page, total_pages, <resource>: [...]}`; we count pages
//! ourselves with the same `per_page` and filters, and stop on an empty `next_page`
//! or `page >= total_pages`, never on a short page (the server caps `per_page`).
//! The taxonomy listing returns one level at a time, so the tree is walked depth
//! first with `parent=<id>`; the stack of listings still to read is the resume
//! position, committed with every page like any cursor.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{fetch_into, flatten_record, Connector, OnRecord, PageReader, Start, TableSpec};
use crate::config::{Config, Requirements};
use crate::error::{Error, Result};
use crate::flatten::{Columns, Page, TimeFormat};
use crate::http::Client;
use crate::json::{self, Kind, Parser};

pub const REQUIREMENTS: Requirements = Requirements {
    connector: "paligo",
    api_key_env: "PALIGO_API_KEY",
    username_env: Some("PALIGO_USERNAME"),
    default_base_url: None,
    instance_url: Some(instance_url),
    // Show/list endpoints allow about 50 a minute; keys that keep exceeding limits
    // may be suspended, so stay under instead of relying on 429s.
    requests_per_minute: 50,
};

fn instance_url(instance: &str) -> String {
    format!("https://{instance}.paligoapp.com/api/v2")
}

pub const TABLES: &[TableSpec] = &[
    TableSpec { name: "users", primary_key: &["id"], timestamps: &[], read_as: "pages of users/" },
    TableSpec {
        name: "taxonomies",
        primary_key: &["id"],
        timestamps: &[],
        read_as: "the whole tree: roots, then parent=<id> depth first; adds parent_id, level, path",
    },
    TableSpec {
        name: "assignments",
        primary_key: &["id"],
        timestamps: &["created_at", "start_date", "end_date"],
        read_as: "pages of assignments/ (initial_sync_days: created in that window)",
    },
];

/// Separates titles in a taxonomy `path`; a title's own `\` and `/` are escaped
/// as `\\` and `\/`, so the path splits back into titles unambiguously.
pub const PATH_SEPARATOR: &str = " / ";
/// A deeper tree is taken for a cycle in the API's `parent` links.
const MAX_DEPTH: u32 = 64;

pub struct Paligo {
    page_size: String,
    initial_sync_days: Option<u32>,
}

impl Paligo {
    pub fn new(config: &Config) -> Paligo {
        Paligo { page_size: config.page_size.to_string(), initial_sync_days: config.initial_sync_days }
    }
}

impl Connector for Paligo {
    fn name(&self) -> &'static str {
        "paligo"
    }

    fn tables(&self) -> &'static [TableSpec] {
        TABLES
    }

    fn time_format(&self) -> TimeFormat {
        TimeFormat::UnixSeconds
    }

    fn open<'a>(&'a self, client: &'a Client, table: &str, start: &Start) -> Result<Box<dyn PageReader + 'a>> {
        Ok(match table {
            "users" => Box::new(Listing::new(client, self, "users", start)),
            "assignments" => Box::new(Listing::new(client, self, "assignments", start)),
            "taxonomies" => Box::new(Tree::new(client, self, start.resume)),
            _ => unreachable!("unknown paligo table {table}"),
        })
    }

    fn created_since(&self, table: &str) -> Option<i64> {
        let days = self.initial_sync_days.filter(|_| table == "assignments")?;
        Some(time::OffsetDateTime::now_utc().unix_timestamp() - i64::from(days) * 86_400)
    }

    fn still_exists(&self, client: &Client, table: &str, key: &[Vec<u8>]) -> Result<bool> {
        let id = String::from_utf8_lossy(&key[0]);
        let path = format!("/{table}/{}/", crate::http::encode(&id));
        let shown = client
            .fetch(&path, &[], |body| serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| e.to_string()));
        match shown {
            Ok(_) => Ok(true),
            Err(Error::Api { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn check(&self, client: &Client) -> Result<String> {
        let (mut page, mut cols) = (Page::default(), Columns::new(&[], None));
        let query = [("page", "1"), ("per_page", "1")];
        fetch_page(client, "users", &query, &mut page, &mut cols, &mut |p, _, _| p.skip().map(drop))?;
        Ok(format!("credentials accepted by {}", client.base_url()))
    }
}

/// The paging facts of one response.
#[derive(Debug, Default)]
struct Envelope {
    records: usize,
    page: Option<u64>,
    has_next: bool,
    total_pages: Option<u64>,
}

/// GETs one page of `resource` and runs `on_record` on each record.
fn fetch_page(
    client: &Client,
    resource: &str,
    query: &[(&str, &str)],
    page: &mut Page,
    cols: &mut Columns,
    on_record: &mut OnRecord,
) -> Result<Envelope> {
    let path = format!("/{resource}/");
    fetch_into(client, &path, query, page, cols, |body, page, cols| {
        parse_envelope(body, resource, page, cols, on_record)
    })
}

fn parse_envelope(
    body: &[u8],
    resource: &str,
    page: &mut Page,
    cols: &mut Columns,
    on_record: &mut OnRecord,
) -> std::result::Result<Envelope, String> {
    let s = |e: json::SyntaxError| e.to_string();
    let mut p = Parser::new(body);
    let mut env = Envelope::default();
    if p.peek().map_err(s)? == Kind::Array {
        // The docs' examples show bare arrays; tolerate them as a single last page.
        records(&mut p, page, cols, on_record, &mut env).map_err(s)?;
        p.finish().map_err(s)?;
        return Ok(env);
    }
    let mut key = Vec::new();
    let mut saw_records = false;
    p.begin_object().map_err(s)?;
    while p.next_key(&mut key).map_err(s)? {
        let k = key.as_slice();
        if k == resource.as_bytes() || k == b"data" || k == b"items" {
            saw_records = true;
            records(&mut p, page, cols, on_record, &mut env).map_err(s)?;
        } else if k == b"page" || k == b"total_pages" {
            let v = match p.peek().map_err(s)? {
                Kind::Number => std::str::from_utf8(p.number().map_err(s)?).ok().and_then(|n| n.parse().ok()),
                Kind::String => {
                    let mut v = Vec::new();
                    p.string_into(&mut v).map_err(s)?;
                    std::str::from_utf8(&v).ok().and_then(|n| n.trim().parse().ok())
                }
                _ => p.skip().map(|_| None).map_err(s)?,
            };
            if k == b"page" {
                env.page = v;
            } else {
                env.total_pages = v;
            }
        } else if k == b"next_page" {
            env.has_next = match p.peek().map_err(s)? {
                Kind::String => {
                    let mut v = Vec::new();
                    p.string_into(&mut v).map_err(s)?;
                    !v.is_empty()
                }
                _ => p.skip().map(|raw| raw != b"null" && raw != b"false").map_err(s)?,
            };
        } else {
            p.skip().map_err(s)?;
        }
    }
    p.finish().map_err(s)?;
    if !saw_records {
        return Err(format!("the body has no \"{resource}\" array"));
    }
    Ok(env)
}

fn records(
    p: &mut Parser,
    page: &mut Page,
    cols: &mut Columns,
    on_record: &mut OnRecord,
    env: &mut Envelope,
) -> json::Result<()> {
    p.begin_array()?;
    while p.next_element()? {
        on_record(p, page, cols)?;
        env.records += 1;
    }
    Ok(())
}

/// Page-number paging over one listing, with our own counter and parameters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Pages {
    page: u64,
    #[serde(default)]
    done: bool,
}

impl Pages {
    fn from(resume: &Value) -> Pages {
        serde_json::from_value(resume.clone()).unwrap_or(Pages { page: 1, done: false })
    }

    fn fetch(
        &mut self,
        client: &Client,
        resource: &str,
        params: &[(&str, &str)],
        page: &mut Page,
        cols: &mut Columns,
        on_record: &mut OnRecord,
    ) -> Result<()> {
        let number = self.page.to_string();
        let mut query = params.to_vec();
        query.push(("page", &number));
        let env = fetch_page(client, resource, &query, page, cols, on_record)?;
        if let Some(got) = env.page.filter(|&p| p != self.page) {
            let url = client.url(&format!("/{resource}/"), &query);
            return Err(Error::Response { url, detail: format!("asked for page {}, got page {got}", self.page) });
        }
        let last = env.total_pages.is_some_and(|t| self.page >= t);
        self.done = !env.has_next || last || env.records == 0;
        self.page += 1;
        Ok(())
    }
}

/// `users/` or `assignments/`: every record flattened, optionally only those
/// created since a cut-off.
struct Listing<'a> {
    client: &'a Client,
    resource: &'static str,
    per_page: &'a str,
    created_since: Option<i64>,
    pages: Pages,
}

impl<'a> Listing<'a> {
    fn new(client: &'a Client, paligo: &'a Paligo, resource: &'static str, start: &Start) -> Listing<'a> {
        let pages = Pages::from(start.resume);
        Listing { client, resource, per_page: &paligo.page_size, created_since: start.created_since, pages }
    }
}

impl PageReader for Listing<'_> {
    fn next_page(&mut self, page: &mut Page, cols: &mut Columns) -> Result<bool> {
        if self.pages.done {
            return Ok(false);
        }
        let since = self.created_since;
        let mut on_record = |p: &mut Parser, page: &mut Page, cols: &mut Columns| match since {
            None => flatten_record(p, page, cols),
            Some(since) => {
                let raw = p.skip()?;
                let mut created = Vec::new();
                let has = json::field(&mut Parser::new(raw), b"created_at", &mut created)?;
                let created = std::str::from_utf8(&created).ok().and_then(|c| c.parse::<i64>().ok());
                if !has || created.is_none_or(|c| c >= since) {
                    flatten_record(&mut Parser::new(raw), page, cols)?;
                }
                Ok(())
            }
        };
        let params = [("per_page", self.per_page)];
        self.pages.fetch(self.client, self.resource, &params, page, cols, &mut on_record)?;
        Ok(!self.pages.done)
    }

    fn position(&self) -> Value {
        serde_json::to_value(&self.pages).expect("serializes")
    }
}

/// One listing of the tree still to read: the children of `parent` (roots if none).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Frame {
    parent: Option<String>,
    /// Level of the nodes this listing returns: 1 for roots.
    level: u32,
    /// Path of `parent`, empty for roots.
    path: String,
    #[serde(flatten)]
    pages: Pages,
}

/// The taxonomy tree, depth first.
struct Tree<'a> {
    client: &'a Client,
    per_page: &'a str,
    stack: Vec<Frame>,
    /// Ids seen by this process, to stop on a cycle instead of walking forever.
    seen: HashSet<String>,
}

impl<'a> Tree<'a> {
    fn new(client: &'a Client, paligo: &'a Paligo, resume: &Value) -> Tree<'a> {
        let root = Frame { parent: None, level: 1, path: String::new(), pages: Pages { page: 1, done: false } };
        let stack = match resume.get("stack") {
            Some(s) => serde_json::from_value(s.clone()).unwrap_or_default(),
            None if resume.get("done").is_some() => Vec::new(),
            None => vec![root],
        };
        Tree { client, per_page: &paligo.page_size, stack, seen: HashSet::new() }
    }
}

impl PageReader for Tree<'_> {
    fn next_page(&mut self, page: &mut Page, cols: &mut Columns) -> Result<bool> {
        let Some(frame) = self.stack.last_mut() else { return Ok(false) };
        let (parent, level, parent_path) = (frame.parent.clone(), frame.level, frame.path.clone());
        let level_text = level.to_string();
        let mut children: Vec<Frame> = Vec::new();
        let (mut id, mut title) = (Vec::new(), Vec::new());
        let mut on_record = |p: &mut Parser, page: &mut Page, cols: &mut Columns| {
            // A body that failed half way is parsed again from the start: its rows were
            // rolled back, so drop the children they announced too (one per row).
            children.truncate(page.len());
            let mark = page.mark();
            page.flatten_record(p, cols)?;
            id.clear();
            title.clear();
            page.pending_value(cols, &["id"], &mut id);
            page.pending_value(cols, &["title"], &mut title);
            let parent_path = parent.as_ref().map(|_| parent_path.as_str());
            let path = join_path(parent_path, &String::from_utf8_lossy(&title));
            page.push(cols, &["parent_id"], parent.as_deref().unwrap_or("").as_bytes());
            page.push(cols, &["level"], level_text.as_bytes());
            page.push(cols, &["path"], path.as_bytes());
            page.end_row();
            if id.is_empty() {
                page.rollback(mark);
                return Ok(());
            }
            let pages = Pages { page: 1, done: false };
            let parent = Some(String::from_utf8_lossy(&id).into_owned());
            children.push(Frame { parent, level: level + 1, path, pages });
            Ok(())
        };
        let mut params = vec![("per_page", self.per_page)];
        if let Some(p) = &frame.parent {
            params.push(("parent", p.as_str()));
        }
        frame.pages.fetch(self.client, "taxonomies", &params, page, cols, &mut on_record)?;
        if frame.pages.done {
            self.stack.pop();
        }
        for child in children.into_iter().rev() {
            let id = child.parent.clone().unwrap_or_default();
            if child.level > MAX_DEPTH || !self.seen.insert(id.clone()) {
                let url = self.client.url("/taxonomies/", &[("parent", &id)]);
                return Err(Error::Response {
                    url,
                    detail: format!("taxonomy {id} is reached twice: the tree has a cycle"),
                });
            }
            self.stack.push(child);
        }
        Ok(!self.stack.is_empty())
    }

    fn position(&self) -> Value {
        if self.stack.is_empty() {
            json!({"done": true})
        } else {
            json!({ "stack": self.stack })
        }
    }
}

/// Escapes `\` and `/` in a title and appends it to its parent's path (`None` for
/// a root: a root titled `""` has an empty path, and its children still start
/// with the separator).
pub fn join_path(parent: Option<&str>, title: &str) -> String {
    let escaped = title.replace('\\', "\\\\").replace('/', "\\/");
    match parent {
        None => escaped,
        Some(parent) => format!("{parent}{PATH_SEPARATOR}{escaped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_stop_on_empty_next_page() {
        let body = br#"{"page":2,"next_page":"","total_pages":2,"users":[{"id":57,"name":"O"}]}"#;
        let (mut page, mut cols) = (Page::default(), Columns::new(&[], None));
        let env = parse_envelope(body, "users", &mut page, &mut cols, &mut flatten_record).unwrap();
        assert_eq!((env.records, env.page, env.has_next, env.total_pages), (1, Some(2), false, Some(2)));
        let body = br#"{"page":1,"next_page":"https://x/api/v2/users/?page=2","total_pages":"3","users":[]}"#;
        let env = parse_envelope(body, "users", &mut page, &mut cols, &mut flatten_record).unwrap();
        assert_eq!((env.has_next, env.total_pages), (true, Some(3)));
        assert!(parse_envelope(br#"{"page":1}"#, "users", &mut page, &mut cols, &mut flatten_record).is_err());
    }

    #[test]
    fn paths_escape_the_separator() {
        let p = join_path(None, "Input/Output > Drivers \\ Legacy");
        assert_eq!(p, "Input\\/Output > Drivers \\\\ Legacy");
        assert_eq!(join_path(Some(&p), "Child"), "Input\\/Output > Drivers \\\\ Legacy / Child");
        assert_eq!(join_path(Some("A"), "B"), crate::mock::paligo::taxonomy_path(&["A", "B"]));
        let nested = join_path(Some(&join_path(None, "x/y")), "z\\");
        assert_eq!(nested, crate::mock::paligo::taxonomy_path(&["x/y", "z\\"]));
        assert_eq!(join_path(Some(&join_path(None, "")), "a"), crate::mock::paligo::taxonomy_path(&["", "a"]));
    }
}
