//! What a kind's step gets besides its typed request: the redacting log, the injected environment,
//! the step directory and the wall clock.
//!
//! It lives in its own module, not in `lib.rs`, so the kinds can take it without importing the
//! dispatcher that calls them (arrows point down only; see ARCHITECTURE.md).

use crate::env::Env;
use crate::redact::Log;
use crate::rollout::clock::Clock;
use crate::stepdir::StepDir;

/// Everything a kind's step needs besides its typed config.
pub struct Ctx {
    pub log: Log,
    pub env: Env,
    /// The directory argument of `in` and `out`: every file a step reads from `params` or writes.
    pub dir: Option<StepDir>,
    /// The wall clock (maintenance windows); see `rollout::clock` for why it is injected.
    pub clock: Clock,
}
