//! `source` and `params` for `kind: fleet`: how to reach a TKGI API and its UAA, which clusters to
//! track, the (assumed, overridable) HTTP routes the platform does not publish, and the rollout
//! settings of `out`.
//!
//! The day-2 operations (`params.operation`: `repave`, `rotate`), their director options, the pre-check
//! and the backup gate are params of `out` too; `source.max_vm_age` and `source.warn_within` make `check`
//! count clusters due for a repave or with certificates about to expire.
//!
//! Validation that serde cannot express (`max_in_flight` ≥ 1, exactly one credential pair, non-empty
//! selector patterns, a stemcell target only with a director, an operation with what it needs) lives
//! in the `validate` methods, so `validate_config` catches it too: nothing changes before it passes.

use super::{Connection, DirectorSource, DurationStr, HasConnection, Login, OpsmanSource, TKGI_PRODUCT, at_least_one};
use crate::clients::tkgi;
use crate::rollout::executor::OnFailure;
use crate::rollout::executor::Settings;
use crate::rollout::plan::Canaries;
use crate::versions::stemcell::is_stemcell_version;
use crate::versions::tkgi::ClusterVersionFormat;
use crate::window::Window;
use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::Value;
use std::num::NonZeroUsize;
use std::time::Duration;

/// `source.upgrade`: the HTTP request that starts one cluster's upgrade. Unset fields keep the
/// assumed defaults of [`tkgi::ActionRoute::assumed_upgrade`] (TKGI does not publish this route); capture what
/// `tkgi upgrade-cluster` really sends on your platform and override it here.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpgradeRouteOptions {
    pub method: String,
    /// Path under `api_url`; `{name}` is replaced by the URL-encoded cluster name.
    pub path: String,
    /// JSON body sent as is (`null` sends none).
    pub body: Value,
}

impl Default for UpgradeRouteOptions {
    fn default() -> Self {
        let route = tkgi::ActionRoute::assumed_upgrade();
        UpgradeRouteOptions { method: route.method.to_string(), path: route.path, body: route.body }
    }
}

impl TryFrom<&UpgradeRouteOptions> for tkgi::ActionRoute {
    type Error = anyhow::Error;
    fn try_from(options: &UpgradeRouteOptions) -> Result<Self> {
        action_route("source.upgrade", &options.method, &options.path, &options.body)
    }
}

/// `source.<field>`'s request, once its path and method are judged.
fn action_route(field: &str, method: &str, path: &str, body: &Value) -> Result<tkgi::ActionRoute> {
    if !path.starts_with('/') {
        bail!("{field}.path must start with `/`, got `{path}`");
    }
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| anyhow::anyhow!("{field}.method `{method}` is not an HTTP method"))?;
    Ok(tkgi::ActionRoute { method, path: path.to_string(), body: body.clone() })
}

/// `source.platform_version`: where the platform reports its own TKGI version (the target clusters
/// are upgraded to). Unset fields keep the assumed defaults of [`tkgi::VersionRoute`]; override
/// both, or set `params.target_version` / `target_version_file` on `out`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VersionRouteOptions {
    pub path: String,
    /// RFC 6901 pointer into the JSON answer, e.g. `/build/version`.
    pub pointer: String,
}

impl Default for VersionRouteOptions {
    fn default() -> Self {
        let route = tkgi::VersionRoute::default();
        VersionRouteOptions { path: route.path, pointer: route.pointer }
    }
}

impl From<&VersionRouteOptions> for tkgi::VersionRoute {
    fn from(options: &VersionRouteOptions) -> Self {
        tkgi::VersionRoute { path: options.path.clone(), pointer: options.pointer.clone() }
    }
}

