//! The flagship pipeline (`pipelines/stemcell-to-fleet.yml`) run as its steps against repave-sim: bosh.io
//! stemcell check and get → stemcell put into Ops Manager (assigned to the TKGI tile) → `kind: opsman` put (Apply
//! Changes, errand off: no cluster moves) → `kind: opsman` get → fleet put (canaries, `max_in_flight`) reading its
//! targets from that get. And a fleet put whose target comes from Ops Manager directly.

use crate::common::opsman::{JAMMY, TKGI, ca, cluster_stemcells, count, fetch, login, source, stemcell_source, world};
use crate::common::{SENTINEL, StepOutput, run_step};
use repave_sim::testing::RunningSim;
use serde_json::{Value, json};
use std::path::Path;

fn fleet_source(sim: &RunningSim, extra: Value) -> Value {
    let mut source = json!({"kind": "fleet", "api_url": sim.url(), "uaa_url": sim.url(), "client_id": "repave",
        "client_secret": SENTINEL, "ca_cert": ca(sim), "http": {"max_backoff": "100ms"},
        "director": {"url": sim.url(), "client": "repave", "client_secret": SENTINEL}});
    source.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    source
}

fn fleet_put(work: &Path, source: Value, params: Value) -> StepOutput {
    let mut params = params;
    params.as_object_mut().unwrap().insert("poll_interval".into(), json!("50ms"));
    run_step("out", &json!({"source": source, "params": params}).to_string(), Some(work), &[])
}

fn pks_versions(sim: &RunningSim) -> Vec<String> {
    let check = run_step("check", &json!({"source": fleet_source(sim, json!({}))}).to_string(), None, &[]).json();
    vec![check[0]["newest_tkgi"].as_str().unwrap().to_owned(), check[0]["behind"].as_str().unwrap().to_owned()]
}

#[test]
fn the_stemcell_to_fleet_pipeline_as_its_steps() {
    let sim = RunningSim::start(&world(""));
    let work = tempfile::tempdir().unwrap();

    // job upload-stemcell: a new stemcell on bosh.io, into Ops Manager, assigned to the TKGI tile.
    let versions = run_step("check", &json!({"source": stemcell_source(&sim)}).to_string(), None, &[]).json();
    assert_eq!(versions, json!([{"version": "1.506"}]));
    fetch(&sim, work.path(), "1.506");
    let put = json!({"source": stemcell_source(&sim), "params": {"from": "stemcell"}});
    run_step("out", &put.to_string(), Some(work.path()), &[]).json();
    assert_eq!(cluster_stemcells(&sim), ["1.505"; 3], "assigned, not deployed: the clusters are where they were");

    // job apply-changes: Ops Manager deploys the tile with its new stemcell; the errand is off.
    let before = run_step("check", &json!({"source": source(&sim, json!({}))}).to_string(), None, &[]).json();
    let apply = json!({"source": source(&sim, json!({})), "params": {"poll_interval": "50ms"}});
    let applied = run_step("out", &apply.to_string(), Some(work.path()), &[]);
    let version = applied.json()["version"].clone();
    assert_ne!(version, before[0], "a new deployed state");
    assert_eq!(version[format!("{TKGI}.stemcell")], "ubuntu-jammy/1.506");
    assert_eq!(sim.state().counter("tkgi.upgrade_starts"), 0, "the errand is off: Ops Manager upgraded no cluster");
    assert_eq!(cluster_stemcells(&sim), ["1.505"; 3]);

    // job upgrade-fleet: the get of the opsman resource feeds the fleet put its targets.
    let opsman_dir = work.path().join("opsman");
    std::fs::create_dir_all(&opsman_dir).unwrap();
    let get = json!({"source": source(&sim, json!({})), "params": {}, "version": version});
    run_step("in", &get.to_string(), Some(&opsman_dir), &[]).json();
    let params = json!({"target_version_file": "opsman/version", "target_stemcell_file": "opsman/stemcell",
                        "canaries": 1, "max_in_flight": 2});
    let rolled = fleet_put(work.path(), fleet_source(&sim, json!({})), params);
    rolled.json();
    assert!(rolled.stderr.contains("Rollout plan to TKGI 1.19.2-build.10, stemcell 1.506"), "{}", rolled.stderr);
    assert!(rolled.stderr.contains("3 succeeded, 0 failed"), "{}", rolled.stderr);
    assert_eq!(cluster_stemcells(&sim), ["1.506"; 3], "every cluster on the tile's new stemcell");
    assert_eq!(pks_versions(&sim), ["1.19.2-build.10", "0"]);
    assert!(sim.state().high_water("tkgi.upgrades_in_flight") <= 2);
    assert!(!sim.state().director.stemcells().is_empty(), "Ops Manager put the stemcell on the director itself");
    assert!(sim.state().director.stemcells().contains(&(JAMMY.to_string(), "1.506".to_string())));
}

#[test]
fn a_fleet_put_takes_its_target_from_ops_manager() {
    let sim = RunningSim::start(&world(""));
    let work = tempfile::tempdir().unwrap();
    let source = fleet_source(&sim, json!({"opsman": login(&sim)}));
    let out = fleet_put(work.path(), source, json!({"max_in_flight": 3}));
    out.json();
    assert!(
        out.stderr
            .contains("target: TKGI 1.19.2-build.10, the deployed pivotal-container-service tile's product_version"),
        "{}",
        out.stderr
    );
    assert_eq!(count(&sim, "GET", "/actuator/info"), 0, "the assumed route is not asked");
    assert_eq!(pks_versions(&sim), ["1.19.2-build.10", "0"]);
}

#[test]
fn without_ops_manager_the_assumed_route_is_a_labelled_fallback() {
    let sim = RunningSim::start(&world(""));
    let work = tempfile::tempdir().unwrap();
    let out = fleet_put(work.path(), fleet_source(&sim, json!({})), json!({"dry_run": true}));
    out.json();
    assert!(out.stderr.contains("at /actuator/info (an ASSUMED, unpublished route"), "{}", out.stderr);
}

#[test]
fn a_fleet_put_names_a_tkgi_tile_ops_manager_has_not_deployed() {
    let sim = RunningSim::start(&world(""));
    let work = tempfile::tempdir().unwrap();
    let source = fleet_source(&sim, json!({"opsman": login(&sim), "opsman_product": "pivotal-container-servic"}));
    let out = fleet_put(work.path(), source, json!({}));
    out.assert_fails_with(&["source.opsman_product", "no deployed tile of type `pivotal-container-servic`"]);
    assert_eq!(sim.state().counter("tkgi.upgrade_starts"), 0);
}
