//! `kind: fleet`: track the clusters of a TKGI platform (check), report them (in), and roll upgrades
//! and day-2 operations (repave, rotate) across them (out). This module connects and observes; the
//! steps are in `check`, `get` and `put`, the day-2 reads and decisions in `deployments`, `day2`,
//! `gates` and `backup`.

mod backup;
mod check;
mod day2;
mod deployments;
pub mod desired;
mod gates;
mod get;
mod plans;
mod platform;
mod put;
mod reconcile;
mod report;
mod version;

use crate::clients::director::{CertificateExpiry, Director};
use crate::clients::opsman::Opsman;
use crate::clients::tkgi::{Cluster, Tkgi};
use crate::clients::uaa::Uaa;
use crate::config::fleet::{GetParams, PutParams, Selector, Source};
use crate::config::{self, Typed};
use crate::context::Ctx;
use crate::http::{HttpClient, HttpConfig};
use crate::protocol::{Request, Step};
use crate::rollout::plan::ClusterState;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;

/// One selected cluster as observed now, with its stemcell when a director is configured.
#[derive(Clone, Debug)]
pub struct Observed {
    pub cluster: Cluster,
    pub stemcell: Option<String>,
    /// `service-instance_<uuid>`, when the director lists it.
    pub deployment: Option<String>,
    /// What day-2 decisions need of the deployment, read only when asked for (`deployments::read`).
    pub facts: Facts,
}

/// A deployment's VM ages and certificates, each `None` until read.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub vms: Option<Vms>,
    pub certificates: Option<Vec<CertificateExpiry>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vms {
    pub count: usize,
    /// The oldest `vm_created_at`; `None` when no instance has a VM.
    pub oldest: Option<jiff::Timestamp>,
}

/// The BOSH deployment TKGI (through ODB) gives a cluster: `service-instance_<uuid>`.
pub fn deployment_name(cluster: &Cluster) -> String {
    format!("service-instance_{}", cluster.uuid)
}

impl Observed {
    /// The stemcell version the cluster's deployment runs (see [`stemcell_version`]).
    pub fn stemcell_version(&self) -> Option<String> {
        self.stemcell.as_deref().and_then(stemcell_version)
    }
}

/// The version in a deployment's `name/version[,name/version…]` stemcell list; the oldest when there
/// are several, so a cluster counts as behind while any of its stemcells is.
pub fn stemcell_version(stemcells: &str) -> Option<String> {
    stemcells
        .split(',')
        .filter_map(|s| s.rsplit_once('/').map(|(_, v)| v.trim()))
        .filter(|v| !v.is_empty())
        .min_by(|a, b| crate::versions::compare(a, b))
        .map(str::to_string)
}

/// The engine's view of a cluster as TKGI reports it.
pub(crate) fn state_of(cluster: &Cluster) -> ClusterState {
    ClusterState {
        name: cluster.name.clone(),
        version: cluster.pks_version.clone(),
        last_action: cluster.last_action.clone(),
        last_action_state: cluster.last_action_state.clone(),
        description: cluster.last_action_description.clone(),
        workers: cluster.workers(),
        stemcell: None,
    }
}

/// [`state_of`] plus the stemcell of the cluster's deployment, for planning.
pub(crate) fn observed_state(observed: &Observed) -> ClusterState {
    ClusterState { stemcell: observed.stemcell_version(), ..state_of(&observed.cluster) }
}

/// A fleet request, typed and checked: [`validate`] makes it, [`run`] takes it.
pub(crate) type Parsed = Typed<Source, GetParams, PutParams>;

/// Parses and checks `source` and `params` for `step` once, without I/O.
pub(crate) fn validate(step: Step, request: &Request) -> Result<Parsed> {
    let source = config::parse_source::<Source>(&request.source)?;
    source.validate()?;
    Typed::for_step(step, request, source, PutParams::validate)
}

/// Runs one step of the fleet kind and returns the JSON answer.
pub(crate) async fn run(request: Parsed, ctx: Ctx) -> Result<String> {
    match request {
        Typed::Check { source, .. } => check::run(&source, &ctx).await,
        Typed::In { source, params, version } => get::run(&source, &params, version, &ctx).await,
        Typed::Out { source, params } => put::run(&source, &params, &ctx).await,
    }
}

