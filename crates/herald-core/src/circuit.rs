//! The per-destination circuit breaker: stop hammering a destination that keeps failing.
//!
//! While open, a lane claims nothing, so its deliveries wait without burning attempts;
//! after the cool-down one probe is let through (half-open) and its result decides.

use std::time::Duration;

use crate::time::Timestamp;

/// When the breaker opens and how long it stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive destination failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a probe.
    pub cool_down: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> CircuitPolicy {
        CircuitPolicy { failure_threshold: 5, cool_down: Duration::from_secs(30) }
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Traffic flows; counts consecutive failures.
    Closed {
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// No traffic until `until`.
    Open {
        /// When a probe may be sent.
        until: Timestamp,
    },
    /// One probe is allowed; its result closes or re-opens the circuit.
    HalfOpen {
        /// Whether the probe has been handed out.
        probing: bool,
    },
}

impl CircuitState {
    /// The lowercase name shown by the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            CircuitState::Closed { .. } => "closed",
            CircuitState::Open { .. } => "open",
            CircuitState::HalfOpen { .. } => "half_open",
        }
    }
}

/// A circuit breaker as a value; the engine keeps one per destination lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    /// The thresholds.
    pub policy: CircuitPolicy,
    /// The current state.
    pub state: CircuitState,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(policy: CircuitPolicy) -> Circuit {
        Circuit { policy, state: CircuitState::Closed { consecutive_failures: 0 } }
    }

    /// How many attempts may start now: unlimited (`None`) when closed, one probe when
    /// half-open, none when open. Moves an expired open circuit to half-open.
    pub fn permits(&mut self, now: Timestamp) -> Option<usize> {
        if let CircuitState::Open { until } = self.state
            && now >= until
        {
            self.state = CircuitState::HalfOpen { probing: false };
        }
        match self.state {
            CircuitState::Closed { .. } => None,
            CircuitState::Open { .. } | CircuitState::HalfOpen { probing: true } => Some(0),
            CircuitState::HalfOpen { probing: false } => Some(1),
        }
    }

    /// Records that the probe (or attempts) were handed out while half-open.
    pub fn on_dispatch(&mut self) {
        if let CircuitState::HalfOpen { .. } = self.state {
            self.state = CircuitState::HalfOpen { probing: true };
        }
    }

    /// When the circuit will let a probe through, if it is open.
    pub fn open_until(&self) -> Option<Timestamp> {
        match self.state {
            CircuitState::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Feeds one attempt's result: `failed` is `Outcome::is_destination_failure`.
    pub fn on_result(&mut self, failed: bool, now: Timestamp) {
        self.state = match (self.state, failed) {
            (_, false) => CircuitState::Closed { consecutive_failures: 0 },
            (CircuitState::Closed { consecutive_failures }, true) => {
                let n = consecutive_failures + 1;
                if n >= self.policy.failure_threshold {
                    CircuitState::Open { until: now.add(self.policy.cool_down) }
                } else {
                    CircuitState::Closed { consecutive_failures: n }
                }
            }
            (CircuitState::HalfOpen { .. } | CircuitState::Open { .. }, true) => {
                CircuitState::Open { until: now.add(self.policy.cool_down) }
            }
        };
    }
}
