//! `kind: kubernetes`: track upstream Kubernetes releases from the release feeds (check), write the
//! version and a skew-policy upgrade path (in); `out` is refused.

pub mod skew;
pub mod versions;
