//! Version numbers, one home for every kind: how stemcell and TKGI versions order ([`compare`] and
//! [`stemcell`]), what a Kubernetes version is ([`kubernetes`], on the `semver` crate), which
//! Kubernetes upgrades the skew policy allows ([`skew`]), and how Ops Manager's TKGI tile version maps
//! to the clusters' ([`tkgi`]).
//!
//! A domain module below the kinds: `kind: stemcell` filters bosh.io versions with it, `kind:
//! kubernetes` writes upgrade paths with it, and the fleet planner compares cluster stemcells and
//! refuses TKGI jumps that skip a minor with it — none of them reaches into another kind for it.

pub(crate) mod kubernetes;
pub(crate) mod skew;
pub mod stemcell;
pub mod tkgi;

use std::cmp::Ordering;

/// Orders versions by their numeric parts, missing parts counting as 0 (`1.10` > `1.9`,
/// `1.19.2-build.10` > `1.19.2-build.9`, `1.506` = `1.506.0` numerically); equal numbers fall back to
/// the text so the order is total. Anything between the numbers is a separator, so a TKGI build
/// version and a stemcell version order by the same rule.
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    compare_parts(&numbers(a), &numbers(b)).then_with(|| a.cmp(b))
}

/// The decimal numbers in `text`, in order (`1.19.2-build.10` → 1, 19, 2, 10).
fn numbers(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok()).collect()
}

/// Part by part, a missing part counting as 0.
pub(crate) fn compare_parts(a: &[u64], b: &[u64]) -> Ordering {
    let len = a.len().max(b.len());
    (0..len).map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0))).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_parts_then_text() {
        assert_eq!(compare("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare("1.19.2-build.10", "1.19.2-build.9"), Ordering::Greater);
        assert_eq!(compare("1.506", "1.506"), Ordering::Equal);
        // Numerically equal, so the text decides and the order stays total.
        assert_eq!(compare("1.0", "1"), Ordering::Greater);
        assert_eq!(compare_parts(&[1, 0], &[1]), Ordering::Equal);
    }
}
