//! `api2csv apply`: bring a mirror up to date from a bundle.

use std::path::PathBuf;

use lexopt::prelude::*;

use super::{help, lex, quiet_logging, say, usage};
use crate::bundle::{self, short, Carry};
use crate::error::Failure;

pub const USAGE: &str = "\
api2csv apply <FILE> <DEST>

Brings the mirror DEST (created if missing) up to date from the bundle FILE that
`api2csv bundle` wrote, so that DEST is byte-identical to the sync directory the
bundle was made of (`api2csv verify DEST` passes). Everything is checked before DEST
changes: the bundle's own SHA-256s, that DEST mirrors the same account, and (unless
the bundle is a full one) that DEST holds exactly the manifest and bytes the bundle
extends. Safe to interrupt: run the same command again.
Applying the same bundle again does nothing. Carry DEST/manifest.json back for the
next `api2csv bundle DIR --since MANIFEST`.

Exit status: 0 applied (or already applied); 1 a write failed: run the same command
again to finish; 2 the bundle does not fit DEST (skipped, another account, DEST
changed, damaged, not a bundle): DEST is unchanged, make a full bundle.
";

pub fn run(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let (mut file, mut dest) = (None, None);
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return help(USAGE),
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            Value(v) if dest.is_none() => dest = Some(PathBuf::from(v)),
            other => return Err(lex(other.unexpected()).into()),
        }
    }
    let (Some(file), Some(dest)) = (file, dest) else {
        return Err(usage("apply: which bundle, into which directory?").into());
    };
    quiet_logging();
    let applied = bundle::apply::apply(&file, &dest)?;
    if applied.finished_interrupted {
        say(&format!("finished the interrupted apply in {}\n", dest.display()));
    }
    if applied.already {
        say(&format!(
            "{} is already applied to {} (manifest {}): nothing to do\n",
            file.display(),
            dest.display(),
            short(&applied.bundle.manifest)
        ));
        return Ok(());
    }
    let (mut appended, mut whole) = ((0, 0u64), (0, 0u64));
    for carry in &applied.bundle.files {
        let counter = if matches!(carry, Carry::Append { .. }) { &mut appended } else { &mut whole };
        counter.0 += 1;
        counter.1 += carry.bytes();
    }
    say(&format!(
        "applied {} to {}: {} files appended to ({} bytes), {} replaced whole ({} bytes); manifest {}\n",
        file.display(),
        dest.display(),
        appended.0,
        appended.1,
        whole.0,
        whole.1,
        short(&applied.bundle.manifest)
    ));
    Ok(())
}
