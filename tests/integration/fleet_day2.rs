//! Day-2 operations of `kind: fleet` end to end (issue 14), against repave-sim's director and TKGI over
//! TLS: the age-based repave in waves (observed from the director's own counters), kill -9 and resume,
//! locks, the pre-check, `repair: true`, certificate expiry in `in` and `check`, rotation, the backup
//! gate, the fleet-file forms of `max_vm_age`, and dry-run plans of every operation.

use crate::common::day2::{
    Backup, day2_check, day2_put, day2_source, day2_world, deployment_of, recreate_order, recreates, write_backup,
};
use crate::common::{run_step, spawn_step};
use jiff::SignedDuration;
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TARGET: &str = "1.19.2-build.10";

fn names(prefix: &str, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:02}")).collect()
}

fn items(names: &[String], extra: &str) -> Vec<String> {
    names.iter().map(|n| format!("{{name: {n}{extra}}}")).collect()
}

fn refs(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

/// `{name: n, vm_age_days: d}` lines of a `deployments.clusters` list.
fn aged(list: &[(&str, u32)]) -> String {
    let lines: String = list.iter().map(|(n, d)| format!("    - {{name: {n}, vm_age_days: {d}}}\n")).collect();
    format!("  clusters:\n{lines}")
}

fn in_step(sim: &RunningSim, source_extra: Value) -> (Value, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let version = day2_check(sim, source_extra.clone());
    let request = json!({"source": day2_source(sim, source_extra), "version": version});
    run_step("in", &request.to_string(), Some(dir.path()), &[]).json();
    let clusters = serde_json::from_slice(&std::fs::read(dir.path().join("clusters.json")).unwrap()).unwrap();
    let md = std::fs::read_to_string(dir.path().join("fleet.md")).unwrap();
    (clusters, md, dir)
}

fn cluster<'a>(clusters: &'a Value, name: &str) -> &'a Value {
    clusters.as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

#[test]
fn an_age_based_repave_of_20_clusters_runs_in_waves_with_canaries_and_max_in_flight() {
    // 20 clusters in three waves; 14 have VMs older than 14 days, 6 do not.
    let canary = names("canary", 1..=1);
    let dev = names("dev", 1..=7);
    let prod = names("prod", 1..=12);
    let all: Vec<String> = [canary.clone(), dev.clone(), prod.clone()].concat();
    let young = ["dev-06", "dev-07", "prod-09", "prod-10", "prod-11", "prod-12"];
    let ages: Vec<(&str, u32)> =
        all.iter().map(|n| (n.as_str(), if young.contains(&n.as_str()) { 3 } else { 20 })).collect();
    let current = items(&all, ", pks_version: 1.19.2-build.10");
    let sim = RunningSim::start(&day2_world(&refs(&current), &aged(&ages), ""));
    let age_source = json!({"max_vm_age": "14d"});
    assert_eq!(day2_check(&sim, age_source.clone())["repave_due"], "14", "check counts the clusters due");

    let wave = |list: &[String], name: &str| -> String {
        list.iter().map(|n| format!("  - {{name: {n}, plan: small, wave: {name}}}\n")).collect()
    };
    let file = format!(
        "waves: [canary, dev, prod]\nmax_vm_age: 14d\ncanaries: 1\nmax_in_flight: 4\nclusters:\n{}{}{}",
        wave(&canary, "canary"),
        wave(&dev, "dev"),
        wave(&prod, "prod")
    );
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("fleet.yml"), file).unwrap();
    let params =
        json!({"desired": "fleet.yml", "target_version": TARGET, "recreate": {"canaries": 1, "max_in_flight": "50%"}});
    let result = day2_put(&sim, age_source.clone(), params, work.path());
    let answer = result.json();
    assert!(result.stderr.contains("it never changes the stemcell or the releases"), "{}", result.stderr);
    assert!(result.stderr.contains("14 succeeded, 0 failed, 0 not started"), "{}", result.stderr);

    // Observed from the director: one recreate per due cluster, none for the young, never more than 4 at once.
    let state = sim.state();
    for (name, days) in &ages {
        assert_eq!(recreates(&sim, name), i64::from(*days > 14), "{name} ({days} days)");
    }
    let high_water = state.high_water("director.recreates_in_flight");
    assert!((2..=4).contains(&high_water), "recreates in flight: {high_water}");
    assert_eq!(state.counter("director.recreates_raced"), 0, "no recreate raced a lock");
    let order = recreate_order(&sim);
    assert_eq!(order[0], "canary-01", "the canary first");
    let last_dev = order.iter().rposition(|n| n.starts_with("dev-")).unwrap();
    let first_prod = order.iter().position(|n| n.starts_with("prod-")).unwrap();
    assert!(last_dev < first_prod, "wave by wave: {order:?}");
    // The director's own rollout inside each deployment, and only the old VMs.
    let query = sim.requests().into_iter().find(|r| r.method == "PUT").unwrap().query.unwrap();
    for part in ["state=recreate", "canaries=1", "max_in_flight=50%25", "recreate_vms_created_before="] {
        assert!(query.contains(part), "{query}");
    }

    // New VM ages, the count back to 0, and the put's version is what check reports now.
    let (clusters, _, _dir) = in_step(&sim, age_source.clone());
    let now = jiff::Timestamp::now();
    for (name, days) in &ages {
        let oldest: jiff::Timestamp =
            cluster(&clusters, name)["repave"]["oldest_vm_created_at"].as_str().unwrap().parse().unwrap();
        let age = now.duration_since(oldest);
        if *days > 14 {
            assert!(age < SignedDuration::from_hours(1), "{name} has new VMs");
        } else {
            assert!(age > SignedDuration::from_hours(48), "{name} was left alone");
        }
    }
    let after = day2_check(&sim, age_source);
    assert_eq!(after["repave_due"], "0");
    assert_eq!(answer["version"], after);
}

