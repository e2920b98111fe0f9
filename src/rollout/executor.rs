//! The rollout executor: runs a [`Plan`] against any [`Platform`] — adopted upgrades first, canaries one
//! at a time, then at most `max_in_flight` clusters at once — with a per-cluster timeout, health gates,
//! `on_failure` handling and a progress line per state change.
//!
//! Everything runs in one task (a `FuturesUnordered` of per-cluster futures), so there is no shared
//! mutable state and no lock; the platform is only ever asked through the trait, so unit tests drive it
//! with an in-memory fake and tests of the real thing use repave-sim.
//!
//! Safety rules, in order of importance: never start a cluster twice (before re-sending a start whose
//! outcome is unknown, re-read the cluster and adopt an upgrade that is already running); a 409/busy
//! answer is waited on, never taken for success; a canary failure stops everything; after a failure
//! with `on_failure: stop` nothing new starts, but clusters already upgrading are awaited.

use super::plan::{Action, Change, ClusterState, Phase, Plan, Planned};
use crate::redact::Log;
use anyhow::{Result, bail};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

/// The answer to a start request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    Accepted,
    /// Another action holds the cluster (409): wait and ask again.
    Busy(String),
    /// A definite refusal (4xx other than 409): retrying will not help.
    Rejected(String),
}

/// The platform operations a rollout needs. An `Err` from `start` means "outcome unknown" (the
/// request may or may not have reached the platform); the executor re-reads the cluster before trying
/// again. Futures need not be `Send`: the executor never spawns.
pub(crate) trait Platform {
    /// Sends the request that starts `change` on cluster `name`.
    fn start(&self, name: &str, change: &Change) -> impl Future<Output = Result<Start>>;
    /// The cluster as the platform reports it now; `None` when it does not exist (not created yet, or
    /// deleted).
    fn status(&self, name: &str) -> impl Future<Output = Result<Option<ClusterState>>>;
    /// The cluster as seen while `change` runs on it. A change the platform tracks elsewhere than in the
    /// cluster's own state (a repave is a director task) is reported under [`Change::action_name`], so the
    /// engine's rules (adopt, wait, fail) apply to it unchanged. Default: [`Platform::status`].
    fn status_of(&self, name: &str, change: &Change) -> impl Future<Output = Result<Option<ClusterState>>> {
        let _ = change;
        self.status(name)
    }
    /// Extra health checks after the platform reports success (e.g. Kubernetes `/readyz`); `Ok` when
    /// none are configured. Retried until `Settings::health_timeout`.
    fn health(&self, name: &str) -> impl Future<Output = Result<()>>;
    /// Whether a change the platform reports as finished reached everything the plan asked for beyond
    /// what [`ClusterState`] shows (the fleet checks the stemcell of the cluster's BOSH deployment);
    /// `Err` says what the cluster ended on. Default: nothing more to check.
    fn verify(&self, name: &str, change: &Change) -> impl Future<Output = Result<()>> {
        let _ = (name, change);
        async { Ok(()) }
    }
}

/// What the rollout does after a cluster fails (`params.on_failure`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnFailure {
    /// Start nothing new after a failure; wait for clusters already upgrading.
    #[default]
    Stop,
    /// Keep going; the put still fails at the end.
    Continue,
}

/// How the executor runs a plan. [`Settings::default`] is the one place the rollout defaults are
/// written down; `params` and fleet files only override them.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub max_in_flight: NonZeroUsize,
    pub on_failure: OnFailure,
    pub cluster_timeout: Duration,
    pub poll_interval: Duration,
    pub health_timeout: Duration,
    pub soak: Option<Duration>,
    /// Wait this long after a wave succeeded before the next wave starts (GKE's soak between stages).
    pub wave_soak: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_in_flight: NonZeroUsize::MIN,
            on_failure: OnFailure::Stop,
            cluster_timeout: Duration::from_secs(4 * 3600),
            poll_interval: Duration::from_secs(15),
            health_timeout: Duration::from_secs(300),
            soak: None,
            wave_soak: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed(String),
    NotStarted(String),
}

#[derive(Clone, Debug)]
pub(crate) struct ClusterReport {
    pub name: String,
    /// What the job was to do (`upgrade`, `create (small)`, …).
    pub what: String,
    pub canary: bool,
    pub adopted: bool,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

impl ClusterReport {
    pub(crate) fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }
}

