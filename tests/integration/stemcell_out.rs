//! `out` for `kind: stemcell` against repave-sim's director and UAA over TLS: upload by URL (the
//! director fetches), upload of the local tarball, already uploaded, a failing task, no secret leaks.

use crate::common::{SENTINEL, StepOutput, run_step, spawn_step};
use repave_sim::testing::RunningSim;
use serde_json::{Value, json};
use std::path::Path;

const NAME: &str = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";

fn scenario() -> String {
    format!(
        r#"
uaa:
  clients: [{{id: repave, secret: {SENTINEL}, scopes: [bosh.admin]}}]
boshio:
  stemcells:
    - name: {NAME}
      versions:
        - {{version: "1.506", regular: {{size: 200000}}}}
        - {{version: "1.505", regular: {{size: 100000}}}}
        - {{version: "1.504", regular: {{size: 1000}}}}
        - {{version: "1.503", regular: {{size: 5000, s3_auth: {{access_key: AKIDREPAVE, secret_key: {SENTINEL}}}}}}}
director:
  stemcells: [{{name: {NAME}, version: "1.504"}}]
  task_polls: 2
  fail_uploads: [{{version: "1.505", error: "Uploading stemcell to the cloud failed: disk full"}}]
"#
    )
}

fn source(sim: &RunningSim) -> Value {
    let ca = std::fs::read_to_string(sim.ca_cert_path()).unwrap();
    json!({"kind": "stemcell", "name": NAME, "api_url": sim.url(), "ca_cert": ca, "http": {"max_backoff": "20ms"},
           "director": {"url": sim.url(), "client": "repave", "client_secret": SENTINEL}})
}

/// A `get` into `work/stemcell`, as a previous step of the job would have done.
fn fetch(sim: &RunningSim, work: &Path, version: &str, tarball: bool) {
    let dir = work.join("stemcell");
    std::fs::create_dir_all(&dir).unwrap();
    let request = json!({"source": source(sim), "params": {"tarball": tarball}, "version": {"version": version}});
    run_step("in", &request.to_string(), Some(&dir), &[]).json();
}

fn put(sim: &RunningSim, work: &Path, params: Value) -> StepOutput {
    let request = json!({"source": source(sim), "params": params});
    run_step("out", &request.to_string(), Some(work), &[])
}

fn on_director(sim: &RunningSim, version: &str) -> bool {
    sim.state().director.stemcells().contains(&(NAME.to_string(), version.to_string()))
}

fn posts(sim: &RunningSim) -> usize {
    sim.requests().iter().filter(|r| r.method == "POST" && r.path == "/stemcells").count()
}

#[test]
fn the_director_fetches_by_url_and_the_task_is_followed() {
    let sim = RunningSim::start(&scenario());
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506", false);
    let out = put(&sim, work.path(), json!({"from": "stemcell"}));
    let answer = out.json();
    assert_eq!(answer["version"], json!({"version": "1.506"}), "the version check reports");
    assert!(on_director(&sim, "1.506"));
    let log = sim.requests();
    let post = log.iter().find(|r| r.method == "POST" && r.path == "/stemcells").unwrap();
    assert_eq!((post.status, post.auth_scheme.as_deref()), (302, Some("Bearer")));
    assert!(log.iter().filter(|r| r.path == "/tasks/1").count() >= 3, "polled until done");
    assert!(log.iter().any(|r| r.path == "/tasks/1/output" && r.range.is_some()));
    assert!(out.stderr.contains("Update stemcell > Uploading stemcell to the cloud: finished"), "{}", out.stderr);
}

#[test]
fn upload_tarball_streams_the_local_file() {
    let sim = RunningSim::start(&scenario());
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506", true);
    let out = put(&sim, work.path(), json!({"from": "stemcell", "upload_tarball": true}));
    assert_eq!(out.json()["version"], json!({"version": "1.506"}));
    assert!(on_director(&sim, "1.506"));
}

#[test]
fn already_uploaded_succeeds_without_a_task() {
    let sim = RunningSim::start(&scenario());
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.504", false);
    let out = put(&sim, work.path(), json!({"from": "stemcell"}));
    assert_eq!(out.json()["version"], json!({"version": "1.504"}));
    assert_eq!(posts(&sim), 0);
    assert_eq!(sim.state().director.task_count(), 0);
    assert!(out.stderr.contains("already on the director"), "{}", out.stderr);
}

#[test]
fn a_failing_task_fails_the_put_with_its_message() {
    let sim = RunningSim::start(&scenario());
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.505", false);
    let out = put(&sim, work.path(), json!({"from": "stemcell"}));
    out.assert_fails_with(&["director task 1", "`error`", "disk full"]);
    assert!(!sim.state().director.stemcells().iter().any(|(_, v)| v == "1.505"));
}

#[test]
fn a_wrong_secret_is_named_without_being_printed() {
    let sim = RunningSim::start(&scenario().replace(&format!("secret: {SENTINEL}"), "secret: other"));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506", false);
    let out = put(&sim, work.path(), json!({"from": "stemcell"}));
    // run_step already asserts the sentinel secret appears in no output and no file.
    out.assert_fails_with(&["client `repave`"]);
}

#[test]
fn from_must_name_a_get_directory() {
    let sim = RunningSim::start(&scenario());
    let work = tempfile::tempdir().unwrap();
    put(&sim, work.path(), json!({"from": "nope"})).assert_fails_with(&["params.from", "nope"]);
}

