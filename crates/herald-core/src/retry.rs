//! The per-destination retry policy and its exponential backoff with full jitter.

use std::time::Duration;

use crate::delivery::OnUnknown;

/// How a destination's deliveries are retried. The defaults are DESIGN.md's table and
/// live only here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts (throttles excluded) before a delivery fails with `attempts exhausted`.
    pub max_attempts: u32,
    /// The first backoff ceiling; doubled per attempt.
    pub backoff_base: Duration,
    /// The largest backoff ceiling.
    pub backoff_max: Duration,
    /// How long after creation a delivery may still be attempted.
    pub max_age: Duration,
    /// The limit on one attempt, from claim to answer.
    pub timeout: Duration,
    /// What to do after an ambiguous outcome when the destination can neither
    /// deduplicate nor be searched.
    pub on_unknown: OnUnknown,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            on_unknown: OnUnknown::Resend,
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling after `attempt` failed attempts (1-based):
    /// `min(backoff_max, backoff_base * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << exponent;
        let base_ms = u64::try_from(self.backoff_base.as_millis()).unwrap_or(u64::MAX);
        let max_ms = u64::try_from(self.backoff_max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(base_ms.saturating_mul(factor).min(max_ms))
    }

    /// The delay before the next try after `attempt` failed attempts, with full jitter:
    /// a uniform sample of `[0, ceiling]` chosen by `jitter` in `[0, 1]` (clamped).
    /// Full jitter spreads a herd of retries evenly instead of in synchronized waves.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
        let ceiling = self.ceiling(attempt);
        let millis = (ceiling.as_millis() as f64 * jitter).round() as u64;
        // Above 2^53 ms the f64 product can round past the ceiling; the bound is exact.
        Duration::from_millis(millis).min(ceiling)
    }
}
