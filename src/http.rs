//! The one HTTP client every API client uses: TLS trust, proxies, timeouts, bounded retries, body caps.
//!
//! Why it exists as one place: the peer resource loops forever on flaky networks, has no read
//! timeout and buffers whole bodies. Here every request has a connect timeout, a stall (per-read)
//! timeout and a deadline; retries are bounded in count, back off exponentially with jitter, honour
//! `Retry-After`, and are only used for requests that are safe to repeat.
//!
//! Redirects are judged here too, for every client at once: none ever leads from https to plain
//! http (what follows could be read or changed on the path, checksums included), and a request
//! that carries credentials (an `Authorization` header, a password in the URL) follows none out of
//! its origin, because a 307/308 would resend its body (a password grant) to wherever it points.
//! TLS trust lives in [`tls`].

pub(crate) mod tls;

use crate::env::Env;
use crate::redact::Log;
use anyhow::{Context, Result, anyhow};
use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::redirect::Policy;
use reqwest::{Client, Method, Proxy, Request, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Resolved client settings (defaults filled in).
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Extra trusted CA certificates (PEM), on top of the system store.
    pub ca_cert: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub connect_timeout: Duration,
    pub stall_timeout: Duration,
    /// Deadline of one API request, headers and body. Streamed tarballs get [`HttpConfig::transfer_deadline`].
    pub request_timeout: Duration,
    /// The slowest average rate (bytes per second) a tarball transfer may keep up: with its size it
    /// sets the transfer's deadline, so a server trickling a byte a second cannot hold a step for ever.
    pub min_transfer_rate: u64,
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Largest API (JSON/text) answer we will hold in memory.
    pub max_body_bytes: usize,
    pub follow_redirects: bool,
    /// Where the system CA store lives; Concourse bind-mounts worker certificates here. `SSL_CERT_FILE`
    /// and `SSL_CERT_DIR` in the injected environment replace it, as they do for OpenSSL.
    pub system_ca_dir: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            ca_cert: None,
            insecure_skip_tls_verify: false,
            connect_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            min_transfer_rate: 256 << 10,
            attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
            follow_redirects: true,
            system_ca_dir: "/etc/ssl/certs".to_string(),
        }
    }
}

impl HttpConfig {
    /// The deadline of a streamed tarball of `bytes` bytes: the API deadline for getting started,
    /// plus the time the transfer takes at `min_transfer_rate`.
    pub(crate) fn transfer_deadline(&self, bytes: u64) -> Duration {
        let rate = self.min_transfer_rate.max(1);
        self.request_timeout.saturating_add(Duration::from_secs(bytes.div_ceil(rate)))
    }
}

/// Whether a request may be sent again after a failure whose effect on the server is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// GET, HEAD, PUT-like requests: repeat on resets, timeouts, 429 and 5xx.
    Idempotent,
    /// POST-like requests: repeat only when the connection was never established.
    NotIdempotent,
}

/// One failed attempt, as judged by the retry loop.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: anyhow::Error,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn fatal(error: anyhow::Error) -> Self {
        Failure { error, retryable: false, retry_after: None }
    }
    pub(crate) fn transient(error: anyhow::Error) -> Self {
        Failure { error, retryable: true, retry_after: None }
    }
}

/// At most this many redirects per request.
const MAX_REDIRECTS: usize = 5;

/// A configured client plus the log retries are reported to.
#[derive(Clone)]
pub struct HttpClient {
    /// For requests without credentials: redirects anywhere but down to plain http.
    client: Client,
    /// For requests with credentials: redirects only within the origin they were sent to.
    credentialed: Client,
    config: HttpConfig,
    log: Log,
}

