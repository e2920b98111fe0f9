//! `kind: stemcell`: track bosh.io stemcells (check), download and verify them (in), upload them to a
//! BOSH director (out).

pub mod catalog;
pub mod download;
pub mod versions;

use crate::Ctx;
use crate::config::{
    self,
    stemcell::{GetParams, PutParams, Source},
};
use crate::protocol::{Request, Step};
use anyhow::{Result, bail};

/// Runs one step of the stemcell kind and returns the JSON answer.
pub async fn run(step: Step, request: Request, ctx: Ctx) -> Result<String> {
    let _source: Source = config::parse(&request.source, "source")?;
    match step {
        Step::Check => {}
        Step::In => {
            let _params: GetParams = config::parse(&request.params, "params")?;
        }
        Step::Out => {
            let _params: PutParams = config::parse(&request.params, "params")?;
        }
    }
    let _ = ctx;
    bail!("kind `stemcell` is not implemented yet")
}
