//! [`SimState`]: one simulator's services, built from its scenario and wired to each other, plus what tests may
//! observe of them. The only module that knows every service; the services know only the shared core and the
//! services below them (UAA ← bosh.io ← director ← TKGI ← deployments, Kubernetes, Ops Manager; release feeds
//! alone).

use std::sync::Arc;
use std::time::Instant;

use crate::scenario::Scenario;
use crate::services::boshio::{self, BoshIo};
use crate::services::deployments::Deployments;
use crate::services::director::Director;
use crate::services::k8s::Kubernetes;
use crate::services::opsman::{self, OpsMan};
use crate::services::releases;
use crate::services::tkgi::Fleet;
use crate::services::uaa::Uaa;
use crate::shared::Shared;
use crate::shared::blob::BlobDigests;
use crate::shared::counters::CounterGuard;
use crate::shared::faults::{ArmedFault, FaultRule};
use crate::shared::reqlog::RequestRecord;

/// The state of one running simulator, behind an `Arc`; every lock in it is a short `std::sync::Mutex` section
/// that never spans an `.await`.
pub struct SimState {
    /// The scenario it was seeded with.
    pub scenario: Scenario,
    /// When it started: `RequestRecord::at_ms` counts from here.
    pub start: Instant,
    /// The UAA (e.g. to revoke every token mid-test).
    pub uaa: Arc<Uaa>,
    /// The director's uploaded stemcells and tasks.
    pub director: Arc<Director>,
    /// The TKGI clusters.
    pub fleet: Arc<Fleet>,
    /// Ops Manager: its stemcell library, tiles and installations.
    pub opsman: Arc<OpsMan>,
    pub(crate) boshio: Arc<BoshIo>,
    pub(crate) deployments: Arc<Deployments>,
    pub(crate) kubernetes: Arc<Kubernetes>,
    pub(crate) releases: Arc<releases::Config>,
    pub(crate) shared: Shared,
}

impl SimState {
    /// Builds every service from its scenario section; `ca_pem` is the CA kubeconfigs from TKGI binds embed.
    pub(crate) fn new(scenario: Scenario, ca_pem: String) -> Self {
        let shared = Shared::new(&scenario.faults);
        let uaa = Arc::new(Uaa::new(scenario.uaa.clone()));
        let boshio = Arc::new(BoshIo::new(scenario.boshio.clone(), Arc::clone(&shared.digests)));
        let director = Arc::new(Director::new(scenario.director.clone(), Arc::clone(&uaa), Arc::clone(&boshio)));
        let fleet = Arc::new(Fleet::new(
            scenario.tkgi.clone(),
            scenario.time_scale,
            ca_pem,
            Arc::clone(&uaa),
            Arc::clone(&shared.counters),
        ));
        let opsman = Arc::new(OpsMan::new(
            scenario.opsman.clone(),
            tkgi_tile(&scenario.tkgi),
            scenario.time_scale,
            Arc::clone(&uaa),
            Arc::clone(&director),
            Arc::clone(&fleet),
            Arc::clone(&shared.counters),
        ));
        let deployments = Arc::new(Deployments::new(
            scenario.deployments.clone(),
            scenario.time_scale,
            Arc::clone(&uaa),
            Arc::clone(&fleet),
            Arc::clone(&director),
            Arc::clone(&shared.counters),
        ));
        let kubernetes = Arc::new(Kubernetes::new(scenario.kubernetes.clone(), Arc::clone(&fleet)));
        let releases = Arc::new(scenario.releases.clone());
        Self {
            start: shared.log.started(),
            scenario,
            uaa,
            director,
            fleet,
            opsman,
            boshio,
            deployments,
            kubernetes,
            releases,
            shared,
        }
    }

    // --- request log ---

    /// A snapshot of the request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.records()
    }

    pub fn clear_requests(&self) {
        self.shared.log.clear();
    }

    // --- faults ---

    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.faults.add(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// The armed faults with how often each matched and fired.
    pub fn faults(&self) -> Vec<ArmedFault> {
        self.shared.faults.list()
    }

    // --- counters ---

    /// A named counter's value (0 if never touched).
    pub fn counter(&self, name: &str) -> i64 {
        self.shared.counters.value(name)
    }

    /// The largest value the counter ever reached (0 if never touched).
    pub fn high_water(&self, name: &str) -> i64 {
        self.shared.counters.high_water(name)
    }

    /// Increments a counter until the guard drops: the usual way to measure concurrency of a route.
    pub fn track(&self, name: &str) -> CounterGuard {
        self.shared.counters.track(name)
    }

    // --- blobs ---

    /// md5/sha1/sha256 of the blob (seed, size) as `/_sim/blob/{seed}/{size}` serves it, computed once.
    /// CPU-bound (seconds per GiB).
    pub fn blob_digests(&self, seed: u64, size: u64) -> BlobDigests {
        self.shared.digests.get(seed, size)
    }

    /// The true digests of a simulated bosh.io tarball of `size` bytes (what the list API publishes unless the
    /// scenario overrides or falsifies them).
    pub fn tarball_digests(&self, name: &str, version: &str, flavor: &str, size: u64) -> BlobDigests {
        self.blob_digests(boshio::seed(name, version, flavor), size)
    }
}

/// The TKGI tile as the `tkgi` section implies it when the `opsman` section lists none: deployed at the platform's
/// version on the clusters' stemcell line.
fn tkgi_tile(tkgi: &crate::services::tkgi::Config) -> opsman::ProductConfig {
    opsman::ProductConfig {
        kind: opsman::TKGI.into(),
        version: tkgi.platform_version.clone(),
        staged_version: None,
        deployed: true,
        stemcells: vec![format!("{}/{}", tkgi.stemcell_name, tkgi.stemcell_version)],
        errands: None,
        incomplete: false,
    }
}
