//! The account's fields: the eight defaults and the custom fields, some of which only
//! later generations add, as `/fields` lists them and subscriber `fields` keys them.

use serde::Serialize;

use super::scalar::Id;

/// A custom or default field of the account.
#[derive(Serialize, Clone, Debug)]
pub(super) struct Field {
    id: Id,
    name: &'static str,
    pub(super) key: &'static str,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    is_default: bool,
    used_in_automations: bool,
}

const DEFAULT_FIELDS: [(&str, &str); 8] = [
    ("Name", "name"),
    ("Last name", "last_name"),
    ("Company", "company"),
    ("Country", "country"),
    ("City", "city"),
    ("Phone", "phone"),
    ("State", "state"),
    ("Zip", "z_i_p"),
];
/// Custom fields: (name, key, type, first generation that has it).
const CUSTOM_FIELDS: [(&str, &str, &str, u32); 4] = [
    ("Plan tier", "plan_tier", "text", 1),
    ("Score", "score", "number", 1),
    ("Birthday", "birthday", "date", 1),
    ("Loyalty level", "loyalty_level", "text", 2),
];

pub(super) fn fields_of(generation: u32) -> Vec<Field> {
    let defaults = DEFAULT_FIELDS.iter().enumerate().map(|(i, &(name, key))| Field {
        id: Id(i as u64 + 1),
        name,
        key,
        kind: "text",
        is_default: true,
        used_in_automations: false,
    });
    let custom = CUSTOM_FIELDS.iter().enumerate().filter(|f| f.1 .3 <= generation).map(|(i, &(name, key, kind, _))| {
        Field { id: Id(947_151 + i as u64), name, key, kind, is_default: false, used_in_automations: i == 0 }
    });
    defaults.chain(custom).collect()
}
