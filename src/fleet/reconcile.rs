//! The plan that brings the platform to a desired fleet file, as a pure function: create missing
//! clusters, resize changed worker counts, upgrade clusters behind the target, leave held ones alone,
//! repair failed ones (with `repair`), and delete clusters absent from the file only with `prune` and
//! never more than `max_prunes` per run. The result is an ordinary rollout [`Plan`]: one wave per
//! declared wave, in order, and a final `prune` wave, so the executor's wave, window and failure
//! rules apply to every kind of change.
//!
//! Version rule: TKGI upgrades a cluster only to the platform's own version, and — like the
//! Kubernetes it ships (one Kubernetes minor per TKGI minor) — never across more than one minor at a
//! time. So a pin or target more than one minor ahead of a cluster is refused with the chained path,
//! using the same skew check as `kind: kubernetes`.
//!
//! Resume rule: an action already running on a cluster the file manages (a killed build's create,
//! resize or upgrade, or a prune's delete) is adopted, never started again nor skipped, and every
//! adopted job is awaited before anything new starts in any wave: otherwise a rerun would start
//! new actions beside it, above `max_in_flight`, and could succeed before it finished.
//!
//! Repave rule: a cluster with nothing else to do whose VMs are older than its `max_vm_age` (decided by
//! the caller from the deployment's VM ages, `Current::repave`) is repaved; a repave still running from
//! an earlier build is adopted. A cluster that also needs an upgrade or resize is not repaved in the same
//! run: its VM ages are judged again the next time.
//!
//! Stemcell rule: with a target stemcell, a cluster at the platform's TKGI version whose stemcell is
//! older is upgraded too (the same call redeploys it on the TKGI tile's stemcell) — unless it is
//! pinned to another TKGI version, because that call would also move its TKGI version.

use super::desired::{DesiredCluster, FleetFile};
use crate::rollout::plan::Canaries;
use crate::rollout::plan::{
    Action, Change, ClusterState, Phase, Plan, Planned, SkipReason, StemcellStep, Wave, parse_target,
};
use crate::versions::kubernetes::KubeVersion;
use crate::versions::skew::check_skew;
use anyhow::{Result, bail};

/// One selected cluster as the platform reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Current {
    pub state: ClusterState,
    pub plan: String,
    /// The repave its VM ages call for, if any (see `day2::decide_repave`).
    pub repave: Option<Change>,
    /// A repave an earlier build started is still running on the director.
    pub repave_running: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Options {
    /// The platform's TKGI version: what an upgrade reaches.
    pub target: String,
    /// The stemcell version upgraded clusters must end on (`params.target_stemcell`).
    pub target_stemcell: Option<String>,
    pub prune: bool,
    pub max_prunes: usize,
    pub repair: bool,
}

/// The plan plus what a human should know but no job does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Reconciled {
    pub plan: Plan,
    /// e.g. "prod-1: plan is medium on the platform, large in the file; TKGI cannot change it".
    pub notes: Vec<String>,
    /// Failed clusters retried in this run (`repair: true`).
    pub repairs: Vec<String>,
}

/// The name of the last wave, which deletes pruned clusters after every other wave succeeded.
pub(super) const PRUNE_WAVE: &str = "prune";

