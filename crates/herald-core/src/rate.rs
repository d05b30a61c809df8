//! A destination's rate limit as plain data, and the pacer that enforces it on the
//! engine's clock.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::time::Timestamp;

/// At most `count` attempts started per `per`, e.g. `10/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Attempts allowed per period (also the burst).
    pub count: NonZeroU32,
    /// The period.
    pub per: Duration,
}

impl RateLimit {
    /// The spacing of attempts once the burst is spent: `per / count`.
    pub fn interval(&self) -> Duration {
        self.per / self.count.get()
    }
}

/// A rate limit being enforced: the generic cell rate algorithm (GCRA), a token bucket
/// of `count` tokens refilled one per `interval` kept as a single instant, the
/// theoretical arrival time of the next attempt. Pure: the lane asks when the next
/// permit is due, sleeps on its own clock until then, and takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pacer {
    /// Microseconds per attempt, so limits like 3/s keep their precision.
    interval_us: i64,
    /// How far ahead of the arrival time an attempt may start: the burst.
    tolerance_us: i64,
    /// The theoretical arrival time in microseconds since the epoch; `None` until the
    /// first attempt (a full bucket).
    tat_us: Option<i64>,
}

impl Pacer {
    /// A full bucket for `limit`.
    pub fn new(limit: RateLimit) -> Pacer {
        let interval_us = i64::try_from(limit.interval().as_micros()).unwrap_or(i64::MAX).max(1);
        let per_us = i64::try_from(limit.per.as_micros()).unwrap_or(i64::MAX);
        Pacer { interval_us, tolerance_us: per_us.saturating_sub(interval_us).max(0), tat_us: None }
    }

    /// The earliest instant, not before `now`, at which an attempt may start.
    pub fn next_permit_at(&self, now: Timestamp) -> Timestamp {
        let now_us = now.as_millis().saturating_mul(1000);
        let Some(tat_us) = self.tat_us else { return now };
        let earliest_us = tat_us.saturating_sub(self.tolerance_us);
        if earliest_us <= now_us {
            now
        } else {
            // Round up to the next millisecond, the resolution of `Timestamp`.
            Timestamp::from_millis(earliest_us.saturating_add(999) / 1000)
        }
    }

    /// Takes a permit for an attempt starting at `at` (at or after
    /// [`Pacer::next_permit_at`]).
    pub fn take(&mut self, at: Timestamp) {
        let at_us = at.as_millis().saturating_mul(1000);
        let tat_us = self.tat_us.map_or(at_us, |tat| tat.max(at_us));
        self.tat_us = Some(tat_us.saturating_add(self.interval_us));
    }
}
