//! Paligo end to end (to come).
