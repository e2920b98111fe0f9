//! `out`: the rolling upgrade, or — with `params.desired` — applying a desired fleet file. Check the
//! maintenance window, observe, determine the target (TKGI version, and optionally stemcell), plan (printed as a table; `dry_run` stops
//! there and writes `plan.json`/`plan.md`), then execute wave by wave with the rollout engine, whose
//! start gate stops new starts once the window closes. The emitted version is computed from a fresh
//! observation with the resource's own selector afterwards, exactly as `check` computes it.

use super::desired::{self, FleetFile};
use super::platform::{TkgiPlatform, observed_state};
use super::reconcile::{Current, Options, Reconciled, reconcile};
use super::report::{plan_json, plan_text, summary_text};
use super::version::version;
use super::{Clients, Observed, connect, observe};
use crate::clients::opsman::Opsman;
use crate::config::fleet::{OutsideWindow, PutParams, Selector, Source};
use crate::context::Ctx;
use crate::protocol::{MetadataField, StepResponse, render_step};
use crate::rollout::executor::{self, Executor, Halt, Outcome, StartGate};
use crate::rollout::plan::{Plan, plan};
use crate::versions::stemcell::is_stemcell_version;
use crate::versions::tkgi::cluster_version;
use crate::window::Window;
use anyhow::{Context, Result, bail};
use std::num::NonZeroUsize;
use std::path::PathBuf;

/// The start gate's reason; the gate is this rollout's only one, so `Halt::GateClosed` means it.
const WINDOW_CLOSED: &str = "the maintenance window closed";

pub(super) async fn run(source: &Source, params: &PutParams, ctx: &Ctx) -> Result<String> {
    let file = match &params.desired {
        Some(path) => Some(load_desired(path, ctx)?),
        None => None,
    };
    let window = params.window.clone().or_else(|| file.as_ref().and_then(|f| f.window.clone()));
    let selector = Selector::new(params.clusters.as_ref().unwrap_or(&source.clusters))?;
    let conn = connect(source, ctx).await?;
    if let Some(closed) = window_closed(window.as_ref(), ctx) {
        if params.outside_window == OutsideWindow::Skip {
            ctx.log.line(format!("{closed}; outside_window is skip: nothing starts, the fleet is unchanged"));
            let metadata = vec![MetadataField::new("skipped", closed)];
            return render_step(&StepResponse { version: fleet_version(&conn, source).await?, metadata });
        }
        bail!("refusing to start: {closed} (set params.outside_window: skip to succeed without changes outside it)");
    }
    let fleet = observe(&conn, &selector).await?;
    let target = target_version(source, params, &conn, ctx).await?;
    let stemcell = target_stemcell(params, ctx)?;
    let plan = match &file {
        Some(file) => desired_plan(file, &fleet, &selector, &target, stemcell.as_deref(), params, ctx)?,
        None => {
            let states: Vec<_> = fleet.iter().map(observed_state).collect();
            plan(&states, &target, stemcell.as_deref(), params.repair, &params.canaries)?
        }
    };
    ctx.log.line(plan_text(&plan));
    if params.dry_run {
        write_plan_files(&plan, ctx)?;
        ctx.log.line("dry run: nothing was changed");
        let mut metadata = plan_metadata(&plan);
        metadata.push(MetadataField::new("dry_run", "true"));
        return render_step(&StepResponse { version: fleet_version(&conn, source).await?, metadata });
    }
    let report = execute(params, file.as_ref(), window, &conn, &plan, ctx).await;
    ctx.log.line(summary_text(&report));
    let deferred = check_outcome(&report, &plan, params)?;
    let mut metadata = plan_metadata(&plan);
    metadata.push(MetadataField::new("changed", report.names(|o| *o == Outcome::Succeeded).len().to_string()));
    metadata.push(MetadataField::new("failed", "none"));
    if !deferred.is_empty() {
        metadata.push(MetadataField::new("deferred", deferred.join(", ")));
    }
    let version = fleet_version(&conn, source).await.context("reading the fleet after the rollout")?;
    render_step(&StepResponse { version, metadata })
}

/// The fleet version over `source.clusters` — what `check` reports — whatever `params.clusters` says.
async fn fleet_version(conn: &Clients, source: &Source) -> Result<crate::protocol::Version> {
    Ok(version(&observe(conn, &Selector::new(&source.clusters)?).await?))
}

/// `Some(description)` when a window is configured and closed now.
fn window_closed(window: Option<&Window>, ctx: &Ctx) -> Option<String> {
    let window = window?;
    let now = ctx.clock.now();
    let text = window.describe(now);
    if window.is_open(now) {
        ctx.log.line(text);
        return None;
    }
    Some(text)
}

