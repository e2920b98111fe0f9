//! `kind: opsman` against repave-sim's Ops Manager over TLS: `check` and `in` report the deployed TKGI tile;
//! `out` runs Apply Changes with the "Upgrade all clusters" errand off unless asked (observed on the sim's
//! clusters), prints the installation's growing log once, fails with Ops Manager's own messages on a 422 and with
//! the log's tail when the installation fails, never starts a second Apply Changes while one runs (a killed
//! build's re-run follows its own installation), and outlives its access token.

use crate::common::opsman::{TKGI, UPGRADE_ALL, apply, apply_request, check, cluster_stemcells, count, source, world};
use crate::common::{run_step, spawn_step};
use repave_sim::services::opsman::OpsMan;
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const INSTALL: &str = "/api/v0/installations";

/// The TKGI tile with a staged upgrade (1.19.3) waiting for Apply Changes; `extra` goes under `opsman:`.
fn staged_upgrade(extra: &str) -> String {
    world(&format!(
        "  products:\n    - {{type: {TKGI}, version: 1.19.2-build.10, staged_version: 1.19.3-build.4, stemcells: [\"bosh-vsphere-esxi-ubuntu-jammy-go_agent/1.505\"]}}\n{extra}"
    ))
}

/// An installation takes 3 s instead of 1 s: long enough for tokens that live 1 s to expire during it.
fn slow(world: String) -> String {
    world.replace("install_secs: 1000", "install_secs: 3000")
}

/// An installation takes 10 s: room for a second build (or a re-run) to start while it runs, even on a loaded
/// machine.
fn long(world: String) -> String {
    world.replace("install_secs: 1000", "install_secs: 10000")
}

/// Waits (bounded) until the sim has an installation running.
fn until_installing(sim: &RunningSim) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.state().opsman.installations().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sim.state().opsman.installations().len(), 1, "no installation started");
}

#[test]
fn check_and_in_report_the_deployed_tkgi_tile() {
    let certificates = "  certificates:\n    - {issuer: /CN=soon, expires_in_days: 20, location: credhub, variable_path: /p-bosh/tls}\n    - {issuer: /CN=later, expires_in_days: 400}";
    let sim = RunningSim::start(&staged_upgrade(certificates));
    let version = check(&sim, json!({})).json();
    assert_eq!(
        version,
        json!([{TKGI: "1.19.2-build.10", format!("{TKGI}.stemcell"): "ubuntu-jammy/1.505"}]),
        "the deployed state, not the staged one"
    );
    let dir = tempfile::tempdir().unwrap();
    let request = json!({"source": source(&sim, json!({})), "params": {}, "version": version[0]});
    let answer = run_step("in", &request.to_string(), Some(dir.path()), &[]).json();
    assert_eq!(answer["version"], version[0]);
    let file = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!((file("version"), file("stemcell")), ("1.19.2-build.10\n".into(), "1.505\n".into()));
    assert_eq!(file("guid").trim(), OpsMan::guid(TKGI));
    let pending: Value = serde_json::from_str(&file("pending_changes.json")).unwrap();
    assert!(pending.as_array().unwrap().iter().any(|c| c["action"] == "update"), "{pending}");
    let certs: Value = serde_json::from_str(&file("certificates.json")).unwrap();
    assert_eq!(certs.as_array().unwrap().len(), 1, "within the default 3 months: {certs}");
    assert!(file("certificates.md").contains("| /CN=soon | credhub |"), "{}", file("certificates.md"));
    let products: Value = serde_json::from_str(&file("products.json")).unwrap();
    assert_eq!(products[0]["stemcells"], json!(["ubuntu-jammy/1.505"]));

    let release = json!({"source": source(&sim, json!({"cluster_version_format": "release"})),
                         "params": {"expires_within": "2y"}, "version": version[0]});
    let dir = tempfile::tempdir().unwrap();
    run_step("in", &release.to_string(), Some(dir.path()), &[]).json();
    let file = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(file("version"), "1.19.2\n", "in the clusters' format");
    assert_eq!(file("product_version"), "1.19.2-build.10\n");
    assert_eq!(serde_json::from_str::<Value>(&file("certificates.json")).unwrap().as_array().unwrap().len(), 2);
}

