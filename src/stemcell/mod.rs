//! `kind: stemcell`: track bosh.io stemcells (check), download and verify them (in), upload them to a
//! BOSH director and/or import them into Ops Manager for its tiles (out). This module parses the
//! request and wires clients to the step modules.

pub(crate) mod catalog;
pub(crate) mod check;
pub(crate) mod download;
mod fetched;
pub(crate) mod get;
mod opsman;
pub(crate) mod put;

use crate::clients::boshio::BoshIo;
use crate::clients::director::Director;
use crate::clients::opsman::Opsman;
use crate::config::{
    self, Typed,
    stemcell::{GetParams, PutParams, S3Auth, Source},
};
use crate::context::Ctx;
use crate::http::{HttpClient, HttpConfig};
use crate::protocol::{self, Request, Step};
use anyhow::{Result, anyhow, bail};

/// A stemcell request, typed and checked: [`validate`] makes it, [`run`] takes it.
pub(crate) type Parsed = Typed<Source, GetParams, PutParams>;

/// Parses and checks `source` and `params` for `step` without I/O, once: pipeline checks and real
/// steps share every rule, and [`run`] gets the typed request.
pub(crate) fn validate(step: Step, request: &Request) -> Result<Parsed> {
    let source: Source = config::parse_source(&request.source)?;
    check_source(&source)?;
    let version = request.version.clone();
    Ok(match step {
        Step::Check => Typed::Check { source, version },
        Step::In => {
            let params: GetParams = config::parse(&request.params, "params")?;
            if !(1..=MAX_PARALLEL).contains(&params.parallel) {
                bail!("params.parallel is {}: expected 1 to {MAX_PARALLEL} connections", params.parallel);
            }
            // Pipeline checks validate configs without a version; every real `in` request has one.
            let wanted = version.as_ref().map(|v| v.get("version"));
            if wanted.is_some_and(|v| v.is_none_or(|v| v.trim().is_empty())) {
                bail!("version.version is missing or empty: expected a stemcell version such as \"1.506\"");
            }
            Typed::In { source, params, version }
        }
        Step::Out => {
            let params: PutParams = config::parse(&request.params, "params")?;
            check_targets(&source, &params)?;
            Typed::Out { source, params }
        }
    })
}

/// The rules of `source` that serde cannot express.
fn check_source(source: &Source) -> Result<()> {
    check_name(&source.name)?;
    check_api_url(&source.api_url)?;
    catalog::flavor(source)?;
    check_auth(source.auth.as_ref())?;
    Ok(())
}

/// More connections than this only add load on the mirror; the throttled-link gain flattens long before.
const MAX_PARALLEL: u32 = 64;
/// bosh.io names are under 100 characters; a longer one is a mistake (and would be echoed in errors).
const MAX_NAME: usize = 256;

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        bail!("source.name is empty: expected a stemcell name such as `bosh-aws-xen-hvm-ubuntu-jammy-go_agent`");
    }
    if name.len() > MAX_NAME {
        bail!("source.name is too long ({} bytes, at most {MAX_NAME}): expected a stemcell name", name.len());
    }
    Ok(())
}

fn check_api_url(url: &str) -> Result<()> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Ok(()),
        _ => bail!("source.api_url `{url}` is not a URL: expected an absolute URL such as https://bosh.io"),
    }
}

fn check_auth(auth: Option<&S3Auth>) -> Result<()> {
    let Some(auth) = auth else { return Ok(()) };
    for (field, value) in [("access_key", &auth.access_key), ("secret_key", &auth.secret_key), ("region", &auth.region)]
    {
        if value.trim().is_empty() {
            bail!("source.auth.{field} is empty: expected the HMAC key pair of the bucket and its region");
        }
    }
    Ok(())
}

/// A put needs somewhere to put the stemcell: a director, an Ops Manager, or both; the Ops Manager params
/// only with an Ops Manager.
fn check_targets(source: &Source, params: &PutParams) -> Result<()> {
    match &source.opsman {
        Some(opsman) => drop(opsman.login("source.opsman")?),
        None if source.director.is_none() => bail!(
            "source.director or source.opsman is required to put a stemcell: a BOSH director {{url, client, client_secret, ca_cert}}, or an Ops Manager {{url, client_id, client_secret (or username, password), ca_cert}}"
        ),
        None if params.products.is_some() || params.floating.is_some() => {
            bail!(
                "params.products and params.floating need source.opsman: they say which Ops Manager tiles get the stemcell"
            )
        }
        None => {}
    }
    if let Some(products) = &params.products
        && (products.is_empty() || products.iter().any(|p| p.trim().is_empty()))
    {
        bail!("params.products must list product types, e.g. [pivotal-container-service]");
    }
    Ok(())
}

/// Runs one step of the stemcell kind and returns the JSON answer.
pub(crate) async fn run(request: Parsed, ctx: Ctx) -> Result<String> {
    let dir = |step: &str| ctx.dir.as_ref().ok_or_else(|| anyhow!("{step} needs a directory argument"));
    match request {
        Typed::Check { source, version } => {
            let http = HttpClient::new(HttpConfig::from(&source.connection), &ctx.env, &ctx.log)?;
            let boshio = BoshIo::new(http, &source.api_url);
            let versions = check::check(&source, version.as_ref(), &boshio, &ctx.log).await?;
            protocol::render_check(&versions)
        }
        Typed::In { source, params, version } => {
            let version = version.ok_or_else(|| anyhow!("the in request has no version"))?;
            let http = HttpClient::new(HttpConfig::from(&source.connection), &ctx.env, &ctx.log)?;
            let boshio = BoshIo::new(http.clone(), &source.api_url);
            let response = get::get(&source, &params, &version, dir("in")?, &boshio, &http).await?;
            protocol::render_step(&response)
        }
        Typed::Out { source, params } => {
            let http_config = HttpConfig::from(&source.connection);
            let opsman = match &source.opsman {
                Some(block) => Some(Opsman::new(&block.login("source.opsman")?, &http_config, &ctx.env, &ctx.log)?),
                None => None,
            };
            let director = match &source.director {
                Some(block) => Some(Director::connect(&block.into(), &http_config, &ctx.env, &ctx.log).await?),
                None => None,
            };
            let targets = put::Targets { director: director.as_ref(), opsman: opsman.as_ref() };
            let response = put::put(&source, &params, dir("out")?, targets, &ctx.log).await?;
            protocol::render_step(&response)
        }
    }
}
