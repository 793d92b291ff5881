//! What a correct sync ends with, for the tests: every record of a table as the exact
//! JSON the API serves, and what a generation changed, found by diffing two accounts
//! the way CSV rows show them.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{MailerLite, Mutations, TableMutations, TABLES};
use crate::mock::MockOptions;

impl MailerLite {
    /// The generation this account was built for.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Every record of `table` ([`TABLES`]) as the exact JSON text the API
    /// serves for it (subscribers without `groups`); empty for an unknown table.
    /// `group_subscriber` rows are `{"group_id":"…","subscriber_id":"…"}`, one
    /// per membership whatever the subscriber's status.
    pub fn expected(&self, table: &str) -> Vec<String> {
        match table {
            "subscriber" => self.expected_subscribers(),
            "group_subscriber" => self.expected_memberships(),
            "group" => self.groups.iter().filter(|g| g.alive).map(to_json).collect(),
            "field" => self.fields.iter().map(to_json).collect(),
            "campaign" => self.campaigns.iter().map(to_json).collect(),
            _ => Vec::new(),
        }
    }

    fn expected_subscribers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for slot in self.slots() {
            if let Some(life) = self.life(slot) {
                let mut text = Vec::with_capacity(900);
                self.write_subscriber(&mut text, slot, &life, false);
                out.push(String::from_utf8(text).expect("serde_json writes UTF-8"));
            }
        }
        out
    }

    fn expected_memberships(&self) -> Vec<String> {
        let mut out = Vec::new();
        for slot in self.slots() {
            let Some(life) = self.life(slot) else {
                continue;
            };
            let subscriber = self.subscriber_id(slot);
            for group in life.groups.iter() {
                let group = self.groups[group].id.0;
                out.push(format!(r#"{{"group_id":"{group}","subscriber_id":"{subscriber}"}}"#));
            }
        }
        out
    }

    /// Exactly what changed since generation `g - 1`, found by diffing the two
    /// generations' `expected` records by primary key, comparing only what a CSV
    /// row shows (a null and a missing key are the same empty cell).
    pub fn mutations(&self) -> Mutations {
        if self.generation <= 1 {
            return Mutations::default();
        }
        let previous = MailerLite::new(&MockOptions {
            seed: self.seed,
            records: self.records as usize,
            generation: self.generation - 1,
            skew_group_counts: self.skew_group_counts,
            ..MockOptions::default()
        });
        let tables =
            TABLES.iter().map(|&t| (t.to_string(), diff(t, &previous.expected(t), &self.expected(t)))).collect();
        Mutations { tables }
    }
}

fn to_json<T: Serialize>(item: &T) -> String {
    serde_json::to_string(item).expect("records serialize")
}

/// The primary key of a record of `table`; `group_id,subscriber_id` for memberships.
pub fn primary_key(table: &str, record: &serde_json::Value) -> String {
    let text = |key: &str| record[key].as_str().map(str::to_string).unwrap_or_else(|| record[key].to_string());
    match table {
        "group_subscriber" => format!("{},{}", text("group_id"), text("subscriber_id")),
        _ => text("id"),
    }
}

fn diff(table: &str, old: &[String], new: &[String]) -> TableMutations {
    let key_of = |text: &str| primary_key(table, &parse(text));
    let mut old: HashMap<String, &str> = old.iter().map(|t| (key_of(t), t.as_str())).collect();
    let mut result = TableMutations::default();
    for text in new {
        let value = parse(text);
        let key = primary_key(table, &value);
        match old.remove(&key) {
            None => result.added.push(key),
            // Equal text is the common case; parse only when it differs.
            Some(before) if before != text && cells(&parse(before)) != cells(&value) => result.changed.push(key),
            Some(_) => {}
        }
    }
    result.deleted = old.into_keys().collect();
    for keys in [&mut result.added, &mut result.changed, &mut result.deleted] {
        keys.sort();
    }
    result
}

fn parse(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("the mock writes JSON")
}

fn cells(value: &serde_json::Value) -> BTreeMap<String, String> {
    let mut cells = BTreeMap::new();
    visible_cells(value, String::new(), &mut cells);
    cells
}

/// Flattens a record the way a CSV row shows it: nested objects by path, arrays
/// as JSON text, and neither null nor `""` as a cell.
fn visible_cells(value: &serde_json::Value, path: String, cells: &mut BTreeMap<String, String>) {
    use serde_json::Value;
    let text = match value {
        Value::Object(map) => {
            for (key, child) in map {
                visible_cells(child, format!("{path}.{key}"), cells);
            }
            return;
        }
        Value::Null => return,
        Value::String(s) if s.is_empty() => return,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    cells.insert(path, text);
}
