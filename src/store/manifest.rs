//! `manifest.json`, the fingerprint of an output directory: per table file its size,
//! rows, columns and SHA-256.
//!
//! Exports are carried across air gaps; the manifest lets the receiving side prove a
//! copy arrived intact (`verify`) without trusting the medium. It is rewritten
//! atomically after every sync and compact, each time after `SHA256SUMS`, the same
//! digests (`state.json` included) for `sha256sum -c` on a machine without api2csv. Files are hashed by streaming them through
//! a fixed buffer, so memory stays constant whatever their size.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, ErrorKind};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::state::State;

pub const FILE_NAME: &str = "manifest.json";
/// The digests in the format of `sha256sum`, beside the manifest.
pub const SUMS_NAME: &str = "SHA256SUMS";
const VERSION: u32 = 1;
const BUFFER_SIZE: usize = 64 * 1024;

/// What one table file looked like when the manifest was written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub bytes: u64,
    /// Data rows, after the header, as the committed state counts them.
    pub rows: u64,
    pub columns: u64,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// CRC-32 of the same bytes, as `state.json` keeps it: a later manifest reuses
    /// the SHA-256 of a file whose length and CRC did not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
    /// CRC-32 of the entry's name, length, CRC-32 and SHA-256 together: a digest is
    /// reused only from an entry that proves it was written as it reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<u32>,
}

impl FileEntry {
    /// The proof of this entry of file `name`.
    fn proof_of(&self, name: &str) -> Option<u32> {
        let crc32 = self.crc32?;
        Some(crc32fast::hash(format!("{name}\0{}\0{crc32}\0{}", self.bytes, self.sha256).as_bytes()))
    }
}

/// What the writer of a manifest knows of a table file.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// Plain file name inside the directory.
    pub name: String,
    pub rows: u64,
    pub columns: u64,
    /// Length and CRC-32 of its committed bytes, from `state.json`.
    pub committed: Option<(u64, u32)>,
    /// Length and SHA-256 already computed while the file was written, if any.
    pub hashed: Option<(u64, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub connector: String,
    /// RFC 3339 UTC, whole seconds.
    pub written_at: String,
    /// Keyed by plain file name inside the output directory; a BTreeMap so the JSON
    /// lists them in a stable order that diffs well.
    pub files: BTreeMap<String, FileEntry>,
    /// `state.json` as it was when the manifest was written (absent from manifests
    /// written before api2csv kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Fingerprint>,
}

/// The size and SHA-256 of a file that is not a table file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fingerprint {
    pub bytes: u64,
    pub sha256: String,
}

/// The outcome of [`verify`]: `checked` lists every file the manifest names, in name
/// order; `problems` those that do not match, one per file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub checked: Vec<String>,
    pub problems: Vec<Problem>,
}

/// One file that does not match its manifest entry; displays as `file: detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.detail)
    }
}

/// Computes the entry of each file and writes `dir/manifest.json` atomically. A file
/// is hashed only if no SHA-256 is known for its bytes: not computed while it was
/// written, and not in the previous manifest with the same length and CRC-32 in an
/// entry whose proof holds (a digest edited or damaged in the manifest is not copied
/// on, it is computed again).
pub fn write(dir: &Path, connector: &str, files: &[Source]) -> Result<Manifest> {
    let path = dir.join(FILE_NAME);
    let previous = read(dir);
    let mut entries = BTreeMap::new();
    for f in files {
        check_name(&path, &f.name)?;
        let len = std::fs::metadata(dir.join(&f.name)).map(|m| m.len()).ok();
        let crc32 = f.committed.filter(|&(l, _)| Some(l) == len).map(|(_, c)| c);
        let known = f.hashed.clone().filter(|(l, _)| Some(*l) == len).or_else(|| {
            let old = previous.as_ref()?.files.get(&f.name)?;
            let proven = old.proof.is_some() && old.proof == old.proof_of(&f.name);
            (proven && crc32.is_some() && old.crc32 == crc32 && Some(old.bytes) == len)
                .then(|| (old.bytes, old.sha256.clone()))
        });
        let (sha256, bytes) = match known {
            Some((bytes, sha)) => (sha, bytes),
            None => hash_file(&dir.join(&f.name))?,
        };
        let mut entry = FileEntry { bytes, rows: f.rows, columns: f.columns, sha256, crc32, proof: None };
        entry.proof = entry.proof_of(&f.name);
        entries.insert(f.name.clone(), entry);
    }
    let manifest = Manifest {
        version: VERSION,
        connector: connector.to_string(),
        written_at: crate::page::timestamp::now(),
        files: entries,
        state: fingerprint(&dir.join(crate::store::state::FILE_NAME))?,
    };
    crate::store::fsio::write_atomic(&dir.join(SUMS_NAME), sums(&manifest).as_bytes())?;
    let mut json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serializes");
    json.push(b'\n');
    crate::store::fsio::write_atomic(&path, &json)?;
    Ok(manifest)
}