/// Why a rollout stopped starting clusters before its plan was done. Callers decide on the variant
/// (a closed window is not a failure); the text is for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Halt {
    /// A canary failed: nothing else starts, whatever `on_failure` says.
    CanaryFailed { cluster: String },
    /// A cluster failed under `on_failure: stop`.
    Failed { cluster: String },
    /// A wave ended with a failure (under `on_failure: continue`): later waves do not start.
    WaveFailed { wave: String, cluster: String },
    /// The start gate refused, e.g. because the maintenance window closed; its reason.
    GateClosed(String),
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Halt::CanaryFailed { cluster } => write!(f, "canary {cluster} failed"),
            Halt::Failed { cluster } => write!(f, "{cluster} failed and on_failure is stop"),
            Halt::WaveFailed { wave, cluster } => write!(f, "wave `{wave}` had a failure ({cluster})"),
            Halt::GateClosed(reason) => f.write_str(reason),
        }
    }
}

/// What happened to every planned cluster, in completion order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Report {
    pub clusters: Vec<ClusterReport>,
    /// Why the rollout stopped early, if it did.
    pub halted: Option<Halt>,
}

impl Report {
    /// True only if every planned cluster succeeded.
    #[cfg(test)]
    pub(crate) fn succeeded(&self) -> bool {
        self.clusters.iter().all(|c| c.outcome == Outcome::Succeeded)
    }

    pub(crate) fn names(&self, pick: impl Fn(&Outcome) -> bool) -> Vec<String> {
        self.clusters.iter().filter(|c| pick(&c.outcome)).map(|c| c.name.clone()).collect()
    }
}

/// Decides before every new start whether starting is still allowed (`Err(reason)` stops new starts);
/// a maintenance window closing mid-run is the intended use.
pub(crate) type StartGate<'a> = Box<dyn Fn() -> std::result::Result<(), String> + 'a>;

pub(crate) struct Executor<'a, P> {
    platform: &'a P,
    settings: Settings,
    target: String,
    log: Log,
    began: Instant,
    gate: Option<StartGate<'a>>,
}

impl<'a, P: Platform> Executor<'a, P> {
    pub(crate) fn new(platform: &'a P, settings: Settings, target: &str, log: Log) -> Self {
        Executor { platform, settings, target: target.to_string(), log, began: Instant::now(), gate: None }
    }

    pub(crate) fn with_start_gate(mut self, gate: StartGate<'a>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Runs the waves in order, with the wave soak between waves that have work; a failed wave stops
    /// the later ones.
    pub(crate) async fn run(&self, plan: &Plan) -> Report {
        let mut report = Report::default();
        let mut previous: Option<&str> = None;
        for wave in plan.waves.iter().filter(|w| w.all().next().is_some()) {
            if let Some(halt) = &report.halted {
                let reason = halt.to_string();
                report.clusters.extend(wave.all().map(|p| self.not_started(p, &reason)));
                continue;
            }
            if let (Some(done), Some(soak)) = (previous, self.settings.wave_soak) {
                let how_long = crate::rollout::human(soak);
                self.progress(
                    "rollout",
                    &format!("wave `{done}` done; soaking {how_long} before wave `{}`", wave.name),
                );
                sleep(soak).await;
            }
            previous = Some(&wave.name);
            self.progress("rollout", &format!("wave `{}` begins", wave.name));
            // Adopted upgrades are already running: awaiting them starts nothing, so no limit or gate applies.
            self.run_parallel(&wave.adopted, usize::MAX, false, &mut report).await;
            self.run_canaries(&wave.canaries, &mut report).await;
            self.run_parallel(&wave.clusters, self.settings.max_in_flight.get(), true, &mut report).await;
            if report.halted.is_none()
                && let Some(failed) = report.clusters.iter().find(|c| c.failed())
            {
                report.halted = Some(Halt::WaveFailed { wave: wave.name.clone(), cluster: failed.name.clone() });
            }
        }
        report
    }

    async fn run_canaries(&self, canaries: &[Planned], report: &mut Report) {
        for canary in canaries {
            if report.halted.is_none() {
                report.halted = self.start_refused();
            }
            if let Some(halt) = &report.halted {
                report.clusters.push(self.not_started(canary, &halt.to_string()));
                continue;
            }
            let result = self.job(canary).await;
            if result.failed() {
                let halt = Halt::CanaryFailed { cluster: canary.name.clone() };
                self.progress("rollout", &format!("{halt}: stopping, no other cluster will start"));
                report.halted = Some(halt);
            }
            report.clusters.push(result);
        }
    }

    /// Keeps up to `limit` jobs in flight; after a failure under `on_failure: stop` (or a halt from an
    /// earlier phase) starts nothing new but awaits the running ones.
    async fn run_parallel(&self, list: &[Planned], limit: usize, gated: bool, report: &mut Report) {
        let mut queue = list.iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < limit && queue.len() > 0 {
                if gated && report.halted.is_none() {
                    report.halted = self.start_refused();
                }
                if report.halted.is_some() {
                    break;
                }
                let Some(planned) = queue.next() else { break };
                running.push(self.job(planned));
            }
            let Some(first) = running.next().await else { break };
            // Take every job that has already finished before deciding to start more: when a success
            // and a failure land in the same poll round, the freed slot must not go to a new cluster.
            let mut finished = vec![first];
            while let Some(Some(more)) = running.next().now_or_never() {
                finished.push(more);
            }
            for result in finished {
                self.record(result, report);
            }
        }
        let reason = report.halted.as_ref().map(Halt::to_string).unwrap_or_default();
        report.clusters.extend(queue.map(|p| self.not_started(p, &reason)));
    }

