//! `out`: the rolling upgrade, applying a desired fleet file (`params.desired`), or a day-2 operation
//! (`params.operation`: `repave`, `rotate`). Check the maintenance window, observe, plan (`plans`: the
//! target, the operation's decisions, the pre-check and backup gate; printed as a table — `dry_run`
//! stops there and writes `plan.json`/`plan.md`), then execute wave by wave with the rollout engine,
//! whose start gate stops new starts once the window closes. The emitted version is computed from a
//! fresh observation with the resource's own selector afterwards, exactly as `check` computes it.
//! Before the first change the plan is judged (`plans::judge`), a dry run alike; the files the params
//! name are read from the put's directory (`stepdir`) before the platform is asked anything.

use super::desired::FleetFile;
use super::plans::{self, Ask, PutPlan};
use super::platform::{Day2Run, TkgiPlatform};
use super::report::{plan_json, plan_text, summary_text};
use super::version::version;
use super::{Clients, Observed, connect, observe, observe_source};
use crate::clients::director::RecreateOptions;
use crate::config::fleet::{OutsideWindow, PutParams, Source};
use crate::context::Ctx;
use crate::protocol::{MetadataField, StepResponse, render_step};
use crate::rollout::executor::{self, Executor, Halt, Outcome, StartGate};
use crate::rollout::plan::{Change, Plan, PlanKind};
use crate::stepdir::{Mode, StepDir};
use crate::window::Window;
use anyhow::{Context, Result, bail};
use std::num::NonZeroUsize;

/// The start gate's reason; the gate is this rollout's only one, so `Halt::GateClosed` means it.
const WINDOW_CLOSED: &str = "the maintenance window closed";

pub(super) async fn run(source: &Source, params: &PutParams, ctx: &Ctx) -> Result<String> {
    let dir = ctx.dir.as_ref().context("out needs its directory argument")?;
    let file = match &params.desired {
        Some(path) => Some(plans::load_desired(path, dir)?),
        None => None,
    };
    let targets = plans::read_targets(params, dir, ctx)?;
    let window = params.window.clone().or_else(|| file.as_ref().and_then(|f| f.window.clone()));
    let selector = params.clusters.as_ref().unwrap_or(&source.clusters);
    let conn = connect(source, ctx).await?;
    if let Some(closed) = window_closed(window.as_ref(), ctx) {
        if params.outside_window == OutsideWindow::Skip {
            ctx.log.line(format!("{closed}; outside_window is skip: nothing starts, the fleet is unchanged"));
            let metadata = vec![MetadataField::new("skipped", closed)];
            return render_step(&StepResponse { version: fleet_version(&conn, source, ctx).await?, metadata });
        }
        bail!("refusing to start: {closed} (set params.outside_window: skip to succeed without changes outside it)");
    }
    let mut fleet = observe(&conn, selector).await?;
    let ask = Ask { source, params, file: file.as_ref(), selector, targets: &targets, dir };
    let put = plans::make(&ask, &mut fleet, &conn, ctx).await?;
    let plan = &put.plan;
    ctx.log.line(plan_text(plan));
    let earlier = plans::judge(plan, params, &conn).await?;
    if params.dry_run {
        write_plan_files(plan, dir, ctx)?;
        ctx.log.line("dry run: nothing was changed");
        let mut metadata = plan_metadata(&put);
        metadata.push(MetadataField::new("dry_run", "true"));
        return render_step(&StepResponse { version: fleet_version(&conn, source, ctx).await?, metadata });
    }
    let run = Execution { params, file: file.as_ref(), window, conn: &conn, fleet: &fleet };
    let report = run.execute(&put, ctx).await?;
    ctx.log.line(summary_text(&report));
    let deferred = check_outcome(&report, plan, params, &earlier)?;
    let mut metadata = plan_metadata(&put);
    metadata.push(MetadataField::new("changed", report.names(|o| *o == Outcome::Succeeded).len().to_string()));
    metadata.push(MetadataField::new("failed", "none"));
    if !deferred.is_empty() {
        metadata.push(MetadataField::new("deferred", deferred.join(", ")));
    }
    let version = fleet_version(&conn, source, ctx).await.context("reading the fleet after the rollout")?;
    render_step(&StepResponse { version, metadata })
}

/// The fleet version over `source.clusters` — what `check` reports — whatever `params.clusters` says.
async fn fleet_version(conn: &Clients, source: &Source, ctx: &Ctx) -> Result<crate::protocol::Version> {
    Ok(version(&observe_source(conn, source).await?, source, ctx.clock.now()))
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

/// Fails on any failed cluster (`earlier`: left failed before this run), or on clusters left
/// unstarted unless only the window held them back and `outside_window: skip` is set; returns those
/// deferred clusters.
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
        let what = match (plan.kind, &plan.target_stemcell) {
            (PlanKind::Repave, _) => "the repave".to_string(),
            (PlanKind::Rotate, _) => "the certificate rotation".to_string(),
            (PlanKind::Rollout, Some(stemcell)) => format!("the rollout to TKGI {}, stemcell {stemcell}", plan.target),
            (PlanKind::Rollout, None) => format!("the rollout to TKGI {}", plan.target),
        };
        bail!("{what} did not complete ({why}): failed: {}; not started: {}", list(&failed), list(&not_started));
    }
    Ok(Vec::new())
}

