//! Connector definitions: an API described in one JSON file (DESIGN.md, "Connector
//! definitions"), read with serde, checked completely before any request, and
//! turned into a [`Connector`] that feeds the same engine as the built-in ones.
//!
//! A definition is loaded once per run and leaked (`Box::leak`): the engine holds
//! connectors as `&'static Def`, and a CLI run loads at most one definition.

pub mod link;
mod load;
mod pointer;
mod saved;
mod stream;
mod times;

use std::sync::OnceLock;

use super::{Checked, Confirm, Connector, Def, Stream, StreamPlan, TableSpec};
use crate::config::{Config, Requirements};
use crate::error::{Error, Result};
use crate::net::http::{Client, Secret};
use crate::page::paginate::Position;
use crate::page::timestamp::TimeFormat;

pub use load::{parse, Definition, Paging, Table};
pub use saved::from_state;

/// The definition of this run, once loaded.
static LOADED: OnceLock<&'static Definition> = OnceLock::new();
/// Its [`Def`].
static LOADED_DEF: OnceLock<&'static Def> = OnceLock::new();

/// True when a connector argument names a definition file rather than a built-in.
pub fn is_path(arg: &str) -> bool {
    arg.contains('/') || arg.contains('\\') || arg.ends_with(".json")
}

/// The definition loaded in this run, if it is named `name`.
pub fn loaded_named(name: &str) -> Option<&'static Def> {
    LOADED_DEF.get().copied().filter(|d| d.name == name)
}

/// Reads, checks and installs the definition at `path`: its [`Def`].
pub fn load(path: &std::path::Path) -> Result<&'static Def> {
    let text = std::fs::read(path).map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&text);
    let def = parse(text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    saved::keep(text);
    install(def)
}

/// Makes `def` the definition of this run: its [`Def`].
fn install(def: Definition) -> Result<&'static Def> {
    let def: &'static Definition = Box::leak(Box::new(def));
    if LOADED.set(def).is_err() {
        return Err(Error::Usage("only one connector definition per run".into()));
    }
    let this: &'static Def = Box::leak(Box::new(to_def(def)));
    let _ = LOADED_DEF.set(this);
    Ok(this)
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn to_def(d: &'static Definition) -> Def {
    let upper = d.name.to_ascii_uppercase();
    let (key, user) = d.auth.keys();
    let requirements = Requirements {
        api_key_name: leak(key.to_string()),
        username_name: leak(user.unwrap_or("username").to_string()),
        api_key_env: leak(format!("{upper}_{}", key.to_ascii_uppercase())),
        username_env: user.map(|u| leak(format!("{upper}_{}", u.to_ascii_uppercase()))),
        default_base_url: Some(d.base_url.as_str()),
        instance_url: None,
        instance_domain: "",
        requests_per_minute: d.requests_per_minute(),
        filters_by_time: true,
    };
    let tables: Vec<TableSpec> = d
        .tables
        .iter()
        .map(|t| TableSpec {
            name: t.name.as_str(),
            primary_key: Box::leak(t.primary_key.iter().map(|k| k.as_str()).collect::<Vec<_>>().into_boxed_slice()),
            timestamps: Box::leak(t.converted.clone().into_boxed_slice()),
            derived: &[],
            read_as: leak(t.read_as()),
            // A child listing is only read along with its parent's: what it did not
            // see is gone (a re-read would be its parent's again).
            confirm: match t.paging {
                _ if t.for_each.is_some() => Confirm::Unseen,
                Paging::Page(_) | Paging::Offset(_) => Confirm::Reread,
                Paging::LinkHeader => Confirm::Unseen,
                _ => Confirm::Unseen,
            },
        })
        .collect();
    Def {
        name: d.name.as_str(),
        about: "a connector definition",
        requirements,
        tables: Box::leak(tables.into_boxed_slice()),
        time_format: TimeFormat::UnixSeconds,
        build: |config| Box::new(Defined::new(LOADED.get().expect("a loaded definition"), config)),
        authorization,
        demo: None,
    }
}

