//! `in`: write `clusters.json` and `fleet.md` for the fleet as it is now, and with `kubeconfig: true`
//! one kubeconfig per cluster (mode 0600, never logged). With `source.director`, each cluster's
//! deployment name, oldest VM and soonest certificate expiry are part of the report (flagged within
//! `source.warn_within`, default [`DEFAULT_WARN_WITHIN`]) — the deployment names are what a backup task
//! runs `bbr` on.
//!
//! The platform keeps no history, so `in` reports the current state; when it no longer matches the
//! requested version, a note says so.
//!
//! A kubeconfig's file name is the cluster's name, which comes from the API: every name is checked to
//! be a plain file name before anything is written, so a hostile or broken API (`../x`, `/etc/x`)
//! cannot make `in` write outside its directory, nor leave half of the kubeconfigs behind.

use super::day2::{certs_expiring, expires_within, soonest};
use super::deployments::{self, Reads};
use super::report::fleet_markdown;
use super::version::{newest_tkgi, version};
use super::{Observed, connect, observe};
use crate::config::fleet::{DEFAULT_WARN_WITHIN, GetParams, Source};
use crate::context::Ctx;
use crate::protocol::{MetadataField, StepResponse, Version, render_step};
use crate::stepdir::{Mode, StepDir};
use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use serde_json::Value;
use std::time::Duration;

pub(super) async fn run(source: &Source, params: &GetParams, requested: Option<Version>, ctx: &Ctx) -> Result<String> {
    let dir = ctx.dir.as_ref().context("in needs a directory")?;
    let conn = connect(source, ctx).await?;
    let mut fleet = observe(&conn, &source.clusters).await?;
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
    let clusters = serde_json::to_vec_pretty(&clusters_json(&fleet, &newest, warn, now))?;
    dir.write("clusters.json", &clusters, Mode::Public)?;
    dir.write("fleet.md", fleet_markdown(&fleet, &newest, warn, now).as_bytes(), Mode::Public)?;
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
        let expiring = fleet.iter().filter(|o| certs_expiring(o, warn, now)).count();
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

async fn write_kubeconfigs(
    tkgi: &crate::clients::tkgi::Tkgi,
    fleet: &[Observed],
    dir: &StepDir,
    ctx: &Ctx,
) -> Result<()> {
    for o in fleet {
        check_file_name(&o.cluster.name)?;
    }
    for o in fleet {
        let name = &o.cluster.name;
        let config = tkgi.bind(name).await.with_context(|| format!("getting a kubeconfig for {name}"))?;
        // Register every credential in it before anything could print it.
        register_credentials(&config, ctx);
        dir.write(&format!("kubeconfigs/{name}.json"), &serde_json::to_vec_pretty(&config)?, Mode::Private)?;
        ctx.log.line(format!("wrote kubeconfigs/{name}.json"));
    }
    Ok(())
}

/// A cluster name fit to be a file name: not empty, no path separator, no `.` or `..`, no leading
/// dot (hidden files and repave's own temp files start with one), no control characters.
fn check_file_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if !plain {
        bail!(
            "the TKGI API lists a cluster named {name:?}, which is not a plain file name: refusing to write \
             kubeconfigs (none was written); exclude it with `!name` in source.clusters, or fix its name"
        );
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

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_names_must_be_plain_file_names() {
        for good in ["prod-eu-1", "a_b.c", "ÿ-cluster"] {
            super::check_file_name(good).unwrap();
        }
        for bad in ["", "..", ".", "../x", "/etc/x", "a/b", "a\\b", ".hidden", "a\nb", &"x".repeat(300)] {
            let err = super::check_file_name(bad).unwrap_err().to_string();
            assert!(err.contains("not a plain file name") && err.contains("none was written"), "{bad:?}: {err}");
        }
    }
}
