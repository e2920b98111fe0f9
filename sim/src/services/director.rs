//! The BOSH director: `/info`, `/stemcells` (POST answers 302 to `/tasks/{id}`), `/tasks/{id}` and task output.
//!
//! Shapes follow docs/facts/bosh-director.md. `/info` is open and names the simulator itself as the UAA; every
//! other route needs a bearer token from the simulated UAA: reading (stemcells, tasks) takes `bosh.admin` or
//! `bosh.read`; uploading takes `bosh.admin` or `bosh.stemcells.upload` (BOSH's `read_stemcells`/
//! `upload_stemcells` permissions). As on a real director, an upload-only client cannot list stemcells or
//! follow its own task: `bosh upload-stemcell` needs `bosh.read` as well. A stemcell upload creates a task that stays `processing`
//! for `task_polls` polls of `GET /tasks/{id}`, then ends `done` (the stemcell is added) or `error`. The
//! director "fetches" a location by resolving it against the simulated bosh.io tarballs and identifies an
//! uploaded tarball by its size and sha1, so no bytes are stored.
//!
//! Services above it start *timed* tasks on it ([`Director::start_task`]): a deployment's recreate or its
//! `retrieve vm-stats`, which end by (scaled) time rather than by polls. A running task that works on a
//! deployment holds `lock:deployment:NAME`, which `GET /locks` lists as BOSH does (`type`, `resource`,
//! `timeout`, `task_id`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use sha1::{Digest, Sha1};

use super::boshio::BoshIo;
use super::s3auth;
use super::uaa::Uaa;
use crate::shared::{base_url, lock};

/// The `director` section of a scenario file. Unknown keys are rejected so a typo in a scenario fails loudly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub name: String,
    /// Stemcells already uploaded.
    pub stemcells: Vec<StemcellConfig>,
    /// Polls a task answers `processing` before it ends.
    pub task_polls: u32,
    /// Uploads of these stemcell versions end in `error` with this message.
    pub fail_uploads: Vec<FailConfig>,
    /// What `/info` reports as the director's version. `recreate_vms_created_before` is read by directors from
    /// v282.1.3 on (docs/facts/bosh-director.md); an older version here makes the simulator ignore it.
    pub version: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: "sim-director".into(),
            stemcells: Vec::new(),
            task_polls: 2,
            fail_uploads: Vec::new(),
            version: "282.1.3 (00000000)".into(),
        }
    }
}