/// Open clients of the TKGI API (and the director and Ops Manager, when configured).
pub struct Clients {
    pub tkgi: Tkgi,
    pub director: Option<Director>,
    pub opsman: Option<Opsman>,
    pub http_config: HttpConfig,
}

pub async fn connect(source: &Source, ctx: &Ctx) -> Result<Clients> {
    let http_config = HttpConfig::from(&source.connection);
    let http = HttpClient::new(http_config.clone(), &ctx.env, &ctx.log)?;
    // Users log in through the public client the tkgi CLI uses, with an empty secret.
    let grant = source.login()?.grant("pks_cli");
    let mut uaa = Uaa::new(http.clone(), &source.uaa_url()?, grant);
    if source.uaa_url.is_none() {
        uaa = uaa.with_origin("the api_url host on port 8443, as TKGI deploys it; set source.uaa_url if yours differs");
    }
    let upgrade = (&source.upgrade).try_into()?;
    let tkgi = Tkgi::new(http, &source.api_url, uaa, upgrade, (&source.platform_version).into())
        .with_rotate_route(source.rotate_route()?);
    let director = match &source.director {
        Some(d) => Some(
            Director::connect(&d.into(), &http_config, &ctx.env, &ctx.log)
                .await
                .with_context(|| format!("connecting to the BOSH director {}", d.url))?,
        ),
        None => None,
    };
    let opsman = match &source.opsman {
        Some(block) => Some(Opsman::new(&block.login("source.opsman")?, &http_config, &ctx.env, &ctx.log)?),
        None => None,
    };
    Ok(Clients { tkgi, director, opsman, http_config })
}

/// Reads the selected clusters, sorted by name, joined with their stemcells. A name without wildcards
/// in the selector must exist: a typo must not silently shrink the fleet.
pub async fn observe(conn: &Clients, selector: &Selector) -> Result<Vec<Observed>> {
    let all = conn.tkgi.clusters().await.context("listing the TKGI clusters")?;
    if let Some(missing) = selector.exact_names().find(|n| !all.iter().any(|c| c.name == *n)) {
        bail!("cluster `{missing}` is selected by name but the TKGI API does not list it");
    }
    let mut selected: Vec<Cluster> = all.into_iter().filter(|c| selector.matches(&c.name)).collect();
    selected.sort_by(|a, b| a.name.cmp(&b.name));
    let stemcells = match &conn.director {
        Some(director) => stemcells_by_uuid(director).await?,
        None => HashMap::new(),
    };
    Ok(selected
        .into_iter()
        .map(|cluster| {
            let listed = stemcells.get(&cluster.uuid);
            let stemcell = conn.director.as_ref().map(|_| listed.cloned().unwrap_or_default());
            let deployment = listed.map(|_| deployment_name(&cluster));
            Observed { cluster, stemcell, deployment, facts: Facts::default() }
        })
        .collect())
}

/// The fleet as `check` sees it: the clusters `source.clusters` selects, with the day-2 facts its
/// thresholds count (VM ages for `max_vm_age`, certificates for `warn_within`).
pub async fn observe_source(conn: &Clients, source: &Source) -> Result<Vec<Observed>> {
    let mut fleet = observe(conn, &source.clusters).await?;
    if let Some(director) = &conn.director {
        let reads = deployments::Reads { vms: source.max_vm_age.is_some(), certificates: source.warn_within.is_some() };
        deployments::read(director, &mut fleet, reads).await.context("reading the clusters' deployments")?;
    }
    Ok(fleet)
}

/// `uuid → "name/version"` from the director's `service-instance_<uuid>` deployments.
pub(crate) async fn stemcells_by_uuid(director: &Director) -> Result<HashMap<String, String>> {
    let deployments = director.deployments().await.context("listing the director's deployments")?;
    Ok(deployments
        .into_iter()
        .filter_map(|d| {
            let uuid = d.name.strip_prefix("service-instance_")?.to_string();
            let stemcells: Vec<String> = d.stemcells.iter().map(|s| format!("{}/{}", s.name, s.version)).collect();
            Some((uuid, stemcells.join(",")))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn stemcell_version_is_the_oldest_listed() {
        use super::stemcell_version;
        assert_eq!(stemcell_version("bosh-vsphere/1.506").as_deref(), Some("1.506"));
        assert_eq!(stemcell_version("linux/1.10,other/1.9").as_deref(), Some("1.9"));
        assert_eq!(stemcell_version(""), None);
    }
}
