//! Per-endpoint state: the fault decision for each request, what was stored, and statistics.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use serde::Serialize;

use crate::plan::{FaultPlan, RateLimit, Step};

/// Prefix of the synthetic keys under which requests without an idempotency key are counted.
///
/// The `n`-th stored keyless request (1-based) is counted as `"{ANONYMOUS_KEY_PREFIX}{n}"`
/// in [`copies`](crate::Simulator::copies) and answered with that id.
pub const ANONYMOUS_KEY_PREFIX: &str = "~anonymous-";

/// One request that reached a simulated endpoint.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its idempotency key (`webhook-id`, else `Idempotency-Key`), if it had one.
    pub key: Option<String>,
    /// All its headers, names in lower case, values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Bytes,
    /// When the endpoint decided its fate.
    pub at: std::time::Instant,
    /// When it ended: answered, or its connection closed (by the client giving up, a
    /// reset or shutdown); `None` while it is still open.
    pub ended: Option<std::time::Instant>,
    /// What the endpoint did with it.
    pub fate: Fate,
    /// Whether it added a stored copy (true for `Stored`, and for `Reset`/`Hung` of a new key).
    pub stored: bool,
}

/// What a simulated endpoint did with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "fate")]
pub enum Fate {
    /// Stored as a new copy and answered `status` (200).
    Stored {
        /// The status answered.
        status: u16,
    },
    /// Its key was already stored: answered `status` (200) and not stored again.
    Duplicate {
        /// The status answered.
        status: u16,
    },
    /// Answered a failure `status` (`status_always` or `fail_first`) and not stored.
    Rejected {
        /// The status answered.
        status: u16,
    },
    /// Over the rate limit: answered `status` (429) with `Retry-After` and not stored.
    Throttled {
        /// The status answered.
        status: u16,
    },
    /// Stored (unless a duplicate), then answered `status` (200) only after the plan's delay.
    Delayed {
        /// The status answered.
        status: u16,
    },
    /// Stored (unless a duplicate), then answered the failure `status` anyway.
    StoredThenRejected {
        /// The status answered.
        status: u16,
    },
    /// Stored (unless a duplicate), then left unanswered until shutdown.
    Hung,
    /// Stored (unless a duplicate), then the connection was closed without a response.
    Reset,
}

impl Fate {
    /// The HTTP status the client was answered, if it got an answer at all.
    pub fn status(&self) -> Option<u16> {
        match *self {
            Fate::Stored { status }
            | Fate::Duplicate { status }
            | Fate::Rejected { status }
            | Fate::Throttled { status }
            | Fate::Delayed { status }
            | Fate::StoredThenRejected { status } => Some(status),
            Fate::Hung | Fate::Reset => None,
        }
    }
}

/// Counters of one simulated endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    /// Requests that reached the endpoint.
    pub requests: u64,
    /// Copies stored (a destination's view of what was delivered).
    pub stored: u64,
    /// Requests whose key was already stored and so were not stored again.
    pub duplicates_dropped: u64,
    /// Requests answered, by HTTP status (decided, even if the answer is still delayed).
    pub answered: BTreeMap<u16, u64>,
    /// Requests whose connection was closed without a response.
    pub resets: u64,
    /// Requests left unanswered.
    pub hangs: u64,
    /// Requests answered only after the plan's delay.
    pub delayed: u64,
    /// Requests over the token bucket (answered 429).
    pub throttled: u64,
    /// Requests that arrived during an outage window (answered its status).
    pub outage_rejected: u64,
}

/// What the server must do with a request once its fate is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answer 200; the id is the request's key, or the synthetic key of keyless copy `n`.
    Accepted { anonymous: Option<u64> },
    /// Answer 200 as `Accepted`, but only after the plan's delay.
    Delayed { anonymous: Option<u64> },
    /// Answer a failure status.
    Rejected(u16),
    /// The message was stored, but answer a failure status (a dialect words it as its
    /// API's "may have succeeded" error).
    StoredThenRejected(u16),
    /// Answer 429 with `Retry-After: secs`.
    Throttled { retry_after_secs: u64 },
    /// Close the connection without a response.
    Reset,
    /// Never answer (until shutdown).
    Hang,
}

