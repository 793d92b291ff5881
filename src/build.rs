//! Records the commit the binary is built from, for `api2csv --version`
//! (`api2csv 0.1.0 (commit 1a2b3c4d5e6f)`). Outside a git checkout (a crate tarball,
//! a copied tree) or without git, the version says so instead of failing the build.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| text.trim().to_string())
}

fn main() {
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            format!("commit {hash}{}", if dirty { ", with local changes" } else { "" })
        }
        None => "not built from a git checkout".to_string(),
    };
    println!("cargo:rustc-env=API2CSV_COMMIT={commit}");
    // A new commit or checkout changes HEAD or the branch it names.
    for path in ["HEAD", "index"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])) {
        if std::path::Path::new(&reference).exists() {
            println!("cargo:rerun-if-changed={reference}");
        }
    }
    println!("cargo:rerun-if-changed=src/build.rs");
}
