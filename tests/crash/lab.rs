//! One output directory put through faults: commands on it, saved copies to start each
//! fault from, the steps of a replacement found in a clean traced run, and the checks
//! that close every scenario.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::committed::{self, Change, Committed};
use super::strace::{self, Act, Event, Fault, Run, Thread};
use crate::expected::assert_table;
use crate::workdir::Workdir;

/// The syscalls of a file replacement.
pub const SYSCALLS: &[&str] = &["openat", "write", "fsync", "fdatasync", "rename"];

/// Set `API2CSV_CRASH_FULL=1` to fault every call of each sequence, not only its steps.
pub fn full() -> bool {
    std::env::var_os("API2CSV_CRASH_FULL").is_some_and(|v| v != "0" && !v.is_empty())
}

/// The records of a table in the account being synced.
pub type Truth = Box<dyn Fn(&str) -> Vec<String>>;

pub struct Lab {
    pub wd: Workdir,
    pub connector: &'static str,
    logs: Cell<usize>,
    truth: Truth,
}

impl Lab {
    /// A lab syncing an account whose records `truth` gives.
    pub fn new(name: &str, connector: &'static str, truth: impl Fn(&str) -> Vec<String> + 'static) -> Lab {
        strace::strace();
        Lab { wd: Workdir::new(name), connector, logs: Cell::new(0), truth: Box::new(truth) }
    }

    /// The output directory, absolute: the paths strace filters on.
    pub fn out(&self) -> PathBuf {
        self.wd.path("out")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.out().join(name)
    }

    pub fn sync(&self, cfg: &str, extra: &[&str]) -> Command {
        let out = self.out();
        let mut cmd = self.wd.command(&["sync", self.connector, "--config", cfg, "--out"]);
        cmd.arg(out).args(extra);
        cmd
    }

    pub fn compact(&self) -> Command {
        let mut cmd = self.wd.command(&["compact"]);
        cmd.arg(self.out());
        cmd
    }

    pub fn ok(&self, mut cmd: Command) -> String {
        self.wd.stdout(&mut cmd)
    }

    fn log(&self) -> PathBuf {
        self.logs.set(self.logs.get() + 1);
        self.wd.path(&format!("strace-{}.log", self.logs.get()))
    }

    /// The calls a clean run of `cmd` makes on `paths`.
    pub fn trace(&self, cmd: &Command, paths: &[PathBuf]) -> Vec<Event> {
        strace::trace(cmd, paths, SYSCALLS, &self.log()).events
    }

    /// The steps of the last rewrite into `side` and its rename in a clean run of `cmd`.
    pub fn rewrite_steps(&self, cmd: &Command, side: &Path) -> Vec<Fault> {
        rewrite_steps(&self.trace(cmd, &[side.to_path_buf()]), side)
    }

    /// The steps of renaming `side`, written before, in a clean run of `cmd`: its
    /// first rename, which is the recovery's when an earlier run left it pending.
    pub fn rename_steps(&self, cmd: &Command, side: &Path) -> Vec<Fault> {
        rename_only_steps(&self.trace(cmd, &[side.to_path_buf()]), side)
    }

    pub fn inject(&self, cmd: &Command, fault: &Fault) -> Run {
        strace::inject(cmd, fault, &self.log())
    }

    /// Copies the output directory to `name`, to start faults from.
    pub fn save(&self, name: &str) {
        committed::copy_dir(&self.out(), &self.wd.path(name));
    }

    pub fn restore(&self, name: &str) {
        committed::copy_dir(&self.wd.path(name), &self.out());
    }

    pub fn committed(&self) -> Committed {
        committed::committed(&self.out())
    }

    /// Asserts that no record of the account was taken for deleted (see [`committed::assert_live`]).
    pub fn assert_live(&self, step: &str) {
        committed::assert_live(self.connector, &self.committed(), &self.truth, step);
    }

    /// Runs `cmd` with `fault` and checks what it left against `before`.
    pub fn fault(&self, cmd: &Command, fault: &Fault, before: &Committed, change: Change) -> Run {
        let started = std::time::Instant::now();
        let run = self.inject(cmd, fault);
        println!("{}: {} ({:.2}s)", fault.step, run.status, started.elapsed().as_secs_f64());
        let after = self.committed();
        committed::assert_follows(self.connector, before, &after, change, &fault.step);
        committed::assert_live(self.connector, &after, &self.truth, &fault.step);
        run
    }