    /// Files one finished cluster; a failure under `on_failure: stop` halts new starts.
    fn record(&self, result: ClusterReport, report: &mut Report) {
        if result.failed() && self.settings.on_failure == OnFailure::Stop && report.halted.is_none() {
            let halt = Halt::Failed { cluster: result.name.clone() };
            self.progress("rollout", &format!("{halt}: no new cluster will start; waiting for running ones"));
            report.halted = Some(halt);
        }
        report.clusters.push(result);
    }

    fn start_refused(&self) -> Option<Halt> {
        let reason = self.gate.as_ref()?().err()?;
        self.progress("rollout", &format!("no new cluster starts: {reason}"));
        Some(Halt::GateClosed(reason))
    }

    fn not_started(&self, planned: &Planned, reason: &str) -> ClusterReport {
        ClusterReport {
            name: planned.name.clone(),
            what: planned.describe(),
            canary: planned.canary,
            adopted: planned.action == Action::Adopt,
            outcome: Outcome::NotStarted(reason.to_string()),
            elapsed: Duration::ZERO,
        }
    }

    /// One cluster from start (or adoption) to healthy, bounded by `cluster_timeout`.
    async fn job(&self, planned: &Planned) -> ClusterReport {
        let started = Instant::now();
        let limit = self.settings.cluster_timeout;
        let outcome = match timeout(limit, self.drive(planned)).await {
            Ok(Ok(())) => Outcome::Succeeded,
            Ok(Err(e)) => Outcome::Failed(format!("{e:#}")),
            Err(_) => Outcome::Failed(format!(
                "timed out after {}; the upgrade may still be running on the platform",
                crate::rollout::human(limit)
            )),
        };
        match &outcome {
            Outcome::Succeeded if planned.upgrades() => {
                self.progress(&planned.name, &format!("done, at {}", self.target))
            }
            Outcome::Succeeded => self.progress(&planned.name, &format!("done: {}", planned.describe())),
            Outcome::Failed(why) => self.progress(&planned.name, &format!("FAILED: {why}")),
            Outcome::NotStarted(_) => {}
        }
        ClusterReport {
            name: planned.name.clone(),
            what: planned.describe(),
            canary: planned.canary,
            adopted: planned.action == Action::Adopt,
            outcome,
            elapsed: started.elapsed(),
        }
    }

    async fn drive(&self, planned: &Planned) -> Result<()> {
        let name = &planned.name;
        for (index, change) in planned.changes.iter().enumerate() {
            if index == 0 && planned.action == Action::Adopt {
                let what = change.describe();
                self.progress(name, &format!("{what} already in progress: adopting it (not starting another)"));
            } else {
                self.start(name, change, planned.canary).await?;
            }
            self.await_change(name, change).await?;
            if change.disturbs_running_cluster() {
                self.health_gate(name, change).await?;
            }
        }
        Ok(())
    }

