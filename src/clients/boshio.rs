//! bosh.io stemcell API client: `GET {api_url}/api/v1/stemcells/{name}?all=1` and its record shape
//! (docs/facts/bosh-io.md). No policy: filtering and ordering live in `stemcell`.

use crate::http::HttpClient;
use anyhow::{Context, Result};
use reqwest::Url;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde::Deserialize;

/// One published stemcell version; each variant is optional (`omitempty` on bosh.io).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Stemcell {
    #[serde(default)]
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub regular: Option<Variant>,
    #[serde(default)]
    pub light: Option<Variant>,
    #[serde(default)]
    pub light_china: Option<Variant>,
}

/// One tarball of a version. bosh.io always sends `md5`; `sha1` and `sha256` are optional.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Variant {
    pub url: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub md5: Option<String>,
    #[serde(default)]
    pub sha1: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// A bosh.io (or mirror) API endpoint.
pub(crate) struct BoshIo {
    http: HttpClient,
    api_url: String,
}

impl BoshIo {
    pub(crate) fn new(http: HttpClient, api_url: &str) -> Self {
        BoshIo { http, api_url: api_url.trim_end_matches('/').to_string() }
    }

    /// The list URL for `name`, with the name encoded as one path segment (the peer pasted it raw).
    pub(crate) fn list_url(&self, name: &str) -> Result<Url> {
        let mut url =
            Url::parse(&self.api_url).with_context(|| format!("source.api_url `{}` is not a URL", self.api_url))?;
        url.path_segments_mut()
            .map_err(|_| anyhow::anyhow!("source.api_url `{}` cannot have a path", self.api_url))?
            .pop_if_empty()
            .extend(["api", "v1", "stemcells", name]);
        // Without `all`, bosh.io returns only the 40 newest versions.
        url.query_pairs_mut().append_pair("all", "1");
        Ok(url)
    }

    /// Every published version of `name`, in the server's order (newest first on bosh.io).
    pub(crate) async fn stemcells(&self, name: &str) -> Result<Vec<Stemcell>> {
        let url = self.list_url(name)?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        self.http
            .get_json(url.as_str(), headers)
            .await
            .with_context(|| format!("fetching the stemcell list from {url}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpConfig;
    use crate::redact::Log;

    #[test]
    fn name_is_one_encoded_segment() {
        let http = HttpClient::new(HttpConfig::default(), &crate::env::Env::new(), &Log::sink()).unwrap();
        let api = BoshIo::new(http, "https://mirror.example/bosh/");
        let url = api.list_url("bosh-aws/../x y?z").unwrap();
        assert_eq!(url.as_str(), "https://mirror.example/bosh/api/v1/stemcells/bosh-aws%2F..%2Fx%20y%3Fz?all=1");
    }

    #[test]
    fn decodes_the_real_shape_with_missing_variants_and_digests() {
        let json = r#"[{"name":"n","version":"1.951","regular":{"url":"https://x/a.tgz","size":3,"md5":"m"}},
            {"name":"n","version":"1.947","light":{"url":"https://x/l.tgz","size":1,"md5":"m","sha1":"s","sha256":"t"}}]"#;
        let list: Vec<Stemcell> = serde_json::from_str(json).unwrap();
        assert!(list[0].light.is_none() && list[0].regular.as_ref().unwrap().sha256.is_none());
        assert_eq!(list[1].light.as_ref().unwrap().sha256.as_deref(), Some("t"));
    }
}