/// `source.rotate`: the HTTP request that starts one cluster's certificate rotation.
///
/// ASSUMPTION: TKGI does not publish the route behind `tkgi rotate-certificates`, so there is no default
/// (docs/facts/certificates-and-backup.md): capture what the CLI sends on your platform and set it here.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RotateRouteOptions {
    pub method: String,
    /// Path under `api_url`; must contain `{name}`, replaced by the URL-encoded cluster name.
    pub path: String,
    /// JSON body sent as is (absent or `null` sends none).
    #[serde(default)]
    pub body: Value,
}

impl TryFrom<&RotateRouteOptions> for tkgi::ActionRoute {
    type Error = anyhow::Error;
    fn try_from(options: &RotateRouteOptions) -> Result<Self> {
        if options.path.starts_with('/') && !options.path.contains("{name}") {
            bail!(
                "source.rotate.path `{}` has no `{{name}}`: the route rotates one cluster, named in its path",
                options.path
            );
        }
        action_route("source.rotate", &options.method, &options.path, &options.body)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub kind: String,
    /// TKGI API, e.g. `https://api.tkgi.example.com:9021`.
    pub api_url: String,
    /// UAA base URL; default: the API host on port 8443.
    #[serde(default)]
    pub uaa_url: Option<String>,
    /// client_credentials login (automation clients with `pks.clusters.admin`).
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// password login through the public client `pks_cli`.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Cluster names and globs; `!pattern` excludes. Default: every cluster the client can see.
    #[serde(default)]
    pub clusters: Selector,
    /// Join each cluster's BOSH deployment `service-instance_<uuid>` for its stemcell version.
    #[serde(default)]
    pub director: Option<DirectorSource>,
    #[serde(default)]
    pub upgrade: UpgradeRouteOptions,
    #[serde(default)]
    pub platform_version: VersionRouteOptions,
    /// The Ops Manager of the foundation: with it, `out`'s default target is the deployed TKGI tile's
    /// `product_version` (the assumed `platform_version` route is then not used).
    #[serde(default)]
    pub opsman: Option<OpsmanSource>,
    /// The TKGI tile's product type in Ops Manager (default `pivotal-container-service`).
    #[serde(default)]
    pub opsman_product: Option<String>,
    /// How the clusters write their TKGI version, so the tile's version maps onto it (default `build`).
    #[serde(default)]
    pub cluster_version_format: Option<ClusterVersionFormat>,
    /// The (unpublished) rotate-certificates route; no default. Needed by `operation: rotate`.
    #[serde(default)]
    pub rotate: Option<RotateRouteOptions>,
    /// `check` counts clusters whose oldest VM is older than this (`repave_due`); the repave default too.
    #[serde(default)]
    pub max_vm_age: Option<DurationStr>,
    /// `check` counts clusters with a certificate expiring within this (`certs_expiring`); `in` flags them.
    #[serde(default)]
    pub warn_within: Option<DurationStr>,
    /// `ca_cert`, `insecure_skip_tls_verify`, `http`: parsed beside these fields by `parse_source`.
    #[serde(skip)]
    pub connection: Connection,
}

impl HasConnection for Source {
    fn connection_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }
}

impl Source {
    pub fn validate(&self) -> Result<()> {
        self.login()?;
        tkgi::ActionRoute::try_from(&self.upgrade)?;
        match &self.opsman {
            Some(opsman) => drop(opsman.login("source.opsman")?),
            None if self.opsman_product.is_some() || self.cluster_version_format.is_some() => bail!(
                "source.opsman_product and source.cluster_version_format need source.opsman: they say how to read the target from Ops Manager"
            ),
            None => {}
        }
        if self.opsman_product.as_deref().is_some_and(|p| p.trim().is_empty()) {
            bail!("source.opsman_product is empty: expected a product type such as `{TKGI_PRODUCT}`");
        }
        self.rotate_route()?;
        for (field, set) in [("max_vm_age", self.max_vm_age.is_some()), ("warn_within", self.warn_within.is_some())] {
            if set && self.director.is_none() {
                bail!(
                    "source.{field} needs source.director: VM ages and certificate expiry are read from each cluster's BOSH deployment"
                );
            }
        }
        Ok(())
    }