pub(super) fn reconcile(file: &FleetFile, current: &[Current], options: &Options) -> Result<Reconciled> {
    // Pins are judged against it by `version_step`; a target that is no version would slip past.
    parse_target(&options.target)?;
    let mut out = Reconciled {
        plan: Plan {
            target: options.target.clone(),
            target_stemcell: options.target_stemcell.clone(),
            ..Plan::default()
        },
        ..Reconciled::default()
    };
    let mut waves: Vec<Wave> = file.wave_order().into_iter().map(|name| Wave { name, ..Wave::default() }).collect();
    let mut refused = Vec::new();
    let mut desired: Vec<&DesiredCluster> = file.clusters.iter().collect();
    desired.sort_by(|a, b| a.name.cmp(&b.name));
    for d in desired {
        let now = current.iter().find(|c| c.state.name == d.name);
        match decide(file, d, now, options) {
            Ok(Decision::Job(job)) => {
                let wave = file.wave_of(d);
                let index = waves.iter().position(|w| w.name == wave).unwrap_or(0);
                if job.action == Action::Adopt {
                    waves[index].adopted.push(job)
                } else {
                    waves[index].clusters.push(job)
                }
            }
            Ok(Decision::Skip(reason)) => out.plan.skipped.push((d.name.clone(), reason)),
            Err(why) => refused.push(format!("{}: {why}", d.name)),
        }
        if let (Some(now), false) = (now, d.hold) {
            note_differences(d, now, &mut out.notes);
            if now.state.phase() == Phase::Failed
                && options.repair
                && d.version.as_ref().is_none_or(|p| *p == options.target)
            {
                out.repairs.push(d.name.clone());
            }
        }
    }
    if !refused.is_empty() {
        bail!("the fleet file asks for what the platform cannot do:\n  {}", refused.join("\n  "));
    }
    waves.push(prune_wave(file, current, options, &mut out.plan.skipped));
    mark_canaries(&mut waves, file.canaries.as_ref());
    adopt_first(&mut waves);
    out.plan.waves = waves;
    Ok(out)
}

/// Moves every adopted job into the first wave, where the executor awaits them before starting
/// anything: what a killed build left running counts against `max_in_flight` like everything else.
fn adopt_first(waves: &mut [Wave]) {
    let adopted: Vec<Planned> = waves.iter_mut().skip(1).flat_map(|w| w.adopted.drain(..)).collect();
    if let Some(first) = waves.first_mut() {
        first.adopted.extend(adopted);
    }
}

enum Decision {
    Job(Planned),
    Skip(SkipReason),
}

/// What one desired cluster needs. `Err` = the file asks for something impossible (refused).
fn decide(
    file: &FleetFile,
    d: &DesiredCluster,
    now: Option<&Current>,
    options: &Options,
) -> std::result::Result<Decision, String> {
    if d.hold {
        return Ok(Decision::Skip(SkipReason::Held));
    }
    let target = d.version.clone().unwrap_or_else(|| options.target.clone());
    let Some(now) = now else { return create(file, d, &target, options) };
    let s = &now.state;
    let resize = d.workers.filter(|w| s.workers != Some(*w)).map(|to| Change::Resize { from: s.workers, to });
    let wanted_stemcell = options.target_stemcell.as_deref();
    let stemcell = StemcellStep::of(s, wanted_stemcell);
    let job = |action, changes: Vec<Change>| {
        let moves_stemcell = changes.contains(&Change::Upgrade) && target == options.target;
        Decision::Job(Planned {
            name: d.name.clone(),
            action,
            canary: false,
            from_version: s.version.clone(),
            stemcell: stemcell.change(wanted_stemcell).filter(|_| moves_stemcell),
            changes,
        })
    };
    if now.repave_running {
        return Ok(job(Action::Adopt, vec![Change::Repave { created_before: None }]));
    }
    match s.phase() {
        Phase::Running if s.is_upgrade() => {
            Ok(job(Action::Adopt, [Some(Change::Upgrade), resize].into_iter().flatten().collect()))
        }
        Phase::Running => match running_change(file, d, s) {
            // What follows the adopted change: the upgrade, if the cluster is still behind afterwards.
            Some(first) => {
                let then = match first {
                    Change::Create { .. } => None,
                    _ => version_step(&s.version, &target, d.version.is_some(), options)?,
                };
                Ok(job(Action::Adopt, [Some(first), then].into_iter().flatten().collect()))
            }
            None => Ok(Decision::Skip(SkipReason::Busy { action: s.last_action.clone() })),
        },
        Phase::Unknown => Ok(Decision::Skip(SkipReason::UnknownState { state: s.last_action_state.clone() })),
        // A repair re-runs the upgrade, TKGI's way to re-deploy a cluster whatever action failed; once per
        // run, because the executor starts each job once.
        Phase::Failed if options.repair && target == options.target => {
            Ok(job(Action::Start, [resize, Some(Change::Upgrade)].into_iter().flatten().collect()))
        }
        Phase::Failed => Ok(Decision::Skip(SkipReason::FailedWithoutRepair { action: s.last_action.clone() })),
        Phase::Succeeded => {
            let mut upgrade = version_step(&s.version, &target, d.version.is_some(), options)?;
            // At the platform's version (and not pinned elsewhere): the stemcell alone may call for it.
            let at_platform = upgrade.is_none() && target == options.target;
            if at_platform && matches!(stemcell, StemcellStep::Behind(_)) {
                upgrade = Some(Change::Upgrade);
            }
            let changes: Vec<Change> = [resize, upgrade].into_iter().flatten().collect();
            if !changes.is_empty() {
                return Ok(job(Action::Start, changes));
            }
            if let Some(repave) = &now.repave {
                return Ok(job(Action::Start, vec![repave.clone()]));
            }
            Ok(Decision::Skip(match &d.version {
                Some(pin) if *pin != options.target => SkipReason::Pinned { version: pin.clone() },
                _ => stemcell.skip_reason(wanted_stemcell).unwrap_or(SkipReason::AlreadyCurrent),
            }))
        }
    }
}

