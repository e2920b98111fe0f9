//! Ops Manager API client: its UAA, `/api/v0/info`, the stemcell library (streamed multipart import, the
//! diagnostic report, associations and assignments), staged and deployed products, errands, pending changes,
//! pre-deploy checks, installations (Apply Changes) with their cumulative logs, and expiring certificates — routes
//! and JSON shapes only, no policy (docs/facts/opsman.md).
//!
//! Ops Manager runs its own UAA under `/uaa` on the same host; tokens come from it with the password grant
//! through the public client `opsman` or with client credentials, and are cached and refreshed by
//! [`Uaa`]. Every route but `/api/v0/info` needs the token. Writes are never retried here on their own: whether
//! one is safe to repeat is the caller's decision (the stemcell import re-reads the library first; Apply
//! Changes re-reads the installation list).

use crate::clients::uaa::{Grant, Uaa};
use crate::env::Env;
use crate::http::{self, HttpClient, HttpConfig, Retry, read_capped, status_error};
use crate::redact::Log;
use anyhow::{Context, Result, anyhow};
use reqwest::header::HeaderMap;
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Where an Ops Manager is and who logs in to it.
#[derive(Clone, Debug)]
pub struct Login {
    /// e.g. `https://opsman.example.com`
    pub url: String,
    /// Its UAA, usually `{url}/uaa`.
    pub uaa_url: String,
    /// Where `uaa_url` came from when the user did not write it, for error messages.
    pub uaa_origin: Option<String>,
    pub grant: Grant,
    /// PEM of the CA that signed Ops Manager's certificate; without it the connection's own trust applies.
    pub ca_cert: Option<String>,
}

/// The public UAA client Ops Manager users log in through (empty secret).
pub(crate) const PUBLIC_CLIENT: &str = "opsman";

/// An authenticated Ops Manager connection.
pub struct Opsman {
    base_url: String,
    http: HttpClient,
    uaa: Uaa,
}