/// Fails on any failed cluster, or on clusters left unstarted unless only the window held them back
/// and `outside_window: skip` is set; returns those deferred clusters.
fn check_outcome(report: &executor::Report, plan: &Plan, params: &PutParams) -> Result<Vec<String>> {
    let failed = report.names(|o| matches!(o, Outcome::Failed(_)));
    let not_started = report.names(|o| matches!(o, Outcome::NotStarted(_)));
    let window_closed = matches!(report.halted, Some(Halt::GateClosed(_)));
    if failed.is_empty() && window_closed && params.outside_window == OutsideWindow::Skip {
        return Ok(not_started);
    }
    if !failed.is_empty() || !not_started.is_empty() {
        let why = report.halted.as_ref().map_or_else(|| "a cluster failed".to_string(), Halt::to_string);
        let target = match &plan.target_stemcell {
            Some(stemcell) => format!("TKGI {}, stemcell {stemcell}", plan.target),
            None => format!("TKGI {}", plan.target),
        };
        bail!(
            "the rollout to {target} did not complete ({why}): failed: {}; not started: {}",
            list(&failed),
            list(&not_started)
        );
    }
    Ok(Vec::new())
}

fn load_desired(path: &str, ctx: &Ctx) -> Result<FleetFile> {
    let full: PathBuf = ctx.dir.as_deref().map_or_else(|| path.into(), |d| d.join(path));
    let text = std::fs::read_to_string(&full)
        .with_context(|| format!("reading params.desired {} (relative to the put's directory)", full.display()))?;
    desired::parse(&text, path)
}

/// The reconcile plan for a fleet file. Every cluster the file names must be within the selector:
/// otherwise it would be invisible here (and to `check`) and be "created" a second time.
fn desired_plan(
    file: &FleetFile,
    fleet: &[Observed],
    selector: &Selector,
    target: &str,
    target_stemcell: Option<&str>,
    params: &PutParams,
    ctx: &Ctx,
) -> Result<Plan> {
    if let Some(outside) = file.clusters.iter().find(|c| !selector.matches(&c.name)) {
        bail!(
            "cluster `{}` in {} is outside the resource's cluster selector; widen source.clusters (or params.clusters)",
            outside.name,
            params.desired.as_deref().unwrap_or("the fleet file")
        );
    }
    let current: Vec<Current> =
        fleet.iter().map(|o| Current { state: observed_state(o), plan: o.cluster.plan_name.clone() }).collect();
    let options = Options {
        target: target.to_string(),
        target_stemcell: target_stemcell.map(str::to_string),
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

/// `plan.json` and `plan.md` in the put's directory, for a step that comments on a pull request.
fn write_plan_files(plan: &Plan, ctx: &Ctx) -> Result<()> {
    let Some(dir) = &ctx.dir else { return Ok(()) };
    let json = serde_json::to_string_pretty(&plan_json(plan))?;
    std::fs::write(dir.join("plan.json"), json + "\n").context("writing plan.json")?;
    std::fs::write(dir.join("plan.md"), format!("# Fleet plan\n\n{}", plan_text(plan))).context("writing plan.md")?;
    ctx.log.line(format!("wrote {} and plan.md", dir.join("plan.json").display()));
    Ok(())
}

async fn execute(
    params: &PutParams,
    file: Option<&FleetFile>,
    window: Option<Window>,
    conn: &Clients,
    plan: &Plan,
    ctx: &Ctx,
) -> executor::Report {
    let file_max_in_flight = file.and_then(|f| f.max_in_flight).and_then(NonZeroUsize::new);
    let settings = params.settings(file_max_in_flight, file.and_then(|f| f.soak).map(|d| d.0));
    let platform = TkgiPlatform {
        tkgi: &conn.tkgi,
        kubernetes_health: params.health.kubernetes,
        http_config: &conn.http_config,
        env: &ctx.env,
        log: &ctx.log,
        director: conn.director.as_ref(),
        target_stemcell: plan.target_stemcell.as_deref(),
    };
    let executor = Executor::new(&platform, settings, &plan.target, ctx.log.clone());
    match window {
        Some(window) => executor.with_start_gate(window_gate(window, ctx)).run(plan).await,
        None => executor.run(plan).await,
    }
}

/// Refuses new starts once the window has closed; running clusters finish (SUC's window semantics).
fn window_gate(window: Window, ctx: &Ctx) -> StartGate<'_> {
    Box::new(move || {
        let now = ctx.clock.now();
        if window.is_open(now) { Ok(()) } else { Err(format!("{WINDOW_CLOSED} ({})", window.describe(now))) }
    })
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

fn plan_metadata(plan: &Plan) -> Vec<MetadataField> {
    vec![
        MetadataField::new("target", plan.target.clone()),
        MetadataField::new("planned", plan.planned().count().to_string()),
        MetadataField::new("skipped", plan.skipped.len().to_string()),
    ]
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}