#[test]
fn apply_changes_turns_the_upgrade_all_errand_off_and_no_cluster_moves() {
    let sim = RunningSim::start(&staged_upgrade(""));
    let out = apply(&sim, json!({}));
    let answer = out.json();
    assert_eq!(answer["version"], check(&sim, json!({})).json()[0], "the put emits what check reports");
    assert_eq!(answer["version"][TKGI], "1.19.3-build.4");
    let guid = OpsMan::guid(TKGI);
    assert_eq!(sim.state().opsman.installation_errands(), [json!({guid: {"run_post_deploy": {UPGRADE_ALL: false}}})]);
    assert!(
        out.stderr.contains(&format!("errand {UPGRADE_ALL} of {TKGI} (\"Upgrade all clusters\"): OFF")),
        "{}",
        out.stderr
    );
    assert_eq!(sim.state().counter("tkgi.upgrade_starts"), 0, "no cluster touched");
    assert_eq!(cluster_stemcells(&sim), ["1.505"; 3]);
    // The cumulative log, printed as new lines: each line once.
    for line in ["Task 101 done", "is off for this installation", "Finished: succeeded"] {
        assert_eq!(out.stderr.matches(line).count(), 1, "{line}:\n{}", out.stderr);
    }
    assert!(count(&sim, "GET", "/api/v0/installations/1/logs") >= 2, "the log was read as it grew");
    let rerun = apply(&sim, json!({}));
    rerun.json();
    assert!(rerun.stderr.contains("nothing to apply"), "{}", rerun.stderr);
    assert_eq!(count(&sim, "POST", INSTALL), 1);
}

#[test]
fn with_the_errand_on_ops_manager_upgrades_every_cluster_one_after_another() {
    let sim = RunningSim::start(&staged_upgrade(""));
    let out = apply(&sim, json!({"errands": {TKGI: {UPGRADE_ALL: true}}}));
    out.json();
    assert!(out.stderr.contains(&format!("errand {UPGRADE_ALL} of {TKGI}: on (params.errands)")), "{}", out.stderr);
    let state = sim.state();
    assert_eq!(state.counter("opsman.errand_upgrades"), 3);
    assert_eq!(state.high_water("tkgi.upgrades_in_flight"), 1, "serially");
    let clusters = state.fleet.views();
    assert!(clusters.iter().all(|c| c.stemcell == "1.505"), "the stemcell did not change, the version did");
    let answer = crate::common::fleet::check(&sim, json!({})).json();
    assert_eq!(answer[0]["newest_tkgi"], "1.19.3-build.4");
    assert_eq!(answer[0]["behind"], "0");
}

#[test]
fn a_422_fails_with_ops_managers_errors() {
    let sim = RunningSim::start(&staged_upgrade("  verifier_errors: [\"pks_api_hostname is not resolvable\"]"));
    let out = apply(&sim, json!({}));
    out.assert_fails_with(&[
        "Ops Manager refused Apply Changes",
        "422",
        "PksApiHostnameVerifier: pks_api_hostname is not resolvable",
    ]);
    assert!(sim.state().opsman.installations().is_empty());
}

#[test]
fn a_failed_installation_fails_the_put_with_the_end_of_its_log() {
    let sim = RunningSim::start(&staged_upgrade("  fail_installations: 1"));
    let out = apply(&sim, json!({}));
    out.assert_fails_with(&["installation 1 failed", "the end of its log", "Failed Jobs: pks-api", "Exited with 1."]);
}

/// Two builds at once: the second finds the first's installation running, starts nothing and follows it.
#[test]
fn a_second_apply_changes_is_refused_while_one_runs_and_follows_it() {
    let sim = RunningSim::start(&long(staged_upgrade("")));
    let work = tempfile::tempdir().unwrap();
    let mut first = spawn_step("out", &apply_request(&sim, json!({})).to_string(), work.path());
    until_installing(&sim);
    let second = apply(&sim, json!({}));
    second.json();
    assert!(second.stderr.contains("installation 1 is already running"), "{}", second.stderr);
    assert!(second.stderr.contains("nothing to apply"), "{}", second.stderr);
    assert!(first.wait().unwrap().success());
    assert_eq!(count(&sim, "POST", INSTALL), 1, "one Apply Changes");
}

/// Ops Manager's answer to a start it will not take is not published; whatever it is, repave looks again and,
/// with nothing running, reports Ops Manager's message.
#[test]
fn a_refused_start_with_nothing_running_is_reported() {
    let sim = RunningSim::start(&staged_upgrade(""));
    let body = r#"{"errors": ["An installation is already in progress"]}"#.to_string();
    let refusal = FaultAction::Status { code: 409, retry_after: None, body: Some(body) };
    sim.add_fault(FaultRule::new(INSTALL, refusal).method("POST").count(1));
    let out = apply(&sim, json!({}));
    out.assert_fails_with(&["Ops Manager refused Apply Changes: 409 Conflict: An installation is already in progress"]);
    assert!(count(&sim, "GET", INSTALL) >= 2, "the list was read again after the refusal");
}

