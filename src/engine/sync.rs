//! The sync engine: checks the directory and the credentials before writing
//! anything, finishes what an interrupted run left, then reads each stream of the
//! connector into its tables (see `read.rs`), committing after every page.
//!
//! The order of a run: look at the directory read only (a corrupt state, a file
//! edited or not ours: exit 2, nothing written); one request to prove the
//! credentials and learn the account (another account: exit 2); take the lock;
//! finish pending file replacements; then write.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::connector::{Connector, Def};
use crate::engine::read::Reader;
use crate::engine::session::{Ctx, Session};
use crate::engine::table::TableSummary;
use crate::error::{Error, Result};
use crate::net::http::{Client, Stats};
use crate::page::timestamp;
use crate::store::commit::Committer;
use crate::store::fsio::{create_out_dir, DirLock};
use crate::store::state::{Account, OutputOptions, Resume, Run, State, Target};
use crate::store::{replace, table_file, validate};
use crate::term::progress::Progress;
use crate::term::signal::Interrupt;

#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    /// Only these tables; all when `None`.
    pub tables: Option<Vec<String>>,
    pub full_refresh: bool,
    /// `--bom` / `--spreadsheet-safe` asked for (kept once a directory has them).
    pub output: OutputOptions,
    pub interrupt: Interrupt,
}

/// What a run did, for the summary, `last_sync.json` and the exit status.
#[derive(Debug, Clone)]
pub struct Report {
    pub started: Instant,
    pub started_at: String,
    /// The run changed the directory: an error now exits 1, never 2.
    pub wrote: bool,
    /// The directory was checked and is ours: `last_sync.json` may be written.
    pub dir_ready: bool,
    /// The directory existed with a state that passed the read-only checks: a run
    /// that fails after that (exit 1) records it in `last_sync.json`.
    pub dir_checked: bool,
    pub pages_committed: u64,
    pub tables: Vec<TableSummary>,
    /// The interrupted run this one continued: where it stood.
    pub resumed: Option<String>,
    pub stats: Stats,
    /// SHA-256 of the files the run wrote from their first byte, for the manifest.
    pub digests: crate::store::commit::Digests,
}

impl Default for Report {
    fn default() -> Report {
        Report {
            started: Instant::now(),
            started_at: timestamp::now(),
            wrote: false,
            dir_ready: false,
            dir_checked: false,
            pages_committed: 0,
            tables: Vec::new(),
            resumed: None,
            stats: Stats::default(),
            digests: Vec::new(),
        }
    }
}

/// Checks `--tables` against the connector's tables; their names, in table order.
pub fn select_tables(def: &Def, wanted: Option<&[String]>) -> Result<Vec<&'static str>> {
    let all: Vec<&'static str> = def.tables.iter().map(|t| t.name).collect();
    let Some(wanted) = wanted else { return Ok(all) };
    for w in wanted {
        if !all.contains(&w.as_str()) {
            let msg = format!("--tables: {} has no table {w:?} (it has {})", def.name, all.join(", "));
            return Err(Error::Usage(msg));
        }
    }
    let selected = all.into_iter().filter(|t| wanted.iter().any(|w| w == t)).collect();
    Ok(crate::connector::definition::with_parents(def, selected))
}

