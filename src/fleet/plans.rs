//! Which plan a put runs, and what it must pass before it runs: the rolling upgrade, a fleet file's
//! reconcile (with repaves by VM age), a repave, or a certificate rotation — then, with a director, the
//! pre-check, and with `require_backup`, the backup gate (`gates`). Reads only what the operation needs
//! from the director (VM ages for repaves, certificates for rotations).

use super::day2::{RepaveRules, decide_repave, repave_plan, rotate_plan};
use super::deployments::{self, Reads};
use super::desired::{self, FleetFile};
use super::gates::{self, PreCheckRun};
use super::reconcile::{Current, Options, Reconciled, reconcile};
use super::{Clients, Observed, observed_state};
use crate::clients::opsman::Opsman;
use crate::config::fleet::{Operation, PutParams, Selector, Source};
use crate::context::Ctx;
use crate::rollout::plan::{Change, Plan, plan};
use crate::versions::stemcell::is_stemcell_version;
use crate::versions::tkgi::cluster_version;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// A plan ready to print and run, with what running it needs to know.
pub(super) struct PutPlan {
    pub plan: Plan,
    /// Cluster → repave task an earlier build left running (adopted, not started again).
    pub running: HashMap<String, u64>,
    /// Clusters the backup gate kept out.
    pub unverified: Vec<String>,
}

/// What a put is asked to do, as read once.
pub(super) struct Ask<'a> {
    pub source: &'a Source,
    pub params: &'a PutParams,
    pub file: Option<&'a FleetFile>,
    pub selector: &'a Selector,
}

pub(super) async fn make(ask: &Ask<'_>, fleet: &mut [Observed], conn: &Clients, ctx: &Ctx) -> Result<PutPlan> {
    let (params, now) = (ask.params, ctx.clock.now());
    let repaves = params.operation == Operation::Repave || ask.file.is_some_and(|f| file_repaves(ask, f));
    let mut running = HashMap::new();
    if let Some(director) = &conn.director {
        // A repave's pre-check needs the certificates of nearly every cluster it reads: one pass reads both.
        let reads = Reads { vms: repaves, certificates: repaves || params.operation == Operation::Rotate };
        deployments::read(director, fleet, reads).await.context("reading the clusters' deployments")?;
        if repaves {
            running = deployments::running_repaves(director, fleet).await?;
            if !director.reads_created_before() {
                ctx.log.line(
                    "note: this director does not read recreate_vms_created_before (v282.1.3 and later do): a repave recreates every VM of a due cluster",
                );
            }
        }
    }
    let mut plan = match (params.operation, ask.file) {
        (Operation::Upgrade, Some(file)) => {
            let target = target_version(ask.source, params, conn, ctx).await?;
            desired_plan(ask, file, fleet, &running, &target, conn, ctx)?
        }
        (Operation::Upgrade, None) => {
            let target = target_version(ask.source, params, conn, ctx).await?;
            let stemcell = target_stemcell(params, ctx)?;
            let states: Vec<_> = fleet.iter().map(observed_state).collect();
            plan(&states, &target, stemcell.as_deref(), params.repair, &params.canaries)?
        }
        (Operation::Repave, _) => {
            let rules = repave_rules(params.max_vm_age.or(ask.source.max_vm_age).map(|d| d.0), conn, ctx);
            repave_plan(fleet, &running, rules, &params.canaries)?
        }
        (Operation::Rotate, _) => {
            let target = target_version(ask.source, params, conn, ctx).await?;
            let within = params.warn_within.or(ask.source.warn_within).map(|d| d.0);
            rotate_plan(fleet, &target, within, now, &params.canaries)?
        }
    };
    if let Some(director) = &conn.director {
        let run = PreCheckRun {
            director,
            mode: params.pre_check.unwrap_or_default(),
            fix: params.recreate.fix,
            now,
            log: &ctx.log,
        };
        gates::pre_check(&mut plan, fleet, &run).await?;
    }
    let unverified = match &params.require_backup {
        Some(require) => {
            let dir = ctx.dir.as_deref().map_or_else(|| PathBuf::from(&require.dir), |d| d.join(&require.dir));
            gates::backup_gate(&mut plan, fleet, require, &dir, now, &ctx.log)
        }
        None => Vec::new(),
    };
    Ok(PutPlan { plan, running, unverified })
}

/// Whether a fleet file put repaves: some `max_vm_age` applies (the file's, the put's or the source's).
fn file_repaves(ask: &Ask<'_>, file: &FleetFile) -> bool {
    file.repaves() || ask.params.max_vm_age.is_some() || ask.source.max_vm_age.is_some()
}

fn repave_rules(max_vm_age: Option<Duration>, conn: &Clients, ctx: &Ctx) -> RepaveRules {
    let cutoff_supported = conn.director.as_ref().is_some_and(|d| d.reads_created_before());
    RepaveRules { max_vm_age, now: ctx.clock.now(), cutoff_supported }
}

pub(super) fn load_desired(path: &str, ctx: &Ctx) -> Result<FleetFile> {
    let full: PathBuf = ctx.dir.as_deref().map_or_else(|| path.into(), |d| d.join(path));
    let text = std::fs::read_to_string(&full)
        .with_context(|| format!("reading params.desired {} (relative to the put's directory)", full.display()))?;
    desired::parse(&text, path)
}