#[test]
fn a_killed_repave_is_resumed_by_following_its_director_tasks() {
    let all = names("c", 1..=4);
    // One recreate step of 10000 simulated seconds: 2 s of real time per cluster.
    let deployments = "  recreate_secs: 10000\n";
    let sim = RunningSim::start(&day2_world(&refs(&items(&all, "")), deployments, ""));
    let params = json!({"operation": "repave", "max_in_flight": 2, "poll_interval": "50ms",
                        "recreate": {"canaries": 0, "max_in_flight": "100%"}});
    let request = json!({"source": day2_source(&sim, json!({})), "params": params}).to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut first = spawn_step("out", &request, dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.state().counter("director.recreates") < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill().unwrap(); // SIGKILL: the recreate tasks go on running on the director
    first.wait().unwrap();
    assert_eq!(sim.state().counter("director.recreates"), 2, "the first put started its first two");

    let resumed = run_step("out", &request, Some(dir.path()), &[]);
    resumed.json();
    assert!(resumed.stderr.contains("adopt"), "{}", resumed.stderr);
    for name in &all {
        assert_eq!(recreates(&sim, name), 1, "{name} recreated exactly once");
    }
    assert_eq!(sim.state().counter("director.recreates_raced"), 0);
    let lookup = sim.requests().into_iter().filter(|r| r.path == "/tasks").map(|r| r.query.unwrap_or_default());
    assert!(lookup.into_iter().any(|q| q.contains("state=queued")), "the rerun listed the unfinished tasks");
}

#[test]
fn a_deployment_locked_by_another_task_is_waited_on_never_raced() {
    let all = names("c", 1..=2);
    // Another task (an errand) holds c-01's deployment for 5000 simulated seconds (1 s).
    let deployments = "  clusters:\n    - {name: c-01, locked_secs: 5000}\n";
    let sim = RunningSim::start(&day2_world(&refs(&items(&all, "")), deployments, ""));
    let work = tempfile::tempdir().unwrap();
    let result = day2_put(&sim, json!({}), json!({"operation": "repave", "max_in_flight": 2}), work.path());
    result.json();
    assert!(result.stderr.contains("c-01: its deployment is locked by director task 1"), "{}", result.stderr);
    assert!(result.stderr.contains("waiting for it, never racing it"), "{}", result.stderr);
    assert_eq!((recreates(&sim, "c-01"), recreates(&sim, "c-02")), (1, 1));
    assert_eq!(sim.state().counter("director.recreates_raced"), 0, "the locked deployment was never raced");
}

/// a: healthy; b: an instance failing; c: an expired certificate; d: an unresponsive agent.
fn pre_check_world() -> RunningSim {
    let all = names("c", 1..=4);
    let deployments = "  clusters:\n    - {name: c-02, job_states: {worker/1: failing}}\n    - {name: c-03, certificate_days_left: -3}\n    - {name: c-04, job_states: {worker/0: unresponsive agent}}\n";
    RunningSim::start(&day2_world(&refs(&items(&all, "")), deployments, ""))
}

#[test]
fn a_cluster_failing_its_pre_check_is_skipped_or_fails_the_put() {
    let sim = pre_check_world();
    let work = tempfile::tempdir().unwrap();
    let failed = day2_put(&sim, json!({}), json!({"operation": "repave", "pre_check": "fail"}), work.path());
    failed.assert_fails_with(&[
        "the pre-check failed, nothing was changed (pre_check: fail)",
        "c-02: not every instance is running: worker/1 is `failing`",
        "c-03: certificate /p-bosh/",
        "expired 3 days ago",
    ]);
    assert_eq!(sim.state().counter("director.recreates"), 0, "nothing changed");

    let skipped = day2_put(&sim, json!({}), json!({"operation": "repave"}), work.path());
    skipped.json();
    assert!(skipped.stderr.contains("pre-check failed: not every instance is running: worker/1 is `failing`"));
    assert!(skipped.stderr.contains("worker/0 is `unresponsive agent`"), "{}", skipped.stderr);
    assert_eq!(
        (recreates(&sim, "c-01"), recreates(&sim, "c-02"), recreates(&sim, "c-03"), recreates(&sim, "c-04")),
        (1, 0, 0, 0)
    );

    // `recreate.fix` is the remedy for unresponsive agents: the instance check is waived for it.
    let fixed = day2_put(
        &sim,
        json!({}),
        json!({"operation": "repave", "recreate": {"fix": true}, "clusters": ["c-04"]}),
        work.path(),
    );
    fixed.json();
    assert_eq!(recreates(&sim, "c-04"), 1);
    let query = sim.requests().into_iter().rfind(|r| r.method == "PUT").unwrap().query.unwrap();
    assert!(query.contains("fix=true"), "{query}");
}

#[test]
fn repair_true_retries_a_failed_upgrade_and_the_pre_check_guards_upgrades() {
    let clusters = [
        "{name: c-01}".to_string(),
        "{name: c-02, last_action: UPGRADE, last_action_state: failed}".to_string(),
        "{name: c-03}".to_string(),
    ];
    // The failed cluster has a failing instance (what failed the upgrade); c-03 an expired certificate.
    let deployments = "  clusters:\n    - {name: c-02, job_states: {worker/2: failing}}\n    - {name: c-03, certificate_days_left: -1}\n";
    let sim = RunningSim::start(&day2_world(&refs(&clusters), deployments, ""));
    let work = tempfile::tempdir().unwrap();
    let upgrades = |name: &str| sim.state().counter(&format!("tkgi.upgrade_starts.{name}"));

    // A failure nobody dealt with stops a rollout under `on_failure: stop` before anything starts.
    let without = day2_put(&sim, json!({}), json!({}), work.path());
    without
        .assert_fails_with(&["last action UPGRADE failed and `repair` is not set", "refusing to start: c-02 failed"]);
    assert!(without.stderr.contains("c-03    | pre-check failed: certificate"), "{}", without.stderr);
    assert_eq!((upgrades("c-01"), upgrades("c-02"), upgrades("c-03")), (0, 0, 0));

    let repaired = day2_put(&sim, json!({}), json!({"repair": true}), work.path());
    repaired.json();
    assert!(repaired.stderr.contains("c-02"), "{}", repaired.stderr);
    assert_eq!((upgrades("c-01"), upgrades("c-02")), (1, 1), "the failed upgrade was run again, once");
    let fleet = sim.state().fleet.views();
    assert!(fleet.iter().any(|c| c.name == "c-02" && c.k8s_version == "1.28.11"), "c-02 reached the target");
    assert_eq!(upgrades("c-03"), 0, "still refused by its pre-check");
}

/// a: 400 days; b: 12 days; c: expired 3 days ago.
fn expiry_world(extra_tkgi: &str) -> RunningSim {
    let clusters = items(&names("c", 1..=3), ", pks_version: 1.19.2-build.10");
    let deployments =
        "  clusters:\n    - {name: c-02, certificate_days_left: 12}\n    - {name: c-03, certificate_days_left: -3}\n";
    let scenario = day2_world(&refs(&clusters), deployments, "");
    RunningSim::start(&scenario.replace("tkgi:\n", &format!("tkgi:\n{extra_tkgi}")))
}

#[test]
fn certificate_expiry_is_shown_in_in_and_counted_by_check() {
    let sim = expiry_world("");
    let version = day2_check(&sim, json!({"warn_within": "30d"}));
    assert_eq!(version["certs_expiring"], "2");
    let (clusters, md, _dir) = in_step(&sim, json!({"warn_within": "30d"}));
    let soonest = |n: &str| cluster(&clusters, n)["repave"]["soonest_certificate"].clone();
    assert_eq!(
        (soonest("c-01")["days_left"].as_i64(), soonest("c-01")["within_warn"].as_bool()),
        (Some(400), Some(false))
    );
    assert_eq!(
        (soonest("c-02")["days_left"].as_i64(), soonest("c-02")["within_warn"].as_bool()),
        (Some(12), Some(true))
    );
    assert_eq!(soonest("c-03")["days_left"].as_i64(), Some(-3));
    assert!(soonest("c-02")["name"].as_str().unwrap().starts_with("/p-bosh/service-instance_"));
    assert!(md.contains("2 with a certificate expiring within 30d (⚠)"), "{md}");
    assert!(md.contains("⚠ tls-kubelet-2018 in 12 days") && md.contains("⚠ tls-kubelet-2018 3 days ago"), "{md}");
    assert!(md.contains("| tls-kubelet-2018 in 400 days"), "{md}");
    assert!(md.contains("30d old"), "the oldest VM's age: {md}");
    assert_eq!(cluster(&clusters, "c-01")["repave"]["deployment"], deployment_of(&sim, "c-01"));
}

const ROTATE_PATH: &str = "/v1/clusters/{name}/certificates/rotate";

#[test]
fn rotation_is_refused_without_a_route_and_renews_certificates_with_one() {
    let sim = expiry_world(&format!("  rotate_path: \"{ROTATE_PATH}\"\n"));
    let work = tempfile::tempdir().unwrap();
    let refused = day2_put(&sim, json!({}), json!({"operation": "rotate"}), work.path());
    refused.assert_fails_with(&["source.rotate", "does not publish", "no default"]);
    assert_eq!(sim.state().counter("tkgi.rotations"), 0);

    let route = json!({"rotate": {"method": "POST", "path": ROTATE_PATH}, "warn_within": "30d"});
    let result = day2_put(&sim, route.clone(), json!({"operation": "rotate"}), work.path());
    let answer = result.json();
    assert!(result.stderr.contains("Certificate rotation plan"), "{}", result.stderr);
    assert!(result.stderr.contains("c-01    | soonest certificate expires in 400 days"), "{}", result.stderr);
    let state = sim.state();
    assert_eq!(
        (
            state.counter("tkgi.rotations.c-01"),
            state.counter("tkgi.rotations.c-02"),
            state.counter("tkgi.rotations.c-03")
        ),
        (0, 1, 1),
        "the expiring and the expired cluster, once each"
    );
    assert_eq!(state.high_water("tkgi.rotations_in_flight"), 1, "one cluster at a time by default");
    let after = day2_check(&sim, route);
    assert_eq!(after["certs_expiring"], "0", "renewed: nothing expires within 30 days now");
    assert_eq!(answer["version"], after);
}

#[test]
fn a_rotation_that_leaves_the_certificates_unchanged_fails_the_cluster() {
    let sim = expiry_world(&format!("  rotate_path: \"{ROTATE_PATH}\"\n"));
    let sim = {
        drop(sim);
        let clusters = ["{name: c-01, pks_version: 1.19.2-build.10, rotate_noop: true}".to_string()];
        let scenario = day2_world(&refs(&clusters), "  certificate_days_left: 5\n", "");
        RunningSim::start(&scenario.replace("tkgi:\n", &format!("tkgi:\n  rotate_path: \"{ROTATE_PATH}\"\n")))
    };
    let work = tempfile::tempdir().unwrap();
    let route = json!({"rotate": {"method": "POST", "path": ROTATE_PATH}});
    let result = day2_put(&sim, route, json!({"operation": "rotate"}), work.path());
    result.assert_fails_with(&[
        "the certificate rotation did not complete",
        "failed: c-01",
        "the certificates did not change",
    ]);
    assert_eq!(sim.state().counter("tkgi.rotations.c-01"), 1, "asked once, not again");
}

#[test]
fn require_backup_touches_only_clusters_with_a_verified_recent_backup() {
    let all = ["good", "missing", "stale", "incomplete", "failed"].map(String::from);
    let sim = RunningSim::start(&day2_world(&refs(&items(&all, "")), "", ""));
    let work = tempfile::tempdir().unwrap();
    let backups = work.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let hours = SignedDuration::from_hours;
    write_backup(&backups, &deployment_of(&sim, "good"), hours(2), Backup::Good);
    // An older broken one beside it is passed over.
    write_backup(&backups, &deployment_of(&sim, "good"), hours(5), Backup::WrongChecksum);
    write_backup(&backups, &deployment_of(&sim, "stale"), hours(72), Backup::Good);
    write_backup(&backups, &deployment_of(&sim, "incomplete"), hours(1), Backup::WrongChecksum);
    write_backup(&backups, &deployment_of(&sim, "failed"), hours(1), Backup::FailedLooking);

    let params = json!({"operation": "repave", "require_backup": {"dir": "backups", "max_age": "24h"}});
    let result = day2_put(&sim, json!({}), params, work.path());
    let answer = result.json();
    let err = &result.stderr;
    assert!(
        err.contains("good: backup service-instance_") && err.contains("verified (2 files match their SHA-256)"),
        "{err}"
    );
    assert!(err.contains("not touched without a verified backup: no backup folder `service-instance_"), "{err}");
    assert!(err.contains("is 3d old, older than max_age 1d"), "{err}");
    assert!(err.contains("`./etcd/member.json` in master-0-bbr-etcd.tar does not match its SHA-256"), "{err}");
    assert!(err.contains("metadata lists no artifact with checksums"), "{err}");
    for name in &all {
        assert_eq!(recreates(&sim, name), i64::from(name == "good"), "{name}");
    }
    let meta = answer["metadata"].as_array().unwrap();
    let refused = meta.iter().find(|m| m["name"] == "no_verified_backup").unwrap();
    assert_eq!(refused["value"], "failed, incomplete, missing, stale");
}

#[test]
fn max_vm_age_in_a_fleet_file_fleet_wide_per_cluster_and_overridden_by_the_put() {
    let all = names("c", 1..=4);
    let ages = aged(&[("c-01", 3), ("c-02", 10), ("c-03", 20), ("c-04", 40)]);
    let sim = RunningSim::start(&day2_world(&refs(&items(&all, ", pks_version: 1.19.2-build.10")), &ages, ""));
    let file = "max_vm_age: 14d\nclusters:\n  - {name: c-01, plan: small, max_vm_age: 2d}\n  - {name: c-02, plan: small}\n  - {name: c-03, plan: small}\n  - {name: c-04, plan: small, hold: true}\n";
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("fleet.yml"), file).unwrap();
    let repaved = |params: Value| -> Vec<String> {
        let mut params = params;
        params
            .as_object_mut()
            .unwrap()
            .extend(json!({"desired": "fleet.yml", "dry_run": true}).as_object().unwrap().clone());
        day2_put(&sim, json!({}), params, work.path()).json();
        let plan: Value = serde_json::from_slice(&std::fs::read(work.path().join("plan.json")).unwrap()).unwrap();
        let jobs = plan["waves"].as_array().unwrap().iter().flat_map(|w| w["jobs"].as_array().unwrap().clone());
        jobs.filter(|j| j["changes"][0]["change"] == "repave")
            .map(|j| j["cluster"].as_str().unwrap().to_string())
            .collect()
    };
    // The cluster's own 2d, the file's 14d; held clusters never.
    assert_eq!(repaved(json!({})), ["c-01", "c-03"]);
    // The put's max_vm_age overrides the file's, not the cluster's.
    assert_eq!(repaved(json!({"max_vm_age": "30d"})), ["c-01"]);
    assert_eq!(repaved(json!({"max_vm_age": "7d"})), ["c-01", "c-02", "c-03"]);
    assert_eq!(sim.state().counter("director.recreates"), 0, "dry runs");
}

