//! The TKGI API: `/v1/clusters`, `/v1/clusters/{name}`, binds, plans, the upgrade route and the platform
//! version route, over a per-cluster state machine (docs/facts/tkgi-api.md).
//!
//! Every cluster is `(last_action, last_action_state)`; an upgrade moves it to `UPGRADE in progress` for a
//! configurable, `time_scale`d duration, then to `succeeded` (bumping `pks_version`, `k8s_version` and the
//! stemcell) or to a scripted failure. What an upgrade lands on is the broker's configuration when it starts:
//! the TKGI version and the stemcell of the TKGI tile as Ops Manager last deployed it (Apply Changes, see
//! [`super::opsman`]), as the On-Demand Service Broker renders every cluster manifest from its configured
//! `service_deployment` (docs/facts/tkgi-stemcell-path.md). A stemcell only uploaded to the director is never
//! used. Before any Apply Changes the broker runs the scenario's `platform_version` and `stemcell_version`.
//! Transitions are applied lazily, under one short lock, whenever the fleet is touched — so a client only ever
//! sees a cluster finish when it looks, and the concurrency counter
//! `tkgi.upgrades_in_flight` (with its high-water mark) counts exactly the upgrades a client could see running.
//! `tkgi.upgrade_starts` and `tkgi.upgrade_starts.<name>` count accepted upgrade requests (the Ops Manager errand's
//! included). Once a response has
//! shown a client an upgrade that failed during the run, every further accepted start also counts in
//! `tkgi.starts_after_failure_seen`: the sim's evidence for "nothing starts after a stop".
//!
//! Create (`POST /v1/clusters` → 202, `CREATE in progress`), resize (`PATCH /v1/clusters/{name}` with
//! `kubernetes_worker_instances` → 202, `UPDATE in progress`) and delete (`DELETE` → 204, then `DELETE in progress`
//! until the cluster disappears) follow the same lazy state machine with their own time-scaled durations. They are
//! counted as `tkgi.creates`, `tkgi.resizes`, `tkgi.deletes` (and `.<name>`); `tkgi.actions_in_flight` counts every
//! running action of any kind, with its high-water mark.
//!
//! Certificate rotation (`tkgi rotate-certificates`) is served only when the scenario names its route
//! (`rotate_method`, `rotate_path`): TKGI does not publish it, and repave has no default for it either. A rotation
//! shows the cluster as `rotate_action in progress` (ASSUMED `UPDATE`: the real action name is unknown) for
//! `rotate_secs`, then counts in the cluster's `rotations`, which the director's certificate expiry reads — unless
//! the cluster is scripted with `rotate_noop` (the action succeeds, the certificates stay) or `rotate_failures`.
//! Counted as `tkgi.rotations`, `tkgi.rotations.<name>` and `tkgi.rotations_in_flight`.
//!
//! ASSUMED, unpublished routes (configurable, same defaults as repave): the upgrade request
//! `PATCH /v1/clusters/{name}` with `{"upgrade":true}`, and the platform version at `GET /actuator/info`
//! (`build.version`). 409 while another action runs is assumed too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::uaa::Uaa;
use crate::shared::counters::Counters;
use crate::shared::{base_url, lock, random_u64};

/// Scopes the TKGI API accepts (docs/facts/tkgi-api.md).
const SCOPES: &[&str] = &["pks.clusters.admin", "pks.clusters.manage"];