/// `selected` (in table order) with the parent of each `for_each` table in it: a
/// child's listings come from its parent's records read in the same run.
pub fn with_parents(def: &Def, mut selected: Vec<&'static str>) -> Vec<&'static str> {
    let Some(d) = loaded(def) else { return selected };
    // A parent comes before its children: from the last table back, every
    // ancestor of a selected table is reached.
    for t in d.tables.iter().rev() {
        if let Some(f) = t.for_each.as_ref().filter(|_| selected.contains(&t.name.as_str())) {
            if !selected.contains(&f.table.as_str()) {
                selected.push(d.tables[f.parent].name.as_str());
            }
        }
    }
    def.tables.iter().map(|t| t.name).filter(|t| selected.contains(t)).collect()
}

/// The `rel="next"` target of a response's `Link` headers, if any.
pub fn link_next(headers: &http::HeaderMap) -> Option<String> {
    headers.get_all(http::header::LINK).iter().filter_map(|v| v.to_str().ok()).find_map(link::next)
}

/// Where the credential of `def` is sent: the `Authorization` header unless a
/// definition says otherwise.
pub fn auth_place(def: &Def) -> crate::net::http::AuthPlace {
    use crate::net::http::AuthPlace;
    match loaded(def).map(|d| &d.auth) {
        Some(load::Auth::Header { name, .. }) => AuthPlace::Header(name),
        Some(load::Auth::Query { name, .. }) => AuthPlace::Query(name),
        _ => AuthPlace::Header("Authorization"),
    }
}

/// The loaded definition, if `def` is it.
fn loaded(def: &Def) -> Option<&'static Definition> {
    LOADED_DEF.get().filter(|d| std::ptr::eq(**d, def)).and(LOADED.get().copied())
}

/// Each table's digest of what identifies its rows: its path, records pointer and
/// primary key. A timestamp field or a query parameter may change; these may not.
fn digests(d: &Definition) -> std::collections::BTreeMap<String, String> {
    d.tables
        .iter()
        .map(|t| {
            let text = serde_json::json!([t.path, t.records, t.primary_key]).to_string();
            (t.name.clone(), format!("{:016x}", crate::store::hashing::stable(0, text.as_bytes())))
        })
        .collect()
}

/// Refuses a directory whose tables were read under another path, records pointer
/// or primary key (unless `--full-refresh`): its rows would not line up.
pub fn check_state(
    def: &Def,
    dir: &std::path::Path,
    state: &crate::store::state::State,
    full_refresh: bool,
) -> Result<()> {
    let Some(d) = loaded(def) else { return Ok(()) };
    if full_refresh {
        return Ok(());
    }
    let now = digests(d);
    for (table, was) in &state.definition {
        if now.get(table).is_some_and(|n| n != was) {
            return Err(Error::dir(
                dir,
                format!(
                    "table {table} of definition {} changed its path, records pointer or primary key since it was synced; \
                     run again with --full-refresh to read it anew",
                    d.name
                ),
            ));
        }
    }
    Ok(())
}

/// Records the definition's digests in the state about to be saved.
pub fn record_state(def: &Def, state: &mut crate::store::state::State) {
    if let Some(d) = loaded(def) {
        state.definition.extend(digests(d));
        saved::record(state);
    }
}

fn authorization(config: &Config) -> Secret {
    match &LOADED.get().expect("a loaded definition").auth {
        load::Auth::Bearer(_) => Secret::new(format!("Bearer {}", config.api_key.expose())),
        load::Auth::Basic(_) => {
            Secret::new(super::paligo::basic_auth(config.username.as_deref().unwrap_or(""), config.api_key.expose()))
        }
        load::Auth::Header { .. } | load::Auth::Query { .. } => config.api_key.clone(),
    }
}

/// The connector of a loaded definition, for one configuration.
pub struct Defined {
    def: &'static Definition,
    this: &'static Def,
    base_url: String,
    /// The table trees of the plans opened (leaked: a run opens a handful).
    trees: std::sync::Mutex<Vec<(Vec<&'static str>, &'static stream::Node)>>,
}

