//! The rollout plan, as pure functions: which clusters to upgrade, in which order, which are canaries,
//! which are adopted (an upgrade already running, e.g. from a killed build) and which are skipped and why.
//!
//! A plan is a list of waves; each wave has its canaries (run one at a time) and its other clusters
//! (run `max_in_flight` at a time). Today `out` builds one wave; waves in order (dev → staging → prod)
//! are the extension point for desired fleet files.

use anyhow::{Result, bail};
use std::fmt;

/// What the planner and the executor need to know about one cluster, independent of the platform's
/// JSON. `last_action`/`last_action_state` stay open strings: an unknown value must never panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterState {
    pub name: String,
    pub version: String,
    pub last_action: String,
    pub last_action_state: String,
    /// The platform's words about the last action (shown when it failed).
    pub description: String,
}

/// How a cluster's last action stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Succeeded,
    /// `in progress`, or `queued` in a bulk upgrade.
    Running,
    /// `failed` or `error`.
    Failed,
    Unknown,
}

impl ClusterState {
    pub fn phase(&self) -> Phase {
        match self.last_action_state.to_ascii_lowercase().as_str() {
            "succeeded" => Phase::Succeeded,
            "in progress" | "in_progress" | "queued" => Phase::Running,
            "failed" | "error" => Phase::Failed,
            _ => Phase::Unknown,
        }
    }

    pub fn is_upgrade(&self) -> bool {
        self.last_action.eq_ignore_ascii_case("UPGRADE")
    }
}

/// Why a selected cluster is not in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    AlreadyCurrent,
    /// Another action (CREATE, UPDATE, DELETE) is running; upgrading now would be refused or collide.
    Busy {
        action: String,
    },
    /// The last action failed and `repair` is not set: a human (or `repair: true`) decides.
    FailedWithoutRepair {
        action: String,
    },
    UnknownState {
        state: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::AlreadyCurrent => write!(f, "already at the target version"),
            SkipReason::Busy { action } => write!(f, "held by another action in progress ({action})"),
            SkipReason::FailedWithoutRepair { action } => {
                write!(f, "last action {action} failed and `repair` is not set")
            }
            SkipReason::UnknownState { state } => write!(f, "unknown last_action_state `{state}`"),
        }
    }
}

/// How the executor takes a planned cluster on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the upgrade request, then wait.
    Start,
    /// An upgrade is already running: wait for it, never start a second one.
    Adopt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub name: String,
    pub action: Action,
    pub canary: bool,
    pub from_version: String,
}

/// One group of clusters run to completion before the next group starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wave {
    pub name: String,
    /// Upgrades already running; awaited before anything new starts.
    pub adopted: Vec<Planned>,
    /// Run one at a time; any failure stops the whole rollout.
    pub canaries: Vec<Planned>,
    /// Run at most `max_in_flight` at a time.
    pub clusters: Vec<Planned>,
}

impl Wave {
    pub fn all(&self) -> impl Iterator<Item = &Planned> {
        self.adopted.iter().chain(&self.canaries).chain(&self.clusters)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub target: String,
    pub waves: Vec<Wave>,
    pub skipped: Vec<(String, SkipReason)>,
}

impl Plan {
    /// Planned clusters in execution order.
    pub fn planned(&self) -> impl Iterator<Item = &Planned> {
        self.waves.iter().flat_map(Wave::all)
    }

    pub fn is_empty(&self) -> bool {
        self.planned().next().is_none()
    }
}

/// Canary choice as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanarySpec {
    Count(usize),
    Names(Vec<String>),
}

/// What the planner decides for one cluster.
pub fn decide(cluster: &ClusterState, target: &str, repair: bool) -> std::result::Result<Action, SkipReason> {
    match cluster.phase() {
        Phase::Running if cluster.is_upgrade() => Ok(Action::Adopt),
        Phase::Running => Err(SkipReason::Busy { action: cluster.last_action.clone() }),
        Phase::Failed if repair => Ok(Action::Start),
        Phase::Failed => Err(SkipReason::FailedWithoutRepair { action: cluster.last_action.clone() }),
        Phase::Unknown => Err(SkipReason::UnknownState { state: cluster.last_action_state.clone() }),
        Phase::Succeeded if cluster.version == target => Err(SkipReason::AlreadyCurrent),
        Phase::Succeeded => Ok(Action::Start),
    }
}

