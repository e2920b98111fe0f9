//! The followed tiles as Ops Manager has them: which GUID each product type has, and for the deployed ones their
//! `product_version` and deployed stemcells — the state `check` versions and `out` answers with.
//!
//! A product type Ops Manager does not have, or a tile that is staged but never deployed, is the user's to fix, so
//! the error names `source.products` (with the nearest type Ops Manager does have).

use crate::clients::opsman::{DiagnosticReport, Opsman, Product, ReportProduct};
use crate::protocol::Version;
use crate::suggest::suggestion;
use crate::versions::stemcell::{from_file_name, operating_system};
use anyhow::{Context, Result, anyhow, bail};

/// A deployed tile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Tile {
    pub kind: String,
    pub guid: String,
    pub product_version: String,
    /// `os/version` of each deployed stemcell (or a stemcell file name on Ops Manager before 2.6), sorted.
    pub stemcells: Vec<String>,
}

impl Tile {
    /// The version of the tile's Linux stemcell, else of its first: what a fleet's `target_stemcell_file`
    /// reads (TKGI clusters are Linux; a Windows line would be a second one).
    pub(super) fn stemcell_version(&self) -> Option<String> {
        let linux = self.stemcells.iter().find(|s| !s.starts_with("windows"));
        linux.or(self.stemcells.first()).map(|s| s.rsplit_once('/').map_or(s.as_str(), |(_, v)| v).to_string())
    }
}

/// The staged tiles of `kinds`, as `(type, GUID)` in that order; every type must be staged.
pub(super) async fn staged(opsman: &Opsman, kinds: &[String]) -> Result<Vec<(String, String)>> {
    let staged = opsman.staged_products().await.context("listing the staged products")?;
    kinds.iter().map(|kind| find(&staged, kind, "staged").map(|p| (kind.clone(), p.guid.clone()))).collect()
}

/// The deployed tiles of `kinds`, in that order; every type must be deployed.
pub(super) async fn deployed(opsman: &Opsman, kinds: &[String]) -> Result<Vec<Tile>> {
    let deployed = opsman.deployed_products().await.context("listing the deployed products")?;
    let mut missing = kinds.iter().filter(|k| !deployed.iter().any(|p| &p.kind == *k)).peekable();
    if let Some(kind) = missing.peek() {
        let staged = opsman.staged_products().await.context("listing the staged products")?;
        find(&staged, kind, "staged")?;
        bail!(
            "source.products: the {kind} tile is staged in Ops Manager {} but not deployed yet: it has no deployed state to report until its first Apply Changes",
            opsman.base_url()
        );
    }
    let report = opsman.diagnostic_report().await.context("reading the diagnostic report")?;
    kinds.iter().map(|kind| find(&deployed, kind, "deployed").map(|p| tile(p, &report))).collect()
}

fn find<'a>(products: &'a [Product], kind: &str, state: &str) -> Result<&'a Product> {
    products.iter().find(|p| p.kind == kind).ok_or_else(|| {
        let kinds: Vec<&str> = products.iter().map(|p| p.kind.as_str()).collect();
        let hint = suggestion(kind, kinds.iter().copied());
        anyhow!(
            "source.products: Ops Manager has no {state} tile of type `{kind}`{hint} ({state}: {})",
            kinds.join(", ")
        )
    })
}

fn tile(product: &Product, report: &DiagnosticReport) -> Tile {
    let entry = report.added_products.deployed.iter().find(|p| p.name == product.kind);
    Tile {
        kind: product.kind.clone(),
        guid: product.guid.clone(),
        product_version: product.product_version.clone(),
        stemcells: entry.map(stemcells_of).unwrap_or_default(),
    }
}

/// `os/version` of each stemcell; before Ops Manager 2.6 the report names one file, read the way bosh.io
/// names files (the file name itself when that fails).
fn stemcells_of(entry: &ReportProduct) -> Vec<String> {
    let mut stemcells: Vec<String> = entry.stemcells.iter().map(|s| format!("{}/{}", s.os, s.version)).collect();
    stemcells.extend(entry.stemcell.as_deref().map(|file| {
        let parsed =
            from_file_name(file).and_then(|(name, version)| Some(format!("{}/{version}", operating_system(&name)?)));
        parsed.unwrap_or_else(|| file.to_string())
    }));
    stemcells.sort();
    stemcells
}

/// One key per tile (`<type>` = its product version) and one for its stemcells (`<type>.stemcell`).
pub(super) fn version(tiles: &[Tile]) -> Version {
    tiles
        .iter()
        .flat_map(|t| {
            let stemcells = if t.stemcells.is_empty() { "none".to_string() } else { t.stemcells.join(",") };
            [(t.kind.clone(), t.product_version.clone()), (format!("{}.stemcell", t.kind), stemcells)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tkgi(stemcells: &[&str]) -> Tile {
        Tile {
            kind: "pivotal-container-service".into(),
            guid: "pivotal-container-service-0123".into(),
            product_version: "1.19.2-build.10".into(),
            stemcells: stemcells.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn versions_name_each_tile_and_its_stemcells() {
        let v = version(&[tkgi(&["ubuntu-jammy/1.506", "windows2019/2019.86"])]);
        assert_eq!(v["pivotal-container-service"], "1.19.2-build.10");
        assert_eq!(v["pivotal-container-service.stemcell"], "ubuntu-jammy/1.506,windows2019/2019.86");
        assert_eq!(version(&[tkgi(&[])])["pivotal-container-service.stemcell"], "none");
    }

    #[test]
    fn the_linux_stemcell_is_the_one_reported() {
        assert_eq!(tkgi(&["ubuntu-jammy/1.506", "windows2019/2019.86"]).stemcell_version().as_deref(), Some("1.506"));
        assert_eq!(tkgi(&["windows2019/2019.86"]).stemcell_version().as_deref(), Some("2019.86"));
        assert_eq!(tkgi(&[]).stemcell_version(), None);
    }
}
