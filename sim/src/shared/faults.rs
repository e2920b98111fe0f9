//! Fault injection: the rules (which requests, how many, what goes wrong) and the middleware that applies them.
//!
//! Every route passes through [`middleware`] except the control endpoints (`/_sim/requests`, `/_sim/faults`,
//! `/_sim/stats`), so tests can always observe and re-arm the simulator. A request is counted against every rule
//! it matches; the first rule that is due (past its `skip`, within its `count`) fires, and at most one fires.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::shaping::{BodyFault, shape_body};
use super::util::lock;

/// One fault rule, as written in a scenario's `faults:` list or POSTed to `/_sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// HTTP method to match (case-insensitive); any method when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Exact path, or a glob where `*` matches any run of characters (including `/`). The query is ignored.
    pub path: String,
    /// Let the first `skip` matching requests through untouched.
    #[serde(default)]
    pub skip: u32,
    /// Fire for this many matching requests after the skip, then stop; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// `{status: {code: 503}}` in YAML as in JSON (serde_yaml_ng would otherwise expect a `!status` tag).
    #[serde(with = "serde_yaml_ng::with::singleton_map")]
    pub action: FaultAction,
}

/// What goes wrong. Serialized externally tagged: `{"status": {"code": 503}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer at once with this status (the real handler never runs).
    Status {
        code: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Send the real response but abort the connection after `bytes` body bytes.
    ResetAfterBytes { bytes: u64 },
    /// Read `bytes` of the request's body, then abort the connection without an answer (the handler never runs):
    /// an upload that breaks off midway.
    ResetUploadAfterBytes { bytes: u64 },
    /// Let the real handler run (the change happens), then abort the connection without its answer: the
    /// client cannot know whether its request was taken, as when a proxy or the network drops the reply.
    LoseAnswer,
    /// Pause `ms` after `after_bytes` body bytes; without `after_bytes`, pause before the headers.
    Stall {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_bytes: Option<u64>,
        ms: u64,
    },
    /// Throttle this response's body.
    RateLimit { bytes_per_sec: u64 },
    /// Send only `bytes` body bytes under the original `Content-Length`, then close.
    Truncate { bytes: u64 },
    /// Answer as a server without range support would: the `Range` header is dropped, so a ranged GET
    /// gets the whole body with 200 (a server that stops honouring ranges mid-download).
    IgnoreRange,
    /// Answer as a server that ignores `Range` and sends no `Content-Length`, then goes on: the whole body,
    /// followed by `extra_bytes` more (zeros), in chunks. What a broken proxy or a hostile mirror does to
    /// fill a disk: only a client that counts against the size it expects stops it.
    Endless { extra_bytes: u64 },
    /// Answer `code` (301, 302, 303, 307 or 308) with `Location: location`, e.g. to plain http or to another
    /// server: what a hostile or misconfigured server, or one on the path, does to lure credentials away.
    Redirect { code: u16, location: String },
    /// Answer `code` with the request itself as the body (method, URL, every header, the body): an error page
    /// that echoes what it got, as some servers do, so every credential the client sent comes back in the
    /// forms it was sent in (URL-encoded in a form, base64 in `Authorization: Basic`, JSON-escaped in JSON).
    Echo { code: u16 },
}

impl FaultAction {
    /// The name recorded in the request log.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::ResetAfterBytes { .. } => "reset_after_bytes",
            Self::ResetUploadAfterBytes { .. } => "reset_upload_after_bytes",
            Self::LoseAnswer => "lose_answer",
            Self::Stall { .. } => "stall",
            Self::RateLimit { .. } => "rate_limit",
            Self::Truncate { .. } => "truncate",
            Self::IgnoreRange => "ignore_range",
            Self::Endless { .. } => "endless",
            Self::Redirect { .. } => "redirect",
            Self::Echo { .. } => "echo",
        }
    }
}

impl FaultRule {
    /// A rule for `path` that fires forever; narrow it with the builder methods.
    pub fn new(path: impl Into<String>, action: FaultAction) -> Self {
        Self { method: None, path: path.into(), skip: 0, count: None, action }
    }

    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    pub fn skip(mut self, skip: u32) -> Self {
        self.skip = skip;
        self
    }

    pub fn count(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }

    /// Rejects rules that could never behave as written.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if !self.path.starts_with('/') && !self.path.starts_with('*') {
            bail!("fault rule path must start with '/' or '*', got {:?}", self.path);
        }
        match self.action {
            FaultAction::Status { code, .. } if StatusCode::from_u16(code).is_err() => {
                bail!("fault rule status code {code} is not a valid HTTP status")
            }
            FaultAction::RateLimit { bytes_per_sec: 0 } => {
                bail!("fault rule rate_limit needs bytes_per_sec > 0")
            }
            FaultAction::Redirect { code, .. } if !matches!(code, 301 | 302 | 303 | 307 | 308) => {
                bail!("fault rule redirect needs a redirect status (301, 302, 303, 307, 308), got {code}")
            }
            FaultAction::Echo { code } if StatusCode::from_u16(code).is_err() => {
                bail!("fault rule echo status code {code} is not a valid HTTP status")
            }
            _ => Ok(()),
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)) && glob_match(&self.path, path)
    }
}