impl Opsman {
    /// Sets up the client; nothing is sent until the first call.
    pub fn new(login: &Login, base: &HttpConfig, env: &Env, log: &Log) -> Result<Opsman> {
        let config = HttpConfig { ca_cert: login.ca_cert.clone().or_else(|| base.ca_cert.clone()), ..base.clone() };
        let http = HttpClient::new(config, env, log)?;
        let mut uaa = Uaa::new(http.clone(), &login.uaa_url, login.grant.clone());
        if let Some(origin) = &login.uaa_origin {
            uaa = uaa.with_origin(origin);
        }
        Ok(Opsman { base_url: login.url.trim_end_matches('/').to_string(), http, uaa })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET /api/v0/info` (no token needed): the Ops Manager version.
    pub async fn info(&self) -> Result<Info> {
        #[derive(Deserialize)]
        struct Answer {
            info: Info,
        }
        let answer: Answer = self.http.get_json(&self.url("/api/v0/info"), HeaderMap::new()).await?;
        Ok(answer.info)
    }

    /// An authenticated GET of a JSON answer.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = self.url(path);
        let response = self.uaa.send(Retry::Idempotent, |c| c.get(&url).header("Accept", "application/json")).await?;
        decode(response, &format!("GET {url}"), self.http.config().max_body_bytes).await
    }

    /// An authenticated PATCH or POST of a JSON body; a non-2xx answer is a [`Refusal`] error carrying Ops
    /// Manager's own messages.
    async fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Value> {
        let url = self.url(path);
        let response = self
            .uaa
            .send(Retry::NotIdempotent, |c| {
                c.request(method.clone(), &url).header("Accept", "application/json").json(body)
            })
            .await?;
        decode(response, &format!("{method} {url}"), self.http.config().max_body_bytes).await
    }
}

/// Reads a 2xx JSON answer; anything else is an error quoting Ops Manager's messages.
async fn decode<T: DeserializeOwned>(response: Response, what: &str, limit: usize) -> Result<T> {
    if !response.status().is_success() {
        return Err(Refusal::read(response).await.into_error(what));
    }
    let body = read_capped(response, limit).await.map_err(|f| f.error.context(what.to_string()))?;
    // Ops Manager answers a successful write with `{}` or nothing at all.
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"null".to_vec() } else { body };
    serde_json::from_slice(&body).with_context(|| format!("{what}: decoding the answer"))
}

/// `GET /api/v0/info` → `info`.
#[derive(Clone, Debug, Deserialize)]
pub struct Info {
    /// e.g. `2.6.3`, `2.10-build.123`, `3.0.25-build.5`.
    pub version: String,
}

impl Info {
    /// Whether the version is at least `major.minor` (its first two numbers).
    pub fn at_least(&self, major: u64, minor: u64) -> bool {
        let mut numbers = self.version.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u64>().ok());
        (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (major, minor)
    }
}

/// A non-2xx answer: the status and Ops Manager's error messages (`{"errors": …}` in any of its shapes).
#[derive(Clone, Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub messages: Vec<String>,
    /// The start of the raw body, when it held no messages.
    pub raw: String,
}

impl Refusal {
    async fn read(response: Response) -> Refusal {
        let status = response.status();
        let body = read_capped(response, 64 << 10).await.unwrap_or_default();
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let messages = error_messages(&parsed);
        let raw = String::from_utf8_lossy(&body).chars().take(500).collect();
        Refusal { status, messages, raw }
    }

    /// `{status}: message; message` (or the raw body).
    pub fn describe(&self) -> String {
        match (self.messages.is_empty(), self.raw.trim().is_empty()) {
            (false, _) => format!("{}: {}", self.status, self.messages.join("; ")),
            (true, false) => format!("{}: {}", self.status, self.raw.trim()),
            (true, true) => self.status.to_string(),
        }
    }

    fn into_error(self, what: &str) -> anyhow::Error {
        anyhow!("{what}: {}", self.describe())
    }
}

/// Every string under a key named `errors`, however nested (`{"errors":["…"]}`, `{"errors":{"errors":["…"]}}`,
/// `{"errors":{"field":["…"]}}`, the verifier errors of a 422 from Apply Changes), each prefixed with the
/// `identifier`/`type` of the objects it sits in, e.g. `pivotal-container-service: SomeVerifier: message`.
pub(crate) fn error_messages(body: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_errors(body, "", false, &mut found);
    found
}

fn collect_errors(value: &Value, prefix: &str, inside_errors: bool, found: &mut Vec<String>) {
    match value {
        Value::String(text) if inside_errors => found.push(format!("{prefix}{text}")),
        Value::Array(items) => items.iter().for_each(|v| collect_errors(v, prefix, inside_errors, found)),
        Value::Object(map) => {
            let mut prefix = prefix.to_string();
            for key in ["identifier", "type"] {
                if let Some(Value::String(name)) = map.get(key) {
                    prefix.push_str(&format!("{name}: "));
                }
            }
            // The object's own `errors` first: the message before the details (JSON maps are sorted).
            let (own, nested): (Vec<_>, Vec<_>) = map.iter().partition(|(key, _)| *key == "errors");
            for (key, v) in own.into_iter().chain(nested) {
                collect_errors(v, &prefix, inside_errors || key == "errors", found);
            }
        }
        _ => {}
    }
}

// --- the stemcell library ---

/// `GET /api/v0/diagnostic_report`, the parts repave reads (both the 2.6+ and the older shape).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DiagnosticReport {
    #[serde(default)]
    pub infrastructure_type: String,
    /// 2.6 and later.
    #[serde(default)]
    pub available_stemcells: Vec<LibraryStemcell>,
    /// Before 2.6: file names only.
    #[serde(default)]
    pub stemcells: Vec<String>,
    #[serde(default)]
    pub added_products: AddedProducts,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AddedProducts {
    #[serde(default)]
    pub deployed: Vec<ReportProduct>,
    #[serde(default)]
    pub staged: Vec<ReportProduct>,
}

/// A product in the diagnostic report: `name` is its type.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReportProduct {
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// 2.6 and later.
    #[serde(default)]
    pub stemcells: Vec<LibraryStemcell>,
    /// Before 2.6: one file name.
    #[serde(default)]
    pub stemcell: Option<String>,
}

/// One stemcell as the diagnostic report lists it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct LibraryStemcell {
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub version: String,
}

/// `POST /api/v0/stemcells` → `{"stemcell": {…}, "existing": bool}` (some versions send `existing` as text).
#[derive(Clone, Debug, Deserialize)]
pub struct Imported {
    #[serde(default)]
    pub stemcell: ImportedStemcell,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub existing: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ImportedStemcell {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub version: String,
}

fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    })
}

/// How Ops Manager answered a write whose effect the caller must judge (a stemcell import, Apply Changes).
#[derive(Debug)]
pub enum Written<T> {
    Done(T),
    /// A 4xx: Ops Manager looked at the request and said no. Final.
    Refused(Refusal),
    /// A 5xx or a broken connection (the error says which): it may or may not have happened.
    Unknown(anyhow::Error),
}

impl<T> Written<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Written<U> {
        match self {
            Written::Done(value) => Written::Done(f(value)),
            Written::Refused(refusal) => Written::Refused(refusal),
            Written::Unknown(error) => Written::Unknown(error),
        }
    }
}

/// Sorts the outcome of a write (`what` names it in errors): a 2xx JSON answer, a refusal, or unknown.
async fn written<T: DeserializeOwned>(sent: Result<Response>, what: String) -> Result<Written<T>> {
    let response = match sent {
        Ok(response) => response,
        Err(error) => return Ok(Written::Unknown(error.context(what))),
    };
    let status = response.status();
    if status.is_client_error() {
        return Ok(Written::Refused(Refusal::read(response).await));
    }
    if !status.is_success() {
        return Ok(Written::Unknown(status_error(response, 2048).await.context(what)));
    }
    match read_capped(response, 1 << 20).await {
        Ok(body) => {
            serde_json::from_slice(&body).map(Written::Done).with_context(|| format!("{what}: decoding the answer"))
        }
        Err(broken) => Ok(Written::Unknown(broken.error.context(what))),
    }
}

impl Opsman {
    pub async fn diagnostic_report(&self) -> Result<DiagnosticReport> {
        self.get("/api/v0/diagnostic_report").await
    }

    /// `POST /api/v0/stemcells` as `multipart/form-data`: the file as `stemcell[file]` (named `file_name`),
    /// streamed from disk in small chunks with its exact length, and `stemcell[floating]`. Every send (a retry
    /// after a 401 included) opens the file again and starts from its first byte.
    pub async fn import_stemcell(&self, path: &Path, file_name: &str, floating: bool) -> Result<Written<Imported>> {
        let url = self.url("/api/v0/stemcells");
        let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        let form = || {
            let part = Part::stream_with_length(http::file_body(path.to_path_buf()), len)
                .file_name(file_name.to_string())
                .mime_str("application/octet-stream")
                .expect("a valid MIME type");
            Form::new().part("stemcell[file]", part).text("stemcell[floating]", floating.to_string())
        };
        // A streamed body gets a deadline from its size, not the API deadline.
        let deadline = self.http.config().transfer_deadline(len);
        let sent = self
            .uaa
            .send(Retry::NotIdempotent, |c| {
                c.post(&url).timeout(deadline).header("Accept", "application/json").multipart(form())
            })
            .await;
        written(sent, format!("POST {url}")).await
    }
}

/// `GET /api/v0/stemcell_associations` (Ops Manager 2.6 and later).
#[derive(Clone, Debug, Deserialize)]
pub struct Associations {
    #[serde(default)]
    pub products: Vec<ProductStemcells>,
}

/// One tile in `stemcell_associations`.
#[derive(Clone, Debug, Deserialize)]
pub struct ProductStemcells {
    pub guid: String,
    /// The product type.
    pub identifier: String,
    #[serde(default)]
    pub is_staged_for_deletion: bool,
    #[serde(default)]
    pub staged_stemcells: Vec<OsVersion>,
    #[serde(default)]
    pub deployed_stemcells: Vec<OsVersion>,
    #[serde(default)]
    pub available_stemcells: Vec<OsVersion>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct OsVersion {
    pub os: String,
    pub version: String,
}

/// `GET /api/v0/stemcell_assignments` (the single-stemcell model).
#[derive(Clone, Debug, Deserialize)]
pub struct Assignments {
    #[serde(default)]
    pub products: Vec<ProductAssignment>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ProductAssignment {
    pub guid: String,
    pub identifier: String,
    #[serde(default)]
    pub is_staged_for_deletion: bool,
    #[serde(default)]
    pub staged_stemcell_version: Option<String>,
    #[serde(default)]
    pub available_stemcell_versions: Vec<String>,
}

impl Opsman {
    pub async fn stemcell_associations(&self) -> Result<Associations> {
        self.get("/api/v0/stemcell_associations").await
    }

    /// Stages `stemcells` on the tile `guid` (replacing its staged stemcells of the same operating systems).
    pub async fn associate_stemcells(&self, guid: &str, stemcells: &[OsVersion]) -> Result<()> {
        let body = serde_json::json!({"products": [{"guid": guid, "staged_stemcells": stemcells}]});
        self.send_json(reqwest::Method::PATCH, "/api/v0/stemcell_associations", &body).await.map(drop)
    }

    pub async fn stemcell_assignments(&self) -> Result<Assignments> {
        self.get("/api/v0/stemcell_assignments").await
    }

    pub async fn assign_stemcell(&self, guid: &str, version: &str) -> Result<()> {
        let body = serde_json::json!({"products": [{"guid": guid, "staged_stemcell_version": version}]});
        self.send_json(reqwest::Method::PATCH, "/api/v0/stemcell_assignments", &body).await.map(drop)
    }
}

// --- products, errands, pending changes, checks, certificates ---

/// A staged or deployed product (`GET /api/v0/{staged,deployed}/products`).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Product {
    pub guid: String,
    /// The product type, e.g. `pivotal-container-service`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub product_version: String,
}

/// One errand of a staged product; `post_deploy`/`pre_delete` are `true`, `false` or text such as
/// `"when-changed"`.
#[derive(Clone, Debug, Deserialize)]
pub struct Errand {
    pub name: String,
    #[serde(default)]
    pub post_deploy: Option<Value>,
    #[serde(default)]
    pub pre_delete: Option<Value>,
}

/// One entry of `GET /api/v0/staged/pending_changes`; `raw` keeps every field for the `in` files.
#[derive(Clone, Debug, Deserialize)]
pub struct ProductChange {
    pub guid: String,
    /// `install`, `update`, `delete` or `unchanged`.
    #[serde(default)]
    pub action: String,
    #[serde(skip)]
    pub raw: Value,
}

/// `GET …/pre_deploy_check` → `pre_deploy_check`, the parts repave reports.
#[derive(Clone, Debug, Deserialize)]
pub struct PreDeployCheck {
    #[serde(default)]
    pub identifier: String,
    #[serde(default = "yes")]
    pub complete: bool,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

fn yes() -> bool {
    true
}

impl Opsman {
    pub async fn staged_products(&self) -> Result<Vec<Product>> {
        self.get("/api/v0/staged/products").await
    }

    pub async fn deployed_products(&self) -> Result<Vec<Product>> {
        self.get("/api/v0/deployed/products").await
    }

    pub async fn errands(&self, guid: &str) -> Result<Vec<Errand>> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            errands: Vec<Errand>,
        }
        let answer: Answer = self.get(&format!("/api/v0/staged/products/{}/errands", http::path_segment(guid))).await?;
        Ok(answer.errands)
    }

    pub async fn pending_changes(&self) -> Result<Vec<ProductChange>> {
        let answer: Value = self.get("/api/v0/staged/pending_changes").await?;
        let items = answer.get("product_changes").and_then(Value::as_array).cloned().unwrap_or_default();
        items
            .into_iter()
            .map(|raw| {
                let mut change: ProductChange =
                    serde_json::from_value(raw.clone()).context("decoding a pending change")?;
                change.raw = raw;
                Ok(change)
            })
            .collect()
    }

    /// The director's pre-deploy check (`None`) or a staged product's.
    pub async fn pre_deploy_check(&self, guid: Option<&str>) -> Result<PreDeployCheck> {
        #[derive(Deserialize)]
        struct Answer {
            pre_deploy_check: PreDeployCheck,
        }
        let path = match guid {
            None => "/api/v0/staged/director/pre_deploy_check".to_string(),
            Some(guid) => format!("/api/v0/staged/products/{}/pre_deploy_check", http::path_segment(guid)),
        };
        Ok(self.get::<Answer>(&path).await?.pre_deploy_check)
    }

    /// `GET /api/v0/deployed/certificates?expires_within=…` (e.g. `3m`): the certificates as Ops Manager
    /// describes them.
    pub async fn expiring_certificates(&self, expires_within: &str) -> Result<Vec<Value>> {
        let answer: Value = self
            .get(&format!("/api/v0/deployed/certificates?expires_within={}", http::path_segment(expires_within)))
            .await?;
        Ok(answer.get("certificates").and_then(Value::as_array).cloned().unwrap_or_default())
    }
}

// --- installations ---

/// One installation (`GET /api/v0/installations` lists them newest first).
#[derive(Clone, Debug, Deserialize)]
pub struct Installation {
    #[serde(default)]
    pub id: u64,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
}

/// The body of `POST /api/v0/installations`.
#[derive(Clone, Debug, Serialize)]
pub struct ApplyChanges {
    pub deploy_products: Vec<String>,
    /// `{GUID: {"run_post_deploy": {NAME: true|false|"default"}}}`.
    pub errands: serde_json::Map<String, Value>,
    pub ignore_warnings: bool,
}

impl Opsman {
    pub async fn installations(&self) -> Result<Vec<Installation>> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            installations: Vec<Installation>,
        }
        Ok(self.get::<Answer>("/api/v0/installations").await?.installations)
    }

    pub async fn installation(&self, id: u64) -> Result<Installation> {
        let mut installation: Installation = self.get(&format!("/api/v0/installations/{id}")).await?;
        installation.id = id;
        Ok(installation)
    }

    /// The whole log of installation `id` so far (it grows; callers print what is new).
    pub async fn installation_logs(&self, id: u64) -> Result<String> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            logs: String,
        }
        Ok(self.get::<Answer>(&format!("/api/v0/installations/{id}/logs")).await?.logs)
    }

    /// `POST /api/v0/installations`: the new installation's id.
    pub async fn apply_changes(&self, request: &ApplyChanges) -> Result<Written<u64>> {
        #[derive(Deserialize)]
        struct Answer {
            install: Install,
        }
        #[derive(Deserialize)]
        struct Install {
            id: u64,
        }
        let url = self.url("/api/v0/installations");
        let sent = self
            .uaa
            .send(Retry::NotIdempotent, |c| c.post(&url).header("Accept", "application/json").json(request))
            .await;
        Ok(written::<Answer>(sent, format!("POST {url}")).await?.map(|answer| answer.install.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_gate_features() {
        let at = |v: &str| Info { version: v.into() };
        assert!(at("2.6.3").at_least(2, 6));
        assert!(at("2.10-build.123").at_least(2, 6));
        assert!(at("3.0.25-build.5").at_least(2, 6));
        assert!(!at("2.5.9").at_least(2, 6));
        assert!(!at("").at_least(2, 6));
    }

    #[test]
    fn errors_in_every_shape() {
        assert_eq!(error_messages(&json!({"errors": ["a", "b"]})), ["a", "b"]);
        assert_eq!(error_messages(&json!({"errors": {"errors": ["no token"]}})), ["no token"]);
        assert_eq!(error_messages(&json!({"errors": {"stemcell": ["is invalid"]}})), ["is invalid"]);
        let verifier = json!({"errors": ["top"], "deployment_errors": {"products": [{"identifier": "p",
            "verifiers": [{"type": "V", "ignorable": false, "errors": ["deep"]}]}]}});
        assert_eq!(error_messages(&verifier), ["top", "p: V: deep"]);
        assert!(error_messages(&json!({"message": "x"})).is_empty());
    }

    #[test]
    fn existing_may_be_text() {
        let imported: Imported =
            serde_json::from_value(json!({"stemcell": {"os": "o", "version": "1"}, "existing": "true"})).unwrap();
        assert!(imported.existing);
        let imported: Imported = serde_json::from_value(json!({"existing": false})).unwrap();
        assert!(!imported.existing);
    }
}
