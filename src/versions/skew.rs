//! The Kubernetes version-skew rule for control-plane upgrades, as pure functions: which jumps are
//! allowed and the chained path that gets from one version to another without skipping a minor.
//!
//! Policy (Kubernetes' version skew policy; docs/facts/kubernetes.md): "kube-apiserver [must] not
//! skip minor versions when upgrading, even in single-instance clusters". Downgrades are not
//! supported by Kubernetes either. Used by `kind: kubernetes` (`in` writes the path) and by the fleet planner
//! (a pin or target more than one minor ahead is refused with the chained path suggested).

use super::kubernetes::KubeVersion;
use std::fmt;

/// Why a jump from one version to another is not allowed as a single step. Versions are boxed to
/// keep the `Err` side of results small.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SkewError {
    /// `to` is older than `from`.
    Downgrade { from: Box<KubeVersion>, to: Box<KubeVersion> },
    /// Different major versions: Kubernetes has never published a supported path across majors.
    MajorChange { from: Box<KubeVersion>, to: Box<KubeVersion> },
    /// More than one minor ahead; `minors` is the chain to go through instead, `from`'s and `to`'s
    /// minors included (e.g. `[(1,28), (1,29), (1,30)]`).
    SkipsMinors { from: Box<KubeVersion>, to: Box<KubeVersion>, minors: Vec<(u64, u64)> },
    /// An intermediate minor the path must pass through has no known release.
    MissingMinor { from: Box<KubeVersion>, to: Box<KubeVersion>, major: u64, minor: u64 },
    /// The lookup for an intermediate minor answered a version of another minor.
    WrongMinor { major: u64, minor: u64, got: Box<KubeVersion> },
}

impl fmt::Display for SkewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkewError::Downgrade { from, to } => write!(
                f,
                "{from} → {to} is a downgrade: Kubernetes does not support downgrading the control plane; \
                 pick a target at or above {from}"
            ),
            SkewError::MajorChange { from, to } => {
                write!(f, "{from} → {to} changes the major version, which no Kubernetes upgrade path supports")
            }
            SkewError::SkipsMinors { from, to, minors } => {
                let chain = minors.iter().map(|(a, b)| format!("{a}.{b}")).collect::<Vec<_>>().join(" → ");
                let skipped = minors.len().saturating_sub(2);
                let noun = if skipped == 1 { "a minor" } else { "minors" };
                write!(
                    f,
                    "{} → {} skips {noun} (the apiserver may not skip minor versions); upgrade {chain}",
                    from.minor_str(),
                    to.minor_str()
                )
            }
            SkewError::MissingMinor { from, to, major, minor } => write!(
                f,
                "the path {from} → {to} must pass through {major}.{minor}, but no {major}.{minor} release is known"
            ),
            SkewError::WrongMinor { major, minor, got } => {
                write!(
                    f,
                    "the latest release of {major}.{minor} was reported as {got}, which is not a {major}.{minor} release"
                )
            }
        }
    }
}

impl std::error::Error for SkewError {}

/// Whether `from → to` is allowed as ONE control-plane upgrade: same major, not a downgrade, at most
/// one minor ahead. Equal versions are allowed (nothing to do).
pub(crate) fn check_skew(from: &KubeVersion, to: &KubeVersion) -> Result<(), SkewError> {
    if to < from {
        return Err(SkewError::Downgrade { from: Box::new(from.clone()), to: Box::new(to.clone()) });
    }
    if to.major != from.major {
        return Err(SkewError::MajorChange { from: Box::new(from.clone()), to: Box::new(to.clone()) });
    }
    if to.minor > from.minor + 1 {
        let minors = (from.minor..=to.minor).map(|m| (from.major, m)).collect();
        return Err(SkewError::SkipsMinors { from: Box::new(from.clone()), to: Box::new(to.clone()), minors });
    }
    Ok(())
}

/// The versions to upgrade through, in order, to get from `from` to `to` without skipping a minor:
/// each intermediate minor's latest patch (from `latest_patch_of_minor`, called with the minor number
/// of `from`'s major line) and then `to` itself. Empty when `from == to`; a downgrade or a change of
/// major is an error. Every consecutive pair of the result passes [`check_skew`].
pub(crate) fn upgrade_path(
    from: &KubeVersion,
    to: &KubeVersion,
    latest_patch_of_minor: impl Fn(u64) -> Option<KubeVersion>,
) -> Result<Vec<KubeVersion>, SkewError> {
    if to < from {
        return Err(SkewError::Downgrade { from: Box::new(from.clone()), to: Box::new(to.clone()) });
    }
    if to.major != from.major {
        return Err(SkewError::MajorChange { from: Box::new(from.clone()), to: Box::new(to.clone()) });
    }
    if to == from {
        return Ok(Vec::new());
    }
    let mut steps = Vec::new();
    for minor in from.minor + 1..to.minor {
        let step = latest_patch_of_minor(minor).ok_or_else(|| SkewError::MissingMinor {
            from: Box::new(from.clone()),
            to: Box::new(to.clone()),
            major: from.major,
            minor,
        })?;
        if (step.major, step.minor) != (from.major, minor) {
            return Err(SkewError::WrongMinor { major: from.major, minor, got: Box::new(step) });
        }
        steps.push(step);
    }
    steps.push(to.clone());
    Ok(steps)
}

