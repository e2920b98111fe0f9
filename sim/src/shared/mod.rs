//! What the simulated services share, and all they share: the request log, the armed faults, the named
//! counters with their high-water marks, and the cache of blob digests. Everything else (a service's scenario
//! section, its state, its routes) belongs to the service; nothing here knows any service.
//!
//! A few helpers every service needs the same way are in [`util`].

pub(crate) mod blob;
pub(crate) mod counters;
pub(crate) mod faults;
pub(crate) mod reqlog;
mod shaping;
mod util;

pub(crate) use util::{base_url, compare_versions, lock, random_u64, rfc3339};

use std::sync::Arc;
use std::time::Instant;

use blob::DigestCache;
use counters::Counters;
use faults::{FaultRule, Faults};
use reqlog::RequestLog;

/// The shared core of one running simulator. Cheap to clone: each part is behind its own `Arc`, so a service
/// keeps only the part it uses.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) log: Arc<RequestLog>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) digests: Arc<DigestCache>,
}

impl Shared {
    /// A fresh core whose clock starts now, with `faults` armed.
    pub(crate) fn new(faults: &[FaultRule]) -> Self {
        Self {
            log: Arc::new(RequestLog::new(Instant::now())),
            faults: Arc::new(Faults::new(faults)),
            counters: Arc::default(),
            digests: Arc::default(),
        }
    }

    /// `{uptime_ms, counters: {name: {value, high_water}}}`, counters sorted by name (`GET /_sim/stats`).
    pub(crate) fn stats(&self) -> serde_json::Value {
        serde_json::json!({ "uptime_ms": self.log.elapsed_ms(), "counters": self.counters.snapshot() })
    }
}
