//! `kind: kubernetes` end to end: the built check/in/out binaries against repave-sim's release feeds
//! over TLS, as Concourse runs them.

use crate::common::{SENTINEL, run_step};
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use serde_json::{Value, json};

/// A kubernetes source for the sim: its feed, its CA, fast retries; `extra` adds or overrides keys.
fn source(sim: &RunningSim, extra: Value) -> Value {
    let ca = std::fs::read_to_string(sim.ca_cert_path()).unwrap();
    let mut source = json!({
        "kind": "kubernetes",
        "feed_url": format!("{}/release", sim.url()),
        "ca_cert": ca,
        "http": {"attempts": 4, "max_backoff": "50ms"},
    });
    source.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    source
}

fn check(sim: &RunningSim, extra: Value, version: Option<&str>) -> crate::common::StepOutput {
    let mut request = json!({"source": source(sim, extra)});
    if let Some(v) = version {
        request["version"] = json!({"version": v});
    }
    run_step("check", &request.to_string(), None, &[])
}

fn versions(output: &crate::common::StepOutput) -> Vec<String> {
    let answer = output.json();
    answer.as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap().to_string()).collect()
}

fn get(sim: &RunningSim, dir: &std::path::Path, version: &str, params: Value) -> crate::common::StepOutput {
    let request = json!({"source": source(sim, json!({})), "version": {"version": version}, "params": params});
    run_step("in", &request.to_string(), Some(dir), &[])
}

fn feed_paths(sim: &RunningSim) -> Vec<String> {
    sim.requests().into_iter().map(|r| r.path).filter(|p| p.starts_with("/release/")).collect()
}

fn status(code: u16, body: Option<&str>) -> FaultAction {
    FaultAction::Status { code, retry_after: None, body: body.map(str::to_string) }
}

#[test]
fn first_check_answers_only_the_latest_stable() {
    let sim = RunningSim::start("");
    assert_eq!(versions(&check(&sim, json!({}), None)), ["1.31.4"]);
    assert_eq!(feed_paths(&sim), ["/release/stable.txt"]);
}

#[test]
fn check_with_a_version_answers_it_and_newer_oldest_first() {
    let sim = RunningSim::start("");
    let range = json!({"minor_min": "1.28", "minor_max": "1.31"});
    assert_eq!(versions(&check(&sim, range.clone(), Some("1.29.15"))), ["1.29.15", "1.30.14", "1.31.4"]);
    assert_eq!(versions(&check(&sim, range.clone(), Some("1.31.4"))), ["1.31.4"]);
    assert_eq!(versions(&check(&sim, range, None)), ["1.31.4"]);
}

#[test]
fn channel_follows_one_minor_line() {
    let sim = RunningSim::start("");
    let channel = json!({"channel": "stable-1.30"});
    assert_eq!(versions(&check(&sim, channel.clone(), None)), ["1.30.14"]);
    assert_eq!(versions(&check(&sim, channel.clone(), Some("1.30.12"))), ["1.30.12", "1.30.14"]);
    // A version from another line (an older config) is not carried over.
    assert_eq!(versions(&check(&sim, channel, Some("1.29.15"))), ["1.30.14"]);
}

#[test]
fn minor_range_stops_probing_at_the_first_minor_without_a_feed() {
    let sim = RunningSim::start("");
    let out = check(&sim, json!({"minor_min": "1.29"}), Some("1.29.13"));
    assert_eq!(versions(&out), ["1.29.13", "1.29.15", "1.30.14", "1.31.4"]);
    let probed = ["/release/stable-1.29.txt", "/release/stable-1.30.txt", "/release/stable-1.31.txt"];
    assert_eq!(feed_paths(&sim), [&probed[..], &["/release/stable-1.32.txt"]].concat());
    assert!(out.stderr.contains("1.32 has no release feed yet (404): stopped probing there"), "{}", out.stderr);
}

#[test]
fn minor_range_skips_missing_minors_below_the_first_release() {
    let sim = RunningSim::start("");
    let out = check(&sim, json!({"minor_min": "1.26", "minor_max": "1.29"}), Some("1.28.15"));
    assert_eq!(versions(&out), ["1.28.15", "1.29.15"]);
    assert!(out.stderr.contains("1.26 has no release feed (404): skipped"), "{}", out.stderr);
    assert_eq!(feed_paths(&sim).len(), 4, "1.26 to 1.29, once each");
}

#[test]
fn prereleases_only_when_asked_for() {
    let sim = RunningSim::start("");
    let with_pre = json!({"minor_min": "1.30", "include_prereleases": true});
    assert_eq!(versions(&check(&sim, with_pre, Some("1.31.4"))), ["1.31.4", "1.32.0-rc.1"]);
    let channel = json!({"channel": "latest-1.32", "include_prereleases": true});
    assert_eq!(versions(&check(&sim, channel, None)), ["1.32.0-rc.1"]);
    check(&sim, json!({"channel": "latest-1.32"}), None)
        .assert_fails_with(&["source.channel `latest-1.32` reports pre-releases", "include_prereleases: true"]);
}

#[test]
fn garbage_feed_body_is_a_clear_error() {
    let sim = RunningSim::start("");
    let html = "<html><head><title>Login</title><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"></head><body>corporate proxy says no</body></html>";
    sim.add_fault(FaultRule::new("/release/stable.txt", status(200, Some(html))));
    let out = check(&sim, json!({}), None);
    out.assert_fails_with(&["/release/stable.txt did not answer a Kubernetes version", "<html><head><title>Login"]);
    assert!(!out.stderr.contains("corporate proxy says no"), "quotes at most 100 bytes:\n{}", out.stderr);
}

