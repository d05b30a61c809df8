//! The behavioural contract of `Store`, as test bodies any backend can run.
//!
//! Each body takes the store under test (or, for restarts, a way to open one on the
//! same database) and fails if one rule of DESIGN.md's delivery state machine or
//! invariants breaks. A backend's test module calls every body once, each on a fresh,
//! empty database (see `sqlite.rs`); an unused body is a dead-code warning, so no backend
//! can skip one silently. What is specific to one backend (SQLite's lock file and its
//! start-up expiry of leases) is tested next to that backend, not here.
//!
//! Time is always an argument: the bodies never read the clock and never sleep.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use herald_core::{BroadcastState, FailReason, Progress, RetryPolicy, State, Timestamp};
use herald_store::{
    AttemptRecord, BroadcastView, Change, ClaimRequest, DeliveryView, DestinationStats, ListQuery,
    NewUpdate, RemovedHolds, Store, StoreError, Submitted, ThreadMessage, UpdateKey, Work,
};
use tokio::task::JoinSet;

use crate::fixture::*;

/// Opens a store on the database under test. Calling it again after the previous store
/// was dropped is a restart (for SQLite: a new process on the same file).
pub type Open<'a> = &'a dyn Fn() -> Arc<dyn Store>;

fn states_of(changes: &[Change]) -> Vec<(String, u32, State)> {
    changes.iter().map(|c| (c.delivery_id.clone(), c.seq, c.state.clone())).collect()
}

fn list_ids(items: &[BroadcastView]) -> Vec<String> {
    items.iter().map(|b| b.id.clone()).collect()
}

async fn list(store: &dyn Store, query: ListQuery) -> Vec<String> {
    let page = store.list(query).await.unwrap();
    list_ids(&page.items)
}

/// Follows `query`'s cursor to the end and returns every id seen, in order.
async fn every_page(store: &dyn Store, query: ListQuery) -> Vec<String> {
    let (mut seen, mut cursor) = (Vec::new(), None);
    for _ in 0..100 {
        let page = store.list(ListQuery { cursor, ..query.clone() }).await.unwrap();
        assert!(page.items.len() <= query.limit, "a page holds more than its limit");
        seen.extend(list_ids(&page.items));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
    }
    panic!("paging did not end after 100 pages");
}

fn all(limit: usize) -> ListQuery {
    ListQuery { limit, ..ListQuery::default() }
}

/// The delivery of `view` to `destination` at thread position `seq`.
fn delivery_id(view: &BroadcastView, destination: &str, seq: u32) -> String {
    view.deliveries
        .iter()
        .find(|d| d.destination == destination && d.seq == seq)
        .unwrap_or_else(|| panic!("{} has no delivery to {destination} at seq {seq}", view.id))
        .id
        .clone()
}

// ---- 1. submit --------------------------------------------------------------------------

/// A submit stores the intent (message, names as requested, resolved destinations) and
/// one pending delivery per destination, due at once, in destination order.
pub async fn submit_stores_the_intent_and_one_pending_delivery_per_destination(store: &dyn Store) {
    // Deliberately not in alphabetical order: the broadcast keeps the resolved order.
    let mut new = broadcast(&["teams-ops", "slack-incidents", "jira-ops"], at(5));
    new.requested = vec!["p1".into(), "jira-ops".into()];
    new.expires_at = Some(at(7200));
    let expected = new.clone();

    let created = create(store, new).await;
    let stored = view(store, &expected.id).await;

    assert_eq!(stored, created, "the answer to submit differs from what was stored");
    assert_eq!(stored.id, expected.id);
    assert_eq!(stored.idempotency_key, None);
    assert_eq!(stored.requested, vec!["p1", "jira-ops"]);
    assert_eq!(stored.destinations, vec!["teams-ops", "slack-incidents", "jira-ops"]);
    assert_eq!(stored.created_at, at(5));
    assert_eq!(stored.expires_at, Some(at(7200)));
    assert_eq!(
        stored.thread,
        vec![ThreadMessage { seq: 0, message: expected.message.clone(), created_at: at(5) }]
    );
    assert_eq!(stored.deliveries.len(), 3);
    for (stored, new) in stored.deliveries.iter().zip(&expected.deliveries) {
        assert_eq!(stored.id, new.id);
        assert_eq!(stored.destination, new.destination);
        assert_eq!(stored.seq, 0);
        assert_eq!(stored.created_at, at(5));
        assert_eq!(
            stored.progress,
            Progress {
                state: State::Pending,
                attempts: 0,
                max_attempts: MAX_ATTEMPTS,
                next_attempt_at: at(5),
                expires_at: new.expires_at,
                ambiguous: false,
                last_error: None,
                remote_ref: None,
                delivered_at: None,
                unconfirmed: false,
            }
        );
    }

    assert_eq!(store.broadcast("b_does_not_exist").await.unwrap(), None);
}

// ---- 2. idempotent submit (invariant 6) -------------------------------------------------

/// The same key with the same request answers with the original and stores nothing.
pub async fn a_replayed_key_returns_the_original_and_stores_nothing(store: &dyn Store) {
    let original =
        create(store, keyed("inc-4711-open", "fingerprint-1", &["slack", "teams"], at(0))).await;

    let again = keyed("inc-4711-open", "fingerprint-1", &["slack", "teams"], at(3));
    let again_id = again.id.clone();
    let Submitted::Replayed(replayed) = store.submit(again).await.unwrap() else {
        panic!("a replay of the same key and request created a second broadcast");
    };

    assert_eq!(replayed, original, "a replay must answer with the original broadcast");
    assert_eq!(replayed.idempotency_key.as_deref(), Some("inc-4711-open"));
    assert_eq!(store.broadcast(&again_id).await.unwrap(), None);
    assert_eq!(list(store, all(10)).await, vec![original.id.clone()]);
    let stats = store.destination_stats().await.unwrap();
    assert!(stats.iter().all(|s| s.pending == 1), "a replay stored deliveries: {stats:?}");
}

/// The same key with a different request is rejected and stores nothing.
pub async fn a_reused_key_with_another_request_is_a_conflict(store: &dyn Store) {
    let original = create(store, keyed("inc-4711-open", "fingerprint-1", &["slack"], at(0))).await;

    let other = keyed("inc-4711-open", "fingerprint-2", &["slack", "teams"], at(1));
    let other_id = other.id.clone();
    match store.submit(other).await {
        Err(StoreError::KeyConflict { key, existing }) => {
            assert_eq!(key, "inc-4711-open");
            assert_eq!(existing, original.id);
        }
        res => panic!("expected a key conflict, got {res:?}"),
    }

    assert_eq!(store.broadcast(&other_id).await.unwrap(), None);
    assert_eq!(view(store, &original.id).await, original);
    assert_eq!(list(store, all(10)).await, vec![original.id.clone()]);
}

/// Without a key, equal requests are distinct broadcasts.
pub async fn broadcasts_without_a_key_are_never_deduplicated(store: &dyn Store) {
    let first = broadcast(&["slack"], at(0));
    let mut second = broadcast(&["slack"], at(0));
    second.fingerprint = first.fingerprint.clone();
    second.message = first.message.clone();

    let first = create(store, first).await;
    let second = create(store, second).await;

    assert_eq!(list(store, all(10)).await, vec![second.id, first.id]);
}

/// Concurrent submits with one key race for it; exactly one creates the broadcast and
/// every other one is answered with it.
pub async fn concurrent_submits_with_one_key_create_one_broadcast(store: Arc<dyn Store>) {
    let mut tasks = JoinSet::new();
    for n in 0..50 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store.submit(keyed("inc-race", "fingerprint-race", &["slack", "teams"], at(n))).await
        });
    }
    let (mut created, mut replayed) = (Vec::new(), Vec::new());
    while let Some(res) = tasks.join_next().await {
        match res.unwrap().unwrap() {
            Submitted::Created(view) => created.push(view.id),
            Submitted::Replayed(view) => replayed.push(view.id),
        }
    }

    assert_eq!(created.len(), 1, "one key created {} broadcasts", created.len());
    assert_eq!(replayed.len(), 49);
    assert!(
        replayed.iter().all(|id| *id == created[0]),
        "a replay answered with another broadcast"
    );
    assert_eq!(list(store.as_ref(), all(100)).await, created);
    let stats = store.destination_stats().await.unwrap();
    assert!(stats.iter().all(|s| s.pending == 1), "duplicate deliveries were stored: {stats:?}");
}

// ---- 3. claim ---------------------------------------------------------------------------

/// A claim leases only due, pending deliveries of its destination, oldest due first, at
/// most `limit`, and reports when the next remaining one falls due.
pub async fn claim_leases_due_pending_deliveries_oldest_first(store: &dyn Store) {
    let b1 = create(store, broadcast(&["lane", "other"], at(10))).await;
    let b2 = create(store, broadcast(&["lane"], at(5))).await;
    let b3 = create(store, broadcast(&["lane"], at(20))).await;
    let later = create(store, broadcast(&["lane"], at(100))).await;
    let now = at(50);

    let claimed = store.claim(claim_request("lane", 2, now)).await.unwrap();
    assert_eq!(ids(&claimed.work), vec![b2.deliveries[0].id.clone(), b1.deliveries[0].id.clone()]);
    assert_eq!(
        claimed.next_due,
        Some(at(20)),
        "next_due is the earliest remaining pending delivery"
    );
    for (work, origin) in claimed.work.iter().zip([&b2, &b1]) {
        assert_eq!(work.broadcast_id, origin.id);
        assert_eq!(work.created_at, origin.created_at, "a look-up window starts here");
        assert_eq!(work.ambiguous_at, None, "a delivery in no doubt has no doubt's start");
        assert_eq!(work.destination, "lane");
        assert_eq!(work.seq, 0);
        assert_eq!(*work.message, origin.thread[0].message);
        assert_eq!(work.progress.state, State::InFlight);
        assert_eq!(work.progress.attempts, 0);
        assert_eq!(work.original, None);
        assert_eq!(state_of(store, &origin.id, &work.delivery_id).await, State::InFlight);
    }
    // Another destination's delivery of the same broadcast is not touched.
    assert_eq!(state_of(store, &b1.id, &b1.deliveries[1].id).await, State::Pending);

    let claimed = store.claim(claim_request("lane", 10, now)).await.unwrap();
    assert_eq!(ids(&claimed.work), vec![b3.deliveries[0].id.clone()]);
    assert_eq!(claimed.next_due, Some(at(100)));

    // Not due yet: nothing to claim, and it stays pending.
    let claimed = store.claim(claim_request("lane", 10, now)).await.unwrap();
    assert!(claimed.work.is_empty(), "a delivery was claimed before it was due");
    assert_eq!(claimed.next_due, Some(at(100)));
    assert_eq!(state_of(store, &later.id, &later.deliveries[0].id).await, State::Pending);

    // Due at exactly `now`.
    let claimed = store.claim(claim_request("lane", 10, at(100))).await.unwrap();
    assert_eq!(ids(&claimed.work), vec![later.deliveries[0].id.clone()]);
    assert_eq!(claimed.next_due, None);

    assert_eq!(ids(&claim(store, "other", 10, now).await), vec![b1.deliveries[1].id.clone()]);
    let claimed = store.claim(claim_request("nowhere", 10, now)).await.unwrap();
    assert!(claimed.work.is_empty());
    assert_eq!(claimed.next_due, None);
}