/// What is kept of a request when the plan records requests: its parsed headers are moved
/// in as they are (no copy), and turned into a [`Received`] only when someone reads them.
pub(crate) struct Record {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// One entry of an endpoint's request log.
struct Entry {
    headers: HeaderMap,
    body: Bytes,
    at: std::time::Instant,
    ended: Option<std::time::Instant>,
    fate: Fate,
    stored: bool,
}

impl Entry {
    fn to_received(&self) -> Received {
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
            })
            .collect();
        Received {
            key: idempotency_key(&self.headers).map(Cow::into_owned),
            headers,
            body: self.body.clone(),
            at: self.at,
            ended: self.ended,
            fate: self.fate,
            stored: self.stored,
        }
    }
}

/// The header carrying a request's idempotency key: `webhook-id`, else `Idempotency-Key`.
pub(crate) fn idempotency_header(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers.get("webhook-id").or_else(|| headers.get("idempotency-key"))
}

/// The key in such a header (lossy UTF-8); an empty key counts as none.
pub(crate) fn key_text(value: &HeaderValue) -> Option<Cow<'_, str>> {
    let key = match value.to_str() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(value.as_bytes()),
    };
    (!key.is_empty()).then_some(key)
}

/// A request's idempotency key, if it has one.
fn idempotency_key(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    idempotency_header(headers).and_then(key_text)
}

/// One named endpoint: its plan and its state behind one mutex.
pub(crate) struct Endpoint {
    pub(crate) plan: FaultPlan,
    /// When the simulator started: outage windows are measured from here.
    started: tokio::time::Instant,
    state: Mutex<EndpointState>,
}

#[derive(Default)]
struct EndpointState {
    received: Vec<Entry>,
    keys: HashMap<String, KeyState>,
    anonymous_stored: u64,
    bucket: Option<TokenBucket>,
    stats: EndpointStats,
}

#[derive(Default)]
struct KeyState {
    attempts: u32,
    copies: usize,
}