/// The change a running action is, when it is one this file asks for (an earlier build's): a create
/// of a cluster the file lists, or a resize to the worker count the file names. Anything else running
/// (someone else's update, a delete of a listed cluster) is another's business: the cluster is busy.
fn running_change(file: &FleetFile, d: &DesiredCluster, s: &ClusterState) -> Option<Change> {
    match s.last_action.to_ascii_uppercase().as_str() {
        "CREATE" => Some(Change::Create {
            plan: d.plan.clone(),
            master_host: file.master_host_for(d).unwrap_or_default(),
            workers: d.workers,
        }),
        "UPDATE" => d.workers.filter(|w| s.workers == Some(*w)).map(|to| Change::Resize { from: None, to }),
        _ => None,
    }
}

fn create(
    file: &FleetFile,
    d: &DesiredCluster,
    target: &str,
    options: &Options,
) -> std::result::Result<Decision, String> {
    if target != options.target {
        return Err(format!(
            "pinned to {target}, but the platform creates clusters at its own version {}",
            options.target
        ));
    }
    let Some(master_host) = file.master_host_for(d) else {
        return Err("missing on the platform, and creating it needs `master_host` (on the cluster or fleet-wide, e.g. `{name}.k8s.example.com`)".into());
    };
    let change = Change::Create { plan: d.plan.clone(), master_host, workers: d.workers };
    Ok(Decision::Job(Planned {
        name: d.name.clone(),
        action: Action::Start,
        canary: false,
        from_version: "—".into(),
        stemcell: None,
        changes: vec![change],
    }))
}

/// The upgrade a succeeded cluster at `version` needs to reach `target`, if any. Refused: a target
/// the platform cannot upgrade to, or one more than one minor ahead (with the chained path).
fn version_step(
    version: &str,
    target: &str,
    pinned: bool,
    options: &Options,
) -> std::result::Result<Option<Change>, String> {
    if version == target {
        return Ok(None);
    }
    let what = if pinned { "version pin" } else { "target" };
    if let (Ok(from), Ok(to)) = (KubeVersion::parse(version), KubeVersion::parse(target)) {
        check_skew(&from, &to)
            .map_err(|e| format!("{what} {target} cannot be reached from {version} in one upgrade: {e}"))?;
    }
    if target != options.target {
        return Err(format!(
            "pinned to {target}, but TKGI upgrades clusters only to the platform's version {}; pin {version} to hold it, or remove the pin",
            options.target
        ));
    }
    Ok(Some(Change::Upgrade))
}