/// Every lease of a delivery carries a larger token than the one before, whether it
/// came from a claim or from lease recovery.
pub async fn every_lease_of_a_delivery_has_a_larger_token(store: &dyn Store) {
    create(store, broadcast(&["lane"], at(0))).await;

    let first = claim_one(store, "lane", at(1)).await;
    assert_eq!(store.release(vec![release(&first, at(2))]).await.unwrap().len(), 1);
    let second = claim_one(store, "lane", at(2)).await;
    assert_eq!(second.delivery_id, first.delivery_id);
    assert!(
        second.lease_token > first.lease_token,
        "{} then {}",
        first.lease_token,
        second.lease_token
    );

    let third = store.claim_expired(at(2).add(LEASE), at(100), 10).await.unwrap();
    assert_eq!(ids(&third), vec![first.delivery_id.clone()]);
    assert!(
        third[0].lease_token > second.lease_token,
        "{} then {}",
        second.lease_token,
        third[0].lease_token
    );
}

// ---- 4. one worker at a time (invariant 2) ----------------------------------------------

/// What the workers of [`concurrent_claims_never_share_a_leased_delivery`] saw.
#[derive(Default)]
struct Ledger {
    /// Deliveries some worker holds right now, with the token it holds.
    leased: HashMap<String, i64>,
    /// Every token each delivery was leased with, in order.
    tokens: HashMap<String, Vec<i64>>,
}

/// Eight workers claim the same lane concurrently while handing some work back; no
/// delivery is ever leased to two of them at once, and every one is delivered once.
pub async fn concurrent_claims_never_share_a_leased_delivery(store: Arc<dyn Store>) {
    const DELIVERIES: usize = 200;
    const WORKERS: usize = 8;

    let mut submits = JoinSet::new();
    for n in 0..DELIVERIES + 10 {
        let store = Arc::clone(&store);
        // Ten deliveries of another lane must never be handed out.
        let destination = if n < DELIVERIES { "lane" } else { "elsewhere" };
        submits
            .spawn(async move { create(store.as_ref(), broadcast(&[destination], at(0))).await });
    }
    let mut expected = HashSet::new();
    while let Some(view) = submits.join_next().await {
        let view = view.unwrap();
        if view.destinations == ["lane"] {
            expected.insert(view.deliveries[0].id.clone());
        }
    }

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let delivered = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..WORKERS {
        let (store, ledger, delivered) =
            (Arc::clone(&store), Arc::clone(&ledger), Arc::clone(&delivered));
        workers.spawn(async move {
            let now = at(1);
            let mut rounds = 0;
            while delivered.load(Ordering::SeqCst) < DELIVERIES {
                rounds += 1;
                assert!(rounds < 100_000, "the workers stopped making progress");
                let work = store.claim(claim_request("lane", 5, now)).await.unwrap().work;
                if work.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                let mut to_release = Vec::new();
                let mut to_record = Vec::new();
                {
                    let mut ledger = ledger.lock().unwrap();
                    for w in work {
                        assert_eq!(w.destination, "lane");
                        if let Some(held) =
                            ledger.leased.insert(w.delivery_id.clone(), w.lease_token)
                        {
                            panic!(
                                "{} was leased again (token {}) while still held (token {held})",
                                w.delivery_id, w.lease_token
                            );
                        }
                        let n_seen = ledger.tokens.len();
                        let tokens = ledger.tokens.entry(w.delivery_id.clone()).or_default();
                        if let Some(last) = tokens.last() {
                            assert!(
                                w.lease_token > *last,
                                "token went from {last} to {}",
                                w.lease_token
                            );
                        }
                        tokens.push(w.lease_token);
                        // Every third delivery goes back once, so deliveries come due again
                        // while others are still leased.
                        if tokens.len() == 1 && n_seen % 3 == 0 {
                            to_release.push(w);
                        } else {
                            to_record.push(w);
                        }
                    }
                }
                // Hold the leases across a yield so the other workers claim meanwhile.
                tokio::task::yield_now().await;
                {
                    // Leave the ledger before the lease ends in the store: a claim after
                    // that is legitimate.
                    let mut ledger = ledger.lock().unwrap();
                    for w in to_release.iter().chain(&to_record) {
                        ledger.leased.remove(&w.delivery_id);
                    }
                }
                let releases = to_release.iter().map(|w| release(w, now)).collect();
                assert_eq!(store.release(releases).await.unwrap().len(), to_release.len());
                let records = to_record.iter().map(|w| delivered_record(w, now)).collect();
                assert_eq!(store.record(records).await.unwrap().len(), to_record.len());
                delivered.fetch_add(to_record.len(), Ordering::SeqCst);
            }
        });
    }
    while let Some(res) = workers.join_next().await {
        res.unwrap();
    }

    let tokens = std::mem::take(&mut ledger.lock().unwrap().tokens);
    let claimed: HashSet<String> = tokens.keys().cloned().collect();
    assert_eq!(claimed, expected, "the claimed deliveries are not exactly the lane's");
    assert!(tokens.values().any(|tokens| tokens.len() == 2), "no delivery was claimed twice");
    let stats = store.destination_stats().await.unwrap();
    let lane = stats.iter().find(|s| s.destination == "lane").unwrap();
    assert_eq!((lane.delivered, lane.pending, lane.in_flight), (DELIVERIES as u64, 0, 0));
    let elsewhere = stats.iter().find(|s| s.destination == "elsewhere").unwrap();
    assert_eq!((elsewhere.pending, elsewhere.in_flight), (10, 0));
}

fn delivered_record(work: &Work, now: Timestamp) -> herald_store::Record {
    delivered(work, &format!("ref-{}", work.delivery_id), now)
}

// ---- 5. fencing -------------------------------------------------------------------------

/// A record under a lease that moved on is logged as an attempt but changes nothing;
/// the current lease's record applies once.
pub async fn a_record_with_a_stale_token_changes_nothing_but_is_logged(store: &dyn Store) {
    let b = create(store, broadcast(&["lane"], at(0))).await;
    let stale = claim_one(store, "lane", at(1)).await;
    // The first worker stalls past its lease; recovery hands the delivery to another.
    let current = store.claim_expired(at(1).add(LEASE), at(100), 10).await.unwrap();
    assert_eq!(ids(&current), vec![stale.delivery_id.clone()]);
    let current = &current[0];

    let changes = store.record(vec![retry_at(&stale, at(50), at(40))]).await.unwrap();
    assert_eq!(changes, vec![], "a stale token's record was applied");
    let d = delivery_view(store, &b.id, &stale.delivery_id).await;
    assert_eq!(d.progress.state, State::InFlight);
    assert_eq!((d.progress.attempts, d.progress.remote_ref), (0, None));

    let changes = store.record(vec![delivered(current, "ref-current", at(41))]).await.unwrap();
    assert_eq!(states_of(&changes), vec![(current.delivery_id.clone(), 0, State::Delivered)]);
    assert_eq!(
        (changes[0].broadcast_id.as_str(), changes[0].destination.as_str()),
        (b.id.as_str(), "lane")
    );
    let d = delivery_view(store, &b.id, &stale.delivery_id).await;
    assert_eq!(d.progress.state, State::Delivered);
    assert_eq!(d.progress.remote_ref.as_deref(), Some("ref-current"));
    assert_eq!((d.progress.attempts, d.progress.delivered_at), (1, Some(at(41))));

    // The same token again (a retried batch): applied only once.
    let changes = store.record(vec![rejected(current, at(42))]).await.unwrap();
    assert_eq!(changes, vec![], "a second record under one lease was applied");
    assert_eq!(delivery_view(store, &b.id, &stale.delivery_id).await, d);

    let log = store.attempts(&b.id).await.unwrap();
    let outcomes: Vec<&str> = log.iter().map(|a| a.attempt.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["retry", "delivered", "permanent"]);
    let not_applied =
        |idx: usize| log[idx].attempt.detail.as_deref().unwrap_or("").contains("not applied");
    assert!(not_applied(0), "the stale attempt lacks the note: {:?}", log[0].attempt.detail);
    assert!(!not_applied(1), "the applied attempt has the note: {:?}", log[1].attempt.detail);
    assert!(not_applied(2), "the repeated attempt lacks the note: {:?}", log[2].attempt.detail);
    assert!(log.iter().all(|a| a.delivery_id == stale.delivery_id && a.destination == "lane"));
}

