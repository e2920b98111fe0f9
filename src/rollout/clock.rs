//! The wall clock that maintenance windows are judged by, injectable so tests (and rehearsals) can
//! say what "now" is.
//!
//! Why a clock object rather than `params.now`: "now" is not configuration and must never be
//! committed to a pipeline. The entry point builds one `Clock` per process — the system clock, or,
//! when the environment sets `REPAVE_NOW` (RFC 3339, e.g. `2026-11-28T05:59:58Z`), a clock that
//! starts at that instant and then advances in real time, so a window can close mid-run in a test
//! that takes seconds. Concourse never sets `REPAVE_NOW`; everything below the entry point only sees
//! the `Clock` in `Ctx`, never the environment.

use crate::Env;
use anyhow::{Context, Result};
use jiff::{SignedDuration, Timestamp};
use std::time::Instant;

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

    /// `REPAVE_NOW` when set (a bad value is an error, never silently the system time), else the system
    /// clock.
    pub fn from_env(env: &Env) -> Result<Clock> {
        match env.get("REPAVE_NOW") {
            Some(text) => {
                let origin: Timestamp = text.trim().parse().with_context(|| {
                    format!("REPAVE_NOW `{text}` is not an RFC 3339 time such as 2026-11-28T02:00:00Z")
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
    fn env_sets_the_origin_and_bad_values_are_errors() {
        let env = Env::from([("REPAVE_NOW".to_string(), "2026-11-28T05:59:58Z".to_string())]);
        let now = Clock::from_env(&env).unwrap().now();
        let origin: Timestamp = "2026-11-28T05:59:58Z".parse().unwrap();
        assert!(now >= origin && now < origin.saturating_add(SignedDuration::from_secs(5)).unwrap());
        let bad = Env::from([("REPAVE_NOW".to_string(), "saturday".to_string())]);
        assert!(Clock::from_env(&bad).unwrap_err().to_string().contains("REPAVE_NOW `saturday`"));
        assert!(
            Clock::from_env(&Env::new()).unwrap().now()
                > origin.saturating_sub(SignedDuration::from_hours(24 * 365 * 10)).unwrap()
        );
    }
}
