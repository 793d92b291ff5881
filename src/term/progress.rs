//! Progress of a sync on stderr: a live line redrawn in place on a terminal, an `info`
//! log line every 30 s otherwise (cron), and one summary line per table.
//!
//! The engine calls [`Progress`] from its main thread after every page; a call that
//! prints nothing costs a clock read and a comparison. The live line and log lines
//! share stderr through `LiveLine`: the logger erases the live
//! line before writing its own, and the next [`Progress::update`] draws it again.

use std::io::{self, IsTerminal, Stderr, Write};
use std::time::{Duration, Instant};

use crate::term::live_line::{LiveLine, STDERR};

/// Redrawing a terminal line faster than this flickers and tells nothing more.
const LIVE_EVERY: Duration = Duration::from_millis(250);
/// Often enough to show in a cron log that a long table still moves, rarely enough to read it.
const PERIODIC_EVERY: Duration = Duration::from_secs(30);
/// The width assumed when the terminal does not tell (nor `COLUMNS`).
const DEFAULT_COLUMNS: usize = 80;
/// A label is never shortened below this many characters.
const MIN_LABEL: usize = 20;

/// The columns a live line may fill: one less than the terminal's width, as a line
/// that reaches the last column wraps on some terminals, and `\r` then redraws only
/// its last row. Asked on every draw, so a resized window is followed.
fn live_width() -> usize {
    terminal_columns()
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok().filter(|&c| c > 0))
        .unwrap_or(DEFAULT_COLUMNS)
        .saturating_sub(1)
        .max(20)
}

#[cfg(unix)]
fn terminal_columns() -> Option<usize> {
    rustix::termios::tcgetwinsize(io::stderr()).ok().map(|w| usize::from(w.ws_col)).filter(|&c| c > 0)
}

#[cfg(not(unix))]
fn terminal_columns() -> Option<usize> {
    None
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// stderr is a terminal: one line per table, redrawn in place.
    Live,
    /// stderr is a file or a pipe (cron): an `info` log line every 30 s.
    Periodic,
    /// `-q`: nothing.
    Off,
}

impl Mode {
    /// The mode for this process's stderr; `quiet` is `-q`.
    pub fn detect(quiet: bool) -> Mode {
        // Emacs' shell and other dumb terminals print `\x1b[K` as text.
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        match (quiet, io::stderr().is_terminal() && !dumb) {
            (true, _) => Mode::Off,
            (false, true) => Mode::Live,
            (false, false) => Mode::Periodic,
        }
    }
}

/// The counters of the table being read, as of its last page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub pages: u64,
    pub read: u64,
    /// Records of the table whose total the API announced, the first of its stream:
    /// the percentage and ETA compare these with it, never `read`, which also counts
    /// what the stream's other tables brought along (memberships with subscribers).
    pub counted: u64,
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub requests: u64,
    pub retries: u64,
    /// Time spent waiting for the API's rate limit.
    pub waited: Duration,
}

/// Shows the progress of a sync, table after table. `W` is stderr, except in tests.
pub struct Progress<W: Write = Stderr> {
    mode: Mode,
    out: W,
    line: &'static LiveLine,
    /// How often a live or periodic line may be shown.
    every: Duration,
    table: Option<Table>,
}

/// The table being read.
struct Table {
    name: String,
    total: Option<u64>,
    /// Records of the announced total read by the interrupted run this one resumes:
    /// they count in the percentage, not in this run's pace.
    before: u64,
    started: Instant,
    /// When the next live or periodic line is due.
    next: Instant,
}

impl Progress {
    /// Progress on stderr. `API2CSV_PROGRESS_INTERVAL_MS` shortens the periodic
    /// interval, for tests that cannot wait 30 s.
    pub fn new(mode: Mode) -> Progress {
        let mut p = Progress::with_output(mode, io::stderr(), &STDERR);
        let knob = std::env::var("API2CSV_PROGRESS_INTERVAL_MS").ok().and_then(|v| v.parse().ok());
        if let (Mode::Periodic, Some(ms)) = (mode, knob) {
            p.every = Duration::from_millis(ms);
        }
        p
    }
}

