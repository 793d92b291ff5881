//! `bundle` and `apply`: a mirror kept byte-identical to a sync directory across
//! generations of the mock account, one bundle per sync; every bundle that does not
//! fit refused with the mirror unchanged; `apply` killed or refused disk space at each
//! of its system calls, then finished by running it again.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use api2csv::bundle::{Bundle, Carry};
use api2csv::mock::MockOptions;
use api2csv::mock::RunningMock;
use serde_json::Value;

use crate::crash::strace::{self, Act, Fault};
use crate::workdir::{describe, Workdir};

/// A sync directory `out`, a mirror `mirror`, and the mock account's generations.
struct Chain {
    wd: Workdir,
    opts: MockOptions,
    mocks: Vec<RunningMock>,
    bundles: usize,
}

impl Chain {
    fn new(name: &str, seed: u64) -> Chain {
        let opts = MockOptions { records: 300, seed, ..MockOptions::default() };
        Chain { wd: Workdir::new(name), opts, mocks: Vec::new(), bundles: 0 }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.wd.path(rel)
    }

    /// Syncs generation `g` of the account into `out`, with `extra` arguments.
    fn sync(&mut self, g: u32, extra: &[&str]) {
        let opts = MockOptions { generation: g, ..self.opts.clone() };
        let def = api2csv::connector::find("mailerlite").unwrap();
        let mock = api2csv::mock::start_mock(def, "127.0.0.1:0", &opts).unwrap();
        let mut config = mock.config.clone();
        config["retry_attempts"] = Value::from(8);
        let cfg = format!("ml-{}-g{g}.json", self.mocks.len());
        self.wd.write(&cfg, &config.to_string());
        self.mocks.push(mock);
        let mut cmd = self.wd.command(&["sync", "mailerlite", "--config", &cfg, "--out", "out", "-q"]);
        self.wd.stdout(cmd.args(extra));
    }

    /// `api2csv bundle out [--since mirror/manifest.json]`: the bundle's path.
    fn bundle(&mut self, since: bool) -> PathBuf {
        self.bundles += 1;
        let name = format!("b{}.tar", self.bundles);
        let mut cmd = self.wd.command(&["bundle", "out", "--out", &name]);
        if since {
            cmd.args(["--since", "mirror/manifest.json"]);
        }
        self.wd.stdout(&mut cmd);
        self.path(&name)
    }

    fn apply_cmd(&self, bundle: &Path, dest: &str) -> Command {
        let mut cmd = self.wd.command(&["apply"]);
        cmd.arg(bundle).arg(dest);
        cmd
    }

    fn apply(&self, bundle: &Path) -> String {
        self.wd.stdout(&mut self.apply_cmd(bundle, "mirror"))
    }

    /// Applying `bundle` to `dest` is refused: exit 2, one line naming the bundle,
    /// `dest` exactly as it was (or still missing).
    fn refused(&self, bundle: &Path, dest: &str, why: &str) -> String {
        let before = snapshot(&self.path(dest));
        let err = self.wd.fails(&mut self.apply_cmd(bundle, dest), 2);
        assert_eq!(err.trim().lines().count(), 1, "{why}: not one line:\n{err}");
        let name = bundle.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name), "{why}: the line does not name {name}: {err}");
        assert_eq!(snapshot(&self.path(dest)), before, "{why}: {dest} changed");
        err
    }

    /// The mirror holds exactly the visible files of `out`, and verifies.
    fn assert_mirrored(&self, context: &str) {
        let (out, mirror) = (visible(&self.path("out")), visible(&self.path("mirror")));
        assert_eq!(out.keys().collect::<Vec<_>>(), mirror.keys().collect::<Vec<_>>(), "{context}: files differ");
        for (name, bytes) in &out {
            assert!(mirror[name] == *bytes, "{context}: {name} differs");
        }
        self.wd.stdout(&mut self.wd.command(&["verify", "mirror"]));
    }
}

/// Every file of `dir`, hidden ones included; `None` when `dir` does not exist.
fn snapshot(dir: &Path) -> Option<BTreeMap<String, Vec<u8>>> {
    let entries = fs::read_dir(dir).ok()?;
    let mut files = BTreeMap::new();
    for e in entries {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            files.insert(e.file_name().into_string().unwrap(), fs::read(e.path()).unwrap());
        }
    }
    Some(files)
}

