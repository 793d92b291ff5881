//! The truth for tests: what a complete sync must end with, and what a generation
//! changed, found by diffing the served records by id.

use std::collections::HashMap;

use super::record::{js, num_opt, ASSIGNMENT_IDS, USER_IDS};
use super::{taxonomy_path, Mutations, Paligo, TableMutations};
use crate::mock::MockOptions;

pub(super) const TABLES: &[&str] = &["users", "taxonomies", "assignments"];

impl Paligo {
    /// Every record of `table` a sync must end with, as the exact JSON text the API
    /// serves. Taxonomies get `parent_id` (null at root level), `level` (1 at root
    /// level) and `path` ([`taxonomy_path`]) appended, as the connector computes them.
    pub fn expected(&self, table: &str) -> Vec<String> {
        self.records(table).into_iter().map(|(_, json)| json).collect()
    }

    /// What generation g added, changed and deleted compared with g - 1 (against an
    /// empty account for generation 1), found by diffing [`Paligo::expected`] by id,
    /// so every taxonomy below a moved one counts as changed.
    pub fn mutations(&self) -> Mutations {
        let before = (self.generation > 1).then(|| {
            let opts = MockOptions {
                seed: self.seed,
                records: self.records,
                generation: self.generation - 1,
                ..MockOptions::default()
            };
            Paligo::new(&opts)
        });
        let tables = TABLES
            .iter()
            .map(|&t| {
                let old = before.as_ref().map_or_else(Vec::new, |b| b.records(t));
                (t.to_string(), diff(old, self.records(t)))
            })
            .collect();
        Mutations { tables }
    }

    fn records(&self, table: &str) -> Vec<(u64, String)> {
        match table {
            "users" => self.users.live().into_iter().map(|i| (USER_IDS.id(i), self.user(i).json())).collect(),
            "assignments" => {
                let live = self.assignments.live().into_iter();
                live.map(|i| (ASSIGNMENT_IDS.id(i), self.assignment(i).json())).collect()
            }
            "taxonomies" => {
                let mut out = Vec::new();
                for &root in &self.tree.roots {
                    self.walk(root, None, &mut Vec::new(), &mut out);
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// Depth-first through the tree, carrying the titles from the root down.
    fn walk(&self, i: u32, parent_id: Option<u64>, titles: &mut Vec<String>, out: &mut Vec<(u64, String)>) {
        let t = self.taxonomy(i);
        titles.push(t.title.clone());
        let path = taxonomy_path(&titles.iter().map(String::as_str).collect::<Vec<_>>());
        let served = t.json();
        let json = format!(
            r#"{},"parent_id":{},"level":{},"path":{}}}"#,
            &served[..served.len() - 1],
            num_opt(parent_id),
            titles.len(),
            js(&path)
        );
        out.push((t.id, json));
        for &child in &self.tree.children[i as usize] {
            self.walk(child, Some(t.id), titles, out);
        }
        titles.pop();
    }
}

/// Ids added, changed and deleted from `old` to `new`, in numeric order.
pub(super) fn diff(old: Vec<(u64, String)>, new: Vec<(u64, String)>) -> TableMutations {
    let mut old: HashMap<u64, String> = old.into_iter().collect();
    let (mut added, mut changed) = (Vec::new(), Vec::new());
    for (id, json) in new {
        match old.remove(&id) {
            None => added.push(id),
            Some(before) if before != json => changed.push(id),
            Some(_) => {}
        }
    }
    let mut deleted: Vec<u64> = old.into_keys().collect();
    let strings = |mut ids: Vec<u64>| {
        ids.sort_unstable();
        ids.into_iter().map(|id| id.to_string()).collect()
    };
    TableMutations { added: strings(added), changed: strings(changed), deleted: strings(std::mem::take(&mut deleted)) }
}