/// Writes `DIR/manifest.json` for the table files `state` describes, with the
/// SHA-256 already computed of some of them (`digests`).
pub fn write_for_state(dir: &Path, state: &State, digests: &[(std::path::PathBuf, u64, String)]) -> Result<()> {
    let files: Vec<Source> = state
        .tables
        .iter()
        .filter(|(_, t)| !t.file.is_empty())
        .map(|(name, t)| {
            let name = format!("{name}.csv");
            // The table file, or the rebuild of a full refresh renamed to it; the
            // manifest trusts a digest only if its length is the file's.
            let rebuilt = format!("{name}.refresh");
            let hashed = digests.iter().find(|(p, len, _)| {
                *len == t.file.file_len && p.file_name().is_some_and(|f| f == name.as_str() || f == rebuilt.as_str())
            });
            Source {
                rows: t.file.rows,
                columns: t.file.columns.len() as u64 + 2,
                committed: Some((t.file.file_len, t.file.crc)),
                hashed: hashed.map(|(_, len, sha)| (*len, sha.clone())),
                name,
            }
        })
        .collect();
    write(dir, &state.connector, &files).map(drop)
}

/// `SHA256SUMS`: one `<hex>  <name>` line per file, as `sha256sum` writes them.
fn sums(m: &Manifest) -> String {
    let state = m.state.as_ref().map(|s| (crate::store::state::FILE_NAME, &s.sha256));
    let files = m.files.iter().map(|(name, e)| (name.as_str(), &e.sha256)).chain(state);
    files.map(|(name, sha)| format!("{sha}  {name}\n")).collect()
}

/// The fingerprint of `path`, `None` if it does not exist.
fn fingerprint(path: &Path) -> Result<Option<Fingerprint>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        _ => hash_file(path).map(|(sha256, bytes)| Some(Fingerprint { bytes, sha256 })),
    }
}

/// Checks every file listed in `dir/manifest.json`: it exists, has the same size and
/// the same SHA-256; `state.json` too when the manifest holds it. A missing or unusable
/// manifest is an error; a mismatch is a [`Problem`].
pub fn verify(dir: &Path) -> Result<Verified> {
    let manifest = load(dir)?;
    let state = manifest.state.as_ref().map(|s| {
        let entry =
            FileEntry { bytes: s.bytes, rows: 0, columns: 0, sha256: s.sha256.clone(), crc32: None, proof: None };
        (crate::store::state::FILE_NAME.to_string(), entry)
    });
    let all: Vec<(String, FileEntry)> = manifest.files.into_iter().chain(state).collect();
    let problems = all.iter().filter_map(|(name, entry)| {
        check_file(&dir.join(name), entry).map(|detail| Problem { file: name.clone(), detail })
    });
    Ok(Verified { problems: problems.collect(), checked: all.iter().map(|(name, _)| name.clone()).collect() })
}

/// `dir/manifest.json` if there is a usable one.
pub fn read(dir: &Path) -> Option<Manifest> {
    load(dir).ok()
}

/// Lowercase hex SHA-256 of a file's bytes, read in constant memory.
#[cfg(test)]
fn sha256_file(path: &Path) -> Result<String> {
    hash_file(path).map(|(hex, _)| hex)
}

