//! The BOSH director's deployments of the TKGI clusters: one `service-instance_<uuid>` deployment per cluster,
//! with the same UUIDs the TKGI API reports and the stemcell each cluster runs (bumped by upgrades), plus what a
//! day-2 operation needs of them (docs/facts/bosh-director.md):
//!
//! - `GET /deployments` (with `locked`), `GET /deployments/{d}/instances` (synchronous, `vm_created_at`) and
//!   `?format=full` (302 to a `retrieve vm-stats` task whose result lines carry `job_state` and `processes`);
//! - `PUT /deployments/{d}/jobs/*?state=recreate` (only with `Content-Type: text/yaml` and an empty body; 302 to a
//!   `create deployment` task that holds the deployment's lock). The task recreates every VM, or with
//!   `recreate_vms_created_before` (read by directors from v282.1.3) only the older ones; it takes one
//!   `recreate_secs` step for the canaries and one per batch of `max_in_flight` (both checked inside the task, as
//!   the director does), and the recreated VMs get a new `vm_created_at` and `running` processes. A recreate on
//!   a deployment another task has locked is accepted and ends `error` with the director's lock message;
//! - `GET /deployments/{d}/certificate_expiry`: the deployment's certificates; regenerated (four more years)
//!   when TKGI reports a rotation of the cluster.
//!
//! Scripted per cluster: VM age, instances that are not running, the soonest certificate expiry, a lock held by
//! another task (an errand) for a while, recreates that fail. Counted: `director.recreates` (and `.<cluster>`),
//! `director.recreates_in_flight` (with its high-water mark) and `director.recreates_raced` (accepted while
//! another task held the lock: repave must never cause one).
//!
//! Its own service rather than part of [`super::director`]: the deployments are TKGI's clusters, and the director
//! must not depend on TKGI (TKGI already depends on the director for stemcells). The tasks and locks are the
//! director's ([`Director::start_task`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::director::{Director, TaskSpec, director_error, redirect_to_task};
use super::tkgi::{ClusterView, Fleet};
use super::uaa::Uaa;
use crate::shared::counters::Counters;
use crate::shared::lock;

const READ_SCOPES: &[&str] = &["bosh.admin", "bosh.read"];
const ADMIN_SCOPES: &[&str] = &["bosh.admin"];
/// What a regenerated certificate lasts: TKGI's cluster certificates default to four years.
const ROTATED_DAYS: i64 = 4 * 365;
const CERTIFICATES: &[&str] = &["tls-kubelet-2018", "tls-kubernetes-2018", "tls-etcd-2018-2", "kubo_ca_2018"];

/// The `deployments` section of a scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Simulated seconds one step of a recreate takes (the canaries, or one batch of `max_in_flight`).
    pub recreate_secs: f64,
    /// Master instances per cluster; the workers are the TKGI cluster's.
    pub masters: u32,
    /// Age of every VM when the simulator starts, in days.
    pub vm_age_days: f64,
    /// Days until each deployment's soonest certificate expires (negative: expired that long ago).
    pub certificate_days_left: i64,
    pub clusters: Vec<ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config { recreate_secs: 600.0, masters: 1, vm_age_days: 30.0, certificate_days_left: 400, clusters: Vec::new() }
    }
}

/// What differs for one cluster's deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub name: String,
    #[serde(default)]
    pub vm_age_days: Option<f64>,
    /// Instances whose agent reports another `job_state` than `running`, e.g. `{worker/1: failing}`.
    #[serde(default)]
    pub job_states: BTreeMap<String, String>,
    #[serde(default)]
    pub certificate_days_left: Option<i64>,
    /// Another task (an errand) holds the deployment's lock for this many simulated seconds from the start.
    #[serde(default)]
    pub locked_secs: Option<f64>,
    /// The first N recreates of this deployment end in `error`.
    #[serde(default)]
    pub recreate_failures: u32,
}

