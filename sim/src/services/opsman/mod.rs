//! Ops Manager: `/api/v0/info`, the stemcell library ([`library`]: multipart import, `diagnostic_report`,
//! associations and assignments), staged and deployed products, their errands, pending changes, pre-deploy checks,
//! Apply Changes ([`installs`]: installations with cumulative logs, and the TKGI tile's "Upgrade all clusters"
//! errand), and expiring certificates. Its UAA is the simulator's, also served at `/uaa/oauth/token`. Shapes and
//! statuses follow docs/facts/opsman.md; `sim/tests/integration/opsman.rs` checks them against the shapes of
//! `om`'s recorded fixtures.
//!
//! What it models of the platform behind it: Apply Changes of the TKGI tile configures the TKGI broker with the
//! tile's version and its assigned stemcell (uploading that stemcell to the director first), so clusters upgraded
//! afterwards land on it (docs/facts/tkgi-stemcell-path.md); with the errand `upgrade-all-service-instances` on,
//! the installation itself upgrades every cluster, one after another; with it off, no cluster is touched.
//!
//! The sim's own choices where the real behaviour is not published, each configurable or labelled:
//! `POST /api/v0/installations` while one runs answers `busy_status` (ASSUMED 409); API calls need the UAA scope
//! `opsman.admin` (ASSUMED, a community-documented authority); `stemcell_associations` exists from Ops Manager
//! 2.6 on (404 before), `stemcell_assignments` always; a PATCH of associations replaces the staged stemcells of
//! each operating system it names and keeps the others.
//!
//! Counters: `opsman.stemcell_imports` (new stemcells in the library), `opsman.installations` (started),
//! `opsman.errand_upgrades` (clusters the errand started).

mod installs;
mod library;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::director::Director;
use super::tkgi::Fleet;
use super::uaa::Uaa;
use crate::shared::counters::Counters;
use crate::shared::{lock, rfc3339};

use installs::Install;
use library::Stemcell;

/// The product type of the TKGI tile.
pub const TKGI: &str = "pivotal-container-service";
/// The TKGI tile's "Upgrade all clusters" errand.
pub const UPGRADE_ALL: &str = "upgrade-all-service-instances";
/// The BOSH director's own tile, always staged and deployed.
const DIRECTOR: &str = "p-bosh";
/// ASSUMED: the authority an Ops Manager API client needs (docs/facts/opsman.md).
const SCOPES: &[&str] = &["opsman.admin"];

/// The `opsman` section of a scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// What `GET /api/v0/info` reports; below 2.6 the API has no `stemcell_associations`.
    pub version: String,
    /// `infrastructure_type` of the diagnostic report.
    pub infrastructure_type: String,
    /// The stemcell library at start, as `name/version` (bosh.io names, e.g.
    /// `bosh-vsphere-esxi-ubuntu-jammy-go_agent/1.505`).
    pub stemcells: Vec<String>,
    /// The tiles besides the director's. A TKGI tile not listed here is added from the `tkgi` section: deployed
    /// at its `platform_version` on its `stemcell_name/stemcell_version`.
    pub products: Vec<ProductConfig>,
    /// Simulated seconds an installation deploys before its errands (scaled by `time_scale`).
    pub install_secs: f64,
    /// ASSUMED: the status of `POST /api/v0/installations` while another installation runs.
    pub busy_status: u16,
    /// The first N installations fail at the end of their deploy, with a BOSH error in the log.
    pub fail_installations: u32,
    /// `POST /api/v0/installations` answers 422 with these verifier errors (for the TKGI tile).
    pub verifier_errors: Vec<String>,
    pub certificates: Vec<CertificateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: "3.0.25-build.5".into(),
            infrastructure_type: "vsphere".into(),
            stemcells: Vec::new(),
            products: Vec::new(),
            install_secs: 600.0,
            busy_status: 409,
            fail_installations: 0,
            verifier_errors: Vec::new(),
            certificates: Vec::new(),
        }
    }
}