impl Config {
    /// Whether this director version reads `recreate_vms_created_before` (v282.1.3 and later).
    pub(crate) fn reads_created_before(&self) -> bool {
        let numbers: Vec<u64> = self
            .version
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .take(3)
            .filter_map(|p| p.parse().ok())
            .collect();
        numbers >= vec![282, 1, 3]
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemcellConfig {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub operating_system: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailConfig {
    pub version: String,
    pub error: String,
}

/// The simulated BOSH director: its uploaded stemcells and its tasks. It checks tokens with the UAA and fetches
/// (by resolving) tarballs from bosh.io; Ops Manager uploads the stemcells its deploys need to it.
pub struct Director {
    config: Config,
    uaa: Arc<Uaa>,
    boshio: Arc<BoshIo>,
    world: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    stemcells: Vec<StemcellConfig>,
    tasks: Vec<Task>,
}

struct Task {
    id: u64,
    state: &'static str,
    description: String,
    result: Option<String>,
    polls_left: u32,
    /// `Ok((name, version))` to add on success, `Err(message)` to fail with.
    outcome: Result<(String, String), String>,
    events: String,
    /// `X-Bosh-Context-Id` of the request that started it ("" when none).
    context_id: String,
    /// The deployment it works on, if any.
    deployment: Option<String>,
    /// A timed task (started by [`Director::start_task`]) ends at this instant instead of after its polls.
    timed: Option<Timed>,
}

/// How a timed task ends.
struct Timed {
    ends: Instant,
    /// `Ok(result)` ends `done`, `Err(message)` ends `error`.
    outcome: Result<String, String>,
    /// Holds `lock:deployment:NAME` while running.
    locks: bool,
    /// What `GET /tasks/{id}/output?type=result` answers once done (e.g. vm-stats lines).
    output: Option<String>,
}

/// What a service asks the director to run as a timed task.
pub(crate) struct TaskSpec {
    pub description: String,
    pub deployment: Option<String>,
    pub context_id: String,
    /// Real time until it ends (already scaled).
    pub duration: Duration,
    pub outcome: Result<String, String>,
    pub locks: bool,
    pub output: Option<String>,
}

/// A deployment lock as `GET /locks` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeploymentLock {
    pub deployment: String,
    pub task_id: u64,
    pub description: String,
}

impl Director {
    pub(crate) fn new(config: Config, uaa: Arc<Uaa>, boshio: Arc<BoshIo>) -> Self {
        let world = Mutex::new(Inner { stemcells: config.stemcells.clone(), tasks: Vec::new() });
        Self { config, uaa, boshio, world }
    }

    /// The director's state with every timed task that is due ended, under its one short lock.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = lock(&self.world);
        settle(&mut inner);
        inner
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Starts a timed task (a recreate, a vm-stats read, another team's errand) and returns its id.
    pub(crate) fn start_task(&self, spec: TaskSpec) -> u64 {
        let mut inner = self.lock();
        let id = inner.tasks.len() as u64 + 1;
        let timed = Timed {
            ends: Instant::now() + spec.duration,
            outcome: spec.outcome,
            locks: spec.locks,
            output: spec.output,
        };
        inner.tasks.push(Task {
            id,
            state: "processing",
            description: spec.description,
            result: None,
            polls_left: 0,
            outcome: Err(String::new()),
            events: String::new(),
            context_id: spec.context_id.chars().take(64).collect(),
            deployment: spec.deployment,
            timed: Some(timed),
        });
        id
    }

    /// The running tasks' deployment locks, oldest first.
    pub(crate) fn deployment_locks(&self) -> Vec<DeploymentLock> {
        let inner = self.lock();
        inner
            .tasks
            .iter()
            .filter(|t| t.state == "processing" && t.timed.as_ref().is_some_and(|x| x.locks))
            .filter_map(|t| {
                let deployment = t.deployment.clone()?;
                Some(DeploymentLock { deployment, task_id: t.id, description: t.description.clone() })
            })
            .collect()
    }

    /// The lock on `deployment`, if a running task holds it.
    pub(crate) fn lock_on(&self, deployment: &str) -> Option<DeploymentLock> {
        self.deployment_locks().into_iter().find(|l| l.deployment == deployment)
    }

    /// Stemcells on the director now, as `(name, version)`.
    pub fn stemcells(&self) -> Vec<(String, String)> {
        self.lock().stemcells.iter().map(|s| (s.name.clone(), s.version.clone())).collect()
    }

    /// What Ops Manager does for every stemcell a deploy needs: upload it to its director (idempotent).
    pub fn add_stemcell(&self, name: &str, version: &str, operating_system: &str) {
        let mut world = self.lock();
        if !world.stemcells.iter().any(|s| s.name == name && s.version == version) {
            let stemcell = StemcellConfig {
                name: name.to_owned(),
                version: version.to_owned(),
                operating_system: operating_system.to_owned(),
            };
            world.stemcells.push(stemcell);
        }
    }

    /// How many tasks were created.
    pub fn task_count(&self) -> usize {
        self.lock().tasks.len()
    }
}

pub(crate) fn routes(director: Arc<Director>) -> Router {
    Router::new()
        .route("/info", get(info))
        .route("/stemcells", get(list_stemcells).post(upload_stemcell))
        .route("/tasks", get(list_tasks))
        .route("/tasks/{id}", get(task))
        .route("/tasks/{id}/output", get(task_output))
        .route("/locks", get(locks))
        .with_state(director)
}

const UUID: &str = "5d6e1f2a-0000-4000-8000-000000000001";
const READ_SCOPES: &[&str] = &["bosh.admin", "bosh.read"];
const UPLOAD_SCOPES: &[&str] = &["bosh.admin", "bosh.stemcells.upload"];

/// A live token without the scope a route needs gets BOSH's 401 with error code 600000 and the
/// scopes it wanted (docs/facts/bosh-director.md), not UAA's 403 `insufficient_scope`.
#[allow(clippy::result_large_err)] // as Uaa::authorize: handlers return the error as it is
fn authorize(director: &Director, headers: &HeaderMap, scopes: &[&str]) -> Result<(), Response> {
    director.uaa.authorize(headers, scopes).map_err(|denied| {
        if denied.status() != StatusCode::FORBIDDEN {
            return denied;
        }
        let wanted: Vec<String> = scopes
            .iter()
            .map(|s| if *s == "bosh.admin" { format!("bosh.admin, bosh.{UUID}.admin") } else { s.to_string() })
            .collect();
        director_error(StatusCode::UNAUTHORIZED, 600000, &format!("Require one of the scopes: {}", wanted.join(", ")))
    })
}

async fn info(State(director): State<Arc<Director>>, headers: HeaderMap) -> Response {
    let uaa = base_url(&headers);
    Json(json!({
        "name": director.config.name,
        "uuid": UUID,
        "version": director.config.version,
        "user": null,
        "cpi": "sim_cpi",
        "stemcell_os": "ubuntu-jammy",
        "stemcell_version": "1.506",
        "user_authentication": {"type": "uaa", "options": {"url": uaa, "urls": [uaa]}},
        "features": {
            "local_dns": {"status": true, "extras": {"domain_name": "bosh"}},
            "power_dns": {"status": false},
            "snapshots": {"status": false},
            "config_server": {"status": false, "extras": {"urls": []}},
        },
    }))
    .into_response()
}

async fn list_stemcells(State(director): State<Arc<Director>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&director, &headers, READ_SCOPES) {
        return denied;
    }
    let mut list = director.lock().stemcells.clone();
    list.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
    let out: Vec<_> = list
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"name": s.name, "operating_system": s.operating_system, "version": s.version,
                   "cid": format!("sc-{i:08}"), "cpi": "", "deployments": [], "api_version": 3, "id": i + 1})
        })
        .collect();
    Json(out).into_response()
}

