//! Fault plans: what one simulated destination does to each request it receives.

use std::time::Duration;

/// The behaviour of one simulated endpoint, built in builder style from [`FaultPlan::healthy`].
///
/// Faults are applied to each request in this order; the first that applies decides its fate:
///
/// 1. [`status_always`](FaultPlan::status_always): answer that status, store nothing;
/// 2. [`outage`](FaultPlan::outage): inside one of its time windows, answer its status, store
///    nothing;
/// 3. [`rate_limit`](FaultPlan::rate_limit): over the token bucket, answer 429 with `Retry-After`;
/// 4. [`fail_first`](FaultPlan::fail_first): the key's first `n` attempts get the failure status;
/// 5. [`reset_first`](FaultPlan::reset_first): the next `n` attempts are stored, then the
///    connection is closed without a response;
/// 6. [`hang_first`](FaultPlan::hang_first): the next `n` attempts are stored, then never answered;
/// 7. [`delay_first`](FaultPlan::delay_first): the next `n` attempts are stored, then answered
///    `200` only after a delay;
/// 8. [`store_then_fail`](FaultPlan::store_then_fail): the next `n` attempts are stored, then
///    answered with a failure status (Slack's `internal_error` after posting);
/// 9. otherwise the message is stored (or dropped as a duplicate when
///    [`dedupe`](FaultPlan::dedupe) is on) and answered `200`.
///
/// Per-key attempts are counted only for requests that got past steps 1 to 3, so
/// `fail_first(2, 503).reset_first(1)` answers a key 503, 503, then resets, then 200.
/// A request without an idempotency key is its own key and so is always a first attempt.
/// [`latency`](FaultPlan::latency) delays every answer and every reset (not hangs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    pub(crate) status_always: Option<u16>,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) fail_first: u32,
    pub(crate) fail_status: u16,
    pub(crate) reset_first: u32,
    pub(crate) hang_first: u32,
    pub(crate) delay_first: u32,
    pub(crate) delay: Duration,
    pub(crate) store_then_fail: u32,
    pub(crate) store_fail_status: u16,
    pub(crate) search_lag: Duration,
    pub(crate) outages: Vec<Outage>,
    pub(crate) latency: Duration,
    pub(crate) dedupe: bool,
    pub(crate) record: bool,
}

/// Token-bucket parameters of a rate-limited endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) per_second: u32,
    pub(crate) retry_after: Duration,
}

/// A time window, measured from the simulator's start, in which every request fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outage {
    pub(crate) from: Duration,
    pub(crate) until: Duration,
    pub(crate) status: u16,
}

/// What the fault plan does with the `attempt`-th (0-based) counted request for one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Fail(u16),
    Reset,
    Hang,
    Delay,
    StoreThenFail(u16),
    Store,
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self::healthy()
    }
}

impl FaultPlan {
    /// A destination that stores every message once (dedupe on) and answers 200 at once.
    pub fn healthy() -> FaultPlan {
        FaultPlan {
            status_always: None,
            rate_limit: None,
            fail_first: 0,
            fail_status: 500,
            reset_first: 0,
            hang_first: 0,
            delay_first: 0,
            delay: Duration::ZERO,
            store_then_fail: 0,
            store_fail_status: 500,
            search_lag: Duration::ZERO,
            outages: Vec::new(),
            latency: Duration::ZERO,
            dedupe: true,
            record: true,
        }
    }

    /// The first `n` requests for each idempotency key are answered `status` and not stored.
    pub fn fail_first(mut self, n: u32, status: u16) -> Self {
        self.fail_first = n;
        self.fail_status = status;
        self
    }

    /// Token bucket of `per_second` tokens (also the burst); over it, 429 with `Retry-After`.
    ///
    /// `Retry-After` carries `retry_after` in whole seconds, rounded up; the body is a JSON
    /// error. Throttled requests are not stored and do not count as attempts of their key.
    /// `per_second == 0` throttles everything.
    pub fn rate_limit(mut self, per_second: u32, retry_after: Duration) -> Self {
        self.rate_limit = Some(RateLimit { per_second, retry_after });
        self
    }

    /// The first `n` requests per key are stored, then never answered (until shutdown).
    pub fn hang_first(mut self, n: u32) -> Self {
        self.hang_first = n;
        self
    }

    /// The first `n` requests per key (after those of the earlier steps) are stored, then
    /// answered `200` after `delay` (store-then-hang that ends: a client with a shorter
    /// timeout gives up on a message the destination has).
    pub fn delay_first(mut self, n: u32, delay: Duration) -> Self {
        self.delay_first = n;
        self.delay = delay;
        self
    }