    /// The TKGI tile's product type in Ops Manager.
    pub fn opsman_product(&self) -> &str {
        self.opsman_product.as_deref().unwrap_or(TKGI_PRODUCT)
    }

    /// The configured rotate-certificates route, checked.
    pub fn rotate_route(&self) -> Result<Option<tkgi::ActionRoute>> {
        self.rotate.as_ref().map(tkgi::ActionRoute::try_from).transpose()
    }

    /// Exactly one of `client_id`/`client_secret` or `username`/`password`.
    pub fn login(&self) -> Result<Login> {
        Login::one_of("source", &self.client_id, &self.client_secret, &self.username, &self.password)
    }

    /// `uaa_url`, or the API host on port 8443 as TKGI deploys them (one VM, two processes).
    pub fn uaa_url(&self) -> Result<String> {
        if let Some(url) = &self.uaa_url {
            return Ok(url.trim_end_matches('/').to_string());
        }
        let mut url = reqwest::Url::parse(&self.api_url)
            .map_err(|e| anyhow::anyhow!("source.api_url `{}` is not a URL: {e}", self.api_url))?;
        url.set_port(Some(8443)).map_err(|_| anyhow::anyhow!("source.api_url `{}` has no host", self.api_url))?;
        url.set_path("");
        Ok(url.as_str().trim_end_matches('/').to_string())
    }
}

/// Cluster names and globs (`*`, `?`); a leading `!` excludes. With no include pattern, everything is
/// included. Deserialized from the list of patterns, so a bad pattern is refused with its field's name.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct Selector {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl TryFrom<Vec<String>> for Selector {
    type Error = anyhow::Error;

    fn try_from(patterns: Vec<String>) -> Result<Selector> {
        Selector::new(&patterns)
    }
}

impl Selector {
    pub fn new(patterns: &[String]) -> Result<Selector> {
        let mut selector = Selector::default();
        for pattern in patterns {
            let (list, body) = match pattern.strip_prefix('!') {
                Some(rest) => (&mut selector.exclude, rest),
                None => (&mut selector.include, pattern.as_str()),
            };
            if body.trim().is_empty() {
                bail!(
                    "cluster selector `{pattern}` is empty: use a name, a glob such as `prod-*`, or `!name` to exclude"
                );
            }
            list.push(body.to_string());
        }
        Ok(selector)
    }

    pub fn matches(&self, name: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|p| glob_match(p, name));
        included && !self.exclude.iter().any(|p| glob_match(p, name))
    }

    /// Include patterns without wildcards: names the user expects to exist.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.include.iter().filter(|p| !p.contains(['*', '?'])).map(String::as_str)
    }
}

/// `*` matches any run of characters, `?` exactly one.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetParams {
    /// Write one kubeconfig per cluster (`kubeconfigs/<name>.json`, mode 0600).
    #[serde(default)]
    pub kubeconfig: bool,
}

