//! `check`: the current fleet state as one version (only the current one; history is Concourse's).

use super::{connect, observe, version::version};
use crate::config::fleet::{Selector, Source};
use crate::context::Ctx;
use crate::protocol::render_check;
use anyhow::Result;

pub(super) async fn run(source: &Source, ctx: &Ctx) -> Result<String> {
    let conn = connect(source, ctx).await?;
    let fleet = observe(&conn, &Selector::new(&source.clusters)?).await?;
    render_check(&[version(&fleet)])
}
