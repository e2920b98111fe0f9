//! The rollout plan, as pure functions: which clusters to upgrade, in which order, which are canaries,
//! which are adopted (an upgrade already running, e.g. from a killed build) and which are skipped and why.
//!
//! A plan is a list of waves; each wave has its canaries (run one at a time) and its other clusters
//! (run `max_in_flight` at a time). [`plan`] builds the one-wave upgrade plan of a plain rolling
//! upgrade; desired fleet files (`fleet::reconcile`) build several waves whose jobs may also create,
//! resize or delete clusters ([`Change`]). Day-2 operations are changes like the others — a repave
//! recreates a cluster's VMs, a rotation renews its certificates — and the fleet decides when to plan them.
//!
//! An upgrade may also be asked to reach a stemcell (`target_stemcell`): TKGI's upgrade of a cluster
//! already on the platform's version redeploys it (ASSUMED, docs/facts/tkgi-stemcell-path.md) with the
//! stemcell of the TKGI tile, which the broker builds every cluster from, so a
//! cluster is behind when its TKGI version differs from the target OR its stemcell is older than the
//! target stemcell. Versions compare numerically (`1.10` > `1.9`); a newer stemcell is never
//! "upgraded" back down.

use crate::versions;
use crate::versions::kubernetes::KubeVersion;
use crate::versions::skew::check_skew;
use anyhow::{Result, bail};
use serde::Deserialize;
use std::fmt;

/// What the planner and the executor need to know about one cluster, independent of the platform's
/// JSON. `last_action`/`last_action_state` stay open strings: an unknown value must never panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClusterState {
    pub name: String,
    pub version: String,
    pub last_action: String,
    pub last_action_state: String,
    /// The platform's words about the last action (shown when it failed).
    pub description: String,
    /// Worker node count, when the platform reports it.
    pub workers: Option<u64>,
    /// The stemcell version of the cluster's BOSH deployment, when a director is joined in and lists it.
    pub stemcell: Option<String>,
}

/// How a cluster's last action stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Succeeded,
    /// `in progress`, or `queued` in a bulk upgrade.
    Running,
    /// `failed` or `error`.
    Failed,
    Unknown,
}

impl ClusterState {
    pub(crate) fn phase(&self) -> Phase {
        match self.last_action_state.to_ascii_lowercase().as_str() {
            "succeeded" => Phase::Succeeded,
            "in progress" | "in_progress" | "queued" => Phase::Running,
            "failed" | "error" => Phase::Failed,
            _ => Phase::Unknown,
        }
    }

    pub(crate) fn is_upgrade(&self) -> bool {
        self.last_action.eq_ignore_ascii_case("UPGRADE")
    }
}

