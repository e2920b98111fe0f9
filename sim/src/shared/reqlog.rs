//! The request log: one [`RequestRecord`] per request, with the status the client got and the body bytes
//! actually handed to the connection, and the middleware that writes it. The control endpoints are not logged,
//! so reading the log does not change it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

use super::faults::{AppliedFault, is_control_path};
use super::shaping::count_body;
use super::util::lock;

/// One request as the simulator saw it. The `authorization` value itself is never kept, only its scheme.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequestRecord {
    pub id: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub range: Option<String>,
    /// `Some(scheme)` (e.g. `"Bearer"`) when an `authorization` header was sent.
    pub auth_scheme: Option<String>,
    /// Body bytes handed to the connection so far (cut short by faults, 0 for HEAD).
    pub bytes_sent: u64,
    /// The fault action that shaped this response, if any (e.g. `"status"`, `"reset_after_bytes"`).
    pub fault: Option<String>,
    /// Milliseconds since the simulator started, taken when the request arrived.
    pub at_ms: u64,
}

/// A log entry whose byte count keeps growing while its body streams, without taking the log lock per chunk.
struct LogEntry {
    record: RequestRecord,
    bytes_sent: Arc<AtomicU64>,
}

/// Every request of one simulator, oldest first, timed against the simulator's start.
pub(crate) struct RequestLog {
    started: Instant,
    entries: Mutex<Vec<LogEntry>>,
    next_id: AtomicU64,
}

impl RequestLog {
    pub(crate) fn new(started: Instant) -> Self {
        Self { started, entries: Mutex::new(Vec::new()), next_id: AtomicU64::new(1) }
    }

    /// When the simulator started: `at_ms` counts from here.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Milliseconds since start, on the monotonic clock.
    pub(crate) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Appends a record (its `id` is assigned here) and returns the counter its body should add sent bytes to.
    fn append(&self, mut record: RequestRecord) -> Arc<AtomicU64> {
        record.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes_sent = Arc::new(AtomicU64::new(0));
        lock(&self.entries).push(LogEntry { record, bytes_sent: Arc::clone(&bytes_sent) });
        bytes_sent
    }

    /// A snapshot of the log, oldest first.
    pub(crate) fn records(&self) -> Vec<RequestRecord> {
        lock(&self.entries)
            .iter()
            .map(|e| RequestRecord { bytes_sent: e.bytes_sent.load(Ordering::Relaxed), ..e.record.clone() })
            .collect()
    }

    pub(crate) fn clear(&self) {
        lock(&self.entries).clear();
    }
}

pub(crate) async fn middleware(State(log): State<Arc<RequestLog>>, req: Request, next: Next) -> Response {
    if is_control_path(req.uri().path()) {
        return next.run(req).await;
    }
    let mut record = RequestRecord {
        id: 0,
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        status: 0,
        range: header_str(req.headers(), header::RANGE.as_str()),
        auth_scheme: auth_scheme(req.headers()),
        bytes_sent: 0,
        fault: None,
        at_ms: log.elapsed_ms(),
    };
    let response = next.run(req).await;
    record.status = response.status().as_u16();
    record.fault = response.extensions().get::<AppliedFault>().map(|f| f.0.to_owned());
    let sent = log.append(record);
    count_body(response, sent)
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The scheme of the `authorization` header (`Basic`, `Bearer`, …); the credentials are never read.
fn auth_scheme(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?;
    let scheme = value.as_bytes().split(|b| b.is_ascii_whitespace()).next().unwrap_or_default();
    Some(String::from_utf8_lossy(scheme).into_owned())
}