/// The reconcile plan for a fleet file. Every cluster the file names must be within the selector:
/// otherwise it would be invisible here (and to `check`) and be "created" a second time.
fn desired_plan(
    ask: &Ask<'_>,
    file: &FleetFile,
    fleet: &[Observed],
    running: &HashMap<String, u64>,
    target: &str,
    conn: &Clients,
    ctx: &Ctx,
) -> Result<Plan> {
    let params = ask.params;
    if let Some(outside) = file.clusters.iter().find(|c| !ask.selector.matches(&c.name)) {
        bail!(
            "cluster `{}` in {} is outside the resource's cluster selector; widen source.clusters (or params.clusters)",
            outside.name,
            params.desired.as_deref().unwrap_or("the fleet file")
        );
    }
    let current: Vec<Current> = fleet
        .iter()
        .map(|o| Current {
            state: observed_state(o),
            plan: o.cluster.plan_name.clone(),
            repave: file_repave(ask, file, o, conn, ctx),
            repave_running: running.contains_key(&o.cluster.name),
        })
        .collect();
    let options = Options {
        target: target.to_string(),
        target_stemcell: target_stemcell(params, ctx)?,
        prune: params.prune,
        max_prunes: params.max_prunes(),
        repair: params.repair,
    };
    let Reconciled { plan, notes, repairs } = reconcile(file, &current, &options)?;
    for note in notes {
        ctx.log.line(format!("note: {note}"));
    }
    for name in repairs {
        ctx.log.line(format!("repair: {name}'s last action failed; retrying it once in this run"));
    }
    Ok(plan)
}

/// The repave a fleet file asks of `o` by its `max_vm_age` (the cluster's, else the put's, the file's or
/// the source's), if its VMs are older.
fn file_repave(ask: &Ask<'_>, file: &FleetFile, o: &Observed, conn: &Clients, ctx: &Ctx) -> Option<Change> {
    let desired = file.cluster(&o.cluster.name)?;
    let max = file.max_vm_age_for(desired, ask.params.max_vm_age.map(|d| d.0), ask.source.max_vm_age.map(|d| d.0))?;
    decide_repave(o, repave_rules(Some(max), conn, ctx)).ok()
}

/// `target_version`, else `target_version_file` (relative to the put's directory), else the deployed TKGI
/// tile's version in Ops Manager (with `source.opsman`), else — a labelled fallback — what the TKGI API
/// reports at the assumed route. Never a guess: if none can be read, the put fails and says how to set one.
async fn target_version(source: &Source, params: &PutParams, conn: &Clients, ctx: &Ctx) -> Result<String> {
    if let Some(v) = &params.target_version {
        return Ok(v.trim().to_string());
    }
    if let Some(file) = &params.target_version_file {
        let path = ctx.dir.as_deref().map_or_else(|| file.into(), |d| d.join(file));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading params.target_version_file {}", path.display()))?;
        let v = text.trim();
        if v.is_empty() {
            bail!("params.target_version_file {} is empty", path.display());
        }
        return Ok(v.to_string());
    }
    if let Some(opsman) = &conn.opsman {
        return tile_version(opsman, source, ctx).await;
    }
    let v = conn.tkgi.platform_version().await.context(
        "cannot determine the target TKGI version from the platform (an assumed, unpublished route); set source.opsman to read it from Ops Manager, or params.target_version or params.target_version_file",
    )?;
    ctx.log.line(format!(
        "target: TKGI {v}, as the TKGI API reports it at {} (an ASSUMED, unpublished route; source.opsman reads the target from Ops Manager instead)",
        source.platform_version.path
    ));
    Ok(v)
}

/// The `product_version` of the deployed TKGI tile in Ops Manager, in the form the clusters report
/// (`source.cluster_version_format`).
async fn tile_version(opsman: &Opsman, source: &Source, ctx: &Ctx) -> Result<String> {
    let product = source.opsman_product();
    let deployed = opsman
        .deployed_products()
        .await
        .with_context(|| format!("reading the deployed products from Ops Manager {}", opsman.base_url()))?;
    let Some(tile) = deployed.iter().find(|p| p.kind == product) else {
        let types: Vec<&str> = deployed.iter().map(|p| p.kind.as_str()).collect();
        bail!(
            "source.opsman_product: Ops Manager {} has no deployed tile of type `{product}` (deployed: {}); fix source.opsman_product or set params.target_version",
            opsman.base_url(),
            if types.is_empty() { "none".to_string() } else { types.join(", ") }
        );
    };
    let version = cluster_version(&tile.product_version, source.cluster_version_format.unwrap_or_default());
    ctx.log.line(format!(
        "target: TKGI {version}, the deployed {product} tile's product_version ({}) in Ops Manager {}",
        tile.product_version,
        opsman.base_url()
    ));
    Ok(version)
}

/// `target_stemcell`, else the version in `target_stemcell_file` (relative to the put's directory,
/// e.g. `stemcell/version` from a `kind: stemcell` get), else none: the stemcell is not a target.
fn target_stemcell(params: &PutParams, ctx: &Ctx) -> Result<Option<String>> {
    let version = match (&params.target_stemcell, &params.target_stemcell_file) {
        (Some(v), _) => v.trim().to_string(),
        (None, Some(file)) => {
            let path = ctx.dir.as_deref().map_or_else(|| file.into(), |d| d.join(file));
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("reading params.target_stemcell_file {} (relative to the put's directory)", path.display())
            })?;
            let v = text.trim().to_string();
            if !is_stemcell_version(&v) {
                bail!(
                    "params.target_stemcell_file {} holds `{v}`, not a stemcell version such as `1.506`",
                    path.display()
                );
            }
            v
        }
        (None, None) => return Ok(None),
    };
    ctx.log.line(format!("target: stemcell {version}; clusters on an older stemcell are upgraded too"));
    Ok(Some(version))
}