/// The tables of `node`'s subtree that are among `tables`, depth first (a child
/// is only ever selected with its parent: see [`with_parents`]).
fn preorder(node: stream::Node, tables: &[&'static str], out: &mut Vec<&'static str>) {
    if let Some(&t) = tables.iter().find(|t| **t == node.table.name) {
        out.push(t);
        for c in node.children {
            preorder(c, tables, out);
        }
    }
}

impl Defined {
    fn new(def: &'static Definition, config: &Config) -> Defined {
        let this = LOADED_DEF.get().expect("a loaded definition");
        Defined { def, this, base_url: config.base_url.clone(), trees: Default::default() }
    }

    fn secret_param(&self) -> Option<&'static str> {
        match &self.def.auth {
            load::Auth::Query { name, .. } => Some(name),
            _ => None,
        }
    }

    fn table(&self, name: &str) -> &'static Table {
        self.def.tables.iter().find(|t| t.name == name).expect("a table of the definition")
    }

    /// The whole tree of `for_each` tables under `name`.
    fn node(&self, name: &str) -> stream::Node {
        let table = self.table(name);
        let children = self
            .def
            .tables
            .iter()
            .filter(|t| t.for_each.as_ref().is_some_and(|f| f.table == table.name))
            .map(|t| self.node(&t.name))
            .collect();
        stream::Node { table, children }
    }

    /// The tree of a plan's tables (its first is the root), built once per plan.
    fn tree(&self, tables: &[&'static str]) -> &'static stream::Node {
        fn keep(node: stream::Node, tables: &[&'static str]) -> stream::Node {
            let children =
                node.children.into_iter().filter(|c| tables.contains(&c.table.name.as_str())).map(|c| keep(c, tables));
            stream::Node { table: node.table, children: children.collect() }
        }
        let mut trees = self.trees.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, tree)) = trees.iter().find(|(t, _)| t == tables) {
            return tree;
        }
        let tree: &'static stream::Node = Box::leak(Box::new(keep(self.node(tables[0]), tables)));
        trees.push((tables.to_vec(), tree));
        tree
    }
}

impl Connector for Defined {
    fn def(&self) -> &'static Def {
        self.this
    }

    fn check(&self, client: &Client) -> Result<Checked> {
        let t = &self.def.tables[0];
        let listing = stream::Listing::new(t, &self.base_url, self.secret_param(), None);
        let req = listing.request().expect("a first request");
        let query: Vec<(&str, &str)> = req.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let spec = listing.reading().spec;
        client.get(&req.path, &query, |reply| {
            let mut batch = crate::page::parse::Batch::default();
            crate::page::parse::parse(reply.body, &spec, &mut batch).map(drop).map_err(|e| e.0)
        })?;
        // The instance is the identity: `host:port`, as Paligo's (see `Account::user_at`).
        let at = crate::net::http::check_base_url(client.base_url()).map(|b| b.authority).unwrap_or_default();
        Ok(Checked {
            identity: Some(format!("{} at {at}", self.def.name)),
            message: format!("credentials accepted by {} (table {})", client.base_url(), t.name),
            ..Checked::default()
        })
    }

    /// One stream per table, but a table read `for_each` record of another shares
    /// its parent's stream (each parent page, then its children's listings), in
    /// depth-first order.
    /// A child's ancestors are in its plan even when they are not asked for (done
    /// by an interrupted run): they are read along, not written.
    fn streams(&self, tables: &[&'static str]) -> Vec<StreamPlan> {
        let tables = &with_parents(self.this, tables.to_vec())[..];
        let mut plans = Vec::new();
        for t in self.def.tables.iter().filter(|t| t.for_each.is_none()) {
            let mut subtree = Vec::new();
            preorder(self.node(&t.name), tables, &mut subtree);
            if let Some(&name) = subtree.first() {
                plans.push(StreamPlan { name, tables: subtree });
            }
        }
        plans
    }

    fn open(&self, plan: &StreamPlan, position: Option<Position>) -> Box<dyn Stream + '_> {
        if plan.tables.len() == 1 {
            return self.reread(plan.name, position);
        }
        Box::new(stream::Family::new(self.tree(&plan.tables), &self.base_url, self.secret_param(), position))
    }

    /// A child table is read again with its root, whose rows are not wanted.
    fn reread(&self, table: &str, position: Option<Position>) -> Box<dyn Stream + '_> {
        let t = self.table(table);
        match &t.for_each {
            Some(_) => {
                let plan = self.streams(&[self.table(table).name.as_str()]).remove(0);
                self.open(&plan, position)
            }
            None => Box::new(stream::Listing::new(t, &self.base_url, self.secret_param(), position)),
        }
    }
}
