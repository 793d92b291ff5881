//! The live progress line's share of stderr, and the lock every stderr line takes.
//!
//! A live line is drawn with `\r` and no newline, so anything else written to stderr
//! would land at its end. Both writers go through one [`LiveLine`]: the logger erases
//! the line before each log line ([`LiveLine::erase`]), and progress draws it again
//! on its next update, seeing that it is gone.

use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Whether a live line is on stderr's last row. Its lock is held across every write of
/// the live line and of a log line, so a log line from another thread (the in-process
/// mock) never lands inside a redraw.
pub(crate) struct LiveLine(Mutex<bool>);

/// The live line of this process's stderr, shared with the logger.
pub(crate) static STDERR: LiveLine = LiveLine::new();

impl LiveLine {
    pub(crate) const fn new() -> LiveLine {
        LiveLine(Mutex::new(false))
    }

    /// Erases the live line from `out`, if one is shown, to make room for a log line;
    /// the returned guard keeps progress from drawing until that line is written.
    pub(crate) fn erase(&self, out: &mut impl Write) -> MutexGuard<'_, bool> {
        self.end(out, b"\r\x1b[K")
    }

    /// Ends a shown live line by writing `with`.
    pub(super) fn end(&self, out: &mut impl Write, with: &[u8]) -> MutexGuard<'_, bool> {
        let mut shown = self.lock();
        if *shown {
            // Nowhere to report a failed write to stderr, and it must not fail the sync.
            let _ = out.write_all(with).and_then(|()| out.flush());
            *shown = false;
        }
        shown
    }

    /// Draws `text` over the live line; `done` ends it with a newline, leaving `text`
    /// as an ordinary line.
    pub(super) fn draw(&self, out: &mut impl Write, text: &str, done: bool) {
        let mut shown = self.lock();
        // One write: stderr is unbuffered, and pieces would show as they come.
        let line = format!("\r{text}\x1b[K{}", if done { "\n" } else { "" });
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        *shown = !done;
    }

    pub(super) fn is_shown(&self) -> bool {
        *self.lock()
    }

    fn lock(&self) -> MutexGuard<'_, bool> {
        // A panic while writing leaves the flag as good as it was.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erased(line: &LiveLine) -> Vec<u8> {
        let mut out = Vec::new();
        drop(line.erase(&mut out));
        out
    }

    #[test]
    fn a_log_line_erases_a_shown_line_once() {
        let (line, mut out) = (LiveLine::new(), Vec::new());
        assert_eq!(erased(&line), b"", "nothing drawn yet");
        line.draw(&mut out, "group  1 page  100 rows", false);
        assert_eq!(out, b"\rgroup  1 page  100 rows\x1b[K");
        assert!(line.is_shown());
        assert_eq!(erased(&line), b"\r\x1b[K");
        assert!(!line.is_shown());
        assert_eq!(erased(&line), b"", "already gone");
    }

    #[test]
    fn a_finished_line_is_an_ordinary_line() {
        let (line, mut out) = (LiveLine::new(), Vec::new());
        line.draw(&mut out, "group: read 100", true);
        assert_eq!(out, b"\rgroup: read 100\x1b[K\n");
        assert_eq!(erased(&line), b"", "nothing to erase after a finished line");
    }

    #[test]
    fn ending_keeps_the_text_and_moves_to_a_new_line() {
        let (line, mut out) = (LiveLine::new(), Vec::new());
        line.draw(&mut out, "users  3 pages", false);
        drop(line.end(&mut out, b"\n"));
        assert_eq!(out, b"\rusers  3 pages\x1b[K\n");
        assert_eq!(erased(&line), b"");
    }
}
