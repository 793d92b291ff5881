//! The Paligo REST API v2 mock: `users/`, `taxonomies/` and `assignments/` under
//! `/api/v2/`, HTTP Basic auth and Paligo's page envelope, as the real API behaves
//! (`shared/api/paligo.md`), not as the Fivetran example assumes.
//!
//! Records are built on demand from (seed, index, version); only which indices are
//! alive, each record's version and the taxonomy tree are stored. Generation `g`
//! replays the deterministic mutations of generations 2..=g over the seed account.
//! [`Paligo::expected`] and [`Paligo::mutations`] give tests the truth without HTTP.
//!
//! One file per noun: `record` (users, taxonomies, assignments built from their
//! index), `flat` and `tree` (which records live at a generation), `page` (the
//! envelope), `auth` (HTTP Basic), `expected` (the truth for tests); `draw` holds
//! the randomness and the hard values.

mod auth;
mod draw;
#[cfg(any(test, feature = "test-oracles"))]
mod expected;
mod flat;
mod page;
mod record;
#[cfg(test)]
mod tests;
mod tree;

use super::{MockApi, MockOptions, MockRequest, MockResponse};
pub use super::{Mutations, TableMutations};
use auth::authorized;
pub use auth::basic_auth;
use draw::{TAG_ASSIGNMENT, TAG_USER};
use flat::{Flat, Plan};
use page::Page;
use record::{js, Assignment, ASSIGNMENT_IDS, TAXONOMY_IDS, USER_IDS};
use tree::Tree;

/// The login the mock accepts (Paligo logins are e-mail addresses).
pub const USERNAME: &str = "api@example.com";
/// The API key the mock accepts.
pub const API_KEY: &str = "mock-paligo-key";
/// The hidden root taxonomy: root-level taxonomies carry it as `parent`, and
/// `taxonomies/?parent=1` lists them like the plain listing. Real Paligo has such a
/// node ("the root one"), but its id is unconfirmed; 1 is our choice.
pub const HIDDEN_ROOT_ID: u64 = 1;
/// Page size when `per_page` is missing or unreadable (invented: undocumented).
pub const DEFAULT_PER_PAGE: usize = 25;
/// Larger `per_page` values are silently capped, so a short page is not the end
/// (or refused with a 422 under [`MockOptions::reject_large_limit`]).
pub const MAX_PER_PAGE: usize = 100;

/// The path the connector writes for a taxonomy: titles from the root down, joined
/// with `" / "`. Inside a title `\` becomes `\\` and `/` becomes `\/`, so a title
/// holding `/` can never be mistaken for two levels.
pub fn taxonomy_path(titles: &[&str]) -> String {
    let escaped: Vec<String> = titles.iter().map(|t| t.replace('\\', "\\\\").replace('/', "\\/")).collect();
    escaped.join(" / ")
}

/// The Paligo mock for one (seed, records, generation).
pub struct Paligo {
    seed: u64,
    /// Read by the test oracles only.
    #[cfg_attr(not(any(test, feature = "test-oracles")), allow(dead_code))]
    records: usize,
    generation: u32,
    /// Users of generation 1: issuers and assignees are drawn from them.
    seed_users: usize,
    users: Flat,
    tree: Tree,
    assignments: Flat,
    /// [`MockOptions::reject_large_limit`].
    reject_large_limit: bool,
}

impl Paligo {
    /// Builds generation 1 from the seed, then replays generations 2..=g.
    pub fn new(opts: &MockOptions) -> Paligo {
        let records = opts.records;
        let seed_users = (records / 7).max(5);
        let mut p = Paligo {
            seed: opts.seed,
            records,
            generation: opts.generation.max(1),
            seed_users,
            users: Flat::new(seed_users),
            tree: Tree::new(opts.seed, (records / 4).max(20)),
            assignments: Flat::new(records),
            reject_large_limit: opts.reject_large_limit,
        };
        for gen in 2..=p.generation {
            p.mutate(gen);
        }
        p
    }

    /// A user renamed, one deleted, two added; a taxonomy leaf deleted, a subtree
    /// moved, a leaf added; about 1% of assignments added, deleted and re-statused.
    fn mutate(&mut self, gen: u32) {
        let users = Plan { deletes: 1, changes: 1, adds: 2 };
        self.users.mutate(self.seed, TAG_USER, gen, &users);
        self.tree.mutate(self.seed, gen);
        let n = (self.assignments.alive.len() / 100).max(1);
        let assignments = Plan { deletes: n, changes: n, adds: n };
        self.assignments.mutate(self.seed, TAG_ASSIGNMENT, gen, &assignments);
    }
}

impl MockApi for Paligo {
    fn handle(&self, req: &MockRequest) -> MockResponse {
        if !authorized(req.authorization.as_deref()) {
            return error(401, "Unauthorized");
        }
        if req.method != "GET" {
            return error(405, "Method not allowed");
        }
        let Some(route) = req.path.strip_prefix("/api/v2/") else {
            return not_found();
        };
        // Real clients use both `users/` and `users`; the docs don't say which one
        // the server rejects, so the mock takes both.
        let route = route.strip_suffix('/').unwrap_or(route);
        match route.split_once('/') {
            None => self.list(route, req),
            Some((resource, id)) => self.show(resource, id),
        }
    }

