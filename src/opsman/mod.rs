//! `kind: opsman`: a foundation's Ops Manager as a resource. `check` emits one version per deployed state of the
//! tiles it follows (their product versions and deployed stemcells); `in` writes what a pipeline feeds on (the
//! TKGI version in the clusters' format, the stemcell, the product GUID, pending changes, expiring certificates);
//! `out` runs Apply Changes for those tiles only, with its errand choices spelled out, and follows it to the end.
//! This module parses the request and connects; the steps are in `check`, `get` and `put`, what they share about
//! the deployed tiles in `tiles`, and following an installation in `follow`.

mod check;
mod follow;
mod get;
mod put;
mod tiles;

use crate::clients::opsman::Opsman;
use crate::config::opsman::{GetParams, PutParams, Source};
use crate::config::{self, OpsmanSource, Typed};
use crate::context::Ctx;
use crate::http::HttpConfig;
use crate::protocol::{Request, Step};
use anyhow::Result;

/// An Ops Manager request, typed and checked: [`validate`] makes it, [`run`] takes it.
pub(crate) type Parsed = Typed<Source, GetParams, PutParams>;

/// Parses and checks `source` and `params` for `step` once, without I/O. The login fields sit at the top of
/// `source` beside the kind's own, so they are split off and parsed on their own.
pub(crate) fn validate(step: Step, request: &Request) -> Result<Parsed> {
    let mut source: Source = config::parse_source_beside(&request.source, OpsmanSource::LOGIN_FIELDS)?;
    source.opsman = config::parse(&config::only(&request.source, OpsmanSource::LOGIN_FIELDS), "source")?;
    source.validate()?;
    Typed::for_step(step, request, source, PutParams::validate)
}

/// Runs one step of the Ops Manager kind and returns the JSON answer.
pub(crate) async fn run(request: Parsed, ctx: Ctx) -> Result<String> {
    match request {
        Typed::Check { source, .. } => check::run(&source, &ctx).await,
        Typed::In { source, params, version } => get::run(&source, &params, version, &ctx).await,
        Typed::Out { source, params } => put::run(&source, &params, &ctx).await,
    }
}

/// The client for `source` (its `ca_cert` and `http` are the connection's).
fn connect(source: &Source, ctx: &Ctx) -> Result<Opsman> {
    Opsman::new(&source.opsman.login("source")?, &HttpConfig::from(&source.connection), &ctx.env, &ctx.log)
}