#[test]
fn a_killed_put_is_rerun_by_following_its_own_installation() {
    let sim = RunningSim::start(&long(staged_upgrade("")));
    let work = tempfile::tempdir().unwrap();
    let mut first = spawn_step("out", &apply_request(&sim, json!({})).to_string(), work.path());
    until_installing(&sim);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(sim.state().opsman.installations()[0].1, "running", "killed while Ops Manager works on");
    let out = apply(&sim, json!({}));
    let answer = out.json();
    assert_eq!(answer["version"][TKGI], "1.19.3-build.4");
    assert!(answer["metadata"].to_string().contains("1 (followed; nothing more to apply)"), "{answer}");
    assert!(
        out.stderr.contains("started by `repave`") && out.stderr.contains("most likely an earlier build of this put"),
        "{}",
        out.stderr
    );
    assert_eq!(count(&sim, "POST", INSTALL), 1, "followed, never started twice");
}

/// Tokens live 1 s; the installation takes 3 s: the put fetches new ones while it follows the log.
#[test]
fn the_access_token_expires_during_a_long_installation() {
    let sim = RunningSim::start(&slow(staged_upgrade("")).replace("token_ttl_secs: 3600", "token_ttl_secs: 1"));
    let out = apply(&sim, json!({}));
    assert_eq!(out.json()["version"][TKGI], "1.19.3-build.4", "{}", out.stderr);
    assert!(count(&sim, "POST", "/uaa/oauth/token") >= 3, "tokens were fetched again");
}

/// Every token is revoked as soon as the installation starts. Tokens live an hour, so the put certainly
/// uses its cached token again while it follows the 3 s installation: the 401 is answered by a new token.
/// Triggered by the simulator's state, not by a clock, so a slow machine cannot reorder it.
#[test]
fn a_token_revoked_during_the_installation_is_replaced() {
    let sim = RunningSim::start(&slow(staged_upgrade("")));
    let state = std::sync::Arc::clone(sim.state());
    let revoker = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while state.opsman.installations().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        state.uaa.revoke_all()
    });
    let out = apply(&sim, json!({}));
    assert!(revoker.join().unwrap() > 0, "the revocation came after the installation started");
    assert_eq!(out.json()["version"][TKGI], "1.19.3-build.4", "{}", out.stderr);
    assert!(out.stderr.contains("fetching a new access token"), "the revoked one was replaced: {}", out.stderr);
}

#[test]
fn the_pre_deploy_check_stops_an_incomplete_tile() {
    let sim = RunningSim::start(&world(&format!(
        "  products:\n    - {{type: {TKGI}, version: 1.19.2-build.10, staged_version: 1.19.3-build.4, incomplete: true, stemcells: [\"bosh-vsphere-esxi-ubuntu-jammy-go_agent/1.505\"]}}"
    )));
    let out = apply(&sim, json!({"pre_deploy_check": true}));
    out.assert_fails_with(&[
        "pre-deploy check found problems",
        "pivotal-container-service: .properties.network_selector: can't be blank",
    ]);
    assert_eq!(count(&sim, "POST", INSTALL), 0);
}

#[test]
fn an_errand_the_tile_does_not_have_is_named() {
    let sim = RunningSim::start(&staged_upgrade(""));
    let out = apply(&sim, json!({"errands": {TKGI: {"upgrade-all-service-instance": true}}}));
    out.assert_fails_with(&[
        "params.errands.pivotal-container-service.upgrade-all-service-instance",
        "did you mean `upgrade-all-service-instances`",
    ]);
    assert_eq!(count(&sim, "POST", INSTALL), 0);
}

/// A product type Ops Manager does not have, and a tile staged but never deployed: both are the user's to fix,
/// so the error names `source.products`.
#[test]
fn unknown_and_undeployed_tiles_are_named() {
    let sim = RunningSim::start(&world(
        "  products:\n    - {type: cf, version: 6.0.1-build.2, deployed: false, stemcells: [\"bosh-vsphere-esxi-ubuntu-jammy-go_agent/1.505\"]}",
    ));
    let typo = check(&sim, json!({"products": ["pivotal-container-servce"]}));
    typo.assert_fails_with(&[
        "source.products",
        "no staged tile of type `pivotal-container-servce`",
        "did you mean `pivotal-container-service`",
    ]);
    let undeployed = check(&sim, json!({"products": [TKGI, "cf"]}));
    undeployed.assert_fails_with(&["source.products", "the cf tile is staged", "but not deployed yet"]);
    let wrong = check(&sim, json!({"client_secret": "not-the-secret"}));
    wrong.assert_fails_with(&["/uaa/oauth/token", "client `repave`"]);
}
