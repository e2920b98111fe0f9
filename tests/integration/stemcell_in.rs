//! `in` for `kind: stemcell` against repave-sim over TLS: each checksum kind, parallel ranges,
//! corrupted bytes, resets at several offsets, a server without ranges, a stall, preserve_filename.

use crate::common::{SENTINEL, StepOutput, run_step};
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use serde_json::{Value, json};
use sha2::Digest;
use std::path::Path;

const NAME: &str = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";
const SIZE: u64 = 3 << 20;

fn scenario() -> String {
    format!(
        r#"
boshio:
  stemcells:
    - name: {NAME}
      versions:
        - {{version: "1.506", regular: {{size: {SIZE}}}, light: {{size: 40000, checksums: [md5, sha1]}}}}
        - {{version: "1.505", regular: {{size: {SIZE}, checksums: [md5]}}}}
        - {{version: "1.504", regular: {{size: {SIZE}, wrong_checksum: true}}}}
        - {{version: "1.503", regular: {{size: {SIZE}, ranges: false}}}}
        - {{version: "1.502", regular: {{size: 1000, filename: "..%2Fx"}}}}
        - {{version: "1.501", regular: {{size: {SIZE}, s3_auth: {{access_key: AKIDREPAVE, secret_key: {SENTINEL}, region: eu-west-2}}}}}}
"#
    )
}

fn get(sim: &RunningSim, dir: &Path, version: &str, source: Value, params: Value) -> StepOutput {
    let mut source = source;
    source["kind"] = "stemcell".into();
    source["name"] = NAME.into();
    source["api_url"] = sim.url().into();
    source["ca_cert"] = std::fs::read_to_string(sim.ca_cert_path()).unwrap().into();
    // Short backoffs keep fault tests quick. No short timeout here: on a loaded CI machine the
    // simulator's answers can take seconds, and only the stall test is about timing out.
    if source.get("http").is_none() {
        source["http"] = json!({"max_backoff": "20ms"});
    }
    let request = json!({"source": source, "params": params, "version": {"version": version}});
    run_step("in", &request.to_string(), Some(dir), &[])
}

