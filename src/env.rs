//! The process environment as a plain value.
//!
//! Only the entry point reads the real environment (`lib.rs`); everything below gets this map as an
//! argument, so a test can run a step in-process with exactly the variables it wants (proxies,
//! `SSL_CERT_FILE`, `REPAVE_NOW`) and two steps in one process never see each other's.

use std::collections::BTreeMap;

/// Variable name → value; variables that are not valid UTF-8 are left out by the entry point.
pub type Env = BTreeMap<String, String>;
