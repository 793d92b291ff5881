//! Deterministic randomness for the generator: a splitmix64 stream per record key,
//! so a record's values never depend on which other records were generated first.

use crate::mock::splitmix64;

/// A splitmix64 stream keyed by a tuple, so every record draws the same values
/// whatever order it is generated in.
pub(super) struct Draw(u64);

impl Draw {
    pub(super) fn new(parts: &[u64]) -> Draw {
        let mut state = 0x4d61_696c_6572_4c74;
        for &part in parts {
            state ^= part;
            state = splitmix64(&mut state);
        }
        Draw(state)
    }

    fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}
