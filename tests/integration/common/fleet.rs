//! Helpers for `kind: fleet` tests: a simulated TKGI world, the fleet `source`, and check/out runs.

use super::{SENTINEL, StepOutput, run_step};
use repave_sim::testing::RunningSim;
use serde_json::{Value, json};

/// A world of `clusters` (YAML list items) where an upgrade takes `upgrade_secs` simulated seconds
/// (×0.0002 real), plus `extra` top-level YAML.
pub fn world(clusters: &[&str], upgrade_secs: u32, extra: &str) -> String {
    let items: String = clusters.iter().map(|c| format!("    - {c}\n")).collect();
    format!(
        "time_scale: 0.0002\n{extra}\nuaa:\n  clients: [{{id: repave, secret: {SENTINEL}, scopes: [pks.clusters.admin]}}]\n  token_ttl_secs: 3600\ntkgi:\n  upgrade_secs: {upgrade_secs}\n  clusters:\n{items}"
    )
}

pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{{name: {prefix}-{i:02}}}")).collect()
}

pub fn source(sim: &RunningSim, extra: Value) -> Value {
    let mut s = json!({
        "kind": "fleet",
        "api_url": sim.url(),
        "uaa_url": sim.url(),
        "client_id": "repave",
        "client_secret": SENTINEL,
        "ca_cert": std::fs::read_to_string(sim.ca_cert_path()).unwrap(),
        "http": {"max_backoff": "200ms"},
    });
    s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    s
}

pub fn check(sim: &RunningSim, extra: Value) -> StepOutput {
    run_step("check", &json!({"source": source(sim, extra)}).to_string(), None, &[])
}

pub fn out(sim: &RunningSim, params: Value) -> (StepOutput, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut params = params;
    params.as_object_mut().unwrap().entry("poll_interval").or_insert(json!("50ms"));
    let request = json!({"source": source(sim, json!({})), "params": params});
    (run_step("out", &request.to_string(), Some(dir.path()), &[]), dir)
}