impl<W: Write> Progress<W> {
    fn with_output(mode: Mode, out: W, line: &'static LiveLine) -> Progress<W> {
        let every = if mode == Mode::Live { LIVE_EVERY } else { PERIODIC_EVERY };
        Progress { mode, out, line, every, table: None }
    }

    /// Starts showing `table`; `total` is the record count the API announced, if any.
    pub fn start_table(&mut self, table: &str, total: Option<u64>) {
        self.start_table_at(table, total, Instant::now());
    }

    /// Counts `records` read before a resume in the percentage and ETA of the table.
    pub fn resumed_after(&mut self, records: u64) {
        if let Some(t) = &mut self.table {
            t.before = records;
        }
    }

    /// Shows `s` if a line is due; call it after every page.
    pub fn update(&mut self, s: &Snapshot) {
        if self.mode != Mode::Off {
            self.update_at(s, Instant::now());
        }
    }

    /// Prints the summary line of the table, in place of its live line.
    pub fn finish_table(&mut self, s: &Snapshot) {
        self.finish_table_at(s, Instant::now());
    }

    fn start_table_at(&mut self, name: &str, total: Option<u64>, now: Instant) {
        let t = Table { name: name.to_owned(), total, before: 0, started: now, next: now + self.every };
        if self.mode == Mode::Live {
            // Right away: the first page may take seconds behind a rate limit.
            self.line.draw(&mut self.out, &t.live_text(&Snapshot::default(), now, live_width()), false);
        }
        self.table = Some(t);
    }

    /// Shows `s` if a line is due at `now`, and says whether it did.
    fn update_at(&mut self, s: &Snapshot, now: Instant) -> bool {
        let Some(t) = &mut self.table else { return false };
        // A log line erased the live line: a terminal without it looks stalled.
        let erased = self.mode == Mode::Live && !self.line.is_shown();
        if now < t.next && !erased {
            return false;
        }
        t.next = now + self.every;
        match self.mode {
            Mode::Live => self.line.draw(&mut self.out, &t.live_text(s, now, live_width()), false),
            Mode::Periodic => log::info!("{}", t.periodic_text(s, now)),
            Mode::Off => return false,
        }
        true
    }

    fn finish_table_at(&mut self, s: &Snapshot, now: Instant) {
        let Some(t) = self.table.take() else { return };
        let summary = summary_line(&t.name, s, now.saturating_duration_since(t.started));
        match self.mode {
            Mode::Live => self.line.draw(&mut self.out, &summary, true),
            Mode::Periodic => log::info!("{summary}"),
            Mode::Off => {}
        }
    }
}

impl<W: Write> Drop for Progress<W> {
    /// A table left unfinished (an error, an interrupt) keeps its last figures on a line
    /// of its own, so the error line that follows does not land on the live line.
    fn drop(&mut self) {
        if self.mode == Mode::Live && self.table.is_some() {
            drop(self.line.end(&mut self.out, b"\n"));
        }
    }
}

impl Table {
    /// `40%  ETA 0:54  subscriber  120 pages  12000 rows  3400/s  waited 12s  2 retries`,
    /// within `width` columns: what tells how long is left first, then the label
    /// (shortened with `…` when the line is too long), then the figures that fit.
    fn live_text(&self, s: &Snapshot, now: Instant, width: usize) -> String {
        let mut figures = self.figures(s, now);
        let lead = figures.iter().take_while(|f| f.ends_with('%') || f.starts_with("ETA ")).count();
        let lead = figures.drain(..lead).collect::<Vec<_>>();
        let fixed = |figures: &[String]| lead.iter().chain(figures).map(|f| f.chars().count() + 2).sum::<usize>();
        let room = width.saturating_sub(fixed(&figures));
        let label = shorten(&self.name, room.max(MIN_LABEL));
        while figures.len() > 2 && fixed(&figures) + label.chars().count() > width {
            figures.pop();
        }
        let line = lead.into_iter().chain([label]).chain(figures).collect::<Vec<_>>().join("  ");
        line.chars().take(width).collect()
    }

