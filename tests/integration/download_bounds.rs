//! The download's bounds against hostile tarball servers (issue 15, items 11-13): a server trickling
//! a byte a second (which never trips the stall timeout) is cut off by the deadline the size and
//! `http.min_transfer_rate` give; a body without a length that goes on past the published size is
//! cut off at that size; a server declaring more than the list publishes is refused at once. After
//! any failed `in` the directory is empty: no tarball, no temp file, and no `version`/`url`/`sha1`/
//! `sha256` that would pass for a completed `tarball: false` get. A verified tarball is 0644.
//!
//! Only the request under test meets a short bound: the list request keeps the default deadline
//! except in the trickle test, whose deadline (10 s) is still far beyond what the in-process list takes.

use crate::common::{StepOutput, run_step};
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const NAME: &str = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";

fn scenario() -> String {
    format!(
        r#"
boshio:
  stemcells:
    - name: {NAME}
      versions:
        - {{version: "1.506", regular: {{size: 2048}}}}
        - {{version: "1.505", regular: {{size: 20000}}}}
        - {{version: "1.504", regular: {{size: 20000, published_size: 10000}}}}
        - {{version: "1.503", regular: {{size: 20000, wrong_checksum: true}}}}
"#
    )
}

fn get(sim: &RunningSim, dir: &Path, version: &str, http: Value) -> StepOutput {
    let source = json!({"kind": "stemcell", "name": NAME, "api_url": sim.url(), "flavor": "regular",
                        "ca_cert": std::fs::read_to_string(sim.ca_cert_path()).unwrap(), "http": http});
    let request = json!({"source": source, "version": {"version": version}});
    run_step("in", &request.to_string(), Some(dir), &[])
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_trickling_server_is_cut_off_by_the_size_derived_deadline() {
    let sim = RunningSim::start(&scenario());
    sim.add_fault(FaultRule::new("/stemcells/*", FaultAction::RateLimit { bytes_per_sec: 1 }).method("GET"));
    let dir = tempfile::tempdir().unwrap();
    let http = json!({"request_timeout": "10s", "min_transfer_rate": "1KiB/s", "attempts": 1});
    let out = get(&sim, dir.path(), "1.506", http);
    out.assert_fails_with(&["not finished after 12s", "http.min_transfer_rate", "the download was discarded"]);
    assert!(files(dir.path()).is_empty(), "a failed in left {:?}", files(dir.path()));
}

#[test]
fn a_body_without_length_is_cut_off_at_the_published_size() {
    let sim = RunningSim::start(&scenario());
    sim.add_fault(FaultRule::new("/stemcells/*", FaultAction::Endless { extra_bytes: 1 << 34 }).method("GET"));
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.505", json!({"attempts": 1}));
    out.assert_fails_with(&["sent more than the 20000 bytes the stemcell list publishes", "discarded"]);
    assert!(files(dir.path()).is_empty(), "a failed in left {:?}", files(dir.path()));
}

#[test]
fn a_server_declaring_more_than_the_published_size_is_refused_at_once() {
    let sim = RunningSim::start(&scenario());
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.504", json!({}));
    out.assert_fails_with(&["says the tarball has 20000 bytes, more than the 10000 the stemcell list publishes"]);
    assert!(files(dir.path()).is_empty(), "a failed in left {:?}", files(dir.path()));
}

#[test]
fn a_checksum_mismatch_leaves_nothing_behind() {
    let sim = RunningSim::start(&scenario());
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.503", json!({}));
    out.assert_fails_with(&["does not match the published checksum"]);
    assert!(files(dir.path()).is_empty(), "a failed in left {:?}", files(dir.path()));
}

#[test]
fn a_verified_tarball_is_readable_by_every_user() {
    let sim = RunningSim::start(&scenario());
    let dir = tempfile::tempdir().unwrap();
    get(&sim, dir.path(), "1.505", json!({})).json();
    assert_eq!(files(dir.path()), ["sha1", "sha256", "stemcell.tgz", "url", "version"]);
    for name in files(dir.path()) {
        let mode = std::fs::metadata(dir.path().join(&name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{name}");
    }
}
