//! repave-sim: one HTTPS server on 127.0.0.1 that simulates the platforms repave talks to (bosh.io, UAA, TKGI,
//! Ops Manager, the BOSH director, Kubernetes feeds), seeded from a [`Scenario`], with fault injection and a control API
//! under `/_sim` that shows tests what happened.
//!
//! Async tests call [`start`]; sync `#[test]`s use [`testing::RunningSim`], which runs the server on its own
//! thread and runtime. Either way [`SimState`] is what a test observes: the request log, the armed faults, the
//! counters, and a few services' own state.
//!
//! Inside, `shared` is the core every service shares (request log, faults, counters, blob digests) and knows no
//! service; [`services`] has one module per platform, each owning its scenario section, its state and its
//! routes; `state` builds them from the scenario and wires them together; `server` serves them, `control` is
//! `/_sim`. Everything is `pub(crate)` unless tests, the demo or ci/bench need it: the items re-exported here,
//! [`testing`], and in [`services`] each platform's scenario section and what a test may read of its state.

#![warn(unreachable_pub)]

mod control;
mod scenario;
mod server;
pub mod services;
mod shared;
mod state;
pub mod testing;
mod tls;

pub use scenario::Scenario;
pub use server::{SimHandle, StartOptions, start};
pub use shared::blob::BlobDigests;
pub use shared::counters::CounterGuard;
pub use shared::faults::{ArmedFault, FaultAction, FaultRule};
pub use shared::reqlog::RequestRecord;
pub use state::SimState;
