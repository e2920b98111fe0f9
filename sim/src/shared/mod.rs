//! What the simulated platforms share.

pub mod blob;
pub mod faults;
pub(crate) mod reqlog;
pub(crate) mod shaping;
