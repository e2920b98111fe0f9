//! Apply Changes: `POST /api/v0/installations` starts one installation, `GET /api/v0/installations` lists them
//! newest first, `GET …/{id}` is its status (`running`, `succeeded`, `failed`) and `GET …/{id}/logs` its whole
//! log so far, growing (docs/facts/opsman.md).
//!
//! An installation deploys for `install_secs` (scaled), writing progress lines to its log as it goes; then, unless
//! it is scripted to fail, the tiles it deploys get their staged version and stemcells (the TKGI tile configures
//! the TKGI broker), and the TKGI tile's errand `upgrade-all-service-instances` runs when this installation turns
//! it on (explicitly, or by the tile's own setting for `"default"`): it upgrades every cluster one after another,
//! as the On-Demand Service Broker's errand does with its default `max_in_flight` of 1, and the installation fails
//! when one of them fails. Like the TKGI clusters, everything advances lazily whenever Ops Manager is touched.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{OpsMan, Product, TKGI, UPGRADE_ALL, World, errors, guid_for};
use crate::shared::rfc3339;

/// One Apply Changes.
pub(super) struct Install {
    pub(super) id: u64,
    user: String,
    started_at: SystemTime,
    finished_at: Option<SystemTime>,
    pub(super) status: &'static str,
    log: String,
    /// Progress lines and when they appear.
    due: VecDeque<(Instant, String)>,
    deploy_ends: Instant,
    fails: bool,
    /// GUIDs of the tiles it deploys.
    deploy: Vec<String>,
    /// Whether the TKGI tile's "Upgrade all clusters" errand runs in it.
    upgrade_all: bool,
    phase: Phase,
    /// The `errands` object of the request, as sent.
    pub(super) requested_errands: Value,
}

enum Phase {
    Deploying,
    /// The errand `upgrade-all-service-instances`: the clusters still to upgrade, and the one upgrading now.
    UpgradingAll {
        queue: VecDeque<String>,
        current: Option<String>,
    },
    Done,
}

impl Install {
    fn line(&mut self, text: impl Into<String>) {
        self.log.push_str(&text.into());
        self.log.push('\n');
    }

    fn flush_due(&mut self, now: Instant) {
        while self.due.front().is_some_and(|(at, _)| *at <= now) {
            let (_, text) = self.due.pop_front().expect("checked above");
            self.line(text);
        }
    }

    fn finish(&mut self, status: &'static str) {
        while let Some((_, text)) = self.due.pop_front() {
            self.line(text);
        }
        self.line(format!("===== {} Finished: {status}", rfc3339(SystemTime::now())));
        self.status = status;
        self.finished_at = Some(SystemTime::now());
        self.phase = Phase::Done;
    }

    fn summary_json(&self) -> Value {
        json!({"id": self.id, "status": self.status, "user_name": self.user,
               "started_at": rfc3339(self.started_at), "finished_at": self.finished_at.map(rfc3339)})
    }
}

/// Applies every due step of every running installation.
pub(super) fn advance_all(ops: &OpsMan, world: &mut World) {
    for index in 0..world.installs.len() {
        advance(ops, world, index);
    }
}

fn advance(ops: &OpsMan, world: &mut World, index: usize) {
    let now = Instant::now();
    let install = &mut world.installs[index];
    install.flush_due(now);
    if install.status != "running" {
        return;
    }
    if matches!(install.phase, Phase::Deploying) {
        if now < install.deploy_ends {
            return;
        }
        if install.fails {
            fail_deploy(install);
            return;
        }
        let (deploy, upgrade_all) = (install.deploy.clone(), install.upgrade_all);
        let deployed = apply(ops, &mut world.products, &deploy);
        let install = &mut world.installs[index];
        deployed.into_iter().for_each(|line| install.line(line));
        begin_errand(ops, install, deploy.contains(&guid_for(TKGI)), upgrade_all);
    }
    step_errand(ops, &mut world.installs[index]);
}

