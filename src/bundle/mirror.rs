//! A mirror: a directory written only by `apply`, byte-identical to a sync directory
//! as of the last bundle. A hidden marker file says so and names the source it
//! mirrors; `sync` and `compact` refuse a directory that has it, since a mirror they
//! changed would no longer fit the next bundle.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Source;
use crate::error::{Error, Result};

/// The marker's file name; a copy of the mirror (`cp -a`) carries it along.
pub const MARKER: &str = ".api2csv-mirror";
const FORMAT: &str = "api2csv-mirror";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Marker {
    pub format: String,
    pub version: u32,
    pub source: Source,
}

/// What a destination directory is before `apply` writes to it.
#[derive(Debug)]
pub enum Dest {
    /// Not there: `apply` creates it (its last component only).
    Missing,
    /// A directory with nothing in it but hidden files.
    Empty,
    Mirror(Marker),
}

impl Marker {
    pub fn new(source: Source) -> Marker {
        Marker { format: FORMAT.into(), version: VERSION, source }
    }

    /// Writes the marker into `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).expect("a marker always serializes");
        json.push(b'\n');
        crate::store::fsio::write_atomic(&dir.join(MARKER), &json)
    }

    /// Whether a bundle of `source` may be applied to this mirror: the same connector,
    /// and the same account id once both know it, as `sync` decides it (a directory
    /// adopts its account id on its first sync that reveals one; the base URL may move).
    pub fn accepts(&self, source: &Source) -> bool {
        self.source.connector == source.connector
            && match (&self.source.account, &source.account) {
                (Some(a), Some(b)) => a.same_as(b),
                _ => true,
            }
    }
}

/// Whether `dir` is a mirror: `sync` and `compact` ask before writing anything.
pub fn is_mirror(dir: &Path) -> bool {
    dir.join(MARKER).exists()
}

/// The refusal of `sync` or `compact` into the mirror `dir`.
pub fn refusal(dir: &Path) -> Error {
    let detail = format!(
        "is a mirror kept by `api2csv apply` (it has {MARKER}): only apply may change it, or the next \
         bundle would not fit; compact a copy instead (`cp {0}/*.csv {0}/*.json COPY/` leaves the marker behind)",
        dir.display()
    );
    Error::dir(dir, detail)
}

/// Looks at `dest` without changing it. A directory holding visible files but no
/// marker is not ours to write: refused naming the bundle `file`.
pub fn inspect(dest: &Path, file: &Path) -> Result<Dest> {
    let refuse = |detail: String| Error::dir(file, detail);
    if !dest.exists() {
        return Ok(Dest::Missing);
    }
    if !dest.is_dir() {
        return Err(refuse(format!("cannot apply to {}: it is not a directory", dest.display())));
    }
    let marker_path = dest.join(MARKER);
    match std::fs::read(&marker_path) {
        Ok(bytes) => {
            let marker: Marker = serde_json::from_slice(&bytes)
                .ok()
                .filter(|m: &Marker| m.format == FORMAT && m.version == VERSION)
                .ok_or_else(|| refuse(format!("cannot apply to {}: its {MARKER} is unreadable", dest.display())))?;
            return Ok(Dest::Mirror(marker));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("read", &marker_path, e)),
    }
    let entries = std::fs::read_dir(dest).map_err(|e| Error::io("list", dest, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dest, e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            return Err(refuse(format!(
                "cannot apply to {}: it holds files and is not a mirror written by apply; apply into an empty \
                 or new directory",
                dest.display()
            )));
        }
    }
    Ok(Dest::Empty)
}