    /// A clean sync and compact end the scenario: each table holds exactly the
    /// account's records, no row was written twice, nothing needs repair or is left over.
    pub fn finish(&self, cfg: &str, context: &str) {
        let out = self.out();
        let mut sync = self.sync(cfg, &[]);
        let status = self.wd.output(&mut sync);
        assert!(
            status.status.success(),
            "{context}: the finishing sync failed\n{}",
            crate::workdir::describe(&sync, &status)
        );
        committed::assert_no_repeats(&out, self.connector);
        committed::assert_live(self.connector, &self.committed(), &self.truth, context);
        self.ok(self.compact());
        for spec in api2csv::connector::tables(self.connector).unwrap() {
            let want = (self.truth)(spec.name);
            let path = out.join(format!("{}.csv", spec.name));
            if want.is_empty() {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                assert!(committed::rows(&path, len).is_empty(), "{context}: {} should have no rows", spec.name);
            } else {
                assert_table(&out, self.connector, spec.name, &want);
            }
        }
        let mut repair = self.wd.command(&["repair"]);
        repair.arg(&out);
        let said = self.ok(repair);
        assert!(said.contains("nothing needed repair"), "{context}: repair found work:\n{said}");
        // The manifest written last holds the digests of the files as they are.
        let mut verify = self.wd.command(&["verify"]);
        verify.arg(&out);
        let status = self.wd.output(&mut verify);
        assert!(status.status.success(), "{context}: {}", crate::workdir::describe(&verify, &status));
        assert_eq!(committed::leftovers(&out), Vec::<PathBuf>::new(), "{context}: files left behind");
    }
}

/// The steps of the rewrite into `side` and its rename, by the main thread, in
/// `events` traced on `[side]`: the last such rewrite if several. Named steps, or
/// with [`full`] every call.
pub fn rewrite_steps(events: &[Event], side: &Path) -> Vec<Fault> {
    let name = format!("/{}", side.file_name().unwrap().to_string_lossy());
    let paths = [side.to_path_buf()];
    let mine: Vec<&Event> = events.iter().filter(|e| e.main && e.on(&name)).collect();
    let start = mine
        .iter()
        .rposition(|e| e.syscall == "openat" && e.text.contains("O_CREAT"))
        .unwrap_or_else(|| panic!("no rewrite into {name} in the clean run"));
    let seq = &mine[start..];
    let find = |syscall: &str| seq.iter().find(|e| e.syscall == syscall).copied();
    let writes: Vec<&&Event> = seq.iter().filter(|e| e.syscall == "write").collect();
    let fsync = find("fsync").expect("the side file is synced");
    let rename = seq.iter().find(|e| e.syscall == "rename" && e.text.contains(&format!("{name}\", "))).copied();
    let step = |what: &str, e: &Event, act| Fault::at(&format!("{name}: {what}"), e, &paths, act);
    let mut steps = vec![
        step("side file not created yet", seq[0], Act::Kill),
        step("side file created, empty", writes[0], Act::Kill),
        step("ENOSPC writing the side file", writes[0], Act::Enospc),
        step("side file partly written", writes[writes.len() - 1], Act::Kill),
        step("side file written, not synced", fsync, Act::Kill),
        step("ENOSPC syncing the side file", fsync, Act::Enospc),
        step("side file durable, state not saved", fsync, Act::KillAfter),
    ];
    steps.extend(rename.map(|r| rename_steps(r, &paths, &name)).unwrap_or_default());
    if full() {
        for w in &writes[1..] {
            steps.push(step(&format!("write {}", w.nth), w, Act::Kill));
            steps.push(step(&format!("ENOSPC at write {}", w.nth), w, Act::Enospc));
        }
    }
    steps
}

/// The rename of a side file into place: before it (the state says replace), after it.
fn rename_steps(rename: &Event, paths: &[PathBuf], name: &str) -> Vec<Fault> {
    vec![
        Fault::at(&format!("{name}: state says replace, not renamed"), rename, paths, Act::Kill),
        Fault::at(&format!("{name}: renamed, state still says replace"), rename, paths, Act::KillAfter),
    ]
}

/// The steps of renaming `side` (written before, as a `--full-refresh` rebuild is) over
/// its target, by the main thread, in `events` traced on `[side]`.
pub fn rename_only_steps(events: &[Event], side: &Path) -> Vec<Fault> {
    let name = format!("/{}", side.file_name().unwrap().to_string_lossy());
    let rename = events
        .iter()
        .find(|e| e.main && e.syscall == "rename" && e.text.contains(&format!("{name}\", ")))
        .unwrap_or_else(|| panic!("no rename of {name} in the clean run"));
    rename_steps(rename, &[side.to_path_buf()], &name)
}

/// The `n`th call of `syscall` on a file ending in `name` by the committer, in
/// `events` traced on `paths`.
pub fn committer_step(events: &[Event], paths: &[PathBuf], name: &str, syscall: &str, n: usize, act: Act) -> Fault {
    let e = events
        .iter()
        .filter(|e| e.thread() == Thread::Committer && e.syscall == syscall && e.on(name))
        .nth(n - 1)
        .unwrap_or_else(|| panic!("the committer made no {syscall} number {n} on {name}"));
    let what = match act {
        Act::Enospc => "ENOSPC at",
        Act::Kill => "killed at",
        Act::KillAfter => "killed after",
    };
    Fault::at(&format!("committer: {what} {syscall} {n} of {name}"), e, paths, act)
}

