//! `api2csv repair`: set aside table files changed outside api2csv.

use super::{dir_arg, help, quiet_logging, say};
use crate::error::{Error, Failure};

pub const USAGE: &str = "\
api2csv repair <DIR>

For each table file changed outside api2csv (a spreadsheet re-save, an edited cell or
row, an added column, rows added at its end after a sync that ended), deleted, or
holding more than state.json commits (an older state.json put back): renames it to
<table>.csv.edited-<UTC time> (never deletes it) and marks the table for a full
rebuild by the next sync, from the start of its listing; the other tables stay
incremental. Also finishes an interrupted file replacement and removes leftover
temporary files. Prints what it did; says so when nothing needed repair.

A table file that state.json does not know is left alone: repair says what to do.
";

pub fn run(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let Some(dir) = dir_arg(p, "repair")? else { return help(USAGE) };
    quiet_logging();
    let repaired = crate::store::repair::run(&dir)?;
    for action in &repaired.actions {
        say(&format!("{action}\n"));
    }
    if repaired.actions.is_empty() && repaired.unresolved.is_empty() {
        say(&format!("nothing needed repair in {}\n", dir.display()));
    }
    let wrote = !repaired.actions.is_empty();
    match repaired.unresolved.split_last() {
        None => Ok(()),
        Some((last, others)) => {
            for line in others {
                log::error!("{line}");
            }
            Err(Failure { error: Error::Check(last.clone()), wrote })
        }
    }
}
