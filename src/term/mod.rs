//! The terminal: what a person sees on stderr, and what Ctrl-C does.
//!
//! [`logging`] formats log lines for `-q`/`-v`/`-vv`; [`progress`] draws the live
//! line, which shares stderr with the logger through [`live_line`]; [`signal`] turns SIGINT and
//! SIGTERM into a stop at the next page boundary.

pub(crate) mod live_line;
pub mod logging;
pub(crate) mod progress;
pub(crate) mod signal;
