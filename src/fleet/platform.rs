//! The rollout engine's [`Platform`] backed by the TKGI API (upgrade, create, resize, delete, rotate)
//! and the BOSH director (repave), and, for health gates, each cluster's Kubernetes API through a fresh
//! kubeconfig from `binds`. With a target stemcell, an upgrade only counts as done once the director
//! shows the cluster's deployment on that stemcell (or a newer one): TKGI's own `succeeded` says nothing
//! about which stemcell the redeploy used.
//!
//! Day-2 ([`Day2Run`], with a director): before any change to an existing deployment starts, the
//! director's locks are read, and a deployment another task holds is waited on (a `Busy` answer), never
//! raced. A repave is a director task tagged with the cluster's context id; the engine sees it as the
//! cluster's `REPAVE` action, and after a lost answer (or a killed build) the tagged task is found and
//! followed instead of starting another. A rotation is TKGI's (its route configured, ASSUMED); the engine
//! sees the cluster's action under `ROTATE` from the moment it was asked for, and it only counts as done
//! once the director lists different certificates than before.

use super::deployments::context_id;
use super::{state_of, stemcell_version, stemcells_by_uuid};
use crate::clients::director::{CertificateExpiry, Director, RecreateOptions, Task};
use crate::clients::kube::{Kube, KubeAccess};
use crate::clients::tkgi::{ActionAnswer, NewCluster, Tkgi};
use crate::env::Env;
use crate::http::HttpConfig;
use crate::redact::Log;
use crate::rollout::executor::{Platform, Start};
use crate::rollout::plan::{Change, ClusterState};
use crate::versions::compare;
use anyhow::{Context, Result, bail};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

pub(super) struct TkgiPlatform<'a> {
    pub tkgi: &'a Tkgi,
    /// Query each cluster's `/version` and `/readyz` after it reports success.
    pub kubernetes_health: bool,
    pub http_config: &'a HttpConfig,
    pub env: &'a Env,
    pub log: &'a Log,
    /// Set together with `target_stemcell` (validation requires `source.director` for it).
    pub director: Option<&'a Director>,
    pub target_stemcell: Option<&'a str>,
    /// Set whenever `director` is.
    pub day2: Option<&'a Day2Run>,
}

/// What day-2 changes need while they run.
#[derive(Debug, Default)]
pub(super) struct Day2Run {
    /// Cluster → its deployment, for every selected cluster the director lists.
    pub deployments: HashMap<String, String>,
    /// The director's options for every recreate (`params.recreate`); the cutoff is the change's own.
    pub recreate: RecreateOptions,
    /// The newest task id before this run started anything: a tagged task above it is this run's.
    pub task_floor: u64,
    /// Cluster → its repave task (adopted from an earlier build, or started now).
    pub tasks: Mutex<HashMap<String, u64>>,
    /// Clusters whose rotation was asked for (perhaps: a lost answer counts too).
    pub rotating: Mutex<HashSet<String>>,
    /// Cluster → its certificates before the rotation.
    pub certificates_before: HashMap<String, Vec<CertificateExpiry>>,
}

impl Day2Run {
    fn task_of(&self, name: &str) -> Option<u64> {
        self.tasks.lock().ok()?.get(name).copied()
    }

    fn note_task(&self, name: &str, id: u64) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(name.to_string(), id);
        }
    }

    fn note_rotation(&self, name: &str) {
        if let Ok(mut rotating) = self.rotating.lock() {
            rotating.insert(name.to_string());
        }
    }

    fn is_rotating(&self, name: &str) -> bool {
        self.rotating.lock().is_ok_and(|r| r.contains(name))
    }
}

