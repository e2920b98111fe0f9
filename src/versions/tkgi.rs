//! The TKGI version as Ops Manager and as the clusters state it: the TKGI tile's `product_version` (e.g.
//! `1.19.2-build.10`) turned into the form the TKGI API reports in each cluster's `pks_version`, so a target read
//! from Ops Manager compares with the clusters' versions.
//!
//! ASSUMPTION (docs/facts/opsman.md): both use the same `X.Y.Z-build.N` text; the sources show that form on both
//! sides but never the same foundation's two values side by side. `cluster_version_format: release` is the way
//! out for a platform whose clusters report `X.Y.Z` alone.

use serde::Deserialize;

/// How the clusters of a platform write their TKGI version (`pks_version`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterVersionFormat {
    /// As the tile's `product_version`, build suffix included: `1.19.2-build.10` (the default, assumed).
    #[default]
    Build,
    /// The release alone: `1.19.2`.
    Release,
}

/// The tile's `product_version` in the clusters' format.
pub(crate) fn cluster_version(product_version: &str, format: ClusterVersionFormat) -> String {
    let version = product_version.trim();
    match format {
        ClusterVersionFormat::Build => version.to_string(),
        ClusterVersionFormat::Release => version.split_once('-').map_or(version, |(release, _)| release).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(cluster_version(" 1.19.2-build.10\n", ClusterVersionFormat::Build), "1.19.2-build.10");
        assert_eq!(cluster_version("1.19.2-build.10", ClusterVersionFormat::Release), "1.19.2");
        assert_eq!(cluster_version("1.19.2", ClusterVersionFormat::Release), "1.19.2");
    }
}
