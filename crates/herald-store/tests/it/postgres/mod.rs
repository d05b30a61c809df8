//! The conformance suite against `PgStore`, each test in a fresh schema of the test
//! database (`HERALD_TEST_DATABASE_URL`, by default the machine's PostgreSQL), dropped
//! afterwards; plus what only the shared store promises: several nodes on one schema
//! (one broadcast per key, no delivery leased twice), the claim's plan, migrations,
//! overload and an unreachable database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use herald_store::Store;
use herald_store::postgres::{PgOptions, PgStore};

use crate::conformance;

mod failures;
mod nodes;
/// herald-cli's end-to-end tests use all of it, these tests only some.
#[allow(dead_code)]
pub mod proxy;
mod schema;

/// The database the PostgreSQL tests use.
pub fn database_url() -> String {
    // CI always sets it (.ci/run); unset, the machine's server is the one meant. A test
    // run without a reachable server fails, naming the URL: it never passes silently.
    std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema in the test database, dropped (with everything in it) when dropped.
pub struct Schema {
    pub name: String,
}

impl Schema {
    pub async fn new() -> Schema {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Unique among live processes; a leftover of a dead one with the same pid (a
        // killed run) is dropped first.
        let name =
            format!("herald_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut conn = admin().await;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut conn).await.unwrap();
        Schema { name }
    }

    pub fn options(&self) -> PgOptions {
        PgOptions { schema: Some(self.name.clone()), max_connections: 4, ..PgOptions::default() }
    }

    /// A store (node `node`) on this schema, migrated.
    pub async fn connect(&self, node: &str) -> PgStore {
        PgStore::connect(&database_url(), node, &self.options()).await.unwrap()
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.connect("node-a").await)
    }

    /// [`Schema::open`] from synchronous code on a multi-threaded runtime (restarts).
    pub fn open_blocking(&self) -> Arc<dyn Store> {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(self.open()))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime (or while a test panics): a thread of its own
        // with its own runtime drops the schema either way.
        let dropped = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut conn = admin().await;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .execute(&mut conn)
                    .await
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test schema {}: {error}", self.name);
        }
    }
}

/// The test database's URL with its `host:port` replaced by `addr` (a proxy's).
pub fn database_url_via(addr: std::net::SocketAddr) -> String {
    let url = database_url();
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    format!("{scheme}://{user}{addr}/{path}")
}

/// The test database server's address, for a proxy in front of it.
pub fn server_addr() -> std::net::SocketAddr {
    let url = database_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host_port =
        if host_port.contains(':') { host_port.to_string() } else { format!("{host_port}:5432") };
    host_port
        .parse()
        .unwrap_or_else(|_| panic!("a proxy needs the test database at an IP address: {host_port}"))
}

/// A plain connection to the test database, for setting up and looking at tables.
pub async fn admin() -> sqlx::PgConnection {
    use sqlx::Connection;
    let url = database_url();
    sqlx::PgConnection::connect(&url).await.unwrap_or_else(|error| {
        panic!("the PostgreSQL tests need a server at {url} (HERALD_TEST_DATABASE_URL): {error}")
    })
}

/// A connection whose `search_path` is `schema`.
pub async fn admin_in(schema: &Schema) -> sqlx::PgConnection {
    let mut conn = admin().await;
    sqlx::query(&format!("SET search_path TO {}", schema.name)).execute(&mut conn).await.unwrap();
    conn
}

/// Runs a conformance body that takes `&dyn Store` on a fresh schema.
macro_rules! on_fresh_store {
    ($body:ident) => {{
        let schema = Schema::new().await;
        conformance::$body(schema.open().await.as_ref()).await;
    }};
}

/// Runs a conformance body that takes `Arc<dyn Store>` on a fresh schema.
macro_rules! on_shared_store {
    ($body:ident) => {{
        let schema = Schema::new().await;
        conformance::$body(schema.open().await).await;
    }};
}

/// Runs a conformance body that restarts the store on a fresh schema: a restart drops
/// the store and connects a new one to the same schema.
macro_rules! on_reopened_store {
    ($body:ident) => {{
        let schema = Schema::new().await;
        conformance::$body(&|| schema.open_blocking()).await;
    }};
}

// ---- 1. submit
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_stores_the_intent_and_one_pending_delivery_per_destination() {
    on_fresh_store!(submit_stores_the_intent_and_one_pending_delivery_per_destination);
}