/// The first call of `syscall` on a file ending in `name` by the committer that a
/// `when=N` fault can reach: strace counts each thread's calls apart, so `when=N`
/// fires at the first Nth call of any thread, and N must be one the committer
/// reaches before every other thread does (the main thread saves the state too).
pub fn committer_first(events: &[Event], paths: &[PathBuf], name: &str, syscall: &str, act: Act) -> Fault {
    let calls: Vec<&Event> = events.iter().filter(|e| e.syscall == syscall).collect();
    let n = (1..=calls.len())
        .find(|&n| calls.iter().find(|e| e.nth == n).is_some_and(|e| e.thread() == Thread::Committer && e.on(name)))
        .unwrap_or_else(|| panic!("no {syscall} of {name} by the committer comes first at its count"));
    committer_step(events, paths, name, syscall, n, act)
}

/// Every call of a single-threaded run from the creation of `side` to the directory
/// fsync that makes the state saying "replaced" durable, in `events` traced on
/// `paths`: killed before each, and refused space at each write and fsync.
pub fn sweep_steps(events: &[Event], side: &Path, paths: &[PathBuf]) -> Vec<Fault> {
    let name = format!("/{}", side.file_name().unwrap().to_string_lossy());
    let start = events
        .iter()
        .rposition(|e| e.syscall == "openat" && e.on(&name) && e.text.contains("O_CREAT"))
        .expect("the side file is created");
    let renamed = start
        + events[start..]
            .iter()
            .position(|e| e.syscall == "rename" && e.text.contains(&format!("{name}\", ")))
            .unwrap();
    let saved = renamed + events[renamed..].iter().position(|e| e.syscall == "rename").unwrap();
    let end = saved + events[saved..].iter().position(|e| e.syscall == "fsync").unwrap();
    let mut steps = Vec::new();
    for e in &events[start..=end] {
        let what = format!("{name}: sweep, {} {} of {}", e.syscall, e.nth, e.text.split('"').nth(1).unwrap_or(""));
        steps.push(Fault::at(&what, e, paths, Act::Kill));
        if matches!(e.syscall.as_str(), "write" | "fsync") {
            steps.push(Fault::at(&format!("{what}, ENOSPC"), e, paths, Act::Enospc));
        }
    }
    steps
}

/// The state saves around the rename of `side`, in a single-threaded run traced on
/// `[side, state.json.tmp]`: `before` the rename (the state that says replace) or after.
pub fn state_steps(events: &[Event], side: &Path, tmp: &Path) -> Vec<Fault> {
    let name = format!("/{}", side.file_name().unwrap().to_string_lossy());
    let paths = [side.to_path_buf(), tmp.to_path_buf()];
    let at = events
        .iter()
        .rposition(|e| e.syscall == "rename" && e.text.contains(&format!("{name}\", ")))
        .expect("the side file is renamed");
    let on_tmp = |e: &&Event| e.on("/state.json.tmp") && e.thread() == Thread::Main;
    let before: Vec<&Event> = events[..at].iter().filter(on_tmp).collect();
    let after: Vec<&Event> = events[at..].iter().filter(on_tmp).collect();
    let step = |what: &str, e: &Event, act| Fault::at(&format!("{name}: {what}"), e, &paths, act);
    let mut steps = vec![
        step("ENOSPC writing the state that says replace", last(&before, "write"), Act::Enospc),
        step("state that says replace written, not renamed", last(&before, "rename"), Act::Kill),
        step("state that says replaced written, not renamed", first(&after, "rename"), Act::Kill),
        step("ENOSPC syncing the state that says replaced", first(&after, "fsync"), Act::Enospc),
    ];
    if full() {
        steps.push(step("ENOSPC syncing the state that says replace", last(&before, "fsync"), Act::Enospc));
        steps.push(step("state that says replaced saved", first(&after, "rename"), Act::KillAfter));
    }
    steps
}

/// The steps named `names` (their text after the file name), all of them with [`full`].
fn last<'e>(events: &[&'e Event], syscall: &str) -> &'e Event {
    events.iter().rev().find(|e| e.syscall == syscall).copied().expect("a state save")
}

fn first<'e>(events: &[&'e Event], syscall: &str) -> &'e Event {
    events.iter().find(|e| e.syscall == syscall).copied().expect("a state save")
}

pub fn pick(steps: Vec<Fault>, names: &[&str]) -> Vec<Fault> {
    if full() {
        return steps;
    }
    let picked: Vec<Fault> = steps.into_iter().filter(|s| names.iter().any(|n| s.step.ends_with(n))).collect();
    assert_eq!(picked.len(), names.len(), "a named step was not found");
    picked
}
