//! A cluster's Kubernetes API, reached through a kubeconfig from TKGI's `binds`: `/version` and
//! `/readyz` only — enough for a post-upgrade health gate (docs/facts/kubernetes.md).

use crate::env::Env;
use crate::http::{HttpClient, HttpConfig};
use crate::redact::Log;
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

/// Where and how to reach one apiserver, from a kubeconfig's current context.
#[derive(Clone, Debug)]
pub(crate) struct KubeAccess {
    pub server: String,
    pub ca_pem: Option<String>,
    pub token: Option<String>,
}

impl KubeAccess {
    /// Reads the current context's cluster and user (the first ones when there is no current context).
    pub(crate) fn from_kubeconfig(config: &Value) -> Result<KubeAccess> {
        let context_name = config.get("current-context").and_then(Value::as_str);
        let context = named(config, "contexts", context_name).and_then(|c| c.get("context"));
        let cluster_name = context.and_then(|c| c.get("cluster")).and_then(Value::as_str);
        let user_name = context.and_then(|c| c.get("user")).and_then(Value::as_str);
        let cluster = named(config, "clusters", cluster_name)
            .and_then(|c| c.get("cluster"))
            .ok_or_else(|| anyhow!("the kubeconfig has no cluster"))?;
        let server = cluster
            .get("server")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the kubeconfig's cluster has no `server`"))?
            .trim_end_matches('/')
            .to_string();
        let ca_pem = match cluster.get("certificate-authority-data").and_then(Value::as_str) {
            Some(b64) => Some(decode_pem(b64)?),
            None => None,
        };
        let user = named(config, "users", user_name).and_then(|u| u.get("user"));
        let token = user.and_then(|u| u.get("token")).and_then(Value::as_str).map(str::to_string);
        Ok(KubeAccess { server, ca_pem, token })
    }
}

fn named<'a>(config: &'a Value, list: &str, name: Option<&str>) -> Option<&'a Value> {
    let items = config.get(list)?.as_array()?;
    match name {
        Some(n) => items.iter().find(|i| i.get("name").and_then(Value::as_str) == Some(n)),
        None => items.first(),
    }
}

fn decode_pem(b64: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .context("the kubeconfig's certificate-authority-data is not base64")?;
    String::from_utf8(bytes).context("the kubeconfig's certificate-authority-data is not PEM text")
}

/// The part of `GET /version` repave shows; every field is optional.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct VersionInfo {
    #[serde(default, rename = "gitVersion")]
    pub git_version: String,
}

impl VersionInfo {
    /// `v1.28.11+vmware.1` → `1.28.11`.
    pub(crate) fn version(&self) -> &str {
        let v = self.git_version.trim_start_matches('v');
        v.split('+').next().unwrap_or(v)
    }
}

pub(crate) struct Kube {
    http: HttpClient,
    server: String,
    headers: HeaderMap,
}

impl Kube {
    /// A client trusting the kubeconfig's CA (or, without one, `base`'s). The token is registered as a
    /// secret before any request can echo it.
    pub(crate) fn new(access: &KubeAccess, base: &HttpConfig, env: &Env, log: &Log) -> Result<Kube> {
        let config = HttpConfig { ca_cert: access.ca_pem.clone().or_else(|| base.ca_cert.clone()), ..base.clone() };
        let http = HttpClient::new(config, env, log)?;
        let mut headers = HeaderMap::new();
        if let Some(token) = &access.token {
            log.secrets().add(token);
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).context("kubeconfig token")?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(Kube { http, server: access.server.clone(), headers })
    }

    pub(crate) async fn version(&self) -> Result<VersionInfo> {
        self.http.get_json(&format!("{}/version", self.server), self.headers.clone()).await
    }

    /// `GET /readyz` must answer 200 `ok`.
    pub(crate) async fn readyz(&self) -> Result<()> {
        let url = format!("{}/readyz", self.server);
        let body = self.http.get_bytes(&url, self.headers.clone()).await?;
        let text = String::from_utf8_lossy(&body);
        if text.trim() != "ok" {
            bail!("GET {url} answered `{}` instead of `ok`", text.trim());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_current_context() {
        let pem = base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\n");
        let config = json!({
            "current-context": "b",
            "contexts": [{"name": "a", "context": {"cluster": "a", "user": "ua"}},
                         {"name": "b", "context": {"cluster": "b", "user": "ub"}}],
            "clusters": [{"name": "a", "cluster": {"server": "https://a"}},
                         {"name": "b", "cluster": {"server": "https://b:8443/", "certificate-authority-data": pem}}],
            "users": [{"name": "ua", "user": {"token": "ta"}}, {"name": "ub", "user": {"token": "tb"}}]
        });
        let access = KubeAccess::from_kubeconfig(&config).unwrap();
        assert_eq!(access.server, "https://b:8443");
        assert_eq!(access.token.as_deref(), Some("tb"));
        assert!(access.ca_pem.unwrap().starts_with("-----BEGIN"));
        assert!(KubeAccess::from_kubeconfig(&json!({})).is_err());
    }

    #[test]
    fn git_version_is_trimmed() {
        let v = VersionInfo { git_version: "v1.28.11+vmware.1".into() };
        assert_eq!(v.version(), "1.28.11");
    }
}
