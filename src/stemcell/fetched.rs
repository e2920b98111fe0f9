//! What a `get` of this resource left in a put's `params.from` directory — the peer's files (`version`, `url`,
//! `sha1`, `sha256`) and the tarball — read once for every target the put sends the stemcell to.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// What a previous `get` left in `params.from`.
pub(super) struct Fetched {
    pub version: String,
    pub url: String,
    pub sha1: String,
    pub sha256: String,
    pub dir: PathBuf,
}

/// Reads the files of a get in `dir`; the version is required, the URL too (the peer always writes it).
pub(super) fn read_fetched(dir: &Path) -> Result<Fetched> {
    let read = |name: &str| -> Result<String> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("reading {}: params.from must name the directory of a `get` of a stemcell resource", path.display())
        })?;
        Ok(text.trim().to_string())
    };
    let optional =
        |name: &str| std::fs::read_to_string(dir.join(name)).map(|t| t.trim().to_string()).unwrap_or_default();
    let fetched = Fetched {
        version: read("version")?,
        url: read("url")?,
        sha1: optional("sha1"),
        sha256: optional("sha256"),
        dir: dir.into(),
    };
    if fetched.version.is_empty() {
        bail!("{} is empty", dir.join("version").display());
    }
    Ok(fetched)
}

/// `stemcell.tgz`, else the one `*.tgz` a `preserve_filename` get wrote.
pub(super) fn find_tarball(dir: &Path) -> Result<PathBuf> {
    let default = dir.join("stemcell.tgz");
    if default.is_file() {
        return Ok(default);
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let tgz: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tgz"))
        .collect();
    match tgz.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no stemcell tarball in {}: an upload of the file itself (Ops Manager, or `upload_tarball`) needs a get with `tarball: true`",
            dir.display()
        ),
        _ => bail!("{} holds several .tgz files; expected one stemcell tarball", dir.display()),
    }
}
