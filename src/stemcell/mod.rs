//! `kind: stemcell`: track bosh.io stemcells (check), download and verify them (in), upload them to a
//! BOSH director (out). This module parses the request and wires clients to the step modules.

pub mod catalog;
pub mod check;
pub mod download;
pub mod get;
pub mod put;
pub mod versions;

use crate::Ctx;
use crate::clients::boshio::BoshIo;
use crate::clients::director::Director;
use crate::config::{
    self,
    stemcell::{GetParams, PutParams, Source},
};
use crate::http::{HttpClient, HttpConfig};
use crate::protocol::{self, Request, Step};
use anyhow::{Result, anyhow};

/// Parses and checks `source` and `params` for `step` as [`run`] and the step modules do, without I/O.
pub fn validate(step: Step, request: &Request) -> Result<()> {
    let source: Source = config::parse(&request.source, "source")?;
    catalog::flavor(&source)?;
    versions::Family::parse(source.version_family.as_deref().unwrap_or("latest"))?;
    source.constraint.as_deref().map(versions::Constraint::parse).transpose()?;
    match step {
        Step::Check => {}
        Step::In => {
            config::parse::<GetParams>(&request.params, "params")?;
        }
        Step::Out => {
            config::parse::<PutParams>(&request.params, "params")?;
            director_of(&source)?;
        }
    }
    Ok(())
}

fn director_of(source: &Source) -> Result<&crate::config::DirectorSource> {
    source.director.as_ref().ok_or_else(|| {
        anyhow!("source.director is required to put a stemcell: {{url, client, client_secret, ca_cert}}")
    })
}

/// Runs one step of the stemcell kind and returns the JSON answer.
pub async fn run(step: Step, request: Request, ctx: Ctx) -> Result<String> {
    let source: Source = config::parse(&request.source, "source")?;
    let http_config = HttpConfig::from_source(source.ca_cert.as_deref(), source.insecure_skip_tls_verify, &source.http);
    let dir = || ctx.dir.clone().ok_or_else(|| anyhow!("{} needs a directory argument", step.name()));
    match step {
        Step::Check => {
            let http = HttpClient::new(http_config, &ctx.env, &ctx.log)?;
            let boshio = BoshIo::new(http, &source.api_url);
            let versions = check::check(&source, request.version.as_ref(), &boshio, &ctx.log).await?;
            protocol::render_check(&versions)
        }
        Step::In => {
            let params: GetParams = config::parse(&request.params, "params")?;
            let version = request.version.as_ref().ok_or_else(|| anyhow!("the in request has no version"))?;
            let http = HttpClient::new(http_config, &ctx.env, &ctx.log)?;
            let boshio = BoshIo::new(http.clone(), &source.api_url);
            let response = get::get(&source, &params, version, &dir()?, &boshio, &http).await?;
            protocol::render_step(&response)
        }
        Step::Out => {
            let params: PutParams = config::parse(&request.params, "params")?;
            let target = director_of(&source)?;
            let director = Director::connect(target, &http_config, &ctx.env, &ctx.log).await?;
            let response = put::put(&source, &params, &dir()?, &director, &ctx.log).await?;
            protocol::render_step(&response)
        }
    }
}
