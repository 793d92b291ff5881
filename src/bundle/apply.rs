//! Applying a bundle to a mirror: everything is checked before the mirror changes.
//!
//! Read-only first: `bundle.json`, the mirror's source, the manifest the bundle
//! extends, and for each appended tail that the mirror's file is exactly the prefix
//! it extends (length and SHA-256). Then the archive is read once, each entry staged
//! into a hidden file of the mirror while its SHA-256 is checked; any misfit or
//! corruption removes what was staged and leaves the mirror as it was. Only when all
//! of it is staged and durable is the apply committed (see [`super::journal`]).

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use super::journal::{self, create_private, stage_path};
use super::mirror::{self, Dest, Marker};
use super::{hash_prefix, hex, short, Bundle, Carry, Hashing, BUFFER_SIZE, HEADER_LIMIT, HEADER_NAME};
use crate::error::{Error, Failure, Result};
use crate::store::fsio::{sync_dir, DirLock, LOCK_NAME};

type Entries<'a> = tar::Entries<'a, BufReader<File>>;

/// What `apply` did.
#[derive(Debug)]
pub struct Applied {
    pub bundle: Bundle,
    /// The mirror already held what the bundle carries: nothing was written.
    pub already: bool,
    /// An apply killed after it committed was finished first.
    pub finished_interrupted: bool,
}

/// Applies the bundle `file` to the mirror `dest` (created if missing).
pub fn apply(file: &Path, dest: &Path) -> std::result::Result<Applied, Failure> {
    let kind = mirror::inspect(dest, file)?;
    let (lock, finished_interrupted) = finish_pending(dest, &kind)?;
    let mut archive = open(file)?;
    let mut entries = archive.entries().map_err(|e| not_a_bundle(file, &brief(&e)))?;
    let bundle = read_header(&mut entries, file)?;
    let held = match &kind {
        Dest::Mirror(marker) => {
            if !marker.accepts(&bundle.source) {
                return Err(refuse(file, another_source(dest, marker, &bundle)).into());
            }
            held_manifest(dest)?
        }
        _ => None,
    };
    if held.as_deref() == Some(bundle.manifest.as_str()) {
        return Ok(Applied { bundle, already: true, finished_interrupted });
    }
    check_fit(file, dest, &bundle, held.as_deref())?;
    let created = matches!(kind, Dest::Missing);
    if created {
        create_dest(dest)?;
    }
    let lock_existed = dest.join(LOCK_NAME).exists();
    let lock = match lock {
        Some(l) => l,
        None => DirLock::acquire(dest)?,
    };
    journal::clean(dest)?;
    if let Err(e) = stage(&mut entries, &bundle, dest, file) {
        undo_staging(dest, created, lock_existed, lock);
        return Err(e.into());
    }
    commit(dest, &kind, &bundle)?;
    drop(lock);
    Ok(Applied { bundle, already: false, finished_interrupted })
}

/// Locks a mirror that has its lock file (which writes nothing), and finishes an
/// apply that was killed after it committed, whatever bundle comes now.
fn finish_pending(dest: &Path, kind: &Dest) -> std::result::Result<(Option<DirLock>, bool), Failure> {
    if !matches!(kind, Dest::Mirror(_)) {
        return Ok((None, false));
    }
    let mut lock = None;
    if dest.join(LOCK_NAME).exists() {
        lock = Some(DirLock::acquire(dest)?);
    }
    let Some(pending) = journal::pending(dest)? else { return Ok((lock, false)) };
    if lock.is_none() {
        lock = Some(DirLock::acquire(dest)?);
    }
    journal::finish(dest, &pending).map_err(resumable)?;
    Ok((lock, true))
}

/// Marks `dest` as a mirror of the bundle's source (keeping an account id the bundle
/// lacks), commits the apply and carries it out.
fn commit(dest: &Path, kind: &Dest, bundle: &Bundle) -> std::result::Result<(), Failure> {
    let mut source = bundle.source.clone();
    if let (Dest::Mirror(m), None) = (kind, &source.account) {
        source.account = m.source.account.clone();
    }
    let marker = Marker::new(source);
    if !matches!(kind, Dest::Mirror(m) if *m == marker) {
        marker.save(dest).map_err(resumable)?;
    }
    journal::commit(dest, bundle).map_err(resumable)?;
    journal::finish(dest, bundle).map_err(resumable)
}