/// The `tkgi` section of a scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The broker's TKGI version before any Apply Changes: what the platform version route reports and the
    /// version clusters reach when upgraded.
    pub platform_version: String,
    /// The Kubernetes version an upgraded cluster runs.
    pub k8s_version: String,
    /// The broker's stemcell before any Apply Changes: the version an upgraded cluster's deployment uses.
    pub stemcell_version: String,
    pub stemcell_name: String,
    /// Simulated seconds an upgrade takes (scaled by `time_scale`).
    pub upgrade_secs: f64,
    /// Simulated seconds a create, a resize and a delete take.
    pub create_secs: f64,
    pub resize_secs: f64,
    pub delete_secs: f64,
    /// The upgrade request's method and path (`{name}` = cluster). ASSUMED default: `PATCH /v1/clusters/{name}`.
    pub upgrade_method: String,
    pub upgrade_path: String,
    /// Where the platform reports its own version. ASSUMED default: `/actuator/info`.
    pub version_path: String,
    /// The rotate-certificates request's method and path (`{name}` = cluster); not served when the path is unset.
    /// The path must differ from the other cluster routes.
    pub rotate_method: String,
    pub rotate_path: Option<String>,
    /// Simulated seconds a rotation takes, and the `last_action` it shows meanwhile.
    pub rotate_secs: f64,
    pub rotate_action: String,
    pub plans: Vec<PlanConfig>,
    pub clusters: Vec<ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            platform_version: "1.19.2-build.10".into(),
            k8s_version: "1.28.11".into(),
            stemcell_version: "1.506".into(),
            stemcell_name: "bosh-vsphere-esxi-ubuntu-jammy-go_agent".into(),
            upgrade_secs: 1200.0,
            create_secs: 1800.0,
            resize_secs: 600.0,
            delete_secs: 600.0,
            upgrade_method: "PATCH".into(),
            upgrade_path: "/v1/clusters/{name}".into(),
            version_path: "/actuator/info".into(),
            rotate_method: "POST".into(),
            rotate_path: None,
            rotate_secs: 900.0,
            rotate_action: "UPDATE".into(),
            plans: vec![
                PlanConfig { name: "small".into(), worker_instances: 3 },
                PlanConfig { name: "medium".into(), worker_instances: 5 },
                PlanConfig { name: "large".into(), worker_instances: 10 },
            ],
            clusters: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub name: String,
    pub worker_instances: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub name: String,
    #[serde(default = "default_plan")]
    pub plan_name: String,
    #[serde(default = "default_old_pks")]
    pub pks_version: String,
    #[serde(default = "default_old_k8s")]
    pub k8s_version: String,
    #[serde(default = "default_action")]
    pub last_action: String,
    #[serde(default = "default_state")]
    pub last_action_state: String,
    /// Default: a stable UUID derived from the name.
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default = "default_old_stemcell")]
    pub stemcell: String,
    /// The first N upgrades of this cluster fail.
    #[serde(default)]
    pub upgrade_failures: u32,
    /// The state a scripted failure ends in (`failed`, or `error` as the docs also show).
    #[serde(default = "default_failure_state")]
    pub failure_state: String,
    /// When the cluster starts `in progress`: simulated seconds until that action succeeds (never when absent).
    #[serde(default)]
    pub busy_secs: Option<f64>,
    /// Overrides `upgrade_secs` for this cluster.
    #[serde(default)]
    pub upgrade_secs: Option<f64>,
    /// Worker count; default: the plan's `worker_instances`.
    #[serde(default)]
    pub workers: Option<u32>,
    /// The first N rotations of this cluster fail.
    #[serde(default)]
    pub rotate_failures: u32,
    /// Rotations succeed but leave the certificates as they were.
    #[serde(default)]
    pub rotate_noop: bool,
}

fn default_plan() -> String {
    "small".into()
}
fn default_old_pks() -> String {
    "1.18.5-build.10".into()
}
fn default_old_k8s() -> String {
    "1.27.15".into()
}
fn default_action() -> String {
    "CREATE".into()
}
fn default_state() -> String {
    "succeeded".into()
}
fn default_old_stemcell() -> String {
    "1.445".into()
}
fn default_failure_state() -> String {
    "failed".into()
}

/// The simulated TKGI platform: its live clusters, the broker's configuration and the kubeconfig tokens its binds
/// handed out. It checks tokens with the UAA and counts what it did in the shared counters. The director's
/// deployments and the Kubernetes apiservers read its clusters; Ops Manager configures its broker and runs the
/// "Upgrade all clusters" errand through it.
pub struct Fleet {
    config: Config,
    time_scale: f64,
    /// The simulator's CA (PEM); kubeconfigs from binds embed it.
    ca_pem: String,
    uaa: Arc<Uaa>,
    counters: Arc<Counters>,
    /// What the broker deploys clusters with; Ops Manager sets it when Apply Changes deploys the TKGI tile.
    broker: Mutex<Broker>,
    clusters: Mutex<BTreeMap<String, Cluster>>,
    /// Kubeconfig tokens handed out by binds → cluster name.
    kube_tokens: Mutex<HashMap<String, String>>,
    /// Set once a GET answer has included a cluster whose upgrade failed during this run.
    failure_seen: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone)]
