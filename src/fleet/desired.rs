//! The desired fleet file (`params.desired` of `out`): the clusters a platform should have, their
//! plan, worker count, wave, hold flag, optional version pin and VM age limit (`max_vm_age`: older VMs
//! are repaved), plus fleet-wide rollout settings.
//! Published as `schema/fleet.schema.json`; an example lives in `examples/fleet.yml`.
//!
//! Parsing is strict (unknown keys are errors) and every error names the file, the line and the
//! column: YAML and type errors take their location from `serde_yaml_ng`; rules serde cannot express
//! (unique names, known waves, …) point at the offending cluster's `name:` line, found in the text.

use crate::config::DurationStr;
use crate::rollout::plan::Canaries;
use crate::suggest::suggestion;
use crate::window::Window;
use anyhow::{Result, anyhow};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// Wave names in the order they run, e.g. `[canary, dev, staging, prod]`. When set, every
    /// cluster names its `wave`; when absent, all clusters form one wave.
    #[serde(default)]
    pub(crate) waves: Vec<String>,
    /// At most this many clusters change at once inside a wave (default 1).
    #[serde(default)]
    pub(crate) max_in_flight: Option<usize>,
    /// Clusters upgraded alone before anything else: a count (the first N upgrades of the first wave
    /// with upgrades) or names.
    #[serde(default)]
    pub(crate) canaries: Option<Canaries>,
    /// The recurring maintenance window `out` must run in, e.g. `Sat,Sun 02:00-06:00 Europe/London`.
    /// Read as text and parsed in `validate`, so its errors point at the `window:` line (serde_yaml_ng
    /// gives custom errors no location).
    #[serde(default, rename = "window")]
    window_text: Option<String>,
    #[serde(skip)]
    pub window: Option<Window>,
    /// Wait this long after a wave succeeded before the next one starts (text, like `window`).
    #[serde(default, rename = "soak")]
    soak_text: Option<String>,
    #[serde(skip)]
    pub soak: Option<DurationStr>,
    /// Repave clusters whose oldest VM is older than this (`14d`); a cluster's own `max_vm_age` wins,
    /// and `params.max_vm_age` overrides this fleet-wide value (text, like `window`).
    #[serde(default, rename = "max_vm_age")]
    max_vm_age_text: Option<String>,
    #[serde(skip)]
    pub max_vm_age: Option<Duration>,
    /// `kubernetes_master_host` of created clusters; `{name}` is replaced by the cluster name.
    #[serde(default)]
    pub(crate) master_host: Option<String>,
    pub clusters: Vec<DesiredCluster>,
}

/// One cluster as it should be.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DesiredCluster {
    pub name: String,
    /// The TKGI plan (`tkgi plans`); used to create the cluster. TKGI cannot change the plan of an
    /// existing cluster, so a difference is reported, not acted on.
    pub plan: String,
    /// Worker nodes; a difference from the platform is a resize. Absent: whatever the cluster has.
    #[serde(default)]
    pub workers: Option<u64>,
    #[serde(default)]
    pub wave: Option<String>,
    /// Never create, resize, upgrade, repair or delete this cluster.
    #[serde(default)]
    pub hold: bool,
    /// Keep the cluster at this TKGI version (hold upgrades), or require it to be the platform's.
    #[serde(default)]
    pub version: Option<String>,
    /// Overrides the fleet-wide `master_host` for this cluster.
    #[serde(default)]
    pub master_host: Option<String>,
    /// Overrides every other `max_vm_age` for this cluster.
    #[serde(default, rename = "max_vm_age")]
    max_vm_age_text: Option<String>,
    #[serde(skip)]
    pub max_vm_age: Option<Duration>,
}

impl FleetFile {
    /// Wave names in order; `all` when the file declares none.
    pub(crate) fn wave_order(&self) -> Vec<String> {
        if self.waves.is_empty() { vec!["all".into()] } else { self.waves.clone() }
    }

    /// The wave a cluster belongs to.
    pub(crate) fn wave_of(&self, cluster: &DesiredCluster) -> String {
        cluster.wave.clone().unwrap_or_else(|| "all".into())
    }