impl HttpClient {
    pub fn new(config: HttpConfig, env: &Env, log: &Log) -> Result<Self> {
        let setting = |name: &str| env.get(name).map(String::as_str);
        let trust = tls::Trust {
            ca_cert: config.ca_cert.as_deref(),
            insecure_skip_tls_verify: config.insecure_skip_tls_verify,
            system_ca_dir: Path::new(&config.system_ca_dir),
            ssl_cert_file: setting("SSL_CERT_FILE"),
            ssl_cert_dir: setting("SSL_CERT_DIR"),
        };
        let tls = tls::client_config(&trust)?;
        if config.insecure_skip_tls_verify {
            log.warn("insecure_skip_tls_verify is set: TLS certificates are NOT verified; anyone on the path can impersonate the server");
        }
        let proxies = proxies(env, log)?;
        let build = |credentials: bool| -> Result<Client> {
            let builder = Client::builder()
                .use_preconfigured_tls(tls.clone())
                .user_agent(concat!("repave/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(config.connect_timeout)
                .read_timeout(config.stall_timeout)
                .redirect(redirect_policy(config.follow_redirects, credentials));
            // Automatic proxy detection is off: only the passed-in environment counts.
            let builder = proxies.iter().cloned().fold(builder.no_proxy(), reqwest::ClientBuilder::proxy);
            builder.build().context("building the HTTP client")
        };
        Ok(HttpClient { client: build(false)?, credentialed: build(true)?, config, log: log.clone() })
    }

    pub(crate) fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The client for requests that carry no credentials (tarballs, public APIs).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The client for requests that carry credentials: it never follows a redirect out of the origin.
    pub(crate) fn credentialed(&self) -> &Client {
        &self.credentialed
    }

    /// The client `request` must go through: [`Self::credentialed`] when it carries credentials.
    fn client_for(&self, request: &Request) -> &Client {
        self.client_carrying(request.headers(), Some(request.url()))
    }

    /// [`Self::credentialed`] for a request with an `Authorization` header or a password in its URL.
    fn client_carrying(&self, headers: &HeaderMap, url: Option<&Url>) -> &Client {
        let credentials = headers.contains_key(AUTHORIZATION) || url.is_some_and(|u| u.password().is_some());
        if credentials { &self.credentialed } else { &self.client }
    }

    pub(crate) fn log(&self) -> &Log {
        &self.log
    }

    /// Runs `op` until it succeeds, fails fatally, or the attempts are used up, sleeping with
    /// exponential backoff and jitter (or the server's `Retry-After`) in between.
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        let attempts = self.config.attempts.max(1);
        for attempt in 1..=attempts {
            let failure = match op().await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if !failure.retryable || attempt == attempts {
                let tries = if attempt > 1 { format!(" (gave up after {attempt} attempts)") } else { String::new() };
                return Err(failure.error.context(format!("{what}{tries}")));
            }
            let wait = self.backoff(attempt, failure.retry_after);
            self.log.line(format!(
                "{what}: {:#}; retrying in {:.1}s (attempt {} of {attempts})",
                failure.error,
                wait.as_secs_f64(),
                attempt + 1
            ));
            tokio::time::sleep(wait).await;
        }
        unreachable!("the loop returns on the last attempt")
    }

    /// The wait before attempt `attempt + 1`: the server's `Retry-After` (capped), else
    /// `initial * 2^(attempt-1)` capped at `max_backoff`, scaled by a random 50–100 % so that many
    /// clients retrying at once do not synchronise.
    pub(crate) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.config.max_backoff);
        }
        let exp = self.config.initial_backoff.saturating_mul(1 << (attempt - 1).min(20));
        exp.min(self.config.max_backoff).mul_f64(jitter())
    }

    /// Sends a request built fresh for every attempt, under `request_timeout` unless the builder set
    /// its own deadline (a streamed upload sets [`HttpConfig::transfer_deadline`]). Retryable statuses
    /// (429, 5xx) are retried for idempotent requests; any other status is returned for the caller to judge.
    pub async fn send(&self, retry: Retry, build: impl Fn(&Client) -> RequestBuilder) -> Result<Response> {
        let probe = build(&self.client).build().context("building request")?;
        let what = describe(probe.method(), probe.url().as_str());
        let client = self.client_for(&probe);
        self.retry(&what, || async {
            let mut request = build(client).build().map_err(|e| Failure::fatal(anyhow!("building request: {e}")))?;
            // A streamed body (a tarball) must come with the deadline its size sets: the API deadline
            // would cut a large upload short. Never silently: the test suite meets this error first.
            let streamed = request.body().is_some_and(|b| b.as_bytes().is_none());
            if streamed && request.timeout().is_none() {
                return Err(Failure::fatal(anyhow!(
                    "{what}: a streamed upload needs a deadline from its size (HttpConfig::transfer_deadline)"
                )));
            }
            request.timeout_mut().get_or_insert(self.config.request_timeout);
            let response = client.execute(request).await.map_err(|e| classify(e, retry))?;
            let status = response.status();
            if retry == Retry::Idempotent && is_retryable_status(status) {
                let retry_after = parse_retry_after(response.headers());
                let error = status_error(response, self.config.max_body_bytes.min(4096)).await;
                return Err(Failure { error, retryable: true, retry_after });
            }
            Ok(response)
        })
        .await
    }

    /// GETs `url` and decodes a JSON answer. A reset while reading the body is retried like a failed
    /// request; a non-2xx answer is an error quoting the (capped) body.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str, headers: HeaderMap) -> Result<T> {
        let bytes = self.get_bytes(url, headers).await?;
        serde_json::from_slice(&bytes).with_context(|| format!("decoding the JSON answer of GET {url}"))
    }

    /// GETs `url` and returns its body (capped at `max_body_bytes`), retrying transient failures.
    pub async fn get_bytes(&self, url: &str, headers: HeaderMap) -> Result<Vec<u8>> {
        let what = describe(&Method::GET, url);
        let client = self.client_carrying(&headers, Url::parse(url).ok().as_ref());
        self.retry(&what, || async {
            let request = client.get(url).headers(headers.clone()).timeout(self.config.request_timeout);
            let response = request.send().await.map_err(|e| classify(e, Retry::Idempotent))?;
            let status = response.status();
            if !status.is_success() {
                let retry_after = parse_retry_after(response.headers());
                let error = status_error(response, 4096).await;
                return Err(Failure { error, retryable: is_retryable_status(status), retry_after });
            }
            read_capped(response, self.config.max_body_bytes).await
        })
        .await
    }
}

