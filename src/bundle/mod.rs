//! Bundles: an export carried across an air gap one file per sync. This module holds
//! the format, `bundle.json`, the typed table of contents that opens every bundle.
//!
//! A bundle is a plain tar archive (`tar tf` lists it): `bundle.json` first, then one
//! entry per file in the order `bundle.json` lists them: the new bytes of a table file
//! that only grew (`append/<name>`), or a whole file (`<name>`), ending with
//! `state.json`, `manifest.json` and `last_sync.json`. [`make`] writes one from a
//! sync directory, [`apply`] brings a mirror up to date from one; a mirror is marked
//! by a hidden file (see [`mirror`]).

pub mod apply;
pub mod journal;
pub mod make;
pub mod mirror;

use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::state::Account;

/// The first entry of every bundle.
pub const HEADER_NAME: &str = "bundle.json";
/// What `bundle.json` says it is, so that another tar file is told apart.
pub const FORMAT: &str = "api2csv-bundle";
pub const VERSION: u32 = 1;
/// `bundle.json` is small (one entry per file); a larger one is not a bundle.
pub const HEADER_LIMIT: u64 = 1 << 20;
/// Entry path prefix of appended bytes.
const APPEND_DIR: &str = "append/";
/// Reads and writes go through buffers of this size: memory never grows with a file.
pub const BUFFER_SIZE: usize = 256 * 1024;

/// `bundle.json`: what the bundle carries and what it extends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bundle {
    /// Always [`FORMAT`].
    pub format: String,
    pub version: u32,
    /// When it was written, RFC 3339 UTC.
    pub written_at: String,
    /// The sync directory it was made from.
    pub source: Source,
    /// SHA-256 of the `manifest.json` the receiver holds, which the appended bytes
    /// extend; absent in a full bundle.
    pub extends: Option<String>,
    /// SHA-256 of the `manifest.json` it carries: what the mirror holds once applied.
    pub manifest: String,
    /// Every file, in the order of the archive's entries after `bundle.json`.
    pub files: Vec<Carry>,
}

/// Whose export it is: the connector and the account from `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Source {
    pub connector: String,
    pub account: Option<Account>,
}

/// How one file is carried.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Carry {
    /// The file only grew: its bytes from `offset` on, after the `offset` bytes whose
    /// SHA-256 is `prefix_sha256`.
    Append { name: String, offset: u64, prefix_sha256: String, bytes: u64, sha256: String },
    /// The whole file.
    Whole { name: String, bytes: u64, sha256: String },
}

impl Carry {
    pub fn name(&self) -> &str {
        match self {
            Carry::Append { name, .. } | Carry::Whole { name, .. } => name,
        }
    }

    /// The bytes of its entry in the archive.
    pub fn bytes(&self) -> u64 {
        match self {
            Carry::Append { bytes, .. } | Carry::Whole { bytes, .. } => *bytes,
        }
    }

    /// SHA-256 of its entry's bytes.
    pub fn sha256(&self) -> &str {
        match self {
            Carry::Append { sha256, .. } | Carry::Whole { sha256, .. } => sha256,
        }
    }

    fn sha256_mut(&mut self) -> &mut String {
        match self {
            Carry::Append { sha256, .. } | Carry::Whole { sha256, .. } => sha256,
        }
    }

    /// The path of its entry in the archive.
    pub fn entry_path(&self) -> String {
        match self {
            Carry::Append { name, .. } => format!("{APPEND_DIR}{name}"),
            Carry::Whole { name, .. } => name.clone(),
        }
    }
}

impl Bundle {
    /// The JSON text of `bundle.json`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).expect("a bundle header always serializes");
        json.push(b'\n');
        json
    }

    /// Reads `bundle.json` and checks what the rest of the code relies on: the format,
    /// plain file names each listed once, digests that are digests, and the files
    /// every sync directory has. The error says what is wrong.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Bundle, String> {
        let bundle: Bundle = serde_json::from_slice(bytes).map_err(|e| format!("bundle.json: {e}"))?;
        if bundle.format != FORMAT {
            return Err(format!("bundle.json: format {:?}, not {FORMAT:?}", bundle.format));
        }
        if bundle.version != VERSION {
            return Err(format!("bundle.json: version {} is not supported (expected {VERSION})", bundle.version));
        }
        let digests = bundle.files.iter().map(Carry::sha256).chain(bundle.extends.as_deref());
        if let Some(bad) = digests.chain([bundle.manifest.as_str()]).find(|d| !is_digest(d)) {
            return Err(format!("bundle.json: {bad:?} is not a SHA-256"));
        }
        let mut names = std::collections::BTreeSet::new();
        for carry in &bundle.files {
            let name = carry.name();
            if !is_plain(name) || !names.insert(name) {
                return Err(format!("bundle.json: file name {name:?} is not a plain name listed once"));
            }
            if let Carry::Append { prefix_sha256, .. } = carry {
                if bundle.extends.is_none() || !is_digest(prefix_sha256) {
                    return Err(format!("bundle.json: {name} is appended to, but the bundle extends nothing"));
                }
            }
        }
        for required in [crate::store::state::FILE_NAME, crate::store::manifest::FILE_NAME] {
            if !matches!(bundle.files.iter().find(|c| c.name() == required), Some(Carry::Whole { .. })) {
                return Err(format!("bundle.json: {required} is not carried whole"));
            }
        }
        Ok(bundle)
    }

    /// Whether it carries every file whole.
    pub fn is_full(&self) -> bool {
        self.extends.is_none()
    }
}

