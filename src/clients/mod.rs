//! Thin typed API clients, one per platform API. They know routes and JSON shapes, never policy:
//! what to do with the answers lives in the kind modules and the rollout engine.

pub(crate) mod boshio;
pub(crate) mod director;
pub(crate) mod director_task;
pub(crate) mod k8s_feed;
pub(crate) mod kube;
pub(crate) mod opsman;
pub(crate) mod tkgi;
pub mod uaa;
