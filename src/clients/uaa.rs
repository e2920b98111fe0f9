//! UAA (OAuth2) access tokens for the TKGI API and the BOSH director.
//!
//! `POST {uaa}/oauth/token` with HTTP Basic client authentication, as the `tkgi` and `bosh` CLIs do
//! (docs/facts/tkgi-api.md). The token is cached for the process and refreshed a minute
//! before it expires, and once more when an API answers 401 (the token may have been revoked).

use crate::http::{Failure, HttpClient, Retry, read_capped, status_error};
use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::AUTHORIZATION;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a client proves who it is.
#[derive(Clone, Debug)]
pub enum Grant {
    /// Automation clients (`uaac client add … --authorized_grant_types client_credentials`).
    ClientCredentials { client_id: String, client_secret: String },
    /// A user through a public client such as `pks_cli` (empty client secret).
    Password { client_id: String, username: String, password: String },
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// UAA says `bearer`, RFC-following servers `Bearer`.
    token_type: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Clone)]
struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// A token source for one UAA and one identity.
pub struct Uaa {
    http: HttpClient,
    token_url: String,
    grant: Grant,
    scope: Option<String>,
    /// Where the UAA URL came from when the user did not write it, for error messages.
    origin: Option<String>,
    cached: Mutex<Option<CachedToken>>,
}

/// Refresh this long before the server's expiry, so a token never dies mid-request.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

impl Uaa {
    /// `uaa_url` is the UAA base URL, e.g. `https://api.tkgi.example.com:8443`.
    pub fn new(http: HttpClient, uaa_url: &str, grant: Grant) -> Self {
        let token_url = format!("{}/oauth/token", uaa_url.trim_end_matches('/'));
        Uaa { http, token_url, grant, scope: None, origin: None, cached: Mutex::new(None) }
    }

    /// Asks for these scopes explicitly. UAA grants all of a client's authorities without it; other
    /// OAuth2 servers grant none.
    pub fn with_scope(mut self, scope: Option<String>) -> Self {
        self.scope = scope;
        self
    }

    /// Says where a UAA URL the user did not write came from, so a failure to reach it points at the
    /// setting that fixes it.
    pub(crate) fn with_origin(mut self, origin: &str) -> Self {
        self.origin = Some(origin.to_string());
        self
    }

    /// A valid access token, from the cache when it is not about to expire.
    pub async fn token(&self) -> Result<String> {
        if let Some(token) = self.cached.lock().expect("token lock").clone()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value);
        }
        let fresh = self.fetch().await?;
        *self.cached.lock().expect("token lock") = Some(fresh.clone());
        Ok(fresh.value)
    }

    /// Forgets the cached token (after a 401), so the next call fetches a new one.
    pub(crate) fn invalidate(&self) {
        *self.cached.lock().expect("token lock") = None;
    }

    /// Sends a request with `Authorization: Bearer`, fetching a new token and trying once more when
    /// the API answers 401 (expired or revoked token).
    pub async fn send(&self, retry: Retry, build: impl Fn(&Client) -> RequestBuilder) -> Result<Response> {
        let probe = build(self.http.client()).build().context("building request")?;
        refuse_plain_http(probe.url().as_str(), "an access token")?;
        for fresh_token in [false, true] {
            if fresh_token {
                self.invalidate();
            }
            let token = self.token().await?;
            let response =
                self.http.send(retry, |client| build(client).header(AUTHORIZATION, format!("Bearer {token}"))).await?;
            if response.status() != StatusCode::UNAUTHORIZED || fresh_token {
                return Ok(response);
            }
            self.http.log().line("the API answered 401 Unauthorized: fetching a new access token and trying again");
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn fetch(&self) -> Result<CachedToken> {
        refuse_plain_http(&self.token_url, "credentials")?;
        let (client_id, client_secret, mut form) = self.form();
        form.extend(self.scope.clone().map(|scope| ("scope", scope)));
        let origin = self.origin.as_ref().map(|o| format!(" ({o})")).unwrap_or_default();
        let what = format!("requesting an access token from {}{origin}", self.token_url);
        let answer: TokenAnswer = self
            .http
            .retry(&what, || async {
                // The credentialed client: a redirect never takes the password grant anywhere else.
                let request = self
                    .http
                    .credentialed()
                    .post(&self.token_url)
                    .basic_auth(&client_id, Some(&client_secret))
                    .header("Accept", "application/json")
                    .form(&form)
                    .timeout(self.http.config().request_timeout);
                // Token requests have no side effects, so they are safe to repeat.
                let response = request.send().await.map_err(|e| crate::http::classify(e, Retry::Idempotent))?;
                self.judge(response).await
            })
            .await?;
        let kind = answer.token_type.as_deref().unwrap_or("bearer");
        if !kind.eq_ignore_ascii_case("bearer") {
            bail!("{} issued a `{kind}` token; only bearer tokens are supported", self.token_url);
        }
        self.http.log().secrets().add(&answer.access_token);
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(300));
        let refresh_at = Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 2));
        Ok(CachedToken { value: answer.access_token, refresh_at })
    }

    /// 2xx → token; 400/401 → a clear credentials error (never retried); 5xx → retried.
    async fn judge(&self, response: Response) -> std::result::Result<TokenAnswer, Failure> {
        let status = response.status();
        if status.is_success() {
            let body = read_capped(response, 1 << 20).await?;
            return serde_json::from_slice(&body).context("decoding the token answer").map_err(Failure::fatal);
        }
        let retryable = crate::http::is_retryable_status(status);
        let error = status_error(response, 2048).await;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST {
            let who = match &self.grant {
                Grant::ClientCredentials { client_id, .. } => format!("client `{client_id}`"),
                Grant::Password { username, .. } => format!("user `{username}`"),
            };
            return Err(Failure::fatal(anyhow!(
                "{error}\nUAA rejected the credentials of {who}: check the client id and secret (or username and password)"
            )));
        }
        Err(Failure { error, retryable, retry_after: None })
    }

    /// (basic-auth user, basic-auth password, form fields) for the grant.
    fn form(&self) -> (String, String, Vec<(&'static str, String)>) {
        match &self.grant {
            Grant::ClientCredentials { client_id, client_secret } => {
                (client_id.clone(), client_secret.clone(), vec![("grant_type", "client_credentials".into())])
            }
            Grant::Password { client_id, username, password } => (
                client_id.clone(),
                String::new(),
                vec![("grant_type", "password".into()), ("username", username.clone()), ("password", password.clone())],
            ),
        }
    }
}

/// Credentials and tokens travel only over TLS: anyone on the path could replay them.
pub(crate) fn refuse_plain_http(url: &str, what: &str) -> Result<()> {
    if url.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://")) {
        bail!("refusing to send {what} to {url} over plain http: use an https URL");
    }
    Ok(())
}
