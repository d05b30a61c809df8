//! How a lane slows down after a destination throttled it.
//!
//! A `Throttled` outcome says the destination's budget is spent, so sending the lane's
//! other deliveries at once would only collect more 429s. The lane therefore pauses until
//! the `Retry-After` has passed, then sends one attempt per `Retry-After` interval
//! (paced) until enough consecutive attempts went through, and only then runs at full
//! concurrency again. This is the difference between 20 messages through a 1/s bucket
//! with a handful of rejections and with hundreds.

use std::time::Duration;

use crate::outcome::Outcome;
use crate::time::Timestamp;

/// Consecutive unthrottled attempts after which pacing ends.
pub const CALM_STREAK: u32 = 10;

/// The pause used when a destination throttles without saying for how long.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// A lane's throttle state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Throttle {
    /// No attempt starts before this instant.
    next_at: Option<Timestamp>,
    /// While pacing: the spacing between attempts.
    pace: Option<Duration>,
    /// Unthrottled attempts in a row since pacing began.
    streak: u32,
}

impl Throttle {
    /// How many attempts may start now: unlimited (`None`) when calm, one when pacing and
    /// the spacing has passed, none while paused.
    pub fn permits(&self, now: Timestamp) -> Option<usize> {
        match (self.next_at, self.pace) {
            (Some(at), _) if now < at => Some(0),
            (_, Some(_)) => Some(1),
            _ => None,
        }
    }

    /// When the lane may next start an attempt, if it is held back.
    pub fn wait_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.next_at.filter(|at| *at > now)
    }

    /// Whether the lane is slowed down.
    pub fn is_pacing(&self) -> bool {
        self.pace.is_some()
    }

    /// Records that an attempt started at `now`, spacing the next one while pacing.
    pub fn on_dispatch(&mut self, now: Timestamp) {
        if let Some(pace) = self.pace {
            self.next_at = Some(now.add(pace));
        }
    }

    /// Feeds an attempt's outcome.
    pub fn on_outcome(&mut self, outcome: &Outcome, now: Timestamp) {
        match outcome {
            Outcome::Throttled { after, .. } => {
                let pause = after.unwrap_or(DEFAULT_PAUSE).max(Duration::from_millis(1));
                let until = now.add(pause);
                self.next_at = Some(self.next_at.map_or(until, |at| at.max(until)));
                self.pace = Some(pause);
                self.streak = 0;
            }
            // A look-up that must wait says nothing about the destination's rate.
            Outcome::Reconciling { .. } => {}
            _ if self.pace.is_some() => {
                self.streak += 1;
                if self.streak >= CALM_STREAK {
                    *self = Throttle::default();
                }
            }
            _ => {}
        }
    }
}
