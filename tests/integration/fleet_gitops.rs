//! Desired fleet files, waves and maintenance windows end to end: the built `out`/`check` binaries
//! against repave-sim over TLS. Assertions come from the simulator's counters, request log and state;
//! every put's version is compared with what `check` reports afterwards.

use crate::common::{SENTINEL, StepOutput, run_step};
use repave_sim::testing::RunningSim;
use serde_json::{Value, json};

const TARGET: &str = "1.19.2-build.10";

/// Clusters (YAML list items) in a world where upgrades take `upgrade_secs` simulated seconds
/// (×0.0002 real) and creates/resizes/deletes 1000 (200 ms).
fn world(clusters: &[&str], upgrade_secs: u32) -> String {
    let items: String = clusters.iter().map(|c| format!("    - {c}\n")).collect();
    format!(
        "time_scale: 0.0002\nuaa:\n  clients: [{{id: repave, secret: {SENTINEL}, scopes: [pks.clusters.admin]}}]\n  token_ttl_secs: 3600\ntkgi:\n  upgrade_secs: {upgrade_secs}\n  create_secs: 1000\n  resize_secs: 1000\n  delete_secs: 1000\n  clusters:\n{items}"
    )
}

fn check(sim: &RunningSim) -> Value {
    crate::common::fleet::check(sim, json!({})).json()[0].clone()
}

fn source(sim: &RunningSim) -> Value {
    crate::common::fleet::source(sim, json!({}))
}

/// Runs `out` with `fleet` written to `fleet-repo/fleet.yml` in the put's directory.
fn apply(sim: &RunningSim, fleet: &str, params: Value, env: &[(&str, &str)]) -> (StepOutput, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("fleet-repo")).unwrap();
    std::fs::write(dir.path().join("fleet-repo/fleet.yml"), fleet).unwrap();
    let mut params = params;
    let map = params.as_object_mut().unwrap();
    map.entry("poll_interval").or_insert(json!("50ms"));
    map.entry("desired").or_insert(json!("fleet-repo/fleet.yml"));
    let request = json!({"source": source(sim), "params": params});
    (run_step("out", &request.to_string(), Some(dir.path()), env), dir)
}

fn counter(sim: &RunningSim, name: &str) -> i64 {
    sim.state().counter(name)
}