fn fail_deploy(install: &mut Install) {
    install.line(format!("Task {} error", 100 + install.id));
    install.line(
        "Error: Action Failed get_task: Task 5d1a9c2e result: 1 of 1 post-start scripts failed. Failed Jobs: pks-api.",
    );
    install.line("Exited with 1.");
    install.finish("failed");
}

/// Deploys the staged state of the tiles `deploy` names; returns the log lines saying so.
fn apply(ops: &OpsMan, products: &mut [Product], deploy: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for product in products.iter_mut().filter(|p| deploy.contains(&p.guid)) {
        product.deployed_version = Some(product.staged_version.clone());
        product.deployed = product.staged.clone();
        let stemcells: Vec<String> = product.deployed.iter().map(|s| s.os_version()).collect();
        lines.push(format!(
            "Deployed {} {} (stemcells: {})",
            product.kind,
            product.staged_version,
            stemcells.join(", ")
        ));
        ops.deploy(product);
    }
    lines
}

fn begin_errand(ops: &OpsMan, install: &mut Install, tkgi_deployed: bool, upgrade_all: bool) {
    if !tkgi_deployed {
        install.finish("succeeded");
        return;
    }
    if !upgrade_all {
        install.line(format!("Errand {UPGRADE_ALL} of {TKGI} is off for this installation: no cluster is upgraded"));
        install.finish("succeeded");
        return;
    }
    let queue: VecDeque<String> = ops.fleet.cluster_names().into();
    install.line(format!("===== Running errand {UPGRADE_ALL} for {TKGI}"));
    install.line(format!("[{UPGRADE_ALL}] {} service instances to upgrade, 1 at a time", queue.len()));
    install.phase = Phase::UpgradingAll { queue, current: None };
}

/// One move of the errand.
enum Step {
    /// A cluster finished; look at the next.
    Upgraded(String),
    /// A cluster's upgrade started; wait for it.
    Started(String),
    Failed(String),
    Completed,
}

/// Moves the errand on: waits for the cluster upgrading now, then starts the next; fails on the first failure.
fn step_errand(ops: &OpsMan, install: &mut Install) {
    while let Phase::UpgradingAll { queue, current } = &mut install.phase {
        let step = match current.take() {
            Some(name) => match ops.fleet.action_of(&name) {
                Some((_, state)) if state == "in progress" => {
                    *current = Some(name);
                    return;
                }
                Some((_, state)) if state != "succeeded" => Step::Failed(format!("upgrade of {name} ended `{state}`")),
                _ => Step::Upgraded(name),
            },
            None => match queue.pop_front() {
                None => Step::Completed,
                Some(next) => match ops.fleet.errand_upgrade(&next) {
                    Ok(()) => {
                        ops.counters.add("opsman.errand_upgrades", 1);
                        *current = Some(next.clone());
                        Step::Started(next)
                    }
                    Err(why) => Step::Failed(format!("cannot upgrade {next}: {why}")),
                },
            },
        };
        match step {
            Step::Upgraded(name) => install.line(format!("[{UPGRADE_ALL}] {name} upgraded")),
            Step::Started(name) => return install.line(format!("[{UPGRADE_ALL}] upgrading {name}")),
            Step::Failed(why) => {
                install.line(format!("[{UPGRADE_ALL}] {why}"));
                install.line(format!("Errand {UPGRADE_ALL} failed"));
                return install.finish("failed");
            }
            Step::Completed => {
                install.line(format!("Errand {UPGRADE_ALL} completed"));
                return install.finish("succeeded");
            }
        }
    }
}