/// A request body that streams a file from disk: memory does not grow with the file, and a retried
/// request (built again) starts from its first byte. The file is opened when the body is first polled,
/// so a request that is built but never sent reads nothing.
pub(crate) fn file_body(path: std::path::PathBuf) -> reqwest::Body {
    use futures_util::StreamExt;
    let stream = futures_util::stream::once(async move { read_in_background(path) }).flatten();
    reqwest::Body::wrap_stream(stream)
}

/// Bytes read per chunk of a streamed file.
const FILE_CHUNK: usize = 256 << 10;
/// Chunks read ahead of the connection: at most this many (plus one in hand) are in memory.
const FILE_CHUNKS_AHEAD: usize = 4;

/// Reads `path` on one blocking thread into a small bounded channel. One thread for the whole file costs
/// far less CPU than an async read per chunk (each a hop to the blocking pool), which matters when a
/// 1 GiB stemcell upload shares two cores with the TLS encryption. The thread stops when the body is
/// dropped (the channel closes), so an aborted request leaves nothing reading.
fn read_in_background(path: std::path::PathBuf) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    use std::io::Read;
    let (chunks, received) = tokio::sync::mpsc::channel(FILE_CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) => return drop(chunks.blocking_send(Err(error))),
        };
        loop {
            let mut chunk = vec![0u8; FILE_CHUNK];
            let read = match file.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return drop(chunks.blocking_send(Err(error))),
            };
            chunk.truncate(read);
            if chunks.blocking_send(Ok(chunk)).is_err() {
                return;
            }
        }
    });
    futures_util::stream::unfold(received, |mut received| async move { received.recv().await.map(|c| (c, received)) })
}

