//! The demo (`ci/demo`, `repave-demo`) end to end against the debug binaries, so it cannot rot: it must
//! tell the whole story and judge it correctly, and a world that behaves differently must make it fail.

use repave_demo::{self as demo, Binaries, Options};

fn binaries() -> Binaries {
    Binaries {
        check: assert_cmd::cargo::cargo_bin("check"),
        get: assert_cmd::cargo::cargo_bin("in"),
        put: assert_cmd::cargo::cargo_bin("out"),
    }
}

fn run(options: &Options) -> (bool, String) {
    let mut out = Vec::new();
    let ok = demo::run(options, &mut out).expect("the demo runs");
    (ok, String::from_utf8(out).expect("the demo writes UTF-8"))
}

#[test]
fn the_demo_tells_the_whole_story_and_exits_0() {
    let (ok, story) = run(&Options::new(binaries()));
    assert!(ok, "the demo reported surprises:\n{story}");
    for line in [
        // check → in → out of the stemcell, with Concourse's environment for in/out.
        r#"exit 0 · stdout: [{"version":"1.505"},{"version":"1.506"}]"#,
        r#"exit 0 · stdout: [{"version":"2019.86"}]"#,
        "sha256 verified",
        "BUILD_ID=4101 BUILD_NAME=17 BUILD_JOB_NAME=upload-stemcell BUILD_PIPELINE_NAME=repave-demo",
        "assigned ubuntu-jammy 1.506 to pivotal-container-service",
        // Ops Manager: Apply Changes with the errand off, its log, and the targets for the fleet.
        "(\"Upgrade all clusters\"): OFF, repave's default",
        "is off for this installation: no cluster is upgraded",
        "installation 1 succeeded",
        "stemcell (6 B), version (16 B)",
        // The fleet: plan, canaries alone, the failure stopping the prod wave, the report.
        "| 1   | canary-eu-1 | canary upgrade |",
        "wrote ",
        "canary-us-1: canary upgrade started",
        "soaking 2s before wave `prod`",
        "prod-eu-2 failed and on_failure is stop: no new cluster will start",
        "not started: prod-eu-3, prod-us-1, prod-us-2, prod-us-3",
        "   exit 1 · stdout: (empty)",
        "never started: prod-eu-3, prod-us-1, prod-us-2, prod-us-3",
        "12 clusters, 5 behind TKGI 1.19.2-build.10.",
        "pipelines/stemcell-to-fleet.yml",
        "demo: everything behaved as the scenario predicts",
    ] {
        assert!(story.contains(line), "the demo's output lacks {line:?}:\n{story}");
    }
    assert!(story.contains(r#""client_secret": "***""#), "secrets are shown masked:\n{story}");
    for secret in ["tkgi-ci-secret-4c1d", "bosh-ci-secret-77ae", "opsman-ci-secret-5e0b"] {
        assert!(!story.contains(secret), "the demo printed a secret:\n{story}");
    }
    assert!(!story.contains("SURPRISE"), "{story}");
}

#[test]
fn a_world_where_nothing_fails_is_a_surprise() {
    let scenario = demo::SCENARIO.replace("upgrade_failures: 1, ", "");
    assert_ne!(scenario, demo::SCENARIO, "the scenario's failing cluster moved; update this test");
    let (ok, story) = run(&Options { binaries: binaries(), scenario });
    assert!(!ok, "the demo must fail when the put does not:\n{story}");
    assert!(story.contains("✗ SURPRISE: expected: the put fails: exit 1, nothing on stdout"), "{story}");
    assert!(story.contains("surprise(s), the scenario predicted otherwise"), "{story}");
}
