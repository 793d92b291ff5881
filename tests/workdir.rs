//! A unique directory per test and the binary run inside it (after xsv's Workdir).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Workdir {
    pub dir: PathBuf,
    /// The fetcher threads of the binary run here (`API2CSV_FETCHERS`).
    fetchers: u8,
}

impl Workdir {
    /// A directory whose runs use one fetcher thread or two, by the hash of `name`:
    /// both pipelines run in every suite, whatever the machine would choose.
    pub fn new(name: &str) -> Workdir {
        let fetchers = 1 + (name.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 2) as u8;
        Workdir::with_fetchers(name, fetchers)
    }

    pub fn with_fetchers(name: &str, fetchers: u8) -> Workdir {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Workdir { dir, fetchers }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The binary, run in this directory, with no secrets from the environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_api2csv"));
        cmd.current_dir(&self.dir).args(args);
        for var in ["MAILERLITE_API_KEY", "PALIGO_USERNAME", "PALIGO_API_KEY", "RUST_LOG"] {
            cmd.env_remove(var);
        }
        // Retries back off from 5 ms, not 500: fault tests take seconds, not minutes.
        cmd.env("API2CSV_TEST_BACKOFF_MS", "5");
        cmd.env("API2CSV_FETCHERS", self.fetchers.to_string());
        cmd
    }

    pub fn output(&self, cmd: &mut Command) -> Output {
        cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    /// Runs `cmd`, which must succeed; returns its stdout.
    pub fn stdout(&self, cmd: &mut Command) -> String {
        let out = self.output(cmd);
        if !out.status.success() {
            panic!("{}", describe(cmd, &out));
        }
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `cmd`, which must fail with `status`; returns its stderr.
    pub fn fails(&self, cmd: &mut Command, status: i32) -> String {
        let out = self.output(cmd);
        if out.status.code() != Some(status) {
            panic!("expected exit status {status}\n{}", describe(cmd, &out));
        }
        String::from_utf8(out.stderr).unwrap()
    }

    /// Where a spawned command's stderr goes, appended to `stderr.log` in this directory:
    /// kept for a look after a failure, never mixed into `cargo test`'s own output, and
    /// never a pipe nobody reads (a chatty child would block on a full one).
    pub fn stderr_log(&self) -> fs::File {
        let path = self.path("stderr.log");
        fs::OpenOptions::new().create(true).append(true).open(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
    }

    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.path(rel);
        fs::write(&p, contents).unwrap();
        p
    }
}

/// Runs `cmd()` (a sync writing to `out/`) until it exits 0, SIGKILLing each run once
/// it has rewritten `out/state.json` (committed) a number of times that grows by one a
/// run: 1, 2, 3... Every run gets further than the one before, and how many kills land
/// does not hang on the machine's speed (a fixed delay let a release build finish
/// before the second kill). A run is killed at once when `kill_now()` says so (a test
/// hunting for a kill inside one table); `after_kill()` looks at the directory after
/// each kill. Returns the number of kills.
pub fn kill_until_done(
    wd: &Workdir,
    cmd: &dyn Fn() -> Command,
    kill_now: &mut dyn FnMut() -> bool,
    after_kill: &mut dyn FnMut(),
) -> usize {
    let state = wd.path("out/state.json");
    let mut kills = 0;
    loop {
        let mut last = fs::read(&state).unwrap_or_default();
        let mut child = cmd().stdout(Stdio::null()).stderr(wd.stderr_log()).spawn().unwrap();
        let mut commits = 0;
        while commits <= kills && child.try_wait().unwrap().is_none() && !kill_now() {
            std::thread::sleep(Duration::from_millis(1));
            let now = fs::read(&state).unwrap_or_default();
            if now != last {
                commits += 1;
                last = now;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "sync failed after {kills} kills");
            return kills;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        after_kill();
        assert!(kills < 300, "the sync never finished");
    }
}

/// Whether the tool `name` (sqlite3, python3, script) can be run. The README lists the
/// tools the tests use; a test that needs a missing one says so on the terminal and
/// passes, unless `API2CSV_TEST_TOOLS=required` (CI sets it), where it fails.
pub fn has_tool(name: &str, test: &str) -> bool {
    let found = Command::new(name).arg("--version").output().is_ok();
    if !found {
        let required = std::env::var("API2CSV_TEST_TOOLS").is_ok_and(|v| v == "required");
        assert!(!required, "{test} needs {name}, which is not installed (API2CSV_TEST_TOOLS=required)");
        // Straight to stderr: libtest captures print! and eprint!, and a skip must be seen.
        let _ = writeln!(std::io::stderr(), "skipped: {test} needs {name}, which is not installed");
    }
    found
}

pub fn describe(cmd: &Command, out: &Output) -> String {
    format!(
        "command: {cmd:?}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
