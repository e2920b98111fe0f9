//! Small helpers every simulated service needs the same way.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use axum::http::{HeaderMap, header};

/// Locks `m` even if a handler panicked while holding it: one failed request must not take the whole simulator
/// down with poisoned locks. Every lock in the simulator is a short section that never spans an `.await`.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `https://<Host>`: the simulator only speaks TLS, and URLs it hands out point back at whatever port it got.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("https://{host}")
}

/// An unpredictable number for opaque tokens and ids (std's per-process random hash keys; no RNG crate needed).
pub(crate) fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(Instant::now())
}
