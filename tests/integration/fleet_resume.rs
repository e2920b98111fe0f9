//! What a killed fleet `out` leaves behind is taken up by the next one (issue 15, items 8-9): a
//! failure that happened after the kill stops the rerun under `on_failure: stop` (and fails it under
//! `continue`), and a create left running is awaited, within `max_in_flight`, before anything new
//! starts. Each test kills the first put with SIGKILL right after the simulator saw the start it is
//! about, as a lost worker would.

use crate::common::fleet::{source, world};
use crate::common::{StepOutput, run_step, spawn_step};
use repave_sim::testing::RunningSim;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Polls `ready` every 10 ms until it holds; panics with `what` after `limit` (a bound, not a
/// measurement: the condition is expected long before).
fn wait_for(what: &str, limit: Duration, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn state_of(sim: &RunningSim, name: &str) -> (String, String) {
    let view = sim.state().fleet.views().into_iter().find(|v| v.name == name).expect("the cluster is listed");
    (view.last_action, view.last_action_state)
}

fn request(sim: &RunningSim, params: Value) -> String {
    let mut params = params;
    params.as_object_mut().unwrap().entry("poll_interval").or_insert(json!("50ms"));
    json!({"source": source(sim, json!({})), "params": params}).to_string()
}

fn put(sim: &RunningSim, params: Value, dir: &Path) -> StepOutput {
    run_step("out", &request(sim, params), Some(dir), &[])
}

/// Starts a put, kills it once `started` holds, and returns.
fn kill_after(sim: &RunningSim, params: Value, dir: &Path, what: &str, started: impl Fn() -> bool) {
    let mut first = spawn_step("out", &request(sim, params), dir);
    wait_for(what, Duration::from_secs(60), started);
    first.kill().unwrap();
    first.wait().unwrap();
}

/// a's upgrade takes 5 s (simulated 25000 s) and fails; b and c would succeed.
fn failing_world() -> RunningSim {
    RunningSim::start(&world(
        &["{name: a, upgrade_failures: 1, upgrade_secs: 25000}", "{name: b}", "{name: c}"],
        100,
        "",
    ))
}

fn starts(sim: &RunningSim) -> i64 {
    sim.state().counter("tkgi.upgrade_starts")
}

#[test]
fn a_failure_after_the_kill_stops_the_rerun_under_stop() {
    let sim = failing_world();
    let dir = tempfile::tempdir().unwrap();
    kill_after(&sim, json!({"max_in_flight": 1}), dir.path(), "a's upgrade to start", || starts(&sim) >= 1);
    wait_for("a's upgrade to fail", Duration::from_secs(120), || state_of(&sim, "a").1 == "failed");

    for dry_run in [true, false] {
        let rerun = put(&sim, json!({"max_in_flight": 1, "dry_run": dry_run}), dir.path());
        rerun.assert_fails_with(&["refusing to start: a failed", "on_failure is stop", "repair: true", "`!a`"]);
    }
    assert_eq!(starts(&sim), 1, "nothing may start after a failure under stop");

    // `repair: true` is the way on: a is retried (its scripted failure is spent), then b and c.
    put(&sim, json!({"max_in_flight": 1, "repair": true}), dir.path()).json();
    assert_eq!(starts(&sim), 4);
}

#[test]
fn a_failure_after_the_kill_fails_the_rerun_under_continue() {
    let sim = failing_world();
    let dir = tempfile::tempdir().unwrap();
    let params = json!({"max_in_flight": 1, "on_failure": "continue"});
    kill_after(&sim, params.clone(), dir.path(), "a's upgrade to start", || starts(&sim) >= 1);
    wait_for("a's upgrade to fail", Duration::from_secs(120), || state_of(&sim, "a").1 == "failed");

    let rerun = put(&sim, params, dir.path());
    rerun.assert_fails_with(&["did not complete", "failed: a (before this run)"]);
    assert_eq!(starts(&sim), 3, "b and c were upgraded, a was not started again");
}

#[test]
fn a_create_left_running_by_a_killed_build_is_awaited_first() {
    // a-new's create (15 s, simulated 75000 s) sorts before b-old's upgrade, so the first put starts it first.
    let scenario = world(&["{name: b-old}"], 100, "").replace("tkgi:\n", "tkgi:\n  create_secs: 75000\n");
    let sim = RunningSim::start(&scenario);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("repo")).unwrap();
    let file = "master_host: '{name}.example.com'\nclusters:\n  - {name: a-new, plan: small}\n  - {name: b-old, plan: small}\n";
    std::fs::write(dir.path().join("repo/fleet.yml"), file).unwrap();
    let params = json!({"desired": "repo/fleet.yml", "max_in_flight": 1});
    let creates = || sim.state().counter("tkgi.creates");
    kill_after(&sim, params.clone(), dir.path(), "a-new's create to start", || creates() >= 1);
    assert_eq!(state_of(&sim, "a-new"), ("CREATE".into(), "in progress".into()), "killed too late");

    let rerun = put(&sim, params, dir.path());
    rerun.json();
    assert!(rerun.stderr.contains("a-new: create (small) already in progress: adopting it"), "{}", rerun.stderr);
    assert_eq!(state_of(&sim, "a-new"), ("CREATE".into(), "succeeded".into()), "the put ended before the create");
    assert_eq!(creates(), 1, "the create was not sent again");
    assert_eq!(sim.state().counter("tkgi.upgrade_starts.b-old"), 1);
    assert_eq!(sim.state().high_water("tkgi.actions_in_flight"), 1, "b-old's upgrade started beside the create");
}
