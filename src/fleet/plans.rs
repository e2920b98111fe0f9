//! Which plan a put runs, and what it must pass before it runs: the rolling upgrade, a fleet file's
//! reconcile (with repaves by VM age), a repave, or a certificate rotation — then, with a director, the
//! pre-check, and with `require_backup`, the backup gate (`gates`). Reads only what the operation needs
//! from the director (VM ages for repaves, certificates for rotations).
//!
//! [`judge`] is what a plan must pass before its first change, a dry run alike: the target must be a
//! version, the platform's own when it reports one, reachable by every upgrade in one step; a fleet
//! file's creates must name plans the platform offers; and a failure an earlier build left behind
//! counts. The platform keeps no history of builds, so the only trace a killed build's failure leaves
//! is the cluster's own state, its last action `failed`: a selected cluster in that state which this
//! rollout would leave alone (`repair` not set) is an unresolved failure, whichever build caused it.
//! Under `on_failure: stop` nothing starts; under `continue` the rest runs and the put still fails
//! naming it. `repair: true` retries it; `!name` in the selector leaves it out.

use super::day2::{RepaveRules, decide_repave, repave_plan, rotate_plan};
use super::deployments::{self, Reads};
use super::desired::{self, FleetFile};
use super::gates::{self, PreCheckRun};
use super::reconcile::{Current, Options, Reconciled, reconcile};
use super::{Clients, Observed, observed_state};
use crate::clients::opsman::Opsman;
use crate::config::fleet::{Operation, PutParams, Selector, Source};
use crate::context::Ctx;
use crate::rollout::executor::OnFailure;
use crate::rollout::plan::{Action, Change, Plan, PlanKind, SkipReason, check_target, plan};
use crate::stepdir::{StepDir, preview};
use crate::suggest::suggestion;
use crate::versions::stemcell::is_stemcell_version;
use crate::versions::tkgi::cluster_version;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::time::Duration;

/// A fleet file is YAML for up to a few thousand clusters; anything larger is not one.
const MAX_FLEET_FILE: u64 = 4 << 20;
/// A version file holds one line.
const MAX_VERSION_FILE: u64 = 64 << 10;

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
    /// What `target_version_file` and `target_stemcell(_file)` hold, read before anything else.
    pub targets: &'a Targets,
    pub dir: &'a StepDir,
}

