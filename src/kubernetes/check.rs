//! `check` for `kind: kubernetes`: read the channel's feed file, or each minor's files across the
//! range, and answer the versions Concourse should know about, oldest first.

use crate::clients::k8s_feed::FeedClient;
use crate::config::kubernetes::{Channel, Selection, Source};
use crate::protocol::Version;
use crate::redact::Log;
use crate::versions::kubernetes::KubeVersion;
use anyhow::{Context, Result, bail};

/// Without `minor_max`, probe at most this many minors upward before giving up: keeps a check
/// bounded even against a feed that answers every file.
pub(crate) const MAX_PROBED_MINORS: u64 = 16;

/// Reads the feeds and returns the versions to report: only the latest on a first check; otherwise
/// the given version (when it still fits the selection) and everything newer, oldest first.
pub(crate) async fn check(
    feed: &FeedClient,
    source: &Source,
    selection: Selection,
    given: Option<&Version>,
    log: &Log,
) -> Result<Vec<Version>> {
    let found = match selection {
        Selection::Channel(channel) => read_channel(feed, channel, log).await?.into_iter().collect(),
        Selection::Minors { major, min, max } => {
            read_minors(feed, major, min, max, source.include_prereleases, log).await?
        }
    };
    let given = given.map(super::requested_version).transpose()?;
    let fits = |v: &KubeVersion| fits_selection(v, selection, source.include_prereleases);
    let chosen = select(found.into_iter().filter(|v| fits(v)).collect(), given.filter(|v| fits(v)));
    Ok(chosen.iter().map(|v| Version::from([("version".to_string(), v.plain())])).collect())
}

/// The Concourse rule on a sorted, de-duplicated list: no `given` → the newest only; `given` → it
/// and everything newer. A given version newer than anything the feeds show (a feed that moved
/// back) is dropped in favour of the current one.
pub(crate) fn select(mut found: Vec<KubeVersion>, given: Option<KubeVersion>) -> Vec<KubeVersion> {
    found.sort();
    found.dedup();
    let Some(given) = given else {
        return found.pop().into_iter().collect();
    };
    let newer: Vec<KubeVersion> = found.iter().filter(|v| **v > given).cloned().collect();
    match found.last() {
        Some(latest) if given > *latest => vec![latest.clone()],
        _ => std::iter::once(given).chain(newer).collect(),
    }
}

/// Whether a version belongs to what the source follows (a given version from an older config, or
/// a pre-release when they are excluded, does not).
fn fits_selection(version: &KubeVersion, selection: Selection, include_prereleases: bool) -> bool {
    if version.is_prerelease() && !include_prereleases {
        return false;
    }
    match selection {
        Selection::Channel(Channel { major, minor, .. }) => {
            major.is_none_or(|m| m == version.major) && minor.is_none_or(|m| m == version.minor)
        }
        Selection::Minors { major, min, max } => {
            version.major == major && version.minor >= min && max.is_none_or(|max| version.minor <= max)
        }
    }
}

/// The channel's file; a 404 means the line has no release yet (e.g. `stable-1.40`): no versions.
async fn read_channel(feed: &FeedClient, channel: Channel, log: &Log) -> Result<Option<KubeVersion>> {
    let version = read_version(feed, &channel.file()).await?;
    if version.is_none() {
        log.line(format!(
            "{} does not exist in the feed (404): channel `{channel}` has no release yet",
            channel.file()
        ));
    }
    if let (Some(v), Some(major), Some(minor)) = (&version, channel.major, channel.minor)
        && (v.major, v.minor) != (major, minor)
    {
        bail!("{} answered {v}, which is not a {major}.{minor} release", channel.file());
    }
    Ok(version)
}

