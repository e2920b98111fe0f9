//! Each rule fires on a small bad pipeline, and a good pipeline passes: proof the linter cannot
//! silently accept everything.

use super::*;

/// A valid pipeline using most features; the bad cases below each break one thing in it.
const GOOD: &str = r#"
resource_types:
- name: repave
  type: registry-image
  source: {repository: example/repave}
resources:
- name: stemcell
  type: repave
  icon: harddisk
  check_every: 1h
  source:
    kind: stemcell
    name: ((stemcell_name))
    director: {url: "https://10.0.0.6:25555", client: admin, client_secret: ((director_secret))}
- name: repo
  type: git
  source: {uri: "https://example.com/repo.git"}
jobs:
- name: upload
  plan:
  - in_parallel:
    - get: stemcell
      trigger: true
      params: {tarball: false}
    - get: repo
  - put: stemcell
    params: {from: stemcell}
    get_params: {tarball: false}
    timeout: 1h30m
    attempts: 2
  on_failure:
    task: notify
    file: repo/ci/tasks/notify.yml
- name: roll
  serial: true
  plan:
  - get: stemcell
    passed: [upload]
    trigger: true
    params: {tarball: false}
  - load_var: version
    file: stemcell/version
    format: trim
  - task: each
    across:
    - var: env
      values: [dev, prod]
      max_in_flight: 1
    fail_fast: true
    config:
      platform: linux
      image_resource: {type: registry-image, source: {repository: busybox}}
      inputs: [{name: stemcell}]
      run: {path: echo, args: ["((.:env))"]}
  - try:
      set_pipeline: self
      file: stemcell/pipeline.yml
groups:
- name: all
  jobs: [upload, roll]
  resources: [stemcell]
"#;

const VARS: &str = "stemcell_name: bosh-vsphere-esxi-ubuntu-jammy-go_agent\ndirector_secret: s3cret\n";

fn lint(text: &str) -> Report {
    lint_pipeline("test.yml", text, &Options { vars: Some(VARS) })
}

/// Applies `from → to` to GOOD (each must match once) and returns the rules that fired.
fn rules_after(edits: &[(&str, &str)]) -> Vec<&'static str> {
    let mut text = GOOD.to_string();
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "edit anchor {from:?} must occur exactly once");
        text = text.replace(from, to);
    }
    lint(&text).rules()
}

fn assert_fires(rule: &str, edits: &[(&str, &str)]) {
    let rules = rules_after(edits);
    assert!(rules.contains(&rule), "expected rule `{rule}` after {edits:?}, got {rules:?}");
}

#[test]
fn the_good_pipeline_passes_and_validates_its_repave_configs() {
    let report = lint(GOOD);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    let steps: Vec<&str> = report.validated.iter().map(|(_, _, step)| *step).collect();
    // source (check), two gets (in), one put (out) and its implicit get (in).
    assert_eq!(steps.iter().filter(|s| **s == "check").count(), 1, "{:?}", report.validated);
    assert_eq!(steps.iter().filter(|s| **s == "in").count(), 3, "{:?}", report.validated);
    assert_eq!(steps.iter().filter(|s| **s == "out").count(), 1, "{:?}", report.validated);
}

#[test]
fn messages_name_file_place_and_rule() {
    let report = lint(&GOOD.replace("- get: repo\n", "- get: repo\n      trigger: sometimes\n"));
    let text = report.findings[0].to_string();
    assert!(text.starts_with("test.yml: job `upload`"), "{text}");
    assert!(text.contains("get `repo`") && text.contains("[type]") && text.contains("`trigger`"), "{text}");
}

#[test]
fn yaml_level_rules() {
    assert_fires("duplicate-key", &[("  serial: true\n", "  serial: true\n  serial: false\n")]);
    assert_fires("yaml", &[("groups:", "groups: [")]);
    assert_fires("unknown-field", &[("groups:", "grups: []\ngroups:")]);
    assert_fires("no-jobs", &[("jobs:\n- name: upload", "jobs: []\nxjobs:\n- name: upload")]);
}