/// What must hold after a cluster reports `succeeded`, before it counts as done.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Health {
    /// Query the cluster's Kubernetes `/version` and `/readyz` through a kubeconfig from `binds`.
    #[serde(default)]
    pub kubernetes: bool,
    /// Wait this long after the checks, then re-read the cluster: it must still be healthy.
    #[serde(default)]
    pub soak: Option<DurationStr>,
    /// How long the Kubernetes checks may keep failing before the cluster counts as failed (default:
    /// [`Settings`]' `health_timeout`).
    #[serde(default)]
    pub timeout: Option<DurationStr>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutParams {
    /// Overrides `source.clusters` for this put.
    #[serde(default)]
    pub clusters: Option<Selector>,
    #[serde(default)]
    pub canaries: Canaries,
    #[serde(default, deserialize_with = "at_least_one")]
    pub max_in_flight: Option<NonZeroUsize>,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Longest time one cluster's upgrade may take, from start (or adoption) to healthy.
    #[serde(default)]
    pub cluster_timeout: Option<DurationStr>,
    /// How often to re-read a cluster while it upgrades.
    #[serde(default)]
    pub poll_interval: Option<DurationStr>,
    #[serde(default)]
    pub health: Health,
    /// Print the plan and stop.
    #[serde(default)]
    pub dry_run: bool,
    /// Upgrade clusters whose last action failed (otherwise they are skipped).
    #[serde(default)]
    pub repair: bool,
    /// The TKGI version clusters must reach; default: what the platform reports.
    #[serde(default)]
    pub target_version: Option<String>,
    /// A file (e.g. `opsman/version` from a previous get) holding the target version.
    #[serde(default)]
    pub target_version_file: Option<String>,
    /// The stemcell version every selected cluster must run (e.g. `1.506`); a cluster on an older one is
    /// upgraded even at the target TKGI version, which (ASSUMED) redeploys it on the TKGI tile's stemcell.
    /// Needs `source.director`.
    #[serde(default)]
    pub target_stemcell: Option<String>,
    /// A file (relative to the put's directory, e.g. `stemcell/version` from a `kind: stemcell` get)
    /// holding the target stemcell version.
    #[serde(default)]
    pub target_stemcell_file: Option<String>,
    /// A desired fleet file (relative to the put's directory, e.g. `fleet-repo/fleet.yml`): create,
    /// resize, upgrade, hold, repair and (with `prune`) delete clusters to match it, wave by wave.
    #[serde(default)]
    pub desired: Option<String>,
    /// A recurring maintenance window (`Sat,Sun 02:00-06:00 Europe/London`); overrides the fleet
    /// file's `window`.
    #[serde(default)]
    pub window: Option<Window>,
    #[serde(default)]
    pub outside_window: OutsideWindow,
    /// Delete clusters that the fleet file does not list (within the selector).
    #[serde(default)]
    pub prune: bool,
    /// The most clusters one run may delete (default [`DEFAULT_MAX_PRUNES`]): a truncated fleet file
    /// must not wipe a fleet.
    #[serde(default)]
    pub max_prunes: Option<usize>,
    /// What the put does to the selected clusters: `upgrade` (default; with `desired`, apply the fleet
    /// file), `repave` (recreate every VM through the director) or `rotate` (certificates, through TKGI).
    #[serde(default)]
    pub operation: Operation,
    /// Repave only clusters whose oldest VM is older than this (`14d`); default `source.max_vm_age`, else
    /// every selected cluster. A fleet file sets it fleet-wide and per cluster.
    #[serde(default)]
    pub max_vm_age: Option<DurationStr>,
    /// The director's own options for each recreate.
    #[serde(default)]
    pub recreate: RecreateParams,
    /// Rotate only clusters with a certificate expiring within this; default `source.warn_within`, else
    /// every selected cluster.
    #[serde(default)]
    pub warn_within: Option<DurationStr>,
    /// A cluster failing its pre-check is skipped (`skip`, the default) or fails the put (`fail`). Needs
    /// `source.director`; without one no pre-check runs.
    #[serde(default)]
    pub pre_check: Option<PreCheck>,
    /// Touch only clusters with a verified BBR backup in this input.
    #[serde(default)]
    pub require_backup: Option<RequireBackup>,
}

/// `params.operation`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Operation {
    #[default]
    Upgrade,
    Repave,
    Rotate,
}

impl Operation {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Operation::Upgrade => "upgrade",
            Operation::Repave => "repave",
            Operation::Rotate => "rotate",
        }
    }
}

/// `params.pre_check`: what a cluster failing its pre-check does to the put.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PreCheck {
    /// Leave the cluster alone, with the reason in the plan.
    #[default]
    Skip,
    /// Fail the put before anything changes.
    Fail,
}