fn visible(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    snapshot(dir).unwrap_or_default().into_iter().filter(|(n, _)| !n.starts_with('.')).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    for (name, bytes) in snapshot(from).unwrap() {
        fs::write(to.join(name), bytes).unwrap();
    }
}

/// The `bundle.json` of a bundle, read with the tar crate as any reader would.
fn header(bundle: &Path) -> Bundle {
    let mut archive = tar::Archive::new(fs::File::open(bundle).unwrap());
    let mut first = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(&*first.path_bytes(), b"bundle.json");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut first, &mut bytes).unwrap();
    Bundle::parse(&bytes).unwrap()
}

/// (table files appended to with new bytes, table files carried whole), by name.
fn how_carried(b: &Bundle) -> (Vec<String>, Vec<String>) {
    let tables = b.files.iter().filter(|c| c.name().ends_with(".csv"));
    let appended = tables.clone().filter(|c| matches!(c, Carry::Append { bytes, .. } if *bytes > 0));
    let whole = tables.filter(|c| matches!(c, Carry::Whole { .. }));
    (appended.map(|c| c.name().to_string()).collect(), whole.map(|c| c.name().to_string()).collect())
}

#[test]
fn a_chain_of_bundles_keeps_the_mirror_identical() {
    let mut c = Chain::new("bundle-chain", 5);
    c.sync(1, &[]);
    let full = c.bundle(false);
    let listed = Command::new("tar").arg("tf").arg(&full).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.starts_with("bundle.json\n") && listed.contains("\nsubscriber.csv\n"), "{listed}");
    assert!(listed.ends_with("state.json\nmanifest.json\nlast_sync.json\n"), "{listed}");
    assert!(header(&full).is_full());
    let said = c.apply(&full);
    assert!(said.contains("applied"), "{said}");
    c.assert_mirrored("full bundle into a new directory");

    // Generation 2: every file grows (widening: a_widened_file_is_carried_whole...).
    c.sync(2, &[]);
    let b = c.bundle(true);
    let (appended, whole) = how_carried(&header(&b));
    assert!(whole.is_empty() && appended.contains(&"subscriber.csv".to_string()), "{appended:?} {whole:?}");
    c.apply(&b);
    c.assert_mirrored("after widening");
    let said = c.apply(&b);
    assert!(said.contains("nothing to do"), "the same bundle twice: {said}");
    c.assert_mirrored("the same bundle twice");

    // Generation 3: only appends; the bundle is its new bytes plus a small overhead.
    c.sync(3, &[]);
    let b = c.bundle(true);
    let h = header(&b);
    let (appended, whole) = how_carried(&h);
    assert!(whole.is_empty() && appended.contains(&"subscriber.csv".to_string()), "{appended:?} {whole:?}");
    let carried: u64 = h.files.iter().map(Carry::bytes).sum();
    let overhead = fs::metadata(&b).unwrap().len() - carried;
    assert!(
        overhead <= 1024 * (h.files.len() as u64 + 4) + 8192,
        "overhead {overhead} bytes for {} files",
        h.files.len()
    );
    c.apply(&b);
    c.assert_mirrored("after appends");

    // Compaction rewrites every table file: each is carried whole.
    c.wd.stdout(&mut c.wd.command(&["compact", "out"]));
    let b = c.bundle(true);
    let (appended, whole) = how_carried(&header(&b));
    assert!(appended.is_empty() && whole.len() >= 4, "{appended:?} {whole:?}");
    c.apply(&b);
    c.assert_mirrored("after compact");

    // A full refresh of generation 4, then a plain sync of generation 5.
    c.sync(4, &["--full-refresh"]);
    let b = c.bundle(true);
    c.apply(&b);
    c.assert_mirrored("after a full refresh");
    c.sync(5, &[]);
    let b = c.bundle(true);
    assert!(!how_carried(&header(&b)).0.is_empty());
    c.apply(&b);
    c.assert_mirrored("generation 5");

    // A full bundle always fits a mirror of the same account, even one that is behind.
    let full5 = c.bundle(false);
    copy_dir(&c.path("mirror"), &c.path("mirror-copy"));
    c.apply(&full5);
    c.assert_mirrored("a full bundle over an up-to-date mirror");
}

