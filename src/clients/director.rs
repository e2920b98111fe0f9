//! BOSH director API client: `/info`, authentication, and the 302-to-task convention.
//!
//! `GET /info` is unauthenticated and says how to log in (`user_authentication.type` = `uaa` with the
//! UAA URL, or `basic`). Async calls answer 302 with `Location: /tasks/{id}`; bosh-cli follows that
//! itself, so this client never follows redirects (docs/facts/bosh-director.md).

use crate::clients::uaa::{Grant, Uaa};
use crate::env::Env;
use crate::http::{HttpClient, HttpConfig, Retry, read_capped, status_error};
use crate::redact::Log;
use anyhow::{Context, Result, bail};
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

/// Where a director is and who logs in to it. The UAA URL is not here: the director's `/info` names it.
#[derive(Clone, Debug)]
pub struct Login {
    /// e.g. `https://10.0.0.6:25555`
    pub url: String,
    /// UAA client (or basic-auth user) with `bosh.admin` or stemcell upload authority.
    pub client: String,
    pub client_secret: String,
    /// PEM of the CA that signed the director's and its UAA's certificates; without it the
    /// connection's own trust applies.
    pub ca_cert: Option<String>,
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
    pub async fn connect(login: &Login, base: &HttpConfig, env: &Env, log: &Log) -> Result<Director> {
        let config = HttpConfig {
            ca_cert: login.ca_cert.clone().or_else(|| base.ca_cert.clone()),
            follow_redirects: false,
            ..base.clone()
        };
        let http = HttpClient::new(config, env, log)?;
        let base_url = login.url.trim_end_matches('/').to_string();
        let info: Info = http.get_json(&format!("{base_url}/info"), HeaderMap::new()).await?;
        let auth = match (info.user_authentication.kind.as_str(), &info.user_authentication.options.url) {
            ("uaa", Some(uaa_url)) => {
                let grant = Grant::ClientCredentials {
                    client_id: login.client.clone(),
                    client_secret: login.client_secret.clone(),
                };
                let origin = format!("the UAA URL {base_url}/info names");
                Auth::Uaa(Box::new(Uaa::new(http.clone(), uaa_url, grant).with_origin(&origin)))
            }
            ("basic", _) => Auth::Basic { user: login.client.clone(), password: login.client_secret.clone() },
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
                crate::clients::uaa::refuse_plain_http(&self.base_url, "director credentials")?;
                self.http.send(retry, |client| build(client).basic_auth(user, Some(password))).await
            }
        }
    }
}

// --- stemcells and tasks ---

/// One entry of `GET /stemcells` (the key is `operating_system`, not `os`).
#[derive(Clone, Debug, Deserialize)]
pub struct DirectorStemcell {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub operating_system: String,
    #[serde(default)]
    pub cid: String,
}

/// `GET /tasks/{id}`; for a failed task `result` holds the error message.
#[derive(Clone, Debug, Deserialize)]
pub struct Task {
    pub id: u64,
    pub state: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub result: Option<String>,
}

impl Task {
    /// bosh-cli's rule: queued, processing and cancelling are still running.
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "processing" | "cancelling")
    }
}

impl Director {
    /// The stemcells already uploaded.
    pub async fn stemcells(&self) -> Result<Vec<DirectorStemcell>> {
        let url = self.url("/stemcells");
        let response = self.send(Retry::Idempotent, |c| c.get(&url)).await?;
        self.json(response, &format!("listing stemcells at {url}")).await
    }

    /// `POST /stemcells {location, sha1}`: the director fetches the tarball itself. `digest` is a
    /// sha1 hex or `sha256:<hex>`; `context` tags the task (see [`Director::unfinished_tasks`]).
    /// Returns the task id.
    pub async fn upload_stemcell_url(&self, location: &str, digest: Option<&str>, context: &str) -> Result<u64> {
        let url = self.url("/stemcells");
        let mut body = serde_json::json!({ "location": location });
        if let Some(digest) = digest {
            body["sha1"] = digest.into();
        }
        let response =
            self.send(Retry::NotIdempotent, |c| c.post(&url).header(CONTEXT_ID, context).json(&body)).await?;
        task_from_redirect(response, &format!("asking {url} to fetch {location}")).await
    }

