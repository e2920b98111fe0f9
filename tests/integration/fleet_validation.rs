//! Everything a fleet `out` can judge is judged before the first change, by a dry run as much as by a
//! real one (issue 15, items 7 and 10): a target that is no version, another version than the
//! platform's, a downgrade, a skipped minor, and a fleet file's plan the platform does not offer. Each
//! refusal names what is wrong, and the simulator shows that nothing started.

use crate::common::StepOutput;
use crate::common::fleet::{out, source, world};
use crate::common::run_step;
use repave_sim::testing::RunningSim;
use serde_json::{Value, json};

fn changes(sim: &RunningSim) -> usize {
    sim.requests()
        .iter()
        .filter(|r| matches!(r.method.as_str(), "PATCH" | "POST" | "DELETE") && r.path.starts_with("/v1/clusters"))
        .count()
}

/// A real run and a dry run of `params`; both must fail with `needles`, and nothing may change.
fn refused_both_ways(sim: &RunningSim, params: Value, needles: &[&str]) {
    for dry_run in [true, false] {
        let mut params = params.clone();
        params["dry_run"] = json!(dry_run);
        let (result, _dir) = out(sim, params);
        result.assert_fails_with(needles);
    }
    assert_eq!(changes(sim), 0, "something changed: {:?}", sim.requests());
}

/// A platform whose own version cannot be read (the assumed route is elsewhere), so an explicit
/// target is all there is.
fn without_version_route(clusters: &[&str]) -> RunningSim {
    RunningSim::start(&world(clusters, 1200, "").replace("tkgi:\n", "tkgi:\n  version_path: /elsewhere\n"))
}

#[test]
fn a_target_that_is_no_version_changes_nothing() {
    let sim = without_version_route(&["{name: a}", "{name: b}"]);
    refused_both_ways(&sim, json!({"target_version": "garbage"}), &["the target `garbage` is not a TKGI version"]);
}

#[test]
fn a_target_other_than_the_platforms_own_changes_nothing() {
    let sim = RunningSim::start(&world(&["{name: a}"], 1200, ""));
    refused_both_ways(
        &sim,
        json!({"target_version": "1.19.3-build.1"}),
        &[
            "params.target_version is 1.19.3-build.1, but the platform reports TKGI 1.19.2-build.10",
            "could never reach",
        ],
    );
}

#[test]
fn a_downgrade_changes_nothing() {
    let sim = without_version_route(&["{name: a}", "{name: b, pks_version: 1.17.9-build.1}"]);
    refused_both_ways(
        &sim,
        json!({"target_version": "1.17.9-build.1"}),
        &["cannot be reached in one upgrade", "a: 1.18.5-build.10 → 1.17.9-build.1 is a downgrade"],
    );
}

#[test]
fn a_skipped_minor_changes_nothing_and_names_the_path() {
    let sim = RunningSim::start(&world(&["{name: a}", "{name: old, pks_version: 1.17.3-build.2}"], 1200, ""));
    refused_both_ways(&sim, json!({}), &["old: 1.17 → 1.19 skips a minor", "upgrade 1.17 → 1.18 → 1.19"]);
}

fn apply(sim: &RunningSim, fleet: &str, dry_run: bool) -> StepOutput {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("repo")).unwrap();
    std::fs::write(dir.path().join("repo/fleet.yml"), fleet).unwrap();
    let params = json!({"desired": "repo/fleet.yml", "dry_run": dry_run, "poll_interval": "50ms"});
    let request = json!({"source": source(sim, json!({})), "params": params});
    run_step("out", &request.to_string(), Some(dir.path()), &[])
}

#[test]
fn a_fleet_files_plan_the_platform_lacks_changes_nothing() {
    let sim = RunningSim::start(&world(&["{name: a}"], 1200, ""));
    let file =
        "master_host: '{name}.example.com'\nclusters:\n  - {name: a, plan: small}\n  - {name: new, plan: smal}\n";
    for dry_run in [true, false] {
        apply(&sim, file, dry_run).assert_fails_with(&[
            "cluster `new` asks for plan `smal`, did you mean `small`?",
            "the platform's plans: small, medium, large",
            "nothing was changed",
        ]);
    }
    assert_eq!(changes(&sim), 0, "the upgrade of `a` must not have started: {:?}", sim.requests());
    // The same file with the plan fixed is applied.
    apply(&sim, &file.replace("plan: smal}", "plan: small}"), false).json();
    assert_eq!(sim.state().counter("tkgi.creates.new"), 1);
}
