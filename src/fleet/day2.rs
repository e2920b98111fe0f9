//! When a day-2 operation is due, as pure functions of what was observed: which clusters a repave
//! recreates (all selected, or with `max_vm_age` those whose oldest VM is older), which a rotation
//! renews (all selected, or with `warn_within` those with a certificate expiring that soon), and the
//! counts `check` reports (`repave_due`, `certs_expiring`), computed the same way so a put's version is
//! byte for byte what `check` reports after it.
//!
//! A repave passes the director `recreate_vms_created_before` = now − `max_vm_age` where the director
//! reads it: a rerun, or a repeated run, recreates only VMs that are still old. It never touches
//! stemcell or releases (an empty body reuses the deployment's stored manifest; docs/facts/bosh-director.md).

use super::Observed;
use crate::clients::director::CertificateExpiry;
use crate::rollout::human;
use crate::rollout::plan::{
    Action, Canaries, Change, Phase, Plan, PlanKind, Planned, SkipReason, check_canaries, one_wave,
};
use anyhow::Result;
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::time::Duration;

/// What decides a repave.
#[derive(Clone, Copy, Debug)]
pub(super) struct RepaveRules {
    /// Only clusters whose oldest VM is older than this; every cluster when `None`.
    pub max_vm_age: Option<Duration>,
    pub now: Timestamp,
    /// The director reads `recreate_vms_created_before` (v282.1.3 and later).
    pub cutoff_supported: bool,
}

