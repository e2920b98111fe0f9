//! Kubernetes release feeds as dl.k8s.io serves them: `GET /release/stable.txt`, `stable-1.txt`,
//! `stable-1.N.txt`, `latest.txt`, `latest-1.txt`, `latest-1.N.txt`, each one line `vX.Y.Z\n` as
//! `text/plain`; 404 for a minor with no release (docs/facts/kubernetes.md).
//!
//! dl.k8s.io answers with a redirect to its CDN; with `redirect: true` `/release/…` answers 302 to
//! `/cdn/release/…`, which always serves the files, so clients must follow redirects.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

/// The `releases` section of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// GA releases per minor, e.g. `"1.29": ["1.29.14", "1.29.15"]`; `stable-1.N.txt` is the newest.
    pub minors: BTreeMap<String, Vec<String>>,
    /// Pre-releases per minor (`"1.32": ["1.32.0-rc.1"]`); `latest-1.N.txt` is the newest of these
    /// and the minor's GA releases. A minor listed only here has no `stable-1.N.txt` (404).
    pub prereleases: BTreeMap<String, Vec<String>>,
    /// What `stable.txt` says; the newest GA release when absent.
    pub stable: Option<String>,
    /// Answer `/release/…` with 302 to `/cdn/release/…`, like dl.k8s.io.
    pub redirect: bool,
}

impl Default for Config {
    /// Late 2024: 1.28–1.31 maintained, 1.32 in release candidates.
    fn default() -> Self {
        let minors = [
            ("1.28", &["1.28.13", "1.28.14", "1.28.15"][..]),
            ("1.29", &["1.29.13", "1.29.14", "1.29.15"][..]),
            ("1.30", &["1.30.12", "1.30.13", "1.30.14"][..]),
            ("1.31", &["1.31.2", "1.31.3", "1.31.4"][..]),
        ];
        let prereleases = [("1.32", &["1.32.0-rc.0", "1.32.0-rc.1"][..])];
        let owned = |list: &[(&str, &[&str])]| {
            list.iter().map(|(m, vs)| (m.to_string(), vs.iter().map(|v| v.to_string()).collect())).collect()
        };
        Config {
            minors: owned(&minors),
            prereleases: owned(&prereleases),
            stable: Some("1.31.4".into()),
            redirect: false,
        }
    }
}

/// The feeds need nothing but their scenario section.
pub(crate) fn routes(config: Arc<Config>) -> Router {
    Router::new()
        .route("/release/{file}", get(release))
        .route("/cdn/release/{file}", get(cdn_release))
        .with_state(config)
}

async fn release(State(config): State<Arc<Config>>, Path(file): Path<String>) -> Response {
    if config.redirect {
        return (StatusCode::FOUND, [(header::LOCATION, format!("/cdn/release/{file}"))]).into_response();
    }
    serve(&config, &file)
}

async fn cdn_release(State(config): State<Arc<Config>>, Path(file): Path<String>) -> Response {
    serve(&config, &file)
}

fn serve(config: &Config, file: &str) -> Response {
    match lookup(config, file) {
        Some(version) => {
            let body = format!("v{}\n", version.trim_start_matches('v'));
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "NoSuchKey: The specified key does not exist.\n").into_response(),
    }
}

/// The version a feed file names, or `None` when it does not exist.
fn lookup(config: &Config, file: &str) -> Option<String> {
    let name = file.strip_suffix(".txt")?;
    let (track, line) = match name.split_once('-') {
        Some((track, line)) => (track, Some(line)),
        None => (name, None),
    };
    let with_pre = match track {
        "stable" => false,
        "latest" => true,
        _ => return None,
    };
    if track == "stable" && line.is_none() && config.stable.is_some() {
        return config.stable.clone();
    }
    let in_line = |minor: &str| match line {
        None => true,
        Some(line) if line.contains('.') => minor == line,
        Some(major) => minor.split('.').next() == Some(major),
    };
    let lists = config.minors.iter().chain(config.prereleases.iter().filter(|_| with_pre));
    lists.filter(|(minor, _)| in_line(minor)).flat_map(|(_, versions)| versions).max_by_key(|v| sort_key(v)).cloned()
}

/// SemVer-ish order for `1.31.0`, `v1.32.0-rc.1`: numbers first, a pre-release before its release,
/// pre-release identifiers compared numerically when both are numbers. Unparsable parts sort low.
fn sort_key(version: &str) -> (Vec<u64>, bool, Vec<(u64, String)>) {
    let version = version.trim_start_matches('v');
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version, None),
    };
    let numbers = core.split('.').map(|n| n.parse().unwrap_or(0)).collect();
    let pre_ids = pre
        .map(|p| p.split('.').map(|id| id.parse().map_or((u64::MAX, id.to_string()), |n| (n, String::new()))).collect())
        .unwrap_or_default();
    (numbers, pre.is_none(), pre_ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_feed_files() {
        let config = Config::default();
        let cases = [
            ("stable.txt", Some("1.31.4")),
            ("stable-1.txt", Some("1.31.4")),
            ("stable-1.28.txt", Some("1.28.15")),
            ("stable-1.31.txt", Some("1.31.4")),
            ("stable-1.32.txt", None),
            ("latest-1.32.txt", Some("1.32.0-rc.1")),
            ("latest-1.31.txt", Some("1.31.4")),
            ("latest.txt", Some("1.32.0-rc.1")),
            ("latest-1.txt", Some("1.32.0-rc.1")),
            ("stable-1.27.txt", None),
            ("nightly.txt", None),
            ("stable-1.30", None),
        ];
        for (file, want) in cases {
            assert_eq!(lookup(&config, file).as_deref(), want, "{file}");
        }
    }

    #[test]
    fn orders_patches_numerically_and_prereleases_first() {
        let mut versions = vec!["1.30.10", "1.30.9", "1.31.0", "1.31.0-rc.10", "1.31.0-rc.2", "1.31.0-beta.1"];
        versions.sort_by_key(|v| sort_key(v));
        assert_eq!(versions, ["1.30.9", "1.30.10", "1.31.0-beta.1", "1.31.0-rc.2", "1.31.0-rc.10", "1.31.0"]);
    }
}
