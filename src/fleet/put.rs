//! `out`: the rolling upgrade. Observe, determine the target, plan (printed as a table), then — unless
//! `dry_run` — execute with the rollout engine and report. The emitted version is computed from a fresh
//! observation after the rollout, exactly as `check` would compute it.

use super::platform::{TkgiPlatform, state_of};
use super::report::{plan_text, summary_text};
use super::version::version;
use super::{Connection, connect, observe};
use crate::Ctx;
use crate::config::fleet::{Canaries, OnFailure, PutParams, Selector, Source};
use crate::config::{self};
use crate::protocol::{MetadataField, Request, StepResponse, render_step};
use crate::rollout::executor::{self, Executor, Outcome, Settings};
use crate::rollout::plan::{CanarySpec, Plan, plan};
use anyhow::{Context, Result, bail};

pub async fn run(source: &Source, request: &Request, ctx: &Ctx) -> Result<String> {
    let params: PutParams = config::parse(&request.params, "params")?;
    params.validate()?;
    let selector = Selector::new(params.clusters.as_ref().unwrap_or(&source.clusters))?;
    let conn = connect(source, ctx).await?;
    let fleet = observe(&conn, &selector).await?;
    let target = target_version(&params, &conn, ctx).await?;
    let states: Vec<_> = fleet.iter().map(|o| state_of(&o.cluster)).collect();
    let plan = plan(&states, &target, params.repair, &canary_spec(&params.canaries))?;
    ctx.log.line(plan_text(&plan));
    if params.dry_run {
        ctx.log.line("dry run: nothing was changed");
        let mut metadata = plan_metadata(&plan);
        metadata.push(MetadataField::new("dry_run", "true"));
        return render_step(&StepResponse { version: version(&fleet), metadata });
    }
    let report = execute(&params, &conn, &plan, &target, ctx).await;
    ctx.log.line(summary_text(&report));
    if !report.succeeded() {
        let failed = report.names(|o| matches!(o, Outcome::Failed(_)));
        let not_started = report.names(|o| matches!(o, Outcome::NotStarted(_)));
        bail!(
            "the rollout to TKGI {target} did not complete: failed: {}; not started: {}",
            list(&failed),
            list(&not_started)
        );
    }
    let after = observe(&conn, &selector).await.context("reading the fleet after the rollout")?;
    let upgraded = report.clusters.len();
    let mut metadata = plan_metadata(&plan);
    metadata.push(MetadataField::new("upgraded", upgraded.to_string()));
    metadata.push(MetadataField::new("failed", "none"));
    render_step(&StepResponse { version: version(&after), metadata })
}

async fn execute(params: &PutParams, conn: &Connection, plan: &Plan, target: &str, ctx: &Ctx) -> executor::Report {
    let settings = Settings {
        max_in_flight: params.max_in_flight(),
        on_failure: match params.on_failure {
            OnFailure::Stop => executor::OnFailure::Stop,
            OnFailure::Continue => executor::OnFailure::Continue,
        },
        cluster_timeout: params.cluster_timeout(),
        poll_interval: params.poll_interval(),
        health_timeout: params.health_timeout(),
        soak: params.health.soak.map(|d| d.0),
    };
    let platform = TkgiPlatform {
        tkgi: &conn.tkgi,
        kubernetes_health: params.health.kubernetes,
        http_config: &conn.http_config,
        env: &ctx.env,
        log: &ctx.log,
    };
    Executor::new(&platform, settings, target, ctx.log.clone()).run(plan).await
}

/// `target_version`, else `target_version_file` (relative to the put's directory), else the platform's
/// own version. Never a guess: if none can be read, the put fails and says how to set one.
async fn target_version(params: &PutParams, conn: &Connection, ctx: &Ctx) -> Result<String> {
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
    let v = conn.tkgi.platform_version().await.context(
        "cannot determine the target TKGI version from the platform (an assumed, unpublished route); set params.target_version or params.target_version_file",
    )?;
    ctx.log.line(format!("target: TKGI {v}, as reported by the platform"));
    Ok(v)
}

fn canary_spec(canaries: &Canaries) -> CanarySpec {
    match canaries {
        Canaries::Count(n) => CanarySpec::Count(*n),
        Canaries::Names(names) => CanarySpec::Names(names.clone()),
    }
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