    fn too_many_requests(&self, retry_after_secs: u64) -> MockResponse {
        let mut response = error(429, "Too many requests");
        response.headers.push(("Retry-After".to_string(), retry_after_secs.to_string()));
        response
    }
}

impl Paligo {
    /// A bare object, as `users/{id}/` returns it. The hidden root is not served.
    fn show(&self, resource: &str, id: &str) -> MockResponse {
        let Ok(id) = id.parse::<u64>() else {
            return not_found();
        };
        let body = match resource {
            "users" => USER_IDS.index(id).filter(|&i| self.users.is_live(i)).map(|i| self.user(i).json()),
            "taxonomies" => TAXONOMY_IDS.index(id).filter(|&i| self.tree.is_live(i)).map(|i| self.taxonomy(i).json()),
            "assignments" => {
                let index = ASSIGNMENT_IDS.index(id).filter(|&i| self.assignments.is_live(i));
                index.map(|i| self.assignment(i).json())
            }
            _ => None,
        };
        body.map_or_else(not_found, |b| json_response(200, b))
    }

    fn list(&self, resource: &str, req: &MockRequest) -> MockResponse {
        let (matching, filters): (Vec<u32>, &[&str]) = match resource {
            "users" => (self.matching_users(req), &["type"]),
            "taxonomies" => (self.matching_taxonomies(req), &["parent", "title", "color"]),
            "assignments" => (self.matching_assignments(req), &["status", "lang", "type", "issuer", "users"]),
            _ => return not_found(),
        };
        if self.reject_large_limit && page::above_cap(req) {
            // Invented wording: no source shows Paligo's validation errors.
            return error(422, "The per_page may not be greater than 100.");
        }
        let page = Page::of(req, matching.len());
        let items: Vec<String> = matching[page.range()].iter().map(|&i| self.render(resource, i)).collect();
        json_response(200, page.envelope(req, resource, filters, &items))
    }

    fn render(&self, resource: &str, i: u32) -> String {
        match resource {
            "users" => self.user(i).json(),
            "taxonomies" => self.taxonomy(i).json(),
            _ => self.assignment(i).json(),
        }
    }

    fn matching_users(&self, req: &MockRequest) -> Vec<u32> {
        let live = self.users.live();
        match req.param("type") {
            None => live,
            Some(kind) => live.into_iter().filter(|&i| self.user(i).kind == kind).collect(),
        }
    }

    /// Root level without `parent` (or with the hidden root's id), else the direct
    /// children of `parent`; an unknown parent gives an empty list (invented).
    fn matching_taxonomies(&self, req: &MockRequest) -> Vec<u32> {
        let level = match req.param("parent").map(|p| p.parse::<u64>()) {
            None | Some(Ok(HIDDEN_ROOT_ID)) => self.tree.roots.clone(),
            Some(Ok(id)) => TAXONOMY_IDS
                .index(id)
                .filter(|&i| self.tree.is_live(i))
                .map(|i| self.tree.children[i as usize].clone())
                .unwrap_or_default(),
            Some(Err(_)) => Vec::new(),
        };
        level.into_iter().filter(|&i| self.taxonomy_matches(i, req)).collect()
    }

    /// `title` matches a substring (invented: the docs don't say); `color` exactly.
    fn taxonomy_matches(&self, i: u32, req: &MockRequest) -> bool {
        let t = self.taxonomy(i);
        req.param("title").is_none_or(|s| t.title.contains(s))
            && req.param("color").is_none_or(|c| c.parse::<u8>() == Ok(t.color))
    }

    fn matching_assignments(&self, req: &MockRequest) -> Vec<u32> {
        let live = self.assignments.live();
        let filtered = ["status", "lang", "type", "issuer", "users"].iter().any(|k| req.param(k).is_some());
        if !filtered {
            return live;
        }
        live.into_iter().filter(|&i| assignment_matches(&self.assignment(i), req)).collect()
    }
}

/// `issuer` and `users` take a user id; `users` matches any entry of `user_statuses`.
fn assignment_matches(a: &Assignment, req: &MockRequest) -> bool {
    let is = |key: &str, value: Option<&str>| req.param(key).is_none_or(|v| Some(v) == value);
    let id = |v: &str| v.parse::<u64>().ok();
    is("status", Some(a.status))
        && is("type", Some(a.kind))
        && is("lang", a.lang)
        && req.param("issuer").is_none_or(|v| id(v) == Some(a.issuer_id))
        && req.param("users").is_none_or(|v| a.user_statuses.iter().any(|&(u, _)| id(v) == Some(u)))
}

fn json_response(status: u16, body: String) -> MockResponse {
    let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    MockResponse { status, headers, body: body.into_bytes() }
}

/// Paligo promises JSON for errors too, but no source shows the shape: invented.
fn error(status: u16, message: &str) -> MockResponse {
    json_response(status, format!(r#"{{"message":{}}}"#, js(message)))
}

fn not_found() -> MockResponse {
    error(404, "Not found")
}
