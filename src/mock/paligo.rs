//! The Paligo mock (to be written).