    /// Sends the start request until accepted. Busy and unknown outcomes are waited on; before asking
    /// again the cluster is re-read, so a change that did start (or that someone else started) is
    /// adopted instead of being started a second time.
    async fn start(&self, name: &str, change: &Change, canary: bool) -> Result<()> {
        let mut last_note = String::new();
        loop {
            let note = match self.platform.start(name, change).await {
                Ok(Start::Accepted) => {
                    let what = change.describe();
                    self.progress(
                        name,
                        &if canary { format!("canary {what} started") } else { format!("{what} started") },
                    );
                    return Ok(());
                }
                Ok(Start::Rejected(why)) => bail!("the platform refused to {}: {why}", change.describe()),
                Ok(Start::Busy(why)) => format!("busy, waiting: {why}"),
                Err(e) => format!("start request failed, re-reading before trying again: {e:#}"),
            };
            if note != last_note {
                self.progress(name, &note);
                last_note = note;
            }
            sleep(self.settings.poll_interval).await;
            // A stemcell-only upgrade leaves the TKGI version as it was, so "UPGRADE succeeded at the
            // target" may be the previous upgrade: only a running action or a verified result counts.
            if let Ok(state) = self.platform.status_of(name, change).await
                && already_started(change, state.as_ref(), &self.target)
                && (state.as_ref().is_some_and(|s| s.phase() == Phase::Running)
                    || self.platform.verify(name, change).await.is_ok())
            {
                self.progress(name, &format!("{} is already under way: adopting it", change.describe()));
                return Ok(());
            }
        }
    }

    /// Polls until the change ends and [`Platform::verify`] accepts it; logs each state change.
    ///
    /// A change that reads as finished but fails verification before it was ever seen running is
    /// taken for the platform still showing the previous action (a stemcell-only upgrade looks exactly
    /// like the last upgrade until the new one shows), so it is waited on, bounded by the cluster
    /// timeout; once seen running, a failed verification fails the job.
    async fn await_change(&self, name: &str, change: &Change) -> Result<()> {
        let mut last_seen = String::new();
        let mut seen_running = false;
        loop {
            let seen = match self.platform.status_of(name, change).await {
                Ok(state) => {
                    seen_running |= state.as_ref().is_some_and(|s| {
                        s.phase() == Phase::Running && s.last_action.eq_ignore_ascii_case(change.action_name())
                    });
                    let verdict = if finished(change, state.as_ref(), &self.target)? {
                        match self.platform.verify(name, change).await {
                            Ok(()) => return Ok(()),
                            Err(e) if seen_running => return Err(e),
                            Err(e) => Some(format!("{e:#}; waiting for this run's {} to show", change.describe())),
                        }
                    } else {
                        None
                    };
                    verdict.unwrap_or_else(|| {
                        state.map_or_else(
                            || "not listed by the platform".into(),
                            |s| format!("{} {}", s.last_action, s.last_action_state),
                        )
                    })
                }
                Err(e) => format!("cannot read the cluster (will keep trying): {e:#}"),
            };
            if seen != last_seen {
                self.progress(name, &seen);
                last_seen = seen;
            }
            sleep(self.settings.poll_interval).await;
        }
    }

    /// After an upgrade, repave or rotation: the platform's health checks (retried until `health_timeout`),
    /// then the soak, then one more read: the cluster must still report success (an upgrade: at the target).
    async fn health_gate(&self, name: &str, change: &Change) -> Result<()> {
        let deadline = Instant::now() + self.settings.health_timeout;
        while let Err(e) = self.platform.health(name).await {
            if Instant::now() >= deadline {
                return Err(e.context(format!(
                    "health checks still failing after {}",
                    crate::rollout::human(self.settings.health_timeout)
                )));
            }
            sleep(self.settings.poll_interval).await;
        }
        let Some(soak) = self.settings.soak else { return Ok(()) };
        self.progress(name, &format!("healthy; soaking for {}", crate::rollout::human(soak)));
        sleep(soak).await;
        let Some(state) = self.platform.status(name).await? else {
            bail!("after the soak the platform no longer lists the cluster");
        };
        // A repave or rotation leaves TKGI's own last action (the last upgrade) as it was: it must still read
        // succeeded; an upgrade must still read as this upgrade, at the target.
        let at_target = *change != Change::Upgrade || (state.is_upgrade() && state.version == self.target);
        if !(at_target && state.phase() == Phase::Succeeded) {
            bail!(
                "after the soak the cluster reads {} {} at {}",
                state.last_action,
                state.last_action_state,
                state.version
            );
        }
        Ok(())
    }