/// The targets the put's files name, read (and judged) before the platform is asked anything.
pub(super) struct Targets {
    version_file: Option<String>,
    stemcell: Option<String>,
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
            let target = target_version(ask, conn, ctx).await?;
            desired_plan(ask, file, fleet, &running, &target, conn, ctx)?
        }
        (Operation::Upgrade, None) => {
            let target = target_version(ask, conn, ctx).await?;
            let stemcell = ask.targets.stemcell.as_deref();
            let states: Vec<_> = fleet.iter().map(observed_state).collect();
            plan(&states, &target, stemcell, params.repair, &params.canaries)?
        }
        (Operation::Repave, _) => {
            let rules = repave_rules(params.max_vm_age.or(ask.source.max_vm_age).map(|d| d.0), conn, ctx);
            repave_plan(fleet, &running, rules, &params.canaries)?
        }
        (Operation::Rotate, _) => {
            let target = target_version(ask, conn, ctx).await?;
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
            let dir = ask.dir.resolve_dir("params.require_backup.dir", &require.dir)?;
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

pub(super) fn load_desired(path: &str, dir: &StepDir) -> Result<FleetFile> {
    desired::parse(&dir.read_text("params.desired", path, MAX_FLEET_FILE)?, path)
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
    // One instant and one reading of the director for every cluster's repave cutoff.
    let rules = repave_rules(None, conn, ctx);
    let current: Vec<Current> = fleet
        .iter()
        .map(|o| Current {
            state: observed_state(o),
            plan: o.cluster.plan_name.clone(),
            repave: file_repave(ask, file, o, rules),
            repave_running: running.contains_key(&o.cluster.name),
        })
        .collect();
    let options = Options {
        target: target.to_string(),
        target_stemcell: ask.targets.stemcell.clone(),
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
fn file_repave(ask: &Ask<'_>, file: &FleetFile, o: &Observed, rules: RepaveRules) -> Option<Change> {
    let desired = file.cluster(&o.cluster.name)?;
    let max = file.max_vm_age_for(desired, ask.params.max_vm_age.map(|d| d.0), ask.source.max_vm_age.map(|d| d.0))?;
    decide_repave(o, RepaveRules { max_vm_age: Some(max), ..rules }).ok()
}

/// `target_version`, else `target_version_file` (relative to the put's directory), else the platform's
/// own version ([`platform_version`]). Never a guess: if none can be read, the put fails and says how
/// to set one.
///
/// An explicit target must be the platform's own version when that can be read: TKGI upgrades a
/// cluster only to it, so any other target could never be reached (every cluster would be upgraded,
/// then failed).
async fn target_version(ask: &Ask<'_>, conn: &Clients, ctx: &Ctx) -> Result<String> {
    let params = ask.params;
    let explicit = params.target_version.as_ref().map(|v| v.trim().to_string()).or(ask.targets.version_file.clone());
    let field = if params.target_version.is_some() { "params.target_version" } else { "params.target_version_file" };
    match (explicit, platform_version(ask.source, conn, ctx).await) {
        (Some(target), Ok(platform)) if target != platform => bail!(
            "{field} is {target}, but the platform reports TKGI {platform}: TKGI upgrades clusters only to the \
             platform's own version, so the rollout could never reach {target}; set the target to {platform}, or \
             leave it out"
        ),
        (Some(target), Ok(_)) => Ok(target),
        (Some(target), Err(e)) => {
            ctx.log.line(format!("note: the platform's own version could not be read ({e:#}); the target is {target}"));
            Ok(target)
        }
        (None, platform) => platform,
    }
}

/// The platform's own TKGI version: the deployed TKGI tile's in Ops Manager (with `source.opsman`),
/// else — a labelled fallback — what the TKGI API reports at the assumed route.
async fn platform_version(source: &Source, conn: &Clients, ctx: &Ctx) -> Result<String> {
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

/// The versions `target_version_file` and `target_stemcell(_file)` name, read from the put's
/// directory before anything is asked of the platform. A file must hold one version; it is never
/// printed whole.
pub(super) fn read_targets(params: &PutParams, dir: &StepDir, ctx: &Ctx) -> Result<Targets> {
    let version_file = match &params.target_version_file {
        Some(file) => {
            let text = dir.read_text("params.target_version_file", file, MAX_VERSION_FILE)?;
            let v = text.trim();
            if v.is_empty() || v.lines().count() > 1 {
                bail!(
                    "params.target_version_file `{file}` holds {}, not one TKGI version such as `1.19.2-build.10`",
                    preview(&text)
                );
            }
            Some(v.to_string())
        }
        None => None,
    };
    let stemcell = match (&params.target_stemcell, &params.target_stemcell_file) {
        (Some(v), _) => Some(v.trim().to_string()),
        (None, Some(file)) => {
            let text = dir.read_text("params.target_stemcell_file", file, MAX_VERSION_FILE)?;
            let v = text.trim().to_string();
            if !is_stemcell_version(&v) {
                bail!(
                    "params.target_stemcell_file `{file}` holds {}, not a stemcell version such as `1.506`",
                    preview(&text)
                );
            }
            Some(v)
        }
        (None, None) => None,
    };
    if let Some(version) = &stemcell {
        ctx.log.line(format!("target: stemcell {version}; clusters on an older stemcell are upgraded too"));
    }
    Ok(Targets { version_file, stemcell })
}

/// What `plan` must pass before its first change (see the module comment). Returns the clusters an
/// earlier build left failed, which a rollout under `on_failure: continue` still fails on at the end.
pub(super) async fn judge(plan: &Plan, params: &PutParams, conn: &Clients) -> Result<Vec<String>> {
    let upgrades = plan.planned().filter(|p| p.upgrades() && p.action == Action::Start);
    check_target(&plan.target, upgrades.map(|p| (p.name.as_str(), p.from_version.as_str())))?;
    check_plan_names(plan, conn).await?;
    let earlier = earlier_failures(plan);
    if !earlier.is_empty() && params.on_failure == OnFailure::Stop {
        bail!(
            "refusing to start: {} failed (its last action ended failed, in this rollout's earlier build or before) and \
             on_failure is stop, so nothing starts until that is dealt with: set params.repair: true to retry it in \
             this run, or leave it out with `!{}` in params.clusters",
            earlier.join(", "),
            earlier[0]
        );
    }
    Ok(earlier)
}

/// Selected clusters whose last action failed and which a rollout leaves alone: failures no run has
/// dealt with yet. Day-2 operations (repave, rotate) judge their clusters' state themselves.
fn earlier_failures(plan: &Plan) -> Vec<String> {
    if plan.kind != PlanKind::Rollout {
        return Vec::new();
    }
    let failed = plan.skipped.iter().filter(|(_, why)| matches!(why, SkipReason::FailedWithoutRepair { .. }));
    failed.map(|(name, _)| name.clone()).collect()
}

/// The platform refuses a create with an unknown plan (400) only when the create starts, after
/// other clusters may have changed: so every plan name is checked against `GET /v1/plans` first.
async fn check_plan_names(plan: &Plan, conn: &Clients) -> Result<()> {
    let creates: Vec<(&str, &str)> = plan
        .planned()
        .flat_map(|p| p.changes.iter().map(move |c| (p.name.as_str(), c)))
        .filter_map(|(name, change)| match change {
            Change::Create { plan, .. } => Some((name, plan.as_str())),
            _ => None,
        })
        .collect();
    if creates.is_empty() {
        return Ok(());
    }
    let offered = conn.tkgi.plans().await.context("listing the platform's plans to check the fleet file's")?;
    let offered: Vec<&str> = offered.iter().map(|p| p.name.as_str()).collect();
    let unknown: Vec<String> = creates
        .iter()
        .filter(|(_, wanted)| !offered.contains(wanted))
        .map(|(name, wanted)| {
            format!("cluster `{name}` asks for plan `{wanted}`{}", suggestion(wanted, offered.iter().copied()))
        })
        .collect();
    if !unknown.is_empty() {
        bail!(
            "the fleet file creates clusters with plans the platform does not offer, so nothing was changed:\n  {}\n\
             the platform's plans: {}",
            unknown.join("\n  "),
            offered.join(", ")
        );
    }
    Ok(())
}
