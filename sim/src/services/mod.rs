//! The simulated platforms, one module each.

pub mod boshio;
pub mod deployments;
pub mod director;
pub mod k8s;
pub mod releases;
pub mod s3auth;
pub mod tkgi;
pub mod uaa;