/// An error once the mirror has changed: running `apply` again finishes the job.
fn resumable(e: Error) -> Failure {
    Failure { error: Error::Resumable(Box::new(e)), wrote: true }
}

/// A bundle that does not fit: one line naming it, exit status 2.
fn refuse(file: &Path, detail: String) -> Error {
    Error::dir(file, detail)
}

fn not_a_bundle(file: &Path, why: &str) -> Error {
    refuse(file, format!("not an api2csv bundle ({why})"))
}

/// The start of an error from reading the archive: the tar crate quotes raw header
/// bytes, and a refusal is one line.
fn brief(e: &io::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    let cut: String = line.chars().take(80).collect();
    let cut = cut.split(" when getting").next().unwrap_or_default().trim_end_matches([' ', ':', '{']);
    cut.to_string()
}

fn open(file: &Path) -> Result<tar::Archive<BufReader<File>>> {
    let f = File::open(file).map_err(|e| refuse(file, format!("cannot read the bundle: {e}")))?;
    Ok(tar::Archive::new(BufReader::with_capacity(BUFFER_SIZE, f)))
}

/// The next entry; a damaged archive is a corrupt bundle.
fn next_entry<'a>(entries: &mut Entries<'a>, file: &Path) -> Result<Option<tar::Entry<'a, BufReader<File>>>> {
    entries.next().transpose().map_err(|e| refuse(file, format!("the bundle is damaged: {}", brief(&e))))
}

/// Reads and checks `bundle.json`, the archive's first entry.
fn read_header(entries: &mut Entries, file: &Path) -> Result<Bundle> {
    let entry = entries.next().transpose().map_err(|_| not_a_bundle(file, "not a tar archive"))?;
    let Some(entry) = entry else { return Err(not_a_bundle(file, "no entries")) };
    let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    if path != HEADER_NAME || !entry.header().entry_type().is_file() || entry.size() > HEADER_LIMIT {
        return Err(not_a_bundle(file, &format!("its first entry is {path:?}, not {HEADER_NAME}")));
    }
    let mut bytes = Vec::new();
    entry
        .take(HEADER_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(file, format!("the bundle is damaged: {}", brief(&e))))?;
    Bundle::parse(&bytes).map_err(|why| not_a_bundle(file, &why))
}