pub fn run(
    connector: &dyn Connector,
    client: &Client,
    opts: &Options,
    report: &mut Report,
    progress: &mut Progress,
) -> Result<()> {
    let def = connector.def();
    let dir = opts.dir.as_path();
    let selected = select_tables(def, opts.tables.as_deref())?;
    // Read only, before the credentials are even tried: what is there is ours.
    let existing = if dir.is_dir() { State::load(dir)? } else { None };
    // Every committed byte of the files this run may write is checked here, before
    // anything is written: later only the last commit is looked at again.
    let writes = tables_written(&selected, existing.as_ref());
    if dir.is_dir() {
        for p in validate::check_for_sync(dir, def, existing.as_ref(), true, &writes)? {
            log::warn!("{}; not synced until then", validate::refusal(dir, &p));
        }
    }
    // A directory that has its lock file is locked now, which writes nothing: the
    // line saying a run resumes comes first, and no other run starts meanwhile.
    let mut lock = None;
    if let Some(s) = &existing {
        crate::connector::definition::check_state(def, dir, s, opts.full_refresh)?;
        check_output(s, opts)?;
        if dir.join(crate::store::fsio::LOCK_NAME).exists() {
            lock = Some(DirLock::acquire(dir)?);
            announce_resume(&opts.dir, s, report, opts.full_refresh);
        }
        report.dir_checked = true;
    }
    let checked = connector.check(client)?;
    let account = Account { base_url: client.base_url().to_string(), id: checked.identity.clone() };
    if let Some(s) = &existing {
        validate::check_account(dir, s, &account)?;
    }
    create_out_dir(dir)?;
    let _lock = match lock {
        Some(l) => l,
        None => DirLock::acquire(dir)?,
    };
    // Again under the lock: another process may have written since the first look.
    let mut state = State::load(dir)?.unwrap_or_else(|| State::new(def.name));
    let known = Some(&state).filter(|s| !s.tables.is_empty() || s.run.is_some());
    validate::check_for_sync(dir, def, known, false, &tables_written(&selected, known))?;
    validate::check_account(dir, &state, &account)?;
    check_output(&state, opts)?;
    crate::connector::definition::check_state(def, dir, &state, opts.full_refresh)?;
    if report.resumed.is_none() {
        announce_resume(&opts.dir, &state, report, opts.full_refresh);
    }
    report.dir_ready = true;
    report.wrote = true;
    replace::recover(dir, &mut state)?;
    if state.upgraded {
        upgrade_checksums(dir, &mut state)?;
    }
    record_account(dir, &mut state, account);
    if opts.full_refresh || state.tables.values().all(|t| t.file.is_empty()) {
        state.output.bom |= opts.output.bom;
        state.output.spreadsheet_safe |= opts.output.spreadsheet_safe;
    }
    begin_run(def, connector, &mut state, selected, opts.full_refresh);
    prove_journals(dir, &mut state)?;
    restart_streams(connector, &mut state);
    crate::connector::definition::record_state(def, &mut state);
    state.save(dir)?;
    let ctx = Ctx { def, connector, client, dir, interrupt: &opts.interrupt, checked };
    let mut committer = Committer::start(dir.to_path_buf());
    let result = read_all(&ctx, &mut state, &mut committer, report, progress).map_err(stopped_working);
    let durable = committer.barrier();
    report.pages_committed = committer.committed;
    result?;
    durable?;
    report.digests = committer.finish()?;
    state.run = None;
    state.save(dir)
}

/// Records the account the API revealed (already checked to be this directory's):
/// a directory that knew none adopts it, with one line; an identity that stops coming
/// is a warning, and the one recorded stays.
fn record_account(dir: &Path, state: &mut State, account: Account) {
    let had = state.account.as_ref().and_then(|a| a.id.clone());
    let id = match (had, account.id) {
        (Some(had), None) => {
            log::warn!(
                "the API no longer says which account it serves; {} holds {had}, and the sync goes on with these credentials",
                dir.display()
            );
            Some(had)
        }
        (None, Some(now)) => {
            if !state.tables.is_empty() {
                log::info!("recording that {} holds {now}, the account the API now names", dir.display());
            }
            Some(now)
        }
        (_, now) => now,
    };
    state.account = Some(Account { base_url: account.base_url, id });
}

fn read_all(
    ctx: &Ctx,
    state: &mut State,
    committer: &mut Committer,
    report: &mut Report,
    progress: &mut Progress,
) -> Result<()> {
    let run = state.run.clone().expect("a run");
    let todo: Vec<&'static str> =
        ctx.def.tables.iter().map(|t| t.name).filter(|t| run.tables.iter().any(|r| r == t)).collect();
    for plan in ctx.connector.streams(&todo) {
        let pending: Vec<&'static str> =
            plan.tables.iter().copied().filter(|t| !run.done.iter().any(|d| d == t)).collect();
        for t in plan.tables.iter().filter(|t| !pending.contains(t)) {
            report.tables.push(TableSummary { table: t.to_string(), skipped: true, ..TableSummary::default() });
        }
        if pending.is_empty() {
            continue;
        }
        let mut session = Session { ctx, state: &mut *state, committer: &mut *committer, progress: &mut *progress };
        let mut reader = Reader::open(&mut session, &plan, &pending)?;
        let result = reader.run(&mut session);
        report.tables.extend(reader.summaries());
        result?;
    }
    Ok(())
}

