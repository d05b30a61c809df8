//! Plain builders for the records the conformance suite feeds a store, and the few
//! lookups its assertions share. No store behaviour is decided here: every transition
//! is spelled out as the `Progress` a worker would compute, so a test reads as the
//! sequence of calls a worker makes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_core::{FailReason, Link, Message, Progress, Severity, State, Timestamp};
use herald_store::{
    AttemptRecord, BroadcastView, ClaimRequest, DeliveryView, NewBroadcast, NewDelivery, NewUpdate,
    Record, Release, Store, Submitted, Work,
};

/// The simulated "now" every test starts from; the store is always told the time.
pub const T0: Timestamp = Timestamp(1_750_000_000_000);

/// How long a claim leases its work unless a test says otherwise.
pub const LEASE: Duration = Duration::from_secs(30);

/// The attempt budget of every delivery built here.
pub const MAX_ATTEMPTS: u32 = 8;

/// `T0` plus `secs` seconds.
pub fn at(secs: u64) -> Timestamp {
    T0.add(Duration::from_secs(secs))
}

/// Held by the tests that time a long run of work (the large retention tests), so that
/// no two of them overlap in this binary: each one's figures are its own backend's, not
/// the load of another test's hundred thousand rows.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh id with `prefix`, unique within the test binary.
pub fn id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}_{:08}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A message that uses every field, so a lossy round trip shows up.
pub fn message(title: &str) -> Message {
    Message {
        title: title.into(),
        body: format!("**{title}** since 12:01."),
        severity: Severity::Critical,
        fields: BTreeMap::from([("service".to_string(), "checkout".to_string())]),
        links: vec![Link {
            title: "Runbook".into(),
            url: "https://runbooks.example/checkout".into(),
        }],
        tags: vec!["p1".into()],
    }
}

/// A delivery to `destination` that expires a day after `created_at`.
pub fn delivery(destination: &str, created_at: Timestamp) -> NewDelivery {
    NewDelivery {
        id: id("d"),
        destination: destination.into(),
        max_attempts: MAX_ATTEMPTS,
        expires_at: created_at.add(Duration::from_secs(24 * 3600)),
    }
}

/// A broadcast without idempotency key to `destinations`, accepted at `created_at`.
pub fn broadcast(destinations: &[&str], created_at: Timestamp) -> NewBroadcast {
    let id = id("b");
    NewBroadcast {
        fingerprint: format!("fingerprint of {id}"),
        message: message(&format!("incident {id}")),
        id,
        idempotency_key: None,
        requested: destinations.iter().map(|d| d.to_string()).collect(),
        deliveries: destinations.iter().map(|d| delivery(d, created_at)).collect(),
        created_at,
        expires_at: None,
    }
}

/// A broadcast with idempotency `key` and request `fingerprint`; a fresh broadcast id
/// and fresh delivery ids every call, as a client's repeated request would get.
pub fn keyed(
    key: &str,
    fingerprint: &str,
    destinations: &[&str],
    created_at: Timestamp,
) -> NewBroadcast {
    NewBroadcast {
        idempotency_key: Some(key.into()),
        fingerprint: fingerprint.into(),
        message: message(fingerprint),
        ..broadcast(destinations, created_at)
    }
}

/// A follow-up to every destination of `view`.
pub fn update(view: &BroadcastView, title: &str, created_at: Timestamp) -> NewUpdate {
    NewUpdate {
        broadcast_id: view.id.clone(),
        message: message(title),
        created_at,
        deliveries: view.destinations.iter().map(|d| delivery(d, created_at)).collect(),
        idempotency: None,
    }
}

/// Submits `new` and returns the stored view, which must be newly created.
pub async fn create(store: &dyn Store, new: NewBroadcast) -> BroadcastView {
    match store.submit(new).await.unwrap() {
        Submitted::Created(view) => view,
        Submitted::Replayed(view) => {
            panic!("expected a new broadcast, got a replay of {}", view.id)
        }
    }
}

/// A claim for `destination` at `now`, leasing for [`LEASE`].
pub fn claim_request(destination: &str, limit: usize, now: Timestamp) -> ClaimRequest {
    ClaimRequest {
        destination: destination.into(),
        limit,
        now,
        lease_until: now.add(LEASE),
        probe: false,
    }
}