#[derive(Deserialize)]
struct Location {
    location: String,
    #[serde(default)]
    sha1: Option<String>,
}

async fn upload_stemcell(State(director): State<Arc<Director>>, headers: HeaderMap, body: Body) -> Response {
    if let Err(denied) = authorize(&director, &headers, UPLOAD_SCOPES) {
        return denied;
    }
    let is_json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    let outcome = if is_json {
        let bytes = match axum::body::to_bytes(body, 1 << 20).await {
            Ok(b) => b,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        };
        match serde_json::from_slice::<Location>(&bytes) {
            Ok(loc) => resolve_location(&director.boshio, &loc).await,
            Err(e) => return director_error(StatusCode::BAD_REQUEST, 40000, &format!("invalid JSON: {e}")),
        }
    } else {
        identify_upload(&director.boshio, body).await
    };
    let outcome =
        outcome.and_then(|(name, version)| match director.config.fail_uploads.iter().find(|f| f.version == version) {
            Some(fail) => Err(fail.error.clone()),
            None => Ok((name, version)),
        });
    let context_id = headers.get("x-bosh-context-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    redirect_to_task(create_task(&director, outcome, context_id.chars().take(64).collect()))
}

/// The director's answer to a request that started a task: 302 to `/tasks/{id}`.
pub(crate) fn redirect_to_task(id: u64) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let location = HeaderValue::from_str(&format!("/tasks/{id}")).expect("a number is a valid header");
    response.headers_mut().insert(header::LOCATION, location);
    response
}

/// Resolves a `location` against the simulated bosh.io tarballs and checks its sha1 (or `sha256:`).
async fn resolve_location(boshio: &BoshIo, loc: &Location) -> Result<(String, String), String> {
    let path = loc.location.split_once("://").map(|(_, rest)| rest).and_then(|r| r.find('/').map(|i| &r[i..]));
    let parts: Vec<&str> = path.unwrap_or("").trim_start_matches('/').split('/').collect();
    let not_found =
        || format!("Downloading remote stemcell failed. Check task debug log for details. 404 {}", loc.location);
    let ["stemcells", name, version, flavor, _file] = parts.as_slice() else { return Err(not_found()) };
    let Some(found) = boshio.find(name, version, flavor) else {
        return Err(not_found());
    };
    // A tarball in a private bucket: the director's plain GET only works with a presigned URL.
    if let Some(auth) = &found.variant.s3_auth
        && let Err(refused) = s3auth::verify_presigned(auth, &loc.location)
    {
        return Err(format!(
            "Downloading remote stemcell failed. Check task debug log for details. {} {} ({}) {}",
            refused.status.as_u16(),
            refused.code,
            refused.message,
            loc.location
        ));
    }
    let (name, version) = (found.name.to_string(), found.version.to_string());
    let digests = boshio.digests(found.seed, found.variant.size).await;
    match loc.sha1.as_deref() {
        Some(want) => {
            let (algo, actual) = match want.strip_prefix("sha256:") {
                Some(_) => ("sha256", format!("sha256:{}", digests.sha256)),
                None => ("sha1", digests.sha1.clone()),
            };
            if want != actual {
                return Err(format!("Stemcell {algo} mismatch. Expected {want}, got {actual}"));
            }
            Ok((name, version))
        }
        None => Ok((name, version)),
    }
}