impl KeyState {
    /// Counts one attempt; returns its step and whether it added a stored copy.
    fn advance(&mut self, plan: &FaultPlan) -> (Step, bool) {
        let step = plan.step(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        let stored = match step {
            Step::Fail(_) => false,
            Step::Reset | Step::Hang | Step::Delay | Step::StoreThenFail(_) | Step::Store => {
                if self.copies == 0 || !plan.dedupe {
                    self.copies += 1;
                    true
                } else {
                    false
                }
            }
        };
        (step, stored)
    }
}

/// A token bucket on tokio's clock (so paused time works in tests).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl TokenBucket {
    /// A full bucket of `per_second` tokens, refilled at `per_second` tokens per second.
    pub(crate) fn new(per_second: u32, now: tokio::time::Instant) -> Self {
        let rate = f64::from(per_second);
        TokenBucket { rate, tokens: rate, last: now }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: tokio::time::Instant) -> bool {
        if now > self.last {
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// `d` in whole seconds, rounded up (the `Retry-After` delta-seconds form).
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Endpoint {
    /// A fresh endpoint following `plan`; its bucket (if any) starts full at `now`.
    pub(crate) fn new(plan: FaultPlan, now: tokio::time::Instant) -> Self {
        let bucket =
            plan.rate_limit.map(|RateLimit { per_second, .. }| TokenBucket::new(per_second, now));
        let state = EndpointState { bucket, ..EndpointState::default() };
        Endpoint { plan, started: now, state: Mutex::new(state) }
    }

    fn lock(&self) -> MutexGuard<'_, EndpointState> {
        // The state stays consistent even if a holder panicked: every update is a few
        // counter bumps, so keep serving rather than propagate the poison.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides and records the fate of one request (one short critical section); also
    /// the index of its log entry, if recorded, for [`Endpoint::end`].
    pub(crate) fn handle(
        &self,
        key: Option<&str>,
        record: Option<Record>,
    ) -> (Outcome, Option<usize>) {
        let plan = &self.plan;
        let now = tokio::time::Instant::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        state.stats.requests += 1;

        let mut stored = false;
        let (fate, outcome) = if let Some(status) = plan.status_always {
            (Fate::Rejected { status }, Outcome::Rejected(status))
        } else if let Some(status) = plan.outage_at(now.saturating_duration_since(self.started)) {
            state.stats.outage_rejected += 1;
            (Fate::Rejected { status }, Outcome::Rejected(status))
        } else if !state.bucket.as_mut().is_none_or(|b| b.try_take(now)) {
            state.stats.throttled += 1;
            let retry_after_secs = plan.rate_limit.map_or(0, |r| ceil_secs(r.retry_after));
            (Fate::Throttled { status: 429 }, Outcome::Throttled { retry_after_secs })
        } else {
            let (step, added, anonymous) = match key {
                Some(k) => {
                    let (step, added) = match state.keys.get_mut(k) {
                        Some(ks) => ks.advance(plan),
                        None => {
                            let mut ks = KeyState::default();
                            let result = ks.advance(plan);
                            state.keys.insert(k.to_owned(), ks);
                            result
                        }
                    };
                    (step, added, None)
                }
                None => {
                    let (step, added) = KeyState::default().advance(plan);
                    let anonymous = if added {
                        state.anonymous_stored += 1;
                        Some(state.anonymous_stored)
                    } else {
                        None
                    };
                    (step, added, anonymous)
                }
            };
            stored = added;
            if added {
                state.stats.stored += 1;
            } else if !matches!(step, Step::Fail(_)) {
                state.stats.duplicates_dropped += 1;
            }
            match step {
                Step::Fail(status) => (Fate::Rejected { status }, Outcome::Rejected(status)),
                Step::Reset => (Fate::Reset, Outcome::Reset),
                Step::Hang => (Fate::Hung, Outcome::Hang),
                Step::Delay => (Fate::Delayed { status: 200 }, Outcome::Delayed { anonymous }),
                Step::StoreThenFail(status) => {
                    (Fate::StoredThenRejected { status }, Outcome::StoredThenRejected(status))
                }
                Step::Store if added => {
                    (Fate::Stored { status: 200 }, Outcome::Accepted { anonymous })
                }
                Step::Store => (Fate::Duplicate { status: 200 }, Outcome::Accepted { anonymous }),
            }
        };

        match fate {
            Fate::Hung => state.stats.hangs += 1,
            Fate::Reset => state.stats.resets += 1,
            Fate::Delayed { .. } => state.stats.delayed += 1,
            _ => {}
        }
        if let Some(status) = fate.status() {
            *state.stats.answered.entry(status).or_insert(0) += 1;
        }
        let entry = record.map(|Record { headers, body }| {
            let at = std::time::Instant::now();
            state.received.push(Entry { headers, body, at, ended: None, fate, stored });
            state.received.len() - 1
        });
        (outcome, entry)
    }

    /// Marks log entry `index` as ended now (answered or its connection closed); only
    /// the first call counts.
    pub(crate) fn end(&self, index: usize) {
        let mut state = self.lock();
        if let Some(entry) = state.received.get_mut(index)
            && entry.ended.is_none()
        {
            entry.ended = Some(std::time::Instant::now());
        }
    }

    /// Every recorded request, in order of arrival.
    pub(crate) fn received(&self) -> Vec<Received> {
        // Snapshot under the lock (reference counts only), convert outside it.
        let entries: Vec<Entry> = self
            .lock()
            .received
            .iter()
            .map(|e| Entry {
                headers: e.headers.clone(),
                body: e.body.clone(),
                at: e.at,
                ended: e.ended,
                fate: e.fate,
                stored: e.stored,
            })
            .collect();
        entries.iter().map(Entry::to_received).collect()
    }

    /// Idempotency key to stored copies, keyless copies under synthetic keys.
    pub(crate) fn copies(&self) -> BTreeMap<String, usize> {
        let state = self.lock();
        let keyed = state.keys.iter().filter(|(_, ks)| ks.copies > 0);
        let mut copies: BTreeMap<String, usize> =
            keyed.map(|(k, ks)| (k.clone(), ks.copies)).collect();
        for n in 1..=state.anonymous_stored {
            copies.insert(format!("{ANONYMOUS_KEY_PREFIX}{n}"), 1);
        }
        copies
    }

    /// Stored copies of one key (a synthetic key for keyless copies).
    pub(crate) fn copies_of(&self, key: &str) -> usize {
        let state = self.lock();
        if let Some(ks) = state.keys.get(key) {
            return ks.copies;
        }
        match key.strip_prefix(ANONYMOUS_KEY_PREFIX).and_then(|n| n.parse::<u64>().ok()) {
            Some(n) if (1..=state.anonymous_stored).contains(&n) => 1,
            _ => 0,
        }
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> EndpointStats {
        self.lock().stats.clone()
    }

    /// Two cheap counters: (requests, stored).
    pub(crate) fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.stats.requests, state.stats.stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_refills_on_tokio_time() {
        let start = tokio::time::Instant::now();
        let mut bucket = TokenBucket::new(2, start);
        assert!(bucket.try_take(start));
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start));
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(!bucket.try_take(tokio::time::Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(bucket.try_take(tokio::time::Instant::now()));
        assert!(!bucket.try_take(tokio::time::Instant::now()));
        // Never more than the burst, however long idle.
        tokio::time::advance(Duration::from_secs(60)).await;
        let now = tokio::time::Instant::now();
        assert!(bucket.try_take(now) && bucket.try_take(now) && !bucket.try_take(now));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_endpoint_uses_tokio_clock() {
        let plan = FaultPlan::healthy().rate_limit(1, Duration::from_millis(1500));
        let endpoint = Endpoint::new(plan, tokio::time::Instant::now());
        assert_eq!(endpoint.handle(Some("a"), None).0, Outcome::Accepted { anonymous: None });
        assert_eq!(endpoint.handle(Some("b"), None).0, Outcome::Throttled { retry_after_secs: 2 });
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(endpoint.handle(Some("b"), None).0, Outcome::Accepted { anonymous: None });
        let stats = endpoint.stats();
        assert_eq!((stats.requests, stats.stored), (3, 2));
        assert_eq!(stats.answered, BTreeMap::from([(200, 2), (429, 1)]));
        assert_eq!(stats.throttled, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_rejects_only_inside_its_window_on_tokio_time() {
        let plan = FaultPlan::healthy().outage(Duration::from_secs(1), Duration::from_secs(1), 503);
        let endpoint = Endpoint::new(plan, tokio::time::Instant::now());
        assert_eq!(endpoint.handle(Some("a"), None).0, Outcome::Accepted { anonymous: None });
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(endpoint.handle(Some("b"), None).0, Outcome::Rejected(503));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(endpoint.handle(Some("b"), None).0, Outcome::Accepted { anonymous: None });
        let stats = endpoint.stats();
        assert_eq!((stats.requests, stats.stored, stats.outage_rejected), (3, 2, 1));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
    }

    #[test]
    fn keyless_requests_are_separate_copies() {
        let endpoint = Endpoint::new(FaultPlan::healthy(), tokio::time::Instant::now());
        assert_eq!(endpoint.handle(None, None).0, Outcome::Accepted { anonymous: Some(1) });
        assert_eq!(endpoint.handle(None, None).0, Outcome::Accepted { anonymous: Some(2) });
        let copies = endpoint.copies();
        assert_eq!(copies.len(), 2);
        assert_eq!(endpoint.copies_of(&format!("{ANONYMOUS_KEY_PREFIX}2")), 1);
        assert_eq!(endpoint.copies_of(&format!("{ANONYMOUS_KEY_PREFIX}3")), 0);
    }
}
