//! What day-2 decisions read from each cluster's BOSH deployment (docs/facts/bosh-director.md): VM ages
//! (`instances`), certificate expiry, process state (`instances?format=full`, a task), and repave tasks a killed build left running (found by their context id). Reads run a few
//! clusters at a time, so a large fleet is read in a fraction of one-by-one time without flooding the
//! director.

use super::{Facts, Observed, Vms};
use crate::clients::director::{CertificateExpiry, Director, InstanceState};
use crate::clients::director_task::wait_for_task;
use anyhow::{Context, Result};
use futures_util::StreamExt;
use futures_util::stream;
use jiff::Timestamp;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// Deployments read at once.
const PARALLEL: usize = 8;
/// How long a `retrieve vm-stats` task may take (the director's agents answer within seconds).
const VM_STATS_TIMEOUT: Duration = Duration::from_secs(600);

/// Which facts to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Reads {
    pub vms: bool,
    pub certificates: bool,
}

/// Runs `read` for every item, [`PARALLEL`] at a time, answers in the items' order.
async fn each<'a, T: 'a, R, F: Future<Output = Result<R>> + 'a>(
    items: impl IntoIterator<Item = T>,
    read: impl Fn(T) -> F,
) -> Result<Vec<R>> {
    stream::iter(items.into_iter().map(read)).buffered(PARALLEL).collect::<Vec<_>>().await.into_iter().collect()
}

/// Fills in [`Observed::facts`] of every cluster whose deployment the director lists.
pub(super) async fn read(director: &Director, fleet: &mut [Observed], reads: Reads) -> Result<()> {
    if reads == Reads::default() {
        return Ok(());
    }
    let names: Vec<Option<String>> = fleet.iter().map(|o| o.deployment.clone()).collect();
    let facts = each(names, |name| async move {
        match name {
            Some(name) => read_one(director, &name, reads).await,
            None => Ok(Facts::default()),
        }
    })
    .await?;
    for (observed, facts) in fleet.iter_mut().zip(facts) {
        observed.facts = facts;
    }
    Ok(())
}

/// One deployment's facts; its VM ages and certificates are read at the same time.
async fn read_one(director: &Director, deployment: &str, reads: Reads) -> Result<Facts> {
    let vms = async {
        if !reads.vms {
            return Ok(None);
        }
        let instances = director.instances(deployment).await?;
        let created: Vec<Timestamp> = instances
            .iter()
            .filter_map(|i| i.vm_created_at.as_deref())
            .map(|t| t.parse::<Timestamp>().with_context(|| format!("{deployment}: vm_created_at `{t}`")))
            .collect::<Result<_>>()?;
        Ok(Some(Vms { count: created.len(), oldest: created.into_iter().min() }))
    };
    let certificates = async {
        if !reads.certificates {
            return Ok(None);
        }
        director.certificate_expiry(deployment).await.map(Some)
    };
    let (vms, certificates) = futures_util::future::try_join(vms, certificates).await?;
    Ok(Facts { vms, certificates })
}

/// The tag on a cluster's repave task: stable across builds, so a rerun finds a task a killed build
/// started (BOSH keeps 64 characters; a uuid is 36).
pub(super) fn context_id(deployment: &str) -> String {
    format!("repave-recreate-{}", deployment.trim_start_matches("service-instance_"))
}

/// Cluster → id of its repave task still running on the director (started by an earlier build): one
/// list of the director's unfinished tasks, matched by context id.
pub(super) async fn running_repaves(director: &Director, fleet: &[Observed]) -> Result<HashMap<String, u64>> {
    let unfinished = director.unfinished().await.context("looking for repave tasks an earlier build left running")?;
    // Newest first: reversed, so the newest of two tasks with one tag (never expected) wins.
    let tagged: HashMap<&str, u64> =
        unfinished.iter().rev().filter_map(|t| Some((t.context_id.as_deref()?, t.id))).collect();
    Ok(fleet
        .iter()
        .filter_map(|o| {
            let task = tagged.get(context_id(o.deployment.as_deref()?).as_str())?;
            Some((o.cluster.name.clone(), *task))
        })
        .collect())
}

/// Cluster → its instances' process state, for `(cluster, deployment)` pairs.
pub(super) async fn instance_states(
    director: &Director,
    deployments: Vec<(String, String)>,
) -> Result<HashMap<String, Vec<InstanceState>>> {
    let states = each(deployments, |(name, deployment)| async move {
        let task = director.start_instance_states(&deployment).await?;
        wait_for_task(director, task, VM_STATS_TIMEOUT, None, "the pre-check reads it again next time").await?;
        let states = director.instance_states(task).await?;
        Ok((name, states))
    })
    .await
    .context("reading the process state of the clusters' instances for the pre-check")?;
    Ok(states.into_iter().collect())
}

/// Cluster → its certificates' expiry, for each `(cluster, deployment)`.
pub(super) async fn certificate_expiries(
    director: &Director,
    deployments: Vec<(String, String)>,
) -> Result<HashMap<String, Vec<CertificateExpiry>>> {
    let read =
        each(
            deployments,
            |(name, deployment)| async move { Ok((name, director.certificate_expiry(&deployment).await?)) },
        )
        .await
        .context("reading the certificate expiry of the clusters' deployments")?;
    Ok(read.into_iter().collect())
}
