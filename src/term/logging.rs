//! Logging to stderr: levels from `-q` / `-v` / `-vv`, and one line format for all.
//!
//! Every line reads `2026-11-27T16:45:03Z warning: <message>` (UTC, whole seconds), so
//! a cron log can be read and grepped alike; a line from another crate names its target
//! after the level (`debug: ureq::unversioned::transport: ...`). `RUST_LOG`, when set,
//! replaces the levels chosen here entirely (`RUST_LOG=api2csv=trace,ureq=debug`).
//! The level word is coloured only when stderr is a terminal (`NO_COLOR` and
//! `RUST_LOG_STYLE=never` turn that off too).
//!
//! Each line first erases the live progress line ([`crate::term::live_line`]), which the next
//! progress update draws again, so log lines never mix into it.

use std::fmt::Display;
use std::io::{self, Write};

use env_logger::fmt::style::Style;
use log::{Level, Log, Metadata, Record};
use time::OffsetDateTime;

use crate::term::live_line;

/// How much the binary says on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    /// No flag: what a sync does, and warnings.
    Normal,
    /// `-v`: our debug lines too.
    Verbose,
    /// `-vv`: our trace lines, and the debug lines of the crates we use.
    Debug,
}

impl Verbosity {
    /// The verbosity of `-q` and of `-v` given `verbose` times; `-q` wins.
    pub fn from_flags(quiet: bool, verbose: u8) -> Verbosity {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Verbose,
            (false, _) => Verbosity::Debug,
        }
    }

    /// The `RUST_LOG`-style filter for this verbosity. Dependencies stay at `warn` below
    /// `-vv`: their debug lines are about their own machinery, not about the sync.
    fn filters(self) -> &'static str {
        match self {
            Verbosity::Quiet => "error",
            Verbosity::Normal => "warn,api2csv=info",
            Verbosity::Verbose => "warn,api2csv=debug",
            Verbosity::Debug => "debug,api2csv=trace",
        }
    }
}

/// Sends log lines to stderr at verbosity `v`, unless `RUST_LOG` says otherwise. Only the
/// first call in a process counts: a logger cannot be replaced once set.
pub fn init(v: Verbosity) {
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(v.filters()))
        .format(|buf, record| {
            let style = buf.default_level_style(record.level());
            write_line(buf, OffsetDateTime::now_utc(), record.level(), record.target(), record.args(), style)
        })
        .build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(SharesStderr(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// env_logger's logger, writing each line only once the live progress line is erased.
struct SharesStderr(env_logger::Logger);

/// True for lines that may hold a secret whatever `RUST_LOG` says: the HTTP
/// library's trace lines dump raw requests, `Authorization` header included.
fn secret_bearing(metadata: &Metadata<'_>) -> bool {
    metadata.level() == Level::Trace && metadata.target().starts_with("ureq")
}

impl Log for SharesStderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata) && !secret_bearing(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.0.matches(record) && !secret_bearing(record.metadata()) {
            // Held until the line is out, so progress cannot draw between erase and write.
            // A message whose `Display` logs would wait on itself here; none of ours does.
            let _erased = live_line::STDERR.erase(&mut io::stderr());
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Writes one log line: `2026-11-27T16:45:03Z warning: <message>`, with `target`
/// before the message when the line comes from another crate. `style` colours the
/// level word; a plain style writes no escape codes.
fn write_line(
    out: &mut impl Write,
    at: OffsetDateTime,
    level: Level,
    target: &str,
    message: &dyn Display,
    style: Style,
) -> io::Result<()> {
    let stamp = crate::page::timestamp::rfc3339(at);
    write!(out, "{stamp} {style}{}{style:#}: ", level_word(level))?;
    if !is_ours(target) {
        write!(out, "{target}: ")?;
    }
    writeln!(out, "{message}")
}

/// The level as people say it: `warning`, not `WARN`.
fn level_word(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// Whether `target` is this crate (library or binary), whose lines need no name.
fn is_ours(target: &str) -> bool {
    target.strip_prefix("api2csv").is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use env_logger::fmt::style::AnsiColor;
    use time::macros::datetime;

    fn line(level: Level, target: &str, message: &str, style: Style) -> String {
        let mut out = Vec::new();
        let at = datetime!(2026-11-27 17:45:03.987 +01:00);
        write_line(&mut out, at, level, target, &message, style).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_start_with_utc_whole_seconds_and_the_level_word() {
        let plain = Style::new();
        let warning = line(Level::Warn, "api2csv::engine::sync", "subscriber: 3 rows skipped", plain);
        assert_eq!(warning, "2026-11-27T16:45:03Z warning: subscriber: 3 rows skipped\n");
        assert_eq!(line(Level::Error, "api2csv", "disk full", plain), "2026-11-27T16:45:03Z error: disk full\n");
        let words = [Level::Info, Level::Debug, Level::Trace].map(|l| line(l, "api2csv", "m", plain));
        assert_eq!(
            words,
            ["2026-11-27T16:45:03Z info: m\n", "2026-11-27T16:45:03Z debug: m\n", "2026-11-27T16:45:03Z trace: m\n"]
        );
    }

    #[test]
    fn lines_from_other_crates_name_their_target() {
        let debug = line(Level::Debug, "ureq::unversioned::transport", "connected", Style::new());
        assert_eq!(debug, "2026-11-27T16:45:03Z debug: ureq::unversioned::transport: connected\n");
        let lookalike = line(Level::Info, "api2csv_extra", "m", Style::new());
        assert_eq!(lookalike, "2026-11-27T16:45:03Z info: api2csv_extra: m\n");
    }

    #[test]
    fn only_the_level_word_is_coloured() {
        let red = AnsiColor::Red.on_default();
        assert_eq!(line(Level::Error, "api2csv", "m", red), format!("2026-11-27T16:45:03Z {red}error{red:#}: m\n"));
        assert!(!line(Level::Error, "api2csv", "m", Style::new()).contains('\x1b'));
    }

    #[test]
    fn flags_choose_the_verbosity() {
        assert_eq!(Verbosity::from_flags(true, 2), Verbosity::Quiet);
        let counts = [0, 1, 2, 3].map(|n| Verbosity::from_flags(false, n));
        assert_eq!(counts, [Verbosity::Normal, Verbosity::Verbose, Verbosity::Debug, Verbosity::Debug]);
    }

    /// The most detailed level each verbosity lets through for our lines and for ureq's.
    fn levels(v: Verbosity) -> [Option<Level>; 2] {
        let logger = env_logger::Builder::new().parse_filters(v.filters()).build();
        ["api2csv::engine::sync", "ureq::unversioned::transport"].map(|target| {
            let enabled = |level| logger.enabled(&Metadata::builder().level(level).target(target).build());
            [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error].into_iter().find(|&l| enabled(l))
        })
    }

    #[test]
    fn each_verbosity_lets_through_its_levels() {
        assert_eq!(levels(Verbosity::Quiet), [Some(Level::Error), Some(Level::Error)]);
        assert_eq!(levels(Verbosity::Normal), [Some(Level::Info), Some(Level::Warn)]);
        assert_eq!(levels(Verbosity::Verbose), [Some(Level::Debug), Some(Level::Warn)]);
        assert_eq!(levels(Verbosity::Debug), [Some(Level::Trace), Some(Level::Debug)]);
    }
}
