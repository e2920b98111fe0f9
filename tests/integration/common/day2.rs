//! Helpers for day-2 tests: a simulated world whose clusters have BOSH deployments (VM ages, process
//! state, locks, certificates), a fleet source with the director, and BBR backup artifacts written
//! from bbr's documented layout (docs/facts/certificates-and-backup.md): a folder
//! `<deployment>_<YYYYMMDDTHHMMSSZ>` with a YAML `metadata` listing the SHA-256 of every file inside
//! each `<group>-<index>-<artifact>.tar`.

use super::fleet::{source, world};
use super::{SENTINEL, StepOutput, run_step};
use jiff::{SignedDuration, Timestamp};
use repave_sim::testing::RunningSim;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;

/// `world` with a director client scope and a `deployments:` section (`deployments` is its YAML body,
/// indented two spaces), plus `extra` top-level YAML.
pub fn day2_world(clusters: &[&str], deployments: &str, extra: &str) -> String {
    world(clusters, 1200, &format!("deployments:\n{deployments}\n{extra}"))
        .replace("scopes: [pks.clusters.admin]", "scopes: [pks.clusters.admin, bosh.admin]")
}

/// The fleet source with the simulated director, plus `extra`.
pub fn day2_source(sim: &RunningSim, extra: Value) -> Value {
    let mut with = json!({"director": {"url": sim.url(), "client": "repave", "client_secret": SENTINEL}});
    with.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    source(sim, with)
}

/// `out` of the fleet with the director, in `dir`.
pub fn day2_put(sim: &RunningSim, source_extra: Value, params: Value, dir: &Path) -> StepOutput {
    let mut params = params;
    params.as_object_mut().unwrap().entry("poll_interval").or_insert(json!("50ms"));
    let request = json!({"source": day2_source(sim, source_extra), "params": params});
    run_step("out", &request.to_string(), Some(dir), &[])
}

pub fn day2_check(sim: &RunningSim, source_extra: Value) -> Value {
    let request = json!({"source": day2_source(sim, source_extra)});
    run_step("check", &request.to_string(), None, &[]).json()[0].clone()
}

/// The `service-instance_<uuid>` deployment of cluster `name`.
pub fn deployment_of(sim: &RunningSim, name: &str) -> String {
    let views = sim.state().fleet.views();
    let view = views.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("no cluster {name}"));
    format!("service-instance_{}", view.uuid)
}

/// The cluster a deployment belongs to.
pub fn cluster_of(sim: &RunningSim, deployment: &str) -> String {
    let uuid = deployment.trim_start_matches("service-instance_");
    sim.state().fleet.views().into_iter().find(|v| v.uuid == uuid).map(|v| v.name).unwrap_or_default()
}

/// Recreates the director accepted for `name`.
pub fn recreates(sim: &RunningSim, name: &str) -> i64 {
    sim.state().counter(&format!("director.recreates.{name}"))
}

/// The clusters whose deployments got a recreate request, in the order the director received them.
pub fn recreate_order(sim: &RunningSim) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/jobs/*") && r.status == 302)
        .map(|r| cluster_of(sim, r.path.trim_start_matches("/deployments/").trim_end_matches("/jobs/*")))
        .collect()
}

/// How a generated backup differs from a good one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backup {
    Good,
    /// One file's checksum in `metadata` does not match the tar.
    WrongChecksum,
    /// bbr failed before copying anything: `finish_time` is there, artifacts are not.
    FailedLooking,
}

/// Writes a bbr artifact folder for `deployment` taken `age` ago into `dir`; returns its name.
pub fn write_backup(dir: &Path, deployment: &str, age: SignedDuration, kind: Backup) -> String {
    let taken = Timestamp::now() - age;
    let stamp = taken.strftime("%Y%m%dT%H%M%SZ").to_string();
    let folder = format!("{deployment}_{stamp}");
    let path = dir.join(&folder);
    std::fs::create_dir_all(&path).unwrap();
    let files: [(&str, &[u8]); 2] = [("./etcd/snapshot.db", b"etcd snapshot bytes"), ("./etcd/member.json", b"{}")];
    let mut checksums = String::new();
    for (name, bytes) in files {
        let mut sum = format!("{:x}", Sha256::digest(bytes));
        if kind == Backup::WrongChecksum && name.ends_with("member.json") {
            sum = format!("{:x}", Sha256::digest(b"something else"));
        }
        checksums.push_str(&format!("      {name}: {sum}\n"));
    }
    let instances = match kind {
        Backup::FailedLooking => "instances: []\n".to_string(),
        _ => format!(
            "instances:\n- name: master\n  index: \"0\"\n  artifacts:\n  - name: bbr-etcd\n    checksums:\n{checksums}"
        ),
    };
    let time = taken.strftime("%Y/%m/%d %H:%M:%S UTC");
    let metadata = format!("{instances}backup_activity:\n  start_time: {time}\n  finish_time: {time}\n");
    std::fs::write(path.join("metadata"), metadata).unwrap();
    if kind != Backup::FailedLooking {
        write_tar(&path.join("master-0-bbr-etcd.tar"), &files);
    }
    folder
}

fn write_tar(path: &Path, files: &[(&str, &[u8])]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *bytes).unwrap();
    }
    builder.finish().unwrap();
}