#[test]
fn strict_fields_and_types() {
    assert_fires("unknown-field", &[("  icon: harddisk", "  icon: harddisk\n  chek_every: 1m")]);
    assert_fires("unknown-field", &[("  serial: true", "  serial: true\n  serail_groups: [a]")]);
    assert_fires(
        "unknown-field",
        &[("    params: {from: stemcell}", "    params: {from: stemcell}\n    trigger: true")],
    );
    // fail_fast is an `across` modifier: without across it is unknown.
    assert_fires(
        "unknown-field",
        &[("    across:\n    - var: env\n      values: [dev, prod]\n      max_in_flight: 1\n", "")],
    );
    assert_fires("unknown-field", &[("    fail_fast: true\n", "    fail_fast: true\n    passed: [upload]\n")]);
    assert_fires("type", &[("  serial: true", "  serial: yes-please")]);
    assert_fires("type", &[("passed: [upload]", "passed: upload")]);
    assert_fires("unknown-step", &[("  - try:", "  - putt: stemcell\n  - try:")]);
    assert_fires("ambiguous-step", &[("  - load_var: version", "  - load_var: version\n    get: stemcell")]);
    assert_fires("unknown-field", &[("run: {path: echo,", "run: {pth: echo,")]);
    assert_fires("missing-field", &[("run: {path: echo,", "run: {dir: echo,")]);
    assert_fires("missing-field", &[("      platform: linux\n", "")]);
    assert_fires("missing-field", &[("      image_resource: {type: registry-image,", "      image_resource: {")]);
}

#[test]
fn names() {
    assert_fires("duplicate-name", &[("- name: repo\n", "- name: stemcell\n")]);
    assert_fires("duplicate-name", &[("- name: roll\n", "- name: upload\n")]);
    assert_fires("duplicate-name", &[("- name: all\n", "- name: all\n  jobs: [upload]\n- name: all\n")]);
    assert_fires(
        "duplicate-name",
        &[("resources:\n", "- name: repave\n  type: registry-image\n  source: {}\nresources:\n")],
    );
    assert_fires("missing-field", &[("- name: repo\n  type: git\n", "- name: repo\n")]);
    assert_fires("missing-field", &[("- name: roll\n", "- serial_groups: []\n")]);
    assert_fires("identifier", &[("- name: roll\n", "- name: Roll\n"), ("[upload, roll]", "[upload, Roll]")]);
    assert_fires("identifier", &[("load_var: version", "load_var: Version")]);
    assert!(is_identifier("deploy-1.30_x") && is_identifier("1st") && !is_identifier("123") && !is_identifier("-a"));
}

#[test]
fn references() {
    assert_fires(
        "unused-resource",
        &[("    - get: repo\n", ""), ("file: repo/ci", "config: {platform: linux, run: {path: x}}\n    #")],
    );
    assert_fires("unknown-resource", &[("- get: repo\n", "- get: rep\n")]);
    assert_fires("unknown-resource", &[("- put: stemcell\n", "- put: up\n    resource: stem\n")]);
    assert_fires(
        "duplicate-get",
        &[("    - get: repo\n", "    - get: repo\n    - get: repo\n      resource: stemcell\n")],
    );
    assert_fires("passed-unknown-job", &[("passed: [upload]", "passed: [uplaod]")]);
    assert_fires("passed-job-without-resource", &[("    - get: repo\n", "    - get: repo\n      passed: [roll]\n")]);
    assert_fires(
        "passed-cycle",
        &[(
            "      trigger: true\n      params: {tarball: false}\n    - get: repo",
            "      passed: [roll]\n      params: {tarball: false}\n    - get: repo",
        )],
    );
    // globs in passed and groups resolve against job names
    assert!(rules_after(&[("passed: [upload]", "passed: [up*]"), ("[upload, roll]", "['*']")]).is_empty());
}

