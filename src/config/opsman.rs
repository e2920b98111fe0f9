//! `source` and `params` for `kind: opsman`: which Ops Manager (its login sits at the top level of `source`,
//! beside the shared connection fields), which tiles the resource follows, and how `out` runs Apply Changes
//! (errand choices, the pre-deploy check, how long to follow the installation).
//!
//! Rules serde cannot express (a non-empty, duplicate-free product list, errand choices only for the followed
//! tiles, a valid `expires_within`) live in the `validate` functions, so pipeline checks catch them too.

use super::{Connection, DurationStr, HasConnection, OpsmanSource, TKGI_PRODUCT};
use crate::suggest::suggestion;
use crate::versions::tkgi::ClusterVersionFormat;
use anyhow::{Result, bail};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Source {
    /// Read from the raw map by `Kind::from_source`; declared so serde accepts it.
    #[allow(dead_code)]
    pub kind: String,
    /// Product types of the tiles this resource follows; the first is the one `in` writes `version`,
    /// `stemcell` and `guid` for. Default: the TKGI tile.
    #[serde(default = "default_products")]
    pub products: Vec<String>,
    /// How the clusters write their TKGI version; `in` writes `version` in that form.
    #[serde(default)]
    pub cluster_version_format: ClusterVersionFormat,
    /// `url`, `uaa_url`, `client_id`, `client_secret`, `username`, `password`: parsed beside these fields.
    #[serde(skip)]
    pub opsman: OpsmanSource,
    /// `ca_cert`, `insecure_skip_tls_verify`, `http`: parsed beside these fields by `parse_source`.
    #[serde(skip)]
    pub connection: Connection,
}

impl HasConnection for Source {
    fn connection_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }
}

fn default_products() -> Vec<String> {
    vec![TKGI_PRODUCT.to_string()]
}

impl Source {
    pub(crate) fn validate(&self) -> Result<()> {
        self.opsman.login("source")?;
        if self.products.is_empty() {
            bail!("source.products is empty: list the product types of the tiles to follow, e.g. [{TKGI_PRODUCT}]");
        }
        for (i, product) in self.products.iter().enumerate() {
            if product.trim().is_empty() {
                bail!("source.products[{i}] is empty: expected a product type such as `{TKGI_PRODUCT}`");
            }
            if self.products[..i].contains(product) {
                bail!("source.products lists `{product}` twice");
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetParams {
    /// Report certificates that expire within this time: a count and `d`, `w`, `m` or `y` (default `3m`).
    #[serde(default = "default_expires_within", deserialize_with = "expires_within")]
    pub expires_within: String,
}

impl Default for GetParams {
    fn default() -> Self {
        GetParams { expires_within: default_expires_within() }
    }
}

fn default_expires_within() -> String {
    "3m".to_string()
}

/// A positive count followed by one of `d`, `w`, `m`, `y`, as Ops Manager's `expires_within` takes it.
fn expires_within<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let text = String::deserialize(d)?;
    let (count, unit) = text.split_at(text.len().saturating_sub(1));
    let count_ok = !count.is_empty() && !count.starts_with('0') && count.bytes().all(|b| b.is_ascii_digit());
    if count_ok && ["d", "w", "m", "y"].contains(&unit) {
        return Ok(text);
    }
    Err(serde::de::Error::custom(format!(
        "`{text}` is not a time span Ops Manager understands: expected a count and d, w, m or y, such as `3m` or `90d`"
    )))
}

/// One errand's choice for one Apply Changes: run it, skip it, or leave it to the tile's own setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrandChoice {
    On,
    Off,
    /// `"default"`: whatever the tile's errand configuration says.
    TileDefault,
}

impl<'de> Deserialize<'de> for ErrandChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(true) => Ok(ErrandChoice::On),
            Value::Bool(false) => Ok(ErrandChoice::Off),
            Value::String(s) if s == "default" => Ok(ErrandChoice::TileDefault),
            other => Err(serde::de::Error::custom(format!(
                "{other} is not an errand choice: expected true, false or \"default\""
            ))),
        }
    }
}

