//! What a `get` of this resource left in a put's `params.from` directory — the peer's files (`version`, `url`,
//! `sha1`, `sha256`) and the tarball — read once for every target the put sends the stemcell to.
//!
//! `params.from` is a path someone else wrote: it is resolved inside the put's directory (`stepdir`), its
//! files are read only up to a size and must be regular files inside it, and the tarball too (a symlink
//! out of the directory is refused, so no other file can be streamed to a director or Ops Manager).

use crate::stepdir::{StepDir, preview};
use crate::versions::stemcell::is_stemcell_version;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// What a previous `get` left in `params.from`.
pub(super) struct Fetched {
    pub version: String,
    pub url: String,
    pub sha1: String,
    pub sha256: String,
    /// The directory `params.from` names, resolved (canonical) inside the put's directory.
    pub dir: PathBuf,
}

/// The metadata files of a get are a line each; anything much larger is not one.
const MAX_METADATA_FILE: u64 = 64 << 10;

/// Reads the files of the get in `from` (relative to the put's directory `dir`); the version is
/// required and must be a stemcell version, the URL too (the peer always writes it).
pub(super) fn read_fetched(dir: &StepDir, from: &str) -> Result<Fetched> {
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
        dir: resolved,
    };
    if !is_stemcell_version(&fetched.version) {
        bail!(
            "params.from `{from}`: its version file holds {}, not a stemcell version such as `1.506`",
            preview(&fetched.version)
        );
    }
    Ok(fetched)
}

/// `stemcell.tgz`, else the one `*.tgz` a `preserve_filename` get wrote, in `dir` (a [`Fetched::dir`]):
/// a regular file that, once symlinks are resolved, is still inside it.
pub(super) fn find_tarball(dir: &Path) -> Result<PathBuf> {
    let inside = |path: PathBuf| path.canonicalize().ok().filter(|p| p.starts_with(dir) && p.is_file());
    let default = dir.join("stemcell.tgz");
    if let Some(default) = inside(default.clone()) {
        return Ok(default);
    }
    if std::fs::read_link(&default).is_ok() {
        bail!(
            "params.from ({}): stemcell.tgz is a symlink that leads out of that directory (or to no file); \
             the put reads only regular files inside its step directory",
            dir.display()
        );
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let tgz: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tgz"))
        .filter_map(inside)
        .collect();
    match tgz.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no stemcell tarball in params.from ({}): an upload of the file itself (Ops Manager, or `upload_tarball`) \
             needs a get with `tarball: true`",
            dir.display()
        ),
        _ => bail!("params.from ({}) holds several .tgz files; expected one stemcell tarball", dir.display()),
    }
}
