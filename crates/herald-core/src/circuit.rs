//! The per-destination circuit breaker: bound the load on a destination that is down,
//! never stall one that is accepting messages.
//!
//! The design follows Envoy's outlier detection and resilience4j rather than a count of
//! consecutive failures, because a destination that fails the first tries of each
//! message and accepts the later ones produces long failure streaks while it delivers
//! everything; such a destination must converge as if there were no breaker.
//!
//! - **Closed.** The last results (not throttles: a 429 is the destination working as
//!   designed) sit in a window of `max(40, min_failures)` entries. The circuit opens
//!   only when the window holds at least `min_failures` failures (default 20), their
//!   share is at least `failure_rate` (default 0.8), and they have lasted (below): a
//!   minimum volume plus a rate plus a duration.
//!   The sizes are chosen so that random failures do not open it: with 30 % of requests
//!   failing at random, a full window of 40 trips (32 failures) with probability about
//!   1e-10 per result, and a fresh window (20 failures among the first 25) about 3e-7
//!   per start; a window of 20 would trip about once in 200,000 results (5.5e-6). A
//!   destination that is down opens it after 20 failures when fresh, 32 after a healthy
//!   spell.
//!
//!   A rate alone is not enough: a burst of messages to a destination that accepts each
//!   one on its third try starts with a burst of failed first tries, indistinguishable
//!   from an outage, and once open, probes in due order are first tries that fail too,
//!   so the circuit would stay open for minutes while the destination accepts everything
//!   (measured: 43 s instead of 0.7 s for 100 messages). So the failures must also have
//!   lasted: the circuit opens only once a *spell* of failures with no success in
//!   between has lasted at least the first cool-down (`backoff_base`), that is, once
//!   retrying after the base delay did not help. A destination that accepts retries
//!   answers with a success within that time; one that is down does not.
//! - **Open.** The lane claims nothing, so deliveries wait without burning attempts.
//!   The cool-down starts at the destination's `backoff_base` and doubles per
//!   consecutive failed probe up to a cap: `circuit_cool_down` when the operator set
//!   it, otherwise `min(30 s, backoff_max)`, so the breaker never waits longer than the
//!   retry policy the operator configured unless told to.
//! - **Half-open.** Probes go one at a time, and the lane claims oldest-due first, so
//!   they are taken in due order. A down destination therefore receives at most one
//!   request per cool-down once open. A successful probe closes the circuit and empties
//!   the window; a failed one re-opens it for the next, longer cool-down.
//!
//! Pure: `now` is an argument, nothing here reads a clock.

use std::collections::VecDeque;
use std::time::Duration;

use crate::outcome::Outcome;
use crate::retry::RetryPolicy;
use crate::time::Timestamp;

/// The smallest window of recent results the rate is computed over.
pub const WINDOW: usize = 40;

/// The largest window; a `min_failures` above it never opens the circuit (how an
/// operator turns the breaker off), and memory stays bounded.
pub const MAX_WINDOW: usize = 1000;

/// The cool-down cap when neither `circuit_cool_down` nor a shorter `backoff_max` says
/// otherwise.
pub const DEFAULT_COOL_DOWN_CAP: Duration = Duration::from_secs(30);

/// The shortest cool-down, so a zero `backoff_base` cannot make the breaker spin.
const MIN_COOL_DOWN: Duration = Duration::from_millis(1);

/// A share of failures in `(0, 1]`; made only by [`FailureRate::new`], so it is never NaN.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct FailureRate(f64);

// `new` rejects NaN, so equality is reflexive.
impl Eq for FailureRate {}

impl FailureRate {
    /// `share` if it lies in `(0, 1]`.
    pub fn new(share: f64) -> Option<FailureRate> {
        (share > 0.0 && share <= 1.0).then_some(FailureRate(share))
    }

    /// The share as a number in `(0, 1]`.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for FailureRate {
    fn default() -> FailureRate {
        FailureRate(0.8)
    }
}

/// When the breaker opens and how long it stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// The fewest failures in the window that may open the circuit (`circuit_failures`).
    pub min_failures: u32,
    /// The share of failures in the window that opens it (`circuit_failure_rate`).
    pub failure_rate: FailureRate,
    /// The cool-down cap set explicitly (`circuit_cool_down`); `None` derives it from
    /// the retry policy.
    pub cool_down: Option<Duration>,
}

impl Default for CircuitPolicy {
    fn default() -> CircuitPolicy {
        CircuitPolicy { min_failures: 20, failure_rate: FailureRate::default(), cool_down: None }
    }
}

impl CircuitPolicy {
    /// The longest cool-down: the explicit one, else `min(30 s, backoff_max)`.
    pub fn cool_down_cap(&self, retry: &RetryPolicy) -> Duration {
        self.cool_down.unwrap_or(DEFAULT_COOL_DOWN_CAP.min(retry.backoff_max)).max(MIN_COOL_DOWN)
    }

    /// The first cool-down: `backoff_base`, within the cap.
    pub fn cool_down_base(&self, retry: &RetryPolicy) -> Duration {
        retry.backoff_base.max(MIN_COOL_DOWN).min(self.cool_down_cap(retry))
    }

    /// How many results the window keeps.
    pub fn window(&self) -> usize {
        usize::try_from(self.min_failures).unwrap_or(usize::MAX).clamp(WINDOW, MAX_WINDOW)
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Traffic flows; results fill the window.
    Closed,
    /// No traffic until `until`. Entered from closed when the window trips, and from
    /// half-open when a probe fails; left for half-open by [`Circuit::permits`].
    Open {
        /// When a probe may be sent.
        until: Timestamp,
    },
    /// One probe at a time; its result closes or re-opens the circuit.
    HalfOpen {
        /// Whether the probe has been handed out and its result is awaited.
        probing: bool,
    },
}

impl CircuitState {
    /// The lowercase name shown by the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open { .. } => "open",
            CircuitState::HalfOpen { .. } => "half_open",
        }
    }
}

