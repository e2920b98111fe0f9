//! `check`: the deployed state of the followed tiles as one version (only the current one; history is
//! Concourse's).

use super::{connect, tiles};
use crate::config::opsman::Source;
use crate::context::Ctx;
use crate::protocol::render_check;
use anyhow::Result;

pub(super) async fn run(source: &Source, ctx: &Ctx) -> Result<String> {
    let opsman = connect(source, ctx)?;
    let deployed = tiles::deployed(&opsman, &source.products).await?;
    render_check(&[tiles::version(&deployed)])
}