/// Reads a whole body, failing once it exceeds `limit` bytes (a hostile or broken server must not
/// make us allocate without bound). Read errors are retryable: the connection broke mid-body.
pub(crate) async fn read_capped(mut response: Response, limit: usize) -> std::result::Result<Vec<u8>, Failure> {
    let url = response.url().to_string();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Failure::fatal(anyhow!(
                        "the answer from {url} is larger than the {} KiB limit for API answers",
                        limit / 1024
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(classify(e, Retry::Idempotent)),
        }
    }
}

/// An error for a non-success answer: status line plus the start of the body.
pub(crate) async fn status_error(response: Response, body_limit: usize) -> anyhow::Error {
    let status = response.status();
    let body = read_capped(response, body_limit.max(1)).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() { anyhow!("{status}") } else { anyhow!("{status}: {}", truncate(text, 500)) }
}

/// RFC 3986's unreserved characters stay and every other byte becomes `%XX`: safe in any path
/// segment or query value, and exactly the URI encoding AWS signatures are computed over.
pub(crate) const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A name (a cluster, a deployment) percent-encoded for one path segment.
pub(crate) fn path_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, UNRESERVED).to_string()
}

/// 429 and 5xx mean "try again later"; 501 (not implemented) never changes.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// Judges a transport error by its type: connection failures are always safe to retry (nothing
/// reached the server); timeouts and broken bodies only for idempotent requests; a failed TLS
/// handshake or a refused redirect never, with a line that says what is wrong and what fixes it.
pub(crate) fn classify(error: reqwest::Error, retry: Retry) -> Failure {
    let chain = error_chain(&error);
    if let Some(problem) = tls::tls_error(&error) {
        return Failure::fatal(anyhow!("{chain}\n{}", tls::explain(problem)));
    }
    if error.is_redirect() {
        return Failure::fatal(anyhow!("{chain}"));
    }
    let retryable = error.is_connect()
        || (retry == Retry::Idempotent
            && (error.is_timeout() || error.is_request() || error.is_body() || error.is_decode()));
    let kind = if error.is_timeout() { "timed out: " } else { "" };
    Failure { error: anyhow!("{kind}{chain}"), retryable, retry_after: None }
}

/// The redirect policy of a client: none at all when the caller follows redirects itself (the
/// director's 302 to its task); otherwise at most [`MAX_REDIRECTS`], judged by [`refuse_redirect`].
fn redirect_policy(follow: bool, credentials: bool) -> Policy {
    if !follow {
        return Policy::none();
    }
    Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let refusal = attempt.previous().last().and_then(|from| refuse_redirect(from, attempt.url(), credentials));
        match refusal {
            Some(why) => attempt.error(why),
            None => attempt.follow(),
        }
    })
}

/// Why a redirect from `from` to `to` must not be followed, or `None` when it may be.
pub(crate) fn refuse_redirect(from: &Url, to: &Url, credentials: bool) -> Option<String> {
    if from.scheme() == "https" && to.scheme() != "https" {
        return Some(format!(
            "refusing to follow a redirect from {from} to {to}: it leaves https, and anyone on the path could read \
             or change what plain http carries"
        ));
    }
    if credentials && from.origin() != to.origin() {
        return Some(format!(
            "refusing to follow a redirect from {from} to {to}: the request carries credentials, which repave sends \
             only to the server they were configured for"
        ));
    }
    None
}

/// reqwest's own Display hides the root cause (e.g. "connection reset"), so spell out the chain.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

pub(crate) fn describe(method: &Method, url: &str) -> String {
    format!("{method} {url}")
}

/// The start of `text`, cut at whitespace: an error page that echoes a credential (a base64 header, a
/// URL-encoded form, neither with spaces) shows it whole or not at all, never a fragment that
/// redaction could not recognise.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let end = text[..end].rfind(char::is_whitespace).unwrap_or(0);
    format!("{}…", text[..end].trim_end())
}

/// A random factor in [0.5, 1.0).
fn jitter() -> f64 {
    0.5 + fastrand::f64() / 2.0
}

