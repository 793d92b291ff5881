//! Faults injected into the real binary with strace: SIGKILL on entering a syscall
//! (it never runs), SIGKILL right after one returned (strace stalls the thread on its
//! way out and the test kills the process), or ENOSPC instead of it.
//!
//! strace counts a syscall per thread (`when=N` is each thread's Nth call), and with
//! `-P` only the calls that touch one of the given paths. A fault is therefore "the
//! `nth` call of `syscall` on `file` by the thread named `thread`" (the main thread,
//! the committer, a fetcher: strace's `-Y` prints each thread's name), and [`trace`]
//! with the same paths finds `nth` for a step in a clean run. Every injected run
//! checks from its own trace that the fault fired, and on that call of that thread on
//! that file: a test whose fault hit another thread's call, or never fired, fails; it
//! never passes by luck.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// The strace binary. CI installs it (`.ci/run`); without it these tests fail, they
/// never skip silently.
pub fn strace() -> &'static str {
    ["/usr/bin/strace", "/bin/strace", "/usr/local/bin/strace"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("strace is not installed: the crash tests need it (apt-get install strace; .ci/run does)")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// SIGKILL on entering the call: it does not happen.
    Kill,
    /// SIGKILL once the call has returned.
    KillAfter,
    /// The call fails with ENOSPC.
    Enospc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thread {
    Main,
    /// The thread named `committer`.
    Committer,
    /// Any other (a fetcher).
    Other,
}

/// One syscall as a traced run made it.
#[derive(Debug, Clone)]
pub struct Event {
    pub main: bool,
    pub tid: u32,
    /// The thread's name, as strace's `-Y` prints it.
    pub comm: String,
    pub syscall: String,
    /// The whole line, paths decoded (`-y`).
    pub text: String,
    /// Which call of `syscall` by its thread this is, from 1: what `when=` counts.
    pub nth: usize,
}

impl Event {
    pub fn thread(&self) -> Thread {
        match (self.main, self.comm.as_str()) {
            (true, _) => Thread::Main,
            (false, "committer") => Thread::Committer,
            _ => Thread::Other,
        }
    }

    /// True if the call touches a file whose name ends with `suffix`.
    pub fn on(&self, suffix: &str) -> bool {
        self.text.contains(&format!("{suffix}\"")) || self.text.contains(&format!("{suffix}>"))
    }
}

/// A fault at one step of a run.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What the step is, for messages.
    pub step: String,
    pub syscall: String,
    /// Only calls touching these are counted (`-P`).
    pub paths: Vec<PathBuf>,
    pub nth: usize,
    pub thread: Thread,
    /// The end of the path of the file the call touches (`/subscriber.csv`).
    pub file: String,
    pub act: Act,
}

impl Fault {
    /// The fault `act` at traced call `event`, counted over `paths`.
    pub fn at(step: &str, event: &Event, paths: &[PathBuf], act: Act) -> Fault {
        let names = paths.iter().map(|p| format!("/{}", p.file_name().unwrap().to_string_lossy()));
        let file = names.filter(|n| event.on(n)).max_by_key(String::len);
        let file = file.unwrap_or_else(|| panic!("{step}: the call touches none of {paths:?}: {}", event.text));
        Fault {
            file,
            step: step.to_string(),
            syscall: event.syscall.clone(),
            paths: paths.to_vec(),
            nth: event.nth,
            thread: event.thread(),
            act,
        }
    }

    fn inject(&self) -> String {
        let what = match self.act {
            Act::Kill => "signal=SIGKILL",
            Act::KillAfter => "delay_exit=60s",
            Act::Enospc => "error=ENOSPC",
        };
        format!("inject={}:{what}:when={}", self.syscall, self.nth)
    }
}

/// What a run under strace did.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub events: Vec<Event>,
}

impl Run {
    pub fn killed(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.status.signal() == Some(9) || self.status.code() == Some(137)
    }

