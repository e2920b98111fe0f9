//! The wall clock that maintenance windows are judged by, injectable so tests (and rehearsals) can
//! say what "now" is.
//!
//! Why a clock object rather than `params.now`: "now" is not configuration and must never be
//! committed to a pipeline. The entry point builds one `Clock` per process — the system clock, or,
//! when the environment sets `REPAVE_NOW` (RFC 3339, e.g. `2026-11-28T05:59:58Z`), a clock that
//! starts at that instant and then advances in real time, so a window can close mid-run in a test
//! that takes seconds. Concourse never sets `REPAVE_NOW`; the entry point reads it and hands the
//! value here, and everything below only sees the `Clock` in `Ctx`, never the environment.

use anyhow::{Context, Result};
use jiff::{SignedDuration, Timestamp};
use std::time::Instant;

/// The environment variable that sets "now" for rehearsals and tests.
pub(crate) const NOW_VARIABLE: &str = "REPAVE_NOW";

#[derive(Clone, Debug)]
pub struct Clock {
    origin: Timestamp,
    started: Instant,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::starting_at(Timestamp::now())
    }

    /// A clock that reads `origin` now and advances in real time from here.
    pub fn starting_at(origin: Timestamp) -> Clock {
        Clock { origin, started: Instant::now() }
    }

    /// A clock starting at `now` (the value of [`NOW_VARIABLE`]) when set (a bad value is an error,
    /// never silently the system time), else the system clock.
    pub fn from_setting(now: Option<&str>) -> Result<Clock> {
        match now {
            Some(text) => {
                let origin: Timestamp = text.trim().parse().with_context(|| {
                    format!("{NOW_VARIABLE} `{text}` is not an RFC 3339 time such as 2026-11-28T02:00:00Z")
                })?;
                Ok(Clock::starting_at(origin))
            }
            None => Ok(Clock::system()),
        }
    }

    pub fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.started.elapsed()).unwrap_or(SignedDuration::MAX);
        self.origin.saturating_add(elapsed).unwrap_or(self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_sets_the_origin_and_bad_values_are_errors() {
        let now = Clock::from_setting(Some("2026-11-28T05:59:58Z")).unwrap().now();
        let origin: Timestamp = "2026-11-28T05:59:58Z".parse().unwrap();
        assert!(now >= origin && now < origin.saturating_add(SignedDuration::from_secs(5)).unwrap());
        assert!(Clock::from_setting(Some("saturday")).unwrap_err().to_string().contains("REPAVE_NOW `saturday`"));
        assert!(
            Clock::from_setting(None).unwrap().now()
                > origin.saturating_sub(SignedDuration::from_hours(24 * 365 * 10)).unwrap()
        );
    }
}
