//! Helpers for the Ops Manager tests: a simulated foundation (bosh.io publishing a newer Jammy stemcell, Ops
//! Manager with the TKGI tile on the older one, three TKGI clusters on it), the `source` of each kind pointed at
//! it, and the steps a pipeline runs.

use super::{SENTINEL, StepOutput, run_step};
use repave_sim::testing::RunningSim;
use serde_json::{Value, json};
use std::path::Path;

pub const JAMMY: &str = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";
pub const TKGI: &str = "pivotal-container-service";
pub const UPGRADE_ALL: &str = "upgrade-all-service-instances";

/// The foundation; `opsman_extra` adds lines to the `opsman:` section (indent them by two spaces). An
/// installation takes 1 s, a cluster upgrade 0.3 s.
pub fn world(opsman_extra: &str) -> String {
    format!(
        r#"
time_scale: 0.001
uaa:
  clients: [{{id: repave, secret: {SENTINEL}, scopes: [opsman.admin, pks.clusters.admin, bosh.admin]}}]
  users: [{{username: admin, password: {SENTINEL}, scopes: [opsman.admin]}}]
  token_ttl_secs: 3600
boshio:
  stemcells:
    - name: {JAMMY}
      versions:
        - {{version: "1.506", regular: {{size: 300000}}}}
        - {{version: "1.505", regular: {{size: 1000}}}}
tkgi:
  platform_version: 1.19.2-build.10
  stemcell_name: {JAMMY}
  stemcell_version: "1.505"
  upgrade_secs: 300
  clusters:
    - {{name: c-01, pks_version: 1.18.5-build.10, stemcell: "1.505"}}
    - {{name: c-02, pks_version: 1.18.5-build.10, stemcell: "1.505"}}
    - {{name: c-03, pks_version: 1.18.5-build.10, stemcell: "1.505"}}
opsman:
  install_secs: 1000
{opsman_extra}
"#
    )
}

pub fn ca(sim: &RunningSim) -> String {
    std::fs::read_to_string(sim.ca_cert_path()).unwrap()
}

/// The Ops Manager block of `kind: stemcell` and `kind: fleet`.
pub fn login(sim: &RunningSim) -> Value {
    json!({"url": sim.url(), "client_id": "repave", "client_secret": SENTINEL, "ca_cert": ca(sim)})
}

/// `kind: opsman`, its login at the top level; `extra` is merged in.
pub fn source(sim: &RunningSim, extra: Value) -> Value {
    let mut source = json!({"kind": "opsman", "url": sim.url(), "client_id": "repave", "client_secret": SENTINEL,
                            "ca_cert": ca(sim), "http": {"max_backoff": "100ms"}});
    source.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    source
}

/// `kind: stemcell` with Ops Manager as the put's target.
pub fn stemcell_source(sim: &RunningSim) -> Value {
    json!({"kind": "stemcell", "name": JAMMY, "api_url": sim.url(), "ca_cert": ca(sim), "http": {"max_backoff": "50ms"},
           "opsman": login(sim)})
}

/// A `get` of the stemcell (with its tarball) into `work/stemcell`, as the job's first step.
pub fn fetch(sim: &RunningSim, work: &Path, version: &str) {
    let dir = work.join("stemcell");
    std::fs::create_dir_all(&dir).unwrap();
    let request = json!({"source": stemcell_source(sim), "params": {}, "version": {"version": version}});
    run_step("in", &request.to_string(), Some(&dir), &[]).json();
}

pub fn put_stemcell(work: &Path, source: &Value, params: Value) -> StepOutput {
    let request = json!({"source": source, "params": params});
    run_step("out", &request.to_string(), Some(work), &[])
}

pub fn check(sim: &RunningSim, extra: Value) -> StepOutput {
    run_step("check", &json!({"source": source(sim, extra)}).to_string(), None, &[])
}

/// `out` of `kind: opsman` in a fresh directory, polling every 50 ms.
pub fn apply(sim: &RunningSim, params: Value) -> StepOutput {
    let dir = tempfile::tempdir().unwrap();
    run_step("out", &apply_request(sim, params).to_string(), Some(dir.path()), &[])
}

pub fn apply_request(sim: &RunningSim, params: Value) -> Value {
    let mut params = params;
    params.as_object_mut().unwrap().entry("poll_interval").or_insert(json!("50ms"));
    json!({"source": source(sim, json!({})), "params": params})
}

/// Requests the sim saw for `method path`.
pub fn count(sim: &RunningSim, method: &str, path: &str) -> usize {
    sim.requests().iter().filter(|r| r.method == method && r.path == path).count()
}

/// Each cluster's stemcell, as its BOSH deployment runs it.
pub fn cluster_stemcells(sim: &RunningSim) -> Vec<String> {
    sim.state().fleet.views().into_iter().map(|c| c.stemcell).collect()
}
