//! `api2csv verify`: every file against `DIR/manifest.json`, after copying an export.

use std::path::PathBuf;

use lexopt::prelude::*;

use super::{help, lex, quiet_logging, say, usage};
use crate::error::{Error, Failure};

pub const USAGE: &str = "\
api2csv verify <DIR>

Checks every table file listed in DIR/manifest.json (written by each sync and
compact): its size and SHA-256. Exit status 0 when all match; 1 naming each file
that does not (copy it again); 2 when there is no usable manifest.
";

pub fn run(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let mut dir = None;
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return help(USAGE),
            Value(v) if dir.is_none() => dir = Some(PathBuf::from(v)),
            other => return Err(lex(other.unexpected()).into()),
        }
    }
    let dir = dir.ok_or_else(|| usage("verify: which directory?"))?;
    quiet_logging();
    let verified = crate::manifest::verify(&dir).map_err(|e| Error::dir(&dir, e.to_string()))?;
    for file in &verified.checked {
        if !verified.problems.iter().any(|p| &p.file == file) {
            say(&format!("{file}: ok\n"));
        }
    }
    if verified.problems.is_empty() {
        say(&format!("{} files match {}\n", verified.checked.len(), dir.join(crate::manifest::FILE_NAME).display()));
        return Ok(());
    }
    let (last, others) = verified.problems.split_last().expect("a problem");
    for p in others {
        log::error!("{}: {}", dir.join(&p.file).display(), p.detail);
    }
    let n = verified.problems.len();
    let detail =
        format!("{}; {n} of {} files do not match the manifest: copy them again", last.detail, verified.checked.len());
    Err(Failure { error: Error::Mismatch { path: dir.join(&last.file), detail }, wrote: false })
}