/// `params.recreate`: the director's in-deployment rollout of one recreate (`bosh recreate`'s flags). Unset
/// fields keep the deployment manifest's `update` block.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecreateParams {
    /// Instances recreated first, alone: an integer or a percentage (`1`, `10%`).
    #[serde(default)]
    pub canaries: Option<CountOrPercent>,
    /// Instances recreated at once after the canaries: an integer or a percentage.
    #[serde(default)]
    pub max_in_flight: Option<CountOrPercent>,
    /// Recreate instances with unresponsive agents instead of failing (`bosh recreate --fix`).
    #[serde(default)]
    pub fix: bool,
    #[serde(default)]
    pub skip_drain: bool,
}

/// An integer or `N%` (1–100), as the director takes `canaries` and `max_in_flight`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CountOrPercent(pub String);

impl<'de> Deserialize<'de> for CountOrPercent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("`{value}` is not an integer or a percentage such as `25%`"));
        match &value {
            Value::Number(n) if n.as_u64().is_some() => Ok(CountOrPercent(n.to_string())),
            Value::String(text) => {
                let ok = match text.strip_suffix('%') {
                    Some(p) => p.parse::<u8>().is_ok_and(|p| (1..=100).contains(&p)),
                    None => text.parse::<u64>().is_ok(),
                };
                if ok { Ok(CountOrPercent(text.clone())) } else { Err(bad()) }
            }
            _ => Err(bad()),
        }
    }
}

/// `params.require_backup`: a BBR backup of every cluster about to change, checked before anything starts.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequireBackup {
    /// The input directory (relative to the put's directory) holding the `bbr` artifact folders.
    pub dir: String,
    /// How old the newest verified backup may be (default [`DEFAULT_BACKUP_MAX_AGE`]).
    #[serde(default)]
    pub max_age: Option<DurationStr>,
}

impl RequireBackup {
    pub(crate) fn max_age(&self) -> Duration {
        self.max_age.map_or(DEFAULT_BACKUP_MAX_AGE, |d| d.0)
    }
}

/// How old a backup may be when `require_backup.max_age` is not set: one day, a nightly backup's age.
pub(crate) const DEFAULT_BACKUP_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What `out` does outside the maintenance window (or when it closes mid-run with work left).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OutsideWindow {
    /// Exit 1 with a message saying when the window opens next.
    #[default]
    Fail,
    /// Exit 0 without starting anything; the version is the fleet's (unchanged) state.
    Skip,
}

impl PutParams {
    /// Checks the params against the `source` they will run with (a stemcell target needs a director).
    pub(crate) fn validate(&self, source: &Source) -> Result<()> {
        if self.target_version.is_some() && self.target_version_file.is_some() {
            bail!("params: set `target_version` or `target_version_file`, not both");
        }
        if self.target_stemcell.is_some() && self.target_stemcell_file.is_some() {
            bail!("params: set `target_stemcell` or `target_stemcell_file`, not both");
        }
        if (self.target_stemcell.is_some() || self.target_stemcell_file.is_some()) && source.director.is_none() {
            bail!(
                "params.target_stemcell and params.target_stemcell_file need source.director: each cluster's stemcell is read from its BOSH deployment `service-instance_<uuid>`"
            );
        }
        if self.target_stemcell.as_deref().is_some_and(|v| !is_stemcell_version(v)) {
            bail!(
                "params.target_stemcell `{}` is not a stemcell version such as `1.506`",
                self.target_stemcell.as_deref().unwrap_or_default()
            );
        }
        if let Canaries::Names(names) = &self.canaries
            && names.iter().any(|n| n.trim().is_empty())
        {
            bail!("params.canaries contains an empty name");
        }
        if self.poll_interval.is_some_and(|p| p.0.is_zero()) {
            bail!("params.poll_interval must be more than 0s");
        }
        if self.desired.is_none() && (self.prune || self.max_prunes.is_some()) {
            bail!("params.prune and params.max_prunes need params.desired: only a fleet file says what to keep");
        }
        self.validate_day2(source)
    }