/// A circuit breaker as a value; the engine keeps one per destination lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    /// The current state.
    pub state: CircuitState,
    min_failures: usize,
    failure_rate: FailureRate,
    window_len: usize,
    base: Duration,
    cap: Duration,
    /// Recent results, newest last (`true` = destination failure).
    window: VecDeque<bool>,
    /// Probes that failed since the circuit last closed; the cool-down's exponent.
    failed_probes: u32,
    /// The first failure since the last success (or since the window was emptied).
    spell_start: Option<Timestamp>,
    /// The last failure's reason, kept for the human explanation.
    last_failure: Option<String>,
    /// Why the circuit is not closed, in words.
    reason: Option<String>,
}

impl Circuit {
    /// A closed circuit for a destination retried under `retry`.
    pub fn new(policy: &CircuitPolicy, retry: &RetryPolicy) -> Circuit {
        Circuit {
            state: CircuitState::Closed,
            min_failures: usize::try_from(policy.min_failures).unwrap_or(usize::MAX),
            failure_rate: policy.failure_rate,
            window_len: policy.window(),
            base: policy.cool_down_base(retry),
            cap: policy.cool_down_cap(retry),
            window: VecDeque::new(),
            failed_probes: 0,
            spell_start: None,
            last_failure: None,
            reason: None,
        }
    }

    /// How many attempts may start now: unlimited (`None`) when closed, one probe when
    /// half-open and none is out, none when open. Moves an expired open circuit to
    /// half-open.
    pub fn permits(&mut self, now: Timestamp) -> Option<usize> {
        if let CircuitState::Open { until } = self.state
            && now >= until
        {
            self.state = CircuitState::HalfOpen { probing: false };
        }
        match self.state {
            CircuitState::Closed => None,
            CircuitState::Open { .. } | CircuitState::HalfOpen { probing: true } => Some(0),
            CircuitState::HalfOpen { probing: false } => Some(1),
        }
    }

    /// Records that an attempt was handed out; while half-open it is the probe.
    pub fn on_dispatch(&mut self) {
        if let CircuitState::HalfOpen { .. } = self.state {
            self.state = CircuitState::HalfOpen { probing: true };
        }
    }

    /// Records that a handed-out attempt ended without reaching the destination (it
    /// expired before sending), so a half-open circuit may send another probe.
    pub fn on_abandoned(&mut self) {
        if let CircuitState::HalfOpen { .. } = self.state {
            self.state = CircuitState::HalfOpen { probing: false };
        }
    }

    /// When the circuit will let a probe through, if it is open.
    pub fn open_until(&self) -> Option<Timestamp> {
        match self.state {
            CircuitState::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Why the circuit is open or half-open, e.g. "24 of the last 25 attempts failed:
    /// HTTP 503"; `None` when closed.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The cool-down after `failed_probes` probes failed in a row: `base * 2^n`, capped.
    pub fn cool_down(&self, failed_probes: u32) -> Duration {
        let factor = 1u32.checked_shl(failed_probes.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Feeds one attempt's outcome, answered at `now`. Throttles (the throttle paces the
    /// lane) and look-ups that must wait are ignored;
    /// a permanent error counts as a success, since it proves the destination answers.
    pub fn on_result(&mut self, outcome: &Outcome, now: Timestamp) {
        if !outcome.consumes_attempt() {
            // A throttle or a look-up that must wait: the probe, if this was it, decided
            // nothing about the destination's health. Let another one go.
            self.on_abandoned();
            return;
        }
        let failed = outcome.is_destination_failure();
        if failed {
            self.last_failure = outcome.reason().map(String::from);
            self.spell_start.get_or_insert(now);
        } else {
            self.spell_start = None;
        }
        if self.window.len() == self.window_len {
            self.window.pop_front();
        }
        self.window.push_back(failed);
        match (self.state, failed) {
            (CircuitState::Closed, false) => {}
            (CircuitState::Open { .. } | CircuitState::HalfOpen { .. }, false) => {
                // Any success (the probe, or an attempt sent before the circuit opened)
                // proves the destination accepts messages again.
                self.state = CircuitState::Closed;
                self.window.clear();
                self.spell_start = None;
                self.failed_probes = 0;
                self.reason = None;
            }
            (CircuitState::Closed, true) => {
                let failures = self.window.iter().filter(|failed| **failed).count();
                let share = failures as f64 / self.window.len() as f64;
                let lasted = self.spell_start.is_some_and(|start| now.since(start) >= self.base);
                if failures >= self.min_failures && share >= self.failure_rate.get() && lasted {
                    self.open(now);
                }
            }
            (CircuitState::HalfOpen { .. }, true) => {
                self.failed_probes = self.failed_probes.saturating_add(1);
                self.open(now);
            }
            // An attempt handed out before the circuit opened: the window has it, the
            // cool-down already runs.
            (CircuitState::Open { .. }, true) => {}
        }
    }

    fn open(&mut self, now: Timestamp) {
        self.state = CircuitState::Open { until: now.add(self.cool_down(self.failed_probes)) };
        let failures = self.window.iter().filter(|failed| **failed).count();
        let mut reason = format!("{failures} of the last {} attempts failed", self.window.len());
        if let Some(last) = &self.last_failure {
            reason += ": ";
            reason += last;
        }
        self.reason = Some(reason);
    }
}