/// The repave plan over the selected clusters: one wave, canaries as for upgrades; a repave an earlier
/// build left running (`running`: cluster → task) is adopted, never started again.
pub(super) fn repave_plan(
    fleet: &[Observed],
    running: &HashMap<String, u64>,
    rules: RepaveRules,
    canaries: &Canaries,
) -> Result<Plan> {
    let sorted = sorted(fleet);
    check_canaries(canaries, sorted.iter().map(|o| o.cluster.name.as_str()))?;
    let (mut adopted, mut to_start, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for o in sorted {
        if running.contains_key(&o.cluster.name) {
            adopted.push(Planned { action: Action::Adopt, ..job(o, Change::Repave { created_before: None }) });
            continue;
        }
        match decide_repave(o, rules) {
            Ok(change) => to_start.push(job(o, change)),
            Err(reason) => skipped.push((o.cluster.name.clone(), reason)),
        }
    }
    let waves = vec![one_wave(adopted, to_start, canaries)];
    Ok(Plan { kind: PlanKind::Repave, waves, skipped, ..Plan::default() })
}

/// The repave a cluster needs under `rules`, or why it needs none.
pub(super) fn decide_repave(o: &Observed, rules: RepaveRules) -> Result<Change, SkipReason> {
    day2_ready(o)?;
    let Some(max) = rules.max_vm_age else { return Ok(Change::Repave { created_before: None }) };
    if !repave_due(o, max, rules.now) {
        let oldest = o.facts.vms.as_ref().and_then(|v| v.oldest);
        let oldest = oldest.map_or_else(|| "unknown".to_string(), |t| days(age(t, rules.now)));
        return Err(SkipReason::VmsYoung { oldest, max: days(max) });
    }
    let cutoff = rules.cutoff_supported.then(|| rfc3339(before(rules.now, max)));
    Ok(Change::Repave { created_before: cutoff })
}

/// The rotation plan: clusters at the platform's TKGI version (`target`) with a certificate expiring
/// within `within` (every listed one when `None`).
pub(super) fn rotate_plan(
    fleet: &[Observed],
    target: &str,
    within: Option<Duration>,
    now: Timestamp,
    canaries: &Canaries,
) -> Result<Plan> {
    let sorted = sorted(fleet);
    check_canaries(canaries, sorted.iter().map(|o| o.cluster.name.as_str()))?;
    let (mut to_start, mut skipped) = (Vec::new(), Vec::new());
    for o in sorted {
        match decide_rotate(o, target, within, now) {
            Ok(()) => to_start.push(job(o, Change::Rotate)),
            Err(reason) => skipped.push((o.cluster.name.clone(), reason)),
        }
    }
    let waves = vec![one_wave(Vec::new(), to_start, canaries)];
    Ok(Plan { kind: PlanKind::Rotate, target: target.to_string(), waves, skipped, ..Plan::default() })
}

fn decide_rotate(o: &Observed, target: &str, within: Option<Duration>, now: Timestamp) -> Result<(), SkipReason> {
    day2_ready(o)?;
    if o.cluster.pks_version != target {
        return Err(SkipReason::NotUpgraded { version: o.cluster.pks_version.clone(), target: target.into() });
    }
    let Some(within) = within else { return Ok(()) };
    let soonest = o.facts.certificates.as_deref().and_then(soonest);
    match soonest {
        Some(c) if expires_within(c, within, now) => Ok(()),
        Some(c) => Err(SkipReason::CertificatesNotDue { soonest: expiry_text(c), within: days(within) }),
        None => Err(SkipReason::CertificatesNotDue { soonest: "never (none listed)".into(), within: days(within) }),
    }
}

/// What every day-2 operation needs of a cluster: idle, not failed, and a deployment on the director.
fn day2_ready(o: &Observed) -> Result<(), SkipReason> {
    let c = &o.cluster;
    let state = super::state_of(c);
    match state.phase() {
        Phase::Running => return Err(SkipReason::Busy { action: c.last_action.clone() }),
        Phase::Failed => return Err(SkipReason::LastActionFailed { action: c.last_action.clone() }),
        Phase::Unknown => return Err(SkipReason::UnknownState { state: c.last_action_state.clone() }),
        Phase::Succeeded => {}
    }
    if o.deployment.is_none() {
        return Err(SkipReason::NoDeployment);
    }
    Ok(())
}

fn job(o: &Observed, change: Change) -> Planned {
    Planned {
        name: o.cluster.name.clone(),
        action: Action::Start,
        canary: false,
        from_version: o.cluster.pks_version.clone(),
        stemcell: None,
        changes: vec![change],
    }
}

fn sorted(fleet: &[Observed]) -> Vec<&Observed> {
    let mut sorted: Vec<&Observed> = fleet.iter().collect();
    sorted.sort_by(|a, b| a.cluster.name.cmp(&b.cluster.name));
    sorted
}

/// `check`'s count: the oldest VM is older than `max` (the same rule as [`decide_repave`]).
pub(super) fn repave_due(o: &Observed, max: Duration, now: Timestamp) -> bool {
    o.facts.vms.as_ref().and_then(|v| v.oldest).is_some_and(|t| age(t, now) > max)
}

/// `check`'s count: a certificate expires within `within` (expired ones included).
pub(super) fn certs_expiring(o: &Observed, within: Duration, now: Timestamp) -> bool {
    o.facts.certificates.as_deref().and_then(soonest).is_some_and(|c| expires_within(c, within, now))
}

/// The certificate that expires first (by `expiry_date`; `days_left` when a date does not parse).
pub(super) fn soonest(certificates: &[CertificateExpiry]) -> Option<&CertificateExpiry> {
    certificates.iter().min_by_key(|c| expiry(c).map_or(c.days_left.saturating_mul(86_400), |t| t.as_second()))
}

pub(super) fn expires_within(c: &CertificateExpiry, within: Duration, now: Timestamp) -> bool {
    match expiry(c) {
        Some(t) => t < after(now, within),
        None => c.days_left.saturating_mul(86_400) < i64::try_from(within.as_secs()).unwrap_or(i64::MAX),
    }
}

/// Already expired (the pre-check refuses to change a cluster with one).
pub(super) fn expired(c: &CertificateExpiry, now: Timestamp) -> bool {
    expiry(c).map_or(c.days_left < 0, |t| t <= now)
}

fn expiry(c: &CertificateExpiry) -> Option<Timestamp> {
    c.expiry_date.parse().ok()
}

/// `in 12 days (2026-06-01)`, `3 days ago (…)`: the director's floored `days_left` and its date.
pub(super) fn expiry_text(c: &CertificateExpiry) -> String {
    let date = c.expiry_date.split('T').next().unwrap_or(&c.expiry_date);
    match c.days_left {
        d if d < 0 => format!("{} days ago ({date})", -d),
        d => format!("in {d} days ({date})"),
    }
}

/// How long ago `t` was (zero for a time in the future).
pub(super) fn age(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(t)).unwrap_or(Duration::ZERO)
}

fn before(now: Timestamp, d: Duration) -> Timestamp {
    now.saturating_sub(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)).unwrap_or(now)
}

fn after(now: Timestamp, d: Duration) -> Timestamp {
    now.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)).unwrap_or(now)
}

/// RFC 3339 in whole seconds, as the director writes times.
fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second()).unwrap_or(t).to_string()
}