    /// What an operation needs, and params that only another operation reads (a silent no-op would mislead).
    fn validate_day2(&self, source: &Source) -> Result<()> {
        let op = self.operation;
        if op != Operation::Upgrade && source.director.is_none() {
            bail!(
                "params.operation `{}` needs source.director: it reads each cluster's BOSH deployment `service-instance_<uuid>`",
                op.name()
            );
        }
        if op == Operation::Rotate && source.rotate.is_none() {
            bail!(
                "params.operation `rotate` needs source.rotate: TKGI does not publish the HTTP route behind `tkgi rotate-certificates`, so repave has no default for it. Capture the request the tkgi CLI sends on your platform (method and path, with `{{name}}` for the cluster) and set source.rotate.method and source.rotate.path"
            );
        }
        if op != Operation::Upgrade && self.desired.is_some() {
            bail!(
                "params.operation `{}` cannot be combined with params.desired: a fleet file is applied by `operation: upgrade` (set `max_vm_age` in the file to repave by age)",
                op.name()
            );
        }
        let upgrade_only = [
            ("target_stemcell", self.target_stemcell.is_some()),
            ("target_stemcell_file", self.target_stemcell_file.is_some()),
            ("repair", self.repair),
        ];
        if let Some((field, _)) = upgrade_only.iter().find(|(_, set)| *set).filter(|_| op != Operation::Upgrade) {
            bail!("params.{field} applies to upgrades (operation: upgrade), not `{}`", op.name());
        }
        let repaves = op == Operation::Repave || (op == Operation::Upgrade && self.desired.is_some());
        if !repaves && (self.max_vm_age.is_some() || self.recreate != RecreateParams::default()) {
            bail!(
                "params.max_vm_age and params.recreate apply to repaves (operation: repave, or a fleet file in params.desired), not `{}`",
                op.name()
            );
        }
        if op != Operation::Rotate && self.warn_within.is_some() {
            bail!("params.warn_within applies to `operation: rotate` (use source.warn_within for check and in)");
        }
        if self.pre_check.is_some() && source.director.is_none() {
            bail!("params.pre_check needs source.director: the pre-check reads each cluster's BOSH deployment");
        }
        if self.require_backup.as_ref().is_some_and(|b| b.dir.trim().is_empty()) {
            bail!("params.require_backup.dir is empty: name the input that holds the bbr artifact folders");
        }
        Ok(())
    }

    /// The executor's settings: what these params set, else what the fleet file sets
    /// (`max_in_flight`, its wave `soak`), else the engine's own defaults ([`Settings::default`], the
    /// one place they are written down).
    pub(crate) fn settings(&self, file_max_in_flight: Option<NonZeroUsize>, wave_soak: Option<Duration>) -> Settings {
        let d = Settings::default();
        Settings {
            max_in_flight: self.max_in_flight.or(file_max_in_flight).unwrap_or(d.max_in_flight),
            on_failure: self.on_failure,
            cluster_timeout: self.cluster_timeout.map_or(d.cluster_timeout, |x| x.0),
            poll_interval: self.poll_interval.map_or(d.poll_interval, |x| x.0),
            health_timeout: self.health.timeout.map_or(d.health_timeout, |x| x.0),
            soak: self.health.soak.map(|x| x.0),
            wave_soak,
        }
    }

    pub(crate) fn max_prunes(&self) -> usize {
        self.max_prunes.unwrap_or(DEFAULT_MAX_PRUNES)
    }
}

/// What `in` flags as expiring soon when `source.warn_within` is not set.
pub(crate) const DEFAULT_WARN_WITHIN: Duration = Duration::from_secs(30 * 86_400);

