//! Following a BOSH director task to its end: poll `GET /tasks/{id}` with backoff, print its event stream
//! (`GET /tasks/{id}/output?type=event`, read from where the last read stopped) as readable lines, and turn
//! its end state into a result — bosh-cli's rule: only `done` is success (docs/facts/bosh-director.md).

use super::director::{Director, Task};
use crate::redact::Log;
use anyhow::{Result, anyhow, bail};
use std::time::{Duration, Instant};

const FIRST_POLL: Duration = Duration::from_millis(250);
const MAX_POLL: Duration = Duration::from_secs(5);

/// Polls the task with backoff (capped by the connection's `max_backoff`) until it ends, printing its events
/// when given a log; fails unless it ends `done`. Past `timeout` the task is left running on the director: the
/// error says so, and `rerun` says what a rerun does about it.
pub(crate) async fn wait_for_task(
    director: &Director,
    id: u64,
    timeout: Duration,
    log: Option<&Log>,
    rerun: &str,
) -> Result<Task> {
    let poll_cap = MAX_POLL.min(director.http().config().max_backoff).max(Duration::from_millis(10));
    if let Some(log) = log {
        log.line(format!("director task {id} started"));
    }
    let deadline = Instant::now() + timeout;
    let mut events = EventPrinter::default();
    let mut delay = FIRST_POLL.min(poll_cap);
    loop {
        let task = director.task(id).await?;
        if let Some(log) = log {
            let output = director.task_output(id, "event", events.offset).await?;
            events.feed(&output, log);
        }
        if !task.is_running() {
            if let Some(log) = log {
                events.flush(log);
            }
            return finished(task, &events);
        }
        if Instant::now() >= deadline {
            bail!(
                "director task {id} ({}) is still {} after {}s; it goes on running on the director (see `bosh task {id}`), \
                 and {rerun}",
                task.description,
                task.state,
                timeout.as_secs()
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(poll_cap);
    }
}

fn finished(task: Task, events: &EventPrinter) -> Result<Task> {
    if task.state == "done" {
        return Ok(task);
    }
    let reason = task
        .result
        .clone()
        .filter(|r| !r.is_empty())
        .or_else(|| events.last_error.clone())
        .unwrap_or_else(|| "no error message".to_string());
    Err(anyhow!("director task {} ({}) ended in state `{}`: {reason}", task.id, task.description, task.state))
}

/// Turns the task's NDJSON event stream into readable lines, across partial reads.
#[derive(Default)]
struct EventPrinter {
    offset: u64,
    partial: Vec<u8>,
    last_error: Option<String>,
}

impl EventPrinter {
    fn feed(&mut self, bytes: &[u8], log: &Log) {
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.print(&String::from_utf8_lossy(&line), log);
        }
    }

    fn flush(&mut self, log: &Log) {
        let rest = std::mem::take(&mut self.partial);
        self.print(&String::from_utf8_lossy(&rest), log);
    }

    fn print(&mut self, line: &str, log: &Log) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            log.line(format!("  {line}"));
            return;
        };
        let text = |key: &str| event.get(key).and_then(|v| v.as_str()).unwrap_or("").to_string();
        if let Some(message) = event.pointer("/error/message").and_then(|m| m.as_str()) {
            self.last_error = Some(message.to_string());
            log.line(format!("  error: {message}"));
            return;
        }
        let mut out = format!("  {} > {}: {}", text("stage"), text("task"), text("state"));
        if let Some(err) = event.pointer("/data/error").and_then(|m| m.as_str()) {
            self.last_error = Some(err.to_string());
            out.push_str(&format!(" ({err})"));
        }
        log.line(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_across_partial_reads() {
        let buf = Buf::default();
        let log = Log::new(Box::new(buf.clone()));
        let mut p = EventPrinter::default();
        let stream = b"{\"stage\":\"Update stemcell\",\"task\":\"Uploading\",\"state\":\"started\"}\n{\"error\":{\"code\":100,\"message\":\"boom\"}}\n";
        p.feed(&stream[..20], &log);
        p.feed(&stream[20..], &log);
        p.flush(&log);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "  Update stemcell > Uploading: started\n  error: boom\n");
        assert_eq!(p.offset, stream.len() as u64);
        assert_eq!(p.last_error.as_deref(), Some("boom"));
    }
}
