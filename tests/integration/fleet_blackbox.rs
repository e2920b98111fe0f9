//! `kind: fleet` end to end: the built check/in/out binaries against repave-sim over TLS, as Concourse
//! runs them. The client secret is the harness sentinel, so every run also proves it is never printed.

use crate::common::fleet::{check, names, out, source, world};
use crate::common::{SENTINEL, run_step};
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn starts(sim: &RunningSim, name: &str) -> i64 {
    sim.state().counter(&format!("tkgi.upgrade_starts.{name}"))
}

fn total_starts(sim: &RunningSim) -> i64 {
    sim.state().counter("tkgi.upgrade_starts")
}

/// `c-01` … `c-<n>` (as `names("c", n)` lists them) were each upgraded exactly once, and nothing else was.
fn assert_each_started_once(sim: &RunningSim, n: usize) {
    assert_eq!(total_starts(sim), n as i64);
    assert!((1..=n).all(|i| starts(sim, &format!("c-{i:02}")) == 1), "every cluster upgraded exactly once");
}

fn upgrade_paths(sim: &RunningSim) -> Vec<String> {
    sim.requests().into_iter().filter(|r| r.method == "PATCH").map(|r| r.path).collect()
}

#[test]
fn happy_rollout_of_22_clusters_with_canaries_and_max_in_flight_4() {
    let scenario = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sim/scenarios/fleet.yaml")).unwrap();
    let sim = RunningSim::start(&scenario.replace("secret: repave-secret", &format!("secret: {SENTINEL}")));
    let before = check(&sim, json!({})).json();
    assert_eq!(before[0]["clusters"], "22");
    assert_eq!(before[0]["behind"], "0", "all on the same (old) version: nothing newer seen yet");

    let (result, _dir) = out(&sim, json!({"canaries": 2, "max_in_flight": 4}));
    let answer = result.json();
    assert!(result.stderr.contains("Rollout plan to TKGI 1.19.2-build.10"), "{}", result.stderr);
    assert!(result.stderr.contains("Rollout summary: 22 succeeded, 0 failed, 0 not started"), "{}", result.stderr);
    let high_water = sim.state().high_water("tkgi.upgrades_in_flight");
    assert!((2..=4).contains(&high_water), "high-water mark {high_water}");
    assert_eq!(total_starts(&sim), 22);
    assert!((1..=6).all(|i| starts(&sim, &format!("dev-{}-{i}", if i % 2 == 1 { "eu" } else { "us" })) == 1));
    let paths = upgrade_paths(&sim);
    assert_eq!(paths[..2], ["/v1/clusters/dev-eu-1", "/v1/clusters/dev-eu-3"], "canaries first, by name");

    // The put's version is exactly what check reports for the state it left.
    let after = check(&sim, json!({})).json();
    assert_eq!(answer["version"], after[0]);
    assert_ne!(after[0]["digest"], before[0]["digest"]);
    assert_eq!(after[0]["newest_tkgi"], "1.19.2-build.10");
    let meta: Vec<String> = answer["metadata"].as_array().unwrap().iter().map(|m| m["name"].to_string()).collect();
    assert!(meta.contains(&"\"planned\"".to_string()) && meta.contains(&"\"failed\"".to_string()));

    // Idempotent: a second put plans nothing and starts nothing.
    let (again, _dir) = out(&sim, json!({"canaries": 2, "max_in_flight": 4}));
    assert_eq!(again.json()["version"], after[0]);
    assert!(again.stderr.contains("nothing to upgrade"), "{}", again.stderr);
    assert_eq!(total_starts(&sim), 22);
}

#[test]
fn canary_failure_stops_with_the_rest_untouched() {
    let mut clusters = names("c", 6);
    clusters[2] = "{name: c-03, upgrade_failures: 1}".into();
    let refs: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let sim = RunningSim::start(&world(&refs, 1200, ""));
    let (result, _dir) = out(&sim, json!({"canaries": ["c-03", "c-01"], "max_in_flight": 3, "on_failure": "continue"}));
    result.assert_fails_with(&["canary c-03 failed", "failed: c-03", "not started: "]);
    assert_eq!(total_starts(&sim), 1, "only the failed canary was ever started");
    assert_eq!(upgrade_paths(&sim), ["/v1/clusters/c-03"]);
}

