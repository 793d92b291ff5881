//! `api2csv check`: the configuration validated, then one request to prove the credentials.

use std::path::PathBuf;

use lexopt::prelude::*;

use super::{connector_arg, help, lex, say, usage};
use crate::connector;
use crate::error::Failure;
use crate::term::logging::Verbosity;

pub const USAGE: &str = "\
api2csv check <connector> --config FILE

Validates the configuration (printing its warnings), then sends one request to prove
the credentials and says which account they belong to.
";

pub fn run(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let (mut def, mut config) = (None, None);
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return help(USAGE),
            Long("config") => config = Some(PathBuf::from(p.value().map_err(lex)?)),
            Value(v) if def.is_none() => def = Some(connector_arg(v)?),
            other => return Err(lex(other.unexpected()).into()),
        }
    }
    let def = def.ok_or_else(|| usage("check: which connector?"))?;
    let config = crate::config::load_logged(&def.requirements, config.as_deref(), Verbosity::Normal)?;
    for w in def.config_warnings(&config) {
        log::warn!("{w}");
    }
    let client = connector::client(def, &config, None);
    let checked = (def.build)(&config).check(&client)?;
    say(&format!("{}\n", checked.message));
    Ok(())
}
