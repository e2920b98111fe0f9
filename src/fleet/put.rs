//! `out`: the rolling upgrade, or — with `params.desired` — applying a desired fleet file. Check the
//! maintenance window, observe, determine the target (TKGI version, and optionally stemcell), plan (printed as a table; `dry_run` stops
//! there and writes `plan.json`/`plan.md`), then execute wave by wave with the rollout engine, whose
//! start gate stops new starts once the window closes. The emitted version is computed from a fresh
//! observation with the resource's own selector afterwards, exactly as `check` computes it.
//!
//! A failure under an earlier build counts. The platform keeps no history of builds, so the only
//! trace a killed build's failure leaves is the cluster's own state: its last action `failed`. A
//! selected cluster in that state which this run would leave alone (`repair` not set) is such an
//! unresolved failure, whichever build caused it: under `on_failure: stop` nothing starts (a rerun
//! must not roll on past what stopped the first run), under `continue` the rest runs and the put
//! still fails naming it. `repair: true` retries it; `!name` in the selector leaves it out.

use super::desired::{self, FleetFile};
use super::platform::{TkgiPlatform, observed_state};
use super::reconcile::{Current, Options, Reconciled, reconcile};
use super::report::{plan_json, plan_text, summary_text};
use super::version::version;
use super::{Clients, Observed, connect, observe};
use crate::config::fleet::{OutsideWindow, PutParams, Selector, Source};
use crate::context::Ctx;
use crate::protocol::{MetadataField, StepResponse, render_step};
use crate::rollout::executor::{self, Executor, Halt, OnFailure, Outcome, StartGate};
use crate::rollout::plan::{Action, Change, Plan, SkipReason, check_target, plan};
use crate::stepdir::{Mode, StepDir, preview};
use crate::suggest::suggestion;
use crate::versions::stemcell::is_stemcell_version;
use crate::window::Window;
use anyhow::{Context, Result, bail};
use std::num::NonZeroUsize;

/// A fleet file is YAML for up to a few thousand clusters; anything larger is not one.
const MAX_FLEET_FILE: u64 = 4 << 20;
/// A version file holds one line.
const MAX_VERSION_FILE: u64 = 64 << 10;

/// The start gate's reason; the gate is this rollout's only one, so `Halt::GateClosed` means it.
const WINDOW_CLOSED: &str = "the maintenance window closed";

pub(super) async fn run(source: &Source, params: &PutParams, ctx: &Ctx) -> Result<String> {
    let dir = ctx.dir.as_ref().context("out needs its directory argument")?;
    // Every file the params name is read (and judged) before anything is asked of the platform.
    let file = match &params.desired {
        Some(path) => Some(load_desired(path, dir)?),
        None => None,
    };
    let target_file = target_version_file(params, dir)?;
    let stemcell = target_stemcell(params, dir, ctx)?;
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
    let target = target_version(params, target_file, &conn, ctx).await?;
    let plan = match &file {
        Some(file) => desired_plan(file, &fleet, &selector, &target, stemcell.as_deref(), params, ctx)?,
        None => {
            let states: Vec<_> = fleet.iter().map(observed_state).collect();
            plan(&states, &target, stemcell.as_deref(), params.repair, &params.canaries)?
        }
    };
    ctx.log.line(plan_text(&plan));
    validate_plan(&plan, &conn).await?;
    let earlier = earlier_failures(&plan);
    if !earlier.is_empty() && params.on_failure == OnFailure::Stop {
        bail!(
            "refusing to start: {} failed (its last action ended failed, in this rollout's earlier build or before) and \
             on_failure is stop, so nothing starts until that is dealt with: set params.repair: true to retry it in \
             this run, or leave it out with `!{}` in params.clusters",
            list(&earlier),
            earlier[0]
        );
    }
    if params.dry_run {
        write_plan_files(&plan, dir, ctx)?;
        ctx.log.line("dry run: nothing was changed");
        let mut metadata = plan_metadata(&plan);
        metadata.push(MetadataField::new("dry_run", "true"));
        return render_step(&StepResponse { version: fleet_version(&conn, source).await?, metadata });
    }
    let report = execute(params, file.as_ref(), window, &conn, &plan, ctx).await;
    ctx.log.line(summary_text(&report));
    let deferred = check_outcome(&report, &plan, params, &earlier)?;
    let mut metadata = plan_metadata(&plan);
    metadata.push(MetadataField::new("changed", report.names(|o| *o == Outcome::Succeeded).len().to_string()));
    metadata.push(MetadataField::new("failed", "none"));
    if !deferred.is_empty() {
        metadata.push(MetadataField::new("deferred", deferred.join(", ")));
    }
    let version = fleet_version(&conn, source).await.context("reading the fleet after the rollout")?;
    render_step(&StepResponse { version, metadata })
}

