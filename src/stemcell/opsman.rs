//! `out` into Ops Manager: import the fetched stemcell into its library, unless it is there already, and assign
//! it to the tiles `params.products` names (default: the TKGI tile), which stages it for the next Apply Changes.
//! That, not an upload to the director, is how a TKGI foundation's clusters get a new stemcell: the TKGI broker
//! builds every cluster from the stemcell assigned to its tile (docs/facts/tkgi-stemcell-path.md).
//!
//! The tarball is streamed from disk as `multipart/form-data` and never read whole into memory. Ops Manager
//! 2.6 and later take the assignment through `stemcell_associations`, older ones through
//! `stemcell_assignments`; `GET /api/v0/info` tells them apart (docs/facts/opsman.md).
//!
//! Why a re-run never imports twice: before sending anything repave reads the library (the diagnostic report)
//! and skips a stemcell that is there — after a killed build too — and assigning a stemcell that is already
//! staged changes nothing. A broken upload is retried only when that is safe: a 4xx is final; after a 5xx or a
//! connection that broke mid-upload (its effect unknown), the library is read again, and only when the stemcell
//! is still not there is the file sent again, as a fresh stream from its first byte (Ops Manager answers a
//! re-import of a stemcell it has with `existing: true`, so even a race costs no second copy). At most
//! `http.attempts` sends, with the HTTP client's backoff between them.

use super::fetched::{Fetched, find_tarball};
use crate::clients::opsman::{Info, LibraryStemcell, Opsman, OsVersion, Written};
use crate::config::stemcell::{PutParams, Source};
use crate::http::Failure;
use crate::protocol::MetadataField;
use crate::redact::Log;
use crate::suggest::suggestion;
use crate::versions::stemcell::{from_file_name, operating_system};
use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;

/// The stemcell this put is about, as Ops Manager may list it.
struct Wanted {
    /// The file name it is uploaded under: bosh.io's, which Ops Manager lists in its library.
    file_name: String,
    version: String,
    /// From the stemcell's name; `None` when the name has no known OS (then the version alone matches).
    os: Option<String>,
}

impl Wanted {
    fn matches(&self, listed: &LibraryStemcell) -> bool {
        listed.filename == self.file_name || self.is(&listed.os, &listed.version)
    }

    /// Before Ops Manager 2.6 the library lists file names: this one, or one bosh.io would give it.
    fn matches_file(&self, file: &str) -> bool {
        let parsed = from_file_name(file).map(|(name, version)| (operating_system(&name).unwrap_or_default(), version));
        file == self.file_name || parsed.is_some_and(|(os, version)| self.is(&os, &version))
    }

    fn is(&self, os: &str, version: &str) -> bool {
        version == self.version && self.os.as_deref().is_none_or(|wanted| wanted == os)
    }
}

/// Imports (if needed) and assigns; the metadata of what it did.
pub(super) async fn put(
    source: &Source,
    params: &PutParams,
    fetched: &Fetched,
    opsman: &Opsman,
    log: &Log,
) -> Result<Vec<MetadataField>> {
    let tarball = find_tarball(&fetched.dir)?;
    let wanted = Wanted {
        file_name: upload_name(&fetched.url, &tarball),
        version: fetched.version.clone(),
        os: operating_system(&source.name),
    };
    let info = opsman.info().await.context("reading Ops Manager's version")?;
    let products = params.products();
    check_tiles(opsman, &products).await?;
    let stemcell = match in_library(opsman, &info, &wanted).await? {
        Some(found) => {
            log.line(format!(
                "{} {} is already in the stemcell library of Ops Manager {}: not uploaded again",
                found.os,
                found.version,
                opsman.base_url()
            ));
            found
        }
        None => import(opsman, &info, &tarball, &wanted, params.floating.unwrap_or(false), log).await?,
    };
    assign(opsman, &info, &stemcell, &products, log).await?;
    Ok(vec![MetadataField::new("opsman", opsman.base_url()), MetadataField::new("assigned_to", products.join(", "))])
}

/// Every tile to assign to must be staged, checked before anything is uploaded.
async fn check_tiles(opsman: &Opsman, products: &[String]) -> Result<()> {
    let staged = opsman.staged_products().await.context("listing the staged products")?;
    let kinds = staged.iter().map(|p| p.kind.as_str());
    match products.iter().find(|kind| !staged.iter().any(|p| &p.kind == *kind)) {
        Some(missing) => Err(no_tile(missing, kinds)),
        None => Ok(()),
    }
}