#[test]
fn a_503_burst_is_retried() {
    let sim = RunningSim::start("");
    sim.add_fault(FaultRule::new("/release/stable-1.30.txt", status(503, None)).count(2));
    let out = check(&sim, json!({"channel": "stable-1.30"}), None);
    assert_eq!(versions(&out), ["1.30.14"]);
    assert_eq!(feed_paths(&sim).len(), 3);
    assert!(out.stderr.contains("503") && out.stderr.contains("attempt 3 of 4"), "{}", out.stderr);
}

#[test]
fn errors_other_than_404_are_errors() {
    let sim = RunningSim::start("");
    sim.add_fault(FaultRule::new("/release/stable-1.30.txt", status(403, Some("AccessDenied"))));
    let out = check(&sim, json!({"minor_min": "1.29"}), None);
    out.assert_fails_with(&["stable-1.30.txt", "403 Forbidden", "AccessDenied"]);
}

#[test]
fn redirects_to_the_cdn_are_followed() {
    let sim = RunningSim::start("releases: {redirect: true}");
    assert_eq!(versions(&check(&sim, json!({"channel": "stable-1.29"}), None)), ["1.29.15"]);
    let paths: Vec<String> = sim.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/release/stable-1.29.txt", "/cdn/release/stable-1.29.txt"]);
}

#[test]
fn in_writes_version_tag_and_a_path_that_skips_no_minor() {
    let sim = RunningSim::start("");
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.30.14", json!({"from_version": "v1.28.11+vmware.1"}));
    let answer = out.json();
    assert_eq!(answer["version"], json!({"version": "1.30.14"}));
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(read("version"), "1.30.14\n");
    assert_eq!(read("tag"), "v1.30.14\n");
    let path: Value = serde_json::from_str(&read("path.json")).unwrap();
    assert_eq!(path, json!({"from": "1.28.11", "to": "1.30.14", "steps": ["1.29.15", "1.30.14"]}));
    assert!(out.stderr.contains("upgrade path: 1.28.11+vmware.1 → 1.29.15 → 1.30.14 (2 steps)"), "{}", out.stderr);
    let metadata = answer["metadata"].as_array().unwrap();
    assert!(metadata.contains(&json!({"name": "steps", "value": "1.29.15 → 1.30.14"})), "{metadata:?}");
    assert!(metadata.contains(&json!({"name": "channel", "value": "stable"})), "{metadata:?}");
    // Only the intermediate minor was looked up.
    assert_eq!(feed_paths(&sim), ["/release/stable-1.29.txt"]);
}

#[test]
fn in_same_version_has_no_steps_and_a_downgrade_is_refused() {
    let sim = RunningSim::start("");
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.30.14", json!({"from_version": "1.30.14"}));
    assert!(out.json()["metadata"].as_array().unwrap().contains(&json!({"name": "steps", "value": "none"})));
    let path: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("path.json")).unwrap()).unwrap();
    assert_eq!(path["steps"], json!([]));
    assert!(out.stderr.contains("already at 1.30.14"), "{}", out.stderr);

    let dir = tempfile::tempdir().unwrap();
    get(&sim, dir.path(), "1.29.15", json!({"from_version": "1.30.2"}))
        .assert_fails_with(&["the from version 1.30.2 is newer than the fetched version 1.29.15", "is a downgrade"]);
}

#[test]
fn in_fails_when_an_intermediate_minor_has_no_release() {
    let sim = RunningSim::start("releases: {minors: {'1.28': ['1.28.15'], '1.30': ['1.30.14']}}");
    let dir = tempfile::tempdir().unwrap();
    get(&sim, dir.path(), "1.30.14", json!({"from_version": "1.28.1"}))
        .assert_fails_with(&["must pass through 1.29, but no 1.29 release is known"]);
}

#[test]
fn out_is_refused() {
    let sim = RunningSim::start("");
    let dir = tempfile::tempdir().unwrap();
    let request = json!({"source": source(&sim, json!({})), "params": {}});
    run_step("out", &request.to_string(), Some(dir.path()), &[])
        .assert_fails_with(&["kind `kubernetes` is read-only", "`kind: fleet`"]);
    assert!(sim.requests().is_empty());
}

#[test]
fn bad_configuration_names_the_field() {
    let sim = RunningSim::start("");
    check(&sim, json!({"channel": "stable-1.30.1"}), None)
        .assert_fails_with(&["source.channel `stable-1.30.1` is not a channel"]);
    check(&sim, json!({"chanel": "stable"}), None)
        .assert_fails_with(&["unknown field `chanel` in source", "did you mean `channel`?"]);
    check(&sim, json!({"minor_min": "1.31", "minor_max": "1.28"}), None)
        .assert_fails_with(&["source.minor_max `1.28` is below source.minor_min `1.31`"]);
    check(&sim, json!({"include_prereleases": "yes"}), None)
        .assert_fails_with(&["source.include_prereleases", "expected true or false"]);
    let dir = tempfile::tempdir().unwrap();
    get(&sim, dir.path(), "1.30.14", json!({"from_versoin": "1.29.0"}))
        .assert_fails_with(&["unknown field `from_versoin` in params", "did you mean `from_version`?"]);
    get(&sim, dir.path(), "1.30.14", json!({"from_version": "latest"}))
        .assert_fails_with(&["params.from_version", "`latest` is not a Kubernetes version"]);
    assert!(sim.requests().is_empty(), "bad configuration fails before any request");
}

#[test]
fn secrets_in_a_misplaced_field_are_not_printed() {
    let sim = RunningSim::start("");
    // The harness scans stdout, stderr and written files for the sentinel.
    check(&sim, json!({"client_secret": SENTINEL}), None).assert_fails_with(&["unknown field `client_secret`"]);
    check(&sim, json!({"http": {"attempts": SENTINEL, "token": SENTINEL}}), None).assert_fails_with(&["source.http"]);
}