#[test]
fn continue_mode_finishes_the_others_and_exits_1() {
    let mut clusters = names("c", 8);
    clusters[4] = "{name: c-05, upgrade_failures: 1, failure_state: error}".into();
    let refs: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let sim = RunningSim::start(&world(&refs, 1200, ""));
    let (result, _dir) = out(&sim, json!({"canaries": 1, "max_in_flight": 2, "on_failure": "continue"}));
    result.assert_fails_with(&["failed: c-05", "not started: none", "7 succeeded, 1 failed"]);
    assert_eq!(total_starts(&sim), 8);
    assert!(sim.state().high_water("tkgi.upgrades_in_flight") <= 2);
}

#[test]
fn stop_mode_starts_nothing_after_a_failure() {
    let mut clusters = names("c", 8);
    clusters[1] = "{name: c-02, upgrade_failures: 1, upgrade_secs: 600}".into();
    let refs: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let sim = RunningSim::start(&world(&refs, 1200, ""));
    let (result, _dir) = out(&sim, json!({"max_in_flight": 2}));
    result.assert_fails_with(&["failed: c-02", "on_failure is stop"]);
    // c-01 was running alongside c-02 and was awaited; nothing started after the failure.
    assert_eq!(total_starts(&sim), 2);
    assert!(result.stderr.contains("1 succeeded, 1 failed, 6 not started"), "{}", result.stderr);
}

/// Tokens live 1 s while the rollout takes several: the client fetches new ones before they expire.
#[test]
fn tokens_expire_mid_rollout() {
    let clusters = names("c", 6);
    let refs: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let sim = RunningSim::start(&world(&refs, 2500, "").replace("token_ttl_secs: 3600", "token_ttl_secs: 1"));
    let (result, _dir) = out(&sim, json!({"max_in_flight": 2}));
    result.json();
    let tokens = sim.requests().iter().filter(|r| r.path == "/oauth/token").count();
    assert!(tokens >= 3, "tokens were refreshed during the rollout ({tokens} token requests)");
    assert_each_started_once(&sim, 6);
}

/// Every token is revoked once the first upgrade has started. Tokens live an hour, so the client's cached
/// token is certainly used again after the revocation (the rollout still has seconds of polling and five
/// starts to go): the API's 401 is answered by one new token and the same request again, not by a failure.
/// Triggered by the simulator's state, not by a clock, so a slow machine cannot reorder it.
#[test]
fn a_token_revoked_mid_rollout_is_replaced() {
    let clusters = names("c", 6);
    let refs: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let sim = RunningSim::start(&world(&refs, 2500, ""));
    let revoker = {
        let state = std::sync::Arc::clone(sim.state());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while state.counter("tkgi.upgrade_starts") == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            state.uaa.revoke_all()
        })
    };
    let (result, _dir) = out(&sim, json!({"max_in_flight": 2}));
    result.json();
    assert!(revoker.join().unwrap() > 0, "the revocation came after the first start");
    assert!(sim.requests().iter().any(|r| r.status == 401), "the revoked token was answered with 401");
    assert!(result.stderr.contains("fetching a new access token"), "{}", result.stderr);
    assert_each_started_once(&sim, 6);
}

#[test]
fn api_down_for_a_while_then_back() {
    let clusters = names("c", 4);
    let refs: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let sim = RunningSim::start(&world(&refs, 2500, ""));
    // After the first few reads, every read fails with 503 for a while (more than one request's retries).
    let down = FaultAction::Status { code: 503, retry_after: None, body: Some("upstream down".into()) };
    sim.add_fault(FaultRule::new("/v1/clusters/*", down).method("GET").skip(3).count(25));
    let (result, _dir) = out(&sim, json!({"max_in_flight": 2}));
    result.json();
    assert!(result.stderr.contains("503"), "the outage was noticed:\n{}", result.stderr);
    assert!(sim.requests().iter().filter(|r| r.status == 503).count() >= 25);
    assert_eq!(total_starts(&sim), 4, "no cluster started twice");
}