/// `POST /api/v0/installations`: `{deploy_products, errands, ignore_warnings, …}` → `{"install":{"id":N}}`;
/// `busy_status` while one runs; 422 with Ops Manager's errors for what it cannot deploy.
pub(super) async fn start(State(ops): State<Arc<OpsMan>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let request: Value = if body.is_empty() { json!({}) } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    if !request.is_object() {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, &["the request body must be a JSON object".into()]);
    }
    let mut world = ops.lock_world();
    if let Some(running) = world.installs.iter().find(|i| i.status == "running") {
        let status = StatusCode::from_u16(ops.config.busy_status).unwrap_or(StatusCode::CONFLICT);
        return errors(status, &[format!("An installation is already in progress (installation {})", running.id)]);
    }
    let plan = match plan(&ops, &world, &request) {
        Ok(plan) => plan,
        Err(refused) => return refused,
    };
    let id = world.installs.len() as u64 + 1;
    let user = ops.uaa.subject(&headers).unwrap_or_else(|| "admin".into());
    let install = new_install(&ops, &world, id, user, plan, request["errands"].clone());
    world.installs.push(install);
    ops.counters.add("opsman.installations", 1);
    Json(json!({"install": {"id": id}})).into_response()
}

/// What a valid request deploys: the tiles and whether the TKGI errand runs.
struct Plan {
    deploy: Vec<String>,
    upgrade_all: bool,
}

#[allow(clippy::result_large_err)] // the refusal is the handler's response
fn plan(ops: &OpsMan, world: &World, request: &Value) -> Result<Plan, Response> {
    let unprocessable = |message: String| errors(StatusCode::UNPROCESSABLE_ENTITY, &[message]);
    let deploy = deploy_list(world, &request["deploy_products"]).map_err(unprocessable)?;
    let upgrade_all = errand_choice(world, &request["errands"], &deploy).map_err(unprocessable)?;
    if !ops.config.verifier_errors.is_empty() && deploy.contains(&guid_for(TKGI)) {
        let verifier =
            json!({"type": "PksApiHostnameVerifier", "ignorable": false, "errors": ops.config.verifier_errors});
        let answer = json!({"errors": ops.config.verifier_errors,
            "deployment_errors": {"products": [{"identifier": TKGI, "complete": true, "verifiers": [verifier]}]}});
        return Err((StatusCode::UNPROCESSABLE_ENTITY, Json(answer)).into_response());
    }
    if let Some(incomplete) = world.products.iter().find(|p| p.incomplete && deploy.contains(&p.guid)) {
        return Err(unprocessable(format!("{}: the configuration is incomplete", incomplete.kind)));
    }
    Ok(Plan { deploy, upgrade_all })
}

/// `"all"` (or absent), `"none"`, or a list of staged GUIDs; the director's tile is always deployed.
fn deploy_list(world: &World, value: &Value) -> Result<Vec<String>, String> {
    let director = guid_for(super::DIRECTOR);
    let all = || world.products.iter().map(|p| p.guid.clone()).collect();
    match value {
        Value::Null => Ok(all()),
        Value::String(s) if s == "all" => Ok(all()),
        Value::String(s) if s == "none" => Ok(vec![director]),
        Value::Array(items) => {
            let mut guids = vec![director];
            for item in items {
                let guid = item.as_str().unwrap_or_default();
                if !world.products.iter().any(|p| p.guid == guid) {
                    return Err(format!("Product '{item}' is not staged"));
                }
                guids.push(guid.to_owned());
            }
            Ok(guids)
        }
        other => Err(format!("deploy_products must be \"all\", \"none\" or a list of product GUIDs, got {other}")),
    }
}