    /// `POST /stemcells` with the tarball as the body (`application/x-compressed`, as bosh-cli sends
    /// it), streamed from disk in small chunks. Returns the task id.
    pub async fn upload_stemcell_file(&self, path: &std::path::Path, context: &str) -> Result<u64> {
        let url = self.url("/stemcells");
        let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        let response = self
            .send(Retry::NotIdempotent, |c| {
                c.post(&url)
                    .header(CONTEXT_ID, context)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-compressed")
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(crate::http::file_body(path.to_path_buf()))
            })
            .await?;
        task_from_redirect(response, &format!("uploading {} to {url}", path.display())).await
    }

    /// Tasks tagged `context` that have not finished (queued, processing, cancelling), newest first:
    /// how a rerun finds the upload a killed build started, instead of starting a second one.
    pub async fn unfinished_tasks(&self, context: &str) -> Result<Vec<Task>> {
        let url = self.url("/tasks");
        let query = [("state", "queued,processing,cancelling"), ("context_id", context)];
        let response = self.send(Retry::Idempotent, |c| c.get(&url).query(&query)).await?;
        self.json(response, &format!("listing unfinished tasks tagged `{context}` at {url}")).await
    }

    pub async fn task(&self, id: u64) -> Result<Task> {
        let url = self.url(&format!("/tasks/{id}"));
        let response = self.send(Retry::Idempotent, |c| c.get(&url)).await?;
        self.json(response, &format!("reading task {id} at {url}")).await
    }

    /// Task output of `kind` (`event`, `result`, …) from byte `from` on; empty when nothing is new.
    pub async fn task_output(&self, id: u64, kind: &str, from: u64) -> Result<Vec<u8>> {
        let url = self.url(&format!("/tasks/{id}/output?type={kind}"));
        let response = self
            .send(Retry::Idempotent, |c| c.get(&url).header(reqwest::header::RANGE, format!("bytes={from}-")))
            .await?;
        let status = response.status();
        let what = format!("reading the output of task {id} at {url}");
        match status.as_u16() {
            204 | 416 => Ok(Vec::new()),
            206 => Ok(read_capped(response, 32 << 20).await.map_err(|f| f.error).context(what)?),
            // A server that ignores Range sends everything: keep only what is new.
            200 => {
                let body = read_capped(response, 32 << 20).await.map_err(|f| f.error).context(what)?;
                Ok(body.get(from as usize..).unwrap_or_default().to_vec())
            }
            _ => Err(status_error(response, 2048).await.context(what)),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, response: Response, what: &str) -> Result<T> {
        if !response.status().is_success() {
            return Err(status_error(response, 2048).await.context(what.to_string()));
        }
        let body = read_capped(response, 32 << 20).await.map_err(|f| f.error).with_context(|| what.to_string())?;
        serde_json::from_slice(&body).with_context(|| format!("{what}: decoding the answer"))
    }
}

/// Tags a task so it can be found again (`context_id` in task lists; at most 64 characters).
const CONTEXT_ID: &str = "X-Bosh-Context-Id";

/// Async director calls answer 302 `Location: /tasks/{id}`; anything else is an error.
async fn task_from_redirect(response: Response, what: &str) -> Result<u64> {
    let status = response.status();
    if status != reqwest::StatusCode::FOUND && status != reqwest::StatusCode::SEE_OTHER {
        return Err(status_error(response, 2048).await.context(what.to_string()));
    }
    let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    location
        .rsplit_once("/tasks/")
        .and_then(|(_, id)| id.trim_end_matches('/').parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{what}: the director redirected to `{location}`, not to /tasks/ID"))
}

// --- deployments ---

/// One entry of `GET /deployments` (docs/facts/bosh-director.md). TKGI clusters are the deployments
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