/// bosh.io's file name (the last part of the fetched URL), else the tarball's own.
fn upload_name(url: &str, tarball: &Path) -> String {
    let from_url =
        url.rsplit('/').next().and_then(|last| last.split(['?', '#']).next()).filter(|n| n.ends_with(".tgz"));
    let own = tarball.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    from_url.map_or(own, str::to_string)
}

/// The stemcell as Ops Manager's library lists it, if it is there (before 2.6 the library lists file names).
async fn in_library(opsman: &Opsman, info: &Info, wanted: &Wanted) -> Result<Option<OsVersion>> {
    let report =
        opsman.diagnostic_report().await.context("reading Ops Manager's stemcell library (diagnostic report)")?;
    if !info.at_least(2, 6) {
        let present = report.stemcells.iter().any(|file| wanted.matches_file(file));
        return Ok(
            present.then(|| OsVersion { os: wanted.os.clone().unwrap_or_default(), version: wanted.version.clone() })
        );
    }
    let found = report.available_stemcells.iter().find(|s| wanted.matches(s));
    Ok(found.map(|s| OsVersion { os: s.os.clone(), version: s.version.clone() }))
}

/// Sends the tarball, at most `http.attempts` times; see the module's comment for when a send is repeated.
async fn import(
    opsman: &Opsman,
    info: &Info,
    tarball: &Path,
    wanted: &Wanted,
    floating: bool,
    log: &Log,
) -> Result<OsVersion> {
    let size = std::fs::metadata(tarball).with_context(|| format!("reading {}", tarball.display()))?.len();
    log.line(format!(
        "uploading {} ({:.1} MiB) to Ops Manager {} as {} (floating: {floating})",
        tarball.display(),
        size as f64 / f64::from(1 << 20),
        opsman.base_url(),
        wanted.file_name
    ));
    // The shared retry loop, with one step of Ops Manager's own: after a send whose outcome is unknown,
    // the library is read again, and only a stemcell still missing is sent again.
    let what = format!("uploading {}", wanted.file_name);
    opsman
        .http()
        .retry(&what, || async {
            let error = match opsman.import_stemcell(tarball, &wanted.file_name, floating).await.map_err(Failure::fatal)? {
                Written::Done(imported) => {
                    let what = if imported.existing { "Ops Manager already had it" } else { "imported" };
                    log.line(format!("{what}: {} {}", imported.stemcell.os, imported.stemcell.version));
                    let os = Some(imported.stemcell.os).filter(|os| !os.is_empty()).or(wanted.os.clone());
                    return Ok(OsVersion { os: os.unwrap_or_default(), version: wanted.version.clone() });
                }
                Written::Refused(refusal) => {
                    let why = refusal.describe();
                    return Err(Failure::fatal(anyhow!("Ops Manager refused the stemcell {}: {why}", wanted.file_name)));
                }
                Written::Unknown(error) => error,
            };
            match in_library(opsman, info, wanted).await.map_err(Failure::fatal)? {
                Some(found) => {
                    log.line(format!("the upload broke off ({error:#}), but Ops Manager has the stemcell: it landed"));
                    Ok(found)
                }
                None => Err(Failure::transient(error.context(
                    "the upload broke off and Ops Manager does not have the stemcell: sending it again from its first byte",
                ))),
            }
        })
        .await
}

/// A tile's stemcells as assigning one needs them, from either model.
struct Tile {
    guid: String,
    kind: String,
    staged_for_deletion: bool,
    staged: Vec<OsVersion>,
    available: Vec<OsVersion>,
}

/// Every tile's stemcells: from `stemcell_associations` on Ops Manager 2.6 and later, else from
/// `stemcell_assignments`, whose versions are all of the stemcell's OS (one stemcell per tile).
async fn tiles(opsman: &Opsman, multi: bool, os: &str) -> Result<Vec<Tile>> {
    let of_os = |version: &str| OsVersion { os: os.to_string(), version: version.to_string() };
    if multi {
        let associations = opsman.stemcell_associations().await.context("reading the stemcell associations")?;
        return Ok(associations
            .products
            .into_iter()
            .map(|p| Tile {
                guid: p.guid,
                kind: p.identifier,
                staged_for_deletion: p.is_staged_for_deletion,
                staged: p.staged_stemcells,
                available: p.available_stemcells,
            })
            .collect());
    }
    let assignments = opsman.stemcell_assignments().await.context("reading the stemcell assignments")?;
    Ok(assignments
        .products
        .into_iter()
        .map(|p| Tile {
            staged: p.staged_stemcell_version.as_deref().map(of_os).into_iter().collect(),
            available: p.available_stemcell_versions.iter().map(|v| of_os(v)).collect(),
            guid: p.guid,
            kind: p.identifier,
            staged_for_deletion: p.is_staged_for_deletion,
        })
        .collect())
}