/// The deployments, and what they read: tokens from the UAA, clusters from TKGI, tasks and locks from the director.
pub(crate) struct Deployments {
    config: Config,
    time_scale: f64,
    uaa: Arc<Uaa>,
    fleet: Arc<Fleet>,
    director: Arc<Director>,
    counters: Arc<Counters>,
    world: Mutex<HashMap<String, Deployment>>,
}

/// One cluster's deployment, keyed by its name.
struct Deployment {
    cluster: String,
    /// The stemcell version TKGI deployed it with.
    stemcell: String,
    vms: Vec<Vm>,
    certificates: Vec<(String, Timestamp)>,
    /// TKGI rotations already applied to `certificates`.
    rotations: u32,
    recreate: Option<Recreate>,
    failures_left: u32,
    next_cid: u64,
}

struct Vm {
    job: &'static str,
    index: u32,
    id: String,
    cid: String,
    created: Timestamp,
    job_state: String,
}

/// A recreate task under way: when it ends, and which VMs it replaces then.
struct Recreate {
    ends: Instant,
    ends_at: Timestamp,
    ok: bool,
    targets: Vec<usize>,
}

impl Deployments {
    pub(crate) fn new(
        config: Config,
        time_scale: f64,
        uaa: Arc<Uaa>,
        fleet: Arc<Fleet>,
        director: Arc<Director>,
        counters: Arc<Counters>,
    ) -> Self {
        let deployments = Self { config, time_scale, uaa, fleet, director, counters, world: Mutex::default() };
        let views = deployments.fleet.views();
        {
            let mut world = lock(&deployments.world);
            for view in &views {
                let deployment = deployments.seeded(view);
                world.insert(name_of(view), deployment);
            }
        }
        deployments.start_errands(&views);
        deployments
    }

    fn cluster_config(&self, name: &str) -> Option<&ClusterConfig> {
        self.config.clusters.iter().find(|c| c.name == name)
    }

    /// A deployment as the scenario describes it at the start.
    fn seeded(&self, view: &ClusterView) -> Deployment {
        let own = self.cluster_config(&view.name);
        let age = own.and_then(|c| c.vm_age_days).unwrap_or(self.config.vm_age_days);
        let created = Timestamp::now() - SignedDuration::from_secs_f64(age * 86_400.0);
        let mut deployment = self.fresh(view, created);
        let days = own.and_then(|c| c.certificate_days_left).unwrap_or(self.config.certificate_days_left);
        deployment.certificates = certificates(days);
        deployment.failures_left = own.map_or(0, |c| c.recreate_failures);
        if let Some(states) = own.map(|c| &c.job_states) {
            for vm in &mut deployment.vms {
                if let Some(state) = states.get(&format!("{}/{}", vm.job, vm.index)) {
                    vm.job_state = state.clone();
                }
            }
        }
        deployment
    }

    /// A deployment whose VMs were all created at `created`, its certificates new.
    fn fresh(&self, view: &ClusterView, created: Timestamp) -> Deployment {
        let mut deployment = Deployment {
            cluster: view.name.clone(),
            stemcell: view.stemcell.clone(),
            vms: Vec::new(),
            certificates: certificates(ROTATED_DAYS),
            rotations: view.rotations,
            recreate: None,
            failures_left: 0,
            next_cid: 1,
        };
        deployment.resize(self.config.masters, view.workers, created);
        deployment
    }

    /// Scripted locks: a task of someone else's (an errand) holds the deployment for a while.
    fn start_errands(&self, views: &[ClusterView]) {
        for view in views {
            let Some(secs) = self.cluster_config(&view.name).and_then(|c| c.locked_secs) else { continue };
            let deployment = name_of(view);
            self.director.start_task(TaskSpec {
                description: format!("run errand smoke-tests from deployment {deployment}"),
                deployment: Some(deployment),
                context_id: String::new(),
                duration: Duration::from_secs_f64(secs * self.time_scale),
                outcome: Ok("1 succeeded, 0 errored, 0 canceled".into()),
                locks: true,
                output: None,
            });
        }
    }