/// Selected clusters whose last action failed and which this plan leaves alone: failures no run has
/// dealt with yet (see the module comment).
fn earlier_failures(plan: &Plan) -> Vec<String> {
    let failed = plan.skipped.iter().filter(|(_, why)| matches!(why, SkipReason::FailedWithoutRepair { .. }));
    failed.map(|(name, _)| name.clone()).collect()
}

/// What can be judged before the first change, so a dry run refuses what a real run would fail on:
/// every upgrade the plan would start must reach the target in one step (no downgrade, no skipped
/// minor), the target must be a version at all, and every plan a create names must be one the
/// platform offers.
async fn validate_plan(plan: &Plan, conn: &Clients) -> Result<()> {
    let upgrades = plan.planned().filter(|p| p.upgrades() && p.action == Action::Start);
    check_target(&plan.target, upgrades.map(|p| (p.name.as_str(), p.from_version.as_str())))?;
    check_plan_names(plan, conn).await
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
fn check_outcome(
    report: &executor::Report,
    plan: &Plan,
    params: &PutParams,
    earlier: &[String],
) -> Result<Vec<String>> {
    let mut failed = report.names(|o| matches!(o, Outcome::Failed(_)));
    failed.extend(earlier.iter().map(|name| format!("{name} (before this run)")));
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

fn load_desired(path: &str, dir: &StepDir) -> Result<FleetFile> {
    desired::parse(&dir.read_text("params.desired", path, MAX_FLEET_FILE)?, path)
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
fn write_plan_files(plan: &Plan, dir: &StepDir, ctx: &Ctx) -> Result<()> {
    let json = serde_json::to_string_pretty(&plan_json(plan))? + "\n";
    let written = dir.write("plan.json", json.as_bytes(), Mode::Public)?;
    dir.write("plan.md", format!("# Fleet plan\n\n{}", plan_text(plan)).as_bytes(), Mode::Public)?;
    ctx.log.line(format!("wrote {} and plan.md", written.display()));
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

/// `target_version`, else `target_version_file` (relative to the put's directory), else the platform's
/// own version. Never a guess: if none can be read, the put fails and says how to set one.
///
/// An explicit target must be the platform's own version when the platform reports one: TKGI
/// upgrades a cluster only to it, so any other target could never be reached (every cluster would
/// be upgraded, then failed).
async fn target_version(params: &PutParams, from_file: Option<String>, conn: &Clients, ctx: &Ctx) -> Result<String> {
    let explicit = params.target_version.as_ref().map(|v| v.trim().to_string()).or(from_file);
    let field = if params.target_version.is_some() { "params.target_version" } else { "params.target_version_file" };
    match (explicit, conn.tkgi.platform_version().await) {
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
        (None, Ok(platform)) => {
            ctx.log.line(format!("target: TKGI {platform}, as reported by the platform"));
            Ok(platform)
        }
        (None, Err(e)) => Err(e.context(
            "cannot determine the target TKGI version from the platform (an assumed, unpublished route); set params.target_version or params.target_version_file",
        )),
    }
}

/// The version in `target_version_file` (relative to the put's directory), if it is set.
fn target_version_file(params: &PutParams, dir: &StepDir) -> Result<Option<String>> {
    let Some(file) = &params.target_version_file else { return Ok(None) };
    let text = dir.read_text("params.target_version_file", file, MAX_VERSION_FILE)?;
    let v = text.trim();
    if v.is_empty() || v.lines().count() > 1 {
        bail!(
            "params.target_version_file `{file}` holds {}, not one TKGI version such as `1.19.2-build.10`",
            preview(&text)
        );
    }
    Ok(Some(v.to_string()))
}

/// `target_stemcell`, else the version in `target_stemcell_file` (relative to the put's directory,
/// e.g. `stemcell/version` from a `kind: stemcell` get), else none: the stemcell is not a target.
fn target_stemcell(params: &PutParams, dir: &StepDir, ctx: &Ctx) -> Result<Option<String>> {
    let version = match (&params.target_stemcell, &params.target_stemcell_file) {
        (Some(v), _) => v.trim().to_string(),
        (None, Some(file)) => {
            let text = dir.read_text("params.target_stemcell_file", file, MAX_VERSION_FILE)?;
            let v = text.trim().to_string();
            if !is_stemcell_version(&v) {
                bail!(
                    "params.target_stemcell_file `{file}` holds {}, not a stemcell version such as `1.506`",
                    preview(&text)
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
