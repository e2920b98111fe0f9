//! `in`: what a pipeline feeds on, for the foundation as it is now (Ops Manager keeps no history, so a version
//! that has moved on is noted and the current state written):
//!
//! - `version`: the first followed tile's `product_version` in the clusters' format — what a fleet put's
//!   `target_version_file` reads; `product_version`: as Ops Manager states it;
//! - `stemcell`: the version of that tile's deployed (Linux) stemcell; `guid`: its product GUID;
//! - `products.json`: every followed tile (type, GUID, versions, deployed stemcells);
//! - `pending_changes.json`: Ops Manager's pending changes, as it reports them;
//! - `certificates.json` and `certificates.md`: the certificates that expire within `params.expires_within`.
//!
//! Everything is read before the first file is written, so a failed `in` leaves nothing half-written.

use super::connect;
use super::tiles::{self, Tile};
use crate::clients::opsman::ProductChange;
use crate::config::opsman::{GetParams, Source};
use crate::context::Ctx;
use crate::protocol::{MetadataField, StepResponse, Version, render_step};
use crate::stepdir::{Mode, StepDir};
use crate::versions::tkgi::cluster_version;
use anyhow::{Context, Result};
use serde_json::{Value, json};

pub(super) async fn run(source: &Source, params: &GetParams, requested: Option<Version>, ctx: &Ctx) -> Result<String> {
    let dir = ctx.dir.as_ref().context("in needs a directory")?;
    let opsman = connect(source, ctx)?;
    let deployed = tiles::deployed(&opsman, &source.products).await?;
    let current = tiles::version(&deployed);
    if let Some(requested) = requested.as_ref().filter(|r| **r != current) {
        ctx.log.line(format!(
            "note: the foundation changed since the requested version {}; writing its current state {}",
            serde_json::to_string(requested)?,
            serde_json::to_string(&current)?
        ));
    }
    let changes = opsman.pending_changes().await.context("reading the pending changes")?;
    let certificates = opsman
        .expiring_certificates(&params.expires_within)
        .await
        .context("listing the certificates that expire soon")?;
    let primary = &deployed[0];
    let version = cluster_version(&primary.product_version, source.cluster_version_format);
    let stemcell = primary.stemcell_version().unwrap_or_default();
    let pending: Vec<&ProductChange> = changes.iter().filter(|c| c.action != "unchanged").collect();
    write_files(dir, &deployed, &version, &stemcell, &changes, &certificates, &params.expires_within)?;
    ctx.log.line(format!(
        "{} {} ({version} as the clusters write it), stemcell {stemcell}; {} pending change(s); {} certificate(s) expire within {}",
        primary.kind,
        primary.product_version,
        pending.len(),
        certificates.len(),
        params.expires_within
    ));
    let metadata = vec![
        MetadataField::new("product", primary.kind.clone()),
        MetadataField::new("version", version),
        MetadataField::new("stemcell", stemcell),
        MetadataField::new("guid", primary.guid.clone()),
        MetadataField::new("pending_changes", pending.len().to_string()),
        MetadataField::new("expiring_certificates", certificates.len().to_string()),
    ];
    render_step(&StepResponse { version: requested.unwrap_or(current), metadata })
}

fn write_files(
    dir: &StepDir,
    deployed: &[Tile],
    version: &str,
    stemcell: &str,
    changes: &[ProductChange],
    certificates: &[Value],
    within: &str,
) -> Result<()> {
    let primary = &deployed[0];
    let products: Vec<Value> = deployed
        .iter()
        .map(
            |t| json!({"type": t.kind, "guid": t.guid, "product_version": t.product_version, "stemcells": t.stemcells}),
        )
        .collect();
    let raw_changes: Vec<&Value> = changes.iter().map(|c| &c.raw).collect();
    let files = [
        ("version", format!("{version}\n")),
        ("product_version", format!("{}\n", primary.product_version)),
        ("stemcell", format!("{stemcell}\n")),
        ("guid", format!("{}\n", primary.guid)),
        ("products.json", pretty(&Value::Array(products))?),
        ("pending_changes.json", pretty(&json!(raw_changes))?),
        ("certificates.json", pretty(&Value::Array(certificates.to_vec()))?),
        ("certificates.md", certificates_markdown(certificates, within)),
    ];
    for (name, content) in files {
        dir.write(name, content.as_bytes(), Mode::Public)?;
    }
    Ok(())
}

fn pretty(value: &Value) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// A table for a notification step: soonest first.
fn certificates_markdown(certificates: &[Value], within: &str) -> String {
    let text = |c: &Value, key: &str| c.get(key).and_then(Value::as_str).unwrap_or("").replace('|', "\\|");
    let mut sorted: Vec<&Value> = certificates.iter().collect();
    sorted.sort_by_key(|c| text(c, "valid_until"));
    let mut out = format!("# Certificates that expire within {within}\n\n");
    if sorted.is_empty() {
        out.push_str("None.\n");
        return out;
    }
    out.push_str("| valid until | issuer | location | product | property or variable |\n|---|---|---|---|---|\n");
    for c in sorted {
        let place = [text(c, "property_reference"), text(c, "variable_path")].into_iter().find(|s| !s.is_empty());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            text(c, "valid_until"),
            text(c, "issuer"),
            text(c, "location"),
            text(c, "product_guid"),
            place.unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_table_soonest_first() {
        let certs = [
            json!({"issuer": "/CN=later", "valid_until": "2026-09-01T00:00:00Z", "location": "credhub", "variable_path": "/p/x"}),
            json!({"issuer": "/CN=a|b", "valid_until": "2026-08-01T00:00:00Z", "location": "ops_manager",
                   "product_guid": "p-guid", "property_reference": ".properties.tls"}),
        ];
        let table = certificates_markdown(&certs, "3m");
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| 2026")).collect();
        assert_eq!(rows[0], "| 2026-08-01T00:00:00Z | /CN=a\\|b | ops_manager | p-guid | .properties.tls |");
        assert_eq!(rows[1], "| 2026-09-01T00:00:00Z | /CN=later | credhub |  | /p/x |");
        assert!(certificates_markdown(&[], "3m").ends_with("None.\n"));
    }
}
