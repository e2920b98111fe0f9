//! `out`: Apply Changes for the followed tiles only, with every errand choice explicit, followed to its end.
//!
//! 1. With `pre_deploy_check`, Ops Manager's own check of the director and each tile must pass first.
//! 2. Ops Manager runs one installation at a time. If one is running — someone else's, or the one an earlier
//!    build of this put started before it was killed — repave starts nothing and follows it; then it looks at
//!    what is still pending.
//! 3. Nothing pending for the followed tiles: nothing to apply, and the put succeeds without an installation.
//! 4. Otherwise it starts Apply Changes for those tiles with their errands: the TKGI tile's
//!    `upgrade-all-service-instances` is turned **off** unless `params.errands` says otherwise, so that the
//!    clusters are rolled by a fleet put (canaries, waves, windows, health gates), not all at once by Ops Manager.
//! 5. A refused start (4xx) or one whose outcome is unknown (5xx, a broken connection) is judged by reading the
//!    installation list again: a running installation is followed (ASSUMPTION: Ops Manager's answer to a second
//!    start is not published, so no particular status is relied on); otherwise the put fails with Ops Manager's
//!    own messages, such as the verifier errors of a 422.
//!
//! The version is the followed tiles' deployed state afterwards, exactly what `check` reports.

use super::follow::{Pace, follow};
use super::{connect, tiles};
use crate::clients::opsman::{ApplyChanges, Errand, Installation, Opsman, PreDeployCheck, Written};
use crate::config::TKGI_PRODUCT;
use crate::config::opsman::{ErrandChoice, PutParams, Source};
use crate::context::Ctx;
use crate::protocol::{MetadataField, StepResponse, render_step};
use crate::redact::Log;
use crate::suggest::suggestion;
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// The TKGI tile's "Upgrade all clusters" errand (docs/facts/opsman.md).
const UPGRADE_ALL: &str = "upgrade-all-service-instances";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
const DEFAULT_POLL: Duration = Duration::from_secs(10);
/// Installations of others this put follows before giving up on starting its own: Ops Manager is shared, but a
/// put that waits behind more than this many is better failed and retried by a human.
const MAX_ROUNDS: usize = 3;

pub(super) async fn run(source: &Source, params: &PutParams, ctx: &Ctx) -> Result<String> {
    let opsman = connect(source, ctx)?;
    let staged = tiles::staged(&opsman, &source.products).await?;
    if params.pre_deploy_check {
        pre_deploy_check(&opsman, &staged, &ctx.log).await?;
    }
    let pace = Pace {
        poll_interval: params.poll_interval.map_or(DEFAULT_POLL, |d| d.0),
        timeout: params.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
    };
    let me = identity(source);
    let mut metadata = vec![MetadataField::new("products", source.products.join(", "))];
    metadata.extend(apply(&opsman, &staged, params, pace, &me, &ctx.log).await?);
    let deployed = tiles::deployed(&opsman, &source.products).await.context("reading the tiles after Apply Changes")?;
    render_step(&StepResponse { version: tiles::version(&deployed), metadata })
}

