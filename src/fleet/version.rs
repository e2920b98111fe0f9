//! The fleet version: one per observed state. A digest over what matters for upgrades, plus a few
//! readable fields. `check` and `out` both build it with [`version`] from the same observation code, so
//! a put emits byte for byte what a check of the same state reports (Concourse stores a put's version
//! straight into history).

use super::Observed;
use crate::protocol::Version;
use crate::versions::compare;
use sha2::{Digest, Sha256};

/// `{digest, clusters, newest_tkgi, behind}` for the selected clusters.
pub(super) fn version(fleet: &[Observed]) -> Version {
    let newest = newest_tkgi(fleet).unwrap_or_default();
    let behind = fleet.iter().filter(|o| o.cluster.pks_version != newest).count();
    Version::from([
        ("digest".to_string(), digest(fleet)),
        ("clusters".to_string(), fleet.len().to_string()),
        ("newest_tkgi".to_string(), newest),
        ("behind".to_string(), behind.to_string()),
    ])
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
        Observed { cluster, stemcell: stemcell.map(str::to_string) }
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

    #[test]
    fn readable_fields() {
        let fleet = [
            o("a", "1.9.0-build.3", "succeeded", None),
            o("b", "1.10.1-build.2", "succeeded", None),
            o("c", "1.10.1-build.2", "failed", None),
        ];
        let v = version(&fleet);
        assert_eq!(v["newest_tkgi"], "1.10.1-build.2");
        assert_eq!((v["clusters"].as_str(), v["behind"].as_str()), ("3", "1"));
        assert_eq!(version(&[])["clusters"], "0");
        assert_eq!(compare("1.19.2-build.10", "1.19.2-build.9"), Ordering::Greater);
    }
}