/// A `Delivered` answer under a lease that moved on is the truth about the destination:
/// it is recorded over the newer lease (fencing that one out) while the delivery has not
/// ended, and left in the log only once the delivery ended some other way.
pub async fn a_late_delivered_answer_is_recorded_over_a_newer_lease(store: &dyn Store) {
    let b = create(store, broadcast(&["lane"], at(0))).await;
    let u = store.add_update(update(&b, "resolved", at(0))).await.unwrap();
    let stale = claim_one(store, "lane", at(1)).await;
    let current = store.claim_expired(at(1).add(LEASE), at(100), 10).await.unwrap();
    assert_eq!(ids(&current), vec![stale.delivery_id.clone()]);

    let changes = store.record(vec![delivered(&stale, "ref-late", at(40))]).await.unwrap();
    let update_id = u.changes[0].delivery_id.clone();
    assert_eq!(
        states_of(&changes),
        vec![(stale.delivery_id.clone(), 0, State::Delivered), (update_id, 1, State::Pending)],
        "the late answer was not recorded, or its successor not released"
    );
    let d = delivery_view(store, &b.id, &stale.delivery_id).await;
    assert_eq!(d.progress.remote_ref.as_deref(), Some("ref-late"));
    // The newer lease is fenced out now.
    assert_eq!(store.record(vec![retry_at(&current[0], at(60), at(41))]).await.unwrap(), vec![]);

    // Once the delivery ended otherwise (an operator cancelled it), a late answer changes
    // nothing but is logged.
    let c = create(store, broadcast(&["other"], at(50))).await;
    let work = claim_one(store, "other", at(51)).await;
    assert_eq!(work.broadcast_id, c.id);
    store.cancel_delivery(&work.delivery_id, at(52)).await.unwrap();
    assert_eq!(store.record(vec![delivered(&work, "ref-ghost", at(53))]).await.unwrap(), vec![]);
    assert_eq!(state_of(store, &c.id, &work.delivery_id).await, State::Cancelled);
    let log = store.attempts(&c.id).await.unwrap();
    assert_eq!(log.len(), 1);
    assert!(log[0].attempt.detail.as_deref().unwrap_or("").contains("not applied"));
}

// ---- 6. lease recovery (invariant 3) ----------------------------------------------------

/// Only leases that ran out are recovered, each with a new token that fences the old
/// worker out; leases still running and pending deliveries are left alone.
pub async fn claim_expired_re_leases_only_expired_leases(store: &dyn Store) {
    let b = create(store, broadcast(&["short", "long", "idle"], at(0))).await;
    let lease = |destination: &str, until: Timestamp| ClaimRequest {
        destination: destination.into(),
        limit: 1,
        now: at(1),
        lease_until: until,
        probe: false,
    };
    let short = store.claim(lease("short", at(10))).await.unwrap().work.remove(0);
    let long = store.claim(lease("long", at(60))).await.unwrap().work.remove(0);

    assert_eq!(
        store.claim_expired(at(9), at(100), 10).await.unwrap(),
        vec![],
        "a running lease was taken"
    );

    let recovered = store.claim_expired(at(10), at(100), 10).await.unwrap();
    assert_eq!(ids(&recovered), vec![short.delivery_id.clone()], "a lease expires at lease_until");
    let recovered = &recovered[0];
    assert!(recovered.lease_token > short.lease_token);
    assert_eq!(
        (recovered.broadcast_id.as_str(), recovered.destination.as_str()),
        (b.id.as_str(), "short")
    );
    assert_eq!(recovered.progress.state, State::InFlight);
    assert_eq!(*recovered.message, b.thread[0].message);

    // The new lease runs until its own `lease_until`.
    assert_eq!(store.claim_expired(at(59), at(200), 10).await.unwrap(), vec![]);

    // The stalled worker is fenced out; the running lease and the new one both hold.
    assert_eq!(store.record(vec![retry_at(&short, at(30), at(11))]).await.unwrap(), vec![]);
    let changes = store.record(vec![delivered(&long, "ref-long", at(12))]).await.unwrap();
    assert_eq!(states_of(&changes), vec![(long.delivery_id.clone(), 0, State::Delivered)]);
    let changes = store.record(vec![retry_at(recovered, at(20), at(13))]).await.unwrap();
    assert_eq!(states_of(&changes), vec![(short.delivery_id.clone(), 0, State::Pending)]);
    assert_eq!(state_of(store, &b.id, &delivery_id(&b, "idle", 0)).await, State::Pending);

    // At most `limit` at a time.
    for _ in 0..3 {
        create(store, broadcast(&["batch"], at(0))).await;
    }
    store.claim(ClaimRequest { limit: 3, ..lease("batch", at(30)) }).await.unwrap();
    assert_eq!(store.claim_expired(at(30), at(300), 2).await.unwrap().len(), 2);
    assert_eq!(store.claim_expired(at(30), at(300), 2).await.unwrap().len(), 1);
}

// ---- 7. crash recovery (invariants 1 and 3) ---------------------------------------------

/// A store that stops without recording anything (a crash) loses nothing on restart:
/// every broadcast, message and delivery is there, the interrupted attempt is still in
/// flight until recovery re-leases it, and its crashed worker is fenced out.
pub async fn a_restart_keeps_every_accepted_delivery(open: Open<'_>) {
    let store = open();
    let b = create(store.as_ref(), broadcast(&["a", "b", "c"], at(0))).await;
    let interrupted = claim_one(store.as_ref(), "a", at(1)).await;
    let done = claim_one(store.as_ref(), "b", at(1)).await;
    store.record(vec![delivered(&done, "ref-b", at(2))]).await.unwrap();
    store.add_update(update(&b, "resolved", at(3))).await.unwrap();
    drop(store);

    let store = open();
    let after = view(store.as_ref(), &b.id).await;
    assert_eq!(after.thread.len(), 2);
    assert_eq!(after.thread[0].message, b.thread[0].message);
    assert_eq!(after.thread[1].message, message("resolved"));
    let states: Vec<(&str, u32, State)> = after
        .deliveries
        .iter()
        .map(|d| (d.destination.as_str(), d.seq, d.progress.state.clone()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("a", 0, State::InFlight),
            ("b", 0, State::Delivered),
            ("c", 0, State::Pending),
            ("a", 1, State::Waiting),
            ("b", 1, State::Pending),
            ("c", 1, State::Waiting),
        ]
    );

    let recovered = store.claim_expired(at(1).add(LEASE), at(100), 10).await.unwrap();
    assert_eq!(ids(&recovered), vec![interrupted.delivery_id.clone()]);
    assert!(recovered[0].lease_token > interrupted.lease_token);
    assert_eq!(store.record(vec![retry_at(&interrupted, at(50), at(40))]).await.unwrap(), vec![]);

    let resumed = claim_one(store.as_ref(), "b", at(40)).await;
    assert_eq!(resumed.delivery_id, delivery_id(&after, "b", 1));
    assert_eq!(
        resumed.original.as_ref().map(|o| o.delivery_id.as_str()),
        Some(b.deliveries[1].id.as_str())
    );
    assert_eq!(resumed.original.as_ref().and_then(|o| o.remote_ref.as_deref()), Some("ref-b"));
    assert_eq!(claim_one(store.as_ref(), "c", at(40)).await.delivery_id, b.deliveries[2].id);
}

// ---- 8. order per thread (invariant 5) --------------------------------------------------

/// An update starts behind its predecessor on each destination: pending where that was
/// delivered, waiting where it is still open, failed where it failed; delivering the
/// predecessor releases exactly the next update.
pub async fn updates_wait_for_their_predecessor_on_each_destination(store: &dyn Store) {
    let b = create(store, broadcast(&["a", "b", "c", "d"], at(0))).await;
    let a0 = claim_one(store, "a", at(1)).await;
    store.record(vec![delivered(&a0, "ref-a", at(1))]).await.unwrap();
    let b0 = claim_one(store, "b", at(1)).await;
    store.record(vec![rejected(&b0, at(1))]).await.unwrap();
    let c0 = claim_one(store, "c", at(1)).await;
    // d's original stays pending.

    let first = store.add_update(update(&b, "update 1", at(5))).await.unwrap();
    assert_eq!(first.seq, 1);
    let view1 = &first.broadcast;
    let expect1 = vec![
        (delivery_id(view1, "a", 1), 1, State::Pending),
        (delivery_id(view1, "b", 1), 1, State::Failed(FailReason::PredecessorFailed)),
        (delivery_id(view1, "c", 1), 1, State::Waiting),
        (delivery_id(view1, "d", 1), 1, State::Waiting),
    ];
    assert_eq!(states_of(&first.changes), expect1);
    assert!(first.changes.iter().all(|c| c.broadcast_id == b.id));
    assert_eq!(view1.thread.len(), 2);
    assert_eq!((view1.thread[1].seq, &view1.thread[1].message), (1, &message("update 1")));
    assert_eq!(*view1, view(store, &b.id).await, "the answer differs from what was stored");
    let a1 = view1.deliveries.iter().find(|d| d.destination == "a" && d.seq == 1).unwrap();
    assert_eq!(a1.progress.next_attempt_at, at(5), "an update is due when accepted");

    let second = store.add_update(update(&b, "update 2", at(6))).await.unwrap();
    assert_eq!(second.seq, 2);
    let view2 = &second.broadcast;
    assert_eq!(
        states_of(&second.changes),
        vec![
            // a's first update is pending, not delivered: the second waits behind it.
            (delivery_id(view2, "a", 2), 2, State::Waiting),
            (delivery_id(view2, "b", 2), 2, State::Failed(FailReason::PredecessorFailed)),
            (delivery_id(view2, "c", 2), 2, State::Waiting),
            (delivery_id(view2, "d", 2), 2, State::Waiting),
        ]
    );
    assert_eq!(view2.thread.len(), 3);

    // Delivering c's original releases its first update, and only that one.
    let changes = store.record(vec![delivered(&c0, "ref-c", at(7))]).await.unwrap();
    assert_eq!(
        states_of(&changes),
        vec![
            (c0.delivery_id.clone(), 0, State::Delivered),
            (delivery_id(view2, "c", 1), 1, State::Pending)
        ]
    );
    assert_eq!(changes[1].next_attempt_at, at(7), "a released update is due when released");
    assert_eq!(state_of(store, &b.id, &delivery_id(view2, "c", 2)).await, State::Waiting);

    // The update is claimed with what the connector needs to thread it.
    let c1 = claim_one(store, "c", at(7)).await;
    assert_eq!((c1.delivery_id.clone(), c1.seq), (delivery_id(view2, "c", 1), 1));
    assert_eq!(c1.original.as_ref().map(|o| o.delivery_id.as_str()), Some(c0.delivery_id.as_str()));
    assert_eq!(c1.original.as_ref().and_then(|o| o.remote_ref.as_deref()), Some("ref-c"));
    assert_eq!(*c1.message, message("update 1"));
    let original = c1.original.as_ref().unwrap();
    assert_eq!(*original.message, b.thread[0].message, "the original message, to quote or edit");
    assert_eq!(original.at, at(7), "when the original was delivered there");
    assert_eq!(c1.created_at, at(5), "the update's delivery was created with the update");

    // Further down the thread, the reference is still the original's.
    let a1 = claim_one(store, "a", at(8)).await;
    assert_eq!(a1.seq, 1);
    let changes = store.record(vec![delivered(&a1, "ref-a1", at(8))]).await.unwrap();
    assert_eq!(states_of(&changes)[1], (delivery_id(view2, "a", 2), 2, State::Pending));
    let a2 = claim_one(store, "a", at(9)).await;
    assert_eq!(a2.seq, 2);
    assert_eq!(a2.original.as_ref().map(|o| o.delivery_id.as_str()), Some(a0.delivery_id.as_str()));
    assert_eq!(a2.original.as_ref().and_then(|o| o.remote_ref.as_deref()), Some("ref-a"));
    assert_eq!(*a2.message, message("update 2"));
}