    /// The master host a created cluster gets, if one is configured.
    pub(crate) fn master_host_for(&self, cluster: &DesiredCluster) -> Option<String> {
        let template = cluster.master_host.as_ref().or(self.master_host.as_ref())?;
        Some(template.replace("{name}", &cluster.name))
    }

    pub(crate) fn cluster(&self, name: &str) -> Option<&DesiredCluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The VM age limit of `cluster`: its own, else the put's, else the file's, else the source's.
    pub(crate) fn max_vm_age_for(
        &self,
        cluster: &DesiredCluster,
        put: Option<Duration>,
        source: Option<Duration>,
    ) -> Option<Duration> {
        cluster.max_vm_age.or(put).or(self.max_vm_age).or(source)
    }

    /// Whether any `max_vm_age` is in the file.
    pub(crate) fn repaves(&self) -> bool {
        self.max_vm_age.is_some() || self.clusters.iter().any(|c| c.max_vm_age.is_some())
    }
}

/// Parses and validates a fleet file; `path` is only used in messages (`fleet.yml:12:5: …`).
pub fn parse(text: &str, path: &str) -> Result<FleetFile> {
    let mut file: FleetFile = serde_yaml_ng::from_str(text).map_err(|e| {
        let at = e.location().map_or_else(|| path.to_string(), |l| format!("{path}:{}:{}", l.line(), l.column()));
        anyhow!("{at}: {}", friendly(&e.to_string()))
    })?;
    let at = |(needle, message): (Needle, String)| {
        let (line, column) = locate(text, &needle);
        anyhow!("{path}:{line}:{column}: {message}")
    };
    parse_texts(&mut file).map_err(at)?;
    validate(&file).map_err(at)?;
    Ok(file)
}

/// What a validation error points at.
enum Needle {
    Top,
    /// The value of a top-level key.
    Key(&'static str),
    /// The `name:` value of a cluster.
    Cluster(String),
}

type Invalid = (Needle, String);

fn parse_texts(file: &mut FleetFile) -> std::result::Result<(), Invalid> {
    if let Some(text) = &file.window_text {
        file.window = Some(Window::parse(text).map_err(|e| (Needle::Key("window"), format!("window: {e:#}")))?);
    }
    if let Some(text) = &file.soak_text {
        let soak = crate::config::parse_duration(text).map_err(|e| (Needle::Key("soak"), format!("soak: {e}")))?;
        file.soak = Some(DurationStr(soak));
    }
    if let Some(text) = &file.max_vm_age_text {
        file.max_vm_age = Some(age(text).map_err(|e| (Needle::Key("max_vm_age"), format!("max_vm_age: {e}")))?);
    }
    for c in &mut file.clusters {
        if let Some(text) = &c.max_vm_age_text {
            let at = |e: String| (Needle::Cluster(c.name.clone()), format!("cluster `{}`: max_vm_age: {e}", c.name));
            c.max_vm_age = Some(age(text).map_err(at)?);
        }
    }
    Ok(())
}

/// A VM age limit: a duration longer than zero.
fn age(text: &str) -> std::result::Result<Duration, String> {
    match crate::config::parse_duration(text)? {
        d if d.is_zero() => Err(format!("`{text}` is zero: expected an age such as `14d`")),
        d => Ok(d),
    }
}

/// serde_yaml_ng's message without its own trailing location (we print `file:line:col` first), with
/// a "did you mean" for a misspelt key.
fn friendly(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message).to_string();
    let Some((field_path, rest)) = message.split_once("unknown field `") else { return message };
    let Some((bad, tail)) = rest.split_once('`') else { return message };
    let valid: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    let hint = suggestion(bad, valid.iter().copied());
    format!("{field_path}unknown field `{bad}`{hint} (valid fields: {})", valid.join(", "))
}