/// Steps 2 to 5, bounded by [`MAX_ROUNDS`]: the metadata of what happened.
async fn apply(
    opsman: &Opsman,
    staged: &[(String, String)],
    params: &PutParams,
    pace: Pace,
    me: &str,
    log: &Log,
) -> Result<Vec<MetadataField>> {
    let mut followed = Vec::new();
    for _ in 0..MAX_ROUNDS {
        if let Some(running) = running(opsman).await? {
            announce(&running, me, log);
            follow(opsman, running.id, pace, log).await?;
            followed.push(running.id.to_string());
            continue;
        }
        if !pending(opsman, staged, log).await? {
            let installation = if followed.is_empty() {
                "none: nothing to apply".to_string()
            } else {
                format!("{} (followed; nothing more to apply)", followed.join(", "))
            };
            return Ok(vec![MetadataField::new("installation", installation)]);
        }
        let (request, summary) = request(opsman, staged, params, log).await?;
        match opsman.apply_changes(&request).await? {
            Written::Done(id) => {
                log.line(format!("Apply Changes started: installation {id}"));
                follow(opsman, id, pace, log).await?;
                return Ok(vec![
                    MetadataField::new("installation", id.to_string()),
                    MetadataField::new("errands", summary),
                ]);
            }
            Written::Refused(refusal) if running(opsman).await?.is_none() => {
                bail!("Ops Manager refused Apply Changes: {}", refusal.describe());
            }
            Written::Unknown(error) if running(opsman).await?.is_none() => {
                return Err(error.context("starting Apply Changes; no installation is running, so it did not start"));
            }
            // Another installation began between our look and our start: the next round follows it.
            Written::Refused(_) | Written::Unknown(_) => {
                log.line("Ops Manager did not take this Apply Changes: another installation is running")
            }
        }
    }
    bail!("other installations kept Ops Manager busy for {MAX_ROUNDS} rounds; nothing was started: run the put again")
}

/// The login this put uses (a client id or a user name), as Ops Manager records it on installations.
fn identity(source: &Source) -> String {
    source.opsman.client_id.clone().or_else(|| source.opsman.username.clone()).unwrap_or_default()
}

/// The installation that is running now, if any: Ops Manager lists the newest first.
async fn running(opsman: &Opsman) -> Result<Option<Installation>> {
    let list = opsman.installations().await.context("listing installations")?;
    Ok(list.into_iter().next().filter(|i| i.status == "running"))
}

fn announce(running: &Installation, me: &str, log: &Log) {
    let who = running.user_name.as_deref().unwrap_or("someone");
    let when = running.started_at.as_deref().unwrap_or("an unknown time");
    let whose = if !me.is_empty() && who == me {
        "this resource's own login: most likely an earlier build of this put that did not finish"
    } else {
        "Ops Manager runs one installation at a time"
    };
    log.line(format!(
        "installation {} is already running, started by `{who}` at {when} ({whose}): following it instead of starting another",
        running.id
    ));
}

/// Whether any followed tile has pending changes (Ops Manager's action is not `unchanged`); says which.
async fn pending(opsman: &Opsman, staged: &[(String, String)], log: &Log) -> Result<bool> {
    let changes = opsman.pending_changes().await.context("reading the pending changes")?;
    let pending: Vec<String> = staged
        .iter()
        .filter_map(|(kind, guid)| {
            let change = changes.iter().find(|c| &c.guid == guid)?;
            (change.action != "unchanged").then(|| format!("{kind} ({})", change.action))
        })
        .collect();
    if pending.is_empty() {
        let kinds: Vec<&str> = staged.iter().map(|(k, _)| k.as_str()).collect();
        log.line(format!("nothing to apply: no pending changes for {}", kinds.join(", ")));
        return Ok(false);
    }
    log.line(format!("pending changes: {}", pending.join(", ")));
    Ok(true)
}

/// The Apply Changes request for the followed tiles, and a one-line summary of its errand choices.
async fn request(
    opsman: &Opsman,
    staged: &[(String, String)],
    params: &PutParams,
    log: &Log,
) -> Result<(ApplyChanges, String)> {
    let mut errands = Map::new();
    let mut summary = Vec::new();
    for (kind, guid) in staged {
        let available = opsman.errands(guid).await.with_context(|| format!("listing the errands of {kind}"))?;
        let choices = errand_choices(kind, &available, params, log)?;
        summary.extend(choices.iter().map(|(name, state)| format!("{kind} {name}={state}")));
        if !choices.is_empty() {
            errands.insert(guid.clone(), json!({ "run_post_deploy": choices }));
        }
    }
    let request = ApplyChanges {
        deploy_products: staged.iter().map(|(_, guid)| guid.clone()).collect(),
        errands,
        ignore_warnings: params.ignore_warnings,
    };
    let summary = if summary.is_empty() { "tile defaults".to_string() } else { summary.join(", ") };
    Ok((request, summary))
}

