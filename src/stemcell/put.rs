//! `out` for `kind: stemcell`: upload a fetched stemcell to a BOSH director and wait for its task.
//!
//! By default the director fetches the tarball from its bosh.io URL itself (nothing large passes
//! through the worker); `upload_tarball: true` streams the local file instead. Already uploaded →
//! success without a task, as uploads are idempotent on the director too. An upload still running
//! from a killed build is found by its context id and followed, never started twice; a tarball in a
//! private bucket (`source.auth`) reaches the director as a presigned URL.

use super::check::to_version;
use crate::clients::director::Director;
use crate::clients::director_task::wait_for_task;
use crate::config::stemcell::{PutParams, S3Auth, Source};
use crate::protocol::{MetadataField, StepResponse};
use crate::redact::Log;
use crate::sigv4;
use crate::stepdir::{StepDir, preview};
use crate::versions::stemcell::is_stemcell_version;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::time::Duration;

/// What a previous `get` left in `params.from`.
struct Fetched {
    version: String,
    url: String,
    sha1: String,
    sha256: String,
    /// `params.from` as written, relative to the put's directory.
    from: String,
}

const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(3600);

/// Uploads the stemcell in `dir/params.from` to `director` unless it is already there.
pub(crate) async fn put(
    source: &Source,
    params: &PutParams,
    dir: &StepDir,
    director: &Director,
    log: &Log,
) -> Result<StepResponse> {
    let fetched = read_fetched(dir, &params.from)?;
    let target = &director.base_url;
    let uploaded = director.stemcells().await?;
    let mut metadata = vec![
        MetadataField::new("name", &source.name),
        MetadataField::new("version", &fetched.version),
        MetadataField::new("director", &director.info.name),
    ];
    if uploaded.iter().any(|s| s.name == source.name && s.version == fetched.version) {
        log.line(format!("{} {} is already on the director {target}; nothing to upload", source.name, fetched.version));
        return Ok(StepResponse { version: to_version(&fetched.version), metadata });
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
        None => start_upload(source, params, &fetched, dir, director, &context, log).await?,
    };
    let rerun = "the next put follows it instead of uploading again";
    wait_for_task(director, task_id, task_timeout(params), Some(log), rerun).await?;
    metadata.push(MetadataField::new("task", task_id.to_string()));
    Ok(StepResponse { version: to_version(&fetched.version), metadata })
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
    dir: &StepDir,
    director: &Director,
    context: &str,
    log: &Log,
) -> Result<u64> {
    let target = &director.base_url;
    if params.upload_tarball {
        let tarball = find_tarball(dir, &fetched.from)?;
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

/// The metadata files of a get are a line each; anything much larger is not one.
const MAX_METADATA_FILE: u64 = 64 << 10;

/// Reads `version`, `url`, `sha1` and `sha256` from the directory `params.from` names, inside the
/// put's directory.
fn read_fetched(dir: &StepDir, from: &str) -> Result<Fetched> {
    let resolved = dir.resolve_dir("params.from", from).context(
        "params.from must name the directory of a `get` of a stemcell resource, relative to the put's directory",
    )?;
    let read = |name: &str| -> Result<String> {
        let text = dir.read_text("params.from", &format!("{from}/{name}"), MAX_METADATA_FILE).with_context(|| {
            format!("params.from `{from}` must be the directory of a `get` of a stemcell resource (it has no {name})")
        })?;
        Ok(text.trim().to_string())
    };
    let optional = |name: &str| match resolved.join(name).exists() {
        true => read(name),
        false => Ok(String::new()),
    };
    let fetched = Fetched {
        version: read("version")?,
        url: read("url")?,
        sha1: optional("sha1")?,
        sha256: optional("sha256")?,
        from: from.into(),
    };
    if !is_stemcell_version(&fetched.version) {
        bail!(
            "params.from `{from}`: its version file holds {}, not a stemcell version such as `1.506`",
            preview(&fetched.version)
        );
    }
    Ok(fetched)
}

/// `stemcell.tgz`, else the one `*.tgz` a `preserve_filename` get wrote; either must be a regular
/// file inside the put's directory (a symlink out of it is refused like any other path).
fn find_tarball(dir: &StepDir, from: &str) -> Result<PathBuf> {
    let field = "params.from";
    let in_from = |name: &str| dir.resolve(field, &format!("{from}/{name}")).ok().filter(|p| p.is_file());
    if let Some(default) = in_from("stemcell.tgz") {
        return Ok(default);
    }
    let listed = dir.resolve_dir(field, from)?;
    let entries = std::fs::read_dir(&listed).with_context(|| format!("listing {}", listed.display()))?;
    let names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let tgz: Vec<PathBuf> = names.iter().filter(|n| n.ends_with(".tgz")).filter_map(|n| in_from(n)).collect();
    match tgz.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "upload_tarball: no stemcell tarball in params.from `{from}` (was the get run with `tarball: false`?)"
        ),
        _ => bail!("upload_tarball: params.from `{from}` holds several .tgz files; expected one"),
    }
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
