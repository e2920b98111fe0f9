//! UAA: `POST /oauth/token` (client_credentials and password grants, HTTP Basic client authentication) and
//! the bearer-token check every protected simulated API calls ([`Uaa::authorize`]). The same UAA also answers at
//! `POST /uaa/oauth/token`, where Ops Manager runs its own (docs/facts/opsman.md); the public clients `pks_cli`,
//! `bosh_cli` and `opsman` (empty secret) may use the password grant.
//!
//! Shapes follow docs/facts/tkgi-api.md: form-encoded request, `{"access_token", "token_type":"bearer",
//! "expires_in", "scope", "jti"}` answers (UAA's lowercase `bearer`), OAuth 2.0 errors such as `invalid_client`.
//! Tokens are opaque random strings that really expire after `token_ttl_secs` (wall-clock seconds, not scaled:
//! tests use a short TTL to exercise refresh) and can be revoked through `POST /_sim/uaa/revoke`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use crate::shared::{lock, random_u64};

/// The `uaa` section of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub clients: Vec<ClientConfig>,
    pub users: Vec<UserConfig>,
    /// Lifetime of issued tokens in real seconds.
    pub token_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub id: String,
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let scopes = ["pks.clusters.admin", "bosh.admin", "opsman.admin"].map(String::from).to_vec();
        Config {
            clients: vec![ClientConfig { id: "repave".into(), secret: "repave-secret".into(), scopes: scopes.clone() }],
            users: vec![UserConfig { username: "admin".into(), password: "admin-password".into(), scopes }],
            token_ttl_secs: 7199,
        }
    }
}

/// The simulated UAA: its clients and users, and the tokens it issued. Every protected service holds it to
/// check bearer tokens ([`Uaa::authorize`]).
pub struct Uaa {
    config: Config,
    tokens: Tokens,
}

/// Issued tokens.
#[derive(Default)]
struct Tokens {
    issued: Mutex<HashMap<String, Issued>>,
    next: Mutex<u64>,
}

struct Issued {
    scopes: Vec<String>,
    /// The client id (client_credentials) or user name (password grant) the token was issued to.
    subject: String,
    expires: Instant,
}

impl Tokens {
    fn issue(&self, scopes: Vec<String>, subject: String, ttl: Duration) -> String {
        let serial = {
            let mut next = lock(&self.next);
            *next += 1;
            *next
        };
        let token = format!("sim-token-{serial}-{:016x}", random_u64());
        let issued = Issued { scopes, subject, expires: Instant::now() + ttl };
        lock(&self.issued).insert(token.clone(), issued);
        token
    }

    fn revoke_all(&self) -> usize {
        let mut issued = lock(&self.issued);
        let n = issued.len();
        issued.clear();
        n
    }

    fn scopes_of(&self, token: &str) -> Option<Vec<String>> {
        let issued = lock(&self.issued);
        issued.get(token).filter(|t| Instant::now() < t.expires).map(|t| t.scopes.clone())
    }

    fn subject_of(&self, token: &str) -> Option<String> {
        lock(&self.issued).get(token).map(|t| t.subject.clone())
    }
}

impl Uaa {
    pub(crate) fn new(config: Config) -> Self {
        Self { config, tokens: Tokens::default() }
    }

    /// Revokes every token issued so far; returns how many.
    pub fn revoke_all(&self) -> usize {
        self.tokens.revoke_all()
    }

    /// Who the bearer token in `headers` was issued to (a client id or a user name), for APIs that record it.
    pub(crate) fn subject(&self, headers: &HeaderMap) -> Option<String> {
        self.tokens.subject_of(&bearer(headers)?)
    }

    /// Requires a live bearer token carrying at least one of `any_of` scopes: 401 `invalid_token` when missing,
    /// unknown, revoked or expired; 403 `insufficient_scope` when the scope is wrong.
    // Handlers hand the error straight back as their response; boxing it would only add an unbox at every call
    // site.
    #[allow(clippy::result_large_err)]
    pub(crate) fn authorize(&self, headers: &HeaderMap, any_of: &[&str]) -> Result<(), Response> {
        let Some(token) = bearer(headers) else {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Full authentication is required to access this resource",
            ));
        };
        let Some(scopes) = self.tokens.scopes_of(&token) else {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The token expired, was revoked, or the token ID is incorrect.",
            ));
        };
        if any_of.is_empty() || scopes.iter().any(|s| any_of.contains(&s.as_str())) {
            return Ok(());
        }
        Err(oauth_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            &format!("Insufficient scope for this resource: needs one of {}", any_of.join(", ")),
        ))
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string())
}

/// Public clients: a password grant through them needs no client secret.
const PUBLIC_CLIENTS: &[&str] = &["pks_cli", "bosh_cli", "opsman"];

pub(crate) fn routes(uaa: Arc<Uaa>) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/uaa/oauth/token", post(token))
        .route("/_sim/uaa/revoke", post(revoke))
        .route("/_sim/uaa/whoami", axum::routing::get(whoami))
        .with_state(uaa)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({"error": error, "error_description": description}))).into_response()
}

/// A protected echo of the caller's token: lets client tests exercise 401 handling without a platform route.
async fn whoami(State(uaa): State<Arc<Uaa>>, headers: HeaderMap) -> Response {
    match uaa.authorize(&headers, &[]) {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(response) => response,
    }
}

async fn revoke(State(uaa): State<Arc<Uaa>>) -> Response {
    Json(json!({"revoked": uaa.revoke_all()})).into_response()
}

async fn token(State(uaa): State<Arc<Uaa>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let config = &uaa.config;
    let (client_id, client_secret) = match basic_credentials(&headers) {
        Some(creds) => creds,
        None => {
            (form.get("client_id").cloned().unwrap_or_default(), form.get("client_secret").cloned().unwrap_or_default())
        }
    };
    let public_cli = PUBLIC_CLIENTS.contains(&client_id.as_str());
    let client = config.clients.iter().find(|c| c.id == client_id && c.secret == client_secret);
    if client.is_none() && !public_cli {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Bad credentials");
    }
    let (scopes, subject) = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") if !public_cli => (client.map(|c| c.scopes.clone()).unwrap_or_default(), client_id),
        Some("password") => {
            let (user, pass) = (form.get("username"), form.get("password"));
            match config.users.iter().find(|u| Some(&u.username) == user && Some(&u.password) == pass) {
                Some(u) => (u.scopes.clone(), u.username.clone()),
                None => return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials"),
            }
        }
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Unsupported grant type: {other}"),
            );
        }
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing grant type"),
    };
    let scopes = narrow(scopes, form.get("scope"));
    let ttl = Duration::from_secs(config.token_ttl_secs);
    let access_token = uaa.tokens.issue(scopes.clone(), subject, ttl);
    Json(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": config.token_ttl_secs,
        "scope": scopes.join(" "),
        "jti": format!("{:016x}", random_u64()),
    }))
    .into_response()
}

/// A requested `scope` narrows the granted set; without one UAA grants all of the client's authorities.
fn narrow(granted: Vec<String>, requested: Option<&String>) -> Vec<String> {
    match requested {
        Some(req) => granted.into_iter().filter(|s| req.split_whitespace().any(|r| r == s)).collect(),
        None => granted,
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, pass) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some((user, pass))
}
