//! Named counters with their high-water marks: how a service shows tests what happened inside it (upgrades
//! started, the most that ran at once). Served under `GET /_sim/stats`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::util::lock;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Counter {
    value: i64,
    high_water: i64,
}

/// Every counter of one simulator, by name; a counter never touched reads 0.
#[derive(Default)]
pub(crate) struct Counters(Mutex<HashMap<String, Counter>>);

impl Counters {
    /// Adds `delta` to a named counter, returns its new value and raises its high-water mark if needed.
    pub(crate) fn add(&self, name: &str, delta: i64) -> i64 {
        let mut counters = lock(&self.0);
        let c = counters.entry(name.to_owned()).or_default();
        c.value += delta;
        c.high_water = c.high_water.max(c.value);
        c.value
    }

    pub(crate) fn value(&self, name: &str) -> i64 {
        lock(&self.0).get(name).map_or(0, |c| c.value)
    }

    /// The largest value the counter ever reached (0 if never touched).
    pub(crate) fn high_water(&self, name: &str) -> i64 {
        lock(&self.0).get(name).map_or(0, |c| c.high_water)
    }

    /// Increments a counter until the guard drops: the usual way to measure concurrency of a route.
    pub(crate) fn track(self: &Arc<Self>, name: &str) -> CounterGuard {
        self.add(name, 1);
        CounterGuard { counters: Arc::clone(self), name: name.to_owned() }
    }

    /// Every counter, sorted by name.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, Counter> {
        lock(&self.0).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Decrements its counter when dropped; see [`crate::SimState::track`].
pub struct CounterGuard {
    counters: Arc<Counters>,
    name: String,
}

impl Drop for CounterGuard {
    fn drop(&mut self) {
        self.counters.add(&self.name, -1);
    }
}