    /// The deployments in step with TKGI's clusters (created, resized, deleted, rotated) and with every recreate
    /// that is due applied, under the one short lock.
    fn world(&self) -> MutexGuard<'_, HashMap<String, Deployment>> {
        // Read before taking our lock, so TKGI's lock is never taken inside it.
        let views: HashMap<String, ClusterView> = self.fleet.views().into_iter().map(|v| (name_of(&v), v)).collect();
        let mut world = lock(&self.world);
        world.retain(|name, _| views.contains_key(name));
        for (name, view) in &views {
            let deployment = world.entry(name.clone()).or_insert_with(|| self.fresh(view, Timestamp::now()));
            deployment.stemcell.clone_from(&view.stemcell);
            if deployment.vms.len() != (self.config.masters + view.workers) as usize {
                deployment.resize(self.config.masters, view.workers, Timestamp::now());
            }
            if view.rotations > deployment.rotations {
                deployment.rotations = view.rotations;
                deployment.certificates = certificates(ROTATED_DAYS);
            }
        }
        for deployment in world.values_mut() {
            if deployment.finish_recreate() {
                self.counters.add("director.recreates_in_flight", -1);
            }
        }
        world
    }
}

impl Deployment {
    /// Adds or removes workers to match TKGI's count; new VMs are created at `created`.
    fn resize(&mut self, masters: u32, workers: u32, created: Timestamp) {
        for (job, count) in [("master", masters), ("worker", workers)] {
            self.vms.retain(|vm| vm.job != job || vm.index < count);
            for index in 0..count {
                if !self.vms.iter().any(|vm| vm.job == job && vm.index == index) {
                    let cid = self.new_cid();
                    let id = format!("{:08x}-0000-4000-8000-{index:012}", hash(&format!("{}/{job}", self.cluster)));
                    self.vms.push(Vm { job, index, id, cid, created, job_state: "running".into() });
                }
            }
        }
    }

    fn new_cid(&mut self) -> String {
        self.next_cid += 1;
        format!("vm-{:08x}-{}", hash(&self.cluster), self.next_cid)
    }

    /// Applies a recreate whose time has come; true when one ended.
    fn finish_recreate(&mut self) -> bool {
        let Some(recreate) = self.recreate.take_if(|r| r.ends <= Instant::now()) else { return false };
        if recreate.ok {
            for index in recreate.targets {
                let cid = self.new_cid();
                let vm = &mut self.vms[index];
                vm.cid = cid;
                vm.created = recreate.ends_at;
                vm.job_state = "running".into();
            }
        }
        true
    }
}

fn name_of(view: &ClusterView) -> String {
    format!("service-instance_{}", view.uuid)
}

fn hash(text: &str) -> u32 {
    text.bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619))
}

/// The certificates of a deployment: the first expires in `days` days, the others later.
fn certificates(days: i64) -> Vec<(String, Timestamp)> {
    // Half a day on top, so `days_left` (floored) reads `days` for the rest of the test run.
    let soonest = Timestamp::now() + SignedDuration::from_hours(days * 24 + 12);
    CERTIFICATES
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_string(), soonest + SignedDuration::from_hours(24 * 90 * i as i64)))
        .collect()
}

/// RFC 3339 in whole seconds, as the director writes times.
fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second()).unwrap_or(t).to_string()
}

pub(crate) fn routes(deployments: Arc<Deployments>) -> Router {
    Router::new()
        .route("/deployments", get(list))
        .route("/deployments/{deployment}/instances", get(instances))
        .route("/deployments/{deployment}/certificate_expiry", get(certificate_expiry))
        .route("/deployments/{deployment}/jobs/{job}", put(change_state))
        .with_state(deployments)
}

