//! `in` when the first range finishes last: repave-sim stalls the first tarball GET mid-body, the
//! other connections fetch the rest of the file meanwhile, and the hasher must still hash the bytes
//! in file order, across several of its mapped windows, and verify each published checksum kind.

use crate::common::run_step;
use repave_sim::testing::RunningSim;
use repave_sim::{FaultAction, FaultRule};
use serde_json::json;
use sha2::Digest;

const NAME: &str = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";
/// Four of the hasher's 2 MiB windows; 32 pieces of 256 KiB over 4 connections.
const SIZE: u64 = 8 << 20;
/// Long next to fetching 8 MiB over loopback, far below the default 60 s stall timeout (no retry).
const STALL_MS: u64 = 3000;

fn scenario() -> String {
    format!(
        r#"
boshio:
  stemcells:
    - name: {NAME}
      versions:
        - {{version: "1.2", regular: {{size: {SIZE}}}}}
        - {{version: "1.1", regular: {{size: {SIZE}, checksums: [md5]}}}}
"#
    )
}

#[test]
fn a_first_range_that_finishes_last_is_hashed_in_order_and_verifies() {
    let sim = RunningSim::start(&scenario());
    let ca_cert = std::fs::read_to_string(sim.ca_cert_path()).unwrap();
    for (version, algo) in [("1.2", "sha256"), ("1.1", "md5")] {
        sim.clear_faults();
        sim.clear_requests();
        let stall = FaultAction::Stall { after_bytes: Some(100_000), ms: STALL_MS };
        sim.add_fault(FaultRule::new("/stemcells/*", stall).method("GET").count(1));
        let dir = tempfile::tempdir().unwrap();
        let source =
            json!({"kind": "stemcell", "name": NAME, "api_url": sim.url(), "ca_cert": ca_cert, "flavor": "regular"});
        let request = json!({"source": source, "params": {"parallel": 4}, "version": {"version": version}});
        let out = run_step("in", &request.to_string(), Some(dir.path()), &[]);
        out.json();
        assert!(out.stderr.contains(&format!("{algo} verified")), "{}", out.stderr);
        let published = sim.state().tarball_digests(NAME, version, "regular", SIZE);
        let tarball = std::fs::read(dir.path().join("stemcell.tgz")).unwrap();
        assert_eq!(format!("{:x}", sha2::Sha256::digest(&tarball)), published.sha256);

        let gets: Vec<_> =
            sim.requests().into_iter().filter(|r| r.method == "GET" && r.path.starts_with("/stemcells/")).collect();
        let first = gets.iter().min_by_key(|r| r.at_ms).unwrap();
        assert_eq!(
            (first.fault.as_deref(), first.range.as_deref()),
            (Some("stall"), Some("bytes=0-262143")),
            "{gets:?}"
        );
        let during_stall = gets.iter().filter(|r| r.id != first.id && r.at_ms < first.at_ms + STALL_MS).count();
        assert!(during_stall >= 4, "later ranges were fetched while the first one stalled: {gets:?}");
    }
}