/// Why a selected cluster is not in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SkipReason {
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
    /// `hold: true` in the fleet file: never touched.
    Held,
    /// Pinned (fleet file `version`) at the version it already runs.
    Pinned {
        version: String,
    },
    /// On the platform but not in the fleet file, and `prune` is not set.
    NotInFleetFile,
    /// Every VM is younger than `max_vm_age`: nothing to repave.
    VmsYoung {
        oldest: String,
        max: String,
    },
    /// The director lists no `service-instance_<uuid>` deployment for the cluster.
    NoDeployment,
    /// The last action failed: a day-2 operation waits until it is repaired.
    LastActionFailed {
        action: String,
    },
    /// No certificate expires within the threshold.
    CertificatesNotDue {
        soonest: String,
        within: String,
    },
    /// Behind the platform's TKGI version: TKGI rotates certificates only of upgraded clusters.
    NotUpgraded {
        version: String,
        target: String,
    },
    /// The pre-check before a change failed (`pre_check: skip`).
    PreCheck {
        reason: String,
    },
    /// `require_backup` is set and no backup of the cluster could be verified.
    NoVerifiedBackup {
        reason: String,
    },
    /// Would be pruned, but this run already deletes as many clusters as `max_prunes` allows.
    PruneCapReached {
        cap: usize,
    },
    /// At the target TKGI version and on a stemcell newer than the target one: an upgrade could only
    /// redeploy it, never move it back, so it is left alone.
    StemcellNewer {
        version: String,
        target: String,
    },
    /// At the target TKGI version, but the director lists no deployment (stemcell) for it, so whether it
    /// is behind the target stemcell cannot be told.
    StemcellUnknown,
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
            SkipReason::Held => write!(f, "held (`hold: true`): never touched"),
            SkipReason::Pinned { version } => write!(f, "pinned at {version}"),
            SkipReason::NotInFleetFile => write!(f, "not in the fleet file; `prune` is not set, so it stays"),
            SkipReason::PruneCapReached { cap } => {
                write!(
                    f,
                    "not in the fleet file, but this run already prunes {cap} (`max_prunes`); left for a later run"
                )
            }
            SkipReason::StemcellNewer { version, target } => {
                write!(f, "on stemcell {version}, newer than the target stemcell {target}: not downgraded")
            }
            SkipReason::StemcellUnknown => {
                write!(f, "stemcell unknown: the director lists no `service-instance_<uuid>` deployment for it")
            }
            SkipReason::VmsYoung { oldest, max } => write!(f, "oldest VM is {oldest} old, within max_vm_age {max}"),
            SkipReason::NoDeployment => write!(f, "the director lists no `service-instance_<uuid>` deployment for it"),
            SkipReason::LastActionFailed { action } => {
                write!(f, "last action {action} failed: repair it first (operation upgrade with `repair: true`)")
            }
            SkipReason::CertificatesNotDue { soonest, within } => {
                write!(f, "soonest certificate expires {soonest}, not within {within}")
            }
            SkipReason::NotUpgraded { version, target } => write!(
                f,
                "at {version}, not the platform's {target}: TKGI rotates certificates of upgraded clusters only"
            ),
            SkipReason::PreCheck { reason } => write!(f, "pre-check failed: {reason}"),
            SkipReason::NoVerifiedBackup { reason } => write!(f, "not touched without a verified backup: {reason}"),
        }
    }
}

/// How the executor takes a planned cluster on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send the upgrade request, then wait.
    Start,
    /// An upgrade is already running: wait for it, never start a second one.
    Adopt,
}

/// One change a job makes to its cluster; a job runs its changes in order (e.g. resize, then upgrade),
/// each awaited to completion, because the platform refuses a second action while one runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Upgrade to the rollout's target version.
    Upgrade,
    Create {
        plan: String,
        master_host: String,
        workers: Option<u64>,
    },
    Resize {
        from: Option<u64>,
        to: u64,
    },
    Delete,
    /// Recreate every VM of the cluster's deployment from its stored manifest (stemcell and releases
    /// unchanged); with a cutoff (RFC 3339), only the VMs created before it.
    Repave {
        created_before: Option<String>,
    },
    /// Renew the cluster's certificates.
    Rotate,
}