fn sha256_of(path: &Path) -> String {
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// What the sim publishes for a regular tarball (its true digests).
fn published(sim: &RunningSim, version: &str, flavor: &str, size: u64) -> repave_sim::BlobDigests {
    sim.state().tarball_digests(NAME, version, flavor, size)
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn tarball_gets(sim: &RunningSim) -> Vec<repave_sim::RequestRecord> {
    sim.requests().into_iter().filter(|r| r.method == "GET" && r.path.starts_with("/stemcells/")).collect()
}

#[test]
fn sha256_verified_parallel_download_and_the_peer_files() {
    let sim = RunningSim::start(&scenario());
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.506", json!({"flavor": "regular"}), json!({}));
    let answer = out.json();
    assert_eq!(answer["version"], json!({"version": "1.506"}));
    let digests = published(&sim, "1.506", "regular", SIZE);
    assert_eq!(sha256_of(&dir.path().join("stemcell.tgz")), digests.sha256);
    assert_eq!(files(dir.path()), ["sha1", "sha256", "stemcell.tgz", "url", "version"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("version")).unwrap(), "1.506");
    assert_eq!(std::fs::read_to_string(dir.path().join("sha256")).unwrap(), digests.sha256);
    let meta: Vec<&str> = answer["metadata"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(meta, ["name", "version", "flavor", "url", "size", "sha256", "sha1"]);
    let gets = tarball_gets(&sim);
    assert!(gets.len() > 1 && gets.iter().all(|r| r.range.is_some() && r.status == 206), "{gets:?}");
    assert!(out.stderr.contains("sha256 verified"), "{}", out.stderr);
}

#[test]
fn auto_flavor_fetches_light_verified_by_sha1_with_an_empty_sha256_file() {
    let sim = RunningSim::start(&scenario());
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.506", json!({}), json!({"preserve_filename": true}));
    out.json();
    let name = format!("light-bosh-stemcell-1.506-{NAME}.tgz");
    assert_eq!(files(dir.path()), [name.as_str(), "sha1", "sha256", "url", "version"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("sha256")).unwrap(), "", "empty when absent, as the peer");
    assert!(out.stderr.contains("sha1 verified"), "{}", out.stderr);
}

#[test]
fn md5_only_is_verified_with_md5() {
    let sim = RunningSim::start(&scenario());
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.505", json!({}), json!({}));
    out.json();
    assert!(out.stderr.contains("md5 verified"), "{}", out.stderr);
    assert_eq!(sha256_of(&dir.path().join("stemcell.tgz")), published(&sim, "1.505", "regular", SIZE).sha256);
}

#[test]
fn a_checksum_mismatch_fails_and_leaves_no_tarball_behind() {
    let sim = RunningSim::start(&scenario());
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.504", json!({}), json!({}));
    out.assert_fails_with(&["sha256", "does not match the published checksum"]);
    assert_eq!(files(dir.path()), ["sha1", "sha256", "url", "version"], "no tarball, no temp file");
}

#[test]
fn resets_at_several_offsets_resume_and_verify() {
    let sim = RunningSim::start(&scenario());
    for (skip, bytes) in [(0, 1), (2, 100_000), (5, 200_000)] {
        sim.add_fault(
            FaultRule::new("/stemcells/*", FaultAction::ResetAfterBytes { bytes }).method("GET").skip(skip).count(1),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.506", json!({"flavor": "regular"}), json!({"parallel": 4}));
    out.json();
    assert_eq!(sha256_of(&dir.path().join("stemcell.tgz")), published(&sim, "1.506", "regular", SIZE).sha256);
    let gets = tarball_gets(&sim);
    // Pieces are 256 KiB here; a range that starts inside one is a resume from the last byte received.
    let starts =
        gets.iter().filter_map(|r| r.range.as_deref()?.strip_prefix("bytes=")?.split('-').next()?.parse::<u64>().ok());
    let resumed = starts.filter(|start| start % (256 << 10) != 0).count();
    assert!(gets.iter().filter(|r| r.fault.is_some()).count() == 3, "{gets:?}");
    assert!(resumed > 0, "a resumed range starts mid-piece: {gets:?}");
    assert!(out.stderr.contains("retrying"), "{}", out.stderr);
}

#[test]
fn a_persistently_broken_server_fails_after_bounded_retries_and_leaves_nothing() {
    // A truncated body under the original Content-Length on every try: the download gives up, and
    // nothing is left under the final name.
    let sim = RunningSim::start(&scenario());
    sim.add_fault(FaultRule::new("/stemcells/*", FaultAction::Truncate { bytes: 10 }).method("GET"));
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.506", json!({"flavor": "regular"}), json!({"parallel": 2}));
    out.assert_fails_with(&["gave up"]);
    assert!(!dir.path().join("stemcell.tgz").exists());
    assert!(files(dir.path()).iter().all(|f| !f.ends_with(".part")), "{:?}", files(dir.path()));
}

#[test]
fn a_server_without_ranges_gets_one_stream_restarted_after_a_reset() {
    let sim = RunningSim::start(&scenario());
    sim.add_fault(
        FaultRule::new("/stemcells/*", FaultAction::ResetAfterBytes { bytes: 500_000 }).method("GET").count(1),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.503", json!({}), json!({}));
    out.json();
    assert_eq!(sha256_of(&dir.path().join("stemcell.tgz")), published(&sim, "1.503", "regular", SIZE).sha256);
    let gets = tarball_gets(&sim);
    assert_eq!(gets.len(), 2, "{gets:?}");
    // The first GET asks for a range (no HEAD before it) and gets the whole body; the restart asks for none.
    assert!(gets.iter().all(|r| r.status == 200) && gets[1].range.is_none(), "{gets:?}");
    assert!(out.stderr.contains("in one stream"), "{}", out.stderr);
}

#[test]
fn a_stalled_range_times_out_and_is_resumed() {
    let sim = RunningSim::start(&scenario());
    // Far longer than the 5 s stall timeout: only a cut-and-resume logs "timed out". No wall-clock
    // bound is asserted — shared CI machines are too noisy for that; 5 s leaves the unstalled
    // requests room on a loaded machine.
    let stall = FaultAction::Stall { after_bytes: Some(50_000), ms: 60_000 };
    sim.add_fault(FaultRule::new("/stemcells/*", stall).method("GET").count(1));
    let dir = tempfile::tempdir().unwrap();
    let source = json!({"flavor": "regular", "http": {"max_backoff": "20ms", "stall_timeout": "5s"}});
    let out = get(&sim, dir.path(), "1.506", source, json!({}));
    out.json();
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    assert_eq!(sha256_of(&dir.path().join("stemcell.tgz")), published(&sim, "1.506", "regular", SIZE).sha256);
}

#[test]
fn preserve_filename_rejects_traversal() {
    let sim = RunningSim::start(&scenario());
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.502", json!({}), json!({"preserve_filename": true}));
    out.assert_fails_with(&["`../x`", "not a plain file name"]);
    assert!(!dir.path().parent().unwrap().join("x").exists());
}

#[test]
fn tarball_false_writes_only_metadata() {
    let sim = RunningSim::start(&scenario());
    let dir = tempfile::tempdir().unwrap();
    get(&sim, dir.path(), "1.506", json!({}), json!({"tarball": false})).json();
    assert_eq!(files(dir.path()), ["sha1", "sha256", "url", "version"]);
    assert!(tarball_gets(&sim).is_empty() && sim.requests().iter().all(|r| r.method != "HEAD"));
}

fn private_bucket(secret: &str, region: &str) -> Value {
    json!({"flavor": "regular", "auth": {"access_key": "AKIDREPAVE", "secret_key": secret, "region": region}})
}

#[test]
fn a_private_bucket_is_read_with_signed_parallel_ranges() {
    let sim = RunningSim::start(&scenario());
    let dir = tempfile::tempdir().unwrap();
    let out = get(&sim, dir.path(), "1.501", private_bucket(SENTINEL, "eu-west-2"), json!({}));
    assert_eq!(out.json()["version"], json!({"version": "1.501"}), "{}", out.stderr);
    assert_eq!(sha256_of(&dir.path().join("stemcell.tgz")), published(&sim, "1.501", "regular", SIZE).sha256);
    let gets = tarball_gets(&sim);
    assert!(gets.len() > 1 && gets.iter().all(|r| r.status == 206), "{gets:?}");
}

#[test]
fn a_private_bucket_names_what_is_wrong_with_the_keys() {
    let sim = RunningSim::start(&scenario());
    let cases = [
        (json!({"flavor": "regular"}), "403", "AccessDenied"),
        (private_bucket("not-the-secret", "eu-west-2"), "403", "SignatureDoesNotMatch"),
        (private_bucket(SENTINEL, "us-east-1"), "400", "expecting 'eu-west-2'"),
    ];
    for (source, status, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = get(&sim, dir.path(), "1.501", source, json!({}));
        out.assert_fails_with(&[status, needle, "source.auth"]);
        assert!(!dir.path().join("stemcell.tgz").exists());
    }
}
