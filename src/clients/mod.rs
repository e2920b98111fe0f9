//! Thin typed API clients, one per platform API. They know routes and JSON shapes, never policy:
//! what to do with the answers lives in the kind modules and the rollout engine.

pub mod director;
pub mod k8s_feed;
pub mod kube;
pub mod tkgi;
pub mod uaa;