impl Change {
    /// The platform's `last_action` while this change runs. TKGI has no action for a repave (the director
    /// runs it) and its name for a rotation is unknown, so the platform reports both under these names.
    pub(crate) fn action_name(&self) -> &'static str {
        match self {
            Change::Upgrade => "UPGRADE",
            Change::Create { .. } => "CREATE",
            Change::Resize { .. } => "UPDATE",
            Change::Delete => "DELETE",
            Change::Repave { .. } => "REPAVE",
            Change::Rotate => "ROTATE",
        }
    }

    /// Words for tables and logs: `upgrade`, `create (small, 3 workers)`, `resize 3 → 5`, `delete`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Change::Upgrade => "upgrade".into(),
            Change::Create { plan, workers: Some(w), .. } => format!("create ({plan}, {w} workers)"),
            Change::Create { plan, workers: None, .. } => format!("create ({plan})"),
            Change::Resize { from: Some(f), to } => format!("resize {f} → {to} workers"),
            Change::Resize { from: None, to } => format!("resize to {to} workers"),
            Change::Delete => "delete".into(),
            Change::Repave { created_before: Some(cutoff) } => format!("repave (VMs created before {cutoff})"),
            Change::Repave { created_before: None } => "repave (every VM)".into(),
            Change::Rotate => "rotate certificates".into(),
        }
    }

    /// Whether the change restarts or recreates a running cluster's VMs (its control plane among them), so
    /// the health gate must see the cluster come back before the rollout moves on.
    pub(crate) fn disturbs_running_cluster(&self) -> bool {
        matches!(self, Change::Upgrade | Change::Repave { .. } | Change::Rotate)
    }

    /// Whether the change works on the cluster's existing deployment (everything but a create).
    pub(crate) fn on_existing(&self) -> bool {
        !matches!(self, Change::Create { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    pub name: String,
    /// How the first change is taken on: started, or adopted (already running, e.g. from a killed build).
    pub action: Action,
    pub canary: bool,
    pub from_version: String,
    /// `(from, to)` when the job's upgrade also moves the cluster to the target stemcell.
    pub stemcell: Option<(String, String)>,
    /// What the job does, in order; never empty.
    pub changes: Vec<Change>,
}

impl Planned {
    /// A job that upgrades `name` (the plain rolling upgrade).
    pub(crate) fn upgrade(name: &str, action: Action, from_version: &str) -> Planned {
        Planned {
            name: name.into(),
            action,
            canary: false,
            from_version: from_version.into(),
            stemcell: None,
            changes: vec![Change::Upgrade],
        }
    }

    /// The job's changes as one phrase: `resize 3 → 5 workers, then upgrade`.
    pub(crate) fn describe(&self) -> String {
        let words: Vec<String> = self.changes.iter().map(Change::describe).collect();
        words.join(", then ")
    }

    pub(crate) fn upgrades(&self) -> bool {
        self.changes.contains(&Change::Upgrade)
    }
}

/// One group of clusters run to completion before the next group starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Wave {
    pub name: String,
    /// Upgrades already running; awaited before anything new starts.
    pub adopted: Vec<Planned>,
    /// Run one at a time; any failure stops the whole rollout.
    pub canaries: Vec<Planned>,
    /// Run at most `max_in_flight` at a time.
    pub clusters: Vec<Planned>,
}

impl Wave {
    pub(crate) fn all(&self) -> impl Iterator<Item = &Planned> {
        self.adopted.iter().chain(&self.canaries).chain(&self.clusters)
    }
}

/// What a plan does, for its headings and messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum PlanKind {
    /// Upgrades (and, from a fleet file, creates, resizes, deletes and repaves).
    #[default]
    Rollout,
    Repave,
    Rotate,
}

impl PlanKind {
    /// The `operation` a put reports (its metadata and `plan.json` alike).
    pub(crate) fn operation(self) -> &'static str {
        match self {
            PlanKind::Rollout => "upgrade",
            PlanKind::Repave => "repave",
            PlanKind::Rotate => "rotate",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub kind: PlanKind,
    /// The TKGI version upgrades reach (empty for a repave, which changes no version).
    pub target: String,
    /// The stemcell version every upgraded cluster must end on (`params.target_stemcell`).
    pub target_stemcell: Option<String>,
    pub waves: Vec<Wave>,
    pub skipped: Vec<(String, SkipReason)>,
}

impl Plan {
    /// Planned clusters in execution order.
    pub(crate) fn planned(&self) -> impl Iterator<Item = &Planned> {
        self.waves.iter().flat_map(Wave::all)
    }