/// One tile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    /// The product type, e.g. `pivotal-container-service`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The deployed `product_version` (also staged, unless `staged_version` differs).
    pub version: String,
    /// A staged upgrade that the next Apply Changes deploys.
    #[serde(default)]
    pub staged_version: Option<String>,
    /// `false`: staged only, never deployed.
    #[serde(default = "yes")]
    pub deployed: bool,
    /// Its deployed (and staged) stemcells as `name/version`; they are put in the library too.
    #[serde(default)]
    pub stemcells: Vec<String>,
    /// Its errands; default: none, or the three the TKGI tile is known to have.
    #[serde(default)]
    pub errands: Option<Vec<ErrandConfig>>,
    /// The pre-deploy check reports an incomplete configuration, and Apply Changes refuses it.
    #[serde(default)]
    pub incomplete: bool,
}

fn yes() -> bool {
    true
}

/// One errand of a tile as its staged configuration sets it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrandConfig {
    pub name: String,
    /// `true`, `false`, `"when-changed"` or `"default"` for post-deploy errands.
    #[serde(default)]
    pub post_deploy: Option<Value>,
    #[serde(default)]
    pub pre_delete: Option<Value>,
}

/// One deployed certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub issuer: String,
    /// `valid_until` is this many days after the simulator started (negative: already expired).
    pub expires_in_days: f64,
    /// `ops_manager` or `credhub`.
    #[serde(default = "default_location")]
    pub location: String,
    /// The tile it belongs to (its GUID is reported); none for the director's.
    #[serde(default)]
    pub product_type: Option<String>,
    #[serde(default)]
    pub property_reference: Option<String>,
    #[serde(default)]
    pub variable_path: Option<String>,
    #[serde(default)]
    pub is_ca: bool,
}

fn default_location() -> String {
    "ops_manager".into()
}

/// The errands the TKGI tile is known to have (docs/facts/opsman.md): the "Upgrade all clusters" errand is on
/// by default in the sim, as the TKGI docs describe a full upgrade.
fn tkgi_errands() -> Vec<ErrandConfig> {
    let post =
        |name: &str, on: bool| ErrandConfig { name: name.into(), post_deploy: Some(json!(on)), pre_delete: None };
    vec![
        post(UPGRADE_ALL, true),
        post("pks-nsx-t-precheck", false),
        ErrandConfig { name: "delete-all-clusters".into(), post_deploy: None, pre_delete: Some(json!(true)) },
    ]
}

/// A tile as Ops Manager holds it.
#[derive(Debug, Clone)]
struct Product {
    kind: String,
    guid: String,
    staged_version: String,
    deployed_version: Option<String>,
    staged: Vec<Stemcell>,
    deployed: Vec<Stemcell>,
    errands: Vec<ErrandConfig>,
    incomplete: bool,
}

impl Product {
    fn from_config(config: &ProductConfig) -> Self {
        let stemcells: Vec<Stemcell> = config.stemcells.iter().filter_map(|s| Stemcell::from_spec(s)).collect();
        let default_errands = if config.kind == TKGI { tkgi_errands() } else { Vec::new() };
        Product {
            kind: config.kind.clone(),
            guid: guid_for(&config.kind),
            staged_version: config.staged_version.clone().unwrap_or_else(|| config.version.clone()),
            deployed_version: config.deployed.then(|| config.version.clone()),
            deployed: if config.deployed { stemcells.clone() } else { Vec::new() },
            staged: stemcells,
            errands: config.errands.clone().unwrap_or(default_errands),
            incomplete: config.incomplete,
        }
    }