/// A name of a file inside a directory, not hidden: never a path, never one of the
/// mirror's own dot-files.
pub fn is_plain(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The lowercase hex of a finished SHA-256.
pub fn hex(hasher: Sha256) -> String {
    format!("{:x}", hasher.finalize())
}

/// SHA-256 and length of the first `len` bytes of `path` (all of it for `None`),
/// read through a fixed buffer; the hasher is returned so that more bytes can follow.
pub fn hash_prefix(path: &Path, len: Option<u64>) -> io::Result<(Sha256, u64)> {
    let file = std::fs::File::open(path)?;
    let mut reader = Hashing::new(io::BufReader::with_capacity(BUFFER_SIZE, file).take(len.unwrap_or(u64::MAX)));
    io::copy(&mut reader, &mut io::sink())?;
    Ok((reader.hasher, reader.count))
}

/// A reader that hashes what passes through it: each byte is read once, and hashed
/// on the way to where it is written.
pub struct Hashing<R> {
    inner: R,
    pub hasher: Sha256,
    /// A second digest over the same bytes: the whole file, when they are its tail.
    pub whole: Option<Sha256>,
    pub count: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Hashing<R> {
        Hashing { inner, hasher: Sha256::new(), whole: None, count: 0 }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(whole) = &mut self.whole {
            whole.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// The first 12 hex digits of a digest, for messages.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bundle {
        let d = "ab".repeat(32);
        Bundle {
            format: FORMAT.into(),
            version: VERSION,
            written_at: "2026-12-05T19:00:00Z".into(),
            source: Source { connector: "mailerlite".into(), account: None },
            extends: Some(d.clone()),
            manifest: d.clone(),
            files: vec![
                Carry::Append {
                    name: "a.csv".into(),
                    offset: 3,
                    prefix_sha256: d.clone(),
                    bytes: 1,
                    sha256: d.clone(),
                },
                Carry::Whole { name: "state.json".into(), bytes: 2, sha256: d.clone() },
                Carry::Whole { name: "manifest.json".into(), bytes: 2, sha256: d },
            ],
        }
    }

    #[test]
    fn round_trips_with_tagged_entries() {
        let b = sample();
        let text = String::from_utf8(b.to_bytes()).unwrap();
        assert!(text.contains("\"append\": {\n") && text.contains("\"whole\": {\n"), "{text}");
        assert_eq!(Bundle::parse(text.as_bytes()).unwrap(), b);
        assert_eq!(b.files[0].entry_path(), "append/a.csv");
        assert_eq!(b.files[1].entry_path(), "state.json");
    }

    /// A sync directory by hand: a state, two files, their manifest.
    fn export(dir: &Path, long: &str, rows: &str) {
        std::fs::create_dir_all(dir).unwrap();
        crate::store::state::State::new("mailerlite").save(dir).unwrap();
        std::fs::write(dir.join("t.csv"), format!("id\n{rows}")).unwrap();
        std::fs::write(dir.join(long), "id\n1\n").unwrap();
        let source = |name: &str| crate::store::manifest::Source { name: name.into(), ..Default::default() };
        crate::store::manifest::write(dir, "mailerlite", &[source("t.csv"), source(long)]).unwrap();
    }

    #[test]
    fn long_names_and_appends_round_trip() {
        let root = std::env::temp_dir().join(format!("api2csv-bundle-rt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (dir, dest) = (root.join("dir"), root.join("dest"));
        let long = format!("{}.csv", "a_table_name_longer_than_a_ustar_header_holds_".repeat(3));
        export(&dir, &long, "1\n");
        make::make(&dir, None, &root.join("full.tar")).unwrap();
        apply::apply(&root.join("full.tar"), &dest).unwrap();
        std::fs::copy(dest.join("manifest.json"), root.join("received.json")).unwrap();
        export(&dir, &long, "1\n2\n");
        let made = make::make(&dir, Some(&root.join("received.json")), &root.join("inc.tar")).unwrap();
        let t = made.bundle.files.iter().find(|c| c.name() == "t.csv").unwrap();
        assert!(matches!(t, Carry::Append { offset: 5, bytes: 2, .. }), "{t:?}");
        let applied = apply::apply(&root.join("inc.tar"), &dest).unwrap();
        assert!(!applied.already);
        for name in ["t.csv", long.as_str(), "manifest.json", "state.json"] {
            assert_eq!(std::fs::read(dest.join(name)).unwrap(), std::fs::read(dir.join(name)).unwrap(), "{name}");
        }
        assert!(crate::store::manifest::verify(&dest).unwrap().problems.is_empty());
    }

    #[test]
    fn hostile_or_broken_headers_are_refused() {
        type Change = fn(&mut Bundle);
        let cases: Vec<(Change, &str)> = vec![
            (|b| b.format = "x".into(), "format"),
            (|b| b.version = 9, "version"),
            (|b| *b.files[0].sha256_mut() = "AB".repeat(32), "not a SHA-256"),
            (|b| b.files.push(b.files[1].clone()), "listed once"),
            (|b| b.files[1] = Carry::Whole { name: "../x".into(), bytes: 0, sha256: "0".repeat(64) }, "plain"),
            (
                |b| b.files[1] = Carry::Whole { name: ".api2csv-mirror".into(), bytes: 0, sha256: "0".repeat(64) },
                "plain",
            ),
            (|b| b.extends = None, "extends nothing"),
            (|b| b.files.truncate(2), "manifest.json is not carried whole"),
        ];
        for (change, want) in cases {
            let mut b = sample();
            change(&mut b);
            let err = Bundle::parse(&b.to_bytes()).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        assert!(Bundle::parse(b"not json").is_err());
    }
}