    /// Takes `name`'s job out of the plan and records why; true when it was planned.
    pub(crate) fn skip(&mut self, name: &str, reason: SkipReason) -> bool {
        let mut found = false;
        for wave in &mut self.waves {
            for list in [&mut wave.adopted, &mut wave.canaries, &mut wave.clusters] {
                let before = list.len();
                list.retain(|p| p.name != name);
                found |= list.len() != before;
            }
        }
        if found {
            self.skipped.push((name.to_string(), reason));
        }
        found
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.planned().next().is_none()
    }
}

/// Canary clusters as the user writes them (`params.canaries`, a fleet file's `canaries`): the
/// first N of the plan, or explicit names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Canaries {
    Count(usize),
    Names(Vec<String>),
}

/// By hand rather than `#[serde(untagged)]`, whose only error is "data did not match any variant of
/// untagged enum Canaries": this one says what a valid value is and what was found (`-1`).
impl<'de> Deserialize<'de> for Canaries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(CanariesVisitor)
    }
}

struct CanariesVisitor;

impl<'de> serde::de::Visitor<'de> for CanariesVisitor {
    type Value = Canaries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of clusters (0 or more) or a list of cluster names")
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> std::result::Result<Canaries, E> {
        usize::try_from(n).map(Canaries::Count).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> std::result::Result<Canaries, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(n), &self)),
        }
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Canaries, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = seq.next_element::<String>()? {
            names.push(name);
        }
        Ok(Canaries::Names(names))
    }
}

impl Default for Canaries {
    fn default() -> Self {
        Canaries::Count(0)
    }
}

/// Where a cluster's stemcell stands against the target stemcell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StemcellStep {
    /// No target stemcell was asked for.
    NotAsked,
    Current,
    /// Older than the target: the upgrade moves it from this version.
    Behind(String),
    Newer(String),
    /// The cluster's deployment (and so its stemcell) is not known.
    Unknown,
}

impl StemcellStep {
    pub(crate) fn of(cluster: &ClusterState, target: Option<&str>) -> StemcellStep {
        let Some(target) = target else { return StemcellStep::NotAsked };
        let Some(version) = cluster.stemcell.as_deref().filter(|v| !v.is_empty()) else {
            return StemcellStep::Unknown;
        };
        match versions::compare(version, target) {
            std::cmp::Ordering::Less => StemcellStep::Behind(version.to_string()),
            std::cmp::Ordering::Equal => StemcellStep::Current,
            std::cmp::Ordering::Greater => StemcellStep::Newer(version.to_string()),
        }
    }

    /// Why a cluster at the target TKGI version is skipped, or `None` when its stemcell needs the upgrade.
    pub(crate) fn skip_reason(&self, target: Option<&str>) -> Option<SkipReason> {
        match self {
            StemcellStep::Behind(_) => None,
            StemcellStep::NotAsked | StemcellStep::Current => Some(SkipReason::AlreadyCurrent),
            StemcellStep::Newer(version) => Some(SkipReason::StemcellNewer {
                version: version.clone(),
                target: target.unwrap_or_default().to_string(),
            }),
            StemcellStep::Unknown => Some(SkipReason::StemcellUnknown),
        }
    }

    /// `(from, to)` for the plan table when the upgrade moves the stemcell.
    pub(crate) fn change(&self, target: Option<&str>) -> Option<(String, String)> {
        match (self, target) {
            (StemcellStep::Behind(from), Some(to)) => Some((from.clone(), to.to_string())),
            _ => None,
        }
    }
}

