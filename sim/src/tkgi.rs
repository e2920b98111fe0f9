//! The TKGI API: `/v1/clusters`, `/v1/clusters/{name}`, binds, plans and the upgrade route, with a per-cluster state machine (durations scaled by `time_scale`), 409 while busy, and a concurrency high-water mark.
//!
//! Skeleton: the scenario section (key `tkgi`) and the router exist so the rest of the simulator is wired;
//! the routes and their state come later.

use std::sync::Arc;

use axum::Router;
use serde::Deserialize;

use crate::state::SimState;

/// The `tkgi` section of a scenario file. Unknown keys are rejected so a typo in a scenario fails loudly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The routes this platform serves; merged into the simulator's one router.
pub fn routes(state: Arc<SimState>) -> Router {
    Router::new().with_state(state)
}