/// An original that fails on a destination fails every update waiting behind it there.
pub async fn a_failed_original_fails_every_update_behind_it(store: &dyn Store) {
    let b = create(store, broadcast(&["a"], at(0))).await;
    let original = claim_one(store, "a", at(1)).await;
    let first = store.add_update(update(&b, "update 1", at(2))).await.unwrap();
    let second = store.add_update(update(&b, "update 2", at(3))).await.unwrap();
    assert_eq!(first.changes[0].state, State::Waiting);
    assert_eq!(second.changes[0].state, State::Waiting);

    let changes = store.record(vec![rejected(&original, at(4))]).await.unwrap();
    let (first_id, second_id) =
        (first.changes[0].delivery_id.clone(), second.changes[0].delivery_id.clone());
    assert_eq!(
        states_of(&changes),
        vec![
            (original.delivery_id.clone(), 0, State::Failed(FailReason::Permanent)),
            (first_id.clone(), 1, State::Failed(FailReason::PredecessorFailed)),
            (second_id.clone(), 2, State::Failed(FailReason::PredecessorFailed)),
        ]
    );
    assert_eq!(
        state_of(store, &b.id, &first_id).await,
        State::Failed(FailReason::PredecessorFailed)
    );
    assert_eq!(
        state_of(store, &b.id, &second_id).await,
        State::Failed(FailReason::PredecessorFailed)
    );
    let claimed = store.claim(claim_request("a", 10, at(5))).await.unwrap();
    assert_eq!((claimed.work, claimed.next_due), (vec![], None));
}

/// Cancelling an original fails its waiting update on that destination only.
pub async fn cancelling_an_original_fails_its_waiting_update(store: &dyn Store) {
    let b = create(store, broadcast(&["a", "b"], at(0))).await;
    let added = store.add_update(update(&b, "update 1", at(1))).await.unwrap();
    let (a1, b1) = (delivery_id(&added.broadcast, "a", 1), delivery_id(&added.broadcast, "b", 1));

    let changes = store.cancel_delivery(&b.deliveries[0].id, at(2)).await.unwrap();
    assert_eq!(
        states_of(&changes),
        vec![
            (b.deliveries[0].id.clone(), 0, State::Cancelled),
            (a1.clone(), 1, State::Failed(FailReason::PredecessorFailed)),
        ]
    );
    assert_eq!(state_of(store, &b.id, &a1).await, State::Failed(FailReason::PredecessorFailed));
    assert_eq!(state_of(store, &b.id, &b1).await, State::Waiting);
    assert_eq!(state_of(store, &b.id, &b.deliveries[1].id).await, State::Pending);
}

/// An update that skipped a destination still orders that destination's next update
/// behind the destination's last message, and releases it when that one is delivered.
pub async fn an_update_behind_a_skipped_destination_still_waits(store: &dyn Store) {
    let b = create(store, broadcast(&["a", "b"], at(0))).await;
    // The first update goes to `a` only.
    let only_a =
        NewUpdate { deliveries: vec![delivery("a", at(1))], ..update(&b, "update 1", at(1)) };
    let first = store.add_update(only_a).await.unwrap();
    assert_eq!(first.changes.len(), 1);

    let second = store.add_update(update(&b, "update 2", at(2))).await.unwrap();
    let b2 = delivery_id(&second.broadcast, "b", 2);
    let b2_state = second.changes.iter().find(|c| c.delivery_id == b2).map(|c| c.state.clone());
    assert_eq!(b2_state, Some(State::Waiting), "an update overtook the undelivered original");

    let original = claim_one(store, "b", at(3)).await;
    let changes = store.record(vec![delivered(&original, "ref-b", at(3))]).await.unwrap();
    assert_eq!(
        states_of(&changes)[1..],
        [(b2.clone(), 2, State::Pending)],
        "the update was never released"
    );
    let claimed = claim_one(store, "b", at(4)).await;
    assert_eq!(claimed.delivery_id, b2);
    assert_eq!(
        claimed.original.as_ref().map(|o| o.delivery_id.as_str()),
        Some(original.delivery_id.as_str())
    );
}

/// An update needs its broadcast.
pub async fn an_update_to_an_unknown_broadcast_is_not_found(store: &dyn Store) {
    let missing = NewUpdate {
        broadcast_id: "b_does_not_exist".into(),
        message: message("update"),
        created_at: at(0),
        deliveries: vec![delivery("a", at(0))],
        idempotency: None,
    };
    match store.add_update(missing).await {
        Err(StoreError::NotFound { what, id }) => {
            assert_eq!((what, id.as_str()), ("broadcast", "b_does_not_exist"))
        }
        res => panic!("expected not found, got {res:?}"),
    }
    assert_eq!(store.destination_stats().await.unwrap(), vec![]);
}

// ---- 9. release -------------------------------------------------------------------------

/// A released lease makes the delivery pending again without using an attempt; a
/// release under a lease that moved on does nothing.
pub async fn release_returns_a_delivery_without_using_an_attempt(store: &dyn Store) {
    let b = create(store, broadcast(&["a"], at(0))).await;
    let first = claim_one(store, "a", at(1)).await;
    store.record(vec![retry_at(&first, at(2), at(1))]).await.unwrap();
    let second = claim_one(store, "a", at(2)).await;
    assert_eq!(second.progress.attempts, 1);

    let changes = store.release(vec![release(&second, at(4))]).await.unwrap();
    assert_eq!(states_of(&changes), vec![(second.delivery_id.clone(), 0, State::Pending)]);
    assert_eq!(changes[0].next_attempt_at, at(4));
    let d = delivery_view(store, &b.id, &second.delivery_id).await;
    assert_eq!(d.progress.state, State::Pending);
    assert_eq!((d.progress.attempts, d.progress.next_attempt_at), (1, at(4)));
    assert_eq!(d.progress.last_error.as_deref(), Some("503 service unavailable"));

    let claimed = store.claim(claim_request("a", 1, at(3))).await.unwrap();
    assert_eq!((claimed.work, claimed.next_due), (vec![], Some(at(4))));
    let third = claim_one(store, "a", at(4)).await;
    assert!(third.lease_token > second.lease_token);

    assert_eq!(
        store.release(vec![release(&second, at(5))]).await.unwrap(),
        vec![],
        "a stale release applied"
    );
    assert_eq!(state_of(store, &b.id, &second.delivery_id).await, State::InFlight);
    // The current lease is intact.
    let changes = store.record(vec![delivered(&third, "ref-a", at(6))]).await.unwrap();
    assert_eq!(states_of(&changes), vec![(third.delivery_id.clone(), 0, State::Delivered)]);
    assert_eq!(delivery_view(store, &b.id, &third.delivery_id).await.progress.attempts, 2);
}

// ---- 10. operator retry and cancel ------------------------------------------------------

fn assert_not_allowed(res: Result<Vec<Change>, StoreError>, id: &str, action: &str) {
    match res {
        Err(StoreError::NotAllowed { id: got, action: got_action, .. }) => {
            assert_eq!((got.as_str(), got_action), (id, action));
        }
        res => panic!("expected {action} of {id} to be refused, got {res:?}"),
    }
}

fn assert_not_found(res: Result<Vec<Change>, StoreError>) {
    match res {
        Err(StoreError::NotFound { what, .. }) => assert_eq!(what, "delivery"),
        res => panic!("expected not found, got {res:?}"),
    }
}

/// Leases one delivery of every destination of `view` at `now`, by destination.
async fn claim_each(
    store: &dyn Store,
    view: &BroadcastView,
    now: Timestamp,
) -> HashMap<String, Work> {
    let mut res = HashMap::new();
    for destination in &view.destinations {
        res.insert(destination.clone(), claim_one(store, destination, now).await);
    }
    res
}