/// The post-deploy errand choices for one tile: what `params.errands` says (each name must be one of the tile's
/// post-deploy errands), plus, for the TKGI tile, `upgrade-all-service-instances` off unless chosen. Each
/// choice is logged, the default one with why.
fn errand_choices(kind: &str, available: &[Errand], params: &PutParams, log: &Log) -> Result<Map<String, Value>> {
    let post_deploy: Vec<&str> =
        available.iter().filter(|e| e.post_deploy.is_some()).map(|e| e.name.as_str()).collect();
    let mut choices = Map::new();
    for (name, choice) in params.errands.get(kind).into_iter().flatten() {
        if !post_deploy.contains(&name.as_str()) {
            let hint = suggestion(name, post_deploy.iter().copied());
            bail!(
                "params.errands.{kind}.{name}: the {kind} tile has no post-deploy errand `{name}`{hint} (its post-deploy errands: {})",
                if post_deploy.is_empty() { "none".to_string() } else { post_deploy.join(", ") }
            );
        }
        let said = match choice {
            ErrandChoice::On => "on",
            ErrandChoice::Off => "off",
            ErrandChoice::TileDefault => "as the tile's own setting",
        };
        log.line(format!("errand {name} of {kind}: {said} (params.errands)"));
        choices.insert(name.clone(), choice.as_json());
    }
    if kind == TKGI_PRODUCT && !choices.contains_key(UPGRADE_ALL) {
        if post_deploy.contains(&UPGRADE_ALL) {
            log.line(format!(
                "errand {UPGRADE_ALL} of {kind} (\"Upgrade all clusters\"): OFF, repave's default. With it on, Ops Manager \
                 upgrades every cluster one after another inside Apply Changes, bypassing the fleet put's canaries, \
                 waves, windows and health gates; a fleet put rolls the clusters instead. To let Ops Manager do it, set \
                 params.errands.{kind}.{UPGRADE_ALL}: true"
            ));
            choices.insert(UPGRADE_ALL.to_string(), Value::Bool(false));
        } else {
            log.line(format!("the {kind} tile has no errand {UPGRADE_ALL}: no errand to turn off"));
        }
    }
    Ok(choices)
}

/// Ops Manager's pre-deploy check of the director and of each followed tile; every problem it reports is listed.
async fn pre_deploy_check(opsman: &Opsman, staged: &[(String, String)], log: &Log) -> Result<()> {
    let mut problems = Vec::new();
    let director = opsman.pre_deploy_check(None).await.context("running the director's pre-deploy check")?;
    problems.extend(problems_of("the BOSH director", &director));
    for (kind, guid) in staged {
        let check =
            opsman.pre_deploy_check(Some(guid)).await.with_context(|| format!("running {kind}'s pre-deploy check"))?;
        problems.extend(problems_of(kind, &check));
    }
    if !problems.is_empty() {
        bail!(
            "Ops Manager's pre-deploy check found problems; Apply Changes was not started:\n  - {}",
            problems.join("\n  - ")
        );
    }
    let kinds: Vec<&str> = staged.iter().map(|(k, _)| k.as_str()).collect();
    log.line(format!("pre-deploy check: the BOSH director and {} are complete", kinds.join(", ")));
    Ok(())
}

