//! A destination's rate limit as plain data; the engine enforces it.

use std::num::NonZeroU32;
use std::time::Duration;

/// At most `count` attempts started per `per`, e.g. `10/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Attempts allowed per period (also the burst).
    pub count: NonZeroU32,
    /// The period.
    pub per: Duration,
}