    /// `install`, `update` or `unchanged`, as `GET /api/v0/staged/pending_changes` names the action.
    fn action(&self) -> &'static str {
        match &self.deployed_version {
            None => "install",
            Some(v) if *v != self.staged_version || self.staged != self.deployed => "update",
            Some(_) => "unchanged",
        }
    }

    /// The operating systems this tile needs a stemcell of: those of its stemcells, staged or deployed.
    fn required_oses(&self) -> Vec<String> {
        let mut oses: Vec<String> = self.staged.iter().chain(&self.deployed).map(|s| s.os.clone()).collect();
        oses.sort();
        oses.dedup();
        oses
    }

    fn summary_json(&self, version: &str) -> Value {
        json!({"installation_name": self.guid, "guid": self.guid, "type": self.kind, "product_version": version,
               "label": label(&self.kind), "service_broker": self.kind == TKGI,
               "stale": {"parent_products_deployed_more_recently": []}})
    }
}

fn label(kind: &str) -> &str {
    match kind {
        TKGI => "VMware Tanzu Kubernetes Grid Integrated Edition",
        DIRECTOR => "BOSH Director",
        other => other,
    }
}

/// A stable, Ops-Manager-shaped GUID: the type and 20 hex digits.
fn guid_for(kind: &str) -> String {
    format!("{kind}-{}", &hex::encode(Sha256::digest(kind.as_bytes()))[..20])
}

/// The simulated Ops Manager: its library, tiles and installations, behind one short lock. It checks tokens with
/// the UAA, uploads the stemcells a deploy needs to the director, and configures (and, for the errand, drives) the
/// TKGI platform.
pub struct OpsMan {
    config: Config,
    time_scale: f64,
    started: SystemTime,
    uaa: Arc<Uaa>,
    director: Arc<Director>,
    fleet: Arc<Fleet>,
    counters: Arc<Counters>,
    world: Mutex<World>,
}

#[derive(Default)]
struct World {
    library: Vec<Stemcell>,
    products: Vec<Product>,
    /// Oldest first; the API lists them newest first.
    installs: Vec<Install>,
}

impl OpsMan {
    /// Builds the world from the scenario; a TKGI tile missing from `config.products` is added as the TKGI
    /// section describes it (`tkgi_tile`), and the TKGI broker is configured from the TKGI tile.
    pub(crate) fn new(
        config: Config,
        tkgi_tile: ProductConfig,
        time_scale: f64,
        uaa: Arc<Uaa>,
        director: Arc<Director>,
        fleet: Arc<Fleet>,
        counters: Arc<Counters>,
    ) -> Self {
        // The director runs on the foundation's Linux stemcell line too.
        let director_tile = ProductConfig {
            kind: DIRECTOR.into(),
            version: config.version.clone(),
            staged_version: None,
            deployed: true,
            stemcells: tkgi_tile.stemcells.clone(),
            errands: None,
            incomplete: false,
        };
        let tkgi = (!config.products.iter().any(|p| p.kind == TKGI)).then_some(tkgi_tile);
        let products: Vec<Product> = std::iter::once(director_tile)
            .chain(config.products.clone())
            .chain(tkgi)
            .map(|p| Product::from_config(&p))
            .collect();
        let mut library: Vec<Stemcell> = config.stemcells.iter().filter_map(|s| Stemcell::from_spec(s)).collect();
        for stemcell in products.iter().flat_map(|p| p.staged.iter().chain(&p.deployed)) {
            if !library.contains(stemcell) {
                library.push(stemcell.clone());
            }
        }
        let ops = Self {
            config,
            time_scale,
            started: SystemTime::now(),
            uaa,
            director,
            fleet,
            counters,
            world: Mutex::new(World { library, products, installs: Vec::new() }),
        };
        // The director's stemcells at start are the scenario's `director` section's; the broker's are the tile's.
        if let Some(tile) = ops.lock_world().products.iter().find(|p| p.kind == TKGI && p.deployed_version.is_some()) {
            ops.configure_broker(tile);
        }
        ops
    }

