//! BOSH director API client: `/info`, authentication, and the 302-to-task convention.
//!
//! `GET /info` is unauthenticated and says how to log in (`user_authentication.type` = `uaa` with the
//! UAA URL, or `basic`). Async calls answer 302 with `Location: /tasks/{id}`; bosh-cli follows that
//! itself, so this client never follows redirects (reference/platform-apis.md §2).

use crate::Env;
use crate::clients::uaa::{Grant, Uaa};
use crate::config::DirectorSource;
use crate::http::{HttpClient, HttpConfig, Retry};
use crate::redact::Log;
use anyhow::{Result, bail};
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, Response};
use serde::Deserialize;

/// The part of `GET /info` repave uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Info {
    pub name: String,
    #[serde(default)]
    pub uuid: String,
    #[serde(default)]
    pub version: String,
    pub user_authentication: UserAuthentication,
}

#[derive(Clone, Debug, Deserialize)]
pub struct UserAuthentication {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub options: AuthOptions,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthOptions {
    pub url: Option<String>,
}

enum Auth {
    Uaa(Box<Uaa>),
    Basic { user: String, password: String },
}

/// An authenticated director connection.
pub struct Director {
    pub base_url: String,
    pub info: Info,
    http: HttpClient,
    auth: Auth,
}

impl Director {
    /// Reads `/info` and sets up the login it names.
    pub async fn connect(source: &DirectorSource, base: &HttpConfig, env: &Env, log: &Log) -> Result<Director> {
        let config = HttpConfig {
            ca_cert: source.ca_cert.clone().or_else(|| base.ca_cert.clone()),
            follow_redirects: false,
            ..base.clone()
        };
        let http = HttpClient::new(config, env, log)?;
        let base_url = source.url.trim_end_matches('/').to_string();
        let info: Info = http.get_json(&format!("{base_url}/info"), HeaderMap::new()).await?;
        let auth = match (info.user_authentication.kind.as_str(), &info.user_authentication.options.url) {
            ("uaa", Some(uaa_url)) => {
                let grant = Grant::ClientCredentials {
                    client_id: source.client.clone(),
                    client_secret: source.client_secret.clone(),
                };
                Auth::Uaa(Box::new(Uaa::new(http.clone(), uaa_url, grant)))
            }
            ("basic", _) => Auth::Basic { user: source.client.clone(), password: source.client_secret.clone() },
            (kind, _) => bail!("director {base_url} uses authentication type `{kind}`, which repave does not support"),
        };
        Ok(Director { base_url, info, http, auth })
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends an authenticated request (redirects are returned, not followed).
    pub async fn send(&self, retry: Retry, build: impl Fn(&Client) -> RequestBuilder) -> Result<Response> {
        match &self.auth {
            Auth::Uaa(uaa) => uaa.send(retry, build).await,
            Auth::Basic { user, password } => {
                self.http.send(retry, |client| build(client).basic_auth(user, Some(password))).await
            }
        }
    }
}

// --- deployments ---

/// One entry of `GET /deployments` (reference/platform-apis.md §2). TKGI clusters are the deployments
/// named `service-instance_<cluster uuid>`.
#[derive(Clone, Debug, Deserialize)]
pub struct Deployment {
    pub name: String,
    #[serde(default)]
    pub stemcells: Vec<NamedVersion>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct NamedVersion {
    pub name: String,
    pub version: String,
}

impl Director {
    /// `GET /deployments` without configs and releases (they can be large and are not needed).
    pub async fn deployments(&self) -> Result<Vec<Deployment>> {
        let url = self.url("/deployments?exclude_configs=true&exclude_releases=true");
        let response = self.send(Retry::Idempotent, |c| c.get(&url).header("Accept", "application/json")).await?;
        if !response.status().is_success() {
            let error = crate::http::status_error(response, 2048).await;
            return Err(error.context(format!("GET {url}")));
        }
        let limit = self.http.config().max_body_bytes;
        let body =
            crate::http::read_capped(response, limit).await.map_err(|f| f.error.context(format!("GET {url}")))?;
        serde_json::from_slice(&body).map_err(|e| anyhow::anyhow!("decoding the answer of GET {url}: {e}"))
    }
}