#[test]
fn busy_clusters_are_skipped_and_409_is_waited_on() {
    let sim = RunningSim::start(&world(
        &["{name: a}", "{name: b, last_action: UPDATE, last_action_state: in progress}", "{name: c}"],
        1200,
        "",
    ));
    let busy =
        FaultAction::Status { code: 409, retry_after: None, body: Some(r#"{"body":"cluster c is busy"}"#.into()) };
    sim.add_fault(FaultRule::new("/v1/clusters/c", busy).method("PATCH").count(2));
    let (result, _dir) = out(&sim, json!({}));
    result.json();
    assert!(result.stderr.contains("held by another action in progress (UPDATE)"), "{}", result.stderr);
    assert!(result.stderr.contains("busy, waiting"), "{}", result.stderr);
    assert_eq!((starts(&sim, "a"), starts(&sim, "b"), starts(&sim, "c")), (1, 0, 1));
    assert_eq!(upgrade_paths(&sim).iter().filter(|p| p.ends_with("/c")).count(), 3, "two 409s, then accepted");
}

#[test]
fn dry_run_changes_nothing() {
    let clusters = names("c", 5);
    let refs: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let sim = RunningSim::start(&world(&refs, 1200, ""));
    let (result, _dir) = out(&sim, json!({"dry_run": true, "canaries": 1}));
    let answer = result.json();
    assert!(result.stderr.contains("| 1   | c-01    | canary"), "{}", result.stderr);
    assert!(result.stderr.contains("dry run: nothing was changed"));
    assert!(upgrade_paths(&sim).is_empty());
    assert_eq!(answer["version"], check(&sim, json!({})).json()[0]);
}

#[test]
fn killed_out_then_second_out_finishes_without_double_starts() {
    let clusters = names("c", 8);
    let refs: Vec<&str> = clusters.iter().map(String::as_str).collect();
    // Each upgrade takes about one second.
    let sim = RunningSim::start(&world(&refs, 5000, ""));
    let dir = tempfile::tempdir().unwrap();
    let request = json!({"source": source(&sim, json!({})), "params": {"max_in_flight": 3, "poll_interval": "50ms"}});
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("out"))
        .arg(dir.path())
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while total_starts(&sim) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(total_starts(&sim), 3, "the first out started its first batch");
    child.kill().unwrap(); // SIGKILL: no cleanup, upgrades keep running on the platform
    child.wait().unwrap();

    let (result, _dir) = out(&sim, json!({"max_in_flight": 3}));
    result.json();
    assert!(result.stderr.contains("adopt"), "{}", result.stderr);
    for i in 1..=8 {
        assert_eq!(starts(&sim, &format!("c-{i:02}")), 1, "c-{i:02} started exactly once");
    }
    assert!(sim.state().high_water("tkgi.upgrades_in_flight") <= 3);
}

#[test]
fn wrong_secret_is_a_clear_error_without_the_secret() {
    let sim = RunningSim::start(&world(&["{name: a}"], 1200, "").replace(SENTINEL, "the-right-secret"));
    let result = check(&sim, json!({}));
    result.assert_fails_with(&["UAA rejected the credentials of client `repave`", "invalid_client"]);
}

#[test]
fn in_writes_the_report_and_private_kubeconfigs() {
    let sim = RunningSim::start(&world(
        &["{name: b-1, pks_version: 1.19.2-build.10}", "{name: a-1}", "{name: x-1}"],
        1200,
        "",
    ));
    let extra = json!({"clusters": ["*-1", "!x-*"]});
    let version = check(&sim, extra.clone()).json()[0].clone();
    assert_eq!((version["clusters"].as_str(), version["behind"].as_str()), (Some("2"), Some("1")));
    let dir = tempfile::tempdir().unwrap();
    let request = json!({"source": source(&sim, extra), "params": {"kubeconfig": true}, "version": version});
    let result = run_step("in", &request.to_string(), Some(dir.path()), &[]);
    assert_eq!(result.json()["version"], version);
    let clusters: Value = serde_json::from_slice(&std::fs::read(dir.path().join("clusters.json")).unwrap()).unwrap();
    let listed: Vec<&str> = clusters.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["a-1", "b-1"]);
    assert_eq!(clusters[0]["repave"]["behind"], true);
    assert_eq!(clusters[0]["plan_name"], "small", "the API's own fields are kept");
    let md = std::fs::read_to_string(dir.path().join("fleet.md")).unwrap();
    assert!(md.contains("| a-1     | small | 1.18.5-build.10 |") && md.contains("| yes"), "{md}");
    use std::os::unix::fs::PermissionsExt;
    let kubeconfig = dir.path().join("kubeconfigs/a-1.json");
    assert_eq!(std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);
    let config: Value = serde_json::from_slice(&std::fs::read(&kubeconfig).unwrap()).unwrap();
    let token = config["users"][0]["user"]["token"].as_str().unwrap();
    assert!(!result.stderr.contains(token), "kubeconfig token logged");
}

#[test]
fn kubernetes_health_gate_fails_an_unready_cluster() {
    let sim = RunningSim::start(&world(&["{name: a}", "{name: b}"], 1200, "kubernetes: {unready: [a]}"));
    let params = json!({"on_failure": "continue", "health": {"kubernetes": true, "timeout": "300ms", "soak": "100ms"}});
    let (result, _dir) = out(&sim, params);
    result.assert_fails_with(&["failed: a", "readyz", "health checks still failing"]);
    assert!(result.stderr.contains("b: Kubernetes 1.28.11 is ready"), "{}", result.stderr);
}