/// Least privilege, as a real director judges it: uploading takes `bosh.stemcells.upload`, but listing
/// stemcells and tasks and following the task take `bosh.read`, so the two together are enough, and
/// each alone is refused with the director's error naming the scope that is missing.
#[test]
fn least_privilege_is_upload_plus_read_and_each_missing_scope_is_named() {
    let admin_only = format!("clients: [{{id: repave, secret: {SENTINEL}, scopes: [bosh.admin]}}]");
    let clients = format!(
        "clients: [{{id: repave, secret: {SENTINEL}, scopes: [bosh.stemcells.upload, bosh.read]}}, \
         {{id: uploader, secret: {SENTINEL}, scopes: [bosh.stemcells.upload]}}, \
         {{id: reader, secret: {SENTINEL}, scopes: [bosh.read]}}]"
    );
    let sim = RunningSim::start(&scenario().replace(&admin_only, &clients));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506", false);
    let as_client = |client: &str| {
        let mut source = source(&sim);
        source["director"]["client"] = client.into();
        let request = json!({"source": source, "params": {"from": "stemcell"}});
        run_step("out", &request.to_string(), Some(work.path()), &[])
    };

    let upload_only = as_client("uploader");
    upload_only.assert_fails_with(&["listing stemcells", "401", "Require one of the scopes", "bosh.read"]);
    assert_eq!(posts(&sim), 0, "an upload-only client cannot even list, so nothing was uploaded");

    let read_only = as_client("reader");
    read_only.assert_fails_with(&["401", "Require one of the scopes", "bosh.stemcells.upload"]);
    // Listing worked; the upload was refused, retried once with a fresh token (any 401 may be an
    // expired token), and refused again.
    assert_eq!(posts(&sim), 2, "the reader listed, then was refused at the upload");

    let out = as_client("repave");
    assert_eq!(out.json()["version"], json!({"version": "1.506"}), "{}", out.stderr);
    assert!(on_director(&sim, "1.506"));
}

/// `kill -9` while the director's upload task runs, then the same put again: the rerun finds the
/// task by its context id and follows it, so the stemcell is uploaded once. (200 polls of ~20 ms
/// leave seconds to kill the first put before its task ends, even on a loaded machine.)
#[test]
fn a_killed_put_is_resumed_by_following_its_director_task() {
    let sim = RunningSim::start(&scenario().replace("task_polls: 2", "task_polls: 200"));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506", false);
    let request = json!({"source": source(&sim), "params": {"from": "stemcell"}}).to_string();
    let mut first = spawn_step("out", &request, work.path());
    let polls = || sim.requests().iter().filter(|r| r.path == "/tasks/1").count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while polls() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(polls() >= 3, "the first put never followed its task");
    assert!(!on_director(&sim, "1.506"), "killed too late");

    let out = put(&sim, work.path(), json!({"from": "stemcell"}));
    assert_eq!(out.json()["version"], json!({"version": "1.506"}), "{}", out.stderr);
    assert!(
        out.stderr.contains("director task 1") && out.stderr.contains("instead of uploading again"),
        "{}",
        out.stderr
    );
    assert_eq!(posts(&sim), 1, "one upload for both builds");
    let lookup = sim.requests().into_iter().find(|r| r.path == "/tasks").expect("the rerun looked for its task");
    assert!(lookup.query.unwrap_or_default().contains("context_id=repave-stemcell-"));
    assert!(on_director(&sim, "1.506"));
}

/// A put whose source reads a private bucket: the director gets a presigned URL (it cannot sign), and
/// the signature in it is redacted wherever the URL is printed.
#[test]
fn a_private_bucket_is_fetched_by_the_director_through_a_presigned_url() {
    let sim = RunningSim::start(&scenario());
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.503", false);
    let with_keys = |secret: &str| {
        let mut source = source(&sim);
        source["auth"] = json!({"access_key": "AKIDREPAVE", "secret_key": secret});
        let request = json!({"source": source, "params": {"from": "stemcell", "task_timeout": "10m"}});
        run_step("out", &request.to_string(), Some(work.path()), &[])
    };

    let wrong = with_keys("not-the-secret");
    wrong.assert_fails_with(&["SignatureDoesNotMatch", "X-Amz-Signature=***"]);
    let unsigned = put(&sim, work.path(), json!({"from": "stemcell"}));
    unsigned.assert_fails_with(&["403 AccessDenied"]);

    let out = with_keys(SENTINEL);
    assert_eq!(out.json()["version"], json!({"version": "1.503"}), "{}", out.stderr);
    assert!(out.stderr.contains("presigned URL, valid for 600s"), "{}", out.stderr);
    assert!(on_director(&sim, "1.503"));
}

#[test]
fn a_task_past_its_timeout_fails_the_put_and_is_left_running() {
    let sim = RunningSim::start(&scenario().replace("task_polls: 2", "task_polls: 100000"));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506", false);
    let out = put(&sim, work.path(), json!({"from": "stemcell", "task_timeout": "300ms"}));
    out.assert_fails_with(&["director task 1", "still processing", "the next put follows it"]);
    assert!(!sim.requests().iter().any(|r| r.method == "DELETE"), "the task is not cancelled");
}