/// A rule plus how often it matched and fired, as listed by `GET /_sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmedFault {
    #[serde(flatten)]
    pub rule: FaultRule,
    pub matched: u32,
    pub fired: u32,
}

impl ArmedFault {
    pub(crate) fn new(rule: FaultRule) -> Self {
        Self { rule, matched: 0, fired: 0 }
    }

    fn is_due(&self) -> bool {
        self.matched > self.rule.skip && self.rule.count.is_none_or(|n| self.fired < n)
    }
}

/// The armed faults of one simulator: those of the scenario, then any added through `POST /_sim/faults`.
pub(crate) struct Faults(Mutex<Vec<ArmedFault>>);

impl Faults {
    pub(crate) fn new(rules: &[FaultRule]) -> Self {
        Self(Mutex::new(rules.iter().cloned().map(ArmedFault::new).collect()))
    }

    pub(crate) fn add(&self, rule: FaultRule) {
        lock(&self.0).push(ArmedFault::new(rule));
    }

    pub(crate) fn clear(&self) {
        lock(&self.0).clear();
    }

    /// The armed faults with how often each matched and fired.
    pub(crate) fn list(&self) -> Vec<ArmedFault> {
        lock(&self.0).clone()
    }

    /// Counts this request against every matching rule and returns the action of the first one due to fire.
    fn take(&self, method: &str, path: &str) -> Option<FaultAction> {
        select(&mut lock(&self.0), method, path)
    }
}

