//! repave-sim (skeleton).