/// `plan.json` and `plan.md` in the put's directory, for a step that comments on a pull request.
fn write_plan_files(plan: &Plan, dir: &StepDir, ctx: &Ctx) -> Result<()> {
    let json = serde_json::to_string_pretty(&plan_json(plan))? + "\n";
    let written = dir.write("plan.json", json.as_bytes(), Mode::Public)?;
    dir.write("plan.md", format!("# Fleet plan\n\n{}", plan_text(plan)).as_bytes(), Mode::Public)?;
    ctx.log.line(format!("wrote {} and plan.md", written.display()));
    Ok(())
}

/// What running a plan needs besides the plan.
struct Execution<'a> {
    params: &'a PutParams,
    file: Option<&'a FleetFile>,
    window: Option<Window>,
    conn: &'a Clients,
    fleet: &'a [Observed],
}

impl Execution<'_> {
    async fn execute(self, put: &PutPlan, ctx: &Ctx) -> Result<executor::Report> {
        let (params, file) = (self.params, self.file);
        let file_max_in_flight = file.and_then(|f| f.max_in_flight).and_then(NonZeroUsize::new);
        let settings = params.settings(file_max_in_flight, file.and_then(|f| f.soak).map(|d| d.0));
        let day2 = match &self.conn.director {
            Some(director) => Some(day2_run(director, put, self.fleet, params).await?),
            None => None,
        };
        let platform = TkgiPlatform {
            tkgi: &self.conn.tkgi,
            kubernetes_health: params.health.kubernetes,
            http_config: &self.conn.http_config,
            env: &ctx.env,
            log: &ctx.log,
            director: self.conn.director.as_ref(),
            target_stemcell: put.plan.target_stemcell.as_deref(),
            day2: day2.as_ref(),
        };
        let executor = Executor::new(&platform, settings, &put.plan.target, ctx.log.clone());
        Ok(match self.window {
            Some(window) => executor.with_start_gate(window_gate(window, ctx)).run(&put.plan).await,
            None => executor.run(&put.plan).await,
        })
    }
}

/// What the day-2 changes of `put` need while they run (with a director).
async fn day2_run(
    director: &crate::clients::director::Director,
    put: &PutPlan,
    fleet: &[Observed],
    params: &PutParams,
) -> Result<Day2Run> {
    let repaves = put.plan.planned().any(|p| p.changes.iter().any(|c| matches!(c, Change::Repave { .. })));
    let task_floor =
        if repaves { director.newest_task_id().await.context("reading the director's tasks")? } else { 0 };
    let recreate = &params.recreate;
    Ok(Day2Run {
        deployments: fleet.iter().filter_map(|o| Some((o.cluster.name.clone(), o.deployment.clone()?))).collect(),
        recreate: RecreateOptions {
            canaries: recreate.canaries.as_ref().map(|c| c.0.clone()),
            max_in_flight: recreate.max_in_flight.as_ref().map(|c| c.0.clone()),
            fix: recreate.fix,
            skip_drain: recreate.skip_drain,
            vms_created_before: None,
        },
        task_floor,
        tasks: std::sync::Mutex::new(put.running.clone()),
        rotating: Default::default(),
        certificates_before: fleet
            .iter()
            .filter_map(|o| Some((o.cluster.name.clone(), o.facts.certificates.clone()?)))
            .collect(),
    })
}

/// Refuses new starts once the window has closed; running clusters finish (SUC's window semantics).
fn window_gate(window: Window, ctx: &Ctx) -> StartGate<'_> {
    Box::new(move || {
        let now = ctx.clock.now();
        if window.is_open(now) { Ok(()) } else { Err(format!("{WINDOW_CLOSED} ({})", window.describe(now))) }
    })
}

fn plan_metadata(put: &PutPlan) -> Vec<MetadataField> {
    let plan = &put.plan;
    let mut metadata = vec![MetadataField::new("operation", plan.kind.operation())];
    if plan.kind != PlanKind::Repave {
        metadata.push(MetadataField::new("target", plan.target.clone()));
    }
    metadata.push(MetadataField::new("planned", plan.planned().count().to_string()));
    metadata.push(MetadataField::new("skipped", plan.skipped.len().to_string()));
    if !put.unverified.is_empty() {
        metadata.push(MetadataField::new("no_verified_backup", put.unverified.join(", ")));
    }
    metadata
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}