/// What a pre-deploy check objects to: unassigned network, zones and stemcells, property, job and verifier errors.
fn problems_of(what: &str, check: &PreDeployCheck) -> Vec<String> {
    let mut problems = Vec::new();
    for area in ["network", "availability_zone"] {
        if check.rest.get(area).and_then(|a| a.get("assigned")) == Some(&Value::Bool(false)) {
            problems.push(format!("{what}: no {} assigned", area.replace('_', " ")));
        }
    }
    for stemcell in list(check, "stemcells").filter(|s| s.get("assigned") == Some(&Value::Bool(false))) {
        let field = |key: &str| stemcell.get(key).and_then(Value::as_str).unwrap_or("?").to_string();
        problems.push(format!(
            "{what}: no stemcell assigned (needs {} {})",
            field("required_stemcell_os"),
            field("required_stemcell_version")
        ));
    }
    for item in list(check, "properties").chain(list(check, "verifiers")) {
        let name = item.get("name").or_else(|| item.get("type")).and_then(Value::as_str).unwrap_or("?");
        for error in item.get("errors").and_then(Value::as_array).into_iter().flatten() {
            problems.push(format!("{what}: {name}: {}", error.as_str().unwrap_or(&error.to_string())));
        }
    }
    for job in check.rest.get("resources").and_then(|r| r.get("jobs")).and_then(Value::as_array).into_iter().flatten() {
        let name = job.get("identifier").and_then(Value::as_str).unwrap_or("?");
        for error in job.get("error").and_then(Value::as_array).into_iter().flatten() {
            problems.push(format!("{what}: job {name}: {}", error.as_str().unwrap_or(&error.to_string())));
        }
    }
    if !check.complete && problems.is_empty() {
        problems.push(format!("{what} ({}): not complete", check.identifier));
    }
    problems
}

fn list<'a>(check: &'a PreDeployCheck, key: &str) -> impl Iterator<Item = &'a Value> {
    check.rest.get(key).and_then(Value::as_array).into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errand(name: &str, post: bool) -> Errand {
        Errand {
            name: name.into(),
            post_deploy: post.then_some(json!(true)),
            pre_delete: (!post).then_some(json!(true)),
        }
    }

    #[test]
    fn the_tkgi_upgrade_all_errand_is_off_unless_chosen() {
        let available =
            [errand(UPGRADE_ALL, true), errand("pks-nsx-t-precheck", true), errand("delete-all-clusters", false)];
        let none = PutParams::default();
        let choices = errand_choices(TKGI_PRODUCT, &available, &none, &Log::sink()).unwrap();
        assert_eq!(Value::Object(choices), json!({UPGRADE_ALL: false}));
        let mut on = PutParams::default();
        on.errands.insert(TKGI_PRODUCT.into(), [(UPGRADE_ALL.to_string(), ErrandChoice::On)].into());
        let choices = errand_choices(TKGI_PRODUCT, &available, &on, &Log::sink()).unwrap();
        assert_eq!(Value::Object(choices), json!({UPGRADE_ALL: true}));
        assert!(errand_choices("other", &available, &none, &Log::sink()).unwrap().is_empty(), "only the TKGI tile");
        let mut unknown = PutParams::default();
        unknown.errands.insert(TKGI_PRODUCT.into(), [("delete-all-clusters".to_string(), ErrandChoice::Off)].into());
        let err = errand_choices(TKGI_PRODUCT, &available, &unknown, &Log::sink()).unwrap_err().to_string();
        assert!(err.contains("no post-deploy errand `delete-all-clusters`"), "{err}");
    }

    #[test]
    fn pre_deploy_problems_are_named() {
        let check: PreDeployCheck = serde_json::from_value(json!({"identifier": "p-guid", "complete": false,
            "network": {"assigned": true}, "availability_zone": {"assigned": false},
            "stemcells": [{"assigned": false, "required_stemcell_version": "1.506", "required_stemcell_os": "ubuntu-jammy"}],
            "properties": [{"name": ".properties.x", "errors": ["can't be blank"]}],
            "resources": {"jobs": [{"identifier": "master", "error": ["too small"]}]},
            "verifiers": [{"type": "NetworksVerifier", "errors": ["overlap"], "ignorable": false}]}))
        .unwrap();
        assert_eq!(
            problems_of("p", &check),
            [
                "p: no availability zone assigned",
                "p: no stemcell assigned (needs ubuntu-jammy 1.506)",
                "p: .properties.x: can't be blank",
                "p: NetworksVerifier: overlap",
                "p: job master: too small"
            ]
        );
        let bare: PreDeployCheck = serde_json::from_value(json!({"identifier": "d", "complete": false})).unwrap();
        assert_eq!(problems_of("d", &bare), ["d (d): not complete"]);
    }
}
