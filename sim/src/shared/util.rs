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

/// Orders versions by their numeric parts (`1.10` > `1.9`, `1.19.2-build.10` > `1.19.2-build.9`), then by text.
pub(crate) fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let numbers =
        |v: &str| -> Vec<u64> { v.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok()).collect() };
    numbers(a).cmp(&numbers(b)).then_with(|| a.cmp(b))
}

/// `t` as RFC 3339 in UTC with milliseconds (`2024-08-20T08:00:00.000Z`), the form Ops Manager's timestamps take.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let t = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{t:.3}")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_724_140_800_250);
        assert_eq!(super::rfc3339(t), "2024-08-20T08:00:00.250Z");
        assert_eq!(super::rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }
}