/// Identifies an uploaded tarball by size and sha1 among the simulated bosh.io tarballs.
async fn identify_upload(boshio: &BoshIo, body: Body) -> Result<(String, String), String> {
    let mut stream = body.into_data_stream();
    let (mut sha1, mut size) = (Sha1::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading the upload: {e}"))?;
        size += chunk.len() as u64;
        sha1.update(&chunk);
    }
    let sha1 = hex::encode(sha1.finalize());
    for found in boshio.tarballs().filter(|t| t.variant.size == size) {
        if boshio.digests(found.seed, size).await.sha1 == sha1 {
            return Ok((found.name.to_owned(), found.version.to_owned()));
        }
    }
    Err(format!("Stemcell is not a valid tarball ({size} bytes, sha1 {sha1})"))
}

fn create_task(director: &Director, outcome: Result<(String, String), String>, context_id: String) -> u64 {
    let mut inner = director.lock();
    let id = inner.tasks.len() as u64 + 1;
    let events = event("Update stemcell", "Downloading remote stemcell", "started", None);
    let polls_left = director.config.task_polls;
    inner.tasks.push(Task {
        id,
        state: "processing",
        description: "create stemcell".into(),
        result: None,
        polls_left,
        outcome,
        events,
        context_id,
        deployment: None,
        timed: None,
    });
    id
}

/// Ends every timed task whose time has come.
fn settle(inner: &mut Inner) {
    let now = Instant::now();
    for task in inner.tasks.iter_mut().filter(|t| t.state == "processing") {
        let Some(timed) = task.timed.as_ref().filter(|t| t.ends <= now) else { continue };
        let (state, result, events) = match &timed.outcome {
            Ok(result) => ("done", result.clone(), event(&task.description, "Finished", "finished", None)),
            Err(message) => ("error", message.clone(), event(&task.description, "Failed", "failed", Some(message))),
        };
        task.state = state;
        task.result = Some(result);
        task.events.push_str(&events);
    }
}

/// `GET /locks`: one entry per deployment a running task holds (docs/facts/bosh-director.md). `timeout` is when
/// the lock would expire unless renewed; a held lock is renewed, so it is always a little in the future.
async fn locks(State(director): State<Arc<Director>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&director, &headers, READ_SCOPES) {
        return denied;
    }
    let expires =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() + 240.0);
    let list: Vec<_> = director
        .deployment_locks()
        .into_iter()
        .map(|l| {
            json!({"type": "deployment", "resource": [l.deployment], "timeout": format!("{expires:.6}"),
                   "task_id": l.task_id.to_string()})
        })
        .collect();
    Json(list).into_response()
}

fn event(stage: &str, task: &str, state: &str, error: Option<&str>) -> String {
    let mut e = json!({"time": 1_724_140_800, "stage": stage, "tags": [], "total": 1, "task": task, "index": 1,
                       "state": state, "progress": if state == "started" { 0 } else { 100 }});
    if let Some(message) = error {
        e["data"] = json!({"error": message});
    }
    format!("{e}\n")
}

/// Advances a task by one poll; on its last poll it ends and applies its outcome.
fn advance(inner: &mut Inner, id: u64) -> Option<serde_json::Value> {
    let index = inner.tasks.iter().position(|t| t.id == id)?;
    let task = &mut inner.tasks[index];
    // Timed tasks end by time (`settle`), not by polls.
    if task.state == "processing" && task.timed.is_none() {
        if task.polls_left > 0 {
            task.polls_left -= 1;
        } else {
            finish(task);
            if let (Ok((name, version)), "done") = (&task.outcome, task.state) {
                let (name, version) = (name.clone(), version.clone());
                if !inner.stemcells.iter().any(|s| s.name == name && s.version == version) {
                    inner.stemcells.push(StemcellConfig { name, version, operating_system: "ubuntu-jammy".into() });
                }
            }
        }
    }
    Some(task_json(&inner.tasks[index]))
}