#[test]
fn every_operation_has_a_dry_run_plan_and_changes_nothing() {
    let sim = expiry_world(&format!("  rotate_path: \"{ROTATE_PATH}\"\n"));
    let work = tempfile::tempdir().unwrap();
    let plan = |source: Value, params: Value| -> (Value, String, String) {
        let mut params = params;
        params.as_object_mut().unwrap().insert("dry_run".into(), json!(true));
        let result = day2_put(&sim, source, params, work.path());
        result.json();
        let json = serde_json::from_slice(&std::fs::read(work.path().join("plan.json")).unwrap()).unwrap();
        (json, std::fs::read_to_string(work.path().join("plan.md")).unwrap(), result.stderr)
    };
    let (repave, md, _) = plan(json!({}), json!({"operation": "repave", "max_vm_age": "14d"}));
    assert_eq!(repave["operation"], "repave");
    let job = &repave["waves"][0]["jobs"][0];
    assert_eq!(
        (&job["changes"][0]["change"], &job["changes"][0]["keeps_stemcell_and_releases"]),
        (&json!("repave"), &json!(true))
    );
    assert!(job["changes"][0]["recreate_vms_created_before"].is_string(), "{job}");
    assert!(md.contains("Repave plan") && md.contains("never changes the stemcell or the releases"), "{md}");
    assert!(md.contains("c-03    | pre-check failed: certificate"), "the pre-check's verdict is in the plan: {md}");

    let route = json!({"rotate": {"method": "POST", "path": ROTATE_PATH}});
    let (rotate, md, _) = plan(route, json!({"operation": "rotate", "warn_within": "30d"}));
    assert_eq!(rotate["operation"], "rotate");
    assert_eq!(rotate["waves"][0]["jobs"].as_array().unwrap().len(), 2);
    assert!(md.contains("rotate certificates"), "{md}");

    // An explicit target must be the platform's own version (TKGI upgrades only to it).
    let (upgrade, md, _) = plan(json!({}), json!({"target_version": "1.19.2-build.10"}));
    assert_eq!(upgrade["operation"], "upgrade");
    assert!(md.contains("Rollout plan to TKGI 1.19.2-build.10"), "{md}");

    let state = sim.state();
    assert_eq!((state.counter("director.recreates"), state.counter("tkgi.rotations")), (0, 0));
    assert_eq!(state.counter("tkgi.upgrade_starts"), 0);
}

