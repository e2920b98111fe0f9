//! `kind: kubernetes`: track upstream Kubernetes releases from the release feeds (check), write the
//! version and a skew-policy upgrade path (in). `out` is refused: releases are published upstream,
//! and clusters are upgraded by `kind: fleet`.

pub mod check;
pub mod get;

use crate::clients::k8s_feed::FeedClient;
use crate::config;
use crate::config::kubernetes::{GetParams, Selection, Source};
use crate::context::Ctx;
use crate::http::{HttpClient, HttpConfig};
use crate::protocol::{self, Request, Step, Version};
use crate::versions::kubernetes::KubeVersion;
use anyhow::{Context, Result, bail};

const READ_ONLY: &str = "kind `kubernetes` is read-only: `out` cannot publish Kubernetes releases. Use this \
     resource in `get` steps only (as a trigger, or with params.from_version for an upgrade path); to upgrade \
     clusters, put to a `kind: fleet` resource";

/// Parses `source` and `params` for `step` exactly as [`run`] does, without any I/O.
pub fn validate(step: Step, request: &Request) -> Result<()> {
    let source: Source = config::parse_source(&request.source)?;
    source.selection()?;
    match step {
        Step::Check => Ok(()),
        Step::In => config::parse::<GetParams>(&request.params, "params").map(drop),
        Step::Out => bail!(READ_ONLY),
    }
}

/// Runs one step of the kubernetes kind and returns the JSON answer.
pub async fn run(step: Step, request: Request, ctx: Ctx) -> Result<String> {
    match step {
        Step::Out => bail!(READ_ONLY),
        Step::Check => {
            let (source, selection, feed) = setup(&request, &ctx)?;
            let versions = check::check(&feed, &source, selection, request.version.as_ref(), &ctx.log).await?;
            protocol::render_check(&versions)
        }
        Step::In => {
            let (_, selection, feed) = setup(&request, &ctx)?;
            let params: GetParams = config::parse(&request.params, "params")?;
            let version = request.version.as_ref().context("the in request has no version")?;
            let dir = ctx.dir.as_deref().context("in needs its directory argument")?;
            let response = get::get(&feed, selection, &params, version, dir, &ctx.log).await?;
            protocol::render_step(&response)
        }
    }
}

/// Parses and validates `source` and builds the feed client.
fn setup(request: &Request, ctx: &Ctx) -> Result<(Source, Selection, FeedClient)> {
    let source: Source = config::parse_source(&request.source)?;
    let selection = source.selection()?;
    let feed = feed_client(&source, ctx)?;
    Ok((source, selection, feed))
}

fn feed_client(source: &Source, ctx: &Ctx) -> Result<FeedClient> {
    let config = HttpConfig::from(&source.connection);
    let http = HttpClient::new(config, &ctx.env, &ctx.log)?;
    Ok(FeedClient::new(http, source.feed_base()))
}

/// The Kubernetes version a Concourse version map names (`{"version": "1.30.14"}`).
pub fn requested_version(version: &Version) -> Result<KubeVersion> {
    let Some(text) = version.get("version") else {
        bail!("the requested version has no `version` key: expected {{\"version\": \"1.30.14\"}}");
    };
    KubeVersion::parse(text).context("version.version in the request")
}

/// How the selection reads in metadata and logs: `stable-1.30`, `minors 1.28-1.31`, `minors 1.28+`.
pub fn selection_label(selection: Selection) -> String {
    match selection {
        Selection::Channel(channel) => channel.to_string(),
        Selection::Minors { major, min, max: Some(max) } => format!("minors {major}.{min}-{major}.{max}"),
        Selection::Minors { major, min, max: None } => format!("minors {major}.{min}+"),
    }
}
