//! `api2csv compact`: one row per primary key in every table file.

use super::{dir_arg, help, quiet_logging, say};
use crate::error::Failure;

pub const USAGE: &str = "\
api2csv compact <DIR>

Rewrites each table file in DIR to one row per primary key, the latest one, and drops
keys whose latest row is a tombstone (_deleted=true). Safe to interrupt. Writes
DIR/manifest.json.
";

pub fn run(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let Some(dir) = dir_arg(p, "compact")? else { return help(USAGE) };
    quiet_logging();
    // No handlers: a signal ends the process at once, which the replacement protocol makes safe.
    let interrupt = crate::term::signal::Interrupt::default();
    let (state, done) = crate::store::compact::run(&dir, &interrupt).map_err(|e| Failure { wrote: false, error: e })?;
    say(&crate::store::compact::summary(&done));
    crate::store::manifest::write_for_state(&dir, &state, &[]).map_err(|e| Failure { error: e, wrote: true })
}
