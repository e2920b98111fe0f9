//! The backup gate's evidence: a BBR artifact of a cluster's deployment, verified the way bbr's own
//! restore verifies it (docs/facts/certificates-and-backup.md). An artifact is a folder
//! `service-instance_<uuid>_<YYYYMMDDTHHMMSSZ>` (UTC) holding a YAML `metadata` and one `.tar` per
//! instance artifact (`<group>-<index>-<artifact>.tar`, custom ones `<artifact>.tar`); `metadata`
//! lists, per artifact, the SHA-256 of every file inside its tar.
//!
//! A backup counts only when it is recent (the folder's time, within `max_age`), its metadata parses,
//! lists at least one artifact, says the backup finished, and every listed file is in its tar with the
//! listed SHA-256. `finish_time` alone proves nothing: bbr writes it after a failed backup too. The
//! newest verified folder wins; older broken ones are passed over.
//!
//! The input is data from elsewhere, read within its directory only: folders and files that are
//! symlinks are not followed, a tar's name (built from names in `metadata`) must be a plain file
//! name, and `metadata` is read only up to a size no bbr metadata comes near.

use jiff::Timestamp;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// A backup that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Verified {
    pub folder: String,
    pub taken: Timestamp,
    /// Files re-hashed.
    pub files: usize,
}

/// The part of bbr's `metadata` the check reads (bbr `backup/metadata.go`).
#[derive(Debug, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    instances: Vec<InstanceArtifacts>,
    #[serde(default)]
    custom_artifacts: Vec<Artifact>,
    #[serde(default)]
    backup_activity: Option<Activity>,
}

#[derive(Debug, Deserialize)]
struct InstanceArtifacts {
    name: String,
    index: String,
    #[serde(default)]
    artifacts: Vec<Artifact>,
}

#[derive(Debug, Deserialize)]
struct Artifact {
    name: String,
    #[serde(default)]
    checksums: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Activity {
    #[serde(default)]
    finish_time: Option<String>,
}

/// The newest verified backup of `deployment` in `dir` no older than `max_age`, or why there is none.
pub(super) fn verify(dir: &Path, deployment: &str, max_age: Duration, now: Timestamp) -> Result<Verified, String> {
    let mut folders = folders(dir, deployment)?;
    if folders.is_empty() {
        return Err(format!("no backup folder `{deployment}_<YYYYMMDDTHHMMSSZ>` in {}", dir.display()));
    }
    folders.sort_by_key(|f| std::cmp::Reverse(f.1));
    let mut rejected = Vec::new();
    for (folder, taken) in folders {
        let age = super::day2::age(taken, now);
        if age > max_age {
            rejected.push(format!(
                "{folder} is {} old, older than max_age {}",
                super::day2::days(age),
                super::day2::days(max_age)
            ));
            break;
        }
        match check_folder(&dir.join(&folder)) {
            Ok(files) => return Ok(Verified { folder, taken, files }),
            Err(why) => rejected.push(format!("{folder}: {why}")),
        }
    }
    Err(rejected.join("; "))
}

/// The folders named `<deployment>_<YYYYMMDDTHHMMSSZ>` with their time.
fn folders(dir: &Path, deployment: &str) -> Result<Vec<(String, Timestamp)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read the backup input {}: {e}", dir.display()))?;
    let prefix = format!("{deployment}_");
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let taken = folder_time(name.strip_prefix(&prefix)?)?;
            Some((name, taken))
        })
        .collect())
}

/// `20260502T010004Z` (UTC), the Go layout `20060102T150405Z` bbr names folders with.
fn folder_time(stamp: &str) -> Option<Timestamp> {
    if stamp.len() != 16 {
        return None;
    }
    let civil = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", stamp).ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
}

/// Checks one artifact folder; the number of files re-hashed, or what is wrong.
fn check_folder(folder: &Path) -> Result<usize, String> {
    let missing = || "no `metadata` file: bbr writes it first, so the backup never got going".to_string();
    let mut text = String::new();
    open_in(folder, "metadata")
        .ok_or_else(missing)?
        .take(MAX_METADATA + 1)
        .read_to_string(&mut text)
        .map_err(|_| "metadata is not text".to_string())?;
    if text.len() as u64 > MAX_METADATA {
        return Err(format!("metadata is larger than {} MiB, far more than bbr writes", MAX_METADATA >> 20));
    }
    let metadata: Metadata = serde_yaml_ng::from_str(&text).map_err(|e| format!("metadata is not bbr's YAML: {e}"))?;
    if metadata.backup_activity.as_ref().and_then(|a| a.finish_time.as_ref()).is_none() {
        return Err("metadata has no backup_activity.finish_time: the backup did not finish".into());
    }
    let tars = tars(&metadata);
    if tars.iter().all(|(_, a)| a.checksums.is_empty()) {
        return Err(
            "metadata lists no artifact with checksums (a failed backup writes finish_time too, so this is no evidence)"
                .into(),
        );
    }
    let mut files = 0;
    for (tar, artifact) in tars {
        files += check_tar(folder, &tar, &artifact.checksums)?;
    }
    Ok(files)
}

/// bbr's metadata lists checksums, a few lines per file: megabytes would be a different file.
const MAX_METADATA: u64 = 16 << 20;

/// The regular file `name` right inside `folder`: `None` when the name is not a plain file name, or
/// the entry is missing, a symlink or anything but a regular file (never followed out of the input).
fn open_in(folder: &Path, name: &str) -> Option<std::fs::File> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
    let path = folder.join(name);
    let regular = plain && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
    regular.then(|| std::fs::File::open(&path).ok()).flatten()
}

/// Every artifact with the tar file bbr writes it to (bbr `backup/backup_directory.go`).
fn tars(metadata: &Metadata) -> Vec<(String, &Artifact)> {
    let per_instance = metadata
        .instances
        .iter()
        .flat_map(|i| i.artifacts.iter().map(move |a| (format!("{}-{}-{}.tar", i.name, i.index, a.name), a)));
    let custom = metadata.custom_artifacts.iter().map(|a| (format!("{}.tar", a.name), a));
    per_instance.chain(custom).collect()
}

/// Re-hashes the files of one tar against the listed SHA-256s.
fn check_tar(folder: &Path, tar: &str, listed: &BTreeMap<String, String>) -> Result<usize, String> {
    let file = open_in(folder, tar).ok_or_else(|| format!("{tar} is missing (metadata lists it)"))?;
    let actual = hash_entries(file).map_err(|e| format!("{tar} is not a readable tar: {e}"))?;
    for (inside, want) in listed {
        match actual.get(clean(inside)) {
            None => return Err(format!("{tar} has no `{inside}` (metadata lists it)")),
            Some(got) if !got.eq_ignore_ascii_case(want.trim()) => {
                return Err(format!(
                    "`{inside}` in {tar} does not match its SHA-256 in metadata: the artifact is incomplete or corrupted"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(listed.len())
}

/// SHA-256 (hex) of every regular file in a tar, by its path without a leading `./`.
fn hash_entries(file: std::fs::File) -> std::io::Result<BTreeMap<String, String>> {
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut out = BTreeMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        out.insert(clean(&path).to_string(), hex);
    }
    Ok(out)
}

fn clean(path: &str) -> &str {
    path.trim_start_matches("./")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_carry_utc_seconds() {
        assert_eq!(folder_time("20260502T010004Z"), "2026-05-02T01:00:04Z".parse().ok());
        assert_eq!(folder_time("20260502T010004"), None);
        assert_eq!(folder_time("2026-05-02"), None);
    }
}
