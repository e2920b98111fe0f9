//! TKGI (PKS) API client: clusters (list, show, create, resize, delete), binds (kubeconfigs), the
//! upgrade request and the platform's own version — routes and JSON shapes only, no policy
//! (docs/facts/tkgi-api.md).
//!
//! Two routes are unpublished, so they are values with labelled, assumed defaults ([`ActionRoute::assumed_upgrade`],
//! [`VersionRoute`]); the fleet's config converts the user's overrides into them. A third, the route
//! behind `tkgi rotate-certificates`, is unpublished too and has no default at all (`source.rotate`).

use crate::clients::uaa::Uaa;
use crate::http::{HttpClient, Retry, path_segment as encode, read_capped, status_error};
use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

/// The fields of a cluster repave reads; the raw JSON is kept for `clusters.json`.
/// `last_action`/`last_action_state` are open strings (docs show values beyond the documented ones).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Cluster {
    pub name: String,
    #[serde(default)]
    pub plan_name: String,
    #[serde(default)]
    pub last_action: String,
    #[serde(default)]
    pub last_action_state: String,
    #[serde(default)]
    pub last_action_description: String,
    #[serde(default)]
    pub uuid: String,
    #[serde(default)]
    pub k8s_version: String,
    /// The TKGI build the cluster runs; a TKGI fork of the Terraform provider calls it `tkgi_version`.
    #[serde(default, alias = "tkgi_version")]
    pub pks_version: String,
    #[serde(skip)]
    pub raw: Value,
}

impl Cluster {
    /// `parameters.kubernetes_worker_instances`, when the platform reports it.
    pub fn workers(&self) -> Option<u64> {
        self.raw.pointer("/parameters/kubernetes_worker_instances").and_then(Value::as_u64)
    }

    fn from_json(raw: Value) -> Result<Cluster> {
        let mut cluster: Cluster = serde_json::from_value(raw.clone()).context("decoding a cluster")?;
        cluster.raw = raw;
        Ok(cluster)
    }
}

/// One plan of `GET /v1/plans` (docs/facts/tkgi-api.md); only its name is used.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PlanInfo {
    pub name: String,
}

/// What `POST /v1/clusters` needs (docs/facts/tkgi-api.md; `kubernetes_master_host` is required).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCluster {
    pub name: String,
    pub plan_name: String,
    pub master_host: String,
    pub workers: Option<u64>,
}

/// How the platform answered a request that starts an action (upgrade, create, resize, delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionAnswer {
    Accepted,
    /// 409: another action holds the cluster.
    Busy(String),
    /// Any other 4xx: a definite refusal.
    Rejected(String),
}

/// A configured request that starts one action (an upgrade, a certificate rotation) on one cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRoute {
    pub method: Method,
    /// Path under the API URL; `{name}` is replaced by the URL-encoded cluster name.
    pub path: String,
    /// JSON body sent as is (`null` sends none).
    pub body: Value,
}

impl ActionRoute {
    /// The request that starts one cluster's upgrade, as repave assumes it.
    ///
    /// ASSUMPTION: TKGI does not publish this route (docs/facts/tkgi-api.md). The default,
    /// `PATCH /v1/clusters/{name}` with `{"upgrade":true}`, is our guess; `source.upgrade` overrides it.
    pub fn assumed_upgrade() -> Self {
        ActionRoute {
            method: Method::PATCH,
            path: "/v1/clusters/{name}".into(),
            body: serde_json::json!({"upgrade": true}),
        }
    }
}

/// Where the platform reports its own TKGI version.
///
/// ASSUMPTION: the route is unpublished (the CLI prints "Upgrade is available to TKGI Version X", so
/// one exists). The default reads `GET /actuator/info` (the API is a Spring Boot app; PKS-pwsh calls
/// this route) and takes the JSON pointer `/build/version`; `source.platform_version` overrides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRoute {
    pub path: String,
    /// RFC 6901 pointer into the JSON answer, e.g. `/build/version`.
    pub pointer: String,
}

impl Default for VersionRoute {
    fn default() -> Self {
        VersionRoute { path: "/actuator/info".into(), pointer: "/build/version".into() }
    }
}

