//! The commit point of an apply, and how a committed apply is finished.
//!
//! Every file a bundle carries is first staged in the mirror under a hidden name,
//! checked and made durable. Then `bundle.json` is written into the journal
//! `.api2csv-apply.json` (temp file, fsync, rename, directory fsync): from that
//! instant the apply is committed. [`finish`] then appends each staged tail (cut back
//! to its offset first, so a half-done append is redone, never doubled) and renames
//! each staged whole file over its target, fsyncing as it goes, and removes the journal
//! last. Every step can be redone: killed at any instant, the next `apply` finds the
//! journal and finishes it, or finds staged files and no journal and removes them
//! (the mirror is then as it was).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{hash_prefix, hex, Bundle, Carry, Hashing, BUFFER_SIZE};
use crate::error::{Error, Result};
use crate::store::fsio::{remove_if_present, rename_durably, sync_dir, tmp_path, write_atomic};

pub const JOURNAL: &str = ".api2csv-apply.json";
const STAGE_PREFIX: &str = ".api2csv-stage.";

/// Where the file `name` of a bundle is staged in `dest`.
pub fn stage_path(dest: &Path, name: &str) -> PathBuf {
    dest.join(format!("{STAGE_PREFIX}{name}"))
}

/// Creates (or empties) a file readable by its owner only: exports hold personal data.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Commits the apply of `bundle`, whose files are all staged and durable in `dest`.
pub fn commit(dest: &Path, bundle: &Bundle) -> Result<()> {
    write_atomic(&dest.join(JOURNAL), &bundle.to_bytes())
}

/// The bundle of an apply committed in `dest` and not finished, if any.
pub fn pending(dest: &Path) -> Result<Option<Bundle>> {
    let path = dest.join(JOURNAL);
    match fs::read(&path) {
        Ok(bytes) => Bundle::parse(&bytes).map(Some).map_err(|detail| Error::State { path, detail }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

/// Removes what an apply that never committed left in `dest`: staged files and temp
/// files. Returns how many there were.
pub fn clean(dest: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dest).map_err(|e| Error::io("list", dest, e))? {
        let name = entry.map_err(|e| Error::io("list", dest, e))?.file_name();
        if name.to_string_lossy().starts_with(STAGE_PREFIX) {
            removed += usize::from(remove_if_present(&dest.join(&name))?);
        }
    }
    for temp in [JOURNAL, super::mirror::MARKER] {
        removed += usize::from(remove_if_present(&tmp_path(&dest.join(temp)))?);
    }
    if removed > 0 {
        sync_dir(dest)?;
    }
    Ok(removed)
}

/// Carries out the committed apply of `bundle` in `dest`, wherever a previous attempt
/// stopped, then removes its staged files and the journal.
pub fn finish(dest: &Path, bundle: &Bundle) -> Result<()> {
    for carry in &bundle.files {
        match carry {
            Carry::Append { name, offset, bytes, sha256, .. } => append(dest, name, *offset, *bytes, sha256)?,
            Carry::Whole { name, bytes, sha256 } => whole(dest, name, *bytes, sha256)?,
        }
    }
    for carry in &bundle.files {
        remove_if_present(&stage_path(dest, carry.name()))?;
    }
    sync_dir(dest)?;
    remove_if_present(&dest.join(JOURNAL))?;
    sync_dir(dest)
}

/// Makes `dest/name` its first `offset` bytes followed by the staged tail.
fn append(dest: &Path, name: &str, offset: u64, bytes: u64, sha256: &str) -> Result<()> {
    let target = dest.join(name);
    let len = match fs::metadata(&target) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io("read", &target, e)),
    };
    if len < offset || len > offset + bytes {
        let detail = format!(
            "has {len} bytes, apply expected {offset} to {}: it was changed while a bundle was being applied",
            offset + bytes
        );
        return Err(Error::dir(&target, detail));
    }
    if len == offset + bytes && tail_sha(&target, offset)? == sha256 {
        return Ok(());
    }
    let staged = stage_path(dest, name);
    let source = File::open(&staged).map_err(|e| Error::io("open", &staged, e))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&target)
        .map_err(|e| Error::io("open", &target, e))?;
    file.set_len(offset).map_err(|e| Error::io("truncate", &target, e))?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek", &target, e))?;
    let mut reader = Hashing::new(BufReader::with_capacity(BUFFER_SIZE, source));
    let mut out = BufWriter::with_capacity(BUFFER_SIZE, &mut file);
    io::copy(&mut reader, &mut out).map_err(|e| Error::io("append to", &target, e))?;
    out.flush().map_err(|e| Error::io("write", &target, e))?;
    drop(out);
    if reader.count != bytes || hex(reader.hasher) != sha256 {
        return Err(Error::dir(&staged, "the staged bytes changed after they were checked"));
    }
    file.sync_all().map_err(|e| Error::io("sync", &target, e))
}

/// SHA-256 of the bytes of `path` from `offset` on.
fn tail_sha(path: &Path, offset: u64) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek", path, e))?;
    let mut reader = Hashing::new(BufReader::with_capacity(BUFFER_SIZE, file));
    io::copy(&mut reader, &mut io::sink()).map_err(|e| Error::io("read", path, e))?;
    Ok(hex(reader.hasher))
}

/// Renames the staged `name` over `dest/name`, unless that happened before a crash.
fn whole(dest: &Path, name: &str, bytes: u64, sha256: &str) -> Result<()> {
    let staged = stage_path(dest, name);
    let target = dest.join(name);
    if staged.exists() {
        return rename_durably(&staged, &target);
    }
    let held = hash_prefix(&target, None).ok().map(|(hasher, len)| (hex(hasher), len));
    if held.is_some_and(|(sha, len)| len == bytes && sha == sha256) {
        return Ok(());
    }
    Err(Error::dir(&target, "neither it nor its staged copy holds what the bundle carries"))
}
