//! Kubernetes: each TKGI cluster's apiserver `/version` and `/readyz` under `/k8s/{cluster}` (where the
//! kubeconfigs from TKGI binds point), authenticated by the bind's bearer token (docs/facts/kubernetes.md). The
//! release feeds are [`super::releases`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::tkgi::Fleet;

/// The `kubernetes` section of a scenario file. Unknown keys are rejected so a typo in a scenario fails loudly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Clusters whose `/readyz` answers 500.
    pub unready: Vec<String>,
}

/// The clusters' apiservers: what the scenario says of them, and the clusters themselves (with the tokens
/// their binds issued) from TKGI.
pub(crate) struct Kubernetes {
    config: Config,
    fleet: Arc<Fleet>,
}

impl Kubernetes {
    pub(crate) fn new(config: Config, fleet: Arc<Fleet>) -> Self {
        Self { config, fleet }
    }
}

/// The routes this platform serves; merged into the simulator's one router.
pub(crate) fn routes(kubernetes: Arc<Kubernetes>) -> Router {
    Router::new()
        .route("/k8s/{name}/version", get(version))
        .route("/k8s/{name}/readyz", get(readyz))
        .with_state(kubernetes)
}

/// Only the token a bind issued for this very cluster is accepted, as a real apiserver would.
fn authorized(kubernetes: &Kubernetes, headers: &HeaderMap, name: &str) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    token.and_then(|t| kubernetes.fleet.cluster_of_token(t)).is_some_and(|owner| owner == name)
}

fn unauthorized() -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    (StatusCode::UNAUTHORIZED, Json(status)).into_response()
}

async fn version(State(kubernetes): State<Arc<Kubernetes>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&kubernetes, &headers, &name) {
        return unauthorized();
    }
    let Some(cluster) = kubernetes.fleet.views().into_iter().find(|c| c.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let v = cluster.k8s_version;
    let minor = v.split('.').nth(1).unwrap_or("0").to_string();
    Json(json!({
        "major": "1", "minor": minor, "gitVersion": format!("v{v}+vmware.1"), "gitCommit": "0000000",
        "gitTreeState": "clean", "buildDate": "2024-07-10T10:00:00Z", "goVersion": "go1.22.5",
        "compiler": "gc", "platform": "linux/amd64"
    }))
    .into_response()
}

async fn readyz(State(kubernetes): State<Arc<Kubernetes>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&kubernetes, &headers, &name) {
        return unauthorized();
    }
    if kubernetes.config.unready.contains(&name) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "[-]etcd failed: reason withheld\nreadyz check failed")
            .into_response();
    }
    "ok".into_response()
}
