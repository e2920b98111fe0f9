//! bosh.io: the stemcell list API (`/api/v1/stemcells/{name}`, `?all=1`) and the stemcell tarballs (HEAD,
//! `Range` → 206), built on [`crate::shared::blob`] so a tarball of any size costs no disk.
//!
//! Shapes follow docs/facts/bosh-io.md. Tarball URLs point back at the simulator
//! (`https://<host>/stemcells/{name}/{version}/{flavor}/{file}`), using the request's `Host`, so they work on
//! whatever port the simulator got.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::s3auth::{self, S3AuthConfig};
use crate::shared::base_url;
use crate::shared::blob::{self, BlobDigests, DigestCache};

/// The `boshio` section of a scenario file. Unknown keys are rejected so a typo in a scenario fails loudly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Stemcell lines, each with its versions in the order the API lists them (bosh.io: newest first).
    #[serde(default)]
    pub stemcells: Vec<Line>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub name: String,
    #[serde(default)]
    pub versions: Vec<VersionConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionConfig {
    pub version: String,
    #[serde(default)]
    pub regular: Option<VariantConfig>,
    #[serde(default)]
    pub light: Option<VariantConfig>,
    #[serde(default)]
    pub light_china: Option<VariantConfig>,
}

/// One tarball of a version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VariantConfig {
    pub size: u64,
    /// Which digests the API publishes (`md5`, `sha1`, `sha256`).
    pub checksums: Vec<String>,
    /// Publish wrong values for every listed digest (the tarball itself stays the same).
    pub wrong_checksum: bool,
    /// `false`: the tarball host ignores `Range` and sends no `Accept-Ranges` (a plain stream).
    pub ranges: bool,
    /// The URL's last segment, as written (may hold `%2F` to test name validation).
    pub filename: Option<String>,
    /// Publish this tarball URL instead of the simulator's own (e.g. a file a real web server serves, for
    /// benchmarks). Only the list API changes: the simulator's tarball route and director keep using its blob.
    pub url: Option<String>,
    /// Publish these digests instead of the blob's (they are published even when not in `checksums`).
    pub sha256: Option<String>,
    pub sha1: Option<String>,
    pub md5: Option<String>,
    /// The tarball sits in a private S3-compatible bucket: requests must be signed with these keys.
    pub s3_auth: Option<S3AuthConfig>,
    /// Publish this size instead of the tarball's real one (a list that disagrees with its mirror).
    pub published_size: Option<u64>,
}

impl Default for VariantConfig {
    fn default() -> Self {
        Self {
            size: 1 << 20,
            checksums: vec!["md5".into(), "sha1".into(), "sha256".into()],
            wrong_checksum: false,
            ranges: true,
            filename: None,
            url: None,
            sha256: None,
            sha1: None,
            md5: None,
            s3_auth: None,
            published_size: None,
        }
    }
}

const FLAVORS: [&str; 3] = ["regular", "light", "light_china"];

impl VersionConfig {
    pub(crate) fn variant(&self, flavor: &str) -> Option<&VariantConfig> {
        match flavor {
            "regular" => self.regular.as_ref(),
            "light" => self.light.as_ref(),
            "light_china" => self.light_china.as_ref(),
            _ => None,
        }
    }
}

/// The simulated bosh.io: the stemcell lines of the scenario, each tarball a deterministic blob. The director
/// holds it too, to resolve the locations it is asked to fetch and to recognise uploaded tarballs.
pub(crate) struct BoshIo {
    config: Config,
    digests: Arc<DigestCache>,
}

/// One tarball: a variant of a version of a line.
pub(crate) struct Found<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: &'a str,
    pub(crate) variant: &'a VariantConfig,
    pub(crate) seed: u64,
}

impl BoshIo {
    pub(crate) fn new(config: Config, digests: Arc<DigestCache>) -> Self {
        Self { config, digests }
    }

    /// Finds the variant a simulator tarball path (`/stemcells/{name}/{version}/{flavor}/{file}`) names.
    pub(crate) fn find(&self, name: &str, version: &str, flavor: &str) -> Option<Found<'_>> {
        let line = self.config.stemcells.iter().find(|l| l.name == name)?;
        let v = line.versions.iter().find(|v| v.version == version)?;
        let variant = v.variant(flavor)?;
        Some(Found { name: &line.name, version: &v.version, variant, seed: seed(name, version, flavor) })
    }

    /// Every tarball, in list order: line by line, versions as listed, flavors regular, light, light_china.
    pub(crate) fn tarballs(&self) -> impl Iterator<Item = Found<'_>> {
        self.config.stemcells.iter().flat_map(|line| {
            line.versions.iter().flat_map(move |v| {
                FLAVORS.into_iter().filter_map(move |flavor| {
                    let variant = v.variant(flavor)?;
                    let seed = seed(&line.name, &v.version, flavor);
                    Some(Found { name: &line.name, version: &v.version, variant, seed })
                })
            })
        })
    }

    /// The digests of a tarball's blob. CPU-bound (seconds per GiB): computed once, off the async workers.
    pub(crate) async fn digests(&self, seed: u64, size: u64) -> BlobDigests {
        self.digests.off_thread(seed, size).await.expect("digest task")
    }
}

