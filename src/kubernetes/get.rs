//! `in` for `kind: kubernetes`: write the version files and, given the version a cluster runs, the
//! upgrade path to this version that obeys the skew policy (`path.json`).
//!
//! Files written to the step directory:
//! - `version`: `1.30.14`
//! - `tag`: `v1.30.14`
//! - `path.json` (only with `params.from_version`):
//!   `{"from":"1.28.11","to":"1.30.14","steps":["1.29.15","1.30.14"]}` — the versions to upgrade
//!   through, in order, ending with `to`; each intermediate is its minor's latest stable patch.
//!   `steps` is empty when `from` already is `to`.

use super::check::read_version;
use crate::clients::k8s_feed::FeedClient;
use crate::config::kubernetes::{GetParams, Selection};
use crate::protocol::{MetadataField, StepResponse, Version};
use crate::redact::Log;
use crate::stepdir::{Mode, StepDir};
use crate::versions::kubernetes::KubeVersion;
use crate::versions::skew::{self, SkewError};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;

/// No real upgrade crosses this many minors; a larger gap is a typo, not a plan.
const MAX_PATH_MINORS: u64 = 40;

/// The content of `path.json`.
#[derive(Debug, Serialize)]
pub(crate) struct PathFile {
    pub from: String,
    pub to: String,
    pub steps: Vec<String>,
}

/// Writes the files for `version` into `dir` and answers the same version with metadata.
pub(crate) async fn get(
    feed: &FeedClient,
    selection: Selection,
    params: &GetParams,
    version: &Version,
    dir: &StepDir,
    log: &Log,
) -> Result<StepResponse> {
    let target = super::requested_version(version)?;
    write(dir, "version", &format!("{}\n", target.plain()))?;
    write(dir, "tag", &format!("{}\n", target.tag()))?;
    let mut metadata = vec![
        MetadataField::new("version", target.plain()),
        MetadataField::new("channel", super::selection_label(selection)),
    ];
    if let Some(from) = from_version(params)? {
        let steps = path_via_feed(feed, &from, &target).await?;
        log.line(format!("upgrade path: {}", skew::describe_path(&from, &steps)));
        let file =
            PathFile { from: from.plain(), to: target.plain(), steps: steps.iter().map(KubeVersion::plain).collect() };
        write(dir, "path.json", &format!("{}\n", serde_json::to_string(&file)?))?;
        let shown = if file.steps.is_empty() { "none".to_string() } else { file.steps.join(" → ") };
        metadata.push(MetadataField::new("steps", shown));
    }
    Ok(StepResponse { version: version.clone(), metadata })
}

/// The version to start the path from, if the pipeline passed one.
fn from_version(params: &GetParams) -> Result<Option<KubeVersion>> {
    params.from_version.as_deref().map(|text| KubeVersion::parse(text).context("params.from_version")).transpose()
}

/// The skew-policy path, reading each intermediate minor's `stable-M.N.txt` from the feed.
async fn path_via_feed(feed: &FeedClient, from: &KubeVersion, to: &KubeVersion) -> Result<Vec<KubeVersion>> {
    // Refuse downgrades and major changes before asking the feed anything.
    match skew::check_skew(from, to) {
        Err(err @ SkewError::Downgrade { .. }) => {
            bail!("the from version {from} is newer than the fetched version {to}, so there is no upgrade path: {err}")
        }
        Err(err @ SkewError::MajorChange { .. }) => bail!("no upgrade path: {err}"),
        _ => {}
    }
    if to.minor.saturating_sub(from.minor) > MAX_PATH_MINORS {
        bail!("{from} → {to} spans more than {MAX_PATH_MINORS} minors: check params.from_version");
    }
    let mut latest = BTreeMap::new();
    for minor in from.minor + 1..to.minor {
        let file = format!("stable-{}.{minor}.txt", from.major);
        if let Some(version) = read_version(feed, &file).await? {
            latest.insert(minor, version);
        }
    }
    skew::upgrade_path(from, to, |minor| latest.get(&minor).cloned()).context("computing the upgrade path")
}

fn write(dir: &StepDir, name: &str, content: &str) -> Result<()> {
    dir.write(name, content.as_bytes(), Mode::Public).map(drop)
}