/// Rules beyond types, each error with what to point at.
fn validate(file: &FleetFile) -> std::result::Result<(), Invalid> {
    let top = |m: String| (Needle::Top, m);
    if file.max_in_flight == Some(0) {
        return Err(top("max_in_flight must be at least 1".into()));
    }
    let mut waves = BTreeSet::new();
    for wave in &file.waves {
        if wave.trim().is_empty() || !waves.insert(wave.as_str()) {
            return Err(top(format!("waves: `{wave}` is empty or listed twice")));
        }
    }
    let mut names = BTreeSet::new();
    for c in &file.clusters {
        let at = |m: String| (Needle::Cluster(c.name.clone()), format!("cluster `{}`: {m}", c.name));
        if c.name.trim().is_empty() {
            return Err(top("a cluster has an empty name".into()));
        }
        if !names.insert(c.name.as_str()) {
            return Err(at("listed twice: each cluster appears once".into()));
        }
        if c.workers == Some(0) {
            return Err(at("workers must be at least 1".into()));
        }
        if c.version.as_ref().is_some_and(|v| v.trim().is_empty()) {
            return Err(at("version is empty: remove it or pin a TKGI version such as 1.19.2-build.10".into()));
        }
        check_wave(file, c).map_err(at)?;
    }
    if let Some(Canaries::Names(canaries)) = &file.canaries
        && let Some(unknown) = canaries.iter().find(|n| !names.contains(n.as_str()))
    {
        return Err(top(format!("canaries: `{unknown}` is not a cluster of this file")));
    }
    Ok(())
}

fn check_wave(file: &FleetFile, c: &DesiredCluster) -> std::result::Result<(), String> {
    match (&c.wave, file.waves.is_empty()) {
        (None, true) => Ok(()),
        (None, false) => Err(format!("wave is required because the file declares waves ({})", file.waves.join(", "))),
        (Some(w), true) => Err(format!("wave `{w}` is set but the file declares no `waves:` list to order it")),
        (Some(w), false) if file.waves.contains(w) => Ok(()),
        (Some(w), false) => Err(format!(
            "wave `{w}` is not one of the declared waves ({}){}",
            file.waves.join(", "),
            suggestion(w, file.waves.iter().map(String::as_str))
        )),
    }
}

