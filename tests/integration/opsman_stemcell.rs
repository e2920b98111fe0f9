//! `out` of `kind: stemcell` into Ops Manager, against repave-sim over TLS: the tarball is streamed as a
//! multipart upload and assigned to the TKGI tile (associations from Ops Manager 2.6 on, assignments before); a
//! stemcell already in the library is not uploaded; an upload that breaks off midway is sent again from the
//! start; a build killed after its upload is re-run without a second upload; the director target still works
//! beside it.

use crate::common::opsman::{JAMMY, TKGI, count, fetch, put_stemcell, stemcell_source, world};
use crate::common::{SENTINEL, spawn_step};
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use serde_json::json;
use std::time::{Duration, Instant};

const UPLOAD: &str = "/api/v0/stemcells";

/// A second tile on the Jammy line, so a test sees that only the named tile gets the stemcell.
const CF_TILE: &str = "  products:\n    - {type: cf, version: 6.0.1-build.2, stemcells: [\"bosh-vsphere-esxi-ubuntu-jammy-go_agent/1.505\"]}";

fn staged(sim: &RunningSim, kind: &str) -> Vec<String> {
    sim.state().opsman.staged_stemcells(kind)
}

fn in_library(sim: &RunningSim, version: &str) -> bool {
    sim.state().opsman.library().contains(&("ubuntu-jammy".to_string(), version.to_string()))
}

#[test]
fn a_stemcell_is_streamed_into_ops_manager_and_assigned_to_the_tkgi_tile_only() {
    let sim = RunningSim::start(&world(CF_TILE));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506");
    let out = put_stemcell(work.path(), &stemcell_source(&sim), json!({"from": "stemcell"}));
    let answer = out.json();
    assert_eq!(answer["version"], json!({"version": "1.506"}), "the version check reports");
    assert!(in_library(&sim, "1.506"));
    assert_eq!(staged(&sim, TKGI), ["ubuntu-jammy/1.506"]);
    assert_eq!(staged(&sim, "cf"), ["ubuntu-jammy/1.505"], "not floating: only the tiles named get it");
    let upload = sim.requests().into_iter().find(|r| r.method == "POST" && r.path == UPLOAD).unwrap();
    assert_eq!((upload.status, upload.auth_scheme.as_deref()), (200, Some("Bearer")));
    assert_eq!(count(&sim, "PATCH", "/api/v0/stemcell_associations"), 1);
    assert_eq!(count(&sim, "POST", "/uaa/oauth/token"), 1, "one token for the whole put");
    assert!(out.stderr.contains("assigned ubuntu-jammy 1.506 to pivotal-container-service"), "{}", out.stderr);
    let metadata = answer["metadata"].to_string();
    assert!(metadata.contains("assigned_to") && metadata.contains(TKGI), "{metadata}");
    assert!(sim.state().fleet.views().iter().all(|c| c.stemcell == "1.505"), "staged, not applied");

    let again = put_stemcell(work.path(), &stemcell_source(&sim), json!({"from": "stemcell"}));
    again.json();
    assert!(again.stderr.contains("already in the stemcell library") && again.stderr.contains("already staged"));
    assert_eq!(count(&sim, "POST", UPLOAD), 1, "a re-run uploads nothing");
    assert_eq!(count(&sim, "PATCH", "/api/v0/stemcell_associations"), 1, "and assigns nothing");
}

#[test]
fn a_stemcell_already_in_the_library_is_not_uploaded() {
    let sim = RunningSim::start(&world(&format!("  stemcells: [\"{JAMMY}/1.506\"]")));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506");
    let out = put_stemcell(work.path(), &stemcell_source(&sim), json!({"from": "stemcell", "floating": true}));
    assert_eq!(out.json()["version"], json!({"version": "1.506"}));
    assert_eq!(count(&sim, "POST", UPLOAD), 0);
    assert!(out.stderr.contains("already in the stemcell library of Ops Manager"), "{}", out.stderr);
    assert_eq!(staged(&sim, TKGI), ["ubuntu-jammy/1.506"], "still assigned");
}

/// The connection breaks after 100 kB of the 300 kB tarball: Ops Manager never got it, so repave sends it
/// again, from its first byte.
#[test]
fn an_upload_reset_midway_is_sent_again_from_the_start() {
    let sim = RunningSim::start(&world(""));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506");
    sim.add_fault(
        FaultRule::new(UPLOAD, FaultAction::ResetUploadAfterBytes { bytes: 100_000 }).method("POST").count(1),
    );
    let out = put_stemcell(work.path(), &stemcell_source(&sim), json!({"from": "stemcell"}));
    assert_eq!(out.json()["version"], json!({"version": "1.506"}), "{}", out.stderr);
    let uploads: Vec<_> = sim.requests().into_iter().filter(|r| r.path == UPLOAD).collect();
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    assert_eq!(uploads[0].fault.as_deref(), Some("reset_upload_after_bytes"));
    assert_eq!((uploads[1].fault.as_deref(), uploads[1].status), (None, 200));
    assert!(out.stderr.contains("sending it again from its first byte"), "{}", out.stderr);
    assert!(count(&sim, "GET", "/api/v0/diagnostic_report") >= 2, "the library was read again before the second send");
    assert_eq!(sim.state().counter("opsman.stemcell_imports"), 1);
    assert_eq!(staged(&sim, TKGI), ["ubuntu-jammy/1.506"]);
}

