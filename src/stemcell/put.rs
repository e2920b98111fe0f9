//! `out` for `kind: stemcell`: put a fetched stemcell into Ops Manager (see `opsman`) and/or upload it
//! to a BOSH director and wait for its task.
//!
//! By default the director fetches the tarball from its bosh.io URL itself (nothing large passes
//! through the worker); `upload_tarball: true` streams the local file instead. Already uploaded →
//! success without a task, as uploads are idempotent on the director too. An upload still running
//! from a killed build is found by its context id and followed, never started twice; a tarball in a
//! private bucket (`source.auth`) reaches the director as a presigned URL.

use super::check::to_version;
use super::fetched::{Fetched, find_tarball, read_fetched};
use crate::clients::director::Director;
use crate::clients::director_task::wait_for_task;
use crate::clients::opsman::Opsman;
use crate::config::stemcell::{PutParams, S3Auth, Source};
use crate::protocol::{MetadataField, StepResponse};
use crate::redact::Log;
use crate::sigv4;
use crate::stepdir::StepDir;
use anyhow::{Context, Result};
use std::time::Duration;

/// Where this put sends the stemcell: the configured director and Ops Manager.
pub(crate) struct Targets<'a> {
    pub director: Option<&'a Director>,
    pub opsman: Option<&'a Opsman>,
}

const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(3600);

/// Puts the stemcell in `dir/params.from` into Ops Manager and onto the director, whichever are
/// configured (Ops Manager first), skipping each one that already has it.
pub(crate) async fn put(
    source: &Source,
    params: &PutParams,
    dir: &StepDir,
    targets: Targets<'_>,
    log: &Log,
) -> Result<StepResponse> {
    let fetched = read_fetched(dir, &params.from)?;
    let mut metadata = vec![MetadataField::new("name", &source.name), MetadataField::new("version", &fetched.version)];
    if let Some(opsman) = targets.opsman {
        metadata.extend(super::opsman::put(source, params, &fetched, opsman, log).await?);
    }
    if let Some(director) = targets.director {
        metadata.extend(to_director(source, params, &fetched, director, log).await?);
    }
    Ok(StepResponse { version: to_version(&fetched.version), metadata })
}

/// Uploads the stemcell to `director` unless it is already there, and follows the director's task.
async fn to_director(
    source: &Source,
    params: &PutParams,
    fetched: &Fetched,
    director: &Director,
    log: &Log,
) -> Result<Vec<MetadataField>> {
    let target = &director.base_url;
    let uploaded = director.stemcells().await?;
    let mut metadata = vec![MetadataField::new("director", &director.info.name)];
    if uploaded.iter().any(|s| s.name == source.name && s.version == fetched.version) {
        log.line(format!("{} {} is already on the director {target}; nothing to upload", source.name, fetched.version));
        return Ok(metadata);
    }
    let context = context_id(&source.name, &fetched.version);
    let task_id = match director.unfinished_tasks(&context).await?.first() {
        Some(task) => {
            log.line(format!(
                "director task {} (`{}`, {}) is already uploading this stemcell, started by an earlier build \
                 that did not finish: following it instead of uploading again",
                task.id, task.description, task.state
            ));
            task.id
        }
        None => start_upload(source, params, fetched, director, &context, log).await?,
    };
    let rerun = "the next put follows it instead of uploading again";
    wait_for_task(director, task_id, task_timeout(params), Some(log), rerun).await?;
    metadata.push(MetadataField::new("task", task_id.to_string()));
    Ok(metadata)
}

/// The tag on repave's upload task for one stemcell version, so a rerun can find it (BOSH allows 64
/// characters; the name is hashed because stemcell names alone can exceed that).
fn context_id(name: &str, version: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let short: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let id = format!("repave-stemcell-{short}-{version}");
    id.chars().take(64).collect()
}

async fn start_upload(
    source: &Source,
    params: &PutParams,
    fetched: &Fetched,
    director: &Director,
    context: &str,
    log: &Log,
) -> Result<u64> {
    let target = &director.base_url;
    if params.upload_tarball {
        let tarball = find_tarball(&fetched.dir)?;
        log.line(format!("uploading {} to the director {target}", tarball.display()));
        return director.upload_stemcell_file(&tarball, context).await;
    }
    let digest = match (fetched.sha1.as_str(), fetched.sha256.as_str()) {
        ("", "") => None,
        ("", sha256) => Some(format!("sha256:{sha256}")),
        (sha1, _) => Some(sha1.to_string()),
    };
    let location = match &source.auth {
        Some(auth) => presigned_location(auth, &fetched.url, task_timeout(params), log)?,
        None => fetched.url.clone(),
    };
    log.line(format!("asking the director {target} to fetch {}", fetched.url));
    director.upload_stemcell_url(&location, digest.as_deref(), context).await
}

/// The director cannot sign requests to a private bucket, so it gets a presigned URL that is valid
/// as long as repave waits for its task. The signature is a credential until then: it is
/// registered as a secret, so the URL shows up redacted in every log line.
fn presigned_location(auth: &S3Auth, url: &str, valid_for: Duration, log: &Log) -> Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("the fetched stemcell URL `{url}` is not a URL"))?;
    let (location, signature) = sigv4::presign(&auth.keys(), &parsed, jiff::Timestamp::now(), valid_for);
    log.secrets().add(&signature);
    let shown = valid_for.min(sigv4::MAX_PRESIGN).as_secs();
    log.line(format!("source.auth is set: the director gets a presigned URL, valid for {shown}s"));
    Ok(location)
}

fn task_timeout(params: &PutParams) -> Duration {
    params.task_timeout.map_or(DEFAULT_TASK_TIMEOUT, |d| d.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_ids_fit_boshs_64_characters_and_tell_versions_and_names_apart() {
        let name = "bosh-vsphere-esxi-ubuntu-jammy-go_agent";
        let id = context_id(name, "1.506");
        assert!(id.starts_with("repave-stemcell-") && id.ends_with("-1.506") && id.len() <= 64, "{id}");
        assert_eq!(id, context_id(name, "1.506"), "stable across builds");
        assert_ne!(id, context_id(name, "1.507"));
        assert_ne!(id, context_id("bosh-aws-xen-hvm-ubuntu-jammy-go_agent", "1.506"));
        assert!(context_id(&"x".repeat(300), &"9".repeat(100)).chars().count() <= 64);
    }
}