/// Builds a one-wave plan: adopted upgrades first, then canaries (named ones in the order given, or
/// the first `n` by name), then the rest by name. Named canaries must be among `clusters`.
pub fn plan(clusters: &[ClusterState], target: &str, repair: bool, canaries: &CanarySpec) -> Result<Plan> {
    let mut sorted: Vec<&ClusterState> = clusters.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    if let CanarySpec::Names(names) = canaries
        && let Some(missing) = names.iter().find(|n| !sorted.iter().any(|c| &c.name == *n))
    {
        bail!("canary `{missing}` is not one of the selected clusters");
    }
    let mut wave = Wave { name: "all".into(), ..Wave::default() };
    let mut skipped = Vec::new();
    let mut to_start = Vec::new();
    for cluster in sorted {
        let planned = |action| Planned {
            name: cluster.name.clone(),
            action,
            canary: false,
            from_version: cluster.version.clone(),
        };
        match decide(cluster, target, repair) {
            Ok(Action::Adopt) => wave.adopted.push(planned(Action::Adopt)),
            Ok(Action::Start) => to_start.push(planned(Action::Start)),
            Err(reason) => skipped.push((cluster.name.clone(), reason)),
        }
    }
    let is_canary = |p: &Planned, index: usize| match canaries {
        CanarySpec::Count(n) => index < *n,
        CanarySpec::Names(names) => names.contains(&p.name),
    };
    for (index, mut p) in to_start.into_iter().enumerate() {
        p.canary = is_canary(&p, index);
        if p.canary { wave.canaries.push(p) } else { wave.clusters.push(p) }
    }
    if let CanarySpec::Names(names) = canaries {
        wave.canaries.sort_by_key(|p| names.iter().position(|n| n == &p.name));
    }
    Ok(Plan { target: target.to_string(), waves: vec![wave], skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, version: &str, action: &str, state: &str) -> ClusterState {
        ClusterState {
            name: name.into(),
            version: version.into(),
            last_action: action.into(),
            last_action_state: state.into(),
            description: String::new(),
        }
    }

    fn names(list: &[Planned]) -> Vec<&str> {
        list.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn decisions() {
        let t = "1.19";
        assert_eq!(decide(&c("a", "1.18", "CREATE", "succeeded"), t, false), Ok(Action::Start));
        assert_eq!(decide(&c("a", "1.19", "UPGRADE", "succeeded"), t, false), Err(SkipReason::AlreadyCurrent));
        assert_eq!(decide(&c("a", "1.18", "UPGRADE", "in progress"), t, false), Ok(Action::Adopt));
        assert_eq!(decide(&c("a", "1.18", "UPGRADE", "queued"), t, false), Ok(Action::Adopt));
        assert_eq!(
            decide(&c("a", "1.18", "UPDATE", "in progress"), t, false),
            Err(SkipReason::Busy { action: "UPDATE".into() })
        );
        assert_eq!(
            decide(&c("a", "1.18", "UPGRADE", "failed"), t, false),
            Err(SkipReason::FailedWithoutRepair { action: "UPGRADE".into() })
        );
        assert_eq!(decide(&c("a", "1.18", "UPGRADE", "error"), t, true), Ok(Action::Start));
        assert_eq!(
            decide(&c("a", "1.18", "UPGRADE", "paused"), t, true),
            Err(SkipReason::UnknownState { state: "paused".into() })
        );
    }

    #[test]
    fn order_canaries_first_then_by_name() {
        let clusters = [
            c("prod-2", "1.18", "CREATE", "succeeded"),
            c("dev-1", "1.18", "CREATE", "succeeded"),
            c("prod-1", "1.19", "UPGRADE", "succeeded"),
            c("stage-1", "1.18", "UPGRADE", "in progress"),
            c("dev-2", "1.18", "UPDATE", "in progress"),
            c("dev-3", "1.18", "UPGRADE", "failed"),
            c("dev-4", "1.18", "CREATE", "succeeded"),
        ];
        let p = plan(&clusters, "1.19", false, &CanarySpec::Count(1)).unwrap();
        let w = &p.waves[0];
        assert_eq!(names(&w.adopted), ["stage-1"]);
        assert_eq!(names(&w.canaries), ["dev-1"]);
        assert!(w.canaries[0].canary && !w.clusters[0].canary);
        assert_eq!(names(&w.clusters), ["dev-4", "prod-2"]);
        let skipped: Vec<&str> = p.skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(skipped, ["dev-2", "dev-3", "prod-1"]);
        assert_eq!(p.planned().count(), 4);

        let p = plan(&clusters, "1.19", true, &CanarySpec::Names(vec!["prod-2".into(), "dev-3".into()])).unwrap();
        assert_eq!(names(&p.waves[0].canaries), ["prod-2", "dev-3"], "named canaries keep the given order");
        assert_eq!(names(&p.waves[0].clusters), ["dev-1", "dev-4"]);
    }

    #[test]
    fn canaries_must_be_selected_and_count_may_exceed_plan() {
        let clusters = [c("a", "1", "CREATE", "succeeded")];
        let err = plan(&clusters, "2", false, &CanarySpec::Names(vec!["zz".into()])).unwrap_err();
        assert!(err.to_string().contains("canary `zz`"), "{err}");
        let p = plan(&clusters, "2", false, &CanarySpec::Count(5)).unwrap();
        assert_eq!(names(&p.waves[0].canaries), ["a"]);
        assert!(plan(&clusters, "1", false, &CanarySpec::Count(0)).unwrap().is_empty());
    }
}