#[allow(clippy::result_large_err)] // handlers return the refusal as it is
fn authorize(deployments: &Deployments, headers: &HeaderMap, scopes: &[&str]) -> Result<(), Response> {
    deployments.uaa.authorize(headers, scopes)
}

fn unknown_deployment(name: &str) -> Response {
    director_error(StatusCode::NOT_FOUND, 70000, &format!("Deployment '{name}' doesn't exist"))
}

async fn list(State(deployments): State<Arc<Deployments>>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&deployments, &headers, READ_SCOPES) {
        return response;
    }
    let fleet = &deployments.fleet;
    let stemcell_name = fleet.stemcell_name();
    let locked: Vec<String> = deployments.director.deployment_locks().into_iter().map(|l| l.deployment).collect();
    let list: Vec<_> = fleet
        .views()
        .into_iter()
        .map(|c| {
            let name = name_of(&c);
            json!({
                "name": name,
                "teams": [],
                "cloud_config": "latest",
                "stemcells": [{"name": stemcell_name, "version": c.stemcell}],
                "releases": [],
                "locked": locked.contains(&name),
            })
        })
        .collect();
    Json(list).into_response()
}

#[derive(Deserialize)]
struct InstancesQuery {
    format: Option<String>,
}

/// `GET /deployments/{d}/instances`: synchronous, or with `format=full` a vm-stats task whose result lines carry
/// the agents' process state.
async fn instances(
    State(deployments): State<Arc<Deployments>>,
    Path(name): Path<String>,
    Query(query): Query<InstancesQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&deployments, &headers, READ_SCOPES) {
        return response;
    }
    let full = query.format.as_deref() == Some("full");
    let (lines, plain) = {
        let world = deployments.world();
        let Some(deployment) = world.get(&name) else { return unknown_deployment(&name) };
        let stemcell =
            json!({"name": deployments.fleet.stemcell_name(), "version": deployment.stemcell, "api_version": 3});
        let lines: String = deployment.vms.iter().map(|vm| format!("{}\n", full_line(vm, &stemcell))).collect();
        let plain: Vec<Value> = deployment.vms.iter().map(plain_entry).collect();
        (lines, plain)
    };
    if !full {
        return Json(plain).into_response();
    }
    let id = deployments.director.start_task(TaskSpec {
        description: "retrieve vm-stats".into(),
        deployment: Some(name),
        context_id: headers.get("x-bosh-context-id").and_then(|v| v.to_str().ok()).unwrap_or_default().into(),
        duration: Duration::ZERO,
        outcome: Ok(String::new()),
        locks: false,
        output: Some(lines),
    });
    redirect_to_task(id)
}

fn plain_entry(vm: &Vm) -> Value {
    json!({"agent_id": format!("agent-{}", vm.cid), "cid": vm.cid, "job": vm.job, "index": vm.index, "id": vm.id,
           "az": "az1", "ips": ["10.20.0.11"], "vm_created_at": rfc3339(vm.created), "expects_vm": true})
}

fn full_line(vm: &Vm, stemcell: &Value) -> Value {
    let process = if vm.job == "master" { "kube-apiserver" } else { "kubelet" };
    let process_state = if vm.job_state == "running" { "running" } else { "failing" };
    json!({"vm_cid": vm.cid, "active": true, "vm_created_at": rfc3339(vm.created), "cloud_properties": {},
           "disk_cid": null, "disk_cids": [], "ips": ["10.20.0.11"], "agent_id": format!("agent-{}", vm.cid),
           "job_name": vm.job, "index": vm.index, "job_state": vm.job_state, "state": "started",
           "vm_type": "medium.disk", "vitals": {}, "processes": [{"name": process, "state": process_state}],
           "az": "az1", "id": vm.id, "bootstrap": vm.index == 0, "ignore": false, "stemcell": stemcell})
}

