//! `source` and `params` for `kind: kubernetes`, and the validation serde cannot express: the shape
//! of `channel`, the minor range, and which fields exclude each other.

use super::{Connection, HasConnection};
use anyhow::{Result, bail};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Source {
    /// Read from the raw map by `Kind::from_source`; declared so serde accepts it.
    #[allow(dead_code)]
    pub kind: String,
    /// Where the release files live; dl.k8s.io redirects to a CDN, which the client follows.
    #[serde(default = "default_feed_url")]
    pub feed_url: String,
    /// `stable` (default), `stable-1`, `stable-1.30`, `latest`, `latest-1.31`: the feed file to read.
    #[serde(default)]
    pub channel: Option<String>,
    /// Track every minor from this one (`1.28`) upward, one version per minor (its latest patch).
    #[serde(default)]
    pub minor_min: Option<String>,
    /// Highest minor tracked with `minor_min` (inclusive); without it, minors are probed upward until
    /// one has no feed yet.
    #[serde(default)]
    pub minor_max: Option<String>,
    /// Also report release candidates, betas and alphas (from `latest-1.N.txt`).
    #[serde(default)]
    pub include_prereleases: bool,
    /// `ca_cert`, `insecure_skip_tls_verify`, `http`: parsed beside these fields by `parse_source`.
    #[serde(skip)]
    pub connection: Connection,
}

impl HasConnection for Source {
    fn connection_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }
}

pub(crate) fn default_feed_url() -> String {
    "https://dl.k8s.io/release".to_string()
}

/// Which feed file a channel reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Track {
    /// The latest GA release.
    Stable,
    /// The latest release including pre-releases.
    Latest,
}

/// A validated `channel`: the track plus an optional major (`stable-1`) or minor (`stable-1.30`) line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Channel {
    pub track: Track,
    pub major: Option<u64>,
    pub minor: Option<u64>,
}

impl Channel {
    /// Parses `stable`, `latest`, `stable-1`, `stable-1.30`, `latest-1.31`.
    pub(crate) fn parse(text: &str) -> Result<Channel> {
        let bad = || {
            anyhow::anyhow!(
                "source.channel `{text}` is not a channel: expected `stable`, `latest`, `stable-1`, or a minor line such as `stable-1.30` or `latest-1.31`"
            )
        };
        let (track, line) = match text.split_once('-') {
            Some((track, line)) => (track, Some(line)),
            None => (text, None),
        };
        let track = match track {
            "stable" => Track::Stable,
            "latest" => Track::Latest,
            _ => return Err(bad()),
        };
        let (major, minor) = match line {
            None => (None, None),
            Some(line) => match line.split_once('.') {
                None => (Some(number(line).ok_or_else(bad)?), None),
                Some((major, minor)) => (Some(number(major).ok_or_else(bad)?), Some(number(minor).ok_or_else(bad)?)),
            },
        };
        Ok(Channel { track, major, minor })
    }

    /// The feed file, e.g. `stable-1.30.txt`.
    pub(crate) fn file(&self) -> String {
        format!("{self}.txt")
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.track {
            Track::Stable => "stable",
            Track::Latest => "latest",
        })?;
        match (self.major, self.minor) {
            (Some(major), Some(minor)) => write!(f, "-{major}.{minor}"),
            (Some(major), None) => write!(f, "-{major}"),
            _ => Ok(()),
        }
    }
}

/// What check follows: one channel file, or one version per minor across a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    Channel(Channel),
    Minors { major: u64, min: u64, max: Option<u64> },
}

impl Source {
    /// Checks the fields serde cannot and returns what to follow.
    pub(crate) fn selection(&self) -> Result<Selection> {
        if !(self.feed_url.starts_with("https://") || self.feed_url.starts_with("http://")) {
            bail!("source.feed_url `{}` must be an http(s) URL such as https://dl.k8s.io/release", self.feed_url);
        }
        match (&self.channel, &self.minor_min, &self.minor_max) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                bail!(
                    "source.channel and source.minor_min/minor_max exclude each other: follow one channel or a range of minors"
                )
            }
            (None, None, Some(_)) => bail!("source.minor_max needs source.minor_min (the lowest minor to track)"),
            (None, None, None) => self.channel_selection("stable"),
            (Some(channel), None, None) => self.channel_selection(channel),
            (None, Some(min), max) => minor_range(min, max.as_deref()),
        }
    }

    fn channel_selection(&self, text: &str) -> Result<Selection> {
        let channel = Channel::parse(text)?;
        if channel.track == Track::Latest && !self.include_prereleases {
            let stable = Channel { track: Track::Stable, ..channel };
            bail!(
                "source.channel `{channel}` reports pre-releases: set source.include_prereleases: true to follow it, or use `{stable}` for releases only"
            );
        }
        Ok(Selection::Channel(channel))
    }

    /// The feed URL without a trailing slash.
    pub(crate) fn feed_base(&self) -> &str {
        self.feed_url.trim_end_matches('/')
    }
}