/// Each minor's `stable-M.N.txt` (and `latest-M.N.txt` with pre-releases) from `min` upward. The
/// first minor with no file after one that had a file ends the probing: it has not been released.
/// Missing minors before the first found one are skipped (a mirror may drop end-of-life minors).
async fn read_minors(
    feed: &FeedClient,
    major: u64,
    min: u64,
    max: Option<u64>,
    include_prereleases: bool,
    log: &Log,
) -> Result<Vec<KubeVersion>> {
    let last = max.unwrap_or(min + MAX_PROBED_MINORS - 1);
    let mut found = Vec::new();
    for minor in min..=last {
        let stable = read_minor_file(feed, "stable", major, minor).await?;
        let latest = if include_prereleases { read_minor_file(feed, "latest", major, minor).await? } else { None };
        if stable.is_none() && latest.is_none() {
            if found.is_empty() {
                log.line(format!("{major}.{minor} has no release feed (404): skipped"));
                continue;
            }
            log.line(format!("{major}.{minor} has no release feed yet (404): stopped probing there"));
            break;
        }
        found.extend(stable.into_iter().chain(latest));
    }
    Ok(found)
}

/// `{track}-M.N.txt`, checked to name a release of that minor.
async fn read_minor_file(feed: &FeedClient, track: &str, major: u64, minor: u64) -> Result<Option<KubeVersion>> {
    let file = format!("{track}-{major}.{minor}.txt");
    let version = read_version(feed, &file).await?;
    if let Some(v) = &version
        && (v.major, v.minor) != (major, minor)
    {
        bail!("{file} answered {v}, which is not a {major}.{minor} release");
    }
    Ok(version)
}

/// One feed file as a version; `None` on 404.
pub(crate) async fn read_version(feed: &FeedClient, file: &str) -> Result<Option<KubeVersion>> {
    let Some(answer) = feed.read(file).await? else {
        return Ok(None);
    };
    let version = KubeVersion::parse(&answer.line)
        .with_context(|| format!("{} did not answer a Kubernetes version", answer.url))?;
    Ok(Some(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(list: &[&str]) -> Vec<KubeVersion> {
        list.iter().map(|s| KubeVersion::parse(s).unwrap()).collect()
    }

    fn plain(list: Vec<KubeVersion>) -> Vec<String> {
        list.iter().map(KubeVersion::plain).collect()
    }

    #[test]
    fn select_table() {
        let found = &["1.30.14", "1.28.15", "1.29.15", "1.29.15"];
        let cases: &[(&[&str], Option<&str>, &[&str])] = &[
            (found, None, &["1.30.14"]),
            (&[], None, &[]),
            (found, Some("1.29.15"), &["1.29.15", "1.30.14"]),
            (found, Some("1.29.3"), &["1.29.3", "1.29.15", "1.30.14"]),
            (found, Some("1.28.15"), &["1.28.15", "1.29.15", "1.30.14"]),
            (found, Some("1.30.14"), &["1.30.14"]),
            (found, Some("1.31.0"), &["1.30.14"]),
            (&[], Some("1.30.14"), &["1.30.14"]),
        ];
        for (found, given, want) in cases {
            let given = given.map(|g| KubeVersion::parse(g).unwrap());
            assert_eq!(plain(select(vs(found), given.clone())), *want, "{found:?} given {given:?}");
        }
    }

    #[test]
    fn fits_table() {
        let stable_130 = Selection::Channel(Channel::parse("stable-1.30").unwrap());
        let range = Selection::Minors { major: 1, min: 28, max: Some(30) };
        let open_range = Selection::Minors { major: 1, min: 28, max: None };
        let cases = [
            ("1.30.2", stable_130, false, true),
            ("1.29.2", stable_130, false, false),
            ("1.30.2-rc.0", stable_130, false, false),
            ("1.30.2-rc.0", stable_130, true, true),
            ("1.28.0", range, false, true),
            ("1.27.9", range, false, false),
            ("1.31.0", range, false, false),
            ("1.45.0", open_range, false, true),
        ];
        for (version, selection, pre, want) in cases {
            let v = KubeVersion::parse(version).unwrap();
            assert_eq!(fits_selection(&v, selection, pre), want, "{version} {selection:?} pre={pre}");
        }
    }
}