/// The credentials were accepted when the run began: refused now, on any page or
/// show route of any table, the key stopped working during the sync.
fn stopped_working(e: Error) -> Error {
    match e {
        Error::Auth { url, status, message } => {
            Error::Auth { url, status, message: format!("{message} (the key stopped working during the sync)") }
        }
        e => e,
    }
}

/// The tables a sync of `selected` writes: those, and the ones an interrupted run it
/// continues has not finished.
fn tables_written<'a>(selected: &[&'a str], state: Option<&'a State>) -> Vec<&'a str> {
    let mut tables = selected.to_vec();
    if let Some(run) = state.and_then(|s| s.run.as_ref()) {
        let pending = run.tables.iter().filter(|t| !run.done.contains(t)).map(String::as_str);
        tables.extend(pending.filter(|t| !selected.contains(t)).collect::<Vec<_>>());
    }
    tables
}

/// The journals of keys read that the run continues must prove themselves (see
/// `seen.rs`). A table whose journal does not (deleted, damaged, another run's) reads
/// its listing again from the start, with a new journal: no key is taken for deleted
/// on the word of a journal that is not its own.
fn prove_journals(dir: &Path, state: &mut State) -> Result<()> {
    let Some(run) = state.run.clone() else { return Ok(()) };
    for t in run.tables.iter().filter(|t| !run.done.contains(t)) {
        let Some(table) = state.tables.get_mut(t.as_str()) else { continue };
        let Some(journal) = table.seen_len.filter(|j| j.len > 0) else { continue };
        let path = crate::store::seen::seen_path(dir, t);
        if crate::store::seen::proven(&path, &journal, run.id)?.is_none() {
            log::warn!(
                "{}: the journal of keys read does not match state.json (deleted, changed or from another run); reading {t} again from its start",
                path.display()
            );
            table.resume = None;
            table.seen_len = None;
        }
    }
    Ok(())
}

/// Tables read together from one stream resume together. When one of them has to
/// be read from the start (set aside by `repair`, its journal not proven, added to
/// an interrupted run) the whole stream starts again; the others meet their records
/// once more as repeats, so nothing is written twice.
fn restart_streams(connector: &dyn Connector, state: &mut State) {
    let Some(run) = state.run.clone() else { return };
    let pending: Vec<&'static str> = connector
        .def()
        .tables
        .iter()
        .map(|t| t.name)
        .filter(|t| run.tables.iter().any(|r| r == t) && !run.done.iter().any(|d| d == t))
        .collect();
    let mut restarted = false;
    for plan in connector.streams(&pending) {
        let tables: Vec<&str> = plan.tables.iter().copied().filter(|t| pending.contains(t)).collect();
        let fresh = tables.iter().any(|t| state.tables.get(*t).is_none_or(|s| s.resume.is_none()));
        let going = tables.iter().any(|t| state.tables.get(*t).is_some_and(|s| s.resume.is_some()));
        if fresh && going {
            for t in tables {
                let table = state.table(t);
                table.resume = None;
                table.seen_len = None;
            }
            restarted = true;
        }
    }
    if restarted {
        // What a connector counted over the pages of a stream is counted again.
        if let Some(run) = state.run.as_mut() {
            run.counts.clear();
        }
    }
}

