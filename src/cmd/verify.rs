//! `api2csv verify`: every file against `DIR/manifest.json`, after copying an export.

use super::{dir_arg, help, quiet_logging, say};
use crate::error::{Error, Failure};

pub const USAGE: &str = "\
api2csv verify <DIR>

Checks every table file listed in DIR/manifest.json (written by each sync and
compact): its size and SHA-256. Exit status 0 when all match; 1 naming each file
that does not (copy it again); 2 when there is no usable manifest.
";

pub fn run(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let Some(dir) = dir_arg(p, "verify")? else { return help(USAGE) };
    quiet_logging();
    // No usable manifest is a directory error (2), not a mismatch (1).
    let verified = crate::manifest::verify(&dir).map_err(|e| Error::dir(std::path::Path::new(""), e.to_string()))?;
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
