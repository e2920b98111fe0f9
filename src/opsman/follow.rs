//! Following one installation to its end: its status and its log, polled every `poll_interval` until it
//! succeeds, fails, or `timeout` passes (after which it goes on in Ops Manager, and the next put follows it).
//!
//! Ops Manager returns the whole log on every read (docs/facts/opsman.md), so [`NewLines`] keeps how much was
//! printed and prints only complete new lines; a failed installation's error ends with the log's last lines.

use crate::clients::opsman::{Installation, Opsman};
use crate::redact::Log;
use anyhow::{Result, bail};
use std::time::{Duration, Instant};

/// How closely and how long to follow.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pace {
    pub poll_interval: Duration,
    pub timeout: Duration,
}

/// Lines of a failed installation's log quoted in the error.
const TAIL_LINES: usize = 20;

/// Follows installation `id` until it ends; `Ok` only when it succeeded. Errors while reading (after the HTTP
/// client's own retries) are logged and reading goes on, until `pace.timeout`.
pub(super) async fn follow(opsman: &Opsman, id: u64, pace: Pace, log: &Log) -> Result<()> {
    let deadline = Instant::now() + pace.timeout;
    let mut lines = NewLines::default();
    loop {
        match read(opsman, id, &mut lines, log).await {
            Ok(installation) if installation.status == "succeeded" => {
                log.line(format!("installation {id} succeeded"));
                return Ok(());
            }
            Ok(installation) if installation.status == "failed" => {
                bail!("installation {id} failed; the end of its log:\n{}", lines.tail(TAIL_LINES));
            }
            Ok(_) => {}
            Err(error) => log.warn(format!("reading installation {id}: {error:#}; trying again")),
        }
        if Instant::now() >= deadline {
            bail!(
                "installation {id} is still running after {}s; it goes on in Ops Manager, and the next put follows it instead of starting another",
                pace.timeout.as_secs()
            );
        }
        tokio::time::sleep(pace.poll_interval).await;
    }
}

/// Reads the status, then the log (so a finished installation's log is complete), printing new lines.
async fn read(opsman: &Opsman, id: u64, lines: &mut NewLines, log: &Log) -> Result<Installation> {
    let installation = opsman.installation(id).await?;
    let text = opsman.installation_logs(id).await?;
    let done = installation.status != "running";
    for line in lines.feed(&text, done) {
        log.line(format!("  {line}"));
    }
    Ok(installation)
}

/// What of a growing log has been printed.
#[derive(Default)]
pub(super) struct NewLines {
    /// Bytes of the log already printed (always at a line end).
    printed: usize,
    /// The whole log as last read.
    last: String,
}

impl NewLines {
    /// The complete lines of `log` not printed yet (and the unfinished last one when `done`). A log that is not
    /// a continuation of the one printed so far is printed again from its start.
    pub(super) fn feed(&mut self, log: &str, done: bool) -> Vec<String> {
        if !log.starts_with(&self.last[..self.printed]) {
            self.printed = 0;
        }
        self.last = log.to_string();
        let fresh = &log[self.printed..];
        let end = if done { fresh.len() } else { fresh.rfind('\n').map_or(0, |i| i + 1) };
        self.printed += end;
        fresh[..end].lines().map(str::to_string).collect()
    }

    /// The last `n` lines of the log as last read.
    pub(super) fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.last.lines().collect();
        lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_complete_lines() {
        let mut lines = NewLines::default();
        assert_eq!(lines.feed("one\ntw", false), ["one"]);
        assert!(lines.feed("one\ntw", false).is_empty());
        assert_eq!(lines.feed("one\ntwo\nthree\n", false), ["two", "three"]);
        assert_eq!(lines.feed("one\ntwo\nthree\nfour", true), ["four"]);
        assert!(lines.feed("one\ntwo\nthree\nfour", true).is_empty());
    }

    #[test]
    fn a_log_that_starts_over_is_printed_again() {
        let mut lines = NewLines::default();
        lines.feed("a\nb\n", false);
        assert_eq!(lines.feed("x\n", false), ["x"]);
    }

    #[test]
    fn the_tail_is_the_last_lines() {
        let mut lines = NewLines::default();
        let log: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        lines.feed(&log, true);
        let tail = lines.tail(3);
        assert_eq!(tail, "  line 28\n  line 29\n  line 30");
    }
}
