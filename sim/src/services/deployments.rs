//! The BOSH director's `GET /deployments` for the TKGI clusters: one `service-instance_<uuid>` deployment per
//! cluster, with the same UUIDs the TKGI API reports and the stemcell each cluster runs (bumped by upgrades).
//! Shape: docs/facts/bosh-director.md.
//!
//! Its own small service rather than part of [`super::director`]: the deployments are TKGI's clusters, and the
//! director must not depend on TKGI (TKGI already depends on the director for stemcells).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::tkgi::Fleet;
use super::uaa::Uaa;

/// What the route reads: tokens from the UAA, clusters from TKGI.
pub(crate) struct Deployments {
    uaa: Arc<Uaa>,
    fleet: Arc<Fleet>,
}

impl Deployments {
    pub(crate) fn new(uaa: Arc<Uaa>, fleet: Arc<Fleet>) -> Self {
        Self { uaa, fleet }
    }
}

pub(crate) fn routes(deployments: Arc<Deployments>) -> Router {
    Router::new().route("/deployments", get(list)).with_state(deployments)
}

async fn list(State(deployments): State<Arc<Deployments>>, headers: HeaderMap) -> Response {
    if let Err(response) = deployments.uaa.authorize(&headers, &["bosh.admin", "bosh.read"]) {
        return response;
    }
    let fleet = &deployments.fleet;
    let stemcell_name = fleet.stemcell_name();
    let deployments: Vec<_> = fleet
        .views()
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