/// The blob seed of a tarball: a stable hash (FNV-1a) of what identifies it.
pub(crate) fn seed(name: &str, version: &str, flavor: &str) -> u64 {
    format!("{name}/{version}/{flavor}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The tarball path for a variant (without scheme and host).
fn tarball_path(name: &str, version: &str, flavor: &str, variant: &VariantConfig) -> String {
    let prefix = if flavor == "regular" { "" } else { "light-" };
    let file = variant.filename.clone().unwrap_or_else(|| format!("{prefix}bosh-stemcell-{version}-{name}.tgz"));
    format!("/stemcells/{name}/{version}/{flavor}/{file}")
}

pub(crate) fn routes(boshio: Arc<BoshIo>) -> Router {
    Router::new()
        .route("/api/v1/stemcells/{name}", get(list))
        .route("/stemcells/{name}/{version}/{flavor}/{file}", get(tarball))
        .with_state(boshio)
}

async fn list(
    State(boshio): State<Arc<BoshIo>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let base = base_url(&headers);
    let Some(line) = boshio.config.stemcells.iter().find(|l| l.name == name) else {
        return Json(json!([])).into_response();
    };
    let all = query.get("all").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "t"));
    let limit = if all { usize::MAX } else { 40 };
    // Every blob the answer needs hashed is hashed at once, on the blocking pool: a list of N new 1 GiB
    // tarballs then costs what the cores can do together, not N hashes one after the other.
    let hasher = &*boshio;
    let unhashed = line.versions.iter().take(limit).flat_map(|v| {
        FLAVORS.into_iter().filter_map(move |flavor| {
            let variant = v.variant(flavor).filter(|variant| needs_hashing(variant))?;
            Some(hasher.digests(seed(&line.name, &v.version, flavor), variant.size))
        })
    });
    futures_util::future::join_all(unhashed).await;
    let mut records = Vec::new();
    for v in line.versions.iter().take(limit) {
        let mut record = json!({"name": line.name, "version": v.version});
        for flavor in FLAVORS {
            if let Some(variant) = v.variant(flavor) {
                record[flavor] = variant_json(&boshio, &base, &line.name, &v.version, flavor, variant).await;
            }
        }
        records.push(record);
    }
    Json(Value::Array(records)).into_response()
}

async fn variant_json(
    boshio: &BoshIo,
    base: &str,
    name: &str,
    version: &str,
    flavor: &str,
    variant: &VariantConfig,
) -> Value {
    let url = variant.url.clone().unwrap_or_else(|| format!("{base}{}", tarball_path(name, version, flavor, variant)));
    let mut out = json!({"url": url, "size": variant.published_size.unwrap_or(variant.size)});
    let computed = if needs_hashing(variant) {
        Some(boshio.digests(seed(name, version, flavor), variant.size).await)
    } else {
        None
    };
    for (algo, given) in published_digests(variant) {
        let value = match (given, &computed) {
            (Some(given), _) => given.to_string(),
            (None, Some(d)) => match algo {
                "md5" => d.md5.clone(),
                "sha1" => d.sha1.clone(),
                _ => d.sha256.clone(),
            },
            (None, None) => continue,
        };
        // Flipping the first hex digit keeps the shape of a real digest.
        let value = if variant.wrong_checksum { flip(&value) } else { value };
        out[algo] = value.into();
    }
    out
}

/// Hashing a blob costs seconds per GiB: it is skipped when every published digest is given.
fn needs_hashing(variant: &VariantConfig) -> bool {
    published_digests(variant).iter().any(|(_, given)| given.is_none())
}

/// The digests a variant publishes, in `md5`, `sha1`, `sha256` order: those listed in `checksums` plus
/// every override, each with its override if one is given.
fn published_digests(variant: &VariantConfig) -> Vec<(&'static str, Option<&str>)> {
    [("md5", &variant.md5), ("sha1", &variant.sha1), ("sha256", &variant.sha256)]
        .into_iter()
        .filter(|(algo, given)| given.is_some() || variant.checksums.iter().any(|c| c == algo))
        .map(|(algo, given)| (algo, given.as_deref()))
        .collect()
}

fn flip(hex: &str) -> String {
    let first = if hex.starts_with('0') { '1' } else { '0' };
    format!("{first}{}", &hex[1..])
}

async fn tarball(
    State(boshio): State<Arc<BoshIo>>,
    Path((name, version, flavor, _file)): Path<(String, String, String, String)>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
) -> Response {
    let Some(found) = boshio.find(&name, &version, &flavor) else {
        return (StatusCode::NOT_FOUND, "no such stemcell tarball").into_response();
    };
    if let Some(auth) = &found.variant.s3_auth
        && let Err(refused) = s3auth::verify(auth, &method, &uri, &headers)
    {
        return refused.into_response();
    }
    if !found.variant.ranges {
        headers.remove(header::RANGE);
    }
    let mut response = blob::blob_response(found.seed, found.variant.size, &headers, &method);
    if !found.variant.ranges {
        response.headers_mut().remove(header::ACCEPT_RANGES);
    }
    response
}