impl Platform for TkgiPlatform<'_> {
    async fn start(&self, name: &str, change: &Change) -> Result<Start> {
        if let Some(why) = self.locked(name, change).await? {
            return Ok(Start::Busy(why));
        }
        let answer = match change {
            Change::Upgrade => self.tkgi.start_upgrade(name).await?,
            Change::Create { plan, master_host, workers } => {
                let new = NewCluster {
                    name: name.into(),
                    plan_name: plan.clone(),
                    master_host: master_host.clone(),
                    workers: *workers,
                };
                self.tkgi.create_cluster(&new).await?
            }
            Change::Resize { to, .. } => self.tkgi.resize_cluster(name, *to).await?,
            Change::Delete => self.tkgi.delete_cluster(name).await?,
            Change::Repave { created_before } => return self.start_repave(name, created_before.clone()).await,
            Change::Rotate => self.start_rotation(name).await?,
        };
        Ok(match answer {
            ActionAnswer::Accepted => Start::Accepted,
            ActionAnswer::Busy(why) => Start::Busy(why),
            ActionAnswer::Rejected(why) => Start::Rejected(why),
        })
    }

    async fn status(&self, name: &str) -> Result<Option<ClusterState>> {
        Ok(self.tkgi.find_cluster(name).await?.as_ref().map(state_of))
    }

    async fn status_of(&self, name: &str, change: &Change) -> Result<Option<ClusterState>> {
        match change {
            Change::Repave { .. } => self.repave_state(name).await,
            Change::Rotate => {
                let state = self.status(name).await?;
                let rotating = self.day2.is_some_and(|d| d.is_rotating(name));
                Ok(state.map(|s| if rotating { ClusterState { last_action: "ROTATE".into(), ..s } } else { s }))
            }
            _ => self.status(name).await,
        }
    }

    async fn health(&self, name: &str) -> Result<()> {
        if !self.kubernetes_health {
            return Ok(());
        }
        let expected = self.tkgi.cluster(name).await?.k8s_version;
        let config = self.tkgi.bind(name).await.context("getting a kubeconfig for the health check")?;
        let access = KubeAccess::from_kubeconfig(&config)?;
        let kube = Kube::new(&access, self.http_config, self.env, self.log)?;
        let reported = kube.version().await.context("Kubernetes /version")?;
        if !expected.is_empty() && reported.version() != expected {
            bail!("the apiserver reports {} but TKGI says the cluster runs {expected}", reported.version());
        }
        kube.readyz().await.context("Kubernetes /readyz")?;
        self.log.line(format!("{name}: Kubernetes {} is ready", reported.version()));
        Ok(())
    }

    async fn verify(&self, name: &str, change: &Change) -> Result<()> {
        match change {
            Change::Upgrade => self.verify_stemcell(name).await,
            Change::Rotate => self.verify_rotation(name).await,
            Change::Repave { created_before: Some(cutoff) } => self.verify_repave(name, cutoff).await,
            _ => Ok(()),
        }
    }
}

