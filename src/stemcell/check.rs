//! `check` for `kind: stemcell`: list the name's versions on bosh.io, filter, order, and emit the
//! window Concourse asks for.

use super::catalog::{self, Selection};
use crate::clients::boshio::BoshIo;
use crate::config::stemcell::Source;
use crate::protocol::Version;
use crate::redact::Log;
use crate::versions::stemcell::{self as versions, StemcellVersion};
use anyhow::{Result, bail};

/// The versions to emit, oldest first, as `{"version": "1.506"}` (the peer's shape, byte for byte).
pub(crate) async fn check(
    source: &Source,
    current: Option<&Version>,
    boshio: &BoshIo,
    log: &Log,
) -> Result<Vec<Version>> {
    let flavor = catalog::flavor(source)?;
    let (family, constraint) = (&source.version_family, source.constraint.as_ref());
    let current = current_version(current, log);
    let stemcells = boshio.stemcells(&source.name).await?;
    if stemcells.is_empty() {
        bail!(
            "no stemcell named `{}` is published at {}: check source.name (e.g. `bosh-aws-xen-hvm-ubuntu-jammy-go_agent`)",
            source.name,
            boshio.list_url(&source.name)?
        );
    }
    let selection = catalog::select(&stemcells, flavor, family, constraint);
    explain(&selection, &source.name, log);
    let window = versions::window(selection.versions, current.as_deref());
    if window.is_empty() {
        log.line(format!("no version of {} passes version_family and constraint", source.name));
    }
    Ok(window.into_iter().map(|v| to_version(&v.raw)).collect())
}

/// The Concourse version map for a stemcell version.
pub(crate) fn to_version(raw: &str) -> Version {
    Version::from([("version".to_string(), raw.to_string())])
}

fn current_version(current: Option<&Version>, log: &Log) -> Option<String> {
    let current = current?;
    let found = current.get("version").cloned();
    if found.is_none() {
        log.warn("the current version has no `version` key; starting from the latest");
    }
    found
}

/// Says what was left out and why, so "no new versions" is never a mystery.
fn explain(selection: &Selection, name: &str, log: &Log) {
    for raw in &selection.unparsable {
        log.warn(format!("skipping version `{raw}` of {name}: not a numeric dotted version"));
    }
    let newest = selection.versions.iter().max();
    let mut held: Vec<&StemcellVersion> =
        selection.held_back.iter().filter(|v| newest.is_none_or(|n| *v > n)).collect();
    held.sort();
    for v in held {
        log.line(format!(
            "holding back {name} {}: its light stemcell is not published yet (the line publishes light stemcells; set `flavor: regular` to track regular tarballs)",
            v.raw
        ));
    }
}
