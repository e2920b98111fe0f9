//! The fleet version: one per observed state. A digest over what matters for upgrades, plus a few
//! readable fields. `check` and `out` both build it with [`version`] from the same observation code, so
//! a put emits byte for byte what a check of the same state reports (Concourse stores a put's version
//! straight into history).
//!
//! With `source.max_vm_age` / `source.warn_within`, two counts join it: `repave_due` (clusters whose
//! oldest VM passed the age) and `certs_expiring` (clusters with a certificate expiring within the
//! threshold). A count changes only when a cluster crosses its threshold (or is repaved or rotated), so
//! a pipeline triggers by itself when VMs age; ages and days left are never in the version, so it does
//! not change every day (no trigger loops).

use super::Observed;
use super::day2::{certs_expiring, repave_due};
use crate::config::fleet::Source;
use crate::protocol::Version;
use crate::versions::compare;
use jiff::Timestamp;
use sha2::{Digest, Sha256};

/// `{digest, clusters, newest_tkgi, behind}` for the selected clusters, plus the day-2 counts `source`
/// asks for, judged at `now`.
pub(super) fn version(fleet: &[Observed], source: &Source, now: Timestamp) -> Version {
    let newest = newest_tkgi(fleet).unwrap_or_default();
    let behind = fleet.iter().filter(|o| o.cluster.pks_version != newest).count();
    let mut version = Version::from([
        ("digest".to_string(), digest(fleet)),
        ("clusters".to_string(), fleet.len().to_string()),
        ("newest_tkgi".to_string(), newest),
        ("behind".to_string(), behind.to_string()),
    ]);
    if let Some(max) = source.max_vm_age {
        let due = fleet.iter().filter(|o| repave_due(o, max.0, now)).count();
        version.insert("repave_due".into(), due.to_string());
    }
    if let Some(within) = source.warn_within {
        let expiring = fleet.iter().filter(|o| certs_expiring(o, within.0, now)).count();
        version.insert("certs_expiring".into(), expiring.to_string());
    }
    version
}

/// sha256 (first 16 hex digits) over name, TKGI version, Kubernetes version, last action and state,
/// and stemcell of every cluster, sorted by name; fields are tab-separated, clusters newline-separated,
/// so no two different states can produce the same input.
pub(super) fn digest(fleet: &[Observed]) -> String {
    let mut sorted: Vec<&Observed> = fleet.iter().collect();
    sorted.sort_by(|a, b| a.cluster.name.cmp(&b.cluster.name));
    let mut hasher = Sha256::new();
    for o in sorted {
        let c = &o.cluster;
        let stemcell = o.stemcell.as_deref().unwrap_or("");
        let fields = [&c.name, &c.pks_version, &c.k8s_version, &c.last_action, &c.last_action_state];
        for field in fields {
            hasher.update(field.replace(['\t', '\n'], " ").as_bytes());
            hasher.update(b"\t");
        }
        hasher.update(stemcell.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The newest `pks_version` among the clusters, comparing numeric parts (`1.19.2-build.10` →
/// 1, 19, 2, 10) so `1.10` sorts after `1.9`.
pub(super) fn newest_tkgi(fleet: &[Observed]) -> Option<String> {
    fleet
        .iter()
        .map(|o| o.cluster.pks_version.as_str())
        .filter(|v| !v.is_empty())
        .max_by(|a, b| compare(a, b))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::tkgi::Cluster;
    use std::cmp::Ordering;

    fn o(name: &str, pks: &str, state: &str, stemcell: Option<&str>) -> Observed {
        let cluster = Cluster {
            name: name.into(),
            pks_version: pks.into(),
            k8s_version: "1.28.11".into(),
            last_action: "UPGRADE".into(),
            last_action_state: state.into(),
            ..Cluster::default()
        };
        Observed { cluster, stemcell: stemcell.map(str::to_string), deployment: None, facts: Default::default() }
    }

    #[test]
    fn digest_is_order_independent_and_state_sensitive() {
        let a = [o("a", "1.18", "succeeded", None), o("b", "1.19", "succeeded", None)];
        let b = [o("b", "1.19", "succeeded", None), o("a", "1.18", "succeeded", None)];
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(digest(&a).len(), 16);
        let changed = [o("a", "1.18", "in progress", None), o("b", "1.19", "succeeded", None)];
        assert_ne!(digest(&a), digest(&changed));
        let stemcell = [o("a", "1.18", "succeeded", Some("1.506")), o("b", "1.19", "succeeded", None)];
        assert_ne!(digest(&a), digest(&stemcell));
        // Field boundaries matter: ("ab","c") and ("a","bc") must differ.
        assert_ne!(digest(&[o("ab", "c", "x", None)]), digest(&[o("a", "bc", "x", None)]));
    }

    fn source(extra: serde_json::Value) -> Source {
        let mut map =
            serde_json::json!({"kind": "fleet", "api_url": "https://api", "client_id": "c", "client_secret": "s"});
        map.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        crate::config::parse_source(map.as_object().unwrap()).unwrap()
    }

    #[test]
    fn day2_counts_change_only_when_a_cluster_crosses_its_threshold() {
        use crate::clients::director::CertificateExpiry;
        use crate::fleet::Vms;
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let aged = |days: i64| {
            let mut o = o("a", "1.19", "succeeded", None);
            let oldest = now.checked_sub(jiff::SignedDuration::from_hours(24 * days)).unwrap();
            o.facts.vms = Some(Vms { count: 3, oldest: Some(oldest) });
            o.facts.certificates = Some(vec![CertificateExpiry {
                name: "/p-bosh/x/tls".into(),
                expiry_date: now.checked_add(jiff::SignedDuration::from_hours(24 * days)).unwrap().to_string(),
                days_left: days,
            }]);
            o
        };
        let source = source(serde_json::json!({"max_vm_age": "14d", "warn_within": "30d",
            "director": {"url": "https://d", "client": "c", "client_secret": "s"}}));
        let young = version(&[aged(3)], &source, now);
        assert_eq!((young["repave_due"].as_str(), young["certs_expiring"].as_str()), ("0", "1"));
        let a_day_older = version(&[aged(4)], &source, now);
        assert_eq!(young, a_day_older, "ages and days left are not part of the version");
        let old = version(&[aged(40)], &source, now);
        assert_eq!((old["repave_due"].as_str(), old["certs_expiring"].as_str()), ("1", "0"));
        assert_eq!(old["digest"], young["digest"], "the digest stays what TKGI and the stemcell say");
    }

    #[test]
    fn readable_fields() {
        let fleet = [
            o("a", "1.9.0-build.3", "succeeded", None),
            o("b", "1.10.1-build.2", "succeeded", None),
            o("c", "1.10.1-build.2", "failed", None),
        ];
        let now = Timestamp::now();
        let v = version(&fleet, &source(serde_json::json!({})), now);
        assert_eq!(v["newest_tkgi"], "1.10.1-build.2");
        assert_eq!((v["clusters"].as_str(), v["behind"].as_str()), ("3", "1"));
        assert_eq!(version(&[], &source(serde_json::json!({})), now)["clusters"], "0");
        assert!(!v.contains_key("repave_due") && !v.contains_key("certs_expiring"), "only when the source asks");
        assert_eq!(compare("1.19.2-build.10", "1.19.2-build.9"), Ordering::Greater);
    }
}
