//! Writing a bundle of a sync directory: everything a mirror that holds the received
//! manifest needs to become byte-identical to the directory.
//!
//! A table file whose first bytes are still those the received manifest describes
//! (proven by hashing them here) is carried as its new bytes; any other file whole.
//! Each carried byte is read once, hashed on its way into the archive, and a table
//! file's digest is checked against the directory's own manifest, so a bundle never
//! carries what `verify` would refuse. `bundle.json` comes first in the archive but
//! holds digests known only at the end: it is written with placeholder digests of the
//! same length, and overwritten in place once the archive is complete.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::journal::create_private;
use super::{hash_prefix, hex, Bundle, Carry, Hashing, Source, BUFFER_SIZE, FORMAT, HEADER_NAME, VERSION};
use crate::error::{Error, Result};
use crate::store::fsio::{rename_durably, with_suffix, DirLock};
use crate::store::manifest::{self, FileEntry, Manifest};
use crate::store::state::State;

/// The files every sync directory has, carried last and whole, in this order.
const METADATA: [&str; 3] = [crate::store::state::FILE_NAME, manifest::FILE_NAME, crate::engine::report::FILE_NAME];

/// One file to carry, as planned before the archive is written.
struct Plan {
    carry: Carry,
    path: PathBuf,
    /// The digest the whole file must have (from the directory's manifest).
    expect: Option<String>,
    /// The hash of the bytes before an appended tail, to be continued over the tail.
    prefix: Option<Sha256>,
}

/// A bundle written, and its size in bytes.
pub struct Made {
    pub bundle: Bundle,
    pub size: u64,
}

/// Writes the bundle of `dir` to `out`: full, or what changed since the manifest
/// `since` (the mirror's, carried back).
pub fn make(dir: &Path, since: Option<&Path>, out: &Path) -> Result<Made> {
    let state = State::load(dir)?
        .ok_or_else(|| Error::dir(dir, "there is no state.json here: is it an api2csv output directory?"))?;
    check_out(dir, out)?;
    let _lock = lock(dir)?;
    if let Some(run) = &state.run {
        let detail =
            format!("a sync started at {} has not finished: run it again to finish it, then bundle", run.started_at);
        return Err(Error::dir(dir, detail));
    }
    let manifest_path = dir.join(manifest::FILE_NAME);
    let manifest_bytes = fs::read(&manifest_path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::dir(dir, "there is no manifest.json here: a sync or compact writes it"),
        _ => Error::io("read", &manifest_path, e),
    })?;
    let manifest = manifest::parse(&manifest_path, &manifest_bytes)?;
    let received = since.map(|p| received(p, &state)).transpose()?;
    let mut plans = Vec::new();
    for (name, entry) in &manifest.files {
        plans.push(plan_table(dir, name, entry, received.as_ref().map(|r| &r.1))?);
    }
    for name in other_files(dir, &manifest)? {
        plans.push(plan_whole(dir, &name, None)?);
    }
    let manifest_sha = hex(Sha256::new_with_prefix(&manifest_bytes));
    for name in METADATA {
        if name == crate::engine::report::FILE_NAME && !dir.join(name).exists() {
            continue;
        }
        let expect = (name == manifest::FILE_NAME).then(|| manifest_sha.clone());
        plans.push(plan_whole(dir, name, expect)?);
    }
    let bundle = Bundle {
        format: FORMAT.into(),
        version: VERSION,
        written_at: crate::page::timestamp::now(),
        source: Source { connector: state.connector.clone(), account: state.account.clone() },
        extends: received.map(|(sha, _)| sha),
        manifest: manifest_sha,
        files: plans.iter().map(|p| p.carry.clone()).collect(),
    };
    write(out, bundle, &plans)
}

/// The bundle goes elsewhere than `dir`: a bundle inside it would be carried by the next.
fn check_out(dir: &Path, out: &Path) -> Result<()> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (fs::canonicalize(parent), fs::canonicalize(dir)) {
        (Ok(p), Ok(d)) if p == d => {
            Err(Error::Usage(format!("--out {}: write the bundle outside {}", out.display(), dir.display())))
        }
        (Err(e), _) => Err(Error::Usage(format!("--out {}: {e}", out.display()))),
        _ => Ok(()),
    }
}

/// The directory's lock, so that no sync changes it while it is read. A directory
/// that cannot hold a lock file (read-only media) is read without: the digests
/// checked against its manifest still prove what was read.
fn lock(dir: &Path) -> Result<Option<DirLock>> {
    match DirLock::acquire(dir) {
        Ok(lock) => Ok(Some(lock)),
        Err(e @ Error::Locked { .. }) => Err(e),
        Err(_) => Ok(None),
    }
}

/// The received manifest: its SHA-256 and what it lists.
fn received(path: &Path, state: &State) -> Result<(String, Manifest)> {
    let refuse = |detail: String| Error::dir(path, detail);
    let bytes = fs::read(path).map_err(|e| refuse(format!("cannot read the received manifest: {e}")))?;
    let manifest = manifest::parse(path, &bytes).map_err(|e| Error::Check(e.to_string()))?;
    if manifest.connector != state.connector {
        let detail = format!(
            "is the manifest of a {} export, not {}: bring back the mirror's",
            manifest.connector, state.connector
        );
        return Err(refuse(detail));
    }
    Ok((hex(Sha256::new_with_prefix(&bytes)), manifest))
}