/// One readable line for logs: `1.28.11 → 1.29.15 → 1.30.14 (2 steps)`, or `already at 1.30.14`.
pub(crate) fn describe_path(from: &KubeVersion, steps: &[KubeVersion]) -> String {
    if steps.is_empty() {
        return format!("already at {from}: no upgrade needed");
    }
    let chain: Vec<String> = std::iter::once(from).chain(steps).map(ToString::to_string).collect();
    let noun = if steps.len() == 1 { "step" } else { "steps" };
    format!("{} ({} {noun})", chain.join(" → "), steps.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    /// A feed: the latest patch of each minor 1.25–1.31.
    fn feed(minor: u64) -> Option<KubeVersion> {
        let patch = [(25, 16), (26, 15), (27, 16), (28, 15), (29, 15), (30, 14), (31, 4)];
        patch.iter().find(|(m, _)| *m == minor).map(|(m, p)| KubeVersion::new(1, *m, *p))
    }

    #[test]
    fn check_skew_table() {
        // (from, to, Ok?, needle in the error)
        let cases: &[(&str, &str, bool, &str)] = &[
            ("1.28.11", "1.28.11", true, ""),
            ("1.28.11", "1.28.15", true, ""),
            ("1.28.11", "1.29.0", true, ""),
            ("1.28.11+vmware.1", "1.29.15", true, ""),
            ("1.28.15", "1.29.0-rc.1", true, ""),
            ("1.29.0-rc.1", "1.29.0", true, ""),
            (
                "1.28.11",
                "1.30.14",
                false,
                "1.28 → 1.30 skips a minor (the apiserver may not skip minor versions); upgrade 1.28 → 1.29 → 1.30",
            ),
            (
                "1.27.1",
                "1.30.0",
                false,
                "1.27 → 1.30 skips minors (the apiserver may not skip minor versions); upgrade 1.27 → 1.28 → 1.29 → 1.30",
            ),
            ("1.29.2", "1.29.1", false, "is a downgrade"),
            ("1.30.0", "1.29.15", false, "1.30.0 → 1.29.15 is a downgrade"),
            ("1.29.0", "1.29.0-rc.1", false, "downgrade"),
            ("1.30.1", "2.0.0", false, "changes the major version"),
        ];
        for (from, to, ok, needle) in cases {
            let result = check_skew(&v(from), &v(to));
            assert_eq!(result.is_ok(), *ok, "{from} → {to}: {result:?}");
            if let Err(err) = result {
                assert!(err.to_string().contains(needle), "{from} → {to}: {err}");
            }
        }
    }

    #[test]
    fn upgrade_path_table() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("1.30.14", "1.30.14", &[]),
            ("1.28.11+vmware.1", "1.28.11", &[]),
            ("1.30.2", "1.30.14", &["1.30.14"]),
            ("1.29.3", "1.30.14", &["1.30.14"]),
            ("1.28.11", "1.30.14", &["1.29.15", "1.30.14"]),
            ("1.25.0", "1.31.4", &["1.26.15", "1.27.16", "1.28.15", "1.29.15", "1.30.14", "1.31.4"]),
            ("1.30.14", "1.31.0-rc.1", &["1.31.0-rc.1"]),
            ("1.29.0", "1.31.0-rc.1", &["1.30.14", "1.31.0-rc.1"]),
            // The target need not be its minor's latest patch; intermediates always are.
            ("1.28.1", "1.30.2", &["1.29.15", "1.30.2"]),
        ];
        for (from, to, want) in cases {
            let path = upgrade_path(&v(from), &v(to), feed).unwrap();
            let got: Vec<String> = path.iter().map(ToString::to_string).collect();
            assert_eq!(got, *want, "{from} → {to}");
            // The property the planner relies on: every hop obeys the skew rule.
            let mut at = v(from);
            for step in &path {
                check_skew(&at, step).unwrap();
                at = step.clone();
            }
        }
    }

    #[test]
    fn upgrade_path_errors() {
        let err = upgrade_path(&v("1.30.1"), &v("1.29.9"), feed).unwrap_err();
        assert!(matches!(err, SkewError::Downgrade { .. }), "{err}");
        let err = upgrade_path(&v("1.30.1"), &v("2.0.0"), feed).unwrap_err();
        assert!(matches!(err, SkewError::MajorChange { .. }), "{err}");
        let err = upgrade_path(&v("1.22.0"), &v("1.26.1"), feed).unwrap_err();
        assert_eq!(err.to_string(), "the path 1.22.0 → 1.26.1 must pass through 1.23, but no 1.23 release is known");
        let lying = |_| Some(v("1.40.0"));
        let err = upgrade_path(&v("1.28.0"), &v("1.30.0"), lying).unwrap_err();
        assert!(err.to_string().contains("not a 1.29 release"), "{err}");
    }

    #[test]
    fn lookup_is_only_asked_for_intermediate_minors() {
        let asked = std::cell::RefCell::new(Vec::new());
        let lookup = |m| {
            asked.borrow_mut().push(m);
            feed(m)
        };
        upgrade_path(&v("1.27.3"), &v("1.30.1"), lookup).unwrap();
        assert_eq!(*asked.borrow(), vec![28, 29]);
    }

    #[test]
    fn describes_paths() {
        let steps = [v("1.29.15"), v("1.30.14")];
        assert_eq!(describe_path(&v("1.28.11"), &steps), "1.28.11 → 1.29.15 → 1.30.14 (2 steps)");
        assert_eq!(describe_path(&v("1.30.14"), &[]), "already at 1.30.14: no upgrade needed");
        assert_eq!(describe_path(&v("1.30.1"), &steps[1..]), "1.30.1 → 1.30.14 (1 step)");
    }
}