    /// The world with every due installation step applied.
    fn lock_world(&self) -> MutexGuard<'_, World> {
        let mut world = lock(&self.world);
        installs::advance_all(self, &mut world);
        world
    }

    /// Every handler but `/api/v0/info` starts here.
    #[allow(clippy::result_large_err)] // as Uaa::authorize: the refusal is the handler's response
    fn auth(&self, headers: &HeaderMap) -> Result<(), Response> {
        self.uaa.authorize(headers, SCOPES)
    }

    /// Whether the reported version is at least `major.minor`.
    fn at_least(&self, major: u64, minor: u64) -> bool {
        let mut parts = self.config.version.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u64>().ok());
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
    }

    /// What deploying a tile does to the platform: its stemcells are uploaded to the director, and for the TKGI
    /// tile the broker is reconfigured.
    fn deploy(&self, tile: &Product) {
        for s in &tile.deployed {
            self.director.add_stemcell(&s.name, &s.version, &s.os);
        }
        if tile.kind == TKGI {
            self.configure_broker(tile);
        }
    }

    /// The broker builds clusters at the TKGI tile's deployed version on its stemcell of the clusters' line.
    fn configure_broker(&self, tile: &Product) {
        let line = tile.deployed.iter().find(|s| s.name == self.fleet.stemcell_name()).or(tile.deployed.first());
        if let (Some(version), Some(stemcell)) = (&tile.deployed_version, line) {
            self.fleet.configure_broker(version, &stemcell.version);
        }
    }

    // --- what tests read ---

    /// The library as `(os, version)`.
    pub fn library(&self) -> Vec<(String, String)> {
        self.lock_world().library.iter().map(|s| (s.os.clone(), s.version.clone())).collect()
    }

    /// The staged stemcells of the tile of type `kind` as `os/version`.
    pub fn staged_stemcells(&self, kind: &str) -> Vec<String> {
        self.product_stemcells(kind, |p| &p.staged)
    }

    /// The deployed stemcells of the tile of type `kind` as `os/version`.
    pub fn deployed_stemcells(&self, kind: &str) -> Vec<String> {
        self.product_stemcells(kind, |p| &p.deployed)
    }

    fn product_stemcells(&self, kind: &str, pick: impl Fn(&Product) -> &Vec<Stemcell>) -> Vec<String> {
        let world = self.lock_world();
        let product = world.products.iter().find(|p| p.kind == kind);
        product.map(|p| pick(p).iter().map(Stemcell::os_version).collect()).unwrap_or_default()
    }

    /// Every installation as `(id, status)`, oldest first.
    pub fn installations(&self) -> Vec<(u64, String)> {
        self.lock_world().installs.iter().map(|i| (i.id, i.status.to_owned())).collect()
    }

    /// The `errands` object each installation was started with, oldest first.
    pub fn installation_errands(&self) -> Vec<Value> {
        self.lock_world().installs.iter().map(|i| i.requested_errands.clone()).collect()
    }

    /// The GUID of the tile of type `kind` (stable: derived from the type).
    pub fn guid(kind: &str) -> String {
        guid_for(kind)
    }
}

pub(crate) fn routes(ops: Arc<OpsMan>) -> Router {
    Router::new()
        .route("/api/v0/info", get(info))
        .route("/api/v0/diagnostic_report", get(library::diagnostic_report))
        .route("/api/v0/stemcells", axum::routing::post(library::upload).layer(DefaultBodyLimit::disable()))
        .route("/api/v0/stemcell_associations", get(library::associations).patch(library::associate))
        .route("/api/v0/stemcell_assignments", get(library::assignments).patch(library::assign))
        .route("/api/v0/staged/products", get(staged_products))
        .route("/api/v0/deployed/products", get(deployed_products))
        .route("/api/v0/staged/products/{guid}/errands", get(errands))
        .route("/api/v0/staged/pending_changes", get(pending_changes))
        .route("/api/v0/staged/director/pre_deploy_check", get(director_pre_deploy_check))
        .route("/api/v0/staged/products/{guid}/pre_deploy_check", get(product_pre_deploy_check))
        .route("/api/v0/installations", get(installs::list).post(installs::start))
        .route("/api/v0/installations/{id}", get(installs::status))
        .route("/api/v0/installations/{id}/logs", get(installs::logs))
        .route("/api/v0/deployed/certificates", get(certificates))
        .with_state(ops)
}