pub struct Tkgi {
    api_url: String,
    uaa: Uaa,
    upgrade: ActionRoute,
    version_route: VersionRoute,
    /// The request behind `tkgi rotate-certificates`. ASSUMPTION: TKGI publishes neither this route nor its
    /// body (docs/facts/certificates-and-backup.md) and no public client calls it, so there is no default: the
    /// user configures what the CLI sends on their platform (`source.rotate`); without it a rotation is refused.
    rotate: Option<ActionRoute>,
    http: HttpClient,
}

impl Tkgi {
    pub fn new(http: HttpClient, api_url: &str, uaa: Uaa, upgrade: ActionRoute, version_route: VersionRoute) -> Self {
        Tkgi { api_url: api_url.trim_end_matches('/').to_string(), uaa, upgrade, version_route, rotate: None, http }
    }

    /// Sets the (user-configured) rotate-certificates route.
    pub fn with_rotate_route(mut self, route: Option<ActionRoute>) -> Self {
        self.rotate = route;
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_url)
    }

    /// `GET /v1/clusters`: every cluster the caller may see.
    pub async fn clusters(&self) -> Result<Vec<Cluster>> {
        let raw: Vec<Value> = self.get_json("/v1/clusters").await?;
        raw.into_iter().map(Cluster::from_json).collect()
    }

    /// `GET /v1/plans`: the plans clusters can be created with.
    pub async fn plans(&self) -> Result<Vec<PlanInfo>> {
        self.get_json("/v1/plans").await
    }

    /// `GET /v1/clusters/{name}`.
    pub async fn cluster(&self, name: &str) -> Result<Cluster> {
        Cluster::from_json(self.get_json(&format!("/v1/clusters/{}", encode(name))).await?)
    }

    /// `GET /v1/clusters/{name}`, with 404 as `None` (a deleted cluster, or one not created yet).
    pub async fn find_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        let url = self.url(&format!("/v1/clusters/{}", encode(name)));
        let response = self.uaa.send(Retry::Idempotent, |c| c.get(&url).header("Accept", "application/json")).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = self.body(response, &format!("GET {url}")).await?;
        let raw = serde_json::from_slice(&body).with_context(|| format!("decoding the JSON answer of GET {url}"))?;
        Cluster::from_json(raw).map(Some)
    }

    /// Sends the configured upgrade request. Not retried on its own when the outcome is unknown: the
    /// caller re-reads the cluster first, so an upgrade is never started twice.
    pub async fn start_upgrade(&self, name: &str) -> Result<ActionAnswer> {
        self.start_route(&self.upgrade, name).await
    }

    /// Sends the configured rotate-certificates request; sent once, as [`Tkgi::start_upgrade`].
    pub async fn start_rotation(&self, name: &str) -> Result<ActionAnswer> {
        let Some(route) = &self.rotate else {
            bail!("no rotate-certificates route is configured (source.rotate); TKGI does not publish it")
        };
        self.start_route(route, name).await
    }

    async fn start_route(&self, route: &ActionRoute, name: &str) -> Result<ActionAnswer> {
        let url = self.url(&route.path.replace("{name}", &encode(name)));
        self.start_action(route.method.clone(), url, route.body.clone()).await
    }

    /// `POST /v1/clusters` → 202 with the cluster `CREATE in progress`.
    pub async fn create_cluster(&self, new: &NewCluster) -> Result<ActionAnswer> {
        let mut parameters = serde_json::json!({"kubernetes_master_host": new.master_host});
        if let Some(workers) = new.workers {
            parameters["kubernetes_worker_instances"] = workers.into();
        }
        let body = serde_json::json!({"name": new.name, "plan_name": new.plan_name, "parameters": parameters});
        self.start_action(Method::POST, self.url("/v1/clusters"), body).await
    }

    /// `PATCH /v1/clusters/{name}` with the flat update body → 202 `UPDATE in progress`.
    pub async fn resize_cluster(&self, name: &str, workers: u64) -> Result<ActionAnswer> {
        let url = self.url(&format!("/v1/clusters/{}", encode(name)));
        self.start_action(Method::PATCH, url, serde_json::json!({"kubernetes_worker_instances": workers})).await
    }

    /// `DELETE /v1/clusters/{name}` → 204; a 404 means it is already gone, which is what was asked.
    pub async fn delete_cluster(&self, name: &str) -> Result<ActionAnswer> {
        let url = self.url(&format!("/v1/clusters/{}", encode(name)));
        self.start_action(Method::DELETE, url, Value::Null).await
    }

    /// One non-idempotent request that starts an action: 2xx accepted, 409 busy, other 4xx refused,
    /// anything else an error (outcome unknown — the caller re-reads before trying again).
    async fn start_action(&self, method: Method, url: String, body: Value) -> Result<ActionAnswer> {
        let response = self
            .uaa
            .send(Retry::NotIdempotent, |c| {
                let request = c.request(method.clone(), &url).header("Accept", "application/json");
                if body.is_null() { request } else { request.json(&body) }
            })
            .await?;
        let status = response.status();
        // A DELETE answered 404 found the cluster already gone: what was asked (admiral does the same).
        if status.is_success() || (status == StatusCode::NOT_FOUND && method == Method::DELETE) {
            return Ok(ActionAnswer::Accepted);
        }
        let error = format!("{:#}", status_error(response, 2048).await);
        match status {
            StatusCode::CONFLICT => Ok(ActionAnswer::Busy(error)),
            s if s.is_client_error() && s != StatusCode::TOO_MANY_REQUESTS => Ok(ActionAnswer::Rejected(error)),
            _ => Err(anyhow!("{} {url}: {error}", method)),
        }
    }

    /// `POST /v1/clusters/{name}/binds`: a kubeconfig (JSON) carrying a bearer token — a secret.
    pub async fn bind(&self, name: &str) -> Result<Value> {
        let url = self.url(&format!("/v1/clusters/{}/binds", encode(name)));
        let response = self
            .uaa
            .send(Retry::NotIdempotent, |c| {
                c.post(&url).header("Accept", "application/json").json(&serde_json::json!({}))
            })
            .await?;
        let body = self.body(response, &format!("POST {url}")).await?;
        serde_json::from_slice(&body).with_context(|| format!("decoding the kubeconfig from POST {url}"))
    }

    /// The platform's own TKGI version, read from the configured (assumed) route.
    pub async fn platform_version(&self) -> Result<String> {
        let route = &self.version_route;
        let answer: Value = self.get_json(&route.path).await?;
        match answer.pointer(&route.pointer) {
            Some(Value::String(v)) if !v.trim().is_empty() => Ok(v.trim().to_string()),
            other => bail!(
                "GET {} has no string at `{}` (found {}); set source.platform_version to where your platform reports its TKGI version, or set params.target_version",
                self.url(&route.path),
                route.pointer,
                other.map_or("nothing", crate::protocol::type_name)
            ),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = self.url(path);
        let response = self.uaa.send(Retry::Idempotent, |c| c.get(&url).header("Accept", "application/json")).await?;
        let body = self.body(response, &format!("GET {url}")).await?;
        serde_json::from_slice(&body).with_context(|| format!("decoding the JSON answer of GET {url}"))
    }

    async fn body(&self, response: Response, what: &str) -> Result<Vec<u8>> {
        if !response.status().is_success() {
            return Err(status_error(response, 2048).await.context(what.to_string()));
        }
        read_capped(response, self.http.config().max_body_bytes).await.map_err(|f| f.error.context(what.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_fields_are_open_and_aliased() {
        let raw = json!({"name": "c1", "tkgi_version": "1.19.2-build.10", "last_action": "RESIZE",
                         "last_action_state": "paused", "extra": {"x": 1}});
        let c = Cluster::from_json(raw.clone()).unwrap();
        assert_eq!((c.pks_version.as_str(), c.last_action.as_str()), ("1.19.2-build.10", "RESIZE"));
        assert_eq!(c.raw, raw);
        assert!(Cluster::from_json(json!({"plan_name": "small"})).is_err(), "a cluster without a name");
    }

    #[test]
    fn names_are_encoded() {
        assert_eq!(encode("prod-eu_1.x"), "prod-eu_1.x");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
