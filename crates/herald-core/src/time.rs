//! Wall-clock instants as plain values. The core never asks what time it is; it is told.

use std::time::Duration;

/// Milliseconds since the Unix epoch (UTC). Chosen over `SystemTime` because it is
/// `Copy`, totally ordered, and stores as one integer column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant moved `d` into the future, saturating instead of overflowing.
    #[allow(clippy::should_implement_trait, reason = "saturates, which `+` would hide")]
    pub fn add(self, d: Duration) -> Timestamp {
        let millis = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// How long after `earlier` this instant is; zero if it is not later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}