/// Request-log index of every start request (upgrade/resize PATCH, create POST, DELETE), in order.
fn starts(sim: &RunningSim) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.status < 300 && matches!(r.method.as_str(), "PATCH" | "POST" | "DELETE"))
        .filter(|r| r.path.starts_with("/v1/clusters") && !r.path.ends_with("/binds"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

const THREE_WAVES: &str = "\
# canary first, then dev, then prod; two at a time; a short soak between waves.
waves: [canary, dev, prod]
max_in_flight: 2
soak: 100ms
master_host: '{name}.k8s.example.com'
clusters:
  - {name: can-1, plan: small, wave: canary}
  - {name: dev-1, plan: small, wave: dev}
  - {name: dev-2, plan: small, wave: dev}
  - {name: dev-3, plan: small, workers: 5, wave: dev}
  - {name: dev-new, plan: small, workers: 2, wave: dev}
  - {name: prod-1, plan: large, wave: prod}
  - {name: prod-2, plan: large, wave: prod}
  - {name: prod-held, plan: large, wave: prod, hold: true}
  - {name: prod-new, plan: large, wave: prod}
";

#[test]
fn a_fleet_file_creates_2_resizes_1_and_upgrades_5_in_3_waves() {
    let sim = RunningSim::start(&world(
        &[
            "{name: can-1}",
            "{name: dev-1}",
            "{name: dev-2}",
            "{name: dev-3, pks_version: 1.19.2-build.10, workers: 3}",
            "{name: prod-1, plan_name: large}",
            "{name: prod-2, plan_name: large}",
            "{name: prod-held, plan_name: large}",
        ],
        1000,
    ));
    let (result, _dir) = apply(&sim, THREE_WAVES, json!({}), &[]);
    let answer = result.json();
    assert!(result.stderr.contains("| can-1    | upgrade"), "{}", result.stderr);
    assert!(result.stderr.contains("prod-held | held (`hold: true`)"), "{}", result.stderr);
    assert!(result.stderr.contains("soaking 100ms before wave `dev`"), "{}", result.stderr);
    assert_eq!(counter(&sim, "tkgi.creates"), 2);
    assert_eq!(counter(&sim, "tkgi.resizes"), 1);
    assert_eq!(counter(&sim, "tkgi.resizes.dev-3"), 1);
    assert_eq!(counter(&sim, "tkgi.upgrade_starts"), 5);
    assert_eq!(counter(&sim, "tkgi.upgrade_starts.prod-held"), 0, "held cluster untouched");
    assert!(sim.state().high_water("tkgi.actions_in_flight") <= 2);

    // Waves in order: the canary first, every dev start before any prod start.
    let order = starts(&sim);
    assert_eq!(order[0], "PATCH /v1/clusters/can-1", "{order:?}");
    let last_dev = order.iter().rposition(|s| s.contains("/dev-")).unwrap();
    let first_prod = order.iter().position(|s| s.contains("/prod-")).unwrap();
    assert!(last_dev < first_prod, "{order:?}");
    let posts: Vec<usize> = order.iter().enumerate().filter(|(_, s)| s.starts_with("POST")).map(|(i, _)| i).collect();
    assert!(posts[0] < first_prod && posts[1] > first_prod, "dev-new in dev, prod-new in prod: {order:?}");

    // The put's version is what check reports, and a second apply finds nothing to do.
    let after = check(&sim);
    assert_eq!(answer["version"], after);
    assert_eq!(after["clusters"], "9");
    let (again, _dir) = apply(&sim, THREE_WAVES, json!({}), &[]);
    assert_eq!(again.json()["version"], after);
    assert!(again.stderr.contains("nothing to upgrade"), "{}", again.stderr);
    assert_eq!(counter(&sim, "tkgi.upgrade_starts") + counter(&sim, "tkgi.creates") + counter(&sim, "tkgi.resizes"), 8);
}

/// A failure in a later wave stops the waves after it, even with `on_failure: continue` inside the
/// wave: the failed wave's other clusters finish, nothing of the next wave starts.
#[test]
fn a_failure_in_a_later_wave_stops_the_waves_after_it() {
    let sim = RunningSim::start(&world(
        &["{name: a-1}", "{name: b-1, upgrade_failures: 1}", "{name: b-2}", "{name: c-1}", "{name: c-2}"],
        1000,
    ));
    let fleet = "waves: [a, b, c]\nmax_in_flight: 2\nclusters:\n  - {name: a-1, plan: small, wave: a}\n  \
                 - {name: b-1, plan: small, wave: b}\n  - {name: b-2, plan: small, wave: b}\n  \
                 - {name: c-1, plan: small, wave: c}\n  - {name: c-2, plan: small, wave: c}\n";
    let (result, _dir) = apply(&sim, fleet, json!({"on_failure": "continue"}), &[]);
    result.assert_fails_with(&["b-1", "c-1", "c-2"]);
    assert_eq!(counter(&sim, "tkgi.upgrade_starts.a-1"), 1);
    assert_eq!(counter(&sim, "tkgi.upgrade_starts.b-1"), 1);
    assert_eq!(counter(&sim, "tkgi.upgrade_starts.b-2"), 1, "continue: the failed wave's other clusters finish");
    assert_eq!(counter(&sim, "tkgi.upgrade_starts.c-1") + counter(&sim, "tkgi.upgrade_starts.c-2"), 0);
}

#[test]
fn prune_needs_prune_true_and_never_exceeds_the_cap() {
    let current = format!("pks_version: {TARGET}");
    let clusters: Vec<String> =
        ["keep", "x-1", "x-2", "x-3"].iter().map(|n| format!("{{name: {n}, {current}}}")).collect();
    let refs: Vec<&str> = clusters.iter().map(String::as_str).collect();
    let sim = RunningSim::start(&world(&refs, 1000));
    let file = "clusters:\n  - {name: keep, plan: small}\n";

    let (result, _dir) = apply(&sim, file, json!({}), &[]);
    result.json();
    assert_eq!(counter(&sim, "tkgi.deletes"), 0);
    assert!(result.stderr.contains("`prune` is not set"), "{}", result.stderr);

    let (result, _dir) = apply(&sim, file, json!({"prune": true, "max_prunes": 2}), &[]);
    let answer = result.json();
    assert_eq!(counter(&sim, "tkgi.deletes"), 2);
    assert_eq!((counter(&sim, "tkgi.deletes.x-1"), counter(&sim, "tkgi.deletes.x-2")), (1, 1));
    assert!(
        result.stderr.contains("x-3     | not in the fleet file, but this run already prunes 2"),
        "{}",
        result.stderr
    );
    let after = check(&sim);
    assert_eq!(answer["version"], after);
    assert_eq!(after["clusters"], "2", "keep and x-3 remain");
}

#[test]
fn outside_the_window_out_refuses_or_skips_with_the_version_unchanged() {
    let sim = RunningSim::start(&world(&["{name: a}", "{name: b}"], 1000));
    let file = "window: Sat,Sun 02:00-06:00 Europe/London\nclusters:\n  - {name: a, plan: small}\n  - {name: b, plan: small}\n";
    // A Wednesday noon.
    let wednesday = [("REPAVE_NOW", "2026-11-25T12:00:00Z")];
    let (result, _dir) = apply(&sim, file, json!({}), &wednesday);
    result.assert_fails_with(&[
        "refusing to start",
        "is closed; next opens Sat 2026-11-28 02:00 GMT",
        "outside_window: skip",
    ]);

    let before = check(&sim);
    let (result, _dir) = apply(&sim, file, json!({"outside_window": "skip"}), &wednesday);
    assert_eq!(result.json()["version"], before, "skip emits the unchanged fleet version");
    assert!(starts(&sim).is_empty(), "nothing started: {:?}", starts(&sim));

    // Inside the window the same file applies.
    let (result, _dir) = apply(&sim, file, json!({}), &[("REPAVE_NOW", "2026-11-28T03:00:00Z")]);
    assert_eq!(result.json()["version"], check(&sim));
    assert_eq!(counter(&sim, "tkgi.upgrade_starts"), 2);
}

/// The window closes 8 s after the put starts and each upgrade takes 3 s, one at a time: at most
/// three start before it closes, and the first starts unless the machine needs 8 s to get going. A
/// slower machine only starts fewer, so the test holds under load; nothing in it is timed.
#[test]
fn when_the_window_closes_mid_run_nothing_new_starts_and_running_clusters_finish() {
    let names: Vec<String> = (1..=6).map(|i| format!("{{name: c-{i}}}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let sim = RunningSim::start(&world(&refs, 15000));
    let file: String = "window: Sat 02:00-06:00 UTC\nclusters:\n".to_string()
        + &(1..=6).map(|i| format!("  - {{name: c-{i}, plan: small}}\n")).collect::<String>();
    let (result, _dir) = apply(&sim, &file, json!({}), &[("REPAVE_NOW", "2026-11-28T05:59:52Z")]);
    result.assert_fails_with(&["the maintenance window closed", "not started: c-"]);
    let gate = "no new cluster starts: the maintenance window closed";
    assert!(result.stderr.contains(gate), "{}", result.stderr);

    let started = counter(&sim, "tkgi.upgrade_starts");
    assert!((1..6).contains(&started), "some but not all started: {started}");
    // Every start the simulator saw was made before the put's own clock closed the gate.
    let before_gate = result.stderr.split(gate).next().unwrap_or_default();
    assert_eq!(before_gate.matches("upgrade started").count() as i64, started, "{}", result.stderr);
    // The started ones were awaited to the end.
    check(&sim);
    assert_eq!(sim.state().counter("tkgi.upgrades_in_flight"), 0);
    assert!(result.stderr.contains(&format!("Rollout summary: {started} succeeded, 0 failed")), "{}", result.stderr);
}

#[test]
fn dry_run_writes_plan_json_and_md_and_changes_nothing() {
    let sim = RunningSim::start(&world(&["{name: a}", "{name: gone, pks_version: 1.19.2-build.10}"], 1000));
    let file = "master_host: '{name}.example.com'\nclusters:\n  - {name: a, plan: small, workers: 4}\n  - {name: new, plan: small}\n";
    let (result, dir) = apply(&sim, file, json!({"dry_run": true, "prune": true}), &[]);
    let answer = result.json();
    assert!(starts(&sim).is_empty(), "{:?}", starts(&sim));
    assert_eq!(answer["version"], check(&sim));
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["target"], TARGET);
    let all = &plan["waves"][0]["jobs"];
    assert_eq!(all[0]["cluster"], "a");
    assert_eq!(
        all[0]["changes"],
        json!([{"change": "resize", "from_workers": 3, "to_workers": 4}, {"change": "upgrade"}])
    );
    assert_eq!(all[1]["changes"][0]["master_host"], "new.example.com");
    assert_eq!(
        plan["waves"][1]["jobs"][0],
        json!({"cluster": "gone", "canary": false, "adopt": false, "from_version": TARGET, "changes": [{"change": "delete"}]})
    );
    let md = std::fs::read_to_string(dir.path().join("plan.md")).unwrap();
    assert!(md.contains("| a       | resize 3 → 4 workers, then upgrade |"), "{md}");
}

#[test]
fn a_malformed_fleet_file_is_an_error_with_line_and_column() {
    let sim = RunningSim::start(&world(&["{name: a}"], 1000));
    let file = "clusters:\n  - name: a\n    plan: small\n    workers: three\n";
    let (result, _dir) = apply(&sim, file, json!({}), &[]);
    result.assert_fails_with(&["fleet-repo/fleet.yml:4:14: clusters[0].workers: expected a whole number"]);
    let typo = "clusters:\n  - {name: a, plan: small, wrkers: 3}\n";
    let (result, _dir) = apply(&sim, typo, json!({}), &[]);
    result.assert_fails_with(&["fleet-repo/fleet.yml:2:", "unknown field `wrkers`", "did you mean `workers`?"]);
    assert!(starts(&sim).is_empty());
}

#[test]
fn a_pin_two_minors_ahead_is_refused_with_the_chained_path() {
    let sim = RunningSim::start(&world(&["{name: a, pks_version: 1.17.3-build.2}"], 1000));
    let (result, _dir) = apply(&sim, "clusters:\n  - {name: a, plan: small}\n", json!({}), &[]);
    result.assert_fails_with(&[
        "a: target 1.19.2-build.10 cannot be reached from 1.17.3-build.2",
        "upgrade 1.17 → 1.18 → 1.19",
    ]);
    assert!(starts(&sim).is_empty());
}

#[test]
fn the_example_fleet_file_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fleet.yml");
    let file = repave::fleet::desired::parse(&std::fs::read_to_string(path).unwrap(), "examples/fleet.yml").unwrap();
    assert!(file.clusters.len() >= 4 && file.window.is_some() && file.soak.is_some());
}

/// The published schema and the parser agree: the example fleet files satisfy the schema (checked by the
/// `jsonschema` crate, a complete draft 2020-12 validator), a file breaking a schema rule is refused by both, and
/// both know the same keys.
#[test]
fn the_schema_matches_the_parser_and_the_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{root}/schema/fleet.schema.json")).unwrap()).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("schema/fleet.schema.json is not a valid 2020-12 schema: {e}");
    }
    let validator = jsonschema::validator_for(&schema).unwrap();
    // `path: keyword (message)` for every rule `value` breaks.
    let violations = |value: &Value| -> Vec<String> {
        validator.iter_errors(value).map(|e| format!("{}: {} ({e})", e.instance_path(), e.kind().keyword())).collect()
    };
    for example in ["examples/fleet.yml", "sim/scenarios/demo-fleet.yml"] {
        let file: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(format!("{root}/{example}")).unwrap()).unwrap();
        assert_eq!(violations(&file), Vec::<String>::new(), "{example}");
    }

    for (bad, rule) in [
        (json!({"clusters": [{"name": "a"}]}), "required"),
        (json!({"clusters": [], "max_in_flight": 0}), "minimum"),
        (json!({"clusters": [{"name": "a", "plan": "s", "workers": "3"}]}), "type"),
        (json!({"clusters": [], "extra": 1}), "additionalProperties"),
        (json!({"clusters": [], "window": "whenever"}), "pattern"),
    ] {
        let found = violations(&bad);
        assert!(found.iter().any(|v| v.contains(rule)), "schema accepts {bad} (wanted {rule}): {found:?}");
        assert!(repave::fleet::desired::parse(&bad.to_string(), "f").is_err(), "parser accepts {bad}");
    }

    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v["properties"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let parser_keys = |text: &str| -> Vec<String> {
        let e = format!("{:#}", repave::fleet::desired::parse(text, "f").unwrap_err());
        let listed = e.split("valid fields: ").nth(1).unwrap().trim_end_matches(')');
        let mut k: Vec<String> = listed.split(", ").map(str::to_string).collect();
        k.sort();
        k
    };
    assert_eq!(keys(&schema), parser_keys("clusters: []\nzzz: 1\n"));
    assert_eq!(keys(&schema["$defs"]["cluster"]), parser_keys("clusters: [{name: a, plan: s, zzz: 1}]\n"));
}
