//! Kubernetes: release feeds (`/release/stable-1.N.txt`) and each cluster's `/version`.
//!
//! Skeleton: the scenario section (key `kubernetes`) and the router exist so the rest of the simulator is wired;
//! the routes and their state come later.

use std::sync::Arc;

use axum::Router;
use serde::Deserialize;

use crate::state::SimState;

/// The `kubernetes` section of a scenario file. Unknown keys are rejected so a typo in a scenario fails loudly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The routes this platform serves; merged into the simulator's one router.
pub fn routes(state: Arc<SimState>) -> Router {
    Router::new().with_state(state)
}
