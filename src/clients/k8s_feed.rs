//! The Kubernetes release feeds: `{feed_url}/stable.txt`, `stable-1.N.txt`, `latest-1.N.txt`, each a
//! one-line text file such as `v1.30.14` (docs/facts/kubernetes.md).
//!
//! Knows the route and the answer's shape only. A 404 is an answer ("this file does not exist",
//! e.g. a minor that was never released), not an error; what to make of it is the caller's policy.

use crate::http::{Failure, HttpClient, Retry, classify, is_retryable_status, parse_retry_after, read_capped};
use anyhow::{Result, anyhow};
use reqwest::StatusCode;

/// A version file is a dozen bytes; anything much larger is not a version file.
const MAX_FEED_BYTES: usize = 4096;

/// Reads release files from one feed.
pub(crate) struct FeedClient {
    http: HttpClient,
    base: String,
}

/// One file's content: the URL it came from and its single trimmed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FeedLine {
    pub url: String,
    pub line: String,
}

impl FeedClient {
    /// `base` is the feed URL, e.g. `https://dl.k8s.io/release`.
    pub(crate) fn new(http: HttpClient, base: &str) -> Self {
        FeedClient { http, base: base.trim_end_matches('/').to_string() }
    }

    /// GETs `{base}/{file}` (following redirects) and returns its one line; `None` on 404. Transient
    /// failures are retried; a body that is not one short line of text is an error quoting its
    /// first 100 bytes.
    pub(crate) async fn read(&self, file: &str) -> Result<Option<FeedLine>> {
        let url = format!("{}/{file}", self.base);
        let what = format!("reading the release feed {url}");
        let body = self
            .http
            .retry(&what, || async {
                let request = self.http.client().get(&url).timeout(self.http.config().request_timeout);
                let response = request.send().await.map_err(|e| classify(e, Retry::Idempotent))?;
                let status = response.status();
                if status == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if !status.is_success() {
                    let retry_after = parse_retry_after(response.headers());
                    let error = crate::http::status_error(response, 512).await;
                    return Err(Failure { error, retryable: is_retryable_status(status), retry_after });
                }
                read_capped(response, MAX_FEED_BYTES).await.map(Some)
            })
            .await?;
        body.map(|bytes| one_line(&bytes).map(|line| FeedLine { url: url.clone(), line })).transpose()
    }
}

/// The single non-empty line of a feed file, surrounding whitespace trimmed.
fn one_line(bytes: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.lines().count() != 1 {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(100)]).into_owned();
        let what = if trimmed.is_empty() { "is empty" } else { "has more than one line" };
        return Err(anyhow!("the feed file {what}: expected one line such as `v1.30.14`, got {shown:?}"));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_tolerant_of_whitespace_and_strict_about_lines() {
        assert_eq!(one_line(b"v1.30.14\n").unwrap(), "v1.30.14");
        assert_eq!(one_line(b"  v1.30.14 \r\n\n").unwrap(), "v1.30.14");
        let err = one_line(b"").unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let err = one_line(b"<html>\n<body>oops</body>\n</html>").unwrap_err().to_string();
        assert!(err.contains("more than one line") && err.contains("<html>"), "{err}");
        let long = format!("{}\nx", "y".repeat(500));
        let err = one_line(long.as_bytes()).unwrap_err().to_string();
        assert!(err.len() < 300, "quotes at most 100 bytes: {err}");
    }
}