/// An operator can retry held, failed and pending deliveries (due now, with a fresh
/// budget), but not delivered, cancelled, in-flight or waiting ones.
pub async fn operator_retry_applies_to_held_failed_and_pending_only(store: &dyn Store) {
    let names = ["held", "failed", "pending", "delivered", "cancelled", "in-flight"];
    let b = create(store, broadcast(&names, at(0))).await;
    let work = claim_each(store, &b, at(1)).await;
    store
        .record(vec![
            held(&work["held"], at(1)),
            rejected(&work["failed"], at(1)),
            retry_at(&work["pending"], at(600), at(1)),
            delivered(&work["delivered"], "ref", at(1)),
        ])
        .await
        .unwrap();
    store.release(vec![release(&work["cancelled"], at(1))]).await.unwrap();
    store.cancel_delivery(&work["cancelled"].delivery_id, at(1)).await.unwrap();
    let added = store.add_update(update(&b, "update", at(2))).await.unwrap();
    let waiting = delivery_id(&added.broadcast, "held", 1);
    let predecessor_failed = delivery_id(&added.broadcast, "failed", 1);
    let policy = RetryPolicy::default();
    let now = at(10);
    // The update of a failed original goes again with its original, not on its own.
    assert_not_allowed(
        store.retry_delivery(&predecessor_failed, &policy, now).await,
        &predecessor_failed,
        "retry",
    );
    let lost = State::Failed(FailReason::PredecessorFailed);
    assert_eq!(state_of(store, &b.id, &predecessor_failed).await, lost);

    for name in ["held", "failed", "pending"] {
        let id = &work[name].delivery_id;
        let changes = store.retry_delivery(id, &policy, now).await.unwrap();
        assert_eq!(
            states_of(&changes[..1]),
            vec![(id.clone(), 0, State::Pending)],
            "retry of {name}"
        );
        assert_eq!(changes[0].next_attempt_at, now);
        let d = delivery_view(store, &b.id, id).await;
        assert_eq!(
            (d.progress.state, d.progress.attempts, d.progress.next_attempt_at),
            (State::Pending, 0, now)
        );
        assert_eq!(
            claim_one(store, name, now).await.delivery_id,
            *id,
            "a retried {name} delivery is due now"
        );
    }

    let refused = [
        ("delivered", work["delivered"].delivery_id.clone(), State::Delivered),
        ("cancelled", work["cancelled"].delivery_id.clone(), State::Cancelled),
        ("in-flight", work["in-flight"].delivery_id.clone(), State::InFlight),
        ("waiting", waiting, State::Waiting),
        // Revived by the retry of its original, it waits for that one again.
        ("revived", predecessor_failed, State::Waiting),
    ];
    for (name, id, state) in refused {
        assert_not_allowed(store.retry_delivery(&id, &policy, now).await, &id, "retry");
        assert_eq!(state_of(store, &b.id, &id).await, state, "a refused retry changed {name}");
    }
    assert_not_found(store.retry_delivery("d_does_not_exist", &policy, now).await);
}

/// An operator can cancel any delivery that has not ended; cancelling an in-flight one
/// fences out its worker's later record.
pub async fn operator_cancel_applies_to_unfinished_deliveries(store: &dyn Store) {
    let names = ["pending", "held", "in-flight", "delivered", "failed"];
    let b = create(store, broadcast(&names, at(0))).await;
    let work = claim_each(store, &b, at(1)).await;
    store.release(vec![release(&work["pending"], at(1))]).await.unwrap();
    store
        .record(vec![
            held(&work["held"], at(1)),
            delivered(&work["delivered"], "ref", at(1)),
            rejected(&work["failed"], at(1)),
        ])
        .await
        .unwrap();

    for name in ["pending", "held", "in-flight"] {
        let id = &work[name].delivery_id;
        let changes = store.cancel_delivery(id, at(2)).await.unwrap();
        assert_eq!(
            states_of(&changes),
            vec![(id.clone(), 0, State::Cancelled)],
            "cancel of {name}"
        );
        assert_eq!(state_of(store, &b.id, id).await, State::Cancelled);
    }

    // The in-flight attempt comes back after the cancel: logged, not applied.
    let late = &work["in-flight"];
    assert_eq!(store.record(vec![delivered(late, "ref-late", at(3))]).await.unwrap(), vec![]);
    assert_eq!(state_of(store, &b.id, &late.delivery_id).await, State::Cancelled);
    let log = store.attempts(&b.id).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.delivery_id, late.delivery_id);
    assert!(last.attempt.detail.as_deref().unwrap_or("").contains("not applied"), "{last:?}");
    assert_eq!(
        store.claim_expired(at(1000), at(2000), 10).await.unwrap(),
        vec![],
        "a cancelled lease was recovered"
    );

    let refused = [
        ("delivered", State::Delivered),
        ("failed", State::Failed(FailReason::Permanent)),
        ("pending", State::Cancelled),
    ];
    for (name, state) in refused {
        let id = &work[name].delivery_id;
        assert_not_allowed(store.cancel_delivery(id, at(4)).await, id, "cancel");
        assert_eq!(state_of(store, &b.id, id).await, state, "a refused cancel changed {name}");
    }
    assert_not_found(store.cancel_delivery("d_does_not_exist", at(4)).await);
}

// ---- 11. queries ------------------------------------------------------------------------

/// `list` is newest first, and following its cursor visits every broadcast once.
pub async fn list_pages_newest_first_and_covers_everything_once(store: &dyn Store) {
    let mut created = Vec::new();
    for n in 0..7 {
        created.push(create(store, broadcast(&["a"], at(n))).await.id);
    }
    created.reverse();

    assert_eq!(list(store, all(3)).await, created[..3]);
    assert_eq!(every_page(store, all(3)).await, created);
    assert_eq!(every_page(store, all(1)).await, created);
    assert_eq!(every_page(store, all(7)).await, created);
}

/// `list` filters by destination and by overall state, also while paging.
pub async fn list_filters_by_destination_and_state(store: &dyn Store) {
    let all_delivered = create(store, broadcast(&["a", "b"], at(0))).await;
    let in_progress = create(store, broadcast(&["a"], at(0))).await;
    let failed = create(store, broadcast(&["b"], at(0))).await;
    let partial = create(store, broadcast(&["a", "b"], at(0))).await;
    let cancelled = create(store, broadcast(&["c"], at(0))).await;
    let mut work: HashMap<(String, String), Work> = HashMap::new();
    for destination in ["a", "b"] {
        for w in claim(store, destination, 10, at(1)).await {
            work.insert((w.broadcast_id.clone(), destination.to_string()), w);
        }
    }
    let of = |view: &BroadcastView, destination: &str| {
        &work[&(view.id.clone(), destination.to_string())]
    };
    store
        .record(vec![
            delivered(of(&all_delivered, "a"), "r1", at(2)),
            delivered(of(&all_delivered, "b"), "r2", at(2)),
            rejected(of(&failed, "b"), at(2)),
            delivered(of(&partial, "a"), "r3", at(2)),
            rejected(of(&partial, "b"), at(2)),
        ])
        .await
        .unwrap();
    store.cancel_delivery(&cancelled.deliveries[0].id, at(2)).await.unwrap();

    let query = |state: Option<BroadcastState>, destination: Option<&str>| ListQuery {
        state,
        destination: destination.map(String::from),
        cursor: None,
        limit: 10,
        held: false,
    };
    let ids_of = |views: &[&BroadcastView]| views.iter().map(|v| v.id.clone()).collect::<Vec<_>>();

    assert_eq!(
        list(store, query(None, Some("a"))).await,
        ids_of(&[&partial, &in_progress, &all_delivered])
    );
    assert_eq!(list(store, query(None, Some("c"))).await, ids_of(&[&cancelled]));
    assert_eq!(list(store, query(None, Some("nowhere"))).await, Vec::<String>::new());
    let by_state = [
        (BroadcastState::Delivered, &all_delivered),
        (BroadcastState::InProgress, &in_progress),
        (BroadcastState::Failed, &failed),
        (BroadcastState::PartiallyFailed, &partial),
        (BroadcastState::Cancelled, &cancelled),
    ];
    for (state, expected) in by_state {
        assert_eq!(
            list(store, query(Some(state), None)).await,
            ids_of(&[expected]),
            "state {}",
            state.as_str()
        );
    }
    assert_eq!(
        list(store, query(Some(BroadcastState::Delivered), Some("b"))).await,
        ids_of(&[&all_delivered])
    );
    assert_eq!(
        list(store, query(Some(BroadcastState::Failed), Some("a"))).await,
        Vec::<String>::new()
    );

    // Filters hold across pages.
    let one_per_page = |state, destination| ListQuery { limit: 1, ..query(state, destination) };
    assert_eq!(
        every_page(store, one_per_page(Some(BroadcastState::InProgress), None)).await,
        ids_of(&[&in_progress])
    );
    assert_eq!(
        every_page(store, one_per_page(None, Some("b"))).await,
        ids_of(&[&partial, &failed, &all_delivered])
    );
}

/// The attempt log holds every logged attempt of one broadcast, in the order recorded,
/// exactly as recorded.
pub async fn attempts_returns_the_log_in_order(store: &dyn Store) {
    let b = create(store, broadcast(&["a", "b"], at(0))).await;
    let other = create(store, broadcast(&["z"], at(0))).await;

    let a_first = claim_one(store, "a", at(1)).await;
    let b_only = claim_one(store, "b", at(1)).await;
    let z_only = claim_one(store, "z", at(1)).await;
    let r1 = retry_at(&a_first, at(2), at(1));
    let r2 = delivered(&b_only, "ref-b", at(1));
    let r3 = rejected(&z_only, at(1));
    store.record(vec![r1.clone(), r2.clone(), r3.clone()]).await.unwrap();
    let a_second = claim_one(store, "a", at(2)).await;
    let r4 = delivered(&a_second, "ref-a", at(3));
    store.record(vec![r4.clone()]).await.unwrap();

    let logged = |r: &herald_store::Record| -> (String, AttemptRecord) {
        (r.delivery_id.clone(), r.attempt.clone().unwrap())
    };
    let log: Vec<(String, AttemptRecord)> = store
        .attempts(&b.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.delivery_id, a.attempt))
        .collect();
    assert_eq!(log, vec![logged(&r1), logged(&r2), logged(&r4)]);
    assert_eq!(log[0].1.number, 1);
    assert_eq!(log[2].1.number, 2);
    let destinations: Vec<String> =
        store.attempts(&b.id).await.unwrap().into_iter().map(|a| a.destination).collect();
    assert_eq!(destinations, vec!["a", "b", "a"]);

    let other_log = store.attempts(&other.id).await.unwrap();
    assert_eq!(other_log.len(), 1);
    assert_eq!((other_log[0].delivery_id.clone(), other_log[0].attempt.clone()), logged(&r3));
    assert_eq!(store.attempts("b_does_not_exist").await.unwrap(), vec![]);
}

