//! The simulator's shared in-memory state: the scenario, the request log, the armed faults, named counters with
//! their high-water marks, and cached blob digests. One `SimState` per server, behind an `Arc`; every lock is a
//! short `std::sync::Mutex` section that never spans an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::scenario::Scenario;
use crate::shared::blob::{self, BlobDigests};
use crate::shared::faults::{ArmedFault, FaultRule};

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

#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Counter {
    value: i64,
    high_water: i64,
}

/// Shared state of one running simulator.
pub struct SimState {
    pub scenario: Scenario,
    /// Access tokens issued by the simulated UAA.
    pub uaa: crate::services::uaa::Tokens,
    /// The simulated director's uploaded stemcells and tasks.
    pub director: crate::services::director::DirectorState,
    /// The TKGI clusters, shared by the TKGI, director-deployments and Kubernetes routes.
    pub fleet: crate::services::tkgi::Fleet,
    /// The simulator's CA (PEM), set once at start; kubeconfigs from TKGI binds embed it.
    pub ca_pem: std::sync::OnceLock<String>,
    pub start: Instant,
    log: Mutex<Vec<LogEntry>>,
    next_request_id: AtomicU64,
    faults: Mutex<Vec<ArmedFault>>,
    counters: Mutex<HashMap<String, Counter>>,
    digests: Mutex<HashMap<(u64, u64), BlobDigests>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a handler must not take the whole simulator down with poisoned locks.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimState {
    pub fn new(scenario: Scenario) -> Self {
        let faults = scenario.faults.iter().cloned().map(ArmedFault::new).collect();
        let director = crate::services::director::DirectorState::new(&scenario.director);
        let fleet = crate::services::tkgi::Fleet::new(&scenario.tkgi, scenario.time_scale);
        Self {
            scenario,
            uaa: Default::default(),
            director,
            fleet,
            ca_pem: Default::default(),
            start: Instant::now(),
            log: Mutex::new(Vec::new()),
            next_request_id: AtomicU64::new(1),
            faults: Mutex::new(faults),
            counters: Mutex::new(HashMap::new()),
            digests: Mutex::new(HashMap::new()),
        }
    }

    /// Milliseconds since start, on the monotonic clock.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A simulated duration after `time_scale`.
    pub fn scaled(&self, d: Duration) -> Duration {
        self.scenario.scale(d)
    }

    // --- request log ---

    /// Appends a record (its `id` is assigned here) and returns the counter its body should add sent bytes to.
    pub(crate) fn log_request(&self, mut record: RequestRecord) -> Arc<AtomicU64> {
        record.id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let bytes_sent = Arc::new(AtomicU64::new(0));
        lock(&self.log).push(LogEntry { record, bytes_sent: Arc::clone(&bytes_sent) });
        bytes_sent
    }

    /// A snapshot of the request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log)
            .iter()
            .map(|e| RequestRecord { bytes_sent: e.bytes_sent.load(Ordering::Relaxed), ..e.record.clone() })
            .collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    // --- faults ---

    pub fn add_fault(&self, rule: FaultRule) {
        lock(&self.faults).push(ArmedFault::new(rule));
    }

    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// The armed faults with how often each matched and fired.
    pub fn faults(&self) -> Vec<ArmedFault> {
        lock(&self.faults).clone()
    }

    /// Counts this request against every matching rule and returns the action of the first one due to fire.
    pub(crate) fn take_fault(&self, method: &str, path: &str) -> Option<crate::shared::faults::FaultAction> {
        crate::shared::faults::select(&mut lock(&self.faults), method, path)
    }

    // --- counters ---

    /// Adds `delta` to a named counter, returns its new value and raises its high-water mark if needed.
    pub fn counter_add(&self, name: &str, delta: i64) -> i64 {
        let mut counters = lock(&self.counters);
        let c = counters.entry(name.to_owned()).or_default();
        c.value += delta;
        c.high_water = c.high_water.max(c.value);
        c.value
    }

    pub fn counter(&self, name: &str) -> i64 {
        lock(&self.counters).get(name).map_or(0, |c| c.value)
    }

    /// The largest value the counter ever reached (0 if never touched).
    pub fn high_water(&self, name: &str) -> i64 {
        lock(&self.counters).get(name).map_or(0, |c| c.high_water)
    }

    /// Increments a counter until the guard drops: the usual way to measure concurrency of a route.
    pub fn track(self: &Arc<Self>, name: &str) -> CounterGuard {
        self.counter_add(name, 1);
        CounterGuard { state: Arc::clone(self), name: name.to_owned() }
    }

    /// Counters as `{name: {value, high_water}}`, sorted by name.
    pub fn stats(&self) -> serde_json::Value {
        let counters: BTreeMap<String, Counter> = lock(&self.counters).iter().map(|(k, v)| (k.clone(), *v)).collect();
        serde_json::json!({ "uptime_ms": self.elapsed_ms(), "counters": counters })
    }

    // --- blobs ---

    /// md5/sha1/sha256 of a blob, computed once per (seed, size). CPU-bound: call from `spawn_blocking`.
    pub fn blob_digests(&self, seed: u64, size: u64) -> BlobDigests {
        if let Some(d) = lock(&self.digests).get(&(seed, size)) {
            return d.clone();
        }
        // Computed outside the lock: hashing 1 GiB takes seconds and must not block other requests.
        let digests = blob::blob_digests(seed, size);
        lock(&self.digests).insert((seed, size), digests.clone());
        digests
    }
}

/// Decrements its counter when dropped; see [`SimState::track`].
pub struct CounterGuard {
    state: Arc<SimState>,
    name: String,
}

impl Drop for CounterGuard {
    fn drop(&mut self) {
        self.state.counter_add(&self.name, -1);
    }
}
