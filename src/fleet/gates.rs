//! What must hold before a planned change touches a cluster: the pre-check (as `tkgi upgrade-cluster
//! --pre-check`) and the backup gate. Both run after planning and before the plan is printed, so a dry
//! run shows their verdicts, and a cluster that fails one leaves the plan with the reason.
//!
//! Pre-check, for every job that starts a change on an existing deployment (not a create; not a delete,
//! which needs no healthy cluster): every instance `running` (the agents' `job_state` and processes,
//! from `instances?format=full`), and no expired certificate. A change that is itself the remedy waives
//! the matching rule: a repair (the cluster's last action failed) or a repave with `recreate.fix` does
//! not need every instance running, a rotation does not need unexpired certificates. A deployment lock
//! is the third rule: locks are transient (a backup, an errand), so a locked deployment is named in the
//! plan and its change waits for the lock when it would start — never races it.
//!
//! Backup gate (`require_backup`), for every job that starts a change on an existing deployment, deletes
//! included: a verified BBR artifact of its deployment (`backup`).

use super::backup;
use super::day2::{expired, expiry_text};
use super::deployments;
use super::{Observed, deployment_name};
use crate::clients::director::{CertificateExpiry, Director, InstanceState};
use crate::config::fleet::{PreCheck, RequireBackup};
use crate::redact::Log;
use crate::rollout::plan::{Action, Change, Phase, Plan, Planned, SkipReason};
use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use std::collections::HashMap;
use std::path::Path;

/// How the pre-check runs.
pub(super) struct PreCheckRun<'a> {
    pub director: &'a Director,
    pub mode: PreCheck,
    /// `params.recreate.fix`: a repave recreates unresponsive instances.
    pub fix: bool,
    pub now: Timestamp,
    pub log: &'a Log,
}

/// Jobs that start a change on an existing deployment, with the change.
fn starting<'a>(plan: &'a Plan, fleet: &'a [Observed]) -> Vec<(&'a Planned, &'a Observed)> {
    plan.planned()
        .filter(|p| p.action == Action::Start && p.changes.iter().all(Change::on_existing))
        .filter_map(|p| Some((p, fleet.iter().find(|o| o.cluster.name == p.name)?)))
        .collect()
}

/// Runs the pre-check of every job that needs one: `skip` takes a failing cluster out of the plan,
/// `fail` fails the put before anything changes. Names locked deployments in the log.
pub(super) async fn pre_check(plan: &mut Plan, fleet: &[Observed], run: &PreCheckRun<'_>) -> Result<()> {
    let jobs: Vec<(&Planned, &Observed)> =
        starting(plan, fleet).into_iter().filter(|(p, _)| !p.changes.contains(&Change::Delete)).collect();
    if jobs.is_empty() {
        return Ok(());
    }
    let listed: Vec<(String, String)> =
        jobs.iter().filter_map(|(p, o)| Some((p.name.clone(), o.deployment.clone()?))).collect();
    let (states, certificates, locks) = tokio::try_join!(
        deployments::instance_states(run.director, listed),
        certificates_of(run.director, &jobs),
        async { run.director.locks().await.context("reading the director's locks") },
    )?;
    let mut failed = Vec::new();
    for (job, observed) in &jobs {
        if let Some(task) =
            observed.deployment.as_ref().and_then(|d| locks.iter().find(|l| l.holds(d))).map(|l| &l.task_id)
        {
            run.log.line(format!(
                "{}: its deployment is locked by director task {task}; the change waits for the lock",
                job.name
            ));
        }
        let certs = certificates.get(&job.name).map(Vec::as_slice).unwrap_or_default();
        if let Some(reason) = verdict(job, observed, states.get(&job.name).map(Vec::as_slice), certs, run) {
            failed.push((job.name.clone(), reason));
        }
    }
    if run.mode == PreCheck::Fail && !failed.is_empty() {
        let list: Vec<String> = failed.iter().map(|(n, why)| format!("{n}: {why}")).collect();
        bail!("the pre-check failed, nothing was changed (pre_check: fail):\n  {}", list.join("\n  "));
    }
    for (name, reason) in failed {
        plan.skip(&name, SkipReason::PreCheck { reason });
    }
    Ok(())
}

/// Each job's certificates: as observed when read already, else read now (a few deployments at a time).
async fn certificates_of(
    director: &Director,
    jobs: &[(&Planned, &Observed)],
) -> Result<HashMap<String, Vec<CertificateExpiry>>> {
    let unread: Vec<(String, String)> = jobs
        .iter()
        .filter(|(_, o)| o.facts.certificates.is_none())
        .filter_map(|(p, o)| Some((p.name.clone(), o.deployment.clone()?)))
        .collect();
    let mut certificates = deployments::certificate_expiries(director, unread).await?;
    for (job, observed) in jobs {
        if let Some(observed) = &observed.facts.certificates {
            certificates.insert(job.name.clone(), observed.clone());
        }
    }
    Ok(certificates)
}

/// Why `job` must not start, if it must not.
fn verdict(
    job: &Planned,
    observed: &Observed,
    states: Option<&[InstanceState]>,
    certificates: &[CertificateExpiry],
    run: &PreCheckRun<'_>,
) -> Option<String> {
    let Some(_) = observed.deployment else {
        return Some("the director lists no `service-instance_<uuid>` deployment for it".into());
    };
    let repair = super::state_of(&observed.cluster).phase() == Phase::Failed;
    let repave_fix = run.fix && job.changes.iter().any(|c| matches!(c, Change::Repave { .. }));
    if !(repair || repave_fix) {
        let not_running: Vec<String> = states
            .unwrap_or_default()
            .iter()
            .filter(|s| !s.is_running())
            .map(|s| format!("{} is `{}`", s.label(), s.job_state))
            .collect();
        if !not_running.is_empty() {
            return Some(format!("not every instance is running: {}", not_running.join(", ")));
        }
    }
    if !job.changes.contains(&Change::Rotate)
        && let Some(c) = certificates.iter().find(|c| expired(c, run.now))
    {
        return Some(format!("certificate {} expired {} (rotate it first)", c.name, expiry_text(c)));
    }
    None
}

/// Takes every job without a verified backup of its deployment out of the plan; returns their names.
pub(super) fn backup_gate(
    plan: &mut Plan,
    fleet: &[Observed],
    require: &RequireBackup,
    dir: &Path,
    now: Timestamp,
    log: &Log,
) -> Vec<String> {
    let mut refused = Vec::new();
    for (job, observed) in starting(plan, fleet) {
        let deployment = deployment_name(&observed.cluster);
        match backup::verify(dir, &deployment, require.max_age(), now) {
            Ok(found) => log.line(format!(
                "{}: backup {} verified ({} files match their SHA-256)",
                job.name, found.folder, found.files
            )),
            Err(reason) => refused.push((job.name.clone(), reason)),
        }
    }
    for (name, reason) in &refused {
        plan.skip(name, SkipReason::NoVerifiedBackup { reason: reason.clone() });
    }
    refused.into_iter().map(|(name, _)| name).collect()
}
