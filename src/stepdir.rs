//! The step directory (the argument of `in DIR` and `out DIR`): the only place the binaries write
//! their outputs to, and the only place they read the files `params` name (`from`, `desired`,
//! `target_version_file`, `target_stemcell_file`) from.
//!
//! Why one owner: every path here comes from someone else. Params name files in the put's inputs,
//! and API data names files (a kubeconfig per cluster name). So every path is checked the same way:
//! - a path the user names must be relative and, once symlinks are resolved, still lead into the
//!   directory, to a regular file (never a FIFO or `/dev/zero`), read only up to a size limit, and
//!   its content is never quoted whole in an error;
//! - an output name must be plain (no `..`, not absolute), every directory on its way a real
//!   directory (never a symlink), and the file is written to a temp file beside it and renamed over
//!   the name, so a symlink planted at the name is replaced, never written through. Outputs are
//!   world-readable (0644) unless they hold a credential (0600), whatever the umask.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Who may read a file the step writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 0644: later tasks run as any user (a stemcell tarball, a report).
    Public,
    /// 0600: it holds a credential (a kubeconfig's token).
    Private,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Public => 0o644,
            Mode::Private => 0o600,
        }
    }
}

/// The directory of one `in` or `out`, canonical (symlinks resolved) so that containment is a
/// prefix test.
#[derive(Clone, Debug)]
pub struct StepDir {
    root: PathBuf,
}