/// A table file: its new bytes if it only grew since `received`, else whole.
fn plan_table(dir: &Path, name: &str, entry: &FileEntry, received: Option<&Manifest>) -> Result<Plan> {
    let path = dir.join(name);
    let len = match fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::dir(&path, "is listed in manifest.json but missing: sync again, then bundle"))
        }
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    if len != entry.bytes {
        let detail = format!(
            "has {len} bytes, manifest.json says {}: finish the sync (or run `api2csv verify {}`), then bundle",
            entry.bytes,
            dir.display()
        );
        return Err(Error::dir(&path, detail));
    }
    let expect = Some(entry.sha256.to_ascii_lowercase());
    let placeholder = "0".repeat(64);
    if let Some(old) = received.and_then(|m| m.files.get(name)).filter(|old| old.bytes <= len) {
        let (hasher, read) = hash_prefix(&path, Some(old.bytes)).map_err(|e| Error::io("read", &path, e))?;
        let prefix_sha256 = old.sha256.to_ascii_lowercase();
        if read == old.bytes && hex(hasher.clone()) == prefix_sha256 {
            let carry = Carry::Append {
                name: name.into(),
                offset: old.bytes,
                prefix_sha256,
                bytes: len - old.bytes,
                sha256: placeholder,
            };
            return Ok(Plan { carry, path, expect, prefix: Some(hasher) });
        }
    }
    let carry = Carry::Whole { name: name.into(), bytes: len, sha256: placeholder };
    Ok(Plan { carry, path, expect, prefix: None })
}

fn plan_whole(dir: &Path, name: &str, expect: Option<String>) -> Result<Plan> {
    let path = dir.join(name);
    let bytes = fs::metadata(&path).map(|m| m.len()).map_err(|e| Error::io("read", &path, e))?;
    let carry = Carry::Whole { name: name.into(), bytes, sha256: "0".repeat(64) };
    Ok(Plan { carry, path, expect, prefix: None })
}

/// The other regular, visible files of `dir` (a `SHA256SUMS`, say), by name; not the
/// side files of a replacement under way or the files `repair` set aside.
fn other_files(dir: &Path, manifest: &Manifest) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        let known = manifest.files.contains_key(&name) || METADATA.contains(&name.as_str());
        if regular && !known && super::is_plain(&name) && !is_side_file(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn is_side_file(name: &str) -> bool {
    [".tmp", ".new", ".refresh"].iter().any(|s| name.ends_with(s)) || name.contains(".edited-")
}

/// Writes the archive to a temp file beside `out`, then renames it into place.
fn write(out: &Path, mut bundle: Bundle, plans: &[Plan]) -> Result<Made> {
    let tmp = with_suffix(out, ".tmp");
    let file = create_private(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    let written = write_archive(file, &tmp, &mut bundle, plans);
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    let size = written?;
    rename_durably(&tmp, out)?;
    Ok(Made { bundle, size })
}

fn write_archive(file: File, tmp: &Path, bundle: &mut Bundle, plans: &[Plan]) -> Result<u64> {
    let io_err = |e| Error::io("write", tmp, e);
    let placeholder = bundle.to_bytes();
    let mut builder = tar::Builder::new(BufWriter::with_capacity(BUFFER_SIZE, file));
    append(&mut builder, HEADER_NAME, placeholder.len() as u64, &placeholder[..]).map_err(io_err)?;
    for (carry, plan) in bundle.files.iter_mut().zip(plans) {
        *carry.sha256_mut() = carry_one(&mut builder, plan, tmp)?;
    }
    let mut file = builder.into_inner().and_then(|w| w.into_inner().map_err(|e| e.into_error())).map_err(io_err)?;
    let header = bundle.to_bytes();
    assert_eq!(header.len(), placeholder.len(), "digests have a fixed length");
    // A short path needs no extension header: the first entry's data starts at 512.
    file.seek(SeekFrom::Start(512)).and_then(|_| file.write_all(&header)).map_err(io_err)?;
    file.sync_all().map_err(|e| Error::io("sync", tmp, e))?;
    file.metadata().map(|m| m.len()).map_err(io_err)
}

/// Streams one planned file into the archive; returns the SHA-256 of what it carried.
fn carry_one(builder: &mut tar::Builder<BufWriter<File>>, plan: &Plan, tmp: &Path) -> Result<String> {
    let offset = match &plan.carry {
        Carry::Append { offset, .. } => *offset,
        Carry::Whole { .. } => 0,
    };
    let bytes = plan.carry.bytes();
    let mut file = File::open(&plan.path).map_err(|e| Error::io("open", &plan.path, e))?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek", &plan.path, e))?;
    let mut reader = Hashing::new(BufReader::with_capacity(BUFFER_SIZE, file).take(bytes));
    reader.whole = plan.prefix.clone();
    append(builder, &plan.carry.entry_path(), bytes, &mut reader).map_err(|e| Error::io("write", tmp, e))?;
    if reader.count != bytes {
        return Err(Error::dir(&plan.path, "shrank while it was being bundled"));
    }
    let sha = hex(std::mem::take(&mut reader.hasher));
    let whole = reader.whole.take().map_or_else(|| sha.clone(), hex);
    if plan.expect.as_ref().is_some_and(|e| *e != whole) {
        let detail = "does not match manifest.json (changed since the last sync wrote it): run `api2csv verify` on the directory";
        return Err(Error::dir(&plan.path, detail));
    }
    Ok(sha)
}

/// One regular entry of `bytes` read from `data`, owner-only like the files it holds.
fn append(builder: &mut tar::Builder<BufWriter<File>>, path: &str, bytes: u64, data: impl Read) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(bytes);
    header.set_mode(0o600);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    header.set_mtime(now);
    builder.append_data(&mut header, path, data)
}