/// Counts a request against every matching rule and fires the first one that is due.
fn select(rules: &mut [ArmedFault], method: &str, path: &str) -> Option<FaultAction> {
    let mut chosen = None;
    for armed in rules.iter_mut().filter(|a| a.rule.matches(method, path)) {
        armed.matched = armed.matched.saturating_add(1);
        if chosen.is_none() && armed.is_due() {
            armed.fired += 1;
            chosen = Some(armed.rule.action.clone());
        }
    }
    chosen
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or("");
    // Greedy leftmost matching of the middle pieces is enough for `*`-only globs.
    for piece in pieces {
        match remaining.find(piece) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// Paths that must stay reachable whatever faults are armed.
pub(crate) fn is_control_path(path: &str) -> bool {
    ["/_sim/requests", "/_sim/faults", "/_sim/stats"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
}

/// Marks a response with the fault that shaped it, for the request log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppliedFault(pub(crate) &'static str);

/// The fault layer: answers, delays or reshapes a response according to the first due rule.
pub(crate) async fn middleware(State(faults): State<Arc<Faults>>, req: Request, next: Next) -> Response {
    if is_control_path(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(action) = faults.take(req.method().as_str(), req.uri().path()) else {
        return next.run(req).await;
    };
    let mut response = apply(action.clone(), req, next).await;
    response.extensions_mut().insert(AppliedFault(action.name()));
    response
}

async fn apply(action: FaultAction, mut req: Request, next: Next) -> Response {
    let body_fault = match action {
        FaultAction::IgnoreRange => {
            req.headers_mut().remove(header::RANGE);
            return next.run(req).await;
        }
        FaultAction::Status { code, retry_after, body } => return status_response(code, retry_after, body),
        FaultAction::Redirect { code, location } => return redirect_response(code, &location),
        FaultAction::Endless { extra_bytes } => {
            req.headers_mut().remove(header::RANGE);
            return endless(next.run(req).await, extra_bytes);
        }
        FaultAction::Echo { code } => return echo_response(code, req).await,
        FaultAction::ResetUploadAfterBytes { bytes } => return reset_upload(req, bytes).await,
        FaultAction::LoseAnswer => {
            drop(next.run(req).await);
            return aborted("injected lost answer");
        }
        FaultAction::Stall { after_bytes: None, ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return next.run(req).await;
        }
        FaultAction::Stall { after_bytes: Some(after), ms } => BodyFault::Stall { after, ms },
        FaultAction::ResetAfterBytes { bytes } => BodyFault::Reset { after: bytes },
        FaultAction::Truncate { bytes } => BodyFault::Truncate { after: bytes },
        FaultAction::RateLimit { bytes_per_sec } => BodyFault::Rate { bytes_per_sec },
    };
    shape_body(next.run(req).await, body_fault)
}

/// The response's own body without its length, then `extra` zero bytes in 64 KiB chunks, produced as the
/// client reads (a client that hangs up ends it).
fn endless(mut response: Response, extra: u64) -> Response {
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response.map(|body| {
        let chunk = axum::body::Bytes::from(vec![0u8; 64 << 10]);
        let filler = futures_util::stream::unfold(extra, move |left| {
            let chunk = chunk.clone();
            async move {
                (left > 0).then(|| {
                    let n = left.min(chunk.len() as u64);
                    (Ok::<_, std::io::Error>(chunk.slice(..n as usize)), left - n)
                })
            }
        });
        let own = futures_util::StreamExt::map(body.into_data_stream(), |c| c.map_err(std::io::Error::other));
        Body::from_stream(futures_util::StreamExt::chain(own, filler))
    })
}

fn redirect_response(code: u16, location: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
    let mut response = (status, Body::empty()).into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The request line, the body (up to 1 MiB), then every header, as a server's error page might show
/// them: the body and `Authorization` come first, so a client that shows only the start of an error
/// page still shows them.
async fn echo_response(code: u16, req: Request) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut text = format!("{} {}\n{}\n", parts.method, parts.uri, String::from_utf8_lossy(&body));
    let mut headers: Vec<_> = parts.headers.iter().collect();
    headers.sort_by_key(|(name, _)| *name != header::AUTHORIZATION && *name != header::PROXY_AUTHORIZATION);
    for (name, value) in headers {
        text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    (status, text).into_response()
}

/// Reads up to `after` bytes of the request body, then answers with a body that fails at once: hyper then drops
/// the unsent headers and closes the connection (see `shaping`), so the client sees it break mid-upload.
async fn reset_upload(req: Request, after: u64) -> Response {
    use futures_util::StreamExt;
    let mut upload = req.into_body().into_data_stream();
    let mut read = 0u64;
    while read < after {
        match upload.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
    drop(upload);
    aborted("injected upload reset")
}

/// A response whose body fails before its first byte: hyper aborts the connection before the status line
/// is written, so the client sees a reset and no answer at all.
fn aborted(why: &'static str) -> Response {
    let broken = futures_util::stream::once(async move {
        Err::<axum::body::Bytes, _>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, why))
    });
    (StatusCode::INTERNAL_SERVER_ERROR, Body::from_stream(broken)).into_response()
}

fn status_response(code: u16, retry_after: Option<u64>, body: Option<String>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Body::from(body.unwrap_or_default())).into_response();
    if let Some(secs) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_runs_of_characters() {
        assert!(glob_match("/api/v1/stemcells/*", "/api/v1/stemcells/bosh-aws"));
        assert!(glob_match("/api/v1/stemcells/*", "/api/v1/stemcells/"));
        assert!(glob_match("/a/*/c", "/a/b/x/c"));
        assert!(glob_match("*", "/anything"));
        assert!(glob_match("/exact", "/exact"));
        assert!(!glob_match("/exact", "/exact/more"));
        assert!(!glob_match("/a/*/c", "/a/b/d"));
        assert!(!glob_match("/a*a", "/a"));
    }

    #[test]
    fn skip_then_count_then_stop() {
        let action = FaultAction::Status { code: 503, retry_after: None, body: None };
        let mut rules = vec![ArmedFault::new(FaultRule::new("/x", action).skip(1).count(2))];
        let fired: Vec<bool> = (0..5).map(|_| select(&mut rules, "GET", "/x").is_some()).collect();
        assert_eq!(fired, [false, true, true, false, false]);
        assert_eq!((rules[0].matched, rules[0].fired), (5, 2));
    }

    #[test]
    fn method_filter_and_control_paths() {
        let rule = FaultRule::new("/x", FaultAction::Truncate { bytes: 1 }).method("head");
        assert!(rule.matches("HEAD", "/x") && !rule.matches("GET", "/x"));
        assert!(is_control_path("/_sim/faults") && !is_control_path("/_sim/blob/1/2"));
        assert!(!is_control_path("/_sim/requestsX"));
    }

    #[test]
    fn rule_yaml_shape() {
        let rule: FaultRule =
            serde_yaml_ng::from_str("path: /a/*\ncount: 2\naction: {status: {code: 503, retry_after: 1}}").unwrap();
        assert_eq!(rule.count, Some(2));
        assert_eq!(rule.action, FaultAction::Status { code: 503, retry_after: Some(1), body: None });
        let json = serde_json::to_string(&rule).unwrap();
        assert_eq!(json, r#"{"path":"/a/*","skip":0,"count":2,"action":{"status":{"code":503,"retry_after":1}}}"#);
        assert_eq!(serde_json::from_str::<FaultRule>(&json).unwrap(), rule);
    }
}