/// What the planner decides for one cluster. `target_stemcell` only matters for a cluster already at
/// the target TKGI version: any upgrade lands on the TKGI tile's stemcell anyway.
pub(crate) fn decide(
    cluster: &ClusterState,
    target: &str,
    target_stemcell: Option<&str>,
    repair: bool,
) -> std::result::Result<Action, SkipReason> {
    match cluster.phase() {
        Phase::Running if cluster.is_upgrade() => Ok(Action::Adopt),
        Phase::Running => Err(SkipReason::Busy { action: cluster.last_action.clone() }),
        Phase::Failed if repair => Ok(Action::Start),
        Phase::Failed => Err(SkipReason::FailedWithoutRepair { action: cluster.last_action.clone() }),
        Phase::Unknown => Err(SkipReason::UnknownState { state: cluster.last_action_state.clone() }),
        Phase::Succeeded if cluster.version != target => Ok(Action::Start),
        Phase::Succeeded => match StemcellStep::of(cluster, target_stemcell).skip_reason(target_stemcell) {
            Some(reason) => Err(reason),
            None => Ok(Action::Start),
        },
    }
}

/// The target as a version, or an error that says what a target looks like: a target that is no
/// version would upgrade every cluster and fail each one only after it started.
pub(crate) fn parse_target(target: &str) -> Result<KubeVersion> {
    KubeVersion::parse(target).map_err(|_| {
        let shown: String = target.chars().take(60).collect();
        anyhow::anyhow!("the target `{shown}` is not a TKGI version such as `1.19.2-build.10`")
    })
}

/// Refuses the plan when a cluster it would upgrade cannot reach `target` in one upgrade: a
/// downgrade, a skipped minor, another major. Every cluster is judged before anything starts, and all
/// refusals are named at once. A cluster whose own version cannot be read is left to the platform.
pub(crate) fn check_target<'a>(target: &str, upgrades: impl Iterator<Item = (&'a str, &'a str)>) -> Result<()> {
    let upgrades: Vec<(&str, &str)> = upgrades.collect();
    if upgrades.is_empty() {
        return Ok(());
    }
    let to = parse_target(target)?;
    let refused: Vec<String> = upgrades
        .into_iter()
        .filter_map(|(name, from)| {
            let from = KubeVersion::parse(from).ok()?;
            check_skew(&from, &to).err().map(|why| format!("{name}: {why}"))
        })
        .collect();
    if !refused.is_empty() {
        bail!("the target {target} cannot be reached in one upgrade:\n  {}", refused.join("\n  "));
    }
    Ok(())
}

/// Builds a one-wave plan: adopted upgrades first, then canaries (named ones in the order given, or
/// the first `n` by name), then the rest by name. Named canaries must be among `clusters`.
pub(crate) fn plan(
    clusters: &[ClusterState],
    target: &str,
    target_stemcell: Option<&str>,
    repair: bool,
    canaries: &Canaries,
) -> Result<Plan> {
    let mut sorted: Vec<&ClusterState> = clusters.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    check_canaries(canaries, sorted.iter().map(|c| c.name.as_str()))?;
    let (mut adopted, mut skipped, mut to_start) = (Vec::new(), Vec::new(), Vec::new());
    for cluster in sorted {
        let planned = |action| Planned {
            stemcell: StemcellStep::of(cluster, target_stemcell).change(target_stemcell),
            ..Planned::upgrade(&cluster.name, action, &cluster.version)
        };
        match decide(cluster, target, target_stemcell, repair) {
            Ok(Action::Adopt) => adopted.push(planned(Action::Adopt)),
            Ok(Action::Start) => to_start.push(planned(Action::Start)),
            Err(reason) => skipped.push((cluster.name.clone(), reason)),
        }
    }
    Ok(Plan {
        kind: PlanKind::Rollout,
        target: target.to_string(),
        target_stemcell: target_stemcell.map(str::to_string),
        waves: vec![one_wave(adopted, to_start, canaries)],
        skipped,
    })
}

/// Named canaries must be among the selected clusters: a typo must not leave the rollout without one.
pub(crate) fn check_canaries<'a>(canaries: &Canaries, selected: impl Iterator<Item = &'a str>) -> Result<()> {
    let Canaries::Names(names) = canaries else { return Ok(()) };
    let selected: Vec<&str> = selected.collect();
    if let Some(missing) = names.iter().find(|n| !selected.contains(&n.as_str())) {
        bail!("canary `{missing}` is not one of the selected clusters");
    }
    Ok(())
}

