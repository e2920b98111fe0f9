//! The BOSH director's `GET /deployments` for the TKGI clusters: one `service-instance_<uuid>` deployment per
//! cluster, with the same UUIDs the TKGI API reports and the stemcell each cluster runs (bumped by upgrades).
//! Shape: reference/platform-apis.md §2.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::SimState;

pub fn routes(state: Arc<SimState>) -> Router {
    Router::new().route("/deployments", get(list)).with_state(state)
}

async fn list(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    if let Err(response) = crate::services::uaa::authorize(&state, &headers, &["bosh.admin", "bosh.read"]) {
        return response;
    }
    let stemcell_name = &state.scenario.tkgi.stemcell_name;
    let deployments: Vec<_> = state
        .fleet
        .views(&state)
        .into_iter()
        .map(|c| {
            json!({
                "name": format!("service-instance_{}", c.uuid),
                "teams": [],
                "cloud_config": "latest",
                "stemcells": [{"name": stemcell_name, "version": c.stemcell}],
                "releases": [],
                "locked": false,
            })
        })
        .collect();
    Json(deployments).into_response()
}