/// The proxies `https_proxy`/`http_proxy`/`no_proxy` name (lower case first, as Concourse workers set them,
/// then upper case); their passwords become secrets.
fn proxies(env: &Env, log: &Log) -> Result<Vec<Proxy>> {
    let lookup =
        |name: &str| env.get(name).or_else(|| env.get(&name.to_uppercase())).filter(|v| !v.is_empty()).cloned();
    let no_proxy = lookup("no_proxy").and_then(|v| reqwest::NoProxy::from_string(&v));
    let mut proxies = Vec::new();
    for (var, scheme) in [("https_proxy", "https"), ("http_proxy", "http")] {
        let Some(url) = lookup(var) else { continue };
        log.secrets().add_url_password(&url);
        let proxy = if scheme == "https" { Proxy::https(&url) } else { Proxy::http(&url) };
        let proxy = proxy.with_context(|| format!("`{var}` is not a valid proxy URL"))?;
        proxies.push(proxy.no_proxy(no_proxy.clone()));
    }
    Ok(proxies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = HttpConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        let client = HttpClient::new(cfg, &Env::new(), &Log::sink()).unwrap();
        for attempt in 1..10 {
            let wait = client.backoff(attempt, None);
            let ceiling = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
            assert!(wait <= ceiling && wait >= ceiling / 2, "attempt {attempt}: {wait:?}");
        }
        assert_eq!(client.backoff(1, Some(Duration::from_secs(600))), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
    }

    #[test]
    fn statuses() {
        assert!(is_retryable_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_retryable_status(StatusCode::NOT_IMPLEMENTED));
        assert!(!is_retryable_status(StatusCode::NOT_FOUND));
    }

    #[test]
    fn redirects_never_leave_https_and_credentials_never_leave_their_origin() {
        let url = |u: &str| Url::parse(u).unwrap();
        let https = url("https://uaa.example.com:8443/oauth/token");
        let plain = url("http://uaa.example.com:8443/oauth/token");
        assert!(refuse_redirect(&https, &plain, false).unwrap().contains("leaves https"));
        assert!(refuse_redirect(&https, &plain, true).unwrap().contains("leaves https"));
        let cdn = url("https://cdn.example.net/x.tgz");
        assert_eq!(refuse_redirect(&https, &cdn, false), None, "public downloads may move to a CDN");
        assert!(refuse_redirect(&https, &cdn, true).unwrap().contains("carries credentials"));
        let other_port = url("https://uaa.example.com:9443/oauth/token");
        assert!(refuse_redirect(&https, &other_port, true).is_some(), "another port is another origin");
        assert_eq!(refuse_redirect(&https, &url("https://uaa.example.com:8443/v2"), true), None);
        assert_eq!(refuse_redirect(&plain, &https, false), None, "an upgrade to https is fine");
    }

    #[test]
    fn error_pages_are_cut_between_words() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("Basic dXNlcjpzZWNyZXQ= more", 20), "Basic…");
        assert_eq!(truncate("onelongtokenwithoutspaces", 10), "…");
    }

    #[test]
    fn transfer_deadlines_grow_with_the_size() {
        let cfg = HttpConfig { min_transfer_rate: 1 << 20, ..Default::default() };
        assert_eq!(cfg.transfer_deadline(0), cfg.request_timeout);
        assert_eq!(cfg.transfer_deadline(10 << 20), cfg.request_timeout + Duration::from_secs(10));
        assert_eq!(
            HttpConfig { min_transfer_rate: 0, ..cfg }.transfer_deadline(3),
            cfg.request_timeout + Duration::from_secs(3)
        );
    }

    #[test]
    fn bad_ca_cert_is_named() {
        let cfg = HttpConfig { ca_cert: Some("not a pem".into()), ..Default::default() };
        let err = HttpClient::new(cfg, &Env::new(), &Log::sink()).err().unwrap();
        assert!(err.to_string().contains("ca_cert"), "{err}");
    }
}