#[test]
fn a_repave_rides_out_faults_on_every_director_route_without_a_second_recreate() {
    let all = names("c", 1..=3);
    let sim = RunningSim::start(&day2_world(&refs(&items(&all, "")), "", ""));
    let status = |code| FaultAction::Status { code, retry_after: None, body: Some("director busy".into()) };
    // The first recreate request is answered 502: its outcome is unknown, so repave looks for the
    // tagged task before asking again (there is none: the request never reached the director).
    sim.add_fault(FaultRule::new("/deployments/*/jobs/*", status(502)).method("PUT").count(1));
    sim.add_fault(FaultRule::new("/locks", status(503)).count(2));
    sim.add_fault(FaultRule::new("/deployments/*/instances", status(503)).method("GET").skip(1).count(2));
    sim.add_fault(FaultRule::new("/deployments/*/certificate_expiry", status(503)).count(1));
    sim.add_fault(FaultRule::new("/tasks/*", status(503)).method("GET").skip(4).count(3));
    let work = tempfile::tempdir().unwrap();
    let result = day2_put(&sim, json!({}), json!({"operation": "repave", "max_in_flight": 2}), work.path());
    result.json();
    assert!(result.stderr.contains("start request failed, re-reading before trying again"), "{}", result.stderr);
    for name in &all {
        assert_eq!(recreates(&sim, name), 1, "{name} recreated exactly once");
    }
    assert_eq!(sim.state().counter("director.recreates_raced"), 0);
    assert!(sim.faults().iter().all(|f| f.fired > 0), "every fault fired: {:?}", sim.faults());
}