#[test]
fn target_must_be_known() {
    let sim =
        RunningSim::start(&world(&["{name: a}"], 1200, "").replace("tkgi:\n", "tkgi:\n  version_path: /elsewhere\n"));
    let (result, _dir) = out(&sim, json!({}));
    result.assert_fails_with(&["cannot determine the target TKGI version", "params.target_version"]);
    assert!(upgrade_paths(&sim).is_empty());
    // An explicit target works without the route.
    let (result, _dir) = out(&sim, json!({"target_version": "1.19.2-build.10"}));
    result.json();
    assert_eq!(total_starts(&sim), 1);
}

#[test]
fn password_login_through_pks_cli() {
    let sim = RunningSim::start(&world(&["{name: a}"], 1200, "").replace(
        "  token_ttl_secs: 3600\n",
        &format!("  users: [{{username: ops, password: {SENTINEL}, scopes: [pks.clusters.manage]}}]\n  token_ttl_secs: 3600\n"),
    ));
    let mut s = source(&sim, json!({"username": "ops", "password": SENTINEL}));
    s.as_object_mut().unwrap().retain(|k, _| k != "client_id" && k != "client_secret");
    let result = run_step("check", &json!({"source": s}).to_string(), None, &[]);
    assert_eq!(result.json()[0]["clusters"], "1");
}

#[tokio::test]
async fn director_deployments_match_the_tkgi_clusters() {
    use repave::clients::uaa::{Grant, Uaa};
    use repave::http::{HttpClient, HttpConfig, Retry};
    let sim = RunningSim::start(
        &world(&["{name: a, uuid: 9527ebaa-e2fa-422f-a52b-de3c3f0e39a4}", "{name: b}"], 1200, "")
            .replace("scopes: [pks.clusters.admin]", "scopes: [pks.clusters.admin, bosh.admin]"),
    );
    let config =
        HttpConfig { ca_cert: Some(std::fs::read_to_string(sim.ca_cert_path()).unwrap()), ..HttpConfig::default() };
    let http = HttpClient::new(config, &repave::Env::new(), &repave::redact::Log::sink()).unwrap();
    let grant = Grant::ClientCredentials { client_id: "repave".into(), client_secret: SENTINEL.into() };
    let uaa = Uaa::new(http, sim.url(), grant);
    let get = |path: &str| {
        let url = format!("{}{path}", sim.url());
        let uaa = &uaa;
        async move { uaa.send(Retry::Idempotent, |c| c.get(&url)).await.unwrap().json::<Value>().await.unwrap() }
    };
    let clusters = get("/v1/clusters").await;
    let deployments = get("/deployments").await;
    let uuids: Vec<String> =
        clusters.as_array().unwrap().iter().map(|c| c["uuid"].as_str().unwrap().to_string()).collect();
    assert_eq!(uuids[0], "9527ebaa-e2fa-422f-a52b-de3c3f0e39a4");
    let names: Vec<&str> = deployments.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, uuids.iter().map(|u| format!("service-instance_{u}")).collect::<Vec<_>>());
    assert_eq!(deployments[0]["stemcells"][0]["version"], "1.445");
}

/// The stemcell line of the sim's TKGI clusters (its `tkgi.stemcell_name` default).
const STEMCELL: &str = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";

/// Four clusters already at the platform's TKGI version on stemcell 1.445 (the sim's default), a TKGI tile in
/// Ops Manager on 1.445 too, a director that has 1.445 and a bosh.io that publishes 1.506. An upgrade lands on the
/// tile's stemcell (the broker's configuration), never on one only uploaded to the director.
fn stemcell_world() -> String {
    let clusters: Vec<String> = (1..=4).map(|i| format!("{{name: c-{i:02}, pks_version: 1.19.2-build.10}}")).collect();
    let refs: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let extra = format!(
        "boshio:\n  stemcells:\n    - name: {STEMCELL}\n      versions: [{{version: \"1.506\", regular: {{size: 1000}}}}]\ndirector:\n  stemcells: [{{name: {STEMCELL}, version: \"1.445\"}}]\n  task_polls: 1\n"
    );
    world(&refs, 1200, &extra)
        .replace("scopes: [pks.clusters.admin]", "scopes: [pks.clusters.admin, bosh.admin]")
        .replace("tkgi:\n", "tkgi:\n  stemcell_version: \"1.445\"\n")
}