impl ErrandChoice {
    /// The value Ops Manager's `run_post_deploy` takes.
    pub(crate) fn as_json(self) -> Value {
        match self {
            ErrandChoice::On => Value::Bool(true),
            ErrandChoice::Off => Value::Bool(false),
            ErrandChoice::TileDefault => Value::String("default".into()),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutParams {
    /// Post-deploy errand choices per product type: `{pivotal-container-service: {upgrade-all-service-instances:
    /// true}}`. Without a choice for it, the TKGI tile's `upgrade-all-service-instances` is turned off.
    #[serde(default)]
    pub errands: BTreeMap<String, BTreeMap<String, ErrandChoice>>,
    /// Let Apply Changes go ahead despite warnings from ignorable verifiers.
    #[serde(default)]
    pub ignore_warnings: bool,
    /// Run Ops Manager's pre-deploy check first and stop on any problem it reports.
    #[serde(default)]
    pub pre_deploy_check: bool,
    /// How long to follow the installation (default 6h); it goes on in Ops Manager after that.
    #[serde(default)]
    pub timeout: Option<DurationStr>,
    /// How often to read the installation's status and log (default 10s).
    #[serde(default)]
    pub poll_interval: Option<DurationStr>,
}

impl PutParams {
    /// Errand choices only for tiles the resource follows (Apply Changes deploys only those).
    pub(crate) fn validate(&self, source: &Source) -> Result<()> {
        for product in self.errands.keys() {
            if !source.products.contains(product) {
                let hint = suggestion(product, source.products.iter().map(String::as_str));
                bail!(
                    "params.errands.{product}: `{product}` is not one of source.products{hint} ({}); Apply Changes deploys only those",
                    source.products.join(", ")
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OpsmanSource, parse, parse_source_beside};
    use serde_json::json;

    fn source(extra: Value) -> Result<Source> {
        let mut map =
            json!({"kind": "opsman", "url": "https://om.example.com", "client_id": "c", "client_secret": "s"});
        map.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let map = map.as_object().unwrap();
        let mut source: Source = parse_source_beside(map, OpsmanSource::LOGIN_FIELDS)?;
        source.opsman = parse(&crate::config::only(map, OpsmanSource::LOGIN_FIELDS), "source")?;
        source.validate()?;
        Ok(source)
    }

    #[test]
    fn sources() {
        let s = source(json!({})).unwrap();
        assert_eq!(
            (s.products.as_slice(), s.cluster_version_format),
            ([TKGI_PRODUCT.to_string()].as_slice(), ClusterVersionFormat::Build)
        );
        let err = source(json!({"prodcts": []})).unwrap_err().to_string();
        assert!(err.contains("did you mean `products`") && err.contains("client_secret"), "{err}");
        assert!(source(json!({"products": []})).unwrap_err().to_string().contains("source.products is empty"));
        assert!(source(json!({"products": ["a", "a"]})).unwrap_err().to_string().contains("twice"));
        let err = source(json!({"cluster_version_format": "short"})).unwrap_err().to_string();
        assert!(err.contains("source.cluster_version_format") && err.contains("release"), "{err}");
        let err = source(json!({"username": "u"})).unwrap_err().to_string();
        assert!(err.contains("source: set either"), "{err}");
    }

    #[test]
    fn params() {
        let s = source(json!({})).unwrap();
        let put = |v: Value| -> Result<PutParams> {
            let p: PutParams = parse(v.as_object().unwrap(), "params")?;
            p.validate(&s)?;
            Ok(p)
        };
        let p = put(json!({"errands": {TKGI_PRODUCT: {"upgrade-all-service-instances": true, "pks-nsx-t-precheck": "default"}}})).unwrap();
        assert_eq!(p.errands[TKGI_PRODUCT]["upgrade-all-service-instances"], ErrandChoice::On);
        assert_eq!(p.errands[TKGI_PRODUCT]["pks-nsx-t-precheck"].as_json(), json!("default"));
        let err = put(json!({"errands": {TKGI_PRODUCT: {"x": "yes"}}})).unwrap_err().to_string();
        assert!(err.contains("params.errands") && err.contains("true, false or \"default\""), "{err}");
        let err = put(json!({"errands": {"pivotal-container-servce": {"x": true}}})).unwrap_err().to_string();
        assert!(err.contains("did you mean `pivotal-container-service`"), "{err}");
        let get = |v: Value| -> Result<GetParams> { parse(v.as_object().unwrap(), "params") };
        assert_eq!(get(json!({})).unwrap().expires_within, "3m");
        assert_eq!(get(json!({"expires_within": "90d"})).unwrap().expires_within, "90d");
        for bad in ["3", "0d", "3months", "", "-1y"] {
            let err = get(json!({"expires_within": bad})).unwrap_err().to_string();
            assert!(err.contains("params.expires_within"), "{bad}: {err}");
        }
    }
}