/// An Ops Manager error answer: `{"errors": [...]}` with `status`.
fn errors(status: StatusCode, messages: &[String]) -> Response {
    (status, Json(json!({ "errors": messages }))).into_response()
}

/// Unauthenticated (docs/facts/opsman.md).
async fn info(State(ops): State<Arc<OpsMan>>) -> Response {
    Json(json!({"info": {"version": ops.config.version}})).into_response()
}

async fn staged_products(State(ops): State<Arc<OpsMan>>, headers: HeaderMap) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let world = ops.lock_world();
    Json(world.products.iter().map(|p| p.summary_json(&p.staged_version)).collect::<Vec<_>>()).into_response()
}

async fn deployed_products(State(ops): State<Arc<OpsMan>>, headers: HeaderMap) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let world = ops.lock_world();
    let deployed = world.products.iter().filter_map(|p| p.deployed_version.as_deref().map(|v| p.summary_json(v)));
    Json(deployed.collect::<Vec<_>>()).into_response()
}

async fn errands(State(ops): State<Arc<OpsMan>>, Path(guid): Path<String>, headers: HeaderMap) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let world = ops.lock_world();
    let Some(product) = world.products.iter().find(|p| p.guid == guid) else {
        return errors(StatusCode::NOT_FOUND, &[format!("Product {guid} not found")]);
    };
    let list: Vec<Value> = product
        .errands
        .iter()
        .map(|e| match (&e.post_deploy, &e.pre_delete) {
            (Some(post), _) => json!({"name": e.name, "post_deploy": post}),
            (None, pre) => json!({"name": e.name, "pre_delete": pre.clone().unwrap_or(json!(false))}),
        })
        .collect();
    Json(json!({ "errands": list })).into_response()
}

async fn pending_changes(State(ops): State<Arc<OpsMan>>, headers: HeaderMap) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let world = ops.lock_world();
    let changes: Vec<Value> = world
        .products
        .iter()
        .map(|p| {
            let errands: Vec<Value> = p
                .errands
                .iter()
                .filter_map(|e| e.post_deploy.as_ref().map(|on| json!({"name": e.name, "post_deploy": on})))
                .collect();
            let stemcell_present = p.staged.iter().all(|s| world.library.contains(s));
            json!({"guid": p.guid, "action": p.action(), "errands": errands,
                   "completeness_checks": {"configuration_complete": !p.incomplete, "stemcell_present": stemcell_present,
                                           "configurable_properties_valid": !p.incomplete}})
        })
        .collect();
    Json(json!({ "product_changes": changes })).into_response()
}

async fn director_pre_deploy_check(State(ops): State<Arc<OpsMan>>, headers: HeaderMap) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    Json(pre_deploy_check(&guid_for(DIRECTOR), true, Vec::new(), Vec::new())).into_response()
}

async fn product_pre_deploy_check(
    State(ops): State<Arc<OpsMan>>,
    Path(guid): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let world = ops.lock_world();
    let Some(product) = world.products.iter().find(|p| p.guid == guid) else {
        return errors(StatusCode::NOT_FOUND, &[format!("Product {guid} not found")]);
    };
    let stemcells: Vec<Value> = product
        .required_oses()
        .iter()
        .map(|os| {
            let staged = product.staged.iter().find(|s| &s.os == os);
            let assigned = staged.is_some_and(|s| world.library.contains(s));
            let required = product.deployed.iter().find(|s| &s.os == os).map_or("", |s| s.version.as_str());
            json!({"assigned": assigned, "required_stemcell_version": required, "required_stemcell_os": os})
        })
        .collect();
    let properties = if product.incomplete {
        vec![json!({"name": ".properties.network_selector", "type": "selector", "errors": ["can't be blank"],
                    "records": null})]
    } else {
        Vec::new()
    };
    let complete = properties.is_empty() && stemcells.iter().all(|s| s["assigned"] == json!(true));
    Json(pre_deploy_check(&guid, complete, stemcells, properties)).into_response()
}

