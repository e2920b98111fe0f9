//! The upgrade engine, independent of any platform: [`plan`] decides what to do (pure functions),
//! [`executor`] does it against a [`executor::Platform`] with waves, canaries, `max_in_flight`, gates
//! and timeouts; [`clock`] is the injectable wall clock maintenance windows are judged by.

pub(crate) mod clock;
pub(crate) mod executor;
pub(crate) mod plan;

use std::time::Duration;

/// A duration for humans: `45s`, `12m`, `1h`, `1h30m`, `250ms`.
pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let parts = [(h, "h"), (m, "m"), (s, "s")];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, u)| format!("{n}{u}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_durations() {
        use std::time::Duration;
        assert_eq!(super::human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(super::human(Duration::from_secs(3600)), "1h");
        assert_eq!(super::human(Duration::from_millis(250)), "250ms");
        assert_eq!(super::human(Duration::from_secs(61)), "1m1s");
    }
}
