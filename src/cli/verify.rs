//! `api2csv verify`: every file against `DIR/manifest.json`, after copying an export.
//!
//! For people and scripts alike: one line per file on stdout (`subscriber.csv: ok`,
//! `group.csv: FAILED: SHA-256 differs`), a file the manifest does not know named in a
//! warning, and the exit status.

use std::path::Path;

use super::{dir_arg, help, quiet_logging, say};
use crate::error::{Error, Failure};
use crate::store::manifest::{self, Verified};

pub const USAGE: &str = "\
api2csv verify <DIR>

Checks every table file listed in DIR/manifest.json (written by each sync and
compact), and state.json: its size and SHA-256. Prints one line per file on stdout,
`<file>: ok` or `<file>: FAILED: <why>`, and warns about files the manifest does not
know. Exit status 0 when all match; 1 when one does not (copy it again); 2 when there
is no usable manifest. DIR/SHA256SUMS holds the same digests for `sha256sum -c`.
";

pub fn run(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let Some(dir) = dir_arg(p, "verify")? else { return help(USAGE) };
    quiet_logging();
    // No usable manifest is a directory error (2), not a mismatch (1).
    let verified = manifest::verify(&dir).map_err(|e| Error::Check(e.to_string()))?;
    let mut lines = String::new();
    for file in &verified.checked {
        match verified.problems.iter().find(|p| &p.file == file) {
            Some(p) => lines.push_str(&format!("{file}: FAILED: {}\n", p.detail)),
            None => lines.push_str(&format!("{file}: ok\n")),
        }
    }
    say(&lines);
    for name in unexpected(&dir, &verified) {
        log::warn!(
            "{}: not in the manifest (not written by api2csv, or set aside by repair)",
            dir.join(name).display()
        );
    }
    let tables = verified.checked.iter().filter(|f| *f != crate::store::state::FILE_NAME).count();
    let manifest_path = dir.join(manifest::FILE_NAME);
    if verified.problems.is_empty() {
        let state = if tables < verified.checked.len() { ", and so does state.json" } else { "" };
        say(&format!("{tables} files match {}{state}\n", manifest_path.display()));
        return Ok(());
    }
    let names: Vec<String> = verified.problems.iter().map(|p| dir.join(&p.file).display().to_string()).collect();
    let detail = format!(
        "{} of {} files do not match {}: {}; copy them again",
        names.len(),
        verified.checked.len(),
        manifest_path.display(),
        names.join(", ")
    );
    Err(Failure { error: Error::Mismatch { path: "verify".into(), detail }, wrote: false })
}

/// The plain files in `dir` that neither the manifest nor api2csv's own files account
/// for: a stray copy, a file set aside by `repair`. Hidden files (the lock, journals,
/// a mirror's marker) are api2csv's.
fn unexpected(dir: &Path, verified: &Verified) -> Vec<String> {
    let own =
        [manifest::FILE_NAME, manifest::SUMS_NAME, crate::store::state::FILE_NAME, crate::engine::report::FILE_NAME];
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !own.contains(&n.as_str()) && !verified.checked.contains(n))
        .collect();
    names.sort();
    names
}