/// Stages the stemcell on each tile in `products`. On Ops Manager 2.6 and later through
/// `stemcell_associations`, replacing the tile's staged stemcell of the same OS and keeping its others;
/// before, through `stemcell_assignments` (one stemcell version per tile).
async fn assign(opsman: &Opsman, info: &Info, stemcell: &OsVersion, products: &[String], log: &Log) -> Result<()> {
    let multi = info.at_least(2, 6);
    let tiles = tiles(opsman, multi, &stemcell.os).await?;
    let what = format!("{} {}", stemcell.os, stemcell.version);
    for kind in products {
        let tile = tiles
            .iter()
            .find(|t| &t.kind == kind)
            .ok_or_else(|| no_tile(kind, tiles.iter().map(|t| t.kind.as_str())))?;
        if tile.staged_for_deletion {
            bail!(
                "params.products: the {kind} tile is staged for deletion in Ops Manager: no stemcell is assigned to it"
            );
        }
        if tile.staged.contains(stemcell) {
            log.line(format!("{what} is already staged on {kind}: nothing to assign"));
            continue;
        }
        if !tile.available.contains(stemcell) {
            let offered: Vec<String> = tile.available.iter().map(|s| format!("{} {}", s.os, s.version)).collect();
            bail!(
                "Ops Manager does not offer {what} to the {kind} tile (it offers: {}): is it a stemcell the tile uses?",
                if offered.is_empty() { "none".to_string() } else { offered.join(", ") }
            );
        }
        let assigned = if multi {
            let mut staged: Vec<OsVersion> = tile.staged.iter().filter(|s| s.os != stemcell.os).cloned().collect();
            staged.push(stemcell.clone());
            opsman.associate_stemcells(&tile.guid, &staged).await
        } else {
            opsman.assign_stemcell(&tile.guid, &stemcell.version).await
        };
        assigned.with_context(|| format!("assigning {what} to {kind}"))?;
        log.line(format!("assigned {what} to {kind}: staged, the next Apply Changes deploys it"));
    }
    Ok(())
}

fn no_tile<'a>(kind: &str, tiles: impl Iterator<Item = &'a str> + Clone) -> anyhow::Error {
    let hint = suggestion(kind, tiles.clone());
    let listed: Vec<&str> = tiles.collect();
    anyhow!("params.products: Ops Manager has no tile of type `{kind}`{hint} (tiles: {})", listed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_is_named_as_bosh_io_names_it() {
        let tarball = Path::new("/tmp/get/stemcell.tgz");
        let url = "https://bosh.io/d/stemcells/x/bosh-stemcell-1.506-vsphere-esxi-ubuntu-jammy-go_agent.tgz?v=1";
        assert_eq!(upload_name(url, tarball), "bosh-stemcell-1.506-vsphere-esxi-ubuntu-jammy-go_agent.tgz");
        assert_eq!(upload_name("https://mirror/download?id=7", tarball), "stemcell.tgz");
    }

    #[test]
    fn the_library_matches_by_file_or_os_and_version() {
        let wanted = Wanted { file_name: "f.tgz".into(), version: "1.506".into(), os: Some("ubuntu-jammy".into()) };
        let listed =
            |file: &str, os: &str, v: &str| LibraryStemcell { filename: file.into(), os: os.into(), version: v.into() };
        assert!(wanted.matches(&listed("other.tgz", "ubuntu-jammy", "1.506")));
        assert!(wanted.matches(&listed("f.tgz", "", "")));
        assert!(!wanted.matches(&listed("other.tgz", "windows2019", "1.506")));
        assert!(!wanted.matches(&listed("other.tgz", "ubuntu-jammy", "1.505")));
        assert!(wanted.matches_file("bosh-stemcell-1.506-vsphere-esxi-ubuntu-jammy-go_agent.tgz"));
        assert!(wanted.matches_file("f.tgz"));
        assert!(!wanted.matches_file("bosh-stemcell-1.506-vsphere-esxi-windows2019-go_agent.tgz"));
        let any_os = Wanted { os: None, ..wanted };
        assert!(any_os.matches(&listed("other.tgz", "windows2019", "1.506")));
    }
}