    pub fn describe(&self) -> String {
        format!("status: {}\nstdout:\n{}\nstderr:\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Runs `cmd` under strace, logging `syscalls` on `paths`.
pub fn trace(cmd: &Command, paths: &[PathBuf], syscalls: &[&str], log: &Path) -> Run {
    let run = traced(cmd, paths, &format!("trace=execve,{}", syscalls.join(",")), None, log);
    assert!(run.status.success(), "the clean run failed\n{}", run.describe());
    run
}

/// Runs `cmd` with `fault`, and checks that it landed on the call it was meant for.
pub fn inject(cmd: &Command, fault: &Fault, log: &Path) -> Run {
    let trace = format!("trace=execve,{}", fault.syscall);
    let run = traced(cmd, &fault.paths, &trace, Some(fault), log);
    let mark = match fault.act {
        Act::Kill => " = ?",
        Act::KillAfter => "(DELAYED)",
        Act::Enospc => "ENOSPC",
    };
    let hit = run.events.iter().find(|e| e.syscall == fault.syscall && e.text.contains(mark));
    let landed = hit.is_some_and(|e| e.nth == fault.nth && e.thread() == fault.thread && e.on(&fault.file));
    if !landed {
        let log: Vec<&str> = run.events.iter().map(|e| e.text.as_str()).collect();
        panic!(
            "fault {:?} ({}) did not land where meant: hit {:?}\n{}\nlog:\n{}",
            fault.step,
            fault.inject(),
            hit.map(|e| &e.text),
            run.describe(),
            log.join("\n")
        );
    }
    if matches!(fault.act, Act::Kill | Act::KillAfter) {
        assert!(run.killed(), "{}: not killed\n{}", fault.step, run.describe());
    }
    run
}

fn traced(cmd: &Command, paths: &[PathBuf], trace: &str, fault: Option<&Fault>, log: &Path) -> Run {
    let program = PathBuf::from(cmd.get_program());
    let mut s = Command::new(strace());
    s.args(["-f", "-qq", "-y", "-Y", "-s", "48", "-o"]).arg(log);
    for p in paths.iter().chain([&program]) {
        s.arg("-P").arg(p);
    }
    s.args(["-e", trace]);
    if let Some(f) = fault {
        s.args(["-e", &f.inject()]);
    }
    s.arg("--").arg(&program).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        s.current_dir(dir);
    }
    let (out, err) = (log.with_extension("stdout"), log.with_extension("stderr"));
    s.stdout(File::create(&out).unwrap()).stderr(File::create(&err).unwrap());
    let mut child = s.spawn().unwrap_or_else(|e| panic!("cannot run strace: {e}"));
    let mut killed_pid = None;
    if fault.is_some_and(|f| f.act == Act::KillAfter) {
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let text = fs::read_to_string(log).unwrap_or_default();
            if text.contains("(DELAYED)") {
                let pid = parse(&text).iter().find(|e| e.main).map(|e| e.tid).expect("the execve line");
                let killed = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
                assert!(killed.success(), "kill -9 {pid} failed");
                // The tracee runs no more code once SIGKILL is queued; strace would sit
                // out its delay before reaping it, so it goes too.
                let _ = child.kill();
                killed_pid = Some(pid);
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the delayed call never came");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let status = child.wait().unwrap();
    if let Some(pid) = killed_pid {
        wait_gone(pid);
    }
    let events = parse(&fs::read_to_string(log).unwrap());
    let stdout = fs::read_to_string(out).unwrap();
    let stderr = fs::read_to_string(err).unwrap();
    Run { status, stdout, stderr, events }
}

/// Waits until process `pid` has exited (gone, or a zombie: either way its files,
/// and so the directory lock, are closed). Without strace to reap it, a killed
/// tracee can outlive strace by a moment under load.
fn wait_gone(pid: u32) {
    let started = Instant::now();
    loop {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let zombie = status.lines().any(|l| l.starts_with("State:") && l.contains('Z'));
        if status.is_empty() || zombie {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "process {pid} outlived its SIGKILL");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The calls of an strace `-f` log, each with its per-thread count; the thread that
/// ran execve is the main one.
fn parse(log: &str) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    let mut main = None;
    for line in log.lines() {
        let Some((tid, rest)) = line.split_once(char::is_whitespace) else { continue };
        // `1234<committer>`: the thread id and its name (`-Y`).
        let (tid, comm) = tid.split_once('<').map_or((tid, ""), |(t, c)| (t, c.trim_end_matches('>')));
        let Ok(tid) = tid.parse::<u32>() else { continue };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            // The end of a call another thread's line interrupted.
            if let Some(e) = events.iter_mut().rev().find(|e| e.tid == tid) {
                e.text.push_str(resumed);
            }
            continue;
        }
        let Some((syscall, _)) = rest.split_once('(') else { continue };
        if !syscall.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if syscall == "execve" {
            main.get_or_insert(tid);
        }
        let nth = 1 + events.iter().filter(|e| e.tid == tid && e.syscall == syscall).count();
        let (main, comm, syscall, text) = (main == Some(tid), comm.to_string(), syscall.to_string(), line.to_string());
        events.push(Event { main, tid, comm, syscall, text, nth });
    }
    events
}