fn director(sim: &RunningSim) -> Value {
    json!({"director": {"url": sim.url(), "client": "repave", "client_secret": SENTINEL}})
}

/// Each cluster's deployment stemcell as the sim's director reports it.
fn deployed_stemcells(sim: &RunningSim) -> Vec<String> {
    sim.state().fleet.views().into_iter().map(|c| c.stemcell).collect()
}

/// A fleet `out` with a director in `source`, run in `work` (where a stemcell get left `stemcell/`).
fn fleet_put(sim: &RunningSim, work: &std::path::Path, params: Value) -> crate::common::StepOutput {
    let mut params = params;
    params.as_object_mut().unwrap().insert("poll_interval".into(), json!("50ms"));
    let request = json!({"source": source(sim, director(sim)), "params": params});
    run_step("out", &request.to_string(), Some(work), &[])
}

/// What the old pipeline did — upload the stemcell to the director, then upgrade the clusters — does not move
/// them on a TKGI foundation: the broker builds clusters from the tile's stemcell. The put says so instead of
/// reporting success (the path that works, through Ops Manager, is `opsman_flow`).
#[test]
fn a_stemcell_only_uploaded_to_the_director_does_not_reach_the_clusters() {
    let sim = RunningSim::start(&stemcell_world());
    let work = tempfile::tempdir().unwrap();
    let ca = std::fs::read_to_string(sim.ca_cert_path()).unwrap();
    let stemcell_source = json!({"kind": "stemcell", "name": STEMCELL, "api_url": sim.url(), "ca_cert": ca,
        "http": {"max_backoff": "20ms"}, "director": {"url": sim.url(), "client": "repave", "client_secret": SENTINEL}});
    std::fs::create_dir_all(work.path().join("stemcell")).unwrap();
    let get = json!({"source": stemcell_source, "params": {"tarball": false}, "version": {"version": "1.506"}});
    run_step("in", &get.to_string(), Some(&work.path().join("stemcell")), &[]).json();
    let put = json!({"source": stemcell_source, "params": {"from": "stemcell"}});
    assert_eq!(run_step("out", &put.to_string(), Some(work.path()), &[]).json()["version"]["version"], "1.506");
    assert!(sim.state().director.stemcells().contains(&(STEMCELL.to_string(), "1.506".to_string())));

    let params = json!({"target_stemcell_file": "stemcell/version", "canaries": 1, "max_in_flight": 2});
    let result = fleet_put(&sim, work.path(), params);
    assert!(result.stderr.contains("| canary upgrade | stemcell 1.445 → 1.506 |"), "{}", result.stderr);
    result.assert_fails_with(&[
        "canary c-01 failed",
        "ended on stemcell 1.445, not the target 1.506",
        "used by the TKGI tile",
    ]);
    assert_eq!(deployed_stemcells(&sim), ["1.445"; 4]);
    assert_eq!(total_starts(&sim), 1, "the failed canary stopped the rollout");
}

#[test]
fn an_upgrade_that_lands_on_an_older_stemcell_fails_naming_it() {
    // Nothing assigned to the tile: TKGI redeploys with the tile's stemcell, 1.445.
    let sim = RunningSim::start(&stemcell_world());
    let work = tempfile::tempdir().unwrap();
    let result = fleet_put(&sim, work.path(), json!({"target_stemcell": "1.506", "canaries": 1}));
    result.assert_fails_with(&["canary c-01 failed", "ended on stemcell 1.445, not the target 1.506"]);
    assert_eq!(total_starts(&sim), 1, "the failed canary stopped the rollout");
}

#[test]
fn a_newer_stemcell_is_not_downgraded() {
    let sim = RunningSim::start(&stemcell_world().replace("{name: c-01, ", "{name: c-01, stemcell: \"1.510\", "));
    let work = tempfile::tempdir().unwrap();
    let result = fleet_put(&sim, work.path(), json!({"target_stemcell": "1.445", "dry_run": true}));
    result.json();
    assert!(result.stderr.contains("on stemcell 1.510, newer than the target stemcell 1.445: not downgraded"));
    assert!(result.stderr.contains("nothing to upgrade"), "{}", result.stderr);
}

#[test]
fn a_stemcell_target_needs_a_director() {
    let sim = RunningSim::start(&stemcell_world());
    let (result, _dir) = out(&sim, json!({"target_stemcell": "1.506"}));
    result.assert_fails_with(&["params.target_stemcell", "params.target_stemcell_file", "need source.director"]);
    assert!(upgrade_paths(&sim).is_empty());
}
