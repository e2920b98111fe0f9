//! repave library (skeleton).