/// A record without an attempt (nothing was sent) changes state but logs nothing.
pub async fn a_record_without_an_attempt_logs_nothing(store: &dyn Store) {
    let b = create(store, broadcast(&["a"], at(0))).await;
    let work = claim_one(store, "a", at(1)).await;
    let mut progress = work.progress.clone();
    progress.state = State::Failed(FailReason::Expired);
    let record = herald_store::Record {
        delivery_id: work.delivery_id.clone(),
        lease_token: work.lease_token,
        progress,
        attempt: None,
        now: at(1),
    };
    let changes = store.record(vec![record]).await.unwrap();
    assert_eq!(
        states_of(&changes),
        vec![(work.delivery_id.clone(), 0, State::Failed(FailReason::Expired))]
    );
    assert_eq!(store.attempts(&b.id).await.unwrap(), vec![]);
}

/// `destination_stats` counts each destination's deliveries per state and reports the
/// latest delivery and the oldest unfinished one.
pub async fn destination_stats_count_deliveries_per_state(store: &dyn Store) {
    let roles = [
        "pending-1",
        "pending-2",
        "in-flight",
        "held",
        "delivered-1",
        "delivered-2",
        "failed",
        "cancelled",
    ];
    let mut by_role: HashMap<&str, BroadcastView> = HashMap::new();
    for role in roles {
        // The ones that end are older, so the oldest unfinished delivery must skip them.
        let open = role.starts_with("pending") || role == "in-flight" || role == "held";
        let created = if open { at(1) } else { at(0) };
        by_role.insert(role, create(store, broadcast(&["x"], created)).await);
    }
    create(store, broadcast(&["y"], at(0))).await;
    let work: HashMap<String, Work> = claim(store, "x", 20, at(1))
        .await
        .into_iter()
        .map(|w| (w.broadcast_id.clone(), w))
        .collect();
    let of = |role: &str| &work[&by_role[role].id];

    store
        .release(vec![release(of("pending-1"), at(1)), release(of("pending-2"), at(1))])
        .await
        .unwrap();
    store
        .record(vec![
            held(of("held"), at(2)),
            delivered(of("delivered-2"), "r2", at(7)),
            delivered(of("delivered-1"), "r1", at(5)),
            rejected(of("failed"), at(2)),
        ])
        .await
        .unwrap();
    store.cancel_delivery(&of("cancelled").delivery_id, at(2)).await.unwrap();
    // An update behind the held delivery waits.
    store.add_update(update(&by_role["held"], "update", at(3))).await.unwrap();

    let mut stats = store.destination_stats().await.unwrap();
    stats.sort_by(|l, r| l.destination.cmp(&r.destination));
    assert_eq!(
        stats,
        vec![
            DestinationStats {
                destination: "x".into(),
                pending: 2,
                in_flight: 1,
                waiting: 1,
                held: 1,
                delivered: 2,
                failed: 1,
                cancelled: 1,
                last_delivered_at: Some(at(7)),
                oldest_open_at: Some(at(1)),
            },
            DestinationStats {
                destination: "y".into(),
                pending: 1,
                oldest_open_at: Some(at(0)),
                ..DestinationStats::default()
            },
        ]
    );
}

// ---- 12. durability ---------------------------------------------------------------------

/// A submit answers only after its broadcast is readable: a read right after the answer
/// (another connection) sees all of it, even under concurrent, batched commits.
pub async fn a_submit_is_readable_as_soon_as_it_is_answered(store: Arc<dyn Store>) {
    let mut tasks = JoinSet::new();
    for n in 0..50 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let created = create(store.as_ref(), broadcast(&["a", "b"], at(n))).await;
            let read = store.broadcast(&created.id).await.unwrap();
            assert_eq!(
                read.as_ref(),
                Some(&created),
                "an answered submit was not visible to a read"
            );
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap();
    }
}

/// Everything a store answered survives a restart exactly as answered.
pub async fn every_answered_write_survives_a_restart(open: Open<'_>) {
    let store = open();
    let mut tasks = JoinSet::new();
    for n in 0..20 {
        let store = Arc::clone(&store);
        tasks.spawn(async move { create(store.as_ref(), broadcast(&["a", "b"], at(n))).await });
    }
    let mut answered = Vec::new();
    while let Some(view) = tasks.join_next().await {
        answered.push(view.unwrap());
    }
    let updated =
        store.add_update(update(&answered[0], "resolved", at(30))).await.unwrap().broadcast;
    answered[0] = updated;
    drop(store);

    let store = open();
    for expected in &answered {
        assert_eq!(view(store.as_ref(), &expected.id).await, *expected);
    }
    assert_eq!(store.list(all(100)).await.unwrap().items.len(), answered.len());
}