fn pre_deploy_check(identifier: &str, complete: bool, stemcells: Vec<Value>, properties: Vec<Value>) -> Value {
    json!({"pre_deploy_check": {"identifier": identifier, "complete": complete,
        "network": {"assigned": true}, "availability_zone": {"assigned": true}, "stemcells": stemcells,
        "properties": properties, "resources": {"jobs": []}, "verifiers": []}})
}

#[derive(Deserialize)]
struct CertificatesQuery {
    expires_within: Option<String>,
}

/// `?expires_within=N{d,w,m,y}` keeps the certificates that expire within that time (a month counts 30 days).
async fn certificates(
    State(ops): State<Arc<OpsMan>>,
    Query(query): Query<CertificatesQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let within_days = match query.expires_within.as_deref().map(days_of) {
        None => f64::INFINITY,
        Some(Some(days)) => days,
        Some(None) => return errors(StatusCode::UNPROCESSABLE_ENTITY, &["expires_within is invalid".into()]),
    };
    let now = SystemTime::now().duration_since(ops.started).unwrap_or_default().as_secs_f64() / 86_400.0;
    let list: Vec<Value> = ops
        .config
        .certificates
        .iter()
        .filter(|c| c.expires_in_days - now <= within_days)
        .map(|c| certificate_json(&ops, c))
        .collect();
    Json(json!({ "certificates": list })).into_response()
}

/// `3m` → 90.0; `None` unless it is a positive count with one of the units `d`, `w`, `m`, `y`.
fn days_of(text: &str) -> Option<f64> {
    let (count, unit) = text.split_at(text.len().checked_sub(1)?);
    let count: u32 = count.parse().ok().filter(|n| *n > 0)?;
    let per = match unit {
        "d" => 1.0,
        "w" => 7.0,
        "m" => 30.0,
        "y" => 365.0,
        _ => return None,
    };
    Some(f64::from(count) * per)
}

fn certificate_json(ops: &OpsMan, c: &CertificateConfig) -> Value {
    let at_days = |days: f64| {
        let offset = std::time::Duration::from_secs_f64(days.abs() * 86_400.0);
        rfc3339(if days >= 0.0 { ops.started + offset } else { ops.started - offset })
    };
    json!({"issuer": c.issuer, "valid_from": at_days(-365.0), "valid_until": at_days(c.expires_in_days),
           "configurable": c.property_reference.is_some(), "is_ca": c.is_ca,
           "property_reference": c.property_reference, "property_type": c.property_reference.as_ref().map(|_| "rsa_cert_credentials"),
           "product_guid": c.product_type.as_deref().map(guid_for), "location": c.location,
           "variable_path": c.variable_path, "rotation_procedure_name": "Rotate certificates",
           "rotation_procedure_url": "https://docs.vmware.com/en/VMware-Tanzu-Operations-Manager/3.0/vmware-tanzu-ops-manager/security-pcf-infrastructure-api-cert-rotation.html"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_windows() {
        assert_eq!(days_of("3m"), Some(90.0));
        assert_eq!(days_of("2w"), Some(14.0));
        assert_eq!(days_of("1y"), Some(365.0));
        for bad in ["", "m", "0d", "3x", "-1d", "3"] {
            assert_eq!(days_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn guids_are_stable_and_typed() {
        assert_eq!(guid_for(TKGI), guid_for(TKGI));
        assert!(guid_for(TKGI).starts_with("pivotal-container-service-"));
        assert_eq!(guid_for(TKGI).len(), TKGI.len() + 21);
    }
}
