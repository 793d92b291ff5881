//! `api2csv tables`: a connector's tables, their primary keys and how each is read.

use lexopt::prelude::*;

use super::{connector_arg, help, lex, say, usage};
use crate::error::Failure;

pub const USAGE: &str = "\
api2csv tables <connector>

Lists the connector's tables, their primary keys and how each is read.
";

pub fn run(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let mut def = None;
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return help(USAGE),
            Value(v) if def.is_none() => def = Some(connector_arg(v)?),
            other => return Err(lex(other.unexpected()).into()),
        }
    }
    let def = def.ok_or_else(|| usage("tables: which connector?"))?;
    let mut s = String::new();
    for t in def.tables {
        s.push_str(&format!("{:<18} key {:<26} {}\n", t.name, t.primary_key.join(","), t.read_as));
    }
    say(&s);
    Ok(())
}