/// `--bom` and `--spreadsheet-safe` change every file: on a directory written without
/// them they need `--full-refresh`, which rewrites everything.
fn check_output(state: &State, opts: &Options) -> Result<()> {
    let has_data = state.tables.values().any(|t| !t.file.is_empty());
    let wants = |flag: bool, has: bool| flag && !has;
    if has_data && !opts.full_refresh {
        for (flag, has, name) in [
            (opts.output.bom, state.output.bom, "--bom"),
            (opts.output.spreadsheet_safe, state.output.spreadsheet_safe, "--spreadsheet-safe"),
        ] {
            if wants(flag, has) {
                return Err(Error::Usage(format!(
                    "{name}: the files in {} were written without it; add --full-refresh to rewrite them with it",
                    opts.dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// Says that this run resumes an interrupted one, and where. A --full-refresh
/// replaces an interrupted run that was not one (see `begin_run`): no resuming then.
fn announce_resume(dir: &std::path::Path, state: &State, report: &mut Report, full_refresh: bool) {
    let resumed = state.run.as_ref().filter(|r| r.full_refresh || !full_refresh);
    report.resumed = resumed.map(|r| describe_resume(dir, state, r));
    if let Some(at) = &report.resumed {
        log::info!("resuming the sync interrupted at {at}");
    }
}

/// Where an interrupted run stood, for the first line of the run that resumes it.
fn describe_resume(dir: &std::path::Path, state: &State, run: &Run) -> String {
    let current = run.tables.iter().find(|t| !run.done.contains(t));
    let position = current.and_then(|t| state.tables.get(t)).and_then(|t| t.resume.as_ref());
    let at = match (current, position) {
        (Some(t), Some(Resume::Read(p))) => format!("{t}, {}", crate::engine::read::describe(p)),
        (Some(t), Some(Resume::Verify(_))) => format!("{t}, checking for deleted records"),
        (Some(t), Some(Resume::Confirm)) => format!("{t}, confirming deleted records"),
        (Some(t), None) => format!("{t}, at its start"),
        (None, _) => "its end".into(),
    };
    // It stopped at its last commit, the last write of state.json.
    let modified = std::fs::metadata(dir.join(crate::store::state::FILE_NAME)).and_then(|m| m.modified());
    let stopped =
        modified.map(|t| crate::page::timestamp::rfc3339(t.into())).unwrap_or_else(|_| run.started_at.clone());
    let (done, of) = (run.done.len(), run.tables.len());
    format!("{stopped} (it started at {}; {done} of {of} tables done; now {at})", run.started_at)
}

/// The run to carry out: a new one over `selected`, or the interrupted one, which
/// is finished first with any table of `selected` it lacked added to it (rebuilt if
/// this run asks for `--full-refresh`, else synced incrementally). A
/// `--full-refresh` replaces an interrupted run that was not one.
fn begin_run(def: &Def, connector: &dyn Connector, state: &mut State, selected: Vec<&'static str>, full: bool) {
    let interrupted = state.run.take();
    let run = match interrupted {
        Some(run) if full && !run.full_refresh => {
            log::warn!(
                "--full-refresh: the interrupted sync started at {} is replaced by a full refresh",
                run.started_at
            );
            new_run(def, state, selected, full)
        }
        Some(mut run) => {
            for t in &selected {
                if !run.tables.iter().any(|r| r == t) {
                    run.tables.push(t.to_string());
                    state.table(t).resume = None;
                    if full {
                        state.table(t).start_refresh();
                    }
                }
            }
            let order = |t: &String| def.tables.iter().position(|s| s.name == t);
            run.tables.sort_by_key(order);
            run
        }
        None => new_run(def, state, selected, full),
    };
    for t in &run.tables {
        let table = state.table(t);
        if table.file.is_empty() && table.last_complete_sync.is_none() && table.created_since.is_none() {
            table.created_since = connector.created_since(t);
        }
    }
    state.run = Some(run);
}

fn new_run(def: &Def, state: &mut State, selected: Vec<&'static str>, full: bool) -> Run {
    if full {
        let with_history: Vec<&str> =
            selected.iter().copied().filter(|t| state.tables.get(*t).is_some_and(|s| s.file.rows > 0)).collect();
        if !with_history.is_empty() {
            log::warn!(
                "--full-refresh replaces the history (changed rows and tombstones) of {} with one row per record",
                with_history.join(", ")
            );
        }
    }
    let all = selected.len() == def.tables.len();
    for t in &selected {
        let table = state.table(t);
        table.resume = None;
        table.seen_len = None;
        table.order = None;
        if full {
            table.start_refresh();
        } else {
            table.refresh = None;
        }
    }
    Run {
        started_at: timestamp::now(),
        id: std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), timestamp::now()),
        tables: selected.iter().map(|t| t.to_string()).collect(),
        done: Vec::new(),
        full_refresh: full,
        deletes: !full && all,
        counts: Default::default(),
    }
}

/// A state from an older api2csv kept no checksums: take them from the files now,
/// once they passed the length and header checks.
fn upgrade_checksums(dir: &Path, state: &mut State) -> Result<()> {
    for (name, table) in state.tables.iter_mut() {
        for target in [Target::Table, Target::Refresh] {
            let file = table.file_mut(target);
            if !file.is_empty() && (file.tail_start, file.tail_crc, file.crc) == (0, 0, 0) {
                table_file::checksum(&table_file::file_path(dir, name, target), file)?;
            }
        }
        if table.refresh.as_ref().is_some_and(|r| r.is_empty()) && table.resume.is_none() {
            table.refresh = None;
        }
    }
    state.upgraded = false;
    Ok(())
}