struct Cluster {
    config: ClusterConfig,
    uuid: String,
    pks_version: String,
    k8s_version: String,
    stemcell: String,
    last_action: String,
    last_action_state: String,
    description: String,
    /// When the running action ends, and whether it succeeds.
    ends: Option<(Instant, bool)>,
    failures_left: u32,
    workers: u32,
    master_host: String,
    /// An upgrade of this run ended in failure (scenario-seeded failures do not count).
    upgrade_failed: bool,
    /// The broker's configuration when the running upgrade started: what it lands on.
    upgrade_target: Option<Broker>,
    /// Rotations that regenerated the certificates.
    rotations: u32,
    rotate_failures_left: u32,
    /// The running action is a rotation.
    rotating: bool,
}

/// The broker's `service_deployment` as far as the sim models it: the TKGI version and the stemcell version every
/// cluster manifest it renders gets.
#[derive(Debug, Clone)]
struct Broker {
    version: String,
    stemcell: String,
}

/// What the deployments and Kubernetes routes need to know about a cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub name: String,
    pub uuid: String,
    pub k8s_version: String,
    pub stemcell: String,
    /// E.g. `UPGRADE`, and `in progress`, `succeeded` or `failed` (what a test waits on).
    pub last_action: String,
    pub last_action_state: String,
    pub workers: u32,
    /// Rotations that regenerated the cluster's certificates so far.
    pub rotations: u32,
}

impl Fleet {
    pub(crate) fn new(
        config: Config,
        time_scale: f64,
        ca_pem: String,
        uaa: Arc<Uaa>,
        counters: Arc<Counters>,
    ) -> Fleet {
        let now = Instant::now();
        let clusters = config
            .clusters
            .iter()
            .map(|c| {
                let running = c.last_action_state == "in progress";
                let ends =
                    c.busy_secs.filter(|_| running).map(|s| (now + Duration::from_secs_f64(s * time_scale), true));
                let cluster = Cluster {
                    uuid: c.uuid.clone().unwrap_or_else(|| uuid_for(&c.name)),
                    pks_version: c.pks_version.clone(),
                    k8s_version: c.k8s_version.clone(),
                    stemcell: c.stemcell.clone(),
                    last_action: c.last_action.clone(),
                    last_action_state: c.last_action_state.clone(),
                    description: format!("Instance {} {}", c.last_action.to_lowercase(), c.last_action_state),
                    ends,
                    failures_left: c.upgrade_failures,
                    workers: c.workers.unwrap_or_else(|| {
                        config.plans.iter().find(|p| p.name == c.plan_name).map_or(3, |p| p.worker_instances)
                    }),
                    master_host: format!("{}.k8s.example.com", c.name),
                    upgrade_failed: false,
                    upgrade_target: None,
                    rotations: 0,
                    rotate_failures_left: c.rotate_failures,
                    rotating: false,
                    config: c.clone(),
                };
                (c.name.clone(), cluster)
            })
            .collect();
        let broker = Broker { version: config.platform_version.clone(), stemcell: config.stemcell_version.clone() };
        Fleet {
            config,
            time_scale,
            ca_pem,
            uaa,
            counters,
            broker: Mutex::new(broker),
            clusters: Mutex::new(clusters),
            kube_tokens: Mutex::default(),
            failure_seen: Default::default(),
        }
    }