/// A Paligo account whose users gain a field at `version` 2 (`department`) and a user
/// at each version: the mock generations never add a column, this server does.
fn widening_paligo(version: Arc<AtomicU32>) -> crate::hostile::Server {
    crate::hostile::serve_with(move |target| {
        let v = version.load(Ordering::SeqCst);
        let resource = target.split('?').next().unwrap_or("").trim_start_matches("/api/v2/").trim_end_matches('/');
        let records: Vec<String> = match resource {
            "users" => (1..=v + 1)
                .map(|id| {
                    let extra = if v >= 2 && id == 1 { r#","department":"ops""# } else { "" };
                    format!(r#"{{"id":{id},"username":"u{id}@x.org","name":"U {id}","type":"admin"{extra}}}"#)
                })
                .collect(),
            "taxonomies" | "assignments" => Vec::new(),
            _ => return crate::hostile::Reply::not_found(),
        };
        let page = crate::hostile::param(target, "page").unwrap_or_else(|| "1".into());
        if page != "1" {
            return crate::hostile::Reply::not_found();
        }
        let body = format!(r#"{{"page":1,"next_page":"","total_pages":1,"{resource}":[{}]}}"#, records.join(","));
        crate::hostile::Reply::ok(body)
    })
}

#[test]
fn a_widened_file_is_carried_whole_then_appended_to() {
    let c = Chain::new("bundle-widen", 1);
    let version = Arc::new(AtomicU32::new(1));
    let server = widening_paligo(version.clone());
    let config = format!(r#"{{"username":"u","api_key":"k","base_url":"{}/api/v2"}}"#, server.origin);
    c.wd.write("pg.json", &config);
    let sync = || c.wd.stdout(&mut c.wd.command(&["sync", "paligo", "--config", "pg.json", "--out", "out", "-q"]));
    let bundle = |name: &str, since: bool| {
        let mut cmd = c.wd.command(&["bundle", "out", "--out", name]);
        if since {
            cmd.args(["--since", "mirror/manifest.json"]);
        }
        c.wd.stdout(&mut cmd);
        c.path(name)
    };
    sync();
    c.apply(&bundle("w1.tar", false));
    c.assert_mirrored("version 1");
    version.store(2, Ordering::SeqCst);
    sync();
    let users = fs::read_to_string(c.path("out/users.csv")).unwrap();
    assert!(users.lines().next().unwrap().contains("department"), "not widened: {users}");
    let b = bundle("w2.tar", true);
    let (appended, whole) = how_carried(&header(&b));
    assert_eq!((appended, whole), (vec![], vec!["users.csv".to_string()]), "the widened file whole");
    c.apply(&b);
    c.assert_mirrored("widened");
    version.store(3, Ordering::SeqCst);
    sync();
    let b = bundle("w3.tar", true);
    let (appended, whole) = how_carried(&header(&b));
    assert_eq!((appended, whole), (vec!["users.csv".to_string()], vec![]), "then appended to");
    c.apply(&b);
    c.assert_mirrored("appended after widening");
}

#[test]
fn bundles_that_do_not_fit_are_refused_and_change_nothing() {
    let mut c = Chain::new("bundle-refused", 6);
    c.sync(1, &[]);
    let full1 = c.bundle(false);
    c.apply(&full1);
    c.sync(2, &[]);
    let b2 = c.bundle(true);
    // b3 extends what the mirror will hold after b2: made from a copy that has it.
    copy_dir(&c.path("mirror"), &c.path("mirror-at-1"));
    c.apply(&b2);
    c.sync(3, &[]);
    let b3 = c.bundle(true);
    copy_dir(&c.path("mirror-at-1"), &c.path("mirror"));

    // Skipped: b3 extends the manifest b2 brings.
    let err = c.refused(&b3, "mirror", "skipped");
    assert!(err.contains("full bundle"), "the remedy: {err}");
    // An incremental bundle into an empty or missing directory.
    c.refused(&b2, "new-mirror", "incremental into a missing directory");
    assert!(!c.path("new-mirror").exists());
    fs::create_dir(c.path("empty")).unwrap();
    c.refused(&b2, "empty", "incremental into an empty directory");
    // A directory that is not a mirror: the sync directory itself.
    c.refused(&full1, "out", "not a mirror");

    // DEST changed: a byte of a file the bundle appends to, or one byte more.
    let (appended, _) = how_carried(&header(&b2));
    let victim = c.path("mirror").join(&appended[0]);
    let original = fs::read(&victim).unwrap();
    let mut edited = original.clone();
    let mid = edited.len() / 2;
    edited[mid] ^= 0x20;
    fs::write(&victim, &edited).unwrap();
    c.refused(&b2, "mirror", "a byte changed in the mirror");
    fs::write(&victim, [original.as_slice(), b"x"].concat()).unwrap();
    c.refused(&b2, "mirror", "a byte appended in the mirror");
    fs::write(&victim, &original).unwrap();

    // Damaged: a flipped byte in an appended tail, a truncated file.
    let bytes = fs::read(&b2).unwrap();
    let h = header(&b2);
    let tail = h.files.iter().position(|f| matches!(f, Carry::Append { bytes, .. } if *bytes > 100)).unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let entry = archive.entries().unwrap().nth(tail + 1).unwrap().unwrap();
    let at = entry.raw_file_position() as usize + 50;
    let mut flipped = bytes.clone();
    flipped[at] ^= 0x01;
    fs::write(c.path("flipped.tar"), &flipped).unwrap();
    let err = c.refused(&c.path("flipped.tar"), "mirror", "a flipped byte");
    assert!(err.contains("damaged"), "{err}");
    fs::write(c.path("cut.tar"), &bytes[..at]).unwrap();
    c.refused(&c.path("cut.tar"), "mirror", "a truncated bundle");
    assert!(visible(&c.path("mirror")) == visible(&c.path("mirror-at-1")));

    // Not a bundle: a JSON file, an empty file, a tar of something else.
    c.refused(&c.path("out/manifest.json"), "mirror", "a JSON file");
    fs::write(c.path("empty.tar"), b"").unwrap();
    c.refused(&c.path("empty.tar"), "mirror", "an empty file");
    let made = Command::new("tar").current_dir(c.path("out")).args(["cf", "../other.tar", "group.csv"]).status();
    assert!(made.unwrap().success());
    let err = c.refused(&c.path("other.tar"), "mirror", "another tar file");
    assert!(err.contains("not an api2csv bundle"), "{err}");

    // Another account: a full bundle of an export of seed 7.
    let mut other_account = Chain::new("bundle-other", 7);
    other_account.sync(1, &[]);
    let foreign = c.path("foreign.tar");
    other_account.wd.stdout(other_account.wd.command(&["bundle", "out", "--out"]).arg(&foreign));
    let err = c.refused(&foreign, "mirror", "another account");
    assert!(err.contains("another directory"), "{err}");

    // What fits still applies, in order, and then out of order is refused.
    c.apply(&b2);
    c.apply(&b3);
    c.assert_mirrored("b2 then b3");
    c.refused(&b2, "mirror", "an older bundle after a newer one");

    // A file the next bundle carries whole was changed in the mirror: refused too.
    c.wd.stdout(&mut c.wd.command(&["compact", "out"]));
    let b4 = c.bundle(true);
    assert!(how_carried(&header(&b4)).1.contains(&"group.csv".to_string()));
    let victim = c.path("mirror/group.csv");
    let original = fs::read(&victim).unwrap();
    fs::write(&victim, [original.as_slice(), b"x"].concat()).unwrap();
    let err = c.refused(&b4, "mirror", "a file carried whole changed in the mirror");
    assert!(err.contains("group.csv"), "{err}");
    fs::write(&victim, &original).unwrap();
    c.apply(&b4);
    c.assert_mirrored("after compact");
}

#[test]
fn bundle_refuses_what_it_cannot_carry_exactly() {
    let mut c = Chain::new("bundle-own-refusals", 12);
    c.sync(1, &[]);
    let fails = |args: &[&str], why: &str| {
        let err = c.wd.fails(&mut c.wd.command(args), 2);
        assert_eq!(err.trim().lines().count(), 1, "{why}: {err}");
        assert!(!c.path("x.tar").exists() && !c.path("x.tar.tmp").exists(), "{why}: a bundle was written");
        err
    };
    fails(&["bundle", "out", "--out", "out/x.tar"], "a bundle inside the directory");
    fails(&["bundle", "out"], "no --out");
    fails(&["bundle", "nowhere", "--out", "x.tar"], "no such directory");
    c.wd.write("garbage.json", "{\"version\": 1");
    let err = fails(&["bundle", "out", "--since", "garbage.json", "--out", "x.tar"], "a broken manifest");
    assert!(err.contains("garbage.json"), "{err}");
    fails(&["bundle", "out", "--since", "missing.json", "--out", "x.tar"], "a missing manifest");
    // A table file edited after the manifest was written: verify would refuse the copy.
    let path = c.path("out/group.csv");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let err = fails(&["bundle", "out", "--out", "x.tar"], "an edited file");
    assert!(err.contains("group.csv"), "{err}");
    bytes.push(b'\n');
    fs::write(&path, &bytes).unwrap();
    fails(&["bundle", "out", "--out", "x.tar"], "a longer file");
}

#[test]
fn a_mirror_refuses_sync_and_compact() {
    let mut c = Chain::new("bundle-guard", 8);
    c.sync(1, &[]);
    let full = c.bundle(false);
    c.apply(&full);
    let before = snapshot(&c.path("mirror"));
    let err = c.wd.fails(&mut c.wd.command(&["compact", "mirror"]), 2);
    assert!(err.contains("compact a copy"), "{err}");
    let cfg = c.wd.path("ml-0-g1.json");
    let err = c.wd.fails(c.wd.command(&["sync", "mailerlite", "--out", "mirror", "--config"]).arg(cfg), 2);
    assert!(err.contains("mirror"), "{err}");
    assert_eq!(snapshot(&c.path("mirror")), before);
    // A copy of its visible files is a plain directory that compacts.
    copy_dir(&c.path("mirror"), &c.path("copy"));
    fs::remove_file(c.path("copy/.api2csv-mirror")).unwrap();
    c.wd.stdout(&mut c.wd.command(&["compact", "copy"]));
}

/// The syscalls `apply` makes on the mirror's files.
const SYSCALLS: &[&str] = &["mkdir", "openat", "write", "fsync", "ftruncate", "rename", "unlink", "unlinkat"];

/// A mirror one bundle behind, and a bundle that appends to its table files.
fn fault_lab(name: &str, seed: u64) -> (Chain, PathBuf, Vec<PathBuf>) {
    strace::strace();
    let mut c = Chain::new(name, seed);
    c.sync(1, &[]);
    let full = c.bundle(false);
    c.apply(&full);
    c.sync(2, &[]);
    let b = c.bundle(true);
    copy_dir(&c.path("mirror"), &c.path("base"));
    let mirror = c.path("mirror");
    let mut paths: Vec<PathBuf> = vec![mirror.clone()];
    for carry in header(&b).files {
        paths.push(mirror.join(carry.name()));
        paths.push(mirror.join(format!(".api2csv-stage.{}", carry.name())));
    }
    for hidden in [".api2csv-apply.json", ".api2csv-apply.json.tmp", ".api2csv-mirror", ".api2csv-mirror.tmp"] {
        paths.push(mirror.join(hidden));
    }
    (c, b, paths)
}

/// Absolute paths, as strace sees them.
fn apply_abs(c: &Chain, bundle: &Path) -> Command {
    let mut cmd = c.wd.command(&["apply"]);
    cmd.arg(bundle).arg(c.path("mirror")).stdout(Stdio::piped());
    cmd
}

/// Kills `apply` of `bundle` at each system call on the mirror that changes something,
/// starting each time from the saved directory `base` (`None`: no mirror yet), then
/// runs it again: the mirror must end identical to `out`, with nothing left over.
fn kill_sweep(c: &Chain, bundle: &Path, paths: &[PathBuf], base: Option<&str>) {
    let restore = || match base {
        Some(base) => copy_dir(&c.path(base), &c.path("mirror")),
        None => {
            let _ = fs::remove_dir_all(c.path("mirror"));
        }
    };
    restore();
    let cmd = apply_abs(c, bundle);
    let clean = strace::trace(&cmd, paths, SYSCALLS, &c.path("clean.log"));
    // Opening to read (checks, directory fsyncs) is the same instant as the call before.
    let writing = |e: &&strace::Event| e.syscall != "openat" || !e.text.contains("O_RDONLY");
    let steps: Vec<_> = clean.events.iter().filter(|e| e.main && e.syscall != "execve").filter(writing).collect();
    assert!(steps.len() > 20, "too few steps traced: {}", steps.len());
    assert!(steps.iter().any(|e| e.syscall == "rename") && steps.iter().any(|e| e.syscall == "fsync"));
    let before = base.map(|b| visible(&c.path(b))).unwrap_or_default();
    for (i, event) in steps.iter().enumerate() {
        restore();
        let step = format!("{} #{} ({})", event.syscall, event.nth, event.text);
        let fault = Fault::at(&step, event, paths, Act::Kill);
        strace::inject(&cmd, &fault, &c.path(format!("kill-{i}.log").as_str()));
        let committed = c.path("mirror/.api2csv-apply.json").exists();
        if !committed {
            let now = visible(&c.path("mirror"));
            assert!(now == before || now == visible(&c.path("out")), "{step}: the mirror changed outside the journal");
        }
        let mut again = apply_abs(c, bundle);
        let out = c.wd.output(&mut again);
        assert!(out.status.success(), "{step}: the rerun failed\n{}", describe(&again, &out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(said.contains("finished the interrupted apply"), committed, "{step}: {said}");
        c.assert_mirrored(&step);
        let left: Vec<String> =
            snapshot(&c.path("mirror")).unwrap().into_keys().filter(|n| n.starts_with(".api2csv-")).collect();
        assert_eq!(left, [".api2csv-mirror"], "{step}: left behind");
    }
}

#[test]
fn apply_killed_at_each_step_is_finished_by_running_it_again() {
    let (c, b, paths) = fault_lab("bundle-kill", 9);
    kill_sweep(&c, &b, &paths, Some("base"));
}

#[test]
fn a_first_apply_killed_at_each_step_is_finished_by_running_it_again() {
    let (c, _, paths) = fault_lab("bundle-kill-first", 11);
    // The full bundle of the current generation, into a directory that does not exist.
    let full = c.path("full-now.tar");
    c.wd.stdout(c.wd.command(&["bundle", "out", "--out"]).arg(&full));
    kill_sweep(&c, &full, &paths, None);
}

#[test]
fn apply_out_of_space_leaves_the_mirror_or_is_finished_by_a_rerun() {
    let (c, b, paths) = fault_lab("bundle-enospc", 10);
    let cmd = apply_abs(&c, &b);
    let clean = strace::trace(&cmd, &paths, SYSCALLS, &c.path("clean.log"));
    let writes: Vec<_> = clean.events.iter().filter(|e| e.main && e.syscall == "write").collect();
    let staging = writes.iter().find(|e| e.text.contains(".api2csv-stage.")).expect("a staged write");
    let finishing = writes.iter().find(|e| !e.text.contains(".api2csv-")).expect("an append to a table file");
    let base = snapshot(&c.path("base")).unwrap();
    for (event, committed) in [(staging, false), (finishing, true)] {
        copy_dir(&c.path("base"), &c.path("mirror"));
        let fault = Fault::at(&event.text, event, &paths, Act::Enospc);
        let run = strace::inject(&cmd, &fault, &c.path("enospc.log"));
        assert_eq!(run.status.code(), Some(1), "{}", run.describe());
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.describe());
        if committed {
            assert!(run.stderr.contains("again"), "the remedy: {}", run.describe());
        } else {
            assert!(snapshot(&c.path("mirror")).unwrap() == base, "out of space while staging changed the mirror");
        }
        c.wd.stdout(&mut apply_abs(&c, &b));
        c.assert_mirrored(&event.text);
    }
}