fn note_differences(d: &DesiredCluster, now: &Current, notes: &mut Vec<String>) {
    if !now.plan.is_empty() && now.plan != d.plan {
        notes.push(format!(
            "{}: plan is {} on the platform but {} in the file; TKGI cannot change the plan of a cluster (recreate it to change)",
            d.name, now.plan, d.plan
        ));
    }
}

/// Deletes for clusters on the platform (within the selector) but not in the file: only with `prune`,
/// never a busy one, at most `max_prunes`, in name order so the cap picks the same ones every run.
fn prune_wave(
    file: &FleetFile,
    current: &[Current],
    options: &Options,
    skipped: &mut Vec<(String, SkipReason)>,
) -> Wave {
    let mut wave = Wave { name: PRUNE_WAVE.into(), ..Wave::default() };
    let mut extra: Vec<&Current> = current.iter().filter(|c| file.cluster(&c.state.name).is_none()).collect();
    extra.sort_by(|a, b| a.state.name.cmp(&b.state.name));
    for c in extra {
        let name = c.state.name.clone();
        let deleting = c.state.phase() == Phase::Running && c.state.last_action.eq_ignore_ascii_case("DELETE");
        if options.prune && deleting {
            // An earlier build's prune: awaited, and it counts against this run's cap.
            wave.adopted.push(Planned {
                name,
                action: Action::Adopt,
                canary: false,
                from_version: c.state.version.clone(),
                stemcell: None,
                changes: vec![Change::Delete],
            });
            continue;
        }
        let pruning = wave.clusters.len() + wave.adopted.len();
        let reason = if !options.prune {
            Some(SkipReason::NotInFleetFile)
        } else if c.state.phase() == Phase::Running {
            Some(SkipReason::Busy { action: c.state.last_action.clone() })
        } else if pruning >= options.max_prunes {
            Some(SkipReason::PruneCapReached { cap: options.max_prunes })
        } else {
            None
        };
        match reason {
            Some(r) => skipped.push((name, r)),
            None => wave.clusters.push(Planned {
                name,
                action: Action::Start,
                canary: false,
                from_version: c.state.version.clone(),
                stemcell: None,
                changes: vec![Change::Delete],
            }),
        }
    }
    wave
}