    /// `subscriber: 120 pages, 12000 rows, 3400/s, 40%, ETA 0:54, waited 12s, 2 retries`
    /// A log line has no width to fit: its figures keep the order of the summary.
    fn periodic_text(&self, s: &Snapshot, now: Instant) -> String {
        let mut f = self.figures(s, now);
        let lead = f.iter().take_while(|f| f.ends_with('%') || f.starts_with("ETA ")).count();
        let read = 2 + usize::from(f.get(lead + 2).is_some_and(|r| r.ends_with("/s")));
        f[..lead + read].rotate_left(lead);
        format!("{}: {}", self.name, f.join(", "))
    }

    /// Most telling first, as a narrow terminal cuts the tail.
    fn figures(&self, s: &Snapshot, now: Instant) -> Vec<String> {
        let mut f = Vec::new();
        let secs = now.saturating_duration_since(self.started).as_secs_f64();
        if let Some(total) = self.total.filter(|&t| t > 0) {
            // An announced total can be stale: never past 100%, no ETA once reached.
            let counted = self.before + s.counted;
            f.push(format!("{}%", counted.min(total).saturating_mul(100) / total));
            let pace = if secs > 0.0 { s.counted as f64 / secs } else { 0.0 };
            let eta = || clock(((total - counted) as f64 / pace).round() as u64);
            f.extend((pace > 0.0 && counted < total).then(|| format!("ETA {}", eta())));
        }
        f.extend([count(s.pages, "page", "pages"), format!("{} rows", s.read)]);
        let rate = if secs > 0.0 { s.read as f64 / secs } else { 0.0 };
        f.extend((rate > 0.0).then(|| format!("{rate:.0}/s")));
        f.extend((!s.waited.is_zero()).then(|| format!("waited {}", whole(s.waited))));
        f.extend((s.retries > 0).then(|| count(s.retries, "retry", "retries")));
        f
    }
}

/// `subscriber: read 5000, new 12, changed 3, unchanged 4985, deleted 1, 50 pages,
/// 51 requests, 2 retries, waited 0s, took 1.6s`
fn summary_line(table: &str, s: &Snapshot, took: Duration) -> String {
    let took = if took < Duration::from_secs(60) { format!("{:.1}s", took.as_secs_f64()) } else { whole(took) };
    let Snapshot { read, new, changed, unchanged, deleted, .. } = *s;
    let (pages, requests) = (count(s.pages, "page", "pages"), count(s.requests, "request", "requests"));
    let (retries, waited) = (count(s.retries, "retry", "retries"), whole(s.waited));
    format!(
        "{table}: read {read}, new {new}, changed {changed}, unchanged {unchanged}, deleted {deleted}, \
         {pages}, {requests}, {retries}, waited {waited}, took {took}"
    )
}

/// `label` in at most `max` characters: `subscriber + group + group_subscriber`
/// becomes `subscriber + group + grou…`.
fn shorten(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        return label.to_string();
    }
    label.chars().take(max.saturating_sub(1)).chain(['…']).collect()
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A countdown, as clocks show it: `0:54`, `1:02:03`.
fn clock(secs: u64) -> String {
    match secs / 3600 {
        0 => format!("{}:{:02}", secs / 60, secs % 60),
        h => format!("{h}:{:02}:{:02}", secs / 60 % 60, secs % 60),
    }
}

