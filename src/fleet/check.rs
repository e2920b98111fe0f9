//! `check`: the current fleet state as one version (only the current one; history is Concourse's).

use super::{connect, observe_source, version::version};
use crate::config::fleet::Source;
use crate::context::Ctx;
use crate::protocol::render_check;
use anyhow::Result;

pub(super) async fn run(source: &Source, ctx: &Ctx) -> Result<String> {
    let conn = connect(source, ctx).await?;
    let fleet = observe_source(&conn, source).await?;
    render_check(&[version(&fleet, source, ctx.clock.now())])
}
