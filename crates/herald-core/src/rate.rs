//! A destination's rate limit as plain data, and the pacer that enforces it on the
//! engine's clock.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::time::Timestamp;

/// At most `count` attempts started per `per`, e.g. `10/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Attempts allowed in any window of length `per` (also the burst).
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

/// A rate limit being enforced as a sliding window: an attempt may start once fewer than
/// `count` attempts started in the `per` before it. So any window of length `per` holds
/// at most `count` starts, which is what an operator who writes `5/s` means and what a
/// destination counting requests per second checks; a full window allows a burst of
/// `count`. (A token bucket refilled one token per `per / count` would allow nearly twice
/// `count` in the second after a burst.) It keeps the last `count` start times. Pure: the
/// lane asks when the next permit is due, sleeps on its own clock until then, and takes
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pacer {
    limit: RateLimit,
    /// The latest starts, oldest first; at most `count`.
    starts: std::collections::VecDeque<Timestamp>,
}

impl Pacer {
    /// A pacer with no recent attempts.
    pub fn new(limit: RateLimit) -> Pacer {
        Pacer { limit, starts: std::collections::VecDeque::new() }
    }

    /// The earliest instant, not before `now`, at which an attempt may start.
    pub fn next_permit_at(&self, now: Timestamp) -> Timestamp {
        let count = usize::try_from(self.limit.count.get()).unwrap_or(usize::MAX);
        match self.starts.front() {
            Some(oldest) if self.starts.len() >= count => oldest.add(self.limit.per).max(now),
            _ => now,
        }
    }

    /// Records an attempt starting at `at` (at or after [`Pacer::next_permit_at`]).
    pub fn take(&mut self, at: Timestamp) {
        let count = usize::try_from(self.limit.count.get()).unwrap_or(usize::MAX);
        self.starts.push_back(at);
        while self.starts.len() > count {
            self.starts.pop_front();
        }
    }
}