#[test]
fn a_recreate_the_director_fails_fails_the_cluster_with_the_directors_words() {
    let all = names("c", 1..=3);
    let deployments = "  clusters:\n    - {name: c-02, recreate_failures: 1}\n";
    let sim = RunningSim::start(&day2_world(&refs(&items(&all, "")), deployments, ""));
    let work = tempfile::tempdir().unwrap();
    let result = day2_put(&sim, json!({}), json!({"operation": "repave", "on_failure": "continue"}), work.path());
    result.assert_fails_with(&[
        "the repave did not complete",
        "failed: c-02",
        "'worker/0 (",
        "is not running after update",
    ]);
    assert_eq!((recreates(&sim, "c-01"), recreates(&sim, "c-02"), recreates(&sim, "c-03")), (1, 1, 1));
}

/// A repave recreates the control plane too, so the health gate runs after it as after an upgrade: a
/// cluster whose apiserver does not come back ready fails, the others pass the gate and the soak.
#[test]
fn the_kubernetes_health_gate_follows_a_repave() {
    let all = names("c", 1..=2);
    let sim = RunningSim::start(&day2_world(&refs(&items(&all, "")), "", "kubernetes: {unready: [c-02]}"));
    let work = tempfile::tempdir().unwrap();
    let params = json!({"operation": "repave", "on_failure": "continue",
                        "health": {"kubernetes": true, "timeout": "300ms", "soak": "100ms"}});
    let result = day2_put(&sim, json!({}), params, work.path());
    result.assert_fails_with(&["failed: c-02", "readyz", "health checks still failing"]);
    assert!(result.stderr.contains("c-01: Kubernetes 1.27.15 is ready"), "{}", result.stderr);
    assert_eq!((recreates(&sim, "c-01"), recreates(&sim, "c-02")), (1, 1), "both repaved, once");
}