/// Canary jobs run alone before the rest of their wave. Named canaries stay in their own waves; a
/// count picks the first upgrades (or repaves) of the first wave that has any. Only upgrades and repaves
/// — the changes that redeploy a running cluster's VMs — can be canaries.
fn mark_canaries(waves: &mut [Wave], canaries: Option<&Canaries>) {
    let is_upgrade = |p: &Planned| p.changes.iter().any(|c| matches!(c, Change::Upgrade | Change::Repave { .. }));
    for wave in waves.iter_mut() {
        let (picked, rest): (Vec<Planned>, Vec<Planned>) = match canaries {
            Some(Canaries::Names(names)) => {
                wave.clusters.drain(..).partition(|p| is_upgrade(p) && names.contains(&p.name))
            }
            Some(Canaries::Count(n)) if *n > 0 && wave.clusters.iter().any(is_upgrade) => {
                let mut left = *n;
                wave.clusters.drain(..).partition(|p| {
                    let take = left > 0 && is_upgrade(p);
                    left -= usize::from(take);
                    take
                })
            }
            _ => continue,
        };
        wave.clusters = rest;
        wave.canaries = picked.into_iter().map(|p| Planned { canary: true, ..p }).collect();
        if let Some(Canaries::Names(names)) = canaries {
            wave.canaries.sort_by_key(|p| names.iter().position(|n| *n == p.name));
        }
        if matches!(canaries, Some(Canaries::Count(_))) && !wave.canaries.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::desired::parse;

    const TARGET: &str = "1.19.2-build.10";
    const OLD: &str = "1.18.5-build.10";

    fn cur(name: &str, version: &str, action: &str, state: &str, workers: u64) -> Current {
        let state = ClusterState {
            name: name.into(),
            version: version.into(),
            last_action: action.into(),
            last_action_state: state.into(),
            description: String::new(),
            workers: Some(workers),
            stemcell: None,
        };
        Current { state, plan: "small".into(), repave: None, repave_running: false }
    }

    fn ok(name: &str, version: &str, workers: u64) -> Current {
        cur(name, version, "CREATE", "succeeded", workers)
    }

    fn opts(prune: bool, max_prunes: usize, repair: bool) -> Options {
        Options { target: TARGET.into(), target_stemcell: None, prune, max_prunes, repair }
    }

    fn run(file: &str, current: &[Current], options: &Options) -> Result<Reconciled> {
        reconcile(&parse(file, "fleet.yml").unwrap(), current, options)
    }

    /// `wave: name [change; change] …` per job, and `name: reason` per skip — easy to compare.
    fn jobs(r: &Reconciled) -> Vec<String> {
        let mut out = Vec::new();
        for w in &r.plan.waves {
            for p in w.all() {
                let tag = match (p.action, p.canary) {
                    (Action::Adopt, _) => " (adopt)",
                    (_, true) => " (canary)",
                    _ => "",
                };
                out.push(format!("{}: {} {}{tag}", w.name, p.name, p.describe()));
            }
        }
        out
    }

    fn skips(r: &Reconciled) -> Vec<String> {
        r.plan.skipped.iter().map(|(n, why)| format!("{n}: {why}")).collect()
    }

    const THREE_WAVES: &str = "\
waves: [canary, dev, prod]
master_host: '{name}.k8s.example.com'
clusters:
  - {name: c-1, plan: small, wave: canary}
  - {name: d-1, plan: small, workers: 3, wave: dev}
  - {name: d-2, plan: small, workers: 5, wave: dev}
  - {name: d-new, plan: small, workers: 2, wave: dev}
  - {name: p-1, plan: small, wave: prod}
  - {name: p-held, plan: small, wave: prod, hold: true}
";

    #[test]
    fn create_resize_upgrade_hold_in_wave_order() {
        let current =
            [ok("c-1", OLD, 3), ok("d-1", TARGET, 3), ok("d-2", TARGET, 3), ok("p-1", OLD, 3), ok("p-held", OLD, 3)];
        let r = run(THREE_WAVES, &current, &opts(false, 1, false)).unwrap();
        assert_eq!(
            jobs(&r),
            [
                "canary: c-1 upgrade",
                "dev: d-2 resize 3 → 5 workers",
                "dev: d-new create (small, 2 workers)",
                "prod: p-1 upgrade",
            ]
        );
        assert_eq!(skips(&r), ["d-1: already at the target version", "p-held: held (`hold: true`): never touched"]);
        let create = &r.plan.waves[1].clusters[1].changes[0];
        assert_eq!(
            create,
            &Change::Create { plan: "small".into(), master_host: "d-new.k8s.example.com".into(), workers: Some(2) }
        );
    }

    #[test]
    fn held_clusters_are_untouched_even_when_missing_failed_or_resized() {
        let file =
            "clusters:\n  - {name: a, plan: small, hold: true, workers: 9}\n  - {name: b, plan: small, hold: true}\n";
        let r = run(file, &[cur("a", OLD, "UPGRADE", "failed", 3)], &opts(true, 5, true)).unwrap();
        assert!(jobs(&r).is_empty(), "{:?}", jobs(&r));
        assert_eq!(skips(&r).len(), 2);
        assert!(r.repairs.is_empty());
    }

    #[test]
    fn resize_and_upgrade_together_resize_first() {
        let file = "clusters:\n  - {name: a, plan: small, workers: 4}\n";
        let r = run(file, &[ok("a", OLD, 3)], &opts(false, 1, false)).unwrap();
        assert_eq!(jobs(&r), ["all: a resize 3 → 4 workers, then upgrade"]);
    }

    #[test]
    fn prune_only_when_asked_and_never_beyond_the_cap() {
        let file = "clusters:\n  - {name: keep, plan: small}\n";
        let current = [ok("keep", TARGET, 3), ok("x-1", TARGET, 3), ok("x-2", TARGET, 3), ok("x-3", TARGET, 3)];
        let r = run(file, &current, &opts(false, 5, false)).unwrap();
        assert!(jobs(&r).is_empty());
        assert!(skips(&r).iter().filter(|s| s.contains("`prune` is not set")).count() == 3);
        let r = run(file, &current, &opts(true, 2, false)).unwrap();
        assert_eq!(jobs(&r), ["prune: x-1 delete", "prune: x-2 delete"]);
        assert!(
            skips(&r).contains(
                &"x-3: not in the fleet file, but this run already prunes 2 (`max_prunes`); left for a later run"
                    .to_string()
            )
        );
        let r = run(file, &current, &opts(true, 0, false)).unwrap();
        assert!(jobs(&r).is_empty(), "a cap of 0 deletes nothing");
        let busy = [ok("keep", TARGET, 3), cur("x-1", TARGET, "UPDATE", "in progress", 3)];
        let r = run(file, &busy, &opts(true, 5, false)).unwrap();
        assert!(jobs(&r).is_empty() && skips(&r)[1].contains("held by another action"), "{:?}", skips(&r));
    }

    #[test]
    fn repair_retries_failed_clusters_once_and_logs_them() {
        let file = "clusters:\n  - {name: a, plan: small}\n  - {name: b, plan: small, workers: 4}\n";
        let current = [cur("a", TARGET, "UPDATE", "failed", 3), cur("b", OLD, "UPGRADE", "error", 3)];
        let r = run(file, &current, &opts(false, 1, false)).unwrap();
        assert!(jobs(&r).is_empty());
        assert!(skips(&r)[0].contains("failed and `repair` is not set"), "{:?}", skips(&r));
        let r = run(file, &current, &opts(false, 1, true)).unwrap();
        assert_eq!(jobs(&r), ["all: a upgrade", "all: b resize 3 → 4 workers, then upgrade"]);
        assert_eq!(r.repairs, ["a", "b"]);
        assert!(r.plan.planned().all(|p| p.changes.iter().filter(|c| **c == Change::Upgrade).count() == 1), "once");
    }

    #[test]
    fn running_changes_the_file_asks_for_are_adopted_others_wait() {
        let file = "master_host: '{name}.k8s'\nclusters:\n  - {name: a, plan: small, workers: 5}\n  - {name: b, plan: small}\n  - {name: c, plan: small}\n  - {name: d, plan: small, workers: 4}\n  - {name: e, plan: small}\n";
        let current = [
            cur("a", OLD, "UPGRADE", "in progress", 3),
            cur("b", TARGET, "CREATE", "in progress", 3),
            cur("c", OLD, "UPGRADE", "weird", 3),
            cur("d", OLD, "UPDATE", "in progress", 4),
            cur("e", OLD, "UPDATE", "in progress", 3),
        ];
        let r = run(file, &current, &opts(false, 1, false)).unwrap();
        assert_eq!(
            jobs(&r),
            [
                "all: a upgrade, then resize 3 → 5 workers (adopt)",
                "all: b create (small) (adopt)",
                "all: d resize to 4 workers, then upgrade (adopt)",
            ]
        );
        assert!(
            skips(&r)[0].contains("unknown last_action_state") && skips(&r)[1].contains("(UPDATE)"),
            "{:?}",
            skips(&r)
        );
    }

    #[test]
    fn adopted_jobs_of_every_wave_are_awaited_before_anything_starts() {
        let file = "waves: [dev, prod]\nmaster_host: '{name}.k8s'\nclusters:\n  - {name: d-1, plan: small, wave: dev}\n  - {name: p-new, plan: small, wave: prod}\n";
        let current = [
            ok("d-1", OLD, 3),
            cur("p-new", TARGET, "CREATE", "in progress", 3),
            cur("x", TARGET, "DELETE", "in progress", 3),
        ];
        let r = run(file, &current, &opts(true, 1, false)).unwrap();
        assert_eq!(names_in(&r.plan.waves[0].adopted), ["p-new", "x"]);
        assert_eq!(names_in(&r.plan.waves[0].clusters), ["d-1"]);
        assert!(r.plan.waves[1..].iter().all(|w| w.adopted.is_empty()));
    }

    fn names_in(list: &[Planned]) -> Vec<&str> {
        list.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn pins_hold_or_are_refused_with_the_chained_path() {
        let file = "clusters:\n  - {name: a, plan: small, version: 1.18.5-build.10}\n";
        let r = run(file, &[ok("a", OLD, 3)], &opts(false, 1, false)).unwrap();
        assert_eq!(skips(&r), ["a: pinned at 1.18.5-build.10"]);
        let far = "clusters:\n  - {name: a, plan: small, version: 1.19.2-build.10}\n";
        let e = run(far, &[ok("a", "1.17.3-build.2", 3)], &opts(false, 1, false)).unwrap_err().to_string();
        assert!(e.contains("a: version pin 1.19.2-build.10 cannot be reached from 1.17.3-build.2"), "{e}");
        assert!(e.contains("upgrade 1.17 → 1.18 → 1.19"), "the chained path: {e}");
        let target_far = "clusters:\n  - {name: a, plan: small}\n";
        let e = run(target_far, &[ok("a", "1.16.0-build.1", 3)], &opts(false, 1, false)).unwrap_err().to_string();
        assert!(e.contains("target 1.19.2-build.10") && e.contains("1.16 → 1.17 → 1.18 → 1.19"), "{e}");
        let ahead = "clusters:\n  - {name: a, plan: small, version: 1.20.0-build.1}\n";
        let e = run(ahead, &[ok("a", TARGET, 3)], &opts(false, 1, false)).unwrap_err().to_string();
        assert!(e.contains("only to the platform's version"), "{e}");
        let down = "clusters:\n  - {name: a, plan: small, version: 1.17.0-build.1}\n";
        assert!(run(down, &[ok("a", OLD, 3)], &opts(false, 1, false)).unwrap_err().to_string().contains("downgrade"));
    }

    #[test]
    fn creating_needs_a_master_host_and_the_platform_version() {
        let file = "clusters:\n  - {name: n, plan: small}\n";
        let e = run(file, &[], &opts(false, 1, false)).unwrap_err().to_string();
        assert!(e.contains("n: missing on the platform") && e.contains("master_host"), "{e}");
        let pinned = "clusters:\n  - {name: n, plan: small, master_host: n.example.com, version: 1.18.5-build.10}\n";
        assert!(run(pinned, &[], &opts(false, 1, false)).unwrap_err().to_string().contains("creates clusters at"));
        let own = "clusters:\n  - {name: n, plan: large, master_host: api.n.example.com}\n";
        let r = run(own, &[], &opts(false, 1, false)).unwrap();
        assert_eq!(jobs(&r), ["all: n create (large)"]);
    }

    #[test]
    fn canaries_by_count_come_from_the_first_wave_with_upgrades() {
        let file = "waves: [dev, prod]\ncanaries: 2\nclusters:\n  - {name: d-0, plan: small, wave: dev, workers: 9}\n  - {name: d-1, plan: small, wave: dev}\n  - {name: d-2, plan: small, wave: dev}\n  - {name: d-3, plan: small, wave: dev}\n  - {name: p-1, plan: small, wave: prod}\n";
        let current =
            [ok("d-0", TARGET, 3), ok("d-1", OLD, 3), ok("d-2", OLD, 3), ok("d-3", OLD, 3), ok("p-1", OLD, 3)];
        let r = run(file, &current, &opts(false, 1, false)).unwrap();
        assert_eq!(
            jobs(&r),
            [
                "dev: d-1 upgrade (canary)",
                "dev: d-2 upgrade (canary)",
                "dev: d-0 resize 3 → 9 workers",
                "dev: d-3 upgrade",
                "prod: p-1 upgrade"
            ]
        );
        let named = file.replace("canaries: 2", "canaries: [p-1, d-3]");
        let r = run(&named, &current, &opts(false, 1, false)).unwrap();
        assert_eq!(jobs(&r)[0], "dev: d-3 upgrade (canary)");
        assert_eq!(jobs(&r)[4], "prod: p-1 upgrade (canary)");
    }

    #[test]
    fn old_vms_are_repaved_only_when_nothing_else_is_due_and_a_running_repave_is_adopted() {
        let file = "clusters:\n  - {name: a, plan: small}\n  - {name: b, plan: small}\n  - {name: c, plan: small}\n  - {name: d, plan: small, hold: true}\n";
        let repave = Change::Repave { created_before: Some("2026-05-18T00:00:00Z".into()) };
        let due = |c: Current| Current { repave: Some(repave.clone()), ..c };
        let current = [
            due(ok("a", TARGET, 3)),
            due(ok("b", OLD, 3)),
            Current { repave_running: true, ..ok("c", TARGET, 3) },
            due(ok("d", TARGET, 3)),
        ];
        let r = run(file, &current, &opts(false, 1, false)).unwrap();
        assert_eq!(
            jobs(&r),
            [
                "all: c repave (every VM) (adopt)",
                "all: a repave (VMs created before 2026-05-18T00:00:00Z)",
                "all: b upgrade"
            ]
        );
        assert_eq!(skips(&r), ["d: held (`hold: true`): never touched"]);
    }

    #[test]
    fn plan_differences_are_notes_not_actions() {
        let file = "clusters:\n  - {name: a, plan: large}\n";
        let r = run(file, &[ok("a", TARGET, 3)], &opts(false, 1, false)).unwrap();
        assert!(jobs(&r).is_empty());
        assert!(r.notes[0].contains("plan is small on the platform but large in the file"), "{:?}", r.notes);
    }

    #[test]
    fn an_empty_file_with_prune_deletes_within_the_cap_only() {
        let current = [ok("a", TARGET, 3), ok("b", TARGET, 3)];
        let r = run("clusters: []\n", &current, &opts(true, 1, false)).unwrap();
        assert_eq!(jobs(&r), ["prune: a delete"]);
    }

    #[test]
    fn a_stemcell_target_upgrades_current_clusters_on_older_stemcells_unless_pinned_elsewhere() {
        let on = |name: &str, version: &str, stemcell: &str| {
            let mut c = ok(name, version, 3);
            c.state.stemcell = Some(stemcell.into());
            c
        };
        let file = "waves: [dev, prod]\nclusters:\n  - {name: d-1, plan: small, wave: dev}\n  - {name: d-2, plan: small, wave: dev}\n  - {name: p-1, plan: small, wave: prod}\n  - {name: p-pin, plan: small, wave: prod, version: 1.18.5-build.10}\n";
        let current = [
            on("d-1", TARGET, "1.445"),
            on("d-2", TARGET, "1.510"),
            on("p-1", OLD, "1.445"),
            on("p-pin", OLD, "1.445"),
        ];
        let options = Options { target_stemcell: Some("1.506".into()), ..opts(false, 1, false) };
        let r = run(file, &current, &options).unwrap();
        assert_eq!(jobs(&r), ["dev: d-1 upgrade", "prod: p-1 upgrade"]);
        let moves: Vec<_> = r.plan.planned().map(|p| p.stemcell.clone()).collect();
        let moved = Some(("1.445".to_string(), "1.506".to_string()));
        assert_eq!(moves, [moved.clone(), moved]);
        assert_eq!(
            skips(&r),
            [
                "d-2: on stemcell 1.510, newer than the target stemcell 1.506: not downgraded",
                "p-pin: pinned at 1.18.5-build.10"
            ]
        );
    }
}