impl TkgiPlatform<'_> {
    /// After an upgrade, with a target stemcell: re-read the cluster's deployment from the director.
    async fn verify_stemcell(&self, name: &str) -> Result<()> {
        let (Some(target), Some(director)) = (self.target_stemcell, self.director) else {
            return Ok(());
        };
        let uuid = self.tkgi.cluster(name).await.context("re-reading the cluster for its uuid")?.uuid;
        let stemcells = stemcells_by_uuid(director).await.context("re-reading the cluster's stemcell")?;
        let deployment = format!("service-instance_{uuid}");
        let Some(listed) = stemcells.get(&uuid) else {
            bail!("the upgrade reports success, but the director lists no deployment {deployment}");
        };
        match stemcell_version(listed) {
            Some(v) if compare(&v, target).is_ge() => Ok(()),
            Some(v) => bail!(
                "the upgrade reports success, but deployment {deployment} ended on stemcell {v}, not the target {target}: clusters take the stemcell used by the TKGI tile, so assign {target} to the tile in Ops Manager and Apply Changes first (an upload to the director alone is not enough)"
            ),
            None => bail!("the upgrade reports success, but deployment {deployment} lists no stemcell"),
        }
    }

    /// `Some(why)` while another director task holds the lock of the cluster's deployment: the change
    /// waits (the engine asks again after its poll interval) rather than racing it.
    async fn locked(&self, name: &str, change: &Change) -> Result<Option<String>> {
        let (Some(director), Some(day2)) = (self.director, self.day2) else { return Ok(None) };
        let Some(deployment) = day2.deployments.get(name).filter(|_| change.on_existing()) else { return Ok(None) };
        let locks = director.locks().await.context("reading the director's locks before starting")?;
        Ok(locks.iter().find(|l| l.holds(deployment)).map(|l| {
            format!("deployment {deployment} is locked by director task {}; waiting for it, never racing it", l.task_id)
        }))
    }

    fn day2_parts(&self, name: &str) -> Result<(&Director, &Day2Run, &str)> {
        let (Some(director), Some(day2)) = (self.director, self.day2) else {
            bail!("day-2 operations need source.director");
        };
        let Some(deployment) = day2.deployments.get(name) else {
            bail!("the director lists no deployment for {name}");
        };
        Ok((director, day2, deployment))
    }

    /// Sends the recreate, tagged with the cluster's context id.
    async fn start_repave(&self, name: &str, created_before: Option<String>) -> Result<Start> {
        let (director, day2, deployment) = self.day2_parts(name)?;
        let options = RecreateOptions { vms_created_before: created_before, ..day2.recreate.clone() };
        match director.recreate(deployment, &options, &context_id(deployment)).await? {
            Ok(task) => {
                day2.note_task(name, task);
                self.log.line(format!("{name}: director task {task} recreates the VMs of {deployment}"));
                Ok(Start::Accepted)
            }
            Err(why) => Ok(Start::Rejected(why)),
        }
    }

    async fn start_rotation(&self, name: &str) -> Result<ActionAnswer> {
        let answer = self.tkgi.start_rotation(name).await;
        if let (Some(day2), true) =
            (self.day2, !matches!(answer, Ok(ActionAnswer::Busy(_) | ActionAnswer::Rejected(_))))
        {
            // Accepted, or the answer was lost: from now on the cluster's action is read as the rotation.
            day2.note_rotation(name);
        }
        answer
    }

    /// The repave task of `name` as the cluster's `REPAVE` action: the one this run started or adopted,
    /// else a tagged one newer than the run (a lost answer) or still running. Without one, TKGI's state.
    async fn repave_state(&self, name: &str) -> Result<Option<ClusterState>> {
        let (director, day2, deployment) = self.day2_parts(name)?;
        let task = match day2.task_of(name) {
            Some(id) => Some(director.task(id).await?),
            None => {
                let tagged = director.tagged_tasks(&context_id(deployment), 1).await?;
                let task = tagged.into_iter().find(|t| t.id > day2.task_floor || t.is_running());
                if let Some(task) = &task {
                    day2.note_task(name, task.id);
                }
                task
            }
        };
        match task {
            Some(task) => Ok(Some(repave_as_state(name, &task))),
            None => self.status(name).await,
        }
    }

    /// A rotation is done when the director lists other certificates than before it.
    async fn verify_rotation(&self, name: &str) -> Result<()> {
        let (director, day2, deployment) = self.day2_parts(name)?;
        let after = director.certificate_expiry(deployment).await.context("re-reading the certificate expiry")?;
        let before = day2.certificates_before.get(name).cloned().unwrap_or_default();
        if after == before {
            let soonest = super::day2::soonest(&after).map_or_else(String::new, |c| {
                format!(" (soonest: {} expires {})", c.name, super::day2::expiry_text(c))
            });
            bail!(
                "TKGI reports the rotation finished, but the director lists the same certificates as before{soonest}: the certificates did not change"
            );
        }
        Ok(())
    }

    /// With a cutoff, every VM must be newer than it once the recreate is done.
    async fn verify_repave(&self, name: &str, cutoff: &str) -> Result<()> {
        let (director, _, deployment) = self.day2_parts(name)?;
        let instances = director.instances(deployment).await.context("re-reading the VMs after the recreate")?;
        let old: Vec<String> = instances
            .iter()
            .filter(|i| i.vm_created_at.as_deref().is_some_and(|t| t < cutoff))
            .map(|i| format!("{}/{}", i.job, i.index.map_or_else(|| i.id.clone(), |x| x.to_string())))
            .collect();
        if !old.is_empty() {
            bail!("the recreate finished, but {} VMs are still from before {cutoff}: {}", old.len(), old.join(", "));
        }
        Ok(())
    }
}

/// A director task as the cluster's action: running → `in progress`, `done` → `succeeded`, anything
/// else (`error`, `timeout`, `cancelled`) → `failed` with the task's words.
fn repave_as_state(name: &str, task: &Task) -> ClusterState {
    let state = match task.state.as_str() {
        _ if task.is_running() => "in progress",
        "done" => "succeeded",
        _ => "failed",
    };
    let result = task.result.as_deref().filter(|r| !r.is_empty()).unwrap_or("no message");
    ClusterState {
        name: name.to_string(),
        version: String::new(),
        last_action: "REPAVE".into(),
        last_action_state: state.into(),
        description: format!("director task {} ({}) ended `{}`: {result}", task.id, task.description, task.state),
        workers: None,
        stemcell: None,
    }
}