    fn progress(&self, who: &str, message: &str) {
        self.log.line(format!("[{:>8}] {who}: {message}", format!("{:.1}s", self.began.elapsed().as_secs_f64())));
    }
}

/// Whether a change whose start request had an unknown outcome (or met a 409) is in fact running or
/// done, so the job adopts it instead of sending it again.
pub(crate) fn already_started(change: &Change, state: Option<&ClusterState>, target: &str) -> bool {
    let Some(s) = state else { return *change == Change::Delete };
    let same_action = s.last_action.eq_ignore_ascii_case(change.action_name());
    match change {
        Change::Upgrade => same_action && (s.phase() == Phase::Running || s.version == target),
        // The cluster exists: our create (or an earlier one) reached the platform.
        Change::Create { .. } => true,
        Change::Resize { to, .. } => same_action && (s.phase() == Phase::Running || s.workers == Some(*to)),
        Change::Delete => same_action,
        // The platform reports a repave only for a task of this run or one still running: it did start.
        Change::Repave { .. } => same_action,
        // Read as ROTATE only after a start was sent: running, or finished with new certificates (the
        // caller verifies) means the lost request did arrive.
        Change::Rotate => same_action,
    }
}

/// Whether `change` has completed: `Ok(true)` done, `Ok(false)` keep waiting, `Err` it failed.
pub(crate) fn finished(change: &Change, state: Option<&ClusterState>, target: &str) -> Result<bool> {
    let Some(s) = state else {
        // Gone is success for a delete; for anything else the cluster may not be listed yet (create) or
        // be briefly invisible: keep waiting, bounded by the cluster timeout.
        return Ok(*change == Change::Delete);
    };
    if !s.last_action.eq_ignore_ascii_case(change.action_name()) {
        return Ok(false);
    }
    match s.phase() {
        Phase::Failed => bail!("{} {}: {}", s.last_action, s.last_action_state, s.description),
        Phase::Succeeded if *change == Change::Upgrade && s.version != target => bail!(
            "the platform reports UPGRADE succeeded, but the cluster is at {} instead of the target {target}",
            s.version
        ),
        Phase::Succeeded => Ok(*change != Change::Delete),
        Phase::Running | Phase::Unknown => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::plan::{Canaries, plan};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    const TARGET: &str = "2.0";

    /// An in-memory platform: upgrades take `duration` of (paused, auto-advancing) tokio time.
    struct Fake {
        state: Mutex<FakeState>,
        duration: Duration,
    }

    #[derive(Default)]
    struct FakeState {
        clusters: BTreeMap<String, (ClusterState, Option<Instant>)>,
        fail: Vec<String>,
        busy_answers: BTreeMap<String, u32>,
        lose_start_answer: Vec<String>,
        unhealthy: Vec<String>,
        /// Failing upgrades end at the normal duration instead of early.
        fail_late: bool,
        starts: BTreeMap<String, u32>,
        in_flight: usize,
        high_water: usize,
        /// After a start, the next N reads of these clusters still show the state before it.
        stale_reads: BTreeMap<String, u32>,
        stale: BTreeMap<String, (ClusterState, u32)>,
        /// `verify` fails an upgrade unless it completed in this run (the stemcell check).
        verify_upgrades: bool,
        upgraded: Vec<String>,
        /// Upgrades of these clusters succeed on the platform but land on the wrong stemcell.
        wrong_stemcell: Vec<String>,
    }

    impl Fake {
        fn new(names: &[&str], duration: Duration) -> Fake {
            let mut state = FakeState::default();
            for n in names {
                state.clusters.insert(n.to_string(), (cluster(n, "1.0", "CREATE", "succeeded"), None));
            }
            Fake { state: Mutex::new(state), duration }
        }

        fn with(self, edit: impl FnOnce(&mut FakeState)) -> Fake {
            edit(&mut self.state.lock().unwrap());
            self
        }

        fn advance(s: &mut FakeState) {
            let now = Instant::now();
            let fail = s.fail.clone();
            let mut finished = 0;
            let mut upgraded = Vec::new();
            for (name, (state, until)) in s.clusters.iter_mut() {
                if until.is_some_and(|u| u <= now) {
                    *until = None;
                    finished += 1;
                    if fail.contains(name) {
                        state.last_action_state = "failed".into();
                    } else {
                        state.last_action_state = "succeeded".into();
                        state.version = TARGET.into();
                        upgraded.push(name.clone());
                    }
                }
            }
            let wrong = s.wrong_stemcell.clone();
            s.upgraded.extend(upgraded.into_iter().filter(|n| !wrong.contains(n)));
            s.in_flight -= finished;
        }

        fn snapshot(&self) -> (BTreeMap<String, u32>, usize) {
            let s = self.state.lock().unwrap();
            (s.starts.clone(), s.high_water)
        }

        fn states(&self) -> Vec<ClusterState> {
            self.state.lock().unwrap().clusters.values().map(|(c, _)| c.clone()).collect()
        }
    }

    impl Platform for Fake {
        async fn start(&self, name: &str, change: &Change) -> Result<Start> {
            assert_eq!(change, &Change::Upgrade, "the fake platform only upgrades");
            let mut s = self.state.lock().unwrap();
            Fake::advance(&mut s);
            if let Some(n) = s.busy_answers.get_mut(name).filter(|n| **n > 0) {
                *n -= 1;
                return Ok(Start::Busy("409 another action is running".into()));
            }
            // Failures come back early, so a failure is seen while other upgrades still run.
            let failing = s.fail.iter().any(|n| n == name);
            let until = Instant::now() + if failing && !s.fail_late { self.duration / 2 } else { self.duration };
            let (state, finish) = s.clusters.get_mut(name).unwrap();
            if state.phase() == Phase::Running {
                return Ok(Start::Busy("409 upgrade in progress".into()));
            }
            let before = state.clone();
            state.last_action = "UPGRADE".into();
            state.last_action_state = "in progress".into();
            *finish = Some(until);
            *s.starts.entry(name.to_string()).or_default() += 1;
            if let Some(n) = s.stale_reads.get(name).copied() {
                s.stale.insert(name.to_string(), (before, n));
            }
            s.in_flight += 1;
            s.high_water = s.high_water.max(s.in_flight);
            if let Some(pos) = s.lose_start_answer.iter().position(|n| n == name) {
                s.lose_start_answer.remove(pos);
                bail!("connection reset");
            }
            Ok(Start::Accepted)
        }

        async fn status(&self, name: &str) -> Result<Option<ClusterState>> {
            let mut s = self.state.lock().unwrap();
            Fake::advance(&mut s);
            if let Some((before, left)) = s.stale.get_mut(name).filter(|(_, left)| *left > 0) {
                *left -= 1;
                return Ok(Some(before.clone()));
            }
            Ok(s.clusters.get(name).map(|c| c.0.clone()))
        }

        async fn verify(&self, name: &str, change: &Change) -> Result<()> {
            let s = self.state.lock().unwrap();
            if s.verify_upgrades && *change == Change::Upgrade && !s.upgraded.iter().any(|n| n == name) {
                bail!("{name} ended on stemcell 1.445");
            }
            Ok(())
        }

        async fn health(&self, name: &str) -> Result<()> {
            if self.state.lock().unwrap().unhealthy.iter().any(|n| n == name) {
                bail!("readyz: 500");
            }
            Ok(())
        }
    }

    fn cluster(name: &str, version: &str, action: &str, state: &str) -> ClusterState {
        ClusterState {
            name: name.into(),
            version: version.into(),
            last_action: action.into(),
            last_action_state: state.into(),
            description: "bosh task failed".into(),
            workers: None,
            stemcell: None,
        }
    }

    fn settings(max_in_flight: usize, on_failure: OnFailure) -> Settings {
        Settings {
            max_in_flight: NonZeroUsize::new(max_in_flight).expect("tests ask for at least 1"),
            on_failure,
            cluster_timeout: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(10),
            health_timeout: Duration::from_secs(60),
            soak: None,
            wave_soak: None,
        }
    }

    async fn roll(fake: &Fake, settings: Settings, canaries: Canaries) -> Report {
        let plan = plan(&fake.states(), TARGET, None, false, &canaries).unwrap();
        Executor::new(fake, settings, TARGET, Log::sink()).run(&plan).await
    }

    const NAMES: [&str; 10] = ["c00", "c01", "c02", "c03", "c04", "c05", "c06", "c07", "c08", "c09"];

    #[tokio::test(start_paused = true)]
    async fn max_in_flight_is_reached_never_exceeded() {
        let fake = Fake::new(&NAMES, Duration::from_secs(600));
        let report = roll(&fake, settings(3, OnFailure::Stop), Canaries::Count(1)).await;
        assert!(report.succeeded(), "{report:?}");
        let (starts, high_water) = fake.snapshot();
        assert_eq!(high_water, 3);
        assert!(starts.values().all(|n| *n == 1) && starts.len() == 10);
        assert_eq!(report.clusters[0].name, "c00");
        assert!(report.clusters[0].canary);
    }

    #[tokio::test(start_paused = true)]
    async fn canary_failure_stops_everything_even_with_continue() {
        let fake = Fake::new(&NAMES, Duration::from_secs(60)).with(|s| s.fail.push("c00".into()));
        let report = roll(&fake, settings(4, OnFailure::Continue), Canaries::Count(2)).await;
        assert!(!report.succeeded());
        assert_eq!(fake.snapshot().0.keys().collect::<Vec<_>>(), ["c00"]);
        assert_eq!(report.names(|o| matches!(o, Outcome::NotStarted(_))).len(), 9);
        assert_eq!(report.halted, Some(Halt::CanaryFailed { cluster: "c00".into() }));
        assert!(
            report
                .clusters
                .iter()
                .all(|c| c.name == "c00" || c.outcome == Outcome::NotStarted("canary c00 failed".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_awaits_running_and_starts_nothing_new() {
        // c01 fails fast while c00 is still running: c00 is awaited and succeeds; c02.. never start.
        let fake = Fake::new(&NAMES, Duration::from_secs(60)).with(|s| s.fail.push("c01".into()));
        let report = roll(&fake, settings(2, OnFailure::Stop), Canaries::Count(0)).await;
        assert_eq!(report.names(|o| *o == Outcome::Succeeded), ["c00"]);
        assert_eq!(report.names(|o| matches!(o, Outcome::Failed(_))), ["c01"]);
        assert_eq!(fake.snapshot().0.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_seen_in_the_same_round_as_a_success_still_stops() {
        // c00 succeeds and c01 fails at the same instant; the slot c00 frees must not go to c02.
        let fake = Fake::new(&NAMES, Duration::from_secs(60)).with(|s| {
            s.fail.push("c01".into());
            s.fail_late = true;
        });
        let report = roll(&fake, settings(2, OnFailure::Stop), Canaries::Count(0)).await;
        assert_eq!(report.names(|o| matches!(o, Outcome::Failed(_))), ["c01"]);
        assert_eq!(fake.snapshot().0.len(), 2, "{report:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn continue_finishes_the_rest_and_reports_failure() {
        let fake = Fake::new(&NAMES, Duration::from_secs(60)).with(|s| s.fail.push("c03".into()));
        let report = roll(&fake, settings(2, OnFailure::Continue), Canaries::Count(1)).await;
        assert!(!report.succeeded());
        assert_eq!(report.names(|o| matches!(o, Outcome::Failed(_))), ["c03"]);
        assert_eq!(report.names(|o| *o == Outcome::Succeeded).len(), 9);
        assert_eq!(fake.snapshot().0.len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn adopted_upgrades_are_awaited_not_restarted() {
        let fake = Fake::new(&NAMES[..3], Duration::from_secs(60)).with(|s| {
            let entry = s.clusters.get_mut("c01").unwrap();
            entry.0 = cluster("c01", "1.0", "UPGRADE", "in progress");
            entry.1 = Some(Instant::now() + Duration::from_secs(30));
            s.in_flight = 1;
        });
        let report = roll(&fake, settings(1, OnFailure::Stop), Canaries::Count(1)).await;
        assert!(report.succeeded(), "{report:?}");
        let (starts, high_water) = fake.snapshot();
        assert_eq!(starts.get("c01"), None, "never started twice");
        assert_eq!(high_water, 1, "the canary waited for the adopted upgrade");
        assert!(report.clusters.iter().any(|c| c.name == "c01" && c.adopted));
    }

    #[tokio::test(start_paused = true)]
    async fn busy_is_waited_on_and_a_lost_answer_is_adopted() {
        let fake = Fake::new(&NAMES[..2], Duration::from_secs(60)).with(|s| {
            s.busy_answers.insert("c00".into(), 3);
            s.lose_start_answer.push("c01".into());
        });
        let report = roll(&fake, settings(2, OnFailure::Stop), Canaries::Count(0)).await;
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(fake.snapshot().0.values().copied().collect::<Vec<_>>(), [1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn per_cluster_timeout_fails_the_cluster() {
        let fake = Fake::new(&NAMES[..1], Duration::from_secs(7200));
        let report = roll(&fake, settings(1, OnFailure::Stop), Canaries::Count(0)).await;
        let Outcome::Failed(why) = &report.clusters[0].outcome else { panic!("{report:?}") };
        assert!(why.contains("timed out after 1h"), "{why}");
    }

    #[tokio::test(start_paused = true)]
    async fn unhealthy_after_success_fails_after_health_timeout() {
        let fake = Fake::new(&NAMES[..2], Duration::from_secs(60)).with(|s| s.unhealthy.push("c00".into()));
        let mut s = settings(1, OnFailure::Continue);
        s.soak = Some(Duration::from_secs(120));
        let report = roll(&fake, s, Canaries::Count(0)).await;
        assert_eq!(report.names(|o| *o == Outcome::Succeeded), ["c01"]);
        let Outcome::Failed(why) = &report.clusters[0].outcome else { panic!("{report:?}") };
        assert!(why.contains("health checks still failing") && why.contains("readyz"), "{why}");
        assert!(report.clusters[1].elapsed >= Duration::from_secs(180), "soak waited");
    }

    #[tokio::test(start_paused = true)]
    async fn start_gate_stops_new_starts() {
        let fake = Fake::new(&NAMES[..4], Duration::from_secs(60));
        let plan = plan(&fake.states(), TARGET, None, false, &Canaries::Count(0)).unwrap();
        let calls = std::cell::Cell::new(0);
        let gate: StartGate = Box::new(|| {
            calls.set(calls.get() + 1);
            if calls.get() > 2 { Err("window closed".into()) } else { Ok(()) }
        });
        let report = Executor::new(&fake, settings(1, OnFailure::Stop), TARGET, Log::sink())
            .with_start_gate(gate)
            .run(&plan)
            .await;
        assert_eq!(report.names(|o| *o == Outcome::Succeeded).len(), 2);
        assert_eq!(report.halted, Some(Halt::GateClosed("window closed".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_succeeded_read_is_not_taken_for_a_stemcell_only_upgrade() {
        // At the target TKGI version after an earlier upgrade: right after the start, the platform still
        // shows that earlier `UPGRADE succeeded` twice. Only the verified, new upgrade may count as done.
        let fake = Fake::new(&NAMES[..1], Duration::from_secs(600)).with(|s| {
            s.clusters.get_mut("c00").unwrap().0 = cluster("c00", TARGET, "UPGRADE", "succeeded");
            s.stale_reads.insert("c00".into(), 2);
            s.verify_upgrades = true;
        });
        let states: Vec<ClusterState> =
            fake.states().into_iter().map(|c| ClusterState { stemcell: Some("1.445".into()), ..c }).collect();
        let plan = plan(&states, TARGET, Some("1.506"), false, &Canaries::Count(0)).unwrap();
        let report = Executor::new(&fake, settings(1, OnFailure::Stop), TARGET, Log::sink()).run(&plan).await;
        assert!(report.succeeded(), "{report:?}");
        assert!(report.clusters[0].elapsed >= Duration::from_secs(600), "waited for the real upgrade");
        assert_eq!(fake.snapshot().0.get("c00"), Some(&1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_upgrade_seen_running_that_fails_verification_fails_promptly() {
        let fake = Fake::new(&NAMES[..2], Duration::from_secs(60)).with(|s| {
            s.verify_upgrades = true;
            s.wrong_stemcell.push("c00".into());
        });
        let report = roll(&fake, settings(1, OnFailure::Continue), Canaries::Count(0)).await;
        assert_eq!(report.names(|o| *o == Outcome::Succeeded), ["c01"], "{report:?}");
        let Outcome::Failed(why) = &report.clusters[0].outcome else { panic!("{report:?}") };
        assert!(why.contains("ended on stemcell 1.445"), "{why}");
        assert!(report.clusters[0].elapsed < Duration::from_secs(120), "failed when seen, not at the timeout");
    }
}