async fn certificate_expiry(
    State(deployments): State<Arc<Deployments>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&deployments, &headers, READ_SCOPES) {
        return response;
    }
    let world = deployments.world();
    let Some(deployment) = world.get(&name) else { return unknown_deployment(&name) };
    let now = Timestamp::now();
    let list: Vec<Value> = deployment
        .certificates
        .iter()
        .enumerate()
        .map(|(i, (variable, expiry))| {
            let days_left = (expiry.as_second() - now.as_second()).div_euclid(86_400);
            json!({"name": format!("/p-bosh/{name}/{variable}"), "id": (41 + i).to_string(),
                   "expiry_date": rfc3339(*expiry), "days_left": days_left})
        })
        .collect();
    Json(list).into_response()
}

/// `PUT /deployments/{d}/jobs/{job}?state=recreate…`: the converging recreate (docs/facts/bosh-director.md).
async fn change_state(
    State(deployments): State<Arc<Deployments>>,
    Path((name, job)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = authorize(&deployments, &headers, ADMIN_SCOPES) {
        return response;
    }
    let yaml =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/yaml"));
    if !yaml {
        // The route only matches text/yaml; anything else falls through to the director's 404 text.
        let text = format!("Endpoint '/deployments/{name}/jobs/{job}' not found.");
        return (StatusCode::NOT_FOUND, text).into_response();
    }
    if job != "*" || query.get("state").map(String::as_str) != Some("recreate") || !body.is_empty() {
        let why = "repave-sim simulates only the whole-deployment recreate: /jobs/*?state=recreate with an empty body";
        return director_error(StatusCode::UNPROCESSABLE_ENTITY, 40005, why);
    }
    let cutoff = match created_before(&deployments, &query) {
        Ok(cutoff) => cutoff,
        Err(refused) => return refused,
    };
    let context_id = headers.get("x-bosh-context-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match deployments.recreate(&name, &query, cutoff, context_id) {
        Some(id) => redirect_to_task(id),
        None => unknown_deployment(&name),
    }
}

/// The `recreate_vms_created_before` cutoff, when this director version reads it.
#[allow(clippy::result_large_err)]
fn created_before(deployments: &Deployments, query: &HashMap<String, String>) -> Result<Option<Timestamp>, Response> {
    let Some(text) = query.get("recreate_vms_created_before") else { return Ok(None) };
    if !deployments.director.config().reads_created_before() {
        return Ok(None);
    }
    text.parse::<Timestamp>()
        .map(Some)
        .map_err(|_| director_error(StatusCode::BAD_REQUEST, 40005, &format!("Invalid RFC 3339 timestamp '{text}'")))
}

impl Deployments {
    /// Starts the recreate task of deployment `name`; `None` when it does not exist.
    fn recreate(
        &self,
        name: &str,
        query: &HashMap<String, String>,
        cutoff: Option<Timestamp>,
        context_id: &str,
    ) -> Option<u64> {
        let held = self.director.lock_on(name);
        let mut world = self.world();
        let deployment = world.get_mut(name)?;
        let targets: Vec<usize> =
            (0..deployment.vms.len()).filter(|i| cutoff.is_none_or(|c| deployment.vms[*i].created < c)).collect();
        let fix = query.get("fix").is_some_and(|v| v == "true");
        let dry_run = query.get("dry_run").is_some_and(|v| v == "true");
        let planned = plan_steps(query, targets.len());
        let outcome = match (&held, &planned) {
            (Some(lock), _) => Err(format!(
                "Failed to acquire lock for lock:deployment:{name} uid: sim. Locking task id is {}, description: '{}'",
                lock.task_id, lock.description
            )),
            (None, Err(why)) => Err(why.clone()),
            (None, Ok(_)) => unresponsive(deployment, &targets, fix),
        };
        let steps = match (&outcome, planned) {
            (Ok(()), Ok(steps)) if !dry_run => steps,
            _ => 0,
        };
        let failed = outcome.is_ok() && !dry_run && deployment.failures_left > 0;
        deployment.failures_left = deployment.failures_left.saturating_sub(u32::from(failed));
        let duration = Duration::from_secs_f64(steps as f64 * self.config.recreate_secs * self.time_scale);
        let outcome = match outcome {
            Ok(()) if failed => Err(format!(
                "'worker/0 ({})' is not running after update. Review logs for failed jobs: kubelet",
                deployment.vms.first().map_or("", |vm| vm.id.as_str())
            )),
            Ok(()) => Ok(format!("/deployments/{name}")),
            Err(why) => Err(why),
        };
        let ok = outcome.is_ok() && !dry_run;
        self.count(&deployment.cluster, held.is_some());
        let description = if dry_run { "create deployment (dry run)" } else { "create deployment" };
        let id = self.director.start_task(TaskSpec {
            description: description.into(),
            deployment: Some(name.to_string()),
            context_id: context_id.into(),
            duration,
            outcome,
            locks: held.is_none(),
            output: None,
        });
        deployment.recreate = Some(Recreate {
            ends: Instant::now() + duration,
            ends_at: Timestamp::now() + SignedDuration::try_from(duration).unwrap_or_default(),
            ok,
            targets,
        });
        Some(id)
    }

    fn count(&self, cluster: &str, raced: bool) {
        self.counters.add("director.recreates", 1);
        self.counters.add(&format!("director.recreates.{cluster}"), 1);
        self.counters.add("director.recreates_in_flight", 1);
        if raced {
            self.counters.add("director.recreates_raced", 1);
        }
    }
}

/// Without `fix`, an instance whose agent does not answer fails the recreate (bosh-cli's `--fix` recreates it).
fn unresponsive(deployment: &Deployment, targets: &[usize], fix: bool) -> Result<(), String> {
    let stuck = targets.iter().map(|i| &deployment.vms[*i]).find(|vm| vm.job_state == "unresponsive agent");
    match stuck {
        Some(vm) if !fix => {
            Err(format!("{}/{} ({}) has an unresponsive agent; use --fix to recreate it", vm.job, vm.index, vm.id))
        }
        _ => Ok(()),
    }
}

/// How many `recreate_secs` steps recreating `n` VMs takes: one for the canaries, one per batch of
/// `max_in_flight` for the rest. Both are an integer or a percentage of `n` (the director's rule).
fn plan_steps(query: &HashMap<String, String>, n: usize) -> Result<usize, String> {
    let canaries = count_or_percent(query.get("canaries"), n, 1, "canaries")?.min(n);
    let in_flight = count_or_percent(query.get("max_in_flight"), n, 1, "max_in_flight")?.max(1);
    if n == 0 {
        return Ok(0);
    }
    Ok(usize::from(canaries > 0) + (n - canaries).div_ceil(in_flight))
}

fn count_or_percent(value: Option<&String>, n: usize, default: usize, field: &str) -> Result<usize, String> {
    let Some(text) = value else { return Ok(default) };
    let bad = || format!("{field} value '{text}' should be an integer or a percentage");
    match text.strip_suffix('%') {
        Some(percent) => percent.parse::<usize>().map(|p| (n * p).div_ceil(100)).map_err(|_| bad()),
        None => text.parse::<usize>().map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn steps_follow_canaries_and_max_in_flight() {
        assert_eq!(plan_steps(&q(&[]), 4), Ok(4), "one canary, then one at a time");
        assert_eq!(plan_steps(&q(&[("canaries", "1"), ("max_in_flight", "3")]), 7), Ok(3));
        assert_eq!(plan_steps(&q(&[("canaries", "0"), ("max_in_flight", "50%")]), 4), Ok(2));
        assert_eq!(plan_steps(&q(&[]), 0), Ok(0));
        assert!(plan_steps(&q(&[("max_in_flight", "lots")]), 3).unwrap_err().contains("max_in_flight"));
    }
}
