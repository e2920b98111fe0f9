//! `source` and `params` for `kind: stemcell`.
//!
//! Field names stay compatible with `bosh-io-stemcell-resource` (`name`, `version_family`,
//! `force_regular`, params `tarball`, `preserve_filename`) so a pipeline switches type by changing one
//! line; everything else is additive.

use super::{Connection, DirectorSource, DurationStr, HasConnection, OpsmanSource, TKGI_PRODUCT};
use crate::versions::stemcell::{Constraint, Family};
use serde::Deserialize;

/// Which tarball variant of a stemcell version to track and fetch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Flavor {
    /// Light when the line publishes light stemcells (waiting for late ones), else regular.
    #[default]
    Auto,
    Light,
    Regular,
    LightChina,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Source {
    /// Read from the raw map by `Kind::from_source`; declared so serde accepts it.
    #[allow(dead_code)]
    pub kind: String,
    /// The stemcell name, e.g. `bosh-vsphere-esxi-ubuntu-jammy-go_agent`.
    pub name: String,
    /// `latest` (default), `621.latest`, `621.125.latest`, or `621` (that major line).
    #[serde(default)]
    pub version_family: Family,
    /// Track regular stemcells even when light ones exist (same as `flavor: regular`).
    #[serde(default)]
    pub force_regular: bool,
    /// A version range such as `>=1.500, <2` or `~621.120`.
    #[serde(default)]
    pub constraint: Option<Constraint>,
    #[serde(default)]
    pub flavor: Flavor,
    /// bosh.io or a mirror serving the same API.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// HMAC keys for tarballs in a private S3-compatible bucket (the peer's `auth`).
    #[serde(default)]
    pub auth: Option<S3Auth>,
    /// A BOSH director `out` uploads the stemcell to.
    #[serde(default)]
    pub director: Option<DirectorSource>,
    /// An Ops Manager `out` imports the stemcell into and assigns to tiles (instead of, or as well as, the
    /// director): the path a TKGI foundation's clusters take their stemcell from.
    #[serde(default)]
    pub opsman: Option<OpsmanSource>,
    /// `ca_cert`, `insecure_skip_tls_verify`, `http`: parsed beside these fields by `parse_source`.
    #[serde(skip)]
    pub connection: Connection,
}

impl HasConnection for Source {
    fn connection_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }
}

/// `source.auth`: the peer's `access_key`/`secret_key`, plus the region the keys sign for.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct S3Auth {
    pub access_key: String,
    pub secret_key: String,
    /// ASSUMPTION: `us-east-1` by default. The peer (minio-go) asks the bucket for its region first;
    /// repave signs for this one instead, so a bucket elsewhere needs it set (GCS: `auto`).
    #[serde(default = "default_region")]
    pub region: String,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

impl S3Auth {
    /// The keys [`crate::sigv4`] signs with.
    pub(crate) fn keys(&self) -> crate::sigv4::Keys {
        crate::sigv4::Keys {
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            region: self.region.clone(),
        }
    }
}

pub(crate) fn default_api_url() -> String {
    "https://bosh.io".to_string()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetParams {
    /// Download the tarball (default); `false` writes only the metadata files.
    #[serde(default = "yes")]
    pub tarball: bool,
    /// Name the tarball after the URL's file name instead of `stemcell.tgz`.
    #[serde(default)]
    pub preserve_filename: bool,
    /// Parallel range requests for the download.
    #[serde(default = "default_parallel")]
    pub parallel: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutParams {
    /// Directory of a previous `get` of this resource (holds `version`, `url`, `sha1`, …).
    pub from: String,
    /// Send the local tarball instead of letting the director fetch it from its URL.
    #[serde(default)]
    pub upload_tarball: bool,
    /// How long to wait for the director's upload task.
    #[serde(default)]
    pub task_timeout: Option<DurationStr>,
    /// Ops Manager: the product types of the tiles to assign the stemcell to (default: the TKGI tile).
    #[serde(default)]
    pub products: Option<Vec<String>>,
    /// Ops Manager: import it as a floating stemcell, which Ops Manager itself assigns to every tile that can
    /// use it (default `false`: only the tiles in `products` get it).
    #[serde(default)]
    pub floating: Option<bool>,
}

impl PutParams {
    /// The tiles to assign the stemcell to in Ops Manager.
    pub(crate) fn products(&self) -> Vec<String> {
        self.products.clone().unwrap_or_else(|| vec![TKGI_PRODUCT.to_string()])
    }
}

fn yes() -> bool {
    true
}

fn default_parallel() -> u32 {
    8
}