/// A decimal number without a sign or leading zeros.
fn number(text: &str) -> Option<u64> {
    let ok = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    ok.then(|| text.parse().ok()).flatten()
}

/// `1.30` or `v1.30` into (major, minor); the error names the field.
fn parse_minor(field: &str, text: &str) -> Result<(u64, u64)> {
    let body = text.strip_prefix('v').unwrap_or(text);
    match body.split_once('.').and_then(|(major, minor)| Some((number(major)?, number(minor)?))) {
        Some(pair) => Ok(pair),
        None => bail!("source.{field} `{text}` is not a Kubernetes minor version: expected MAJOR.MINOR such as `1.30`"),
    }
}

fn minor_range(min: &str, max: Option<&str>) -> Result<Selection> {
    let (major, low) = parse_minor("minor_min", min)?;
    let high = match max {
        None => None,
        Some(text) => {
            let (max_major, high) = parse_minor("minor_max", text)?;
            if max_major != major {
                bail!("source.minor_min `{min}` and source.minor_max `{text}` must have the same major version");
            }
            if high < low {
                bail!("source.minor_max `{text}` is below source.minor_min `{min}`");
            }
            Some(high)
        }
    };
    Ok(Selection::Minors { major, min: low, max: high })
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetParams {
    /// The version the cluster runs now (`1.28.11`, `v1.28.11+vmware.1`): `in` writes the upgrade
    /// path from it to the fetched version.
    /// (No file form: a get's directory starts empty in Concourse, so a pipeline passes the version in
    /// with `load_var` → `from_version: ((.:cluster-version))`.)
    #[serde(default)]
    pub from_version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(extra: serde_json::Value) -> Result<Source> {
        let mut map = json!({"kind": "kubernetes"}).as_object().unwrap().clone();
        map.extend(extra.as_object().unwrap().clone());
        crate::config::parse_source(&map)
    }

    #[test]
    fn channels() {
        let ok = [
            ("stable", "stable.txt"),
            ("latest", "latest.txt"),
            ("stable-1", "stable-1.txt"),
            ("stable-1.30", "stable-1.30.txt"),
            ("latest-1.31", "latest-1.31.txt"),
        ];
        for (text, file) in ok {
            assert_eq!(Channel::parse(text).unwrap().file(), file);
        }
        for bad in ["", "Stable", "stable-", "stable-1.", "stable-v1.30", "stable-1.30.1", "beta-1.30", "stable-01.3"] {
            let err = Channel::parse(bad).unwrap_err().to_string();
            assert!(err.contains("source.channel") && err.contains("stable-1.30"), "{bad}: {err}");
        }
    }

    #[test]
    fn selections() {
        let s = source(json!({})).unwrap();
        assert_eq!(s.selection().unwrap(), Selection::Channel(Channel::parse("stable").unwrap()));
        let s = source(json!({"minor_min": "1.28", "minor_max": "1.31"})).unwrap();
        assert_eq!(s.selection().unwrap(), Selection::Minors { major: 1, min: 28, max: Some(31) });
        let s = source(json!({"minor_min": "1.28"})).unwrap();
        assert_eq!(s.selection().unwrap(), Selection::Minors { major: 1, min: 28, max: None });
        let s = source(json!({"channel": "latest-1.31", "include_prereleases": true})).unwrap();
        assert!(s.selection().is_ok());
    }

    #[test]
    fn selection_errors_name_the_fields() {
        let cases = [
            (json!({"channel": "stable", "minor_min": "1.28"}), "exclude each other"),
            (json!({"minor_max": "1.30"}), "source.minor_max needs source.minor_min"),
            (json!({"minor_min": "1.30", "minor_max": "1.28"}), "is below source.minor_min"),
            (json!({"minor_min": "1.30.1"}), "source.minor_min `1.30.1` is not a Kubernetes minor version"),
            (
                json!({"minor_min": "1.28", "minor_max": "1.x"}),
                "source.minor_max `1.x` is not a Kubernetes minor version",
            ),
            (json!({"minor_min": "v1.030"}), "source.minor_min `v1.030`"),
            (json!({"minor_min": "1.28", "minor_max": "2.1"}), "same major version"),
            (json!({"channel": "latest-1.31"}), "set source.include_prereleases: true"),
            (json!({"channel": "nightly"}), "source.channel `nightly` is not a channel"),
            (json!({"feed_url": "dl.k8s.io/release"}), "source.feed_url"),
        ];
        for (extra, needle) in cases {
            let err = source(extra.clone()).unwrap().selection().unwrap_err().to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = source(json!({"chanel": "stable"})).unwrap_err().to_string();
        assert!(err.contains("unknown field `chanel`") && err.contains("did you mean `channel`"), "{err}");
    }
}
