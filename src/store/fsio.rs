//! Durable file-system steps: atomic replacement, directory fsync, the directory
//! lock, and creating the output directory.
//!
//! A file replaced "atomically" is written to a temp file in the same directory
//! (a rename across file systems is not atomic), fsynced, renamed over the target,
//! and then the directory is fsynced so the rename itself survives a power cut
//! (cargo-util's `paths.rs` explains the same sequence).
//!
//! Every file and directory api2csv creates is its owner's only (0600, 0700): exports
//! hold e-mail addresses. `API2CSV_FILE_MODE` (octal, `0640`) widens that for a group
//! that reads the export; the umask still narrows whatever is asked.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The environment variable that widens the mode of the files api2csv creates.
pub const MODE_VAR: &str = "API2CSV_FILE_MODE";

/// The permission bits of a file api2csv creates: 0600 unless [`MODE_VAR`] says
/// otherwise. A value that is not an octal mode is ignored with a warning, never a
/// reason to write files wider than asked.
pub fn file_mode() -> u32 {
    static MODE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| {
        let Some(v) = std::env::var_os(MODE_VAR) else { return 0o600 };
        match parse_mode(&v.to_string_lossy()) {
            Some(mode) => mode,
            None => {
                log::warn!("{MODE_VAR}={v:?} is not an octal file mode like 0640: files are created 0600");
                0o600
            }
        }
    })
}

fn parse_mode(v: &str) -> Option<u32> {
    u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o666 && m & 0o600 == 0o600)
}

/// The mode of a directory api2csv creates: the file mode, searchable where readable.
#[cfg(unix)]
fn dir_mode() -> u32 {
    let mode = file_mode();
    mode | (mode & 0o444) >> 2
}

/// Options that create a file with [`file_mode`].
#[cfg(unix)]
pub fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, file_mode());
    options
}

/// Elsewhere a file gets the system's default permissions.
#[cfg(not(unix))]
pub fn private_options() -> OpenOptions {
    OpenOptions::new()
}

/// A builder that creates a directory searchable by whom [`file_mode`] lets read.
#[cfg(unix)]
fn dir_builder() -> fs::DirBuilder {
    let mut builder = fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, dir_mode());
    builder
}

#[cfg(not(unix))]
fn dir_builder() -> fs::DirBuilder {
    fs::DirBuilder::new()
}

/// Creates (or truncates) `path` for writing, with [`file_mode`].
pub fn create_private(path: &Path) -> std::io::Result<File> {
    private_options().write(true).create(true).truncate(true).open(path)
}

/// Writes `bytes` to `path` through a temp file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = create_private(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
    drop(f);
    rename_durably(&tmp, path)
}

/// Renames within one directory, then fsyncs the directory.
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io("rename", from, e))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// Makes the entries of `dir` (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("sync directory", dir, e))
}

/// `path` with `.tmp` appended: where [`write_atomic`] stages it.
pub fn tmp_path(path: &Path) -> PathBuf {
    with_suffix(path, ".tmp")
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Removes `path` if it exists.
pub fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Creates the output directory `dir` if it is missing: only its last component,
/// so a typo in a parent (`/srv/exprots/ml`) is an error rather than a new tree.
/// The new entry is made durable in its parent. True if it was created.
pub fn create_out_dir(dir: &Path) -> Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    if dir.exists() {
        return Err(Error::Usage(format!("--out {}: exists and is not a directory", dir.display())));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if parent.exists() && !parent.is_dir() {
        return Err(Error::Usage(format!(
            "--out {}: its parent {} is not a directory",
            dir.display(),
            parent.display()
        )));
    }
    if !parent.is_dir() {
        return Err(Error::Usage(format!(
            "--out {}: its parent {} does not exist (api2csv creates only the last component)",
            dir.display(),
            parent.display()
        )));
    }
    dir_builder()
        .create(dir)
        .map_err(|e| Error::Usage(format!("--out {}: cannot create the directory: {e}", dir.display())))?;
    sync_dir(parent)?;
    Ok(true)
}

/// An exclusive lock on an output directory, held until dropped. The kernel releases
/// it when the process dies, so a lock left by `kill -9` never blocks the next run.
/// The lock file stays empty: a refused run leaves the directory byte for byte as it was.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

pub const LOCK_NAME: &str = ".api2csv.lock";

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_NAME);
        let file =
            private_options().create(true).truncate(false).write(true).open(&path).map_err(|e| {
                Error::dir(dir, format!("cannot write in this directory: cannot create {LOCK_NAME}: {e}"))
            })?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::Locked { path }),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }
}

/// An empty directory for a unit test, under the system's temp directory; `name`
/// (which starts with the test's module) keeps tests of one process apart.
#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("api2csv-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn tempdir(name: &str) -> PathBuf {
        test_dir(&format!("fsio-{name}"))
    }

    #[test]
    fn second_lock_is_refused_until_released() {
        let dir = tempdir("lock");
        let first = DirLock::acquire(&dir).unwrap();
        assert!(matches!(DirLock::acquire(&dir), Err(Error::Locked { .. })));
        drop(first);
        DirLock::acquire(&dir).unwrap();
        assert_eq!(fs::read(dir.join(LOCK_NAME)).unwrap(), b"");
    }

    #[test]
    fn out_dir_creates_only_its_last_component() {
        let dir = tempdir("out");
        assert!(create_out_dir(&dir.join("a")).unwrap());
        assert!(!create_out_dir(&dir.join("a")).unwrap());
        let err = create_out_dir(&dir.join("missing/b")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert_eq!(err.exit_status(), 2);
        assert!(!dir.join("missing").exists());
    }

    #[test]
    fn modes_are_octal_and_never_hide_a_file_from_its_owner() {
        assert_eq!(parse_mode("0640"), Some(0o640));
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!([parse_mode("0400"), parse_mode("rw"), parse_mode("0777"), parse_mode("")], [None; 4]);
    }

    #[cfg(unix)]
    #[test]
    fn created_files_are_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir("mode");
        let p = dir.join("x.json");
        write_atomic(&p, b"{}").unwrap();
        assert!(create_out_dir(&dir.join("out")).unwrap());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        if std::env::var_os(MODE_VAR).is_none() {
            assert_eq!((mode(&p), mode(&dir.join("out"))), (0o600, 0o700));
        }
    }

    #[test]
    fn atomic_writes_replace_whole() {
        let dir = tempdir("atomic");
        let p = dir.join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
    }
}
