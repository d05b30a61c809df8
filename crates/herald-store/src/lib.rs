//! herald's durable store: broadcasts (the intent), deliveries (the per-destination
//! state), leases and the append-only attempt log.
//!
//! [`Store`] is batch-oriented so that every backend can group work into few
//! transactions: a broadcast and all its deliveries are written in one transaction,
//! claims take up to N due deliveries at once, outcomes are recorded many per
//! transaction. The store never decides a transition itself: callers compute the next
//! [`Progress`] with `herald_core::delivery` and the store persists it by
//! compare-and-set on the lease token (fencing). The one exception is the cascade from a
//! predecessor to its waiting successors, which the store applies inside the recording
//! transaction with `herald_core::thread::settle`, so it can never be lost between two
//! transactions.

pub mod cluster;
pub mod metrics;
mod model;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use herald_core::{RetryPolicy, Timestamp};

pub use model::*;

/// A store's source of "now" for stamps taken when a transaction runs (leases): the
/// engine's clock, so tests on simulated time stay consistent.
pub type StoreClock = dyn Fn() -> Timestamp + Send + Sync;

/// What went wrong in the store. Variants say what the caller can do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No such broadcast or delivery.
    #[error("{what} `{id}` does not exist")]
    NotFound {
        /// "broadcast" or "delivery".
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The idempotency key was used before with a different request.
    #[error(
        "idempotency key `{key}` was already used for broadcast {existing} with a different request"
    )]
    KeyConflict {
        /// The reused key.
        key: String,
        /// The broadcast that owns it.
        existing: String,
    },
    /// The operation does not apply to the delivery in its current state.
    #[error("delivery `{id}` is {state}; {action} does not apply")]
    NotAllowed {
        /// The delivery.
        id: String,
        /// Its state.
        state: String,
        /// What was asked.
        action: &'static str,
    },
    /// Too many submits and updates wait for the writer; this one was refused without
    /// being stored. Retrying after a short pause helps.
    #[error(
        "the store is overloaded: {queued} submits and updates are already waiting to be written"
    )]
    Overloaded {
        /// How many were queued when this one was refused.
        queued: usize,
    },
    /// The store did not answer within the caller's bound. The operation may still take
    /// effect later; an idempotent retry is safe.
    #[error("the store did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// The database could not be opened, read or written; nothing was written.
    /// Retrying later may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The write was sent, but the connection broke before the database confirmed its
    /// commit: it may or may not have taken effect. An idempotent retry is safe (it finds
    /// the write if it was kept).
    #[error("store write unconfirmed: {0}")]
    Unconfirmed(String),
    /// Stored data could not be understood (a bug or a manual edit).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// The store's operations. Every method is one transaction (or one read snapshot).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Durably stores a broadcast with all its deliveries before returning, or returns
    /// the original broadcast when its idempotency key and request fingerprint match one
    /// already stored.
    ///
    /// # Errors
    /// `KeyConflict` when the key is known with a different fingerprint.
    async fn submit(&self, broadcast: NewBroadcast) -> Result<Submitted, StoreError>;

    /// Durably stores a follow-up message and one delivery per destination of the
    /// broadcast; each starts where `herald_core::thread::settle` puts it behind the
    /// messages ahead of it on that destination (`waiting`, `pending` once the original
    /// is delivered and every earlier update ended, `failed` if the original failed).
    /// With an idempotency key already used in the broadcast by the same request
    /// (fingerprint), answers with that update (`replayed`) and stores nothing.
    ///
    /// # Errors
    /// `NotFound` when the broadcast does not exist; `KeyConflict` when the key was used
    /// in the broadcast with a different fingerprint.
    async fn add_update(&self, update: NewUpdate) -> Result<UpdateAdded, StoreError>;

    /// Leases up to `limit` due `pending` deliveries of `destination`, oldest due first,
    /// each with a fresh lease token, and reports when the next one falls due.
    async fn claim(&self, claim: ClaimRequest) -> Result<Claimed, StoreError>;

    /// Re-leases in-flight deliveries whose lease expired (their worker died or
    /// stalled), so the caller can record them as `Unknown`.
    async fn claim_expired(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Work>, StoreError> {
        self.claim_expired_except(now, lease_until, limit, Vec::new()).await
    }

    /// [`Store::claim_expired`], leaving alone the deliveries in `exclude`: those the
    /// caller knows are still being sent or recorded by its own process.
    async fn claim_expired_except(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        exclude: Vec<String>,
    ) -> Result<Vec<Work>, StoreError>;

    /// Records attempt outcomes: each new progress is written only if the delivery is
    /// still in flight under the same lease token. The one exception is `Delivered`:
    /// the destination has the message whoever holds the lease now, so it is recorded
    /// over any state that is not terminal. Returns every state change made, including
    /// cascades to successors.
    async fn record(&self, records: Vec<Record>) -> Result<Vec<Change>, StoreError>;

    /// Returns a claimed-but-unstarted delivery to `pending` without using an attempt.
    async fn release(&self, releases: Vec<Release>) -> Result<Vec<Change>, StoreError>;

    /// An operator's retry of a held, failed or pending delivery. Retrying a failed
    /// original revives its `predecessor_failed` updates (back to `waiting`) in the same
    /// transaction.
    ///
    /// # Errors
    /// `NotFound`, or `NotAllowed` for delivered, cancelled, waiting or in-flight ones,
    /// for `predecessor_failed` ones (retry the original), and for an update after which
    /// a later update on its destination was already released (it would reorder).
    async fn retry_delivery(
        &self,
        id: &str,
        policy: &RetryPolicy,
        now: Timestamp,
    ) -> Result<Vec<Change>, StoreError>;

    /// An operator's cancel of a delivery that has not ended; fences any in-flight
    /// attempt. Cancelling an original fails its waiting updates with
    /// `predecessor_failed`; cancelling an update lets the ones after it go.
    ///
    /// # Errors
    /// `NotFound`, or `NotAllowed` for terminal deliveries.
    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Vec<Change>, StoreError>;

    /// At start-up, before any lane runs: every `pending` or `in_flight` delivery whose
    /// destination is not in `configured` becomes `held` with reason
    /// `destination_removed` (an interrupted attempt is marked ambiguous); every delivery
    /// held for that reason whose destination is configured again becomes `pending`,
    /// due at `now`, attempts kept. Returns the counts per destination touched.
    async fn hold_removed(
        &self,
        configured: Vec<String>,
        now: Timestamp,
    ) -> Result<Vec<RemovedHolds>, StoreError>;

    /// One delivery and the broadcast it belongs to.
    async fn delivery(&self, id: &str) -> Result<Option<DeliveryRef>, StoreError>;

    /// One broadcast with its messages and deliveries.
    async fn broadcast(&self, id: &str) -> Result<Option<BroadcastView>, StoreError>;

    /// Broadcasts newest first, filtered, after `cursor`.
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError>;

    /// The attempt log of a broadcast, oldest first.
    async fn attempts(&self, broadcast_id: &str) -> Result<Vec<AttemptView>, StoreError>;

    /// Per-destination delivery counts by state, the last success and the oldest
    /// unfinished delivery. The counts cost O(destinations) on SQLite (kept up to date
    /// as deliveries change); the oldest unfinished delivery, and PostgreSQL's
    /// unfinished counts, are read from partial indexes of unfinished rows, so they cost
    /// O(backlog), not O(history).
    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError>;

    /// A round trip through the write path: answers once an empty write transaction has
    /// committed, so it fails when writes cannot be made (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Deletes one small batch of broadcasts whose every delivery is terminal and whose
    /// last activity is older than the request's cut-off, with their deliveries,
    /// attempts and messages. Runs at the lowest write priority; call again with
    /// `Pruned::next` until it is `None`.
    async fn prune(&self, request: PruneRequest) -> Result<Pruned, StoreError>;

    /// The store's write-path series for `/metrics`, if it keeps any.
    fn metrics(&self) -> Option<metrics::StoreMetrics> {
        None
    }
}