/// Reads and validates `dir/manifest.json`, names included, before any file is opened.
fn load(dir: &Path) -> Result<Manifest> {
    let path = dir.join(FILE_NAME);
    let text = std::fs::read(&path).map_err(|e| Error::io("read manifest", &path, e))?;
    parse(&path, &text)
}

/// Reads and validates the manifest text `bytes` read from `path`, names included.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Manifest> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| invalid(path, e.to_string()))?;
    if manifest.version != VERSION {
        return Err(invalid(path, format!("version {} is not supported (expected {VERSION})", manifest.version)));
    }
    for name in manifest.files.keys() {
        check_name(path, name)?;
    }
    Ok(manifest)
}

/// A hostile manifest must not make us read outside the directory, so only a single
/// plain component is accepted; both separators are refused on every platform because
/// an export may be verified on another system than the one that wrote it.
fn check_name(manifest: &Path, name: &str) -> Result<()> {
    let mut components = Path::new(name).components();
    let plain = matches!(components.next(), Some(Component::Normal(c)) if c == name) && components.next().is_none();
    if plain && !name.contains(['/', '\\', '\0']) {
        return Ok(());
    }
    Err(invalid(manifest, format!("file name {name:?} is not a plain name inside the directory")))
}

/// The manifest's content is wrong rather than unreadable; an io error of kind
/// InvalidData keeps the message `cannot use manifest <path>: <detail>`.
fn invalid(path: &Path, detail: String) -> Error {
    Error::io("use manifest", path, io::Error::new(ErrorKind::InvalidData, detail))
}