    /// The first `n` requests per key (after those of the earlier steps) are stored, then
    /// answered `status` as if they had failed: the destination has the message, the
    /// client is told otherwise (Slack documents `internal_error` and `fatal_error` as
    /// "possible some aspect of the operation succeeded"). A dialect renders the failure in
    /// its own words.
    pub fn store_then_fail(mut self, n: u32, status: u16) -> Self {
        self.store_then_fail = n;
        self.store_fail_status = status;
        self
    }

    /// A dialect's search or history sees a stored copy only `lag` after it was stored
    /// (Jira's issue search is eventually consistent); zero by default.
    pub fn search_lag(mut self, lag: Duration) -> Self {
        self.search_lag = lag;
        self
    }

    /// From `from` after the simulator started, for `length`, every request is answered
    /// `status` (e.g. 503) and nothing is stored: a destination down for a while.
    ///
    /// May be called several times (5xx bursts); rejected requests do not count as
    /// attempts of their key. A 429 outage (a 429 storm) answers `Retry-After: 1`.
    pub fn outage(mut self, from: Duration, length: Duration, status: u16) -> Self {
        self.outages.push(Outage { from, until: from.saturating_add(length), status });
        self
    }

    /// The status of the outage window containing `since_start`, if any.
    pub(crate) fn outage_at(&self, since_start: Duration) -> Option<u16> {
        self.outages.iter().find(|o| (o.from..o.until).contains(&since_start)).map(|o| o.status)
    }

    /// The first `n` requests per key are stored, then the connection is closed unanswered.
    pub fn reset_first(mut self, n: u32) -> Self {
        self.reset_first = n;
        self
    }

    /// Every answer (and every reset) is delayed by `d`.
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }

    /// Whether a request whose key is already stored is answered 200 without storing it again.
    pub fn dedupe(mut self, on: bool) -> Self {
        self.dedupe = on;
        self
    }

    /// Every request is answered `status` and nothing is stored (a permanent failure).
    ///
    /// `status_always(200)` models a destination that answers 200 with `{"ok":false}`.
    pub fn status_always(mut self, status: u16) -> Self {
        self.status_always = Some(status);
        self
    }

    /// Whether each request is kept for [`received`](crate::Simulator::received) (default on).
    ///
    /// Turn it off for long benchmarks: statistics and copies are still counted, but the
    /// bodies and headers of requests are not retained.
    pub fn record(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// What happens to the `attempt`-th (0-based) counted request of one key.
    pub(crate) fn step(&self, attempt: u32) -> Step {
        let attempt = u64::from(attempt);
        let fail_end = u64::from(self.fail_first);
        let reset_end = fail_end + u64::from(self.reset_first);
        let hang_end = reset_end + u64::from(self.hang_first);
        let delay_end = hang_end + u64::from(self.delay_first);
        let store_fail_end = delay_end + u64::from(self.store_then_fail);
        if attempt < fail_end {
            Step::Fail(self.fail_status)
        } else if attempt < reset_end {
            Step::Reset
        } else if attempt < hang_end {
            Step::Hang
        } else if attempt < delay_end {
            Step::Delay
        } else if attempt < store_fail_end {
            Step::StoreThenFail(self.store_fail_status)
        } else {
            Step::Store
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_documented_order() {
        let plan = FaultPlan::healthy()
            .fail_first(2, 503)
            .reset_first(1)
            .hang_first(1)
            .delay_first(1, Duration::from_secs(1))
            .store_then_fail(1, 500);
        let steps: Vec<Step> = (0..8).map(|i| plan.step(i)).collect();
        assert_eq!(
            steps,
            [
                Step::Fail(503),
                Step::Fail(503),
                Step::Reset,
                Step::Hang,
                Step::Delay,
                Step::StoreThenFail(500),
                Step::Store,
                Step::Store
            ]
        );
        assert_eq!(FaultPlan::healthy().step(0), Step::Store);
        assert_eq!(FaultPlan::default(), FaultPlan::healthy());
    }

    #[test]
    fn outages_cover_half_open_windows() {
        let plan = FaultPlan::healthy()
            .outage(Duration::from_secs(1), Duration::from_secs(2), 503)
            .outage(Duration::from_secs(5), Duration::from_secs(1), 502);
        let at = |ms| plan.outage_at(Duration::from_millis(ms));
        assert_eq!([at(999), at(1000), at(2999), at(3000)], [None, Some(503), Some(503), None]);
        assert_eq!([at(5000), at(6000)], [Some(502), None]);
    }
}