/// Checks `errands` (`{GUID: {run_post_deploy: {NAME: true|false|"default"}, run_pre_delete: {…}}}`) and says
/// whether the TKGI tile's `upgrade-all-service-instances` runs.
fn errand_choice(world: &World, errands: &Value, deploy: &[String]) -> Result<bool, String> {
    let empty = serde_json::Map::new();
    let by_guid = match errands {
        Value::Null => &empty,
        Value::Object(map) => map,
        other => return Err(format!("errands must be an object keyed by product GUID, got {other}")),
    };
    for (guid, choice) in by_guid {
        let product =
            world.products.iter().find(|p| &p.guid == guid).ok_or(format!("Product '{guid}' is not staged"))?;
        for (list, states) in choice.as_object().into_iter().flatten() {
            for (name, state) in states.as_object().into_iter().flatten() {
                if !product.errands.iter().any(|e| &e.name == name) {
                    return Err(format!("Errand '{name}' is not defined for product '{}' ({list})", product.kind));
                }
                if !matches!(state, Value::Bool(_)) && state != "default" {
                    return Err(format!("Errand '{name}': {state} is not one of true, false, \"default\""));
                }
            }
        }
    }
    let tkgi = guid_for(TKGI);
    let Some(tile) = world.products.iter().find(|p| p.guid == tkgi && deploy.contains(&tkgi)) else { return Ok(false) };
    let tile_setting = tile.errands.iter().find(|e| e.name == UPGRADE_ALL).and_then(|e| e.post_deploy.clone());
    Ok(match errands.pointer(&format!("/{tkgi}/run_post_deploy/{UPGRADE_ALL}")) {
        Some(Value::Bool(on)) => *on,
        _ => tile_setting.is_some_and(|setting| setting != json!(false)),
    })
}

fn new_install(ops: &OpsMan, world: &World, id: u64, user: String, plan: Plan, requested_errands: Value) -> Install {
    let now = Instant::now();
    let span = Duration::from_secs_f64(ops.config.install_secs * ops.time_scale);
    let deploying: Vec<&Product> = world.products.iter().filter(|p| plan.deploy.contains(&p.guid)).collect();
    let kinds: Vec<&str> = deploying.iter().map(|p| p.kind.as_str()).collect();
    let stemcells: Vec<String> = deploying.iter().flat_map(|p| p.staged.iter().map(|s| s.os_version())).collect();
    let mut due = vec![format!("Uploading stemcells to the director: {}", stemcells.join(", "))];
    due.extend(deploying.iter().map(|p| format!("Deploying {} {} ({})", p.kind, p.staged_version, p.guid)));
    due.push(format!("Task {} done", 100 + id));
    let step = span / (due.len() as u32 + 1);
    let due = due.into_iter().enumerate().map(|(i, line)| (now + step * (i as u32 + 1), line)).collect();
    let mut install = Install {
        id,
        user,
        started_at: SystemTime::now(),
        finished_at: None,
        status: "running",
        log: String::new(),
        due,
        deploy_ends: now + span,
        fails: id <= u64::from(ops.config.fail_installations),
        deploy: plan.deploy,
        upgrade_all: plan.upgrade_all,
        phase: Phase::Deploying,
        requested_errands,
    };
    install.line(format!("===== {} Installing {}", rfc3339(install.started_at), kinds.join(", ")));
    install
}

pub(super) async fn list(State(ops): State<Arc<OpsMan>>, headers: HeaderMap) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let world = ops.lock_world();
    let list: Vec<Value> = world.installs.iter().rev().map(Install::summary_json).collect();
    Json(json!({ "installations": list })).into_response()
}

pub(super) async fn status(State(ops): State<Arc<OpsMan>>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    with_install(
        &ops,
        &headers,
        id,
        |i| json!({"status": i.status, "started_at": rfc3339(i.started_at), "finished_at": i.finished_at.map(rfc3339)}),
    )
}

pub(super) async fn logs(State(ops): State<Arc<OpsMan>>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    with_install(&ops, &headers, id, |i| json!({ "logs": i.log }))
}

fn with_install(ops: &OpsMan, headers: &HeaderMap, id: u64, answer: impl Fn(&Install) -> Value) -> Response {
    if let Err(denied) = ops.auth(headers) {
        return denied;
    }
    let world = ops.lock_world();
    match world.installs.iter().find(|i| i.id == id) {
        Some(install) => Json(answer(install)).into_response(),
        None => errors(StatusCode::NOT_FOUND, &[format!("Installation {id} not found")]),
    }
}
