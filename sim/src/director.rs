//! The BOSH director: `/info`, `/stemcells` (POST answers 302 to `/tasks/{id}`), `/deployments`, `/tasks/{id}` and task output.
//!
//! Skeleton: the scenario section (key `director`) and the router exist so the rest of the simulator is wired;
//! the routes and their state come later.

use std::sync::Arc;

use axum::Router;
use serde::Deserialize;

use crate::state::SimState;

/// The `director` section of a scenario file. Unknown keys are rejected so a typo in a scenario fails loudly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The routes this platform serves; merged into the simulator's one router.
pub fn routes(state: Arc<SimState>) -> Router {
    Router::new().with_state(state)
}
