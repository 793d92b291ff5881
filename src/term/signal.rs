//! SIGINT and SIGTERM: the first asks the sync to stop at the next page boundary,
//! after committing the page in hand; a second one ends the process at once (safe:
//! a kill -9 is safe too, it only costs the page in flight).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

/// The signal that asked the run to stop, if any (its number; 0 while none).
#[derive(Clone, Debug, Default)]
pub struct Interrupt(pub Arc<AtomicUsize>);

impl Interrupt {
    /// Installs the handlers. Without them (a handler could not be installed) the
    /// signals keep their default action, which is safe.
    pub fn install() -> Interrupt {
        let flag = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(false));
        for (signal, status) in [(SIGINT, 130), (SIGTERM, 143)] {
            // Handlers run in the order registered: the shutdown checks `armed`
            // before the first signal's handler sets it.
            let _ = signal_hook::flag::register_conditional_shutdown(signal, status, Arc::clone(&armed));
            let _ = signal_hook::flag::register_usize(signal, Arc::clone(&flag), signal as usize);
            let _ = signal_hook::flag::register(signal, Arc::clone(&armed));
        }
        Interrupt(flag)
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }

    /// The exit status for the signal received: 130 for SIGINT, 143 for SIGTERM.
    pub fn exit_status(&self) -> i32 {
        128 + self.received().unwrap_or(SIGINT)
    }

    pub fn name(&self) -> &'static str {
        match self.received() {
            Some(SIGTERM) => "SIGTERM",
            _ => "SIGINT",
        }
    }
}