/// An age for people: `20d`, `3d4h`, or the rollout's `5h12m` below a day.
pub(super) fn days(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 86_400, secs % 86_400 / 3600) {
        (0, _) => human(d),
        (n, 0) => format!("{n}d"),
        (n, h) => format!("{n}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::tkgi::Cluster;
    use crate::fleet::{Facts, Vms};

    const DAY: u64 = 86_400;

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    fn cluster(name: &str, age_days: Option<u64>, state: &str) -> Observed {
        let cluster = Cluster {
            name: name.into(),
            uuid: format!("uuid-{name}"),
            pks_version: "1.19".into(),
            last_action: "UPGRADE".into(),
            last_action_state: state.into(),
            ..Cluster::default()
        };
        let oldest = age_days.map(|d| before(now(), Duration::from_secs(d * DAY)));
        let facts = Facts { vms: Some(Vms { count: 4, oldest }), certificates: None };
        Observed { deployment: Some(format!("service-instance_uuid-{name}")), cluster, stemcell: None, facts }
    }

    fn rules(max_days: Option<u64>, cutoff: bool) -> RepaveRules {
        RepaveRules { max_vm_age: max_days.map(|d| Duration::from_secs(d * DAY)), now: now(), cutoff_supported: cutoff }
    }

    #[test]
    fn a_repave_is_due_when_the_oldest_vm_is_older_than_max_vm_age() {
        let old = cluster("old", Some(20), "succeeded");
        let young = cluster("young", Some(3), "succeeded");
        assert_eq!(
            decide_repave(&old, rules(Some(14), true)),
            Ok(Change::Repave { created_before: Some("2026-05-18T00:00:00Z".into()) })
        );
        assert_eq!(decide_repave(&old, rules(Some(14), false)), Ok(Change::Repave { created_before: None }));
        let why = decide_repave(&young, rules(Some(14), true)).unwrap_err();
        assert_eq!(why.to_string(), "oldest VM is 3d old, within max_vm_age 14d");
        assert_eq!(decide_repave(&young, rules(None, true)), Ok(Change::Repave { created_before: None }));
        assert!(repave_due(&old, Duration::from_secs(14 * DAY), now()));
        assert!(!repave_due(&young, Duration::from_secs(14 * DAY), now()));
    }

    #[test]
    fn busy_failed_and_unknown_clusters_are_not_repaved() {
        let busy = cluster("a", Some(20), "in progress");
        assert!(matches!(decide_repave(&busy, rules(None, true)), Err(SkipReason::Busy { .. })));
        let failed = cluster("b", Some(20), "failed");
        assert!(matches!(decide_repave(&failed, rules(None, true)), Err(SkipReason::LastActionFailed { .. })));
        let mut gone = cluster("c", Some(20), "succeeded");
        gone.deployment = None;
        assert_eq!(decide_repave(&gone, rules(None, true)), Err(SkipReason::NoDeployment));
    }

    #[test]
    fn a_running_repave_is_adopted_and_canaries_come_first() {
        let fleet = [
            cluster("a", Some(20), "succeeded"),
            cluster("b", Some(20), "succeeded"),
            cluster("c", Some(1), "succeeded"),
        ];
        let running = HashMap::from([("b".to_string(), 7)]);
        let plan = repave_plan(&fleet, &running, rules(Some(14), true), &Canaries::Count(1)).unwrap();
        let wave = &plan.waves[0];
        assert_eq!((wave.adopted[0].name.as_str(), wave.canaries[0].name.as_str()), ("b", "a"));
        assert!(wave.clusters.is_empty());
        assert_eq!(plan.skipped[0].0, "c");
        assert_eq!(plan.kind, PlanKind::Repave);
    }

    fn cert(days_left: i64) -> CertificateExpiry {
        let expiry = after(now(), Duration::from_secs(days_left.unsigned_abs() * DAY));
        let expiry =
            if days_left < 0 { before(now(), Duration::from_secs(days_left.unsigned_abs() * DAY)) } else { expiry };
        CertificateExpiry { name: format!("/p-bosh/x/c{days_left}"), expiry_date: rfc3339(expiry), days_left }
    }

    #[test]
    fn rotation_picks_clusters_expiring_within_the_threshold_at_the_platform_version() {
        let mut soon = cluster("soon", None, "succeeded");
        soon.facts.certificates = Some(vec![cert(400), cert(12)]);
        let mut later = cluster("later", None, "succeeded");
        later.facts.certificates = Some(vec![cert(400)]);
        let mut behind = cluster("behind", None, "succeeded");
        behind.cluster.pks_version = "1.18".into();
        let within = Some(Duration::from_secs(30 * DAY));
        let plan =
            rotate_plan(&[soon.clone(), later.clone(), behind], "1.19", within, now(), &Canaries::Count(0)).unwrap();
        assert_eq!(plan.planned().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["soon"]);
        let reasons: Vec<String> = plan.skipped.iter().map(|(n, r)| format!("{n}: {r}")).collect();
        assert!(reasons[0].starts_with("behind: at 1.18, not the platform's 1.19"), "{reasons:?}");
        assert!(reasons[1].contains("later: soonest certificate expires in 400 days"), "{reasons:?}");
        assert!(certs_expiring(&soon, Duration::from_secs(30 * DAY), now()));
        assert!(!certs_expiring(&later, Duration::from_secs(30 * DAY), now()));
        assert!(expired(&cert(-2), now()) && !expired(&cert(2), now()));
        assert_eq!(expiry_text(&cert(-2)), "2 days ago (2026-05-30)");
    }
}
