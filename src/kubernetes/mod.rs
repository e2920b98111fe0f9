//! `kind: kubernetes`: track upstream Kubernetes releases from the release feeds (check), write the
//! version and a skew-policy upgrade path (in). `out` is refused: releases are published upstream,
//! and clusters are upgraded by `kind: fleet`.

pub(crate) mod check;
pub(crate) mod get;

use crate::clients::k8s_feed::FeedClient;
use crate::config::kubernetes::{GetParams, Selection, Source};
use crate::config::{self, Typed};
use crate::context::Ctx;
use crate::http::{HttpClient, HttpConfig};
use crate::protocol::{self, Request, Step, Version};
use crate::versions::kubernetes::KubeVersion;
use anyhow::{Context, Result, bail};

const READ_ONLY: &str = "kind `kubernetes` is read-only: `out` cannot publish Kubernetes releases. Use this \
     resource in `get` steps only (as a trigger, or with params.from_version for an upgrade path); to upgrade \
     clusters, put to a `kind: fleet` resource";

/// A source together with what it follows, checked once by [`validate`].
pub(crate) struct Followed {
    source: Source,
    selection: Selection,
}

/// A kubernetes request, typed and checked; `out` never gets this far.
pub(crate) type Parsed = Typed<Followed, GetParams, std::convert::Infallible>;

/// Parses `source` and `params` for `step` exactly once, without any I/O; `out` is refused first,
/// whatever its source says.
pub(crate) fn validate(step: Step, request: &Request) -> Result<Parsed> {
    if step == Step::Out {
        bail!(READ_ONLY);
    }
    let source: Source = config::parse_source(&request.source)?;
    let selection = source.selection()?;
    let source = Followed { source, selection };
    let version = request.version.clone();
    Ok(match step {
        Step::In => Typed::In { source, params: config::parse(&request.params, "params")?, version },
        _ => Typed::Check { source, version },
    })
}

/// Runs one step of the kubernetes kind and returns the JSON answer.
pub(crate) async fn run(request: Parsed, ctx: Ctx) -> Result<String> {
    match request {
        Typed::Out { params, .. } => match params {},
        Typed::Check { source: Followed { source, selection }, version } => {
            let feed = feed_client(&source, &ctx)?;
            let versions = check::check(&feed, &source, selection, version.as_ref(), &ctx.log).await?;
            protocol::render_check(&versions)
        }
        Typed::In { source: Followed { source, selection }, params, version } => {
            let feed = feed_client(&source, &ctx)?;
            let version = version.context("the in request has no version")?;
            let dir = ctx.dir.as_ref().context("in needs its directory argument")?;
            let response = get::get(&feed, selection, &params, &version, dir, &ctx.log).await?;
            protocol::render_step(&response)
        }
    }
}

fn feed_client(source: &Source, ctx: &Ctx) -> Result<FeedClient> {
    let config = HttpConfig::from(&source.connection);
    let http = HttpClient::new(config, &ctx.env, &ctx.log)?;
    Ok(FeedClient::new(http, source.feed_base()))
}

/// The Kubernetes version a Concourse version map names (`{"version": "1.30.14"}`).
pub(crate) fn requested_version(version: &Version) -> Result<KubeVersion> {
    let Some(text) = version.get("version") else {
        bail!("the requested version has no `version` key: expected {{\"version\": \"1.30.14\"}}");
    };
    KubeVersion::parse(text).context("version.version in the request")
}

/// How the selection reads in metadata and logs: `stable-1.30`, `minors 1.28-1.31`, `minors 1.28+`.
pub(crate) fn selection_label(selection: Selection) -> String {
    match selection {
        Selection::Channel(channel) => channel.to_string(),
        Selection::Minors { major, min, max: Some(max) } => format!("minors {major}.{min}-{major}.{max}"),
        Selection::Minors { major, min, max: None } => format!("minors {major}.{min}+"),
    }
}