    /// The clusters with every due transition applied, under the one short lock all handlers take.
    fn clusters(&self) -> MutexGuard<'_, BTreeMap<String, Cluster>> {
        let mut clusters = lock(&self.clusters);
        self.advance(&mut clusters);
        clusters
    }

    /// Every cluster after applying due transitions.
    pub fn views(&self) -> Vec<ClusterView> {
        let clusters = self.clusters();
        clusters
            .values()
            .map(|c| ClusterView {
                name: c.config.name.clone(),
                uuid: c.uuid.clone(),
                k8s_version: c.k8s_version.clone(),
                stemcell: c.stemcell.clone(),
                last_action: c.last_action.clone(),
                last_action_state: c.last_action_state.clone(),
                workers: c.workers,
                rotations: c.rotations,
            })
            .collect()
    }

    /// Records that a client has been shown `c`, so a failure it carries counts as seen from now on.
    fn note_shown(&self, c: &Cluster) {
        if c.upgrade_failed {
            self.failure_seen.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The stemcell line the clusters' deployments use.
    pub(crate) fn stemcell_name(&self) -> &str {
        &self.config.stemcell_name
    }

    /// The cluster a kubeconfig token was issued for.
    pub(crate) fn cluster_of_token(&self, token: &str) -> Option<String> {
        lock(&self.kube_tokens).get(token).cloned()
    }

    /// Applies every transition that is due: running actions that reached their end succeed or fail.
    fn advance(&self, clusters: &mut BTreeMap<String, Cluster>) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for c in clusters.values_mut() {
            let Some((_, ok)) = c.ends.filter(|(at, _)| *at <= now) else { continue };
            c.ends = None;
            self.counters.add("tkgi.actions_in_flight", -1);
            let upgrade = c.last_action == "UPGRADE";
            if upgrade {
                self.counters.add("tkgi.upgrades_in_flight", -1);
            }
            let rotation = c.rotating;
            if rotation {
                c.rotating = false;
                self.counters.add("tkgi.rotations_in_flight", -1);
                if ok && !c.config.rotate_noop {
                    c.rotations += 1;
                }
            }
            if ok && c.last_action == "DELETE" {
                gone.push(c.config.name.clone());
            } else if ok {
                c.last_action_state = "succeeded".into();
                c.description = format!("Instance {} completed", c.last_action.to_lowercase());
                if let Some(target) = c.upgrade_target.take().filter(|_| upgrade) {
                    c.pks_version = target.version;
                    c.k8s_version = self.config.k8s_version.clone();
                    c.stemcell = target.stemcell;
                }
            } else if rotation {
                c.last_action_state = c.config.failure_state.clone();
                c.description = "Instance update failed: bosh task failed: certificate rotation failed".into();
            } else {
                c.last_action_state = c.config.failure_state.clone();
                c.upgrade_failed = upgrade;
                c.description =
                    "Instance upgrade failed: bosh task failed: 'worker/2' is not running after update".into();
            }
        }
        for name in gone {
            clusters.remove(&name);
        }
    }

    /// Puts `c` into `action in progress` for `secs` simulated seconds and counts the start.
    fn begin(&self, c: &mut Cluster, action: &str, secs: f64, ok: bool) {
        c.last_action = action.into();
        c.last_action_state = "in progress".into();
        c.description = format!("Instance {} in progress", action.to_lowercase());
        c.ends = Some((Instant::now() + Duration::from_secs_f64(secs).mul_f64(self.time_scale), ok));
        self.counters.add("tkgi.actions_in_flight", 1);
    }

    /// Counts an accepted create, resize or delete, in total and for the cluster.
    fn count(&self, what: &str, name: &str) {
        self.counters.add(&format!("tkgi.{what}"), 1);
        self.counters.add(&format!("tkgi.{what}.{name}"), 1);
    }

    /// Every handler starts here: a valid token with a TKGI scope.
    #[allow(clippy::result_large_err)]
    fn auth(&self, headers: &HeaderMap) -> Result<(), Response> {
        self.uaa.authorize(headers, SCOPES)
    }
}

/// A stable, UUID-shaped id from a cluster name, so deployments and clusters agree without configuration.
fn uuid_for(name: &str) -> String {
    let h = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn busy(c: &Cluster) -> Option<Response> {
    (c.last_action_state == "in progress").then(|| {
        let msg = format!("cluster {} is busy: {} in progress", c.config.name, c.last_action);
        (StatusCode::CONFLICT, Json(json!({"body": msg}))).into_response()
    })
}

fn cluster_json(c: &Cluster) -> Value {
    let name = &c.config.name;
    json!({
        "name": name,
        "plan_name": c.config.plan_name,
        "last_action": c.last_action,
        "last_action_state": c.last_action_state,
        "last_action_description": c.description,
        "uuid": c.uuid,
        "k8s_version": c.k8s_version,
        "pks_version": c.pks_version,
        "kubernetes_master_ips": ["10.20.0.11"],
        "network_profile_name": "",
        "compute_profile_name": "",
        "parameters": {
            "kubernetes_master_host": c.master_host,
            "kubernetes_master_port": 8443,
            "kubernetes_worker_instances": c.workers,
        }
    })
}

fn not_found(name: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"body": format!("cluster {name} not found")}))).into_response()
}