/// Compares one file with its entry; size first, so a truncated or grown file is not
/// hashed at all.
fn check_file(path: &Path, entry: &FileEntry) -> Option<String> {
    let len = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Some("is not a regular file".to_string()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Some("missing".to_string()),
        Err(e) => return Some(format!("cannot read: {e}")),
    };
    if len != entry.bytes {
        return Some(format!("has {len} bytes, the manifest says {}", entry.bytes));
    }
    // A file that changes while it is read shows up here as a different hash.
    match hash_file(path) {
        Ok((hex, _)) if !hex.eq_ignore_ascii_case(&entry.sha256) => Some("SHA-256 differs".to_string()),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// Streams a file through SHA-256; returns the hex digest and the number of bytes read.
/// `io::copy` hashes straight out of the BufReader's buffer, so memory stays at 64 KiB.
fn hash_file(path: &Path) -> Result<(String, u64)> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let total = io::copy(&mut BufReader::with_capacity(BUFFER_SIZE, file), &mut hasher)
        .map_err(|e| Error::io("read", path, e))?;
    Ok((format!("{:x}", hasher.finalize()), total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    fn tempdir(name: &str) -> PathBuf {
        crate::store::fsio::test_dir(&format!("manifest-{name}"))
    }

    /// A directory with two table files and their manifest.
    fn export(name: &str) -> PathBuf {
        let dir = tempdir(name);
        fs::write(dir.join("subscriber.csv"), "id,email\n1,a@example.com\n2,b@example.com\n").unwrap();
        fs::write(dir.join("group.csv"), "id,name\n7,news\n").unwrap();
        let source = |name: &str, rows, columns| Source { name: name.into(), rows, columns, ..Source::default() };
        let files = [source("subscriber.csv", 2, 2), source("group.csv", 1, 2)];
        write(&dir, "mailerlite", &files).unwrap();
        dir
    }

    fn problems(dir: &Path) -> Vec<String> {
        verify(dir).unwrap().problems.iter().map(Problem::to_string).collect()
    }

    #[test]
    fn round_trip_verifies() {
        let dir = export("round-trip");
        let text = fs::read_to_string(dir.join(FILE_NAME)).unwrap();
        assert!(text.starts_with("{\n  \"version\": 1,\n  \"connector\": \"mailerlite\",\n"), "{text}");
        let m: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(m.files["subscriber.csv"].bytes, 41);
        assert_eq!((m.files["group.csv"].rows, m.files["group.csv"].columns), (1, 2));
        assert_eq!(m.written_at.len(), "2026-11-27T16:45:03Z".len());
        let v = verify(&dir).unwrap();
        assert_eq!(v.checked, ["group.csv", "subscriber.csv"]);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }

    fn tamper(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = fs::read(path).unwrap();
        change(&mut bytes);
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn appended_byte_is_a_size_problem() {
        let dir = export("appended");
        tamper(&dir.join("group.csv"), |b| b.push(b'x'));
        assert_eq!(problems(&dir), ["group.csv: has 16 bytes, the manifest says 15"]);
    }

    #[test]
    fn flipped_byte_is_a_hash_problem() {
        let dir = export("flipped");
        tamper(&dir.join("subscriber.csv"), |b| b[10] ^= 0x01);
        assert_eq!(problems(&dir), ["subscriber.csv: SHA-256 differs"]);
    }

    #[test]
    fn deleted_file_is_missing() {
        let dir = export("deleted");
        fs::remove_file(dir.join("group.csv")).unwrap();
        assert_eq!(problems(&dir), ["group.csv: missing"]);
    }

    #[test]
    fn hostile_names_are_refused() {
        let dir = export("hostile");
        for name in ["../secret", "/etc/passwd", "sub/file.csv", "..", ".", "", "a\\b.csv"] {
            let entry = serde_json::json!({"bytes": 0, "rows": 0, "columns": 0, "sha256": ""});
            let m = serde_json::json!({"version": 1, "connector": "x", "written_at": "", "files": {name: entry}});
            fs::write(dir.join(FILE_NAME), m.to_string()).unwrap();
            let err = verify(&dir).unwrap_err().to_string();
            assert!(err.contains("manifest.json") && err.contains("not a plain name"), "{name:?}: {err}");
        }
        assert!(write(&dir, "x", &[Source { name: "../group.csv".into(), ..Source::default() }]).is_err());
    }

    #[test]
    fn sha256_test_vectors() {
        let dir = tempdir("vectors");
        fs::write(dir.join("empty"), b"").unwrap();
        fs::write(dir.join("abc"), b"abc").unwrap();
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&dir.join("empty")).unwrap(), empty);
        assert_eq!(sha256_file(&dir.join("abc")).unwrap(), abc);
    }

    #[test]
    fn known_hashes_are_reused_only_for_the_same_bytes() {
        let dir = tempdir("reuse");
        fs::write(dir.join("t.csv"), "id\n1\n").unwrap();
        let real = sha256_file(&dir.join("t.csv")).unwrap();
        let committed = Some((5, 42));
        // Hashed while written: taken as is when the length matches.
        let hashed = Source { name: "t.csv".into(), committed, hashed: Some((5, "feed".into())), ..Source::default() };
        assert_eq!(write(&dir, "x", &[hashed]).unwrap().files["t.csv"].sha256, "feed");
        // Same length and CRC as the last manifest: reused; another CRC: hashed anew.
        let same = Source { name: "t.csv".into(), committed, ..Source::default() };
        assert_eq!(write(&dir, "x", std::slice::from_ref(&same)).unwrap().files["t.csv"].sha256, "feed");
        let other = Source { committed: Some((5, 43)), ..same };
        assert_eq!(write(&dir, "x", &[other]).unwrap().files["t.csv"].sha256, real);
    }

    #[test]
    fn hashes_files_larger_than_the_buffer() {
        let dir = tempdir("large");
        let bytes: Vec<u8> = (0..3 * BUFFER_SIZE + 17).map(|i| (i % 251) as u8).collect();
        fs::write(dir.join("large"), &bytes).unwrap();
        assert_eq!(sha256_file(&dir.join("large")).unwrap(), format!("{:x}", Sha256::digest(&bytes)));
    }

    #[test]
    fn missing_or_invalid_manifest_is_an_error() {
        let dir = tempdir("invalid");
        let err = verify(&dir).unwrap_err().to_string();
        assert!(err.starts_with("cannot read manifest") && err.contains("manifest.json"), "{err}");
        fs::write(dir.join(FILE_NAME), b"{\"version\": 1, \"conn").unwrap();
        let err = verify(&dir).unwrap_err().to_string();
        assert!(err.starts_with("cannot use manifest") && err.contains("manifest.json"), "{err}");
    }
}
