//! Kubernetes version numbers: parsing the forms the feeds, the apiserver and TKGI print
//! (`v1.30.14`, `1.28.11+vmware.1`, `v1.31.0-rc.1`), ordering them, and printing them back.
//!
//! The grammar and the order are SemVer 2.0's, so the `semver` crate does the parsing; this type adds
//! what Kubernetes needs on top: an optional leading `v`, errors that say what was expected, and
//! equality that ignores build metadata (a distribution's `1.28.11+vmware.1` is Kubernetes 1.28.11
//! as far as skew goes).

use anyhow::Result;
use std::cmp::Ordering;
use std::fmt;

/// One Kubernetes version. Derefs to [`semver::Version`] for `major`, `minor`, `patch`, `pre` and
/// `build`; comparisons use SemVer precedence, which ignores build metadata.
#[derive(Clone, Debug)]
pub(crate) struct KubeVersion(semver::Version);

impl std::ops::Deref for KubeVersion {
    type Target = semver::Version;
    fn deref(&self) -> &semver::Version {
        &self.0
    }
}

impl KubeVersion {
    #[cfg(test)]
    pub(crate) fn new(major: u64, minor: u64, patch: u64) -> Self {
        KubeVersion(semver::Version::new(major, minor, patch))
    }

    /// Parses `v1.30.14`, `1.30.14`, `1.28.11+vmware.1` or `v1.31.0-rc.1`; surrounding whitespace is
    /// allowed, anything else is an error quoting the input and saying what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<KubeVersion> {
        let trimmed = text.trim();
        let body = trimmed.strip_prefix('v').unwrap_or(trimmed);
        semver::Version::parse(body).map(KubeVersion).map_err(|why| {
            anyhow::anyhow!(
                "`{}` is not a Kubernetes version ({why}): expected MAJOR.MINOR.PATCH such as `v1.30.14`",
                quote(trimmed)
            )
        })
    }

    /// The release tag: `v1.30.14` (with pre-release, without build metadata).
    pub(crate) fn tag(&self) -> String {
        format!("v{}", self.plain())
    }

    /// `1.30.14` or `1.31.0-rc.1`, without build metadata: the form check emits.
    pub(crate) fn plain(&self) -> String {
        let v = &self.0;
        match v.pre.is_empty() {
            true => format!("{}.{}.{}", v.major, v.minor, v.patch),
            false => format!("{}.{}.{}-{}", v.major, v.minor, v.patch, v.pre),
        }
    }

    /// `1.30`
    pub(crate) fn minor_str(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    pub(crate) fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

/// At most 100 bytes of untrusted input, for error messages.
fn quote(text: &str) -> String {
    let mut end = text.len().min(100);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() { format!("{}…", &text[..end]) } else { text.to_string() }
}

impl Ord for KubeVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp_precedence(&other.0)
    }
}

impl PartialOrd for KubeVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for KubeVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KubeVersion {}

/// Displays like [`KubeVersion::plain`] plus build metadata when present (`1.28.11+vmware.1`).
impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for KubeVersion {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        KubeVersion::parse(s)
    }
}

/// Deserializes from the string form, so fleet files and params can hold `1.30.14` or `v1.30.14`.
impl<'de> serde::Deserialize<'de> for KubeVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        KubeVersion::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Serializes as [`Display`](fmt::Display) does: `1.28.11+vmware.1`.
impl serde::Serialize for KubeVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    /// (input, (major, minor, patch), pre-release, build metadata)
    type Case = (&'static str, (u64, u64, u64), Option<&'static str>, Option<&'static str>);

    #[test]
    fn parses_the_forms_kubernetes_prints() {
        let cases: &[Case] = &[
            ("v1.30.14", (1, 30, 14), None, None),
            ("1.30.14", (1, 30, 14), None, None),
            ("  v1.30.14\n", (1, 30, 14), None, None),
            ("1.28.11+vmware.1", (1, 28, 11), None, Some("vmware.1")),
            ("v1.31.0-rc.1", (1, 31, 0), Some("rc.1"), None),
            ("v1.32.0-alpha.0+abc", (1, 32, 0), Some("alpha.0"), Some("abc")),
            ("0.0.0", (0, 0, 0), None, None),
        ];
        for (text, (major, minor, patch), pre, build) in cases {
            let parsed = v(text);
            assert_eq!((parsed.major, parsed.minor, parsed.patch), (*major, *minor, *patch), "{text}");
            assert_eq!(parsed.pre.as_str(), pre.unwrap_or_default(), "{text}");
            assert_eq!(parsed.build.as_str(), build.unwrap_or_default(), "{text}");
        }
    }

    #[test]
    fn rejects_garbage_with_a_quote() {
        for bad in
            ["", "v", "1.30", "1.30.x", "1.30.14.1", "01.30.1", "1.30.-1", "1.30.1-", "1.30.1+", "v 1.30.1", "<html>"]
        {
            let err = KubeVersion::parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not a Kubernetes version") && err.contains("1.30.14"), "{bad}: {err}");
        }
        let long = "x".repeat(300);
        let err = KubeVersion::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 250, "the quote is capped: {err}");
    }

    #[test]
    fn orders_like_semver() {
        let ascending = [
            "1.28.9",
            "1.28.10",
            "1.29.0-alpha.1",
            "1.29.0-alpha.2",
            "1.29.0-beta.0",
            "1.29.0-rc.0",
            "1.29.0-rc.1",
            "1.29.0",
            "1.29.1",
            "2.0.0",
        ];
        for pair in ascending.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.28.11+vmware.1"), v("v1.28.11"));
    }

    #[test]
    fn prints_plain_tag_and_display() {
        let x = v("v1.31.0-rc.1+build.5");
        assert_eq!(x.plain(), "1.31.0-rc.1");
        assert_eq!(x.tag(), "v1.31.0-rc.1");
        assert_eq!(x.to_string(), "1.31.0-rc.1+build.5");
        assert_eq!(x.minor_str(), "1.31");
    }

    #[test]
    fn serde_uses_the_string_form() {
        let parsed: KubeVersion = serde_json::from_str(r#""v1.28.11+vmware.1""#).unwrap();
        assert_eq!(parsed, v("1.28.11"));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), r#""1.28.11+vmware.1""#);
        let err = serde_json::from_str::<KubeVersion>(r#""1.28""#).unwrap_err().to_string();
        assert!(err.contains("`1.28` is not a Kubernetes version"), "{err}");
    }
}