pub(crate) fn routes(fleet: Arc<Fleet>) -> Router {
    let cfg = &fleet.config;
    let upgrade_filter = Method::from_bytes(cfg.upgrade_method.as_bytes())
        .ok()
        .and_then(|m| MethodFilter::try_from(m).ok())
        .unwrap_or(MethodFilter::PATCH);
    let upgrade_path = cfg.upgrade_path.clone();
    let version_path = cfg.version_path.clone();
    let shared = shares_update_route(cfg);
    let one = if shared { get(show).patch(upgrade) } else { get(show).patch(update) };
    let router = Router::new()
        .route("/v1/clusters", get(list).post(create))
        .route("/v1/clusters/{name}", one.delete(remove))
        .route("/v1/clusters/{name}/binds", post(bind))
        .route("/v1/plans", get(plans))
        .route(&version_path, get(platform_version));
    let router = if shared { router } else { router.route(&upgrade_path, on(upgrade_filter, upgrade)) };
    let router = match &cfg.rotate_path {
        Some(path) => {
            let filter = Method::from_bytes(cfg.rotate_method.as_bytes())
                .ok()
                .and_then(|m| MethodFilter::try_from(m).ok())
                .unwrap_or(MethodFilter::POST);
            router.route(path, on(filter, rotate))
        }
        None => router,
    };
    router.with_state(fleet)
}

async fn list(State(fleet): State<Arc<Fleet>>, headers: HeaderMap) -> Response {
    if let Err(r) = fleet.auth(&headers) {
        return r;
    }
    let clusters = fleet.clusters();
    clusters.values().for_each(|c| fleet.note_shown(c));
    Json(clusters.values().map(cluster_json).collect::<Vec<_>>()).into_response()
}

async fn show(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = fleet.auth(&headers) {
        return r;
    }
    let clusters = fleet.clusters();
    match clusters.get(&name) {
        Some(c) => {
            fleet.note_shown(c);
            Json(cluster_json(c)).into_response()
        }
        None => not_found(&name),
    }
}

async fn upgrade(
    State(fleet): State<Arc<Fleet>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = fleet.auth(&headers) {
        return r;
    }
    // The default route is also TKGI's update/resize route: without the assumed upgrade body it is a resize.
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if shares_update_route(&fleet.config) && parsed.get("upgrade") != Some(&Value::Bool(true)) {
        return resize(&fleet, &name, &parsed);
    }
    match fleet.start_upgrade(&name) {
        Ok(answer) => (StatusCode::ACCEPTED, Json(answer)).into_response(),
        Err(refused) => refused,
    }
}

impl Fleet {
    /// Starts `name`'s upgrade onto the broker's current configuration: the accepted cluster as JSON, or the
    /// API's refusal (404 unknown, 409 busy). Shared by the upgrade route and Ops Manager's errand.
    #[allow(clippy::result_large_err)] // as Uaa::authorize: the refusal is the handler's response
    fn start_upgrade(&self, name: &str) -> Result<Value, Response> {
        // Read before taking the fleet lock, so the two locks are never held together.
        let target = lock(&self.broker).clone();
        let mut clusters = self.clusters();
        let Some(c) = clusters.get_mut(name) else { return Err(not_found(name)) };
        if let Some(refused) = busy(c) {
            return Err(refused);
        }
        let secs = c.config.upgrade_secs.unwrap_or(self.config.upgrade_secs);
        let ok = c.failures_left == 0;
        c.failures_left = c.failures_left.saturating_sub(1);
        self.begin(c, "UPGRADE", secs, ok);
        c.upgrade_target = Some(target);
        self.counters.add("tkgi.upgrades_in_flight", 1);
        self.counters.add("tkgi.upgrade_starts", 1);
        self.counters.add(&format!("tkgi.upgrade_starts.{name}"), 1);
        if self.failure_seen.load(std::sync::atomic::Ordering::SeqCst) {
            self.counters.add("tkgi.starts_after_failure_seen", 1);
        }
        Ok(cluster_json(c))
    }

    /// What Ops Manager's Apply Changes of the TKGI tile does to the broker: from now on clusters are created and
    /// upgraded at `version` on stemcell `stemcell`.
    pub(crate) fn configure_broker(&self, version: &str, stemcell: &str) {
        *lock(&self.broker) = Broker { version: version.to_owned(), stemcell: stemcell.to_owned() };
    }