/// 1-based line and column of what `needle` names (the start of the file when not found).
fn locate(text: &str, needle: &Needle) -> (usize, usize) {
    let (key, want) = match needle {
        Needle::Top => return (1, 1),
        Needle::Key(key) => (format!("{key}:"), None),
        Needle::Cluster(name) => ("name:".to_string(), Some(name.as_str())),
    };
    for (index, line) in text.lines().enumerate() {
        let Some(at) = line.find(&key) else { continue };
        // Top-level keys start the line; cluster names may sit in a flow mapping (`- {name: a, …}`).
        if want.is_none() && at != 0 {
            continue;
        }
        let after = &line[at + key.len()..];
        let column = line.len() - after.trim_start().len() + 1;
        let Some(name) = want else { return (index + 1, column) };
        let value = after.trim_start().trim_start_matches(['"', '\'']);
        let end = value.find(['"', '\'', ',', '}', ' ', '#']).unwrap_or(value.len());
        if &value[..end] == name {
            return (index + 1, column);
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
waves: [canary, dev, prod]
max_in_flight: 2
canaries: [dev-1]
window: Sat,Sun 02:00-06:00 Europe/London
soak: 30m
master_host: '{name}.k8s.example.com'
clusters:
  - {name: canary-1, plan: small, workers: 3, wave: canary}
  - name: dev-1
    plan: small
    wave: dev
  - {name: prod-1, plan: large, workers: 10, wave: prod, hold: true, version: 1.19.2-build.10}
";

    fn err(text: &str) -> String {
        format!("{:#}", parse(text, "fleet.yml").unwrap_err())
    }

    #[test]
    fn a_complete_file() {
        let f = parse(GOOD, "fleet.yml").unwrap();
        assert_eq!(f.wave_order(), ["canary", "dev", "prod"]);
        assert_eq!(f.clusters.len(), 3);
        assert_eq!(f.soak.unwrap().0.as_secs(), 1800);
        assert_eq!(f.master_host_for(&f.clusters[1]).unwrap(), "dev-1.k8s.example.com");
        assert!(f.clusters[2].hold && f.clusters[2].version.as_deref() == Some("1.19.2-build.10"));
        assert_eq!(f.canaries, Some(Canaries::Names(vec!["dev-1".into()])));
        let aged =
            parse("max_vm_age: 14d\nclusters: [{name: a, plan: s}, {name: b, plan: s, max_vm_age: 36h}]", "f").unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(aged.max_vm_age_for(&aged.clusters[0], None, None), Some(14 * day), "the file's");
        assert_eq!(aged.max_vm_age_for(&aged.clusters[0], Some(7 * day), None), Some(7 * day), "the put's wins");
        assert_eq!(aged.max_vm_age_for(&aged.clusters[1], Some(7 * day), None), Some(day * 3 / 2), "the cluster's");
        assert!(aged.repaves());
        let minimal = parse("clusters: [{name: a, plan: small}]", "f").unwrap();
        assert_eq!(minimal.max_vm_age_for(&minimal.clusters[0], None, Some(day)), Some(day), "the source's");
        assert!(!minimal.repaves());
        assert_eq!((minimal.wave_order(), minimal.wave_of(&minimal.clusters[0])), (vec!["all".into()], "all".into()));
    }

    #[test]
    fn errors_name_file_line_and_column() {
        for (text, want) in [
            ("clusters:\n  - {name: a, plan: small, wokers: 3}\n", "fleet.yml:2:"),
            ("clusters:\n  - {name: a, plan: small, wokers: 3}\n", "did you mean `workers`?"),
            ("clusters:\n  - name: a\n    plan: small\n    workers: three\n", "fleet.yml:4:14: clusters[0].workers"),
            ("clusters:\n  - name: a\n", "fleet.yml:2:5: clusters[0]: missing field `plan`"),
            ("clusters: [\n", "fleet.yml:2:1"),
            ("window: Sat 02:00-06:00 Mars/Olympus\nclusters: []\n", "fleet.yml:1:9"),
            ("clusters: []\nsoak: soon\n", "fleet.yml:2:7: soak:"),
            ("max_in_flight: 0\nclusters: []\n", "fleet.yml:1:1: max_in_flight must be at least 1"),
            ("max_vm_age: two weeks\nclusters: []\n", "fleet.yml:1:13: max_vm_age: `two weeks` is not a duration"),
            (
                "clusters:\n  - {name: a, plan: s}\n  - {name: b, plan: s, max_vm_age: 0d}\n",
                "fleet.yml:3:12: cluster `b`: max_vm_age: `0d` is zero",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn rules_point_at_the_cluster() {
        let twice = "clusters:\n  - {name: a, plan: small}\n  - {name: b, plan: small}\n  - {name: b, plan: small}\n";
        assert!(err(twice).starts_with("fleet.yml:3:12: cluster `b`: listed twice"), "{}", err(twice));
        let wave = "waves: [dev, prod]\nclusters:\n  - name: x\n    plan: small\n    wave: prdo\n";
        let e = err(wave);
        assert!(e.starts_with("fleet.yml:3:11: cluster `x`: wave `prdo` is not one of") && e.contains("`prod`"), "{e}");
        let missing = "waves: [dev]\nclusters:\n  - {name: y, plan: small}\n";
        assert!(err(missing).contains("fleet.yml:3:12: cluster `y`: wave is required"), "{}", err(missing));
        let undeclared = "clusters:\n  - {name: z, plan: small, wave: dev}\n";
        assert!(err(undeclared).contains("declares no `waves:`"), "{}", err(undeclared));
        assert!(err("clusters:\n  - {name: w, plan: s, workers: 0}\n").contains("workers must be at least 1"));
        assert!(err("canaries: [nope]\nclusters: []\n").contains("canaries: `nope` is not a cluster"));
        assert!(err("waves: [a, a]\nclusters: []\n").contains("listed twice"));
    }
}
