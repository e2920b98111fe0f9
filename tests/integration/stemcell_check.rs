//! `check` for `kind: stemcell` against repave-sim's bosh.io over TLS: filters and ordering on tricky
//! lists, the light hold-back, odd versions, an unknown name.

use crate::common::run_step;
use repave_sim::testing::RunningSim;
use serde_json::{Value, json};

const NAME: &str = "bosh-aws-xen-hvm-ubuntu-jammy-go_agent";

/// Newest first like bosh.io, with 1.10 > 1.9 traps, an odd version, and 1.951 without its light one.
fn scenario() -> String {
    let small = "{size: 1024}";
    format!(
        r#"
boshio:
  stemcells:
    - name: {NAME}
      versions:
        - {{version: "1.951", regular: {small}}}
        - {{version: "1.10", regular: {small}, light: {small}}}
        - {{version: "nightly-7", regular: {small}, light: {small}}}
        - {{version: "1.9", regular: {small}, light: {small}}}
        - {{version: "1.100", regular: {small}, light: {small}}}
        - {{version: "0.621", regular: {small}, light: {small}}}
    - name: regular-only
      versions:
        - {{version: "621.2", regular: {small}}}
        - {{version: "621.10", regular: {small}}}
        - {{version: "622.1", regular: {small}}}
    - name: china-line
      versions:
        - {{version: "3.3", regular: {small}, light: {small}}}
        - {{version: "3.2", regular: {small}, light: {small}, light_china: {small}}}
        - {{version: "3.1", regular: {small}, light: {small}, light_china: {small}}}
    - name: long-line
      versions:
{long}"#,
        long = (1..=45)
            .rev()
            .map(|minor| format!("        - {{version: \"9.{minor}\", regular: {small}}}\n"))
            .collect::<String>()
    )
}

fn check(sim: &RunningSim, source: Value, version: Option<&str>) -> crate::common::StepOutput {
    let mut source = source;
    source["kind"] = "stemcell".into();
    source["api_url"] = sim.url().into();
    source["ca_cert"] = std::fs::read_to_string(sim.ca_cert_path()).unwrap().into();
    source["http"] = json!({"max_backoff": "50ms"});
    let mut request = json!({"source": source});
    if let Some(v) = version {
        request["version"] = json!({"version": v});
    }
    run_step("check", &request.to_string(), None, &[])
}

fn versions(out: &crate::common::StepOutput) -> Vec<String> {
    out.json().as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap().to_string()).collect()
}

#[test]
fn first_check_emits_only_the_latest_light_version_and_says_what_is_held_back() {
    let sim = RunningSim::start(&scenario());
    let out = check(&sim, json!({"name": NAME}), None);
    assert_eq!(versions(&out), ["1.100"]);
    assert_eq!(out.stdout.trim(), r#"[{"version":"1.100"}]"#, "byte-compatible with the peer");
    assert!(out.stderr.contains("holding back") && out.stderr.contains("1.951"), "{}", out.stderr);
    assert!(out.stderr.contains("skipping version `nightly-7`"), "{}", out.stderr);
    let list = sim.requests().into_iter().find(|r| r.path.starts_with("/api/v1/stemcells/")).unwrap();
    assert_eq!(list.query.as_deref(), Some("all=1"));
}

#[test]
fn from_a_version_numeric_order_oldest_first() {
    let sim = RunningSim::start(&scenario());
    let out = check(&sim, json!({"name": NAME}), Some("1.9"));
    assert_eq!(versions(&out), ["1.9", "1.10", "1.100"]);
    let regular = check(&sim, json!({"name": NAME, "force_regular": true}), Some("1.10"));
    assert_eq!(versions(&regular), ["1.10", "1.100", "1.951"]);
    let vanished = check(&sim, json!({"name": NAME}), Some("1.50"));
    assert_eq!(versions(&vanished), ["1.100"], "a version no longer listed yields the latest");
}

#[test]
fn version_family_and_constraint() {
    let sim = RunningSim::start(&scenario());
    let family = check(&sim, json!({"name": "regular-only", "version_family": "621.latest"}), Some("621.2"));
    assert_eq!(versions(&family), ["621.2", "621.10"]);
    let bare = check(&sim, json!({"name": "regular-only", "version_family": "622"}), None);
    assert_eq!(versions(&bare), ["622.1"]);
    let range = check(&sim, json!({"name": NAME, "constraint": ">=1.9, <1.100"}), Some("1.9"));
    assert_eq!(versions(&range), ["1.9", "1.10"]);
    let tilde = check(&sim, json!({"name": "regular-only", "constraint": "~621"}), None);
    assert_eq!(versions(&tilde), ["621.10"]);
    let bad = check(&sim, json!({"name": NAME, "constraint": ">=banana"}), None);
    bad.assert_fails_with(&["source.constraint: `>=banana` is not valid"]);
}

#[test]
fn unknown_name_is_an_error_naming_the_name_and_url() {
    let sim = RunningSim::start(&scenario());
    let out = check(&sim, json!({"name": "bosh-aws-xen-hvm-ubuntu-jammyy-go_agent"}), None);
    out.assert_fails_with(&["bosh-aws-xen-hvm-ubuntu-jammyy-go_agent", &format!("{}/api/v1/stemcells/", sim.url())]);
}

#[test]
fn a_flaky_api_is_retried() {
    let sim = RunningSim::start(&scenario());
    let fault = repave_sim::FaultAction::Status { code: 503, retry_after: None, body: None };
    sim.add_fault(repave_sim::FaultRule::new("/api/v1/stemcells/*", fault).count(2));
    let out = check(&sim, json!({"name": "regular-only"}), None);
    assert_eq!(versions(&out), ["622.1"]);
    assert_eq!(sim.requests().len(), 3);
}

#[test]
fn light_china_tracks_only_versions_published_for_china_and_auto_ignores_them() {
    let sim = RunningSim::start(&scenario());
    let china = check(&sim, json!({"name": "china-line", "flavor": "light_china"}), Some("3.1"));
    assert_eq!(versions(&china), ["3.1", "3.2"], "3.3 has no light_china tarball: {}", china.stderr);
    let auto = check(&sim, json!({"name": "china-line"}), Some("3.1"));
    assert_eq!(versions(&auto), ["3.1", "3.2", "3.3"], "{}", auto.stderr);
}

#[test]
fn a_line_longer_than_bosh_io_default_page_of_40_is_read_whole() {
    let sim = RunningSim::start(&scenario());
    let out = check(&sim, json!({"name": "long-line"}), Some("9.1"));
    let expected: Vec<String> = (1..=45).map(|minor| format!("9.{minor}")).collect();
    assert_eq!(versions(&out), expected, "without all=1 bosh.io would cut the list at 40");
}