/// The answer to a rotation request is lost (the connection drops after TKGI took it) and the rotation
/// finishes before the cluster is read again: the new certificates show it happened, so it is adopted,
/// never sent a second time. (A rotation still running is adopted by its state alone.) One that never
/// reached TKGI leaves the certificates as they were, so it is sent again: each cluster rotates once.
#[test]
fn a_rotation_whose_answer_was_lost_is_not_sent_twice() {
    let sim = expiry_world(&format!("  rotate_path: \"{ROTATE_PATH}\"\n"));
    let lost = FaultAction::LoseAnswer;
    sim.add_fault(FaultRule::new("/v1/clusters/c-02/certificates/rotate", lost).method("POST").count(1));
    // c-03's first request never reaches TKGI (a 502 from a proxy): the same certificates show it, so it is sent again.
    let refused = FaultAction::Status { code: 502, retry_after: None, body: None };
    sim.add_fault(FaultRule::new("/v1/clusters/c-03/certificates/rotate", refused).method("POST").count(1));
    let work = tempfile::tempdir().unwrap();
    let route = json!({"rotate": {"method": "POST", "path": ROTATE_PATH}, "warn_within": "30d"});
    // The rotation takes 0.18 s of real time; the cluster is read again a second after the lost answer.
    let result = day2_put(&sim, route.clone(), json!({"operation": "rotate", "poll_interval": "1s"}), work.path());
    result.json();
    for name in ["c-02", "c-03"] {
        assert!(result.stderr.contains(&format!("{name}: start request failed")), "{}", result.stderr);
    }
    assert!(result.stderr.contains("c-02: rotate certificates is already under way: adopting it"), "{}", result.stderr);
    assert_eq!(sim.state().counter("tkgi.rotations.c-02"), 1, "rotated once, not again");
    assert_eq!(sim.state().counter("tkgi.rotations.c-03"), 1, "sent again, rotated once");
    assert_eq!(day2_check(&sim, route)["certs_expiring"], "0", "both renewed");
}