/// A read is one snapshot: while updates are added concurrently, a broadcast is never
/// seen with deliveries for a message its thread does not show yet (or the reverse).
pub async fn a_read_is_one_snapshot(store: Arc<dyn Store>) {
    const UPDATES: u32 = 60;
    let b = create(store.as_ref(), broadcast(&["a", "b", "c"], at(0))).await;
    let writer = {
        let (store, b) = (Arc::clone(&store), b.clone());
        tokio::spawn(async move {
            for n in 1..=UPDATES {
                store
                    .add_update(update(&b, &format!("update {n}"), at(u64::from(n))))
                    .await
                    .unwrap();
            }
        })
    };
    let mut reads = 0;
    loop {
        let seen = view(store.as_ref(), &b.id).await;
        reads += 1;
        let messages = seen.thread.len();
        assert_eq!(
            seen.deliveries.len(),
            3 * messages,
            "read {reads}: {messages} messages but {} deliveries",
            seen.deliveries.len()
        );
        if messages == UPDATES as usize + 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
}

/// A delivery is found by its id alone, with its broadcast's id; an unknown id is `None`.
pub async fn a_delivery_is_found_by_id(store: &dyn Store) {
    let created = create(store, broadcast(&["teams-ops", "jira-ops"], at(5))).await;
    for expected in &created.deliveries {
        let found = store.delivery(&expected.id).await.unwrap().expect("delivery not found");
        assert_eq!(found.broadcast_id, created.id);
        assert_eq!(&found.delivery, expected);
    }
    assert_eq!(store.delivery("d_unknown").await.unwrap(), None);
}

// ---- 13. idempotent updates -------------------------------------------------------------

/// `update` with idempotency `key` and request `fingerprint`, and fresh delivery ids, as
/// a client's repeated request would get.
fn keyed_update(view: &BroadcastView, key: &str, fingerprint: &str, now: Timestamp) -> NewUpdate {
    NewUpdate {
        idempotency: Some(UpdateKey { key: key.into(), fingerprint: fingerprint.into() }),
        ..update(view, fingerprint, now)
    }
}

/// The same key with the same request in one broadcast answers with the stored update
/// (same seq, same deliveries) and stores nothing; another request with the key is a
/// conflict; the key is scoped to its broadcast.
pub async fn a_replayed_update_key_returns_the_stored_update(store: &dyn Store) {
    let b = create(store, broadcast(&["a", "b"], at(0))).await;
    let first = store.add_update(keyed_update(&b, "resolve", "fp-1", at(1))).await.unwrap();
    assert_eq!((first.seq, first.replayed, first.changes.len()), (1, false, 2));

    let replay = store.add_update(keyed_update(&b, "resolve", "fp-1", at(2))).await.unwrap();
    assert_eq!((replay.seq, replay.replayed), (1, true));
    assert_eq!(replay.changes, vec![], "a replay created deliveries");
    assert_eq!(replay.broadcast, first.broadcast, "a replay changed the broadcast");
    assert_eq!(view(store, &b.id).await.thread.len(), 2);

    match store.add_update(keyed_update(&b, "resolve", "fp-2", at(3))).await {
        Err(StoreError::KeyConflict { key, existing }) => {
            assert_eq!((key.as_str(), existing.as_str()), ("resolve", b.id.as_str()));
        }
        res => panic!("expected a key conflict, got {res:?}"),
    }
    assert_eq!(view(store, &b.id).await, first.broadcast, "a conflict stored something");

    let second = store.add_update(keyed_update(&b, "mitigate", "fp-1", at(4))).await.unwrap();
    assert_eq!((second.seq, second.replayed), (2, false));
    let unkeyed = store.add_update(update(&b, "fp-1", at(5))).await.unwrap();
    assert_eq!((unkeyed.seq, unkeyed.replayed), (3, false));

    let other = create(store, broadcast(&["a"], at(6))).await;
    let elsewhere = store.add_update(keyed_update(&other, "resolve", "fp-9", at(7))).await.unwrap();
    assert_eq!((elsewhere.seq, elsewhere.replayed), (1, false), "a key leaked across broadcasts");
}

/// Concurrent replays of one keyed update create it once; every answer names it.
pub async fn concurrent_update_replays_create_one_update(store: Arc<dyn Store>) {
    let b = create(store.as_ref(), broadcast(&["a", "b"], at(0))).await;
    let mut tasks = JoinSet::new();
    for n in 0..30 {
        let (store, b) = (Arc::clone(&store), b.clone());
        tasks.spawn(async move {
            store.add_update(keyed_update(&b, "race", "fp-race", at(n))).await.unwrap()
        });
    }
    let mut answers = Vec::new();
    while let Some(res) = tasks.join_next().await {
        answers.push(res.unwrap());
    }
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    assert!(answers.iter().all(|a| a.seq == 1), "a replay answered with another update");
    let stored = view(store.as_ref(), &b.id).await;
    assert_eq!((stored.thread.len(), stored.deliveries.len()), (2, 4));
}

// ---- 14. threads that can be repaired (invariant 5) --------------------------------------

/// The progress of every delivery of `view`'s broadcast to `destination`, by seq.
async fn thread_states(store: &dyn Store, broadcast_id: &str, destination: &str) -> Vec<State> {
    let view = view(store, broadcast_id).await;
    view.deliveries
        .iter()
        .filter(|d| d.destination == destination)
        .map(|d| d.progress.state.clone())
        .collect()
}

/// Retrying a failed original revives its `predecessor_failed` updates in the same
/// transaction (the retry's own answer reports them), and they then go in order after
/// the original is delivered.
pub async fn retrying_a_failed_original_revives_its_updates(store: &dyn Store) {
    let b = create(store, broadcast(&["a"], at(0))).await;
    let original = claim_one(store, "a", at(1)).await;
    let first = store.add_update(update(&b, "update 1", at(2))).await.unwrap();
    store.record(vec![rejected(&original, at(3))]).await.unwrap();
    // An update added behind the failed original fails at once, like the earlier one.
    let second = store.add_update(update(&b, "update 2", at(4))).await.unwrap();
    let lost = State::Failed(FailReason::PredecessorFailed);
    assert_eq!(second.changes[0].state, lost);
    let (u1, u2) = (first.changes[0].delivery_id.clone(), second.changes[0].delivery_id.clone());

    let policy = RetryPolicy::default();
    let changes = store.retry_delivery(&original.delivery_id, &policy, at(10)).await.unwrap();
    assert_eq!(
        states_of(&changes),
        vec![
            (original.delivery_id.clone(), 0, State::Pending),
            (u1.clone(), 1, State::Waiting),
            (u2.clone(), 2, State::Waiting),
        ]
    );
    assert_eq!(
        thread_states(store, &b.id, "a").await,
        [State::Pending, State::Waiting, State::Waiting]
    );
    let revived = delivery_view(store, &b.id, &u1).await.progress;
    assert_eq!(revived.last_error, None, "a revived update still shows why it failed");
    let retried = delivery_view(store, &b.id, &original.delivery_id).await.progress;
    assert!(revived.expires_at >= retried.expires_at, "a revived update would expire unsent");

    let again = claim_one(store, "a", at(10)).await;
    assert_eq!(again.delivery_id, original.delivery_id, "an update went before its original");
    let changes = store.record(vec![delivered(&again, "ref-a", at(11))]).await.unwrap();
    assert_eq!(states_of(&changes)[1..], [(u1.clone(), 1, State::Pending)]);
    let w1 = claim_one(store, "a", at(12)).await;
    assert_eq!(w1.delivery_id, u1);
    let changes = store.record(vec![delivered(&w1, "ref-a1", at(12))]).await.unwrap();
    assert_eq!(states_of(&changes)[1..], [(u2.clone(), 2, State::Pending)]);
}

/// A failed or cancelled update does not fail the updates after it: they go once it has
/// ended; an update added behind it goes at once.
pub async fn a_failed_update_does_not_fail_the_updates_after_it(store: &dyn Store) {
    let b = create(store, broadcast(&["a"], at(0))).await;
    let original = claim_one(store, "a", at(1)).await;
    store.record(vec![delivered(&original, "ref-a", at(1))]).await.unwrap();
    let first = store.add_update(update(&b, "update 1", at(2))).await.unwrap();
    let second = store.add_update(update(&b, "update 2", at(2))).await.unwrap();
    let third = store.add_update(update(&b, "update 3", at(2))).await.unwrap();
    let (u2, u3) = (second.changes[0].delivery_id.clone(), third.changes[0].delivery_id.clone());
    assert_eq!(second.changes[0].state, State::Waiting);

    let w1 = claim_one(store, "a", at(3)).await;
    assert_eq!(w1.seq, 1);
    let changes = store.record(vec![rejected(&w1, at(3))]).await.unwrap();
    assert_eq!(
        states_of(&changes),
        vec![
            (w1.delivery_id.clone(), 1, State::Failed(FailReason::Permanent)),
            (u2.clone(), 2, State::Pending),
        ],
        "the update after a failed one did not go (or a later one overtook it)"
    );
    assert_eq!(state_of(store, &b.id, &u3).await, State::Waiting);
    let _ = first;

    // Cancelling the pending update lets the next one go.
    let changes = store.cancel_delivery(&u2, at(4)).await.unwrap();
    assert_eq!(
        states_of(&changes),
        vec![(u2.clone(), 2, State::Cancelled), (u3.clone(), 3, State::Pending)]
    );
    let w3 = claim_one(store, "a", at(5)).await;
    store.record(vec![rejected(&w3, at(5))]).await.unwrap();

    // Behind a thread whose last update failed, a new update goes at once.
    let fourth = store.add_update(update(&b, "update 4", at(6))).await.unwrap();
    assert_eq!(fourth.changes[0].state, State::Pending);
    assert_eq!(claim_one(store, "a", at(6)).await.seq, 4);
}

/// Retrying a failed update is refused once a later update on its destination was
/// released (it would arrive out of order); while the later ones still wait, it is not.
pub async fn retrying_an_update_that_would_reorder_is_refused(store: &dyn Store) {
    let b = create(store, broadcast(&["a", "b"], at(0))).await;
    for destination in ["a", "b"] {
        let original = claim_one(store, destination, at(1)).await;
        store.record(vec![delivered(&original, "ref", at(1))]).await.unwrap();
    }
    let first = store.add_update(update(&b, "update 1", at(2))).await.unwrap();
    let second = store.add_update(update(&b, "update 2", at(2))).await.unwrap();
    let a1 = delivery_id(&first.broadcast, "a", 1);
    let b1 = delivery_id(&first.broadcast, "b", 1);
    let b2 = delivery_id(&second.broadcast, "b", 2);
    let policy = RetryPolicy::default();

    // On a: update 1 fails and update 2 is delivered after it.
    let w = claim_one(store, "a", at(3)).await;
    store.record(vec![rejected(&w, at(3))]).await.unwrap();
    let w = claim_one(store, "a", at(4)).await;
    store.record(vec![delivered(&w, "ref-a2", at(4))]).await.unwrap();
    assert_not_allowed(store.retry_delivery(&a1, &policy, at(5)).await, &a1, "retry");
    assert_eq!(state_of(store, &b.id, &a1).await, State::Failed(FailReason::Permanent));

    // On b: update 1 is held, so update 2 still waits and a retry keeps the order.
    let w = claim_one(store, "b", at(3)).await;
    store.record(vec![held(&w, at(3))]).await.unwrap();
    assert_eq!(state_of(store, &b.id, &b2).await, State::Waiting);
    let changes = store.retry_delivery(&b1, &policy, at(5)).await.unwrap();
    assert_eq!(states_of(&changes), vec![(b1.clone(), 1, State::Pending)]);
}

/// An update cancelled while its attempt was in flight may have reached the destination,
/// so it counts as released: retrying the failed update before it is refused, or that
/// update would arrive after the one the destination may already show.
pub async fn an_update_cancelled_in_flight_still_blocks_a_reordering_retry(store: &dyn Store) {
    let b = create(store, broadcast(&["a"], at(0))).await;
    let original = claim_one(store, "a", at(1)).await;
    store.record(vec![delivered(&original, "ref", at(1))]).await.unwrap();
    let first = store.add_update(update(&b, "update 1", at(2))).await.unwrap();
    store.add_update(update(&b, "update 2", at(2))).await.unwrap();
    let u1 = first.changes[0].delivery_id.clone();
    let w1 = claim_one(store, "a", at(3)).await;
    store.record(vec![rejected(&w1, at(3))]).await.unwrap();
    // Update 2 goes on its first try; a cancel while that try is in flight is refused
    // (see `an_update_in_flight_cannot_be_cancelled`), so it is cancelled after it.
    let w2 = claim_one(store, "a", at(4)).await;
    assert_eq!(w2.seq, 2);
    assert_not_allowed(
        store.cancel_delivery(&w2.delivery_id, at(5)).await,
        &w2.delivery_id,
        "cancel",
    );
    store.record(vec![retry_at(&w2, at(60), at(5))]).await.unwrap();
    store.cancel_delivery(&w2.delivery_id, at(5)).await.unwrap();
    let cancelled = delivery_view(store, &b.id, &w2.delivery_id).await.progress;
    assert_eq!(cancelled.attempts, 1, "the attempt before the cancel is not counted");
    let policy = RetryPolicy::default();
    assert_not_allowed(store.retry_delivery(&u1, &policy, at(6)).await, &u1, "retry");
    assert_eq!(state_of(store, &b.id, &u1).await, State::Failed(FailReason::Permanent));
}

/// An update waiting behind a held original says so, and stops saying it once the
/// original is retried.
pub async fn an_update_behind_a_held_original_waits_with_the_reason(store: &dyn Store) {
    let b = create(store, broadcast(&["a"], at(0))).await;
    let original = claim_one(store, "a", at(1)).await;
    let added = store.add_update(update(&b, "update 1", at(2))).await.unwrap();
    let u1 = added.changes[0].delivery_id.clone();
    assert_eq!(delivery_view(store, &b.id, &u1).await.progress.last_error, None);

    store.record(vec![held(&original, at(3))]).await.unwrap();
    let waiting = delivery_view(store, &b.id, &u1).await.progress;
    assert_eq!(waiting.state, State::Waiting);
    let reason = waiting.last_error.unwrap_or_default();
    assert!(reason.starts_with("waiting: the original is held"), "{reason}");
    // A later update behind it says the same.
    let later = store.add_update(update(&b, "update 2", at(4))).await.unwrap();
    let later = delivery_view(store, &b.id, &later.changes[0].delivery_id).await.progress;
    assert_eq!(later.last_error.as_deref(), Some(reason.as_str()));

    store.retry_delivery(&original.delivery_id, &RetryPolicy::default(), at(5)).await.unwrap();
    let waiting = delivery_view(store, &b.id, &u1).await.progress;
    assert_eq!((waiting.state, waiting.last_error), (State::Waiting, None));
}

// ---- 15. removed destinations -----------------------------------------------------------

/// The delivery of `view` to `destination` with `seq`, as stored now.
async fn stored(
    store: &dyn Store,
    view: &BroadcastView,
    destination: &str,
    seq: u32,
) -> DeliveryView {
    delivery_view(store, &view.id, &delivery_id(view, destination, seq)).await
}

/// Pending and in-flight deliveries of a destination missing from the configuration are
/// held with reason `destination_removed` (counted per destination, listed as held,
/// cancellable) and resume, attempts kept, when it is configured again. Deliveries held
/// for an ambiguous outcome are left to the operator either way.
pub async fn deliveries_of_a_removed_destination_are_held_and_resume(store: &dyn Store) {
    let b = create(store, broadcast(&["kept", "gone"], at(0))).await;
    let c = create(store, broadcast(&["gone"], at(0))).await;
    let ambiguous = create(store, broadcast(&["gone"], at(0))).await;
    let cancelled = create(store, broadcast(&["gone"], at(0))).await;
    // b's `gone` delivery is in flight after one retry; c's is pending, with an update
    // waiting behind it; `ambiguous` is held by an outcome.
    let mut work = claim(store, "gone", 4, at(1)).await;
    work.sort_by_key(|w| w.broadcast_id.clone());
    let find = |id: &str| work.iter().find(|w| w.broadcast_id == id).unwrap().clone();
    store.record(vec![retry_at(&find(&b.id), at(2), at(1))]).await.unwrap();
    store.record(vec![held(&find(&ambiguous.id), at(1))]).await.unwrap();
    store
        .release(vec![release(&find(&c.id), at(3)), release(&find(&cancelled.id), at(3))])
        .await
        .unwrap();
    let in_flight = claim_one(store, "gone", at(2)).await;
    assert_eq!(in_flight.broadcast_id, b.id);
    let added = store.add_update(update(&c, "update", at(2))).await.unwrap();
    let c = added.broadcast;

    let counts = store.hold_removed(vec!["kept".into()], at(3)).await.unwrap();
    assert_eq!(
        counts,
        vec![RemovedHolds { destination: "gone".into(), held: 3, resumed: 0 }],
        "every pending and in-flight delivery of `gone` is held, and only those"
    );
    let d = stored(store, &b, "gone", 0).await;
    assert_eq!(
        (d.progress.state.clone(), d.hold_reason.as_deref()),
        (State::Held, Some("destination_removed"))
    );
    assert_eq!(d.progress.attempts, 1, "holding used an attempt");
    assert!(d.progress.ambiguous, "an interrupted attempt must reconcile when resumed");
    assert!(d.progress.last_error.as_deref().unwrap_or("").contains("`gone`"), "{d:?}");
    let d = stored(store, &c, "gone", 0).await;
    assert_eq!((d.progress.state, d.progress.ambiguous), (State::Held, false));
    let u = stored(store, &c, "gone", 1).await;
    assert_eq!(u.progress.state, State::Waiting);
    assert!(u.progress.last_error.unwrap_or_default().contains("held"), "no reason to wait");
    assert_eq!(stored(store, &b, "kept", 0).await.progress.state, State::Pending);
    let d = stored(store, &ambiguous, "gone", 0).await;
    assert_eq!((d.progress.state, d.hold_reason), (State::Held, None));
    // The crashed worker of the in-flight attempt is fenced out (a late `Delivered`
    // would still count: see `a_late_delivered_answer_is_recorded_over_a_newer_lease`).
    assert_eq!(store.record(vec![retry_at(&in_flight, at(9), at(3))]).await.unwrap(), vec![]);
    assert_eq!(store.claim(claim_request("gone", 10, at(100))).await.unwrap().work, vec![]);

    let held_query = ListQuery { held: true, ..all(10) };
    let listed: HashSet<String> = list(store, held_query.clone()).await.into_iter().collect();
    let expected: HashSet<String> =
        [&b.id, &c.id, &ambiguous.id, &cancelled.id].iter().map(|id| id.to_string()).collect();
    assert_eq!(listed, expected);
    let kept_only = ListQuery { destination: Some("kept".into()), ..held_query.clone() };
    assert_eq!(list(store, kept_only).await, vec![b.id.clone()]);

    // A held delivery can be cancelled; the reason goes with the hold.
    let gone = delivery_id(&cancelled, "gone", 0);
    store.cancel_delivery(&gone, at(4)).await.unwrap();
    let d = delivery_view(store, &cancelled.id, &gone).await;
    assert_eq!((d.progress.state, d.hold_reason), (State::Cancelled, None));

    // The same configuration again changes nothing.
    assert_eq!(store.hold_removed(vec!["kept".into()], at(5)).await.unwrap(), vec![]);

    let counts = store.hold_removed(vec!["gone".into(), "kept".into()], at(6)).await.unwrap();
    assert_eq!(counts, vec![RemovedHolds { destination: "gone".into(), held: 0, resumed: 2 }]);
    let d = stored(store, &b, "gone", 0).await;
    assert_eq!(
        (d.progress.state.clone(), d.progress.next_attempt_at, d.progress.attempts, d.hold_reason),
        (State::Pending, at(6), 1, None)
    );
    assert!(d.progress.ambiguous);
    let u = stored(store, &c, "gone", 1).await;
    assert_eq!((u.progress.state, u.progress.last_error), (State::Waiting, None));
    assert_eq!(
        stored(store, &ambiguous, "gone", 0).await.progress.state,
        State::Held,
        "a hold for an operator was resumed"
    );
    let resumed: HashSet<String> =
        claim(store, "gone", 10, at(6)).await.into_iter().map(|w| w.broadcast_id).collect();
    assert_eq!(resumed, HashSet::from([b.id.clone(), c.id.clone()]));
}

/// An update in flight cannot be cancelled: cancelling it would release the next update
/// at once, which could reach the destination before the attempt in flight. Once the
/// attempt has ended it can be cancelled, and the next update goes after it.
pub async fn an_update_in_flight_cannot_be_cancelled(store: &dyn Store) {
    let b = create(store, broadcast(&["lane"], at(0))).await;
    let original = claim_one(store, "lane", at(1)).await;
    store.record(vec![delivered(&original, "ref", at(2))]).await.unwrap();
    let first = store.add_update(update(&b, "update 1", at(3))).await.unwrap();
    let second = store.add_update(update(&b, "update 2", at(3))).await.unwrap();
    let in_flight = claim_one(store, "lane", at(4)).await;
    assert_eq!(in_flight.delivery_id, first.changes[0].delivery_id);
    let refused = store.cancel_delivery(&in_flight.delivery_id, at(5)).await;
    assert!(
        matches!(&refused, Err(StoreError::NotAllowed { state, .. }) if state.contains("overtake")),
        "{refused:?}"
    );
    let next = &second.changes[0].delivery_id;
    assert_eq!(state_of(store, &b.id, next).await, State::Waiting);
    store.record(vec![retry_at(&in_flight, at(60), at(6))]).await.unwrap();
    let changes = store.cancel_delivery(&in_flight.delivery_id, at(7)).await.unwrap();
    assert_eq!(changes[0].state, State::Cancelled);
    assert_eq!(state_of(store, &b.id, next).await, State::Pending);
}

/// A breaker's probe takes a due delivery tried before, not the oldest: it is the one a
/// destination that accepts retries answers with a success. When there are too few of
/// those, the rest of the probe is the oldest due ones.
pub async fn a_probe_claims_a_delivery_tried_before_then_the_oldest(store: &dyn Store) {
    let fresh = create(store, broadcast(&["lane"], at(0))).await;
    let tried = create(store, broadcast(&["lane"], at(1))).await;
    let work = claim(store, "lane", 2, at(2)).await;
    let by = |id: &str| work.iter().find(|w| w.broadcast_id == id).unwrap().clone();
    let (never, once) = (by(&fresh.id), by(&tried.id));
    store.release(vec![release(&never, at(2))]).await.unwrap();
    store.record(vec![retry_at(&once, at(3), at(2))]).await.unwrap();
    // At 4 s both are due: one has waited since 2 s and was never tried, the other
    // since 3 s after one try.
    let probe = ClaimRequest { probe: true, ..claim_request("lane", 1, at(4)) };
    let probed = store.claim(probe).await.unwrap().work;
    assert_eq!(ids(&probed), vec![once.delivery_id.clone()]);
    store.release(vec![release(&probed[0], at(3))]).await.unwrap();
    let probe = ClaimRequest { probe: true, ..claim_request("lane", 2, at(4)) };
    let probed = store.claim(probe).await.unwrap().work;
    assert_eq!(
        ids(&probed),
        vec![once.delivery_id.clone(), never.delivery_id.clone()],
        "the tried one first, then the oldest due"
    );
    store.release(probed.iter().map(|w| release(w, at(3))).collect()).await.unwrap();
    let plain = claim(store, "lane", 1, at(4)).await;
    assert_eq!(ids(&plain), vec![never.delivery_id.clone()], "due order takes the oldest");
}

// ---- connectors' needs ------------------------------------------------------------------

/// A claim of an ambiguous delivery says when its latest ambiguous attempt ended (an
/// eventually consistent look-up counts its grace from there); a delivered-unconfirmed
/// outcome is kept as such.
pub async fn a_claim_knows_when_the_doubt_began_and_unconfirmed_is_kept(store: &dyn Store) {
    let b = create(store, broadcast(&["lane"], at(0))).await;
    let first = claim_one(store, "lane", at(1)).await;
    let mut progress = first.progress.clone();
    progress.state = State::Pending;
    progress.attempts = 1;
    progress.ambiguous = true;
    progress.next_attempt_at = at(30);
    // The fixture's attempts last 120 ms.
    store.record(vec![record(&first, progress, "unknown", at(10))]).await.unwrap();

    let second = claim_one(store, "lane", at(30)).await;
    assert!(second.progress.ambiguous);
    assert_eq!(second.ambiguous_at, Some(at(10).add(std::time::Duration::from_millis(120))));
    assert_eq!(second.created_at, b.created_at);

    let mut progress = second.progress.clone();
    progress.state = State::Delivered;
    progress.attempts = 2;
    progress.ambiguous = false;
    progress.delivered_at = Some(at(31));
    progress.unconfirmed = true;
    store.record(vec![record(&second, progress, "delivered", at(31))]).await.unwrap();
    let stored = delivery_view(store, &b.id, &second.delivery_id).await;
    assert_eq!(stored.progress.state, State::Delivered);
    assert!(stored.progress.unconfirmed, "an unconfirmed post stays marked");
}
