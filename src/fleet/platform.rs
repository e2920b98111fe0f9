//! The rollout engine's [`Platform`] backed by the TKGI API (upgrade, create, resize, delete) (and, for health gates, each cluster's
//! Kubernetes API through a fresh kubeconfig from `binds`). With a target stemcell, an upgrade only
//! counts as done once the BOSH director shows the cluster's deployment on that stemcell (or a newer
//! one): TKGI's own `succeeded` says nothing about which stemcell the redeploy used.

use super::{Observed, stemcell_version, stemcells_by_uuid};
use crate::clients::director::Director;
use crate::clients::kube::{Kube, KubeAccess};
use crate::clients::tkgi::{ActionAnswer, NewCluster, Tkgi};
use crate::env::Env;
use crate::http::HttpConfig;
use crate::redact::Log;
use crate::rollout::executor::{Platform, Start};
use crate::rollout::plan::{Change, ClusterState};
use crate::versions::compare;
use anyhow::{Context, Result, bail};

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
}

pub(super) fn state_of(cluster: &crate::clients::tkgi::Cluster) -> ClusterState {
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
pub(super) fn observed_state(observed: &Observed) -> ClusterState {
    ClusterState { stemcell: observed.stemcell_version(), ..state_of(&observed.cluster) }
}

impl Platform for TkgiPlatform<'_> {
    async fn start(&self, name: &str, change: &Change) -> Result<Start> {
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

    /// After an upgrade, with a target stemcell: re-read the cluster's deployment from the director.
    async fn verify(&self, name: &str, change: &Change) -> Result<()> {
        let (Change::Upgrade, Some(target), Some(director)) = (change, self.target_stemcell, self.director) else {
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
}
