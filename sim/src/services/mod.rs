//! The simulated platforms, one module each. A service owns its scenario section (`Config`, public as part of
//! [`crate::Scenario`]), its state and its `routes()`; it uses the shared core and, where the real platforms
//! depend on each other, the service below it, handed over when [`crate::SimState`] builds them:
//! UAA ← bosh.io ← director ← TKGI ← deployments, Kubernetes, Ops Manager (which configures TKGI's broker and runs
//! its errand). The release feeds stand alone.
//!
//! Public here: each scenario section, and the services whose state a test reads through [`crate::SimState`]
//! ([`uaa::Uaa`], [`director::Director`], [`tkgi::Fleet`], [`opsman::OpsMan`]) with the few methods tests use.

pub mod boshio;
pub mod deployments;
pub mod director;
pub mod k8s;
pub mod opsman;
pub mod releases;
pub mod s3auth;
pub mod tkgi;
pub mod uaa;