#[test]
fn ops_manager_before_2_6_takes_the_assignment_through_stemcell_assignments() {
    let sim = RunningSim::start(&world("  version: 2.5.9-build.3"));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506");
    put_stemcell(work.path(), &stemcell_source(&sim), json!({"from": "stemcell"})).json();
    assert_eq!(count(&sim, "PATCH", "/api/v0/stemcell_assignments"), 1);
    assert!(!sim.requests().iter().any(|r| r.path == "/api/v0/stemcell_associations"));
    assert_eq!(staged(&sim, TKGI), ["ubuntu-jammy/1.506"]);
    let again = put_stemcell(work.path(), &stemcell_source(&sim), json!({"from": "stemcell"}));
    again.json();
    assert_eq!(count(&sim, "POST", UPLOAD), 1, "the old library (file names) finds it too");
}

/// `kill -9` after the upload, while the assignment hangs; the re-run finds the stemcell in the library,
/// uploads nothing and assigns it.
#[test]
fn a_killed_put_is_rerun_without_a_second_upload() {
    let sim = RunningSim::start(&world(""));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506");
    let stall = FaultAction::Stall { after_bytes: None, ms: 60_000 };
    sim.add_fault(FaultRule::new("/api/v0/stemcell_associations", stall).method("PATCH").count(1));
    let request = json!({"source": stemcell_source(&sim), "params": {"from": "stemcell"}}).to_string();
    let mut first = spawn_step("out", &request, work.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.faults()[0].matched == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(sim.faults()[0].matched, 1, "the first put never reached the assignment");
    assert_eq!(count(&sim, "POST", UPLOAD), 1);
    assert_eq!(staged(&sim, TKGI), ["ubuntu-jammy/1.505"], "killed before it assigned");

    let out = put_stemcell(work.path(), &stemcell_source(&sim), json!({"from": "stemcell"}));
    assert_eq!(out.json()["version"], json!({"version": "1.506"}), "{}", out.stderr);
    assert!(out.stderr.contains("not uploaded again"), "{}", out.stderr);
    assert_eq!(count(&sim, "POST", UPLOAD), 1, "one upload for both builds");
    assert_eq!(staged(&sim, TKGI), ["ubuntu-jammy/1.506"]);
}

#[test]
fn the_director_and_ops_manager_both_get_it() {
    let sim = RunningSim::start(&world(""));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506");
    let mut source = stemcell_source(&sim);
    source["director"] = json!({"url": sim.url(), "client": "repave", "client_secret": SENTINEL});
    let out = put_stemcell(work.path(), &source, json!({"from": "stemcell"}));
    let metadata = out.json()["metadata"].to_string();
    assert!(metadata.contains("\"director\"") && metadata.contains("\"opsman\""), "{metadata}");
    assert!(sim.state().director.stemcells().contains(&(JAMMY.to_string(), "1.506".to_string())));
    assert_eq!(staged(&sim, TKGI), ["ubuntu-jammy/1.506"]);
}

#[test]
fn a_tile_ops_manager_does_not_have_fails_before_anything_is_uploaded() {
    let sim = RunningSim::start(&world(""));
    let work = tempfile::tempdir().unwrap();
    fetch(&sim, work.path(), "1.506");
    let params = json!({"from": "stemcell", "products": ["pivotal-container-servce"]});
    let out = put_stemcell(work.path(), &stemcell_source(&sim), params);
    out.assert_fails_with(&[
        "params.products",
        "no tile of type `pivotal-container-servce`",
        "did you mean `pivotal-container-service`",
    ]);
    assert_eq!(count(&sim, "POST", UPLOAD), 0);
}

#[test]
fn ops_manager_needs_the_tarball_itself() {
    let sim = RunningSim::start(&world(""));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("stemcell");
    std::fs::create_dir_all(&dir).unwrap();
    let get = json!({"source": stemcell_source(&sim), "params": {"tarball": false}, "version": {"version": "1.506"}});
    crate::common::run_step("in", &get.to_string(), Some(&dir), &[]).json();
    let out = put_stemcell(work.path(), &stemcell_source(&sim), json!({"from": "stemcell"}));
    out.assert_fails_with(&["no stemcell tarball", "tarball: true"]);
    assert_eq!(count(&sim, "POST", UPLOAD), 0);
}
