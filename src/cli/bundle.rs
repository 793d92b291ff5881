//! `api2csv bundle`: what changed in a sync directory since the mirror's manifest, as one file.

use std::path::PathBuf;

use lexopt::prelude::*;

use super::{help, lex, quiet_logging, say, usage};
use crate::bundle::{self, short, Carry};
use crate::error::Failure;

pub const USAGE: &str = "\
api2csv bundle <DIR> [--since MANIFEST] --out FILE

Writes FILE, one tar file (`tar tf FILE` lists it) with everything a mirror needs to
become byte-identical to DIR: `api2csv apply FILE DEST` on the other machine.

  --since MANIFEST   the mirror's DEST/manifest.json, carried back: each table file
                     that only grew since is carried as its new bytes, any other
                     file whole. Without it, a full bundle (every file whole), which
                     fits any mirror of DIR's account, or an empty directory.
  --out FILE         where to write the bundle (outside DIR)

Exit status: 0 written; 2 DIR, MANIFEST or FILE cannot be used (the line says why).
";

pub fn run(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let (mut dir, mut since, mut out) = (None, None, None);
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return help(USAGE),
            Long("since") => since = Some(PathBuf::from(p.value().map_err(lex)?)),
            Long("out") => out = Some(PathBuf::from(p.value().map_err(lex)?)),
            Value(v) if dir.is_none() => dir = Some(PathBuf::from(v)),
            other => return Err(lex(other.unexpected()).into()),
        }
    }
    let dir = dir.ok_or_else(|| usage("bundle: which directory?"))?;
    let out = out.ok_or_else(|| usage("bundle: --out FILE is required"))?;
    quiet_logging();
    let made = bundle::make::make(&dir, since.as_deref(), &out)?;
    let (mut appended, mut whole) = ((0, 0u64), (0, 0u64));
    for carry in &made.bundle.files {
        let counter = if matches!(carry, Carry::Append { .. }) { &mut appended } else { &mut whole };
        counter.0 += 1;
        counter.1 += carry.bytes();
    }
    let what = match &made.bundle.extends {
        Some(base) => format!("what changed since manifest {}", short(base)),
        None => "a full bundle".to_string(),
    };
    say(&format!(
        "wrote {} ({} bytes), {what}: {} files appended to ({} new bytes), {} carried whole ({} bytes)\n",
        out.display(),
        made.size,
        appended.0,
        appended.1,
        whole.0,
        whole.1
    ));
    Ok(())
}
