//! The rollout engine's [`Platform`] backed by the TKGI API (and, for health gates, each cluster's
//! Kubernetes API through a fresh kubeconfig from `binds`).

use crate::Env;
use crate::clients::kube::{Kube, KubeAccess};
use crate::clients::tkgi::{Tkgi, UpgradeAnswer};
use crate::http::HttpConfig;
use crate::redact::Log;
use crate::rollout::executor::{Platform, Start};
use crate::rollout::plan::ClusterState;
use anyhow::{Context, Result, bail};

pub struct TkgiPlatform<'a> {
    pub tkgi: &'a Tkgi,
    /// Query each cluster's `/version` and `/readyz` after it reports success.
    pub kubernetes_health: bool,
    pub http_config: &'a HttpConfig,
    pub env: &'a Env,
    pub log: &'a Log,
}

pub fn state_of(cluster: &crate::clients::tkgi::Cluster) -> ClusterState {
    ClusterState {
        name: cluster.name.clone(),
        version: cluster.pks_version.clone(),
        last_action: cluster.last_action.clone(),
        last_action_state: cluster.last_action_state.clone(),
        description: cluster.last_action_description.clone(),
    }
}

impl Platform for TkgiPlatform<'_> {
    async fn start_upgrade(&self, name: &str) -> Result<Start> {
        Ok(match self.tkgi.start_upgrade(name).await? {
            UpgradeAnswer::Accepted => Start::Accepted,
            UpgradeAnswer::Busy(why) => Start::Busy(why),
            UpgradeAnswer::Rejected(why) => Start::Rejected(why),
        })
    }

    async fn status(&self, name: &str) -> Result<ClusterState> {
        Ok(state_of(&self.tkgi.cluster(name).await?))
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
}
