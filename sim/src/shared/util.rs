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
/// Days to a civil date by Howard Hinnant's `civil_from_days`, so no date crate is needed.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", since.subsec_millis())
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