/// How many clusters one run deletes when `max_prunes` is not set.
pub(crate) const DEFAULT_MAX_PRUNES: usize = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, parse_source};
    use serde_json::json;

    fn source(extra: Value) -> Result<Source> {
        let mut map = json!({"kind": "fleet", "api_url": "https://api.tkgi.example.com:9021"});
        map.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let source: Source = parse_source(map.as_object().unwrap())?;
        source.validate()?;
        Ok(source)
    }

    #[test]
    fn credentials_are_one_pair() {
        let s = source(json!({"client_id": "ci", "client_secret": "x"})).unwrap();
        assert_eq!(s.login().unwrap(), Login::Client { id: "ci".into(), secret: "x".into() });
        assert!(source(json!({})).unwrap_err().to_string().contains("needs credentials"));
        assert!(source(json!({"client_id": "ci"})).unwrap_err().to_string().contains("client_secret is required"));
        let both = json!({"client_id": "a", "client_secret": "b", "username": "u", "password": "p"});
        assert!(source(both).unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn defaults_and_assumed_routes() {
        let s = source(json!({"username": "u", "password": "p"})).unwrap();
        assert_eq!(s.uaa_url().unwrap(), "https://api.tkgi.example.com:8443");
        assert_eq!(tkgi::ActionRoute::try_from(&s.upgrade).unwrap(), tkgi::ActionRoute::assumed_upgrade());
        assert_eq!(s.upgrade.body, json!({"upgrade": true}));
        assert_eq!(s.platform_version.path, "/actuator/info");
        let null_body = source(json!({"client_id": "a", "client_secret": "b", "upgrade": {"body": null}})).unwrap();
        assert_eq!(null_body.upgrade.body, Value::Null, "an explicit null sends no body");
        let s = source(json!({"client_id": "a", "client_secret": "b", "upgrade": {"method": "POST"}})).unwrap();
        assert_eq!((s.upgrade.method.as_str(), s.upgrade.path.as_str()), ("POST", "/v1/clusters/{name}"));
        let bad = json!({"client_id": "a", "client_secret": "b", "upgrade": {"path": "v1/x"}});
        assert!(source(bad).unwrap_err().to_string().contains("must start with `/`"));
    }

    #[test]
    fn selectors_with_globs_and_excludes() {
        let sel = Selector::new(&["prod-*".into(), "dev-1".into(), "!prod-eu-?".into()]).unwrap();
        assert!(sel.matches("prod-us-10"));
        assert!(sel.matches("dev-1"));
        assert!(!sel.matches("prod-eu-1"));
        assert!(sel.matches("prod-eu-10"));
        assert!(!sel.matches("staging-1"));
        assert_eq!(sel.exact_names().collect::<Vec<_>>(), ["dev-1"]);
        let only_excludes = Selector::new(&["!dev-*".into()]).unwrap();
        assert!(only_excludes.matches("prod-1") && !only_excludes.matches("dev-2"));
        assert!(Selector::new(&[]).unwrap().matches("anything"));
        assert!(Selector::new(&["!".into()]).unwrap_err().to_string().contains("is empty"));
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("*", "", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*-eu-*", "prod-eu-1", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("**", "x", true),
            ("abc", "abcd", false),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn put_params() {
        let plain = source(json!({"client_id": "a", "client_secret": "b"})).unwrap();
        let parse_params = |v: Value| -> Result<PutParams> {
            let p: PutParams = parse(v.as_object().unwrap(), "params")?;
            p.validate(&plain)?;
            Ok(p)
        };
        let p = parse_params(json!({})).unwrap();
        let defaults = p.settings(None, None);
        assert_eq!(
            (defaults.max_in_flight.get(), p.on_failure, p.canaries.clone()),
            (1, OnFailure::Stop, Canaries::Count(0))
        );
        assert_eq!(
            (defaults.cluster_timeout, defaults.poll_interval),
            (Duration::from_secs(4 * 3600), Duration::from_secs(15))
        );
        assert_eq!(defaults.health_timeout, Duration::from_secs(300));
        let file_says_three = NonZeroUsize::new(3);
        assert_eq!(
            p.settings(file_says_three, None).max_in_flight.get(),
            3,
            "the fleet file's when params say nothing"
        );
        let p = parse_params(json!({"canaries": ["a", "b"], "on_failure": "continue", "max_in_flight": 4})).unwrap();
        assert_eq!(p.canaries, Canaries::Names(vec!["a".into(), "b".into()]));
        assert_eq!(parse_params(json!({"canaries": 2})).unwrap().canaries, Canaries::Count(2));
        assert!(parse_params(json!({"max_in_flight": 0})).unwrap_err().to_string().contains("at least 1"));
        let p = parse_params(json!({"max_in_flight": 4})).unwrap();
        assert_eq!(p.settings(NonZeroUsize::new(2), None).max_in_flight.get(), 4, "params win over the fleet file");
        let err = parse_params(json!({"on_failure": "contineu"})).unwrap_err().to_string();
        assert!(err.contains("did you mean `continue`"), "{err}");
        let both = json!({"target_version": "1", "target_version_file": "f"});
        assert!(parse_params(both).unwrap_err().to_string().contains("not both"));
        let p = parse_params(json!({"cluster_timeout": "30m", "health": {"kubernetes": true, "soak": "1m"}})).unwrap();
        assert_eq!(p.settings(None, None).cluster_timeout, Duration::from_secs(1800));
        assert_eq!(p.health.soak.unwrap().0, Duration::from_secs(60));
        let p = parse_params(json!({"desired": "repo/fleet.yml", "window": "Sat,Sun 02:00-06:00 Europe/London",
                                    "outside_window": "skip", "prune": true, "max_prunes": 3, "repair": true}))
        .unwrap();
        assert_eq!(
            (p.outside_window, p.max_prunes(), p.window.unwrap().zone_name()),
            (OutsideWindow::Skip, 3, "Europe/London")
        );
        assert!(parse_params(json!({"prune": true})).unwrap_err().to_string().contains("need params.desired"));
        let err = parse_params(json!({"window": "Sat 02:00-06:00 Mars/Base"})).unwrap_err().to_string();
        assert!(err.contains("params.window") && err.contains("Mars/Base"), "{err}");
        let err = parse_params(json!({"outside_window": "skp"})).unwrap_err().to_string();
        assert!(err.contains("did you mean `skip`"), "{err}");
    }

    #[test]
    fn stemcell_target_needs_a_director_and_a_version() {
        let plain = source(json!({"client_id": "a", "client_secret": "b"})).unwrap();
        let director = json!({"url": "https://10.0.0.6:25555", "client": "c", "client_secret": "s"});
        let joined = source(json!({"client_id": "a", "client_secret": "b", "director": director})).unwrap();
        let check = |v: Value, s: &Source| -> Result<PutParams> {
            let p: PutParams = parse(v.as_object().unwrap(), "params")?;
            p.validate(s)?;
            Ok(p)
        };
        for params in [json!({"target_stemcell": "1.506"}), json!({"target_stemcell_file": "stemcell/version"})] {
            let err = check(params.clone(), &plain).unwrap_err().to_string();
            assert!(
                err.contains("params.target_stemcell and params.target_stemcell_file need source.director"),
                "{err}"
            );
            check(params, &joined).unwrap();
        }
        let both = json!({"target_stemcell": "1.506", "target_stemcell_file": "f"});
        assert!(check(both, &joined).unwrap_err().to_string().contains("not both"));
        let err = check(json!({"target_stemcell": "jammy"}), &joined).unwrap_err().to_string();
        assert!(err.contains("not a stemcell version"), "{err}");
        assert!(is_stemcell_version("621.125") && !is_stemcell_version("1..2") && !is_stemcell_version(""));
    }
}