/// SHA-256 of the mirror's `manifest.json`, if it has one.
fn held_manifest(dest: &Path) -> Result<Option<String>> {
    let path = dest.join(crate::store::manifest::FILE_NAME);
    match hash_prefix(&path, None) {
        Ok((hasher, _)) => Ok(Some(hex(hasher))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

fn another_source(dest: &Path, marker: &Marker, bundle: &Bundle) -> String {
    let who = |s: &super::Source| match &s.account {
        Some(crate::store::state::Account { id: Some(id), base_url }) => {
            format!("{} account {id} ({base_url})", s.connector)
        }
        Some(a) => format!("{} at {}", s.connector, a.base_url),
        None => s.connector.clone(),
    };
    format!(
        "it is an export of {}, but {} mirrors {}: apply it into another directory",
        who(&bundle.source),
        dest.display(),
        who(&marker.source)
    )
}

/// An incremental bundle fits only the mirror holding the manifest it extends, with
/// each appended file exactly the prefix it extends. A full bundle always fits.
fn check_fit(file: &Path, dest: &Path, bundle: &Bundle, held: Option<&str>) -> Result<()> {
    let Some(base) = &bundle.extends else { return Ok(()) };
    let remedy = "make a full bundle (`api2csv bundle DIR --out FILE`, without --since) and apply that";
    let Some(held) = held else {
        return Err(refuse(
            file,
            format!("it extends manifest {}, but {} holds no manifest.json: {remedy}", short(base), dest.display()),
        ));
    };
    if held != base {
        let detail = format!(
            "it extends manifest {}, but {} holds manifest {} (a bundle skipped or applied out of order, or a \
             bundle made --since another manifest): {remedy}",
            short(base),
            dest.display(),
            short(held)
        );
        return Err(refuse(file, detail));
    }
    // What DEST must hold: each file of its manifest as listed, and each file the
    // bundle appends to as the prefix it extends. A file the bundle replaces whole
    // is checked too: a mirror changed outside `apply` is refused, never papered over.
    let manifest_path = dest.join(crate::store::manifest::FILE_NAME);
    let text = fs::read(&manifest_path).map_err(|e| Error::io("read", &manifest_path, e))?;
    let held_files =
        crate::store::manifest::parse(&manifest_path, &text).map_err(|e| refuse(file, e.to_string()))?.files;
    let appended: Vec<(&str, u64, String)> = bundle
        .files
        .iter()
        .filter_map(|c| match c {
            Carry::Append { name, offset, prefix_sha256, .. } => Some((name.as_str(), *offset, prefix_sha256.clone())),
            Carry::Whole { .. } => None,
        })
        .collect();
    let listed = held_files
        .iter()
        .filter(|(name, _)| !appended.iter().any(|(a, ..)| a == name))
        .map(|(name, e)| (name.as_str(), e.bytes, e.sha256.to_ascii_lowercase()));
    for (name, bytes, sha256) in listed.chain(appended.iter().cloned()) {
        let path = dest.join(name);
        let fits = match hash_prefix(&path, None) {
            Ok((hasher, len)) => len == bytes && hex(hasher) == sha256,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        if !fits {
            let detail = format!(
                "{} is not the {bytes} bytes the bundle builds on (it changed since {} was written): {remedy}",
                path.display(),
                manifest_path.display()
            );
            return Err(refuse(file, detail));
        }
    }
    Ok(())
}

/// Creates the missing mirror directory (its last component only), durably.
fn create_dest(dest: &Path) -> Result<()> {
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir(dest).map_err(|e| Error::Usage(format!("{}: cannot create the directory: {e}", dest.display())))?;
    sync_dir(parent)
}

/// Stages every entry after `bundle.json` into `dest`, checking it as it is read.
fn stage(entries: &mut Entries, bundle: &Bundle, dest: &Path, file: &Path) -> Result<()> {
    let mut buf = vec![0u8; BUFFER_SIZE];
    for carry in &bundle.files {
        let want = carry.entry_path();
        let Some(entry) = next_entry(entries, file)? else {
            return Err(refuse(file, format!("the bundle is damaged: it ends before {want}")));
        };
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if path != want || !entry.header().entry_type().is_file() || entry.size() != carry.bytes() {
            let detail = format!(
                "the bundle is damaged: entry {path:?} is not the {want} of {} bytes that bundle.json lists",
                carry.bytes()
            );
            return Err(refuse(file, detail));
        }
        stage_one(entry, carry, &stage_path(dest, carry.name()), file, &mut buf)?;
    }
    if next_entry(entries, file)?.is_some() {
        return Err(refuse(file, "the bundle is damaged: it holds entries bundle.json does not list".into()));
    }
    sync_dir(dest)
}

/// Copies one entry into its staged file through `buf`, durably, checking its digest.
fn stage_one(entry: impl Read, carry: &Carry, staged: &Path, file: &Path, buf: &mut [u8]) -> Result<()> {
    let mut out = create_private(staged).map_err(|e| Error::io("create", staged, e))?;
    let mut reader = Hashing::new(entry);
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(refuse(file, format!("the bundle is damaged: {}", brief(&e)))),
        };
        out.write_all(&buf[..n]).map_err(|e| Error::io("write", staged, e))?;
    }
    out.sync_all().map_err(|e| Error::io("sync", staged, e))?;
    if reader.count != carry.bytes() || hex(reader.hasher) != carry.sha256() {
        let detail =
            format!("the bundle is damaged: {} does not have the SHA-256 bundle.json lists", carry.entry_path());
        return Err(refuse(file, detail));
    }
    Ok(())
}

/// After a refusal or failure while staging: the mirror as it was (a directory this
/// run created is removed again, and so is a lock file it created).
fn undo_staging(dest: &Path, created: bool, lock_existed: bool, lock: DirLock) {
    if let Err(e) = journal::clean(dest) {
        log::warn!("{e}");
    }
    if !lock_existed {
        let _ = fs::remove_file(dest.join(LOCK_NAME));
    }
    drop(lock);
    if created {
        let _ = fs::remove_dir(dest);
    }
}