/// A span in whole seconds: `12s`, `3m05s`, `1h02m03s`.
fn whole(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs / 60 % 60) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{:02}s", secs % 60),
        (h, m) => format!("{h}h{m:02}m{:02}s", secs % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(mode: Mode) -> Progress<Vec<u8>> {
        // Each test its own line: tests run in parallel, and the real one is stderr's.
        Progress::with_output(mode, Vec::new(), Box::leak(Box::new(LiveLine::new())))
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn live_line_redraws_at_most_four_times_a_second() {
        let (mut p, t0) = (progress(Mode::Live), Instant::now());
        p.start_table_at("subscriber", None, t0);
        let drawn: Vec<u64> = (1..=1000).filter(|&i| p.update_at(&Snapshot::default(), at(t0, i * 10))).collect();
        assert_eq!(drawn.len(), 40, "every 10 ms for 10 s: {drawn:?}");
        assert!(drawn.windows(2).all(|w| w[1] - w[0] >= 25), "{drawn:?}");
        assert_eq!(p.out.iter().filter(|&&b| b == b'\r').count(), 41, "the first line is drawn at once");
    }

    #[test]
    fn periodic_lines_come_every_30_seconds_and_only_as_log_lines() {
        let (mut p, t0) = (progress(Mode::Periodic), Instant::now());
        p.start_table_at("subscriber", Some(100), t0);
        let logged: Vec<u64> = (1..=100).filter(|&i| p.update_at(&Snapshot::default(), at(t0, i * 1000))).collect();
        assert_eq!(logged, [30, 60, 90]);
        p.finish_table_at(&Snapshot::default(), at(t0, 100_000));
        assert!(p.out.is_empty());
    }

    #[test]
    fn off_prints_nothing() {
        let (mut p, t0) = (progress(Mode::Off), Instant::now());
        p.start_table_at("subscriber", None, t0);
        assert!(!p.update_at(&Snapshot::default(), at(t0, 60_000)));
        p.finish_table_at(&Snapshot::default(), at(t0, 60_000));
        assert!(p.out.is_empty());
    }

    #[test]
    fn a_log_line_erases_the_live_line_and_the_next_update_redraws_it() {
        let (mut p, t0) = (progress(Mode::Live), Instant::now());
        p.start_table_at("group", None, t0);
        let mut log = Vec::new();
        drop(p.line.erase(&mut log));
        assert_eq!(log, b"\r\x1b[K");
        assert!(p.update_at(&Snapshot::default(), at(t0, 10)), "redrawn before the throttle allows");
        assert!(!p.update_at(&Snapshot::default(), at(t0, 20)), "then throttled again");
    }

    #[test]
    fn finish_replaces_the_live_line_with_the_summary() {
        let (mut p, t0) = (progress(Mode::Live), Instant::now());
        p.start_table_at("field", None, t0);
        p.finish_table_at(&Snapshot { pages: 1, read: 3, new: 3, requests: 1, ..Snapshot::default() }, at(t0, 1600));
        let summary = "field: read 3, new 3, changed 0, unchanged 0, deleted 0, 1 page, 1 request, 0 retries, waited 0s, took 1.6s";
        assert!(p.out.ends_with(format!("\r{summary}\x1b[K\n").as_bytes()));
    }

    #[test]
    fn an_unfinished_table_keeps_its_line_above_what_follows() {
        let mut out = Vec::new();
        let line = Box::leak(Box::new(LiveLine::new()));
        Progress::with_output(Mode::Live, &mut out, line).start_table_at("users", None, Instant::now());
        assert!(out.starts_with(b"\rusers  0 pages  0 rows\x1b[K"));
        assert!(out.ends_with(b"\x1b[K\n"));
    }

    #[test]
    fn figures_show_rate_percent_eta_wait_and_retries() {
        let t0 = Instant::now();
        let t = Table { name: "subscriber".into(), total: Some(10_000), before: 0, started: t0, next: t0 };
        let s = Snapshot { pages: 40, read: 4000, counted: 4000, ..Snapshot::default() };
        let s = Snapshot { retries: 2, waited: Duration::from_secs(12), ..s };
        let live = "40%  ETA 0:15  subscriber  40 pages  4000 rows  400/s  waited 12s  2 retries";
        assert_eq!(t.live_text(&s, at(t0, 10_000), 79), live);
        let periodic = "subscriber: 40 pages, 4000 rows, 400/s, 40%, ETA 0:15, waited 12s, 2 retries";
        assert_eq!(t.periodic_text(&s, at(t0, 10_000)), periodic);
        let stale = Snapshot { pages: 121, read: 12_000, counted: 12_000, ..Snapshot::default() };
        assert_eq!(t.live_text(&stale, at(t0, 4000), 79), "100%  subscriber  121 pages  12000 rows  3000/s");
        // Two memberships came with each subscriber: 4000 of 10 000 is still 40%.
        let stream = Snapshot { pages: 40, read: 12_000, counted: 4000, ..Snapshot::default() };
        assert_eq!(t.live_text(&stream, at(t0, 10_000), 79), "40%  ETA 0:15  subscriber  40 pages  12000 rows  1200/s");
        let t = Table { name: "group".into(), total: None, before: 0, started: t0, next: t0 };
        assert_eq!(
            t.live_text(&Snapshot { pages: 1, read: 100, ..Snapshot::default() }, t0, 79),
            "group  1 page  100 rows"
        );
        let t = Table { name: "x".repeat(100), total: None, before: 0, started: t0, next: t0 };
        assert_eq!(t.live_text(&Snapshot::default(), t0, 79).chars().count(), 79);
    }

    #[test]
    fn records_read_before_a_resume_count_in_the_percentage_not_the_pace() {
        let t0 = Instant::now();
        let t = Table { name: "subscriber".into(), total: Some(3000), before: 2000, started: t0, next: t0 };
        let s = Snapshot { pages: 5, read: 500, counted: 500, ..Snapshot::default() };
        // 2500 of 3000 read; 500 in 10 s by this run: 500 left take 10 s.
        assert_eq!(t.live_text(&s, at(t0, 10_000), 79), "83%  ETA 0:10  subscriber  5 pages  500 rows  50/s");
    }

    #[test]
    fn a_long_label_is_shortened_so_the_eta_stays_whole() {
        let t0 = Instant::now();
        let name = "subscriber + group + group_subscriber".to_string();
        let t = Table { name, total: Some(100_000), before: 0, started: t0, next: t0 };
        let s = Snapshot { pages: 1234, read: 123_400, counted: 41_000, ..Snapshot::default() };
        let s = Snapshot { retries: 12, waited: Duration::from_secs(754), ..s };
        let wide = t.live_text(&s, at(t0, 100_000), 119);
        assert_eq!(
            wide,
            "41%  ETA 2:24  subscriber + group + group_subscriber  1234 pages  123400 rows  1234/s  waited 12m34s  12 retries"
        );
        let narrow = t.live_text(&s, at(t0, 100_000), 79);
        assert_eq!(narrow, "41%  ETA 2:24  subscriber + group …  1234 pages  123400 rows  1234/s");
        let tiny = t.live_text(&s, at(t0, 100_000), 39);
        assert!(tiny.starts_with("41%  ETA 2:24  subscriber "), "{tiny}");
        assert!(tiny.chars().count() <= 39, "{tiny}");
    }

    #[test]
    fn summary_line_holds_every_figure() {
        let s =
            Snapshot { pages: 50, read: 5000, new: 12, changed: 3, unchanged: 4985, deleted: 1, ..Snapshot::default() };
        let s = Snapshot { requests: 51, retries: 2, waited: Duration::from_millis(400), ..s };
        let line = "subscriber: read 5000, new 12, changed 3, unchanged 4985, deleted 1, 50 pages, 51 requests, 2 retries, waited 0s";
        assert_eq!(summary_line("subscriber", &s, Duration::from_millis(1640)), format!("{line}, took 1.6s"));
        assert_eq!(summary_line("subscriber", &s, Duration::from_secs(125)), format!("{line}, took 2m05s"));
    }

    #[test]
    fn durations_read_like_clocks() {
        assert_eq!([clock(0), clock(54), clock(754), clock(3723)], ["0:00", "0:54", "12:34", "1:02:03"]);
        let spans = [0, 12, 185, 3723].map(|s| whole(Duration::from_secs(s)));
        assert_eq!(spans, ["0s", "12s", "3m05s", "1h02m03s"]);
    }
}