    /// The errand `upgrade-all-service-instances` upgrading one cluster (the broker's own call, no token):
    /// `Err` with the API's refusal text when the cluster is unknown or busy.
    pub(crate) fn errand_upgrade(&self, name: &str) -> Result<(), String> {
        self.start_upgrade(name).map(|_| ()).map_err(|refused| format!("{} for cluster {name}", refused.status()))
    }

    /// Every cluster's name, in name order.
    pub(crate) fn cluster_names(&self) -> Vec<String> {
        self.clusters().keys().cloned().collect()
    }

    /// `(last_action, last_action_state)` of one cluster after due transitions; `None` when it does not exist.
    pub(crate) fn action_of(&self, name: &str) -> Option<(String, String)> {
        self.clusters().get(name).map(|c| (c.last_action.clone(), c.last_action_state.clone()))
    }

    /// The broker's TKGI version now (what `/actuator/info` reports and clusters are upgraded to).
    pub(crate) fn broker_version(&self) -> String {
        lock(&self.broker).version.clone()
    }
}

/// The configured rotate-certificates route: the cluster shows `rotate_action in progress`, then its certificates
/// change (unless scripted otherwise).
async fn rotate(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = fleet.auth(&headers) {
        return r;
    }
    let cfg = &fleet.config;
    let mut clusters = fleet.clusters();
    let Some(c) = clusters.get_mut(&name) else { return not_found(&name) };
    if let Some(refused) = busy(c) {
        return refused;
    }
    let ok = c.rotate_failures_left == 0;
    c.rotate_failures_left = c.rotate_failures_left.saturating_sub(1);
    fleet.begin(c, &cfg.rotate_action, cfg.rotate_secs, ok);
    c.rotating = true;
    fleet.counters.add("tkgi.rotations_in_flight", 1);
    fleet.count("rotations", &name);
    (StatusCode::ACCEPTED, Json(cluster_json(c))).into_response()
}

/// True when the (assumed) upgrade route is TKGI's own `PATCH /v1/clusters/{name}` update route.
fn shares_update_route(cfg: &Config) -> bool {
    cfg.upgrade_path == "/v1/clusters/{name}" && cfg.upgrade_method.eq_ignore_ascii_case("PATCH")
}

/// `PATCH /v1/clusters/{name}` when it is not the upgrade route.
async fn update(
    State(fleet): State<Arc<Fleet>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = fleet.auth(&headers) {
        return r;
    }
    resize(&fleet, &name, &serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The flat update body (docs/facts/tkgi-api.md); only `kubernetes_worker_instances` is simulated.
fn resize(fleet: &Fleet, name: &str, body: &Value) -> Response {
    let Some(workers) = body.get("kubernetes_worker_instances").and_then(Value::as_u64) else {
        let msg = "repave-sim simulates updates of kubernetes_worker_instances (a positive integer) only";
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"body": msg}))).into_response();
    };
    let mut clusters = fleet.clusters();
    let Some(c) = clusters.get_mut(name) else { return not_found(name) };
    if let Some(refused) = busy(c) {
        return refused;
    }
    c.workers = u32::try_from(workers).unwrap_or(u32::MAX);
    fleet.begin(c, "UPDATE", fleet.config.resize_secs, true);
    fleet.count("resizes", name);
    (StatusCode::ACCEPTED, Json(cluster_json(c))).into_response()
}

/// The create body (docs/facts/tkgi-api.md): `name`, `plan_name`, `parameters.kubernetes_master_host` required.
#[derive(Deserialize)]
struct CreateBody {
    name: String,
    plan_name: String,
    parameters: CreateParameters,
}

#[derive(Deserialize)]
struct CreateParameters {
    kubernetes_master_host: String,
    #[serde(default)]
    kubernetes_worker_instances: Option<u32>,
}

async fn create(State(fleet): State<Arc<Fleet>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = fleet.auth(&headers) {
        return r;
    }
    let body: CreateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"body": format!("invalid cluster: {e}")}))).into_response();
        }
    };
    let cfg = &fleet.config;
    let Some(plan) = cfg.plans.iter().find(|p| p.name == body.plan_name) else {
        let msg = format!("plan {} not found", body.plan_name);
        return (StatusCode::BAD_REQUEST, Json(json!({"body": msg}))).into_response();
    };
    let mut clusters = fleet.clusters();
    if clusters.contains_key(&body.name) {
        let msg = format!("cluster {} already exists", body.name);
        return (StatusCode::CONFLICT, Json(json!({"body": msg}))).into_response();
    }
    let broker = lock(&fleet.broker).clone();
    let mut c = new_cluster(&broker, &cfg.k8s_version, &body.name, &body.plan_name);
    c.workers = body.parameters.kubernetes_worker_instances.unwrap_or(plan.worker_instances);
    c.master_host = body.parameters.kubernetes_master_host;
    fleet.begin(&mut c, "CREATE", cfg.create_secs, true);
    fleet.count("creates", &body.name);
    let answer = cluster_json(&c);
    clusters.insert(body.name, c);
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