#[test]
fn groups() {
    assert_fires("job-in-no-group", &[("[upload, roll]", "[upload]")]);
    assert_fires("group-unknown-job", &[("[upload, roll]", "[upload, roll, deploy]")]);
    assert_fires("group-unknown-resource", &[("resources: [stemcell]", "resources: [stemcel]")]);
}

#[test]
fn step_rules() {
    assert_fires("task-file-config", &[("    file: repo/ci/tasks/notify.yml\n", "")]);
    assert_fires("task-file-config", &[("    file: repo/ci/tasks/notify.yml\n", "    file: a.yml\n    config: {}\n")]);
    assert_fires("across", &[("max_in_flight: 1", "max_in_flight: 0")]);
    assert_fires(
        "across",
        &[("    across:\n    - var: env\n      values: [dev, prod]\n      max_in_flight: 1\n", "    across: []\n")],
    );
    assert_fires("missing-field", &[("      values: [dev, prod]\n", "")]);
    assert_fires("duration", &[("timeout: 1h30m", "timeout: 90 minutes")]);
    assert_fires("duration", &[("check_every: 1h", "check_every: 1d")]);
    assert_fires("attempts", &[("attempts: 2", "attempts: 0")]);
    assert_fires("missing-field", &[("    file: stemcell/version\n", "")]);
    assert_fires("missing-field", &[("      file: stemcell/pipeline.yml\n", "")]);
    assert_fires("load-var-format", &[("format: trim", "format: toml")]);
    assert_fires("build-log-retention", &[("  serial: true", "  serial: true\n  build_log_retention: {builds: -1}")]);
    assert_fires("unknown-field", &[("  serial: true", "  serial: true\n  build_log_retention: {bulids: 5}")]);
    for ok in ["0", "90s", "1h30m", "1.5h", "300ms", "2h45m10s", "-1m"] {
        assert!(parse_go_duration(ok).is_ok(), "{ok}");
    }
    for bad in ["", "1", "1d", "h", "1.2.3s", "5 m"] {
        assert!(parse_go_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn repave_configs_are_parsed_with_the_binaries_types() {
    assert_fires("repave-config", &[("    name: ((stemcell_name))", "    nmae: ((stemcell_name))")]);
    assert_fires("repave-config", &[("params: {from: stemcell}", "params: {form: stemcell}")]);
    assert_fires("repave-config", &[("params: {from: stemcell}", "params: {}")]);
    assert_fires("repave-config", &[("get_params: {tarball: false}", "get_params: {tarbal: false}")]);
    assert_fires(
        "repave-config",
        &[(
            "passed: [upload]\n    trigger: true\n    params: {tarball: false}",
            "passed: [upload]\n    trigger: true\n    params: {tarball: nope}",
        )],
    );
    assert_fires("undefined-var", &[("((director_secret))", "((director_password))")]);
}

#[test]
fn task_files() {
    let good = "platform: linux\nimage_resource: {type: registry-image, source: {repository: rust}}\ninputs: [{name: repave}]\ncaches: [{path: cargo}]\nrun: {path: repave/ci/test}\n";
    assert!(task::lint_task_file("t.yml", good).is_empty());
    let rules = |text: &str| task::lint_task_file("t.yml", text).iter().map(|f| f.rule).collect::<Vec<_>>();
    assert!(rules(&good.replace("platform: linux\n", "")).contains(&"missing-field"));
    assert!(rules(&good.replace("inputs:", "inptus:")).contains(&"unknown-field"));
    assert!(rules(&good.replace("{name: repave}", "{path: repave}")).contains(&"missing-field"));
    assert!(rules(&good.replace("type: registry-image, ", "")).contains(&"missing-field"));
    assert!(rules(&good.replace("run: {path: repave/ci/test}", "run: repave/ci/test")).contains(&"type"));
}