/// Claims up to `limit` due deliveries of `destination` at `now`.
pub async fn claim(
    store: &dyn Store,
    destination: &str,
    limit: usize,
    now: Timestamp,
) -> Vec<Work> {
    store.claim(claim_request(destination, limit, now)).await.unwrap().work
}

/// Claims exactly one due delivery of `destination` at `now`.
pub async fn claim_one(store: &dyn Store, destination: &str, now: Timestamp) -> Work {
    let mut work = claim(store, destination, 1, now).await;
    assert_eq!(work.len(), 1, "expected one due delivery for {destination}");
    work.remove(0)
}

/// The ids of `work`, in order.
pub fn ids(work: &[Work]) -> Vec<String> {
    work.iter().map(|w| w.delivery_id.clone()).collect()
}

/// The attempt log entry for attempt `number` that ended as `outcome`.
pub fn attempt(number: u32, outcome: &str, started_at: Timestamp) -> AttemptRecord {
    AttemptRecord {
        number,
        started_at,
        duration_ms: 120,
        outcome: outcome.into(),
        status: Some(if outcome == "delivered" { 200 } else { 503 }),
        detail: Some(format!("{outcome} at attempt {number}")),
    }
}

/// What a worker records for `work` under `progress`, logging one attempt.
pub fn record(work: &Work, progress: Progress, outcome: &str, now: Timestamp) -> Record {
    Record {
        delivery_id: work.delivery_id.clone(),
        lease_token: work.lease_token,
        progress,
        attempt: Some(attempt(work.progress.attempts + 1, outcome, now)),
        now,
    }
}

/// The destination accepted `work` and called it `remote_ref`.
pub fn delivered(work: &Work, remote_ref: &str, now: Timestamp) -> Record {
    let mut progress = work.progress.clone();
    progress.state = State::Delivered;
    progress.attempts += 1;
    progress.remote_ref = Some(remote_ref.into());
    progress.delivered_at = Some(now);
    record(work, progress, "delivered", now)
}

/// The destination rejected `work` for good.
pub fn rejected(work: &Work, now: Timestamp) -> Record {
    let mut progress = work.progress.clone();
    progress.state = State::Failed(FailReason::Permanent);
    progress.attempts += 1;
    progress.last_error = Some("400 invalid payload".into());
    record(work, progress, "permanent", now)
}

/// A retryable failure of `work`; due again at `due`.
pub fn retry_at(work: &Work, due: Timestamp, now: Timestamp) -> Record {
    let mut progress = work.progress.clone();
    progress.state = State::Pending;
    progress.attempts += 1;
    progress.next_attempt_at = due;
    progress.last_error = Some("503 service unavailable".into());
    record(work, progress, "retry", now)
}

/// An ambiguous outcome of `work` that an operator must resolve.
pub fn held(work: &Work, now: Timestamp) -> Record {
    let mut progress = work.progress.clone();
    progress.state = State::Held;
    progress.attempts += 1;
    progress.ambiguous = true;
    progress.last_error = Some("timed out after the request was sent".into());
    record(work, progress, "unknown", now)
}

/// Hands `work` back untouched at `now`.
pub fn release(work: &Work, now: Timestamp) -> Release {
    Release { delivery_id: work.delivery_id.clone(), lease_token: work.lease_token, now }
}

/// The stored broadcast `id`, which must exist.
pub async fn view(store: &dyn Store, id: &str) -> BroadcastView {
    store.broadcast(id).await.unwrap().unwrap_or_else(|| panic!("broadcast {id} is missing"))
}

/// The stored delivery `delivery_id` of broadcast `broadcast_id`.
pub async fn delivery_view(
    store: &dyn Store,
    broadcast_id: &str,
    delivery_id: &str,
) -> DeliveryView {
    let view = view(store, broadcast_id).await;
    view.deliveries
        .into_iter()
        .find(|d| d.id == delivery_id)
        .unwrap_or_else(|| panic!("delivery {delivery_id} is missing from {broadcast_id}"))
}

/// The stored state of delivery `delivery_id` of broadcast `broadcast_id`.
pub async fn state_of(store: &dyn Store, broadcast_id: &str, delivery_id: &str) -> State {
    delivery_view(store, broadcast_id, delivery_id).await.progress.state
}