impl StepDir {
    /// `dir` must exist and be a directory.
    pub fn open(dir: &Path) -> Result<StepDir> {
        let root = dir.canonicalize().with_context(|| format!("directory argument `{}`", dir.display()))?;
        if !root.is_dir() {
            bail!("directory argument `{}` is not an existing directory", dir.display());
        }
        Ok(StepDir { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where `relative`, a path a user named in `field`, leads: inside the directory once every
    /// symlink is resolved, or an error that says why not (without reading anything).
    pub fn resolve(&self, field: &str, relative: &str) -> Result<PathBuf> {
        let path = Path::new(relative);
        if relative.trim().is_empty() {
            bail!("{field} is empty: expected a path relative to the step's directory, such as `stemcell/version`");
        }
        if path.is_absolute() {
            bail!(
                "{field} `{relative}` is an absolute path: expected a path relative to the step's directory, such as \
                 `stemcell/version` (the name of an input, then a file in it)"
            );
        }
        let resolved = self.root.join(path).canonicalize().with_context(|| {
            format!("{field} `{relative}`: no such file or directory in the step's directory {}", self.root.display())
        })?;
        if !resolved.starts_with(&self.root) {
            bail!(
                "{field} `{relative}` leads outside the step's directory (to {}): only files in the job's inputs may \
                 be read",
                resolved.display()
            );
        }
        Ok(resolved)
    }

    /// [`StepDir::resolve`] for a directory (`params.from`).
    pub fn resolve_dir(&self, field: &str, relative: &str) -> Result<PathBuf> {
        let resolved = self.resolve(field, relative)?;
        if !resolved.is_dir() {
            bail!("{field} `{relative}` is not a directory: expected the directory of an input, such as `stemcell`");
        }
        Ok(resolved)
    }

    /// The text of the regular file `relative` leads to (see [`StepDir::resolve`]), at most `limit`
    /// bytes of UTF-8.
    pub fn read_text(&self, field: &str, relative: &str, limit: u64) -> Result<String> {
        let path = self.resolve(field, relative)?;
        let is_file = |meta: std::io::Result<std::fs::Metadata>| meta.is_ok_and(|m| m.is_file());
        // Checked before opening: opening a FIFO would block until someone writes to it.
        if !is_file(std::fs::metadata(&path)) {
            bail!("{field} `{relative}` is not a regular file");
        }
        let file = std::fs::File::open(&path).with_context(|| format!("{field} `{relative}`: opening it"))?;
        if !is_file(file.metadata()) {
            bail!("{field} `{relative}` is not a regular file");
        }
        let mut bytes = Vec::new();
        file.take(limit + 1).read_to_end(&mut bytes).with_context(|| format!("{field} `{relative}`: reading it"))?;
        if bytes.len() as u64 > limit {
            bail!("{field} `{relative}` is larger than {} KiB, far more than it should hold", limit / 1024);
        }
        String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{field} `{relative}` is not UTF-8 text"))
    }

    /// Writes `bytes` to `relative` (a plain path: no `..`, not absolute), creating the directories
    /// on the way. Atomic: readers see the old file or the whole new one, never half of it.
    pub fn write(&self, relative: &str, bytes: &[u8], mode: Mode) -> Result<PathBuf> {
        let (parent, name) = self.prepare(relative)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".repave-")
            .suffix(".part")
            .tempfile_in(&parent)
            .with_context(|| format!("creating a temp file in {}", parent.display()))?;
        // Set on the open file, so the umask cannot narrow (or widen) it.
        temp.as_file().set_permissions(std::fs::Permissions::from_mode(mode.bits()))?;
        temp.write_all(bytes).with_context(|| format!("writing {relative}"))?;
        let path = parent.join(name);
        temp.persist(&path).with_context(|| format!("renaming the finished {relative} into place"))?;
        Ok(path)
    }

    /// The real directory `relative`'s file goes into (created as needed) and the file's name.
    fn prepare(&self, relative: &str) -> Result<(PathBuf, std::ffi::OsString)> {
        let path = Path::new(relative);
        let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
        let Some(name) = path.file_name().filter(|_| plain && !relative.is_empty()) else {
            bail!("refusing to write `{relative}`: not a plain path inside the step's directory");
        };
        let mut parent = self.root.clone();
        for component in path.parent().into_iter().flat_map(Path::components) {
            parent.push(component);
            match std::fs::symlink_metadata(&parent) {
                Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => bail!(
                    "refusing to write `{relative}`: {} in the step's directory is not a directory (a symlink?)",
                    parent.strip_prefix(&self.root).unwrap_or(&parent).display()
                ),
                Ok(_) => {}
                Err(_) => std::fs::create_dir(&parent).with_context(|| format!("creating {}", parent.display()))?,
            }
        }
        Ok((parent, name.to_os_string()))
    }
}

/// A file's content for an error message: its first line when that is short, else only its shape,
/// so an error never prints a file whole (it may be large, or hold something private).
pub(crate) fn preview(text: &str) -> String {
    let first = text.trim().lines().next().unwrap_or("").trim();
    let lines = text.trim().lines().count();
    match (first.chars().count(), lines) {
        (0, _) => "nothing".to_string(),
        (1..=40, 1) => format!("`{first}`"),
        _ => format!("{lines} line(s), {} bytes of text", text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, StepDir) {
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir(top.path().join("step")).unwrap();
        std::fs::create_dir(top.path().join("outside")).unwrap();
        std::fs::write(top.path().join("outside/secret"), "private").unwrap();
        let dir = StepDir::open(&top.path().join("step")).unwrap();
        (top, dir)
    }

    #[test]
    fn reads_stay_inside() {
        let (top, dir) = setup();
        std::fs::create_dir(dir.path().join("input")).unwrap();
        std::fs::write(dir.path().join("input/version"), "1.506\n").unwrap();
        symlink("version", dir.path().join("input/alias")).unwrap();
        symlink(top.path().join("outside/secret"), dir.path().join("input/escape")).unwrap();
        symlink("/dev/zero", dir.path().join("input/zero")).unwrap();
        assert_eq!(dir.read_text("f", "input/version", 100).unwrap(), "1.506\n");
        assert_eq!(dir.read_text("f", "input/alias", 100).unwrap(), "1.506\n", "a symlink within is fine");
        assert_eq!(dir.read_text("f", "input/../input/version", 100).unwrap(), "1.506\n");
        for (bad, why) in [
            ("../outside/secret", "leads outside"),
            ("input/escape", "leads outside"),
            ("input/zero", "leads outside"),
            ("/etc/passwd", "absolute path"),
            ("", "is empty"),
            ("input", "not a regular file"),
            ("input/missing", "no such file"),
        ] {
            let err = format!("{:#}", dir.read_text("params.f", bad, 100).unwrap_err());
            assert!(err.contains("params.f") && err.contains(why), "{bad}: {err}");
            assert!(!err.contains("private"), "{err}");
        }
        std::fs::write(dir.path().join("input/big"), "x".repeat(5000)).unwrap();
        assert!(format!("{:#}", dir.read_text("f", "input/big", 1024).unwrap_err()).contains("larger than 1 KiB"));
    }

    #[test]
    fn writes_stay_inside_and_replace_planted_symlinks() {
        let (top, dir) = setup();
        symlink(top.path().join("outside/secret"), dir.path().join("plan.json")).unwrap();
        dir.write("plan.json", b"{}", Mode::Public).unwrap();
        assert_eq!(std::fs::read_to_string(top.path().join("outside/secret")).unwrap(), "private");
        let meta = std::fs::symlink_metadata(dir.path().join("plan.json")).unwrap();
        assert!(meta.is_file() && meta.permissions().mode() & 0o777 == 0o644);
        dir.write("kubeconfigs/a.json", b"{}", Mode::Private).unwrap();
        let mode = std::fs::metadata(dir.path().join("kubeconfigs/a.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        symlink(top.path().join("outside"), dir.path().join("linked")).unwrap();
        for bad in ["../x", "/tmp/x", "a/../../x", "linked/x", "", "."] {
            assert!(dir.write(bad, b"x", Mode::Public).is_err(), "{bad}");
        }
        assert_eq!(std::fs::read_dir(top.path().join("outside")).unwrap().count(), 1, "nothing written outside");
    }

    #[test]
    fn previews_never_print_a_file_whole() {
        assert_eq!(preview("1.506\n"), "`1.506`");
        assert_eq!(preview(""), "nothing");
        assert_eq!(preview("a\nb\n"), "2 line(s), 4 bytes of text");
        assert!(!preview(&"x".repeat(100)).contains("xxx"));
    }
}
