//! The conformance suite against `SqliteStore`, each test on a fresh database file in
//! its own temporary directory, plus what only the SQLite backend promises: one process
//! per database file (the lock), and hence the expiry of every lease at start-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald_core::State;
use herald_store::sqlite::SqliteStore;
use herald_store::{ClaimRequest, Store, StoreError};
use tempfile::TempDir;

use crate::conformance;
use crate::fixture::*;

/// A database file in a fresh temporary directory, removed when dropped.
struct Database {
    dir: TempDir,
}

impl Database {
    fn new() -> Database {
        Database { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("herald.db")
    }

    fn open(&self) -> Arc<dyn Store> {
        Arc::new(open(&self.path()))
    }
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap()
}

/// Runs a conformance body that takes `&dyn Store` on a fresh database.
macro_rules! on_fresh_store {
    ($body:ident) => {{
        let db = Database::new();
        conformance::$body(db.open().as_ref()).await;
    }};
}

/// Runs a conformance body that takes `Arc<dyn Store>` on a fresh database.
macro_rules! on_shared_store {
    ($body:ident) => {{
        let db = Database::new();
        conformance::$body(db.open()).await;
    }};
}

/// Runs a conformance body that restarts the store on a fresh database.
macro_rules! on_reopened_store {
    ($body:ident) => {{
        let db = Database::new();
        conformance::$body(&|| db.open()).await;
    }};
}

// ---- 1. submit
#[tokio::test]
async fn submit_stores_the_intent_and_one_pending_delivery_per_destination() {
    on_fresh_store!(submit_stores_the_intent_and_one_pending_delivery_per_destination);
}

// ---- 2. idempotent submit
#[tokio::test]
async fn a_replayed_key_returns_the_original_and_stores_nothing() {
    on_fresh_store!(a_replayed_key_returns_the_original_and_stores_nothing);
}

#[tokio::test]
async fn a_reused_key_with_another_request_is_a_conflict() {
    on_fresh_store!(a_reused_key_with_another_request_is_a_conflict);
}

#[tokio::test]
async fn broadcasts_without_a_key_are_never_deduplicated() {
    on_fresh_store!(broadcasts_without_a_key_are_never_deduplicated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_with_one_key_create_one_broadcast() {
    on_shared_store!(concurrent_submits_with_one_key_create_one_broadcast);
}

// ---- 3. claim
#[tokio::test]
async fn claim_leases_due_pending_deliveries_oldest_first() {
    on_fresh_store!(claim_leases_due_pending_deliveries_oldest_first);
}

#[tokio::test]
async fn every_lease_of_a_delivery_has_a_larger_token() {
    on_fresh_store!(every_lease_of_a_delivery_has_a_larger_token);
}

// ---- 4. one worker at a time
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_share_a_leased_delivery() {
    on_shared_store!(concurrent_claims_never_share_a_leased_delivery);
}

// ---- 5. fencing
#[tokio::test]
async fn a_record_with_a_stale_token_changes_nothing_but_is_logged() {
    on_fresh_store!(a_record_with_a_stale_token_changes_nothing_but_is_logged);
}

#[tokio::test]
async fn a_late_delivered_answer_is_recorded_over_a_newer_lease() {
    on_fresh_store!(a_late_delivered_answer_is_recorded_over_a_newer_lease);
}

// ---- 6. lease recovery
#[tokio::test]
async fn claim_expired_re_leases_only_expired_leases() {
    on_fresh_store!(claim_expired_re_leases_only_expired_leases);
}

// ---- 7. crash recovery
#[tokio::test]
async fn a_restart_keeps_every_accepted_delivery() {
    on_reopened_store!(a_restart_keeps_every_accepted_delivery);
}

/// The lock makes this process the file's only user, so every lease found at start-up
/// belongs to a process that is gone: it is recoverable at once, not after it runs out.
#[tokio::test]
async fn start_up_expires_the_leases_of_the_previous_process() {
    let db = Database::new();
    let store = db.open();
    let b = create(store.as_ref(), broadcast(&["a", "b"], at(0))).await;
    let request = ClaimRequest {
        destination: "a".into(),
        limit: 1,
        now: at(1),
        lease_until: at(3600),
        probe: false,
    };
    let interrupted = store.claim(request).await.unwrap().work.remove(0);
    // Crash: the store goes away without recording the attempt.
    drop(store);

    let store = db.open();
    let recovered = store.claim_expired(at(2), at(62), 10).await.unwrap();
    assert_eq!(
        ids(&recovered),
        vec![interrupted.delivery_id.clone()],
        "the old lease was not expired at start-up"
    );
    assert!(recovered[0].lease_token > interrupted.lease_token);
    assert_eq!(store.record(vec![retry_at(&interrupted, at(9), at(3))]).await.unwrap(), vec![]);
    // Only the in-flight delivery was touched.
    assert_eq!(state_of(store.as_ref(), &b.id, &b.deliveries[1].id).await, State::Pending);
    assert_eq!(store.claim_expired(at(3), at(63), 10).await.unwrap(), vec![]);
}

/// A second store on a file that is in use is refused with a message naming the cause;
/// the file is free again once the first store is dropped.
#[tokio::test]
async fn a_second_open_of_a_database_in_use_is_refused() {
    let db = Database::new();
    let first = open(&db.path());
    match SqliteStore::open(&db.path()) {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("another"), "the message does not name the cause: {message}");
        }
        res => panic!("a second open of a database in use succeeded or failed otherwise: {res:?}"),
    }
    create(&first, broadcast(&["a"], at(0))).await;
    drop(first);
    let second = open(&db.path());
    assert_eq!(
        second
            .list(herald_store::ListQuery { limit: 10, ..Default::default() })
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

// ---- 8. order per thread
#[tokio::test]
async fn updates_wait_for_their_predecessor_on_each_destination() {
    on_fresh_store!(updates_wait_for_their_predecessor_on_each_destination);
}

#[tokio::test]
async fn a_failed_original_fails_every_update_behind_it() {
    on_fresh_store!(a_failed_original_fails_every_update_behind_it);
}

#[tokio::test]
async fn cancelling_an_original_fails_its_waiting_update() {
    on_fresh_store!(cancelling_an_original_fails_its_waiting_update);
}

#[tokio::test]
async fn an_update_behind_a_skipped_destination_still_waits() {
    on_fresh_store!(an_update_behind_a_skipped_destination_still_waits);
}

#[tokio::test]
async fn an_update_to_an_unknown_broadcast_is_not_found() {
    on_fresh_store!(an_update_to_an_unknown_broadcast_is_not_found);
}

// ---- 9. release
#[tokio::test]
async fn release_returns_a_delivery_without_using_an_attempt() {
    on_fresh_store!(release_returns_a_delivery_without_using_an_attempt);
}

// ---- 10. operator retry and cancel
#[tokio::test]
async fn operator_retry_applies_to_held_failed_and_pending_only() {
    on_fresh_store!(operator_retry_applies_to_held_failed_and_pending_only);
}

#[tokio::test]
async fn operator_cancel_applies_to_unfinished_deliveries() {
    on_fresh_store!(operator_cancel_applies_to_unfinished_deliveries);
}

// ---- 11. queries
#[tokio::test]
async fn list_pages_newest_first_and_covers_everything_once() {
    on_fresh_store!(list_pages_newest_first_and_covers_everything_once);
}

#[tokio::test]
async fn list_filters_by_destination_and_state() {
    on_fresh_store!(list_filters_by_destination_and_state);
}

#[tokio::test]
async fn attempts_returns_the_log_in_order() {
    on_fresh_store!(attempts_returns_the_log_in_order);
}

#[tokio::test]
async fn a_record_without_an_attempt_logs_nothing() {
    on_fresh_store!(a_record_without_an_attempt_logs_nothing);
}

#[tokio::test]
async fn destination_stats_count_deliveries_per_state() {
    on_fresh_store!(destination_stats_count_deliveries_per_state);
}

// ---- 12. durability
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_submit_is_readable_as_soon_as_it_is_answered() {
    on_shared_store!(a_submit_is_readable_as_soon_as_it_is_answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_answered_write_survives_a_restart() {
    on_reopened_store!(every_answered_write_survives_a_restart);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_is_one_snapshot() {
    on_shared_store!(a_read_is_one_snapshot);
}

#[tokio::test]
async fn a_delivery_is_found_by_id() {
    on_fresh_store!(a_delivery_is_found_by_id);
}

/// Continuous writes from many concurrent callers keep the write-ahead log bounded: it
/// is checkpointed and reused, not grown for ever (a regression: a checkpoint on a
/// separate connection never completed under load and the WAL reached 1.3 GB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_stays_bounded_under_continuous_writes() {
    let db = Database::new();
    let store = db.open();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            for n in 0..600 {
                let mut new = broadcast(&["a", "b", "c", "d", "e"], at(n));
                new.message.body = format!("worker {worker} message {n} {}", "x".repeat(1500));
                store.submit(new).await.unwrap();
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap();
    }
    let wal = std::fs::metadata(db.dir.path().join("herald.db-wal")).map(|m| m.len()).unwrap_or(0);
    let main = std::fs::metadata(db.path()).unwrap().len();
    // 4,800 broadcasts with 24,000 deliveries: several times the checkpoint threshold
    // (~4 MiB of WAL), so an unbounded WAL would be well past the main file's size.
    assert!(
        main + wal > 8 << 20,
        "the test wrote too little to mean anything ({main} + {wal} bytes)"
    );
    assert!(wal < 16 << 20, "the WAL grew to {wal} bytes (database file: {main} bytes)");
}

// ---- 13. idempotent updates
#[tokio::test]
async fn a_replayed_update_key_returns_the_stored_update() {
    on_fresh_store!(a_replayed_update_key_returns_the_stored_update);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_update_replays_create_one_update() {
    on_shared_store!(concurrent_update_replays_create_one_update);
}

// ---- 14. threads that can be repaired
#[tokio::test]
async fn retrying_a_failed_original_revives_its_updates() {
    on_fresh_store!(retrying_a_failed_original_revives_its_updates);
}

#[tokio::test]
async fn a_failed_update_does_not_fail_the_updates_after_it() {
    on_fresh_store!(a_failed_update_does_not_fail_the_updates_after_it);
}

#[tokio::test]
async fn retrying_an_update_that_would_reorder_is_refused() {
    on_fresh_store!(retrying_an_update_that_would_reorder_is_refused);
}

#[tokio::test]
async fn an_update_cancelled_in_flight_still_blocks_a_reordering_retry() {
    on_fresh_store!(an_update_cancelled_in_flight_still_blocks_a_reordering_retry);
}

#[tokio::test]
async fn an_update_behind_a_held_original_waits_with_the_reason() {
    on_fresh_store!(an_update_behind_a_held_original_waits_with_the_reason);
}

// ---- 15. removed destinations
#[tokio::test]
async fn deliveries_of_a_removed_destination_are_held_and_resume() {
    on_fresh_store!(deliveries_of_a_removed_destination_are_held_and_resume);
}

#[tokio::test]
async fn an_update_in_flight_cannot_be_cancelled() {
    on_fresh_store!(an_update_in_flight_cannot_be_cancelled);
}

#[tokio::test]
async fn a_probe_claims_a_delivery_tried_before_then_the_oldest() {
    on_fresh_store!(a_probe_claims_a_delivery_tried_before_then_the_oldest);
}

#[tokio::test]
async fn a_claim_knows_when_the_doubt_began_and_unconfirmed_is_kept() {
    on_fresh_store!(a_claim_knows_when_the_doubt_began_and_unconfirmed_is_kept);
}

/// A claim's reads (due order, and a probe's read of the deliveries tried before) walk
/// their partial indexes in order: neither scans nor sorts the destination's backlog, so
/// a probe behind millions of pending deliveries costs what it takes.
#[tokio::test]
async fn the_claim_and_the_probe_read_their_indexes_in_order() {
    let db = Database::new();
    let store = open(&db.path());
    for (probe, index) in [(false, "deliveries_due"), (true, "deliveries_retry_due")] {
        let plan = store.explain_claim(probe).await.unwrap();
        assert!(plan.contains(&format!("USING INDEX {index}")), "probe {probe}:\n{plan}");
        assert!(!plan.contains("TEMP B-TREE") && !plan.contains("SCAN"), "probe {probe}:\n{plan}");
    }
}
