//! `in`: write `clusters.json` and `fleet.md` for the fleet as it is now, and with `kubeconfig: true`
//! one kubeconfig per cluster (mode 0600, never logged). With `source.director`, each cluster's
//! deployment name, oldest VM and soonest certificate expiry are part of the report (flagged within
//! `source.warn_within`, default [`DEFAULT_WARN_WITHIN`]) — the deployment names are what a backup task
//! runs `bbr` on.
//!
//! The platform keeps no history, so `in` reports the current state; when it no longer matches the
//! requested version, a note says so.

use super::day2::{expires_within, soonest};
use super::deployments::{self, Reads};
use super::report::fleet_markdown;
use super::version::{newest_tkgi, version};
use super::{Observed, connect, observe};
use crate::config::fleet::{DEFAULT_WARN_WITHIN, GetParams, Selector, Source};
use crate::context::Ctx;
use crate::protocol::{MetadataField, StepResponse, Version, render_step};
use anyhow::{Context, Result};
use jiff::Timestamp;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub(super) async fn run(source: &Source, params: &GetParams, requested: Option<Version>, ctx: &Ctx) -> Result<String> {
    let dir = ctx.dir.as_deref().context("in needs a directory")?;
    let conn = connect(source, ctx).await?;
    let mut fleet = observe(&conn, &Selector::new(&source.clusters)?).await?;
    if let Some(director) = &conn.director {
        deployments::read(director, &mut fleet, Reads { vms: true, certificates: true }).await?;
    }
    let now = ctx.clock.now();
    let current = version(&fleet, source, now);
    if let Some(requested) = &requested
        && requested.get("digest") != current.get("digest")
    {
        ctx.log.line(format!(
            "note: the fleet changed since version {}; writing its current state ({})",
            requested.get("digest").map_or("?", String::as_str),
            current["digest"]
        ));
    }
    let newest = newest_tkgi(&fleet).unwrap_or_default();
    let warn = source.warn_within.map_or(DEFAULT_WARN_WITHIN, |d| d.0);
    write(&dir.join("clusters.json"), &serde_json::to_vec_pretty(&clusters_json(&fleet, &newest, warn, now))?)?;
    write(&dir.join("fleet.md"), fleet_markdown(&fleet, &newest, warn, now).as_bytes())?;
    if params.kubeconfig {
        write_kubeconfigs(&conn.tkgi, &fleet, dir, ctx).await?;
    }
    let mut metadata = vec![
        MetadataField::new("clusters", fleet.len().to_string()),
        MetadataField::new("behind", current["behind"].clone()),
        MetadataField::new("newest_tkgi", newest),
        MetadataField::new("digest", current["digest"].clone()),
    ];
    if conn.director.is_some() {
        let expiring = fleet.iter().filter(|o| certificate_json(o, warn, now)["within_warn"] == true).count();
        metadata.push(MetadataField::new("certs_expiring", expiring.to_string()));
    }
    render_step(&StepResponse { version: requested.unwrap_or(current), metadata })
}

/// The clusters as the API returned them, each with a `repave` object of derived fields (with a
/// director: `deployment`, `vms`, `oldest_vm_created_at`, `soonest_certificate`).
fn clusters_json(fleet: &[Observed], newest: &str, warn: Duration, now: Timestamp) -> Value {
    let items = fleet.iter().map(|o| {
        let mut raw = o.cluster.raw.clone();
        if let Value::Object(map) = &mut raw {
            let mut derived = serde_json::json!({
                "behind": o.cluster.pks_version != newest,
                "newest_tkgi": newest,
                "stemcell": o.stemcell,
            });
            if o.deployment.is_some() {
                derived["deployment"] = serde_json::json!(o.deployment);
                derived["vms"] = serde_json::json!(o.facts.vms.as_ref().map(|v| v.count));
                let oldest = o.facts.vms.as_ref().and_then(|v| v.oldest).map(|t| t.to_string());
                derived["oldest_vm_created_at"] = serde_json::json!(oldest);
                derived["soonest_certificate"] = certificate_json(o, warn, now);
            }
            map.insert("repave".into(), derived);
        }
        raw
    });
    Value::Array(items.collect())
}

/// The soonest-expiring certificate, flagged `within_warn`; `null` when none is listed.
fn certificate_json(o: &Observed, warn: Duration, now: Timestamp) -> Value {
    match o.facts.certificates.as_deref().and_then(soonest) {
        Some(c) => serde_json::json!({"name": c.name, "expiry_date": c.expiry_date, "days_left": c.days_left,
                                      "within_warn": expires_within(c, warn, now)}),
        None => Value::Null,
    }
}

async fn write_kubeconfigs(tkgi: &crate::clients::tkgi::Tkgi, fleet: &[Observed], dir: &Path, ctx: &Ctx) -> Result<()> {
    let out = dir.join("kubeconfigs");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for o in fleet {
        let name = &o.cluster.name;
        let config = tkgi.bind(name).await.with_context(|| format!("getting a kubeconfig for {name}"))?;
        // Register every credential in it before anything could print it.
        register_credentials(&config, ctx);
        let path = out.join(format!("{name}.json"));
        write_private(&path, &serde_json::to_vec_pretty(&config)?)?;
        ctx.log.line(format!("wrote kubeconfigs/{name}.json"));
    }
    Ok(())
}

fn register_credentials(config: &Value, ctx: &Ctx) {
    for user in config.get("users").and_then(Value::as_array).into_iter().flatten() {
        let creds = user.get("user").and_then(Value::as_object);
        for key in ["token", "client-key-data", "password"] {
            if let Some(secret) = creds.and_then(|c| c.get(key)).and_then(Value::as_str) {
                ctx.log.secrets().add(secret);
            }
        }
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Creates the file with mode 0600 from the start, so the token is never readable by others.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}