/// A cluster as a create makes it: at the broker's versions, no scripted failures.
fn new_cluster(broker: &Broker, k8s_version: &str, name: &str, plan_name: &str) -> Cluster {
    let config = ClusterConfig {
        name: name.into(),
        plan_name: plan_name.into(),
        pks_version: broker.version.clone(),
        k8s_version: k8s_version.into(),
        last_action: "CREATE".into(),
        last_action_state: "in progress".into(),
        uuid: None,
        stemcell: broker.stemcell.clone(),
        upgrade_failures: 0,
        failure_state: default_failure_state(),
        busy_secs: None,
        upgrade_secs: None,
        workers: None,
        rotate_failures: 0,
        rotate_noop: false,
    };
    Cluster {
        uuid: uuid_for(name),
        pks_version: config.pks_version.clone(),
        k8s_version: config.k8s_version.clone(),
        stemcell: config.stemcell.clone(),
        last_action: config.last_action.clone(),
        last_action_state: config.last_action_state.clone(),
        description: String::new(),
        ends: None,
        failures_left: 0,
        workers: 0,
        master_host: format!("{name}.k8s.example.com"),
        upgrade_failed: false,
        upgrade_target: None,
        rotations: 0,
        rotate_failures_left: 0,
        rotating: false,
        config,
    }
}

/// `DELETE /v1/clusters/{name}` → 204; the cluster shows `DELETE in progress` until it is gone.
async fn remove(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = fleet.auth(&headers) {
        return r;
    }
    let mut clusters = fleet.clusters();
    let Some(c) = clusters.get_mut(&name) else { return not_found(&name) };
    if let Some(refused) = busy(c) {
        return refused;
    }
    fleet.begin(c, "DELETE", fleet.config.delete_secs, true);
    fleet.count("deletes", &name);
    StatusCode::NO_CONTENT.into_response()
}

async fn bind(State(fleet): State<Arc<Fleet>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = fleet.auth(&headers) {
        return r;
    }
    let Some(uuid) = lock(&fleet.clusters).get(&name).map(|c| c.uuid.clone()) else {
        return not_found(&name);
    };
    let token = format!("kube-token-{name}-{:016x}", random_u64());
    lock(&fleet.kube_tokens).insert(token.clone(), name.clone());
    let ca = base64::engine::general_purpose::STANDARD.encode(&fleet.ca_pem);
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
        "contexts": [{"name": name, "context": {"cluster": name, "user": uuid}}],
        "clusters": [{"name": name, "cluster": {"certificate-authority-data": ca, "server": format!("{}/k8s/{name}", base_url(&headers))}}],
        "users": [{"name": uuid, "user": {"token": token}}],
    });
    (StatusCode::CREATED, Json(config)).into_response()
}

async fn plans(State(fleet): State<Arc<Fleet>>, headers: HeaderMap) -> Response {
    if let Err(r) = fleet.auth(&headers) {
        return r;
    }
    let plans: Vec<Value> = fleet
        .config
        .plans
        .iter()
        .map(|p| {
            let id = hex::encode(&Sha256::digest(p.name.as_bytes())[..8]);
            json!({"id": id, "name": p.name, "description": format!("{} plan", p.name), "worker_instances": p.worker_instances})
        })
        .collect();
    Json(plans).into_response()
}

async fn platform_version(State(fleet): State<Arc<Fleet>>, headers: HeaderMap) -> Response {
    if let Err(r) = fleet.auth(&headers) {
        return r;
    }
    Json(json!({"build": {"artifact": "pks-api", "version": fleet.broker_version()}})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_and_shaped() {
        let u = uuid_for("prod-eu-1");
        assert_eq!(u, uuid_for("prod-eu-1"));
        assert_eq!(u.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert_ne!(u, uuid_for("prod-eu-2"));
    }
}