// ---- 2. idempotent submit
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_key_returns_the_original_and_stores_nothing() {
    on_fresh_store!(a_replayed_key_returns_the_original_and_stores_nothing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_key_with_another_request_is_a_conflict() {
    on_fresh_store!(a_reused_key_with_another_request_is_a_conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_without_a_key_are_never_deduplicated() {
    on_fresh_store!(broadcasts_without_a_key_are_never_deduplicated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_with_one_key_create_one_broadcast() {
    on_shared_store!(concurrent_submits_with_one_key_create_one_broadcast);
}

// ---- 3. claim
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_leases_due_pending_deliveries_oldest_first() {
    on_fresh_store!(claim_leases_due_pending_deliveries_oldest_first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lease_of_a_delivery_has_a_larger_token() {
    on_fresh_store!(every_lease_of_a_delivery_has_a_larger_token);
}

// ---- 4. one worker at a time
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_share_a_leased_delivery() {
    on_shared_store!(concurrent_claims_never_share_a_leased_delivery);
}

// ---- 5. fencing
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_a_stale_token_changes_nothing_but_is_logged() {
    on_fresh_store!(a_record_with_a_stale_token_changes_nothing_but_is_logged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_delivered_answer_is_recorded_over_a_newer_lease() {
    on_fresh_store!(a_late_delivered_answer_is_recorded_over_a_newer_lease);
}

// ---- 6. lease recovery
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_expired_re_leases_only_expired_leases() {
    on_fresh_store!(claim_expired_re_leases_only_expired_leases);
}

// ---- 7. crash recovery
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_accepted_delivery() {
    on_reopened_store!(a_restart_keeps_every_accepted_delivery);
}

// ---- 8. order per thread
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_wait_for_their_predecessor_on_each_destination() {
    on_fresh_store!(updates_wait_for_their_predecessor_on_each_destination);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_original_fails_every_update_behind_it() {
    on_fresh_store!(a_failed_original_fails_every_update_behind_it);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_original_fails_its_waiting_update() {
    on_fresh_store!(cancelling_an_original_fails_its_waiting_update);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_behind_a_skipped_destination_still_waits() {
    on_fresh_store!(an_update_behind_a_skipped_destination_still_waits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_to_an_unknown_broadcast_is_not_found() {
    on_fresh_store!(an_update_to_an_unknown_broadcast_is_not_found);
}

// ---- 9. release
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_returns_a_delivery_without_using_an_attempt() {
    on_fresh_store!(release_returns_a_delivery_without_using_an_attempt);
}

// ---- 10. operator retry and cancel
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_retry_applies_to_held_failed_and_pending_only() {
    on_fresh_store!(operator_retry_applies_to_held_failed_and_pending_only);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_cancel_applies_to_unfinished_deliveries() {
    on_fresh_store!(operator_cancel_applies_to_unfinished_deliveries);
}

// ---- 11. queries
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_newest_first_and_covers_everything_once() {
    on_fresh_store!(list_pages_newest_first_and_covers_everything_once);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_destination_and_state() {
    on_fresh_store!(list_filters_by_destination_and_state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_returns_the_log_in_order() {
    on_fresh_store!(attempts_returns_the_log_in_order);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_an_attempt_logs_nothing() {
    on_fresh_store!(a_record_without_an_attempt_logs_nothing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_found_by_id() {
    on_fresh_store!(a_delivery_is_found_by_id);
}

// ---- 13. idempotent updates
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_update_key_returns_the_stored_update() {
    on_fresh_store!(a_replayed_update_key_returns_the_stored_update);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_update_replays_create_one_update() {
    on_shared_store!(concurrent_update_replays_create_one_update);
}

// ---- 14. threads that can be repaired
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_failed_original_revives_its_updates() {
    on_fresh_store!(retrying_a_failed_original_revives_its_updates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_does_not_fail_the_updates_after_it() {
    on_fresh_store!(a_failed_update_does_not_fail_the_updates_after_it);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_an_update_that_would_reorder_is_refused() {
    on_fresh_store!(retrying_an_update_that_would_reorder_is_refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_cancelled_in_flight_still_blocks_a_reordering_retry() {
    on_fresh_store!(an_update_cancelled_in_flight_still_blocks_a_reordering_retry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_behind_a_held_original_waits_with_the_reason() {
    on_fresh_store!(an_update_behind_a_held_original_waits_with_the_reason);
}

// ---- 15. removed destinations
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_of_a_removed_destination_are_held_and_resume() {
    on_fresh_store!(deliveries_of_a_removed_destination_are_held_and_resume);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_in_flight_cannot_be_cancelled() {
    on_fresh_store!(an_update_in_flight_cannot_be_cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_claims_a_delivery_tried_before_then_the_oldest() {
    on_fresh_store!(a_probe_claims_a_delivery_tried_before_then_the_oldest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_knows_when_the_doubt_began_and_unconfirmed_is_kept() {
    on_fresh_store!(a_claim_knows_when_the_doubt_began_and_unconfirmed_is_kept);
}