/// The one wave of a plan over the whole selection (`all`): `adopted` first, then the canaries — the
/// named ones in the order given, or the first `n` of `to_start` — then the rest of `to_start` in order.
pub(crate) fn one_wave(adopted: Vec<Planned>, to_start: Vec<Planned>, canaries: &Canaries) -> Wave {
    let mut wave = Wave { name: "all".into(), adopted, ..Wave::default() };
    let is_canary = |p: &Planned, index: usize| match canaries {
        Canaries::Count(n) => index < *n,
        Canaries::Names(names) => names.contains(&p.name),
    };
    for (index, mut p) in to_start.into_iter().enumerate() {
        p.canary = is_canary(&p, index);
        if p.canary { wave.canaries.push(p) } else { wave.clusters.push(p) }
    }
    if let Canaries::Names(names) = canaries {
        wave.canaries.sort_by_key(|p| names.iter().position(|n| n == &p.name));
    }
    wave
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
            workers: None,
            stemcell: None,
        }
    }

    fn names(list: &[Planned]) -> Vec<&str> {
        list.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn targets_must_be_versions_reachable_in_one_upgrade() {
        let t = "1.19.2-build.10";
        check_target(t, [("a", "1.18.5-build.10"), ("b", t), ("c", "unreadable")].into_iter()).unwrap();
        let garbage = check_target("garbage", [("a", t)].into_iter()).unwrap_err().to_string();
        assert!(garbage.contains("not a TKGI version"), "{garbage}");
        check_target("", std::iter::empty()).unwrap();
        let err = check_target(t, [("down", "1.20.0-build.1"), ("far", "1.17.3-build.2")].into_iter()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("down: 1.20.0-build.1 → 1.19.2-build.10 is a downgrade"), "{text}");
        assert!(
            text.contains("far: 1.17 → 1.19 skips a minor") && text.contains("upgrade 1.17 → 1.18 → 1.19"),
            "{text}"
        );
    }

    #[test]
    fn decisions() {
        let t = "1.19";
        assert_eq!(decide(&c("a", "1.18", "CREATE", "succeeded"), t, None, false), Ok(Action::Start));
        assert_eq!(decide(&c("a", "1.19", "UPGRADE", "succeeded"), t, None, false), Err(SkipReason::AlreadyCurrent));
        assert_eq!(decide(&c("a", "1.18", "UPGRADE", "in progress"), t, None, false), Ok(Action::Adopt));
        assert_eq!(decide(&c("a", "1.18", "UPGRADE", "queued"), t, None, false), Ok(Action::Adopt));
        assert_eq!(
            decide(&c("a", "1.18", "UPDATE", "in progress"), t, None, false),
            Err(SkipReason::Busy { action: "UPDATE".into() })
        );
        assert_eq!(
            decide(&c("a", "1.18", "UPGRADE", "failed"), t, None, false),
            Err(SkipReason::FailedWithoutRepair { action: "UPGRADE".into() })
        );
        assert_eq!(decide(&c("a", "1.18", "UPGRADE", "error"), t, None, true), Ok(Action::Start));
        assert_eq!(
            decide(&c("a", "1.18", "UPGRADE", "paused"), t, None, true),
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
        let p = plan(&clusters, "1.19", None, false, &Canaries::Count(1)).unwrap();
        let w = &p.waves[0];
        assert_eq!(names(&w.adopted), ["stage-1"]);
        assert_eq!(names(&w.canaries), ["dev-1"]);
        assert!(w.canaries[0].canary && !w.clusters[0].canary);
        assert_eq!(names(&w.clusters), ["dev-4", "prod-2"]);
        let skipped: Vec<&str> = p.skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(skipped, ["dev-2", "dev-3", "prod-1"]);
        assert_eq!(p.planned().count(), 4);

        let p = plan(&clusters, "1.19", None, true, &Canaries::Names(vec!["prod-2".into(), "dev-3".into()])).unwrap();
        assert_eq!(names(&p.waves[0].canaries), ["prod-2", "dev-3"], "named canaries keep the given order");
        assert_eq!(names(&p.waves[0].clusters), ["dev-1", "dev-4"]);
    }

    #[test]
    fn canaries_must_be_selected_and_count_may_exceed_plan() {
        let clusters = [c("a", "1", "CREATE", "succeeded")];
        let err = plan(&clusters, "2", None, false, &Canaries::Names(vec!["zz".into()])).unwrap_err();
        assert!(err.to_string().contains("canary `zz`"), "{err}");
        let p = plan(&clusters, "2", None, false, &Canaries::Count(5)).unwrap();
        assert_eq!(names(&p.waves[0].canaries), ["a"]);
        assert!(plan(&clusters, "1", None, false, &Canaries::Count(0)).unwrap().is_empty());
    }

    fn on(stemcell: Option<&str>, version: &str) -> ClusterState {
        ClusterState { stemcell: stemcell.map(str::to_string), ..c("a", version, "UPGRADE", "succeeded") }
    }

    #[test]
    fn stemcell_decisions() {
        let s = Some("1.506");
        // Behind by stemcell only: the same upgrade call redeploys it on the new stemcell.
        assert_eq!(decide(&on(Some("1.445"), "1.19"), "1.19", s, false), Ok(Action::Start));
        // Numeric, not textual: 1.10 is newer than 1.9.
        assert_eq!(decide(&on(Some("1.9"), "1.19"), "1.19", Some("1.10"), false), Ok(Action::Start));
        assert_eq!(decide(&on(Some("1.506"), "1.19"), "1.19", s, false), Err(SkipReason::AlreadyCurrent));
        // A newer stemcell is kept, and the reason says so.
        let newer = decide(&on(Some("1.510"), "1.19"), "1.19", s, false).unwrap_err();
        assert_eq!(newer, SkipReason::StemcellNewer { version: "1.510".into(), target: "1.506".into() });
        assert!(newer.to_string().contains("not downgraded"), "{newer}");
        assert_eq!(decide(&on(None, "1.19"), "1.19", s, false), Err(SkipReason::StemcellUnknown));
        // Both behind: one upgrade, and the plan records the stemcell move too.
        assert_eq!(decide(&on(Some("1.445"), "1.18"), "1.19", s, false), Ok(Action::Start));
        // Without a stemcell target the stemcell is ignored, as before.
        assert_eq!(decide(&on(Some("1.445"), "1.19"), "1.19", None, false), Err(SkipReason::AlreadyCurrent));
    }

    #[test]
    fn stemcell_plan_records_the_move() {
        let clusters = [
            ClusterState { name: "both".into(), ..on(Some("1.445"), "1.18") },
            ClusterState { name: "stemcell-only".into(), ..on(Some("1.445"), "1.19") },
            ClusterState { name: "current".into(), ..on(Some("1.506"), "1.19") },
            ClusterState { name: "newer".into(), ..on(Some("1.510"), "1.19") },
            ClusterState { name: "tkgi-only".into(), ..on(Some("1.510"), "1.18") },
        ];
        let p = plan(&clusters, "1.19", Some("1.506"), false, &Canaries::Count(0)).unwrap();
        let jobs: Vec<(&str, Option<(String, String)>)> =
            p.planned().map(|j| (j.name.as_str(), j.stemcell.clone())).collect();
        let moved = Some(("1.445".to_string(), "1.506".to_string()));
        assert_eq!(jobs, [("both", moved.clone()), ("stemcell-only", moved), ("tkgi-only", None)]);
        let skipped: Vec<&str> = p.skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(skipped, ["current", "newer"]);
        assert_eq!(p.target_stemcell.as_deref(), Some("1.506"));
    }
}