/// A task as `GET /tasks/{id}` and `GET /tasks` show it (docs/facts/bosh-director.md).
fn task_json(task: &Task) -> serde_json::Value {
    json!({"id": task.id, "state": task.state, "description": task.description, "timestamp": 1_724_141_100,
           "started_at": 1_724_140_790, "result": task.result, "user": "repave", "deployment": task.deployment,
           "context_id": task.context_id})
}

fn finish(task: &mut Task) {
    match &task.outcome {
        Ok((name, version)) => {
            task.events.push_str(&event("Update stemcell", "Downloading remote stemcell", "finished", None));
            task.events.push_str(&event("Update stemcell", "Uploading stemcell to the cloud", "finished", None));
            task.state = "done";
            task.result = Some(format!("/stemcells/{name}/{version}"));
        }
        Err(message) => {
            task.events.push_str(&event("Update stemcell", "Downloading remote stemcell", "failed", Some(message)));
            task.events
                .push_str(&format!("{}\n", json!({"time": 1_724_140_900, "error": {"code": 100, "message": message}})));
            task.state = "error";
            task.result = Some(message.clone());
        }
    }
}

async fn task(State(director): State<Arc<Director>>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&director, &headers, READ_SCOPES) {
        return denied;
    }
    match advance(&mut director.lock(), id) {
        Some(task) => Json(task).into_response(),
        None => director_error(StatusCode::NOT_FOUND, 10000, &format!("Task {id} could not be found")),
    }
}

#[derive(Deserialize)]
struct TasksQuery {
    /// Comma-separated states, e.g. `queued,processing,cancelling`.
    state: Option<String>,
    context_id: Option<String>,
    limit: Option<usize>,
}

/// `GET /tasks?state=…&context_id=…&limit=N`: newest first, as the director lists them. Listing does
/// not advance a task; only polling `GET /tasks/{id}` does.
async fn list_tasks(
    State(director): State<Arc<Director>>,
    Query(query): Query<TasksQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = authorize(&director, &headers, READ_SCOPES) {
        return denied;
    }
    let states: Option<Vec<&str>> = query.state.as_deref().map(|s| s.split(',').map(str::trim).collect());
    let inner = director.lock();
    let tasks: Vec<_> = inner
        .tasks
        .iter()
        .rev()
        .filter(|t| states.as_ref().is_none_or(|s| s.contains(&t.state)))
        .filter(|t| query.context_id.as_ref().is_none_or(|c| *c == t.context_id))
        .take(query.limit.unwrap_or(100))
        .map(task_json)
        .collect();
    Json(tasks).into_response()
}

#[derive(Deserialize)]
struct OutputQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn task_output(
    State(director): State<Arc<Director>>,
    Path(id): Path<u64>,
    Query(query): Query<OutputQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = authorize(&director, &headers, READ_SCOPES) {
        return denied;
    }
    let text = {
        let inner = director.lock();
        let Some(task) = inner.tasks.iter().find(|t| t.id == id) else {
            return director_error(StatusCode::NOT_FOUND, 10000, &format!("Task {id} could not be found"));
        };
        let timed_output = task.timed.as_ref().and_then(|t| t.output.clone()).filter(|_| task.state == "done");
        match query.kind.as_deref() {
            Some("result") if task.timed.is_some() => timed_output.unwrap_or_default(),
            Some("result") => task.result.clone().map(|r| format!("{r}\n")).unwrap_or_default(),
            _ => task.events.clone(),
        }
    };
    let from = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<usize>().ok());
    match from {
        None if text.is_empty() => StatusCode::NO_CONTENT.into_response(),
        None => text.into_response(),
        Some(from) if from >= text.len() => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            let range = HeaderValue::from_str(&format!("bytes */{}", text.len())).expect("numbers are valid");
            r.headers_mut().insert(header::CONTENT_RANGE, range);
            r
        }
        Some(from) => {
            let range = format!("bytes {from}-{}/{}", text.len() - 1, text.len());
            let mut r = (StatusCode::PARTIAL_CONTENT, text[from..].to_string()).into_response();
            r.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&range).expect("numbers are valid"));
            r
        }
    }
}

/// The director's error body: `{"code": …, "description": …}`.
pub(crate) fn director_error(status: StatusCode, code: u32, description: &str) -> Response {
    (status, Json(json!({"code": code, "description": description}))).into_response()
}
