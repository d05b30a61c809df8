//! The records the store accepts and returns.

use std::sync::Arc;

use herald_core::{Message, Progress, State, Timestamp};

/// A delivery to create: one message × one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// `d_` + ULID; also the idempotency key sent to the destination.
    pub id: String,
    /// The destination's configured name.
    pub destination: String,
    /// The attempt budget under the destination's policy at creation.
    pub max_attempts: u32,
    /// When the delivery expires (creation + max age, or the broadcast's expiry).
    pub expires_at: Timestamp,
}

/// A broadcast to accept.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBroadcast {
    /// `b_` + ULID.
    pub id: String,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// A fingerprint of the request, compared on a replay of the key.
    pub fingerprint: String,
    /// The names the client asked for (destinations and groups), as given.
    pub requested: Vec<String>,
    /// The message.
    pub message: Message,
    /// One delivery per resolved destination.
    pub deliveries: Vec<NewDelivery>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// The client's expiry, if any.
    pub expires_at: Option<Timestamp>,
}

/// The answer to a submit.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// A new broadcast was stored.
    Created(BroadcastView),
    /// The key and request matched a stored broadcast; nothing new was stored.
    Replayed(BroadcastView),
}

/// A follow-up to accept.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUpdate {
    /// The broadcast it follows.
    pub broadcast_id: String,
    /// The follow-up message.
    pub message: Message,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// Delivery ids, max attempts and expiry per destination; the store creates one
    /// delivery for each entry whose destination belongs to the broadcast.
    pub deliveries: Vec<NewDelivery>,
    /// The client's idempotency key, scoped to the broadcast, if any.
    pub idempotency: Option<UpdateKey>,
}

/// An update's idempotency key and the fingerprint of the request that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateKey {
    /// The client's key, unique within its broadcast.
    pub key: String,
    /// A fingerprint of the request, compared on a replay of the key.
    pub fingerprint: String,
}

/// The answer to an update.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateAdded {
    /// The update's position in the thread (1 for the first update).
    pub seq: u32,
    /// The broadcast after the update.
    pub broadcast: BroadcastView,
    /// The deliveries created, with their initial state (none on a replay).
    pub changes: Vec<Change>,
    /// The key and request matched an update already stored, which is the one
    /// answered; nothing new was stored.
    pub replayed: bool,
}

/// A lane's request for due work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Whose deliveries.
    pub destination: String,
    /// At most this many.
    pub limit: usize,
    /// Due means `next_attempt_at <= now`.
    pub now: Timestamp,
    /// The lease granted to each claimed delivery, for a claim committed at `now`. A
    /// store that knows the time at commit (see `SqliteStore::with_clock`) shifts it by
    /// the time the claim waited, so writer lag never eats into an attempt's lease.
    pub lease_until: Timestamp,
    /// A circuit breaker's probe: take due deliveries tried before first (in due order),
    /// then the oldest. A destination that accepts retries (it fails first tries, or times
    /// out on them) then answers the probe with a success, while one that is down fails
    /// any probe; in due order the probe would be a first try that fails either way, and
    /// the breaker would stall a destination that accepts messages. The stores read the
    /// retried ones from their own index, so a probe costs the same with any backlog.
    pub probe: bool,
}

/// Claimed work plus when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The leased deliveries.
    pub work: Vec<Work>,
    /// The earliest `next_attempt_at` among the destination's remaining pending
    /// deliveries, if any.
    pub next_due: Option<Timestamp>,
}

/// One leased delivery with everything needed to attempt it.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    /// The delivery id (and idempotency key).
    pub delivery_id: String,
    /// Its broadcast.
    pub broadcast_id: String,
    /// Its destination.
    pub destination: String,
    /// 0 for the original, n for the n-th update.
    pub seq: u32,
    /// The fencing token of this lease.
    pub lease_token: i64,
    /// When the lease ends, as written when the claim committed: an attempt must be over
    /// (or handed back) well before it, or recovery may take the delivery.
    pub lease_expires_at: Timestamp,
    /// The state as claimed (`InFlight`).
    pub progress: Progress,
    /// What to send.
    pub message: Arc<Message>,
    /// When the delivery was created: nothing can have been posted before it, so a
    /// look-up's window starts here.
    pub created_at: Timestamp,
    /// For an ambiguous delivery: when its latest ambiguous attempt ended (an
    /// eventually consistent look-up trusts "not found" only some time after it).
    pub ambiguous_at: Option<Timestamp>,
    /// For an update: the broadcast's original on this destination.
    pub original: Option<Original>,
}

/// The original message an update follows, as a connector needs it (to reply to it,
/// quote it or edit it).
#[derive(Debug, Clone, PartialEq)]
pub struct Original {
    /// The original's delivery id on this destination.
    pub delivery_id: String,
    /// The destination's id for the original, if it returned one.
    pub remote_ref: Option<String>,
    /// The original message.
    pub message: Arc<Message>,
    /// When the original was delivered there (when it was accepted, if that is unknown).
    pub at: Timestamp,
}

/// An attempt to append to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The attempt's number for its delivery, from 1 (a throttled try repeats a number).
    pub number: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took.
    pub duration_ms: u64,
    /// The outcome class (`delivered`, `retry`, ...).
    pub outcome: String,
    /// The HTTP status, if any.
    pub status: Option<u16>,
    /// What happened, secret-free.
    pub detail: Option<String>,
}

/// A computed transition to persist if the lease still holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The delivery.
    pub delivery_id: String,
    /// The lease token the worker holds.
    pub lease_token: i64,
    /// The new progress, from `herald_core::delivery::next`.
    pub progress: Progress,
    /// The attempt to log; `None` when nothing was sent (e.g. expired before sending).
    pub attempt: Option<AttemptRecord>,
    /// When the outcome was recorded.
    pub now: Timestamp,
}

/// A claimed delivery to hand back untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The delivery.
    pub delivery_id: String,
    /// The lease token the worker holds.
    pub lease_token: i64,
    /// When it becomes due again.
    pub now: Timestamp,
}

/// A state change that happened, for wake-ups and the event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The delivery.
    pub delivery_id: String,
    /// Its broadcast.
    pub broadcast_id: String,
    /// Its destination.
    pub destination: String,
    /// 0 for the original, n for updates.
    pub seq: u32,
    /// The new state.
    pub state: State,
    /// When it is due, if pending.
    pub next_attempt_at: Timestamp,
}

/// A delivery as shown to people.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryView {
    /// The delivery id.
    pub id: String,
    /// The destination.
    pub destination: String,
    /// 0 for the original, n for the n-th update.
    pub seq: u32,
    /// Its progress.
    pub progress: Progress,
    /// When it was created.
    pub created_at: Timestamp,
    /// Why herald itself holds it (`destination_removed`), if it does; `None` for a
    /// delivery held after an ambiguous outcome, and for every other state.
    pub hold_reason: Option<String>,
}

/// A delivery found by id, with its broadcast's id.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRef {
    /// The broadcast it belongs to.
    pub broadcast_id: String,
    /// The delivery.
    pub delivery: DeliveryView,
}

/// One message of a broadcast's thread.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadMessage {
    /// 0 for the original.
    pub seq: u32,
    /// The message.
    pub message: Message,
    /// When it was accepted.
    pub created_at: Timestamp,
}

/// A broadcast as shown to people.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastView {
    /// The broadcast id.
    pub id: String,
    /// The client's key.
    pub idempotency_key: Option<String>,
    /// The names as requested.
    pub requested: Vec<String>,
    /// The resolved destinations, in order.
    pub destinations: Vec<String>,
    /// The original (seq 0) and every update.
    pub thread: Vec<ThreadMessage>,
    /// Every delivery, ordered by seq then destination order.
    pub deliveries: Vec<DeliveryView>,
    /// Accepted at.
    pub created_at: Timestamp,
    /// The client's expiry.
    pub expires_at: Option<Timestamp>,
}

/// Filters and paging for [`crate::Store::list`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListQuery {
    /// Only broadcasts in this overall state (`in_progress`, `delivered`, ...).
    pub state: Option<herald_core::BroadcastState>,
    /// Only broadcasts with a delivery to this destination.
    pub destination: Option<String>,
    /// Only broadcasts with at least one `held` delivery (`state=held` in the API);
    /// combines with `state` and `destination`.
    pub held: bool,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// One page of broadcasts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The broadcasts, newest first.
    pub items: Vec<BroadcastView>,
    /// The cursor for the next page, if there may be one.
    pub next_cursor: Option<String>,
}

/// One logged attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptView {
    /// The delivery.
    pub delivery_id: String,
    /// Its destination.
    pub destination: String,
    /// The attempt.
    pub attempt: AttemptRecord,
}

/// What [`crate::Store::hold_removed`] did for one destination.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemovedHolds {
    /// The destination.
    pub destination: String,
    /// Deliveries newly held because the destination is not configured.
    pub held: u64,
    /// Deliveries resumed because the destination is configured again.
    pub resumed: u64,
}

/// The reason stored for a delivery held because its destination was removed.
pub const DESTINATION_REMOVED: &str = "destination_removed";

/// The destinations that have pending deliveries, as rows of `name`: one seek per
/// destination through the partial index `deliveries_due` (a loose index scan), however
/// many deliveries are pending, in the SQL both stores speak. Callers append `AND ...`
/// conditions on `name`.
pub(crate) const PENDING_DESTINATIONS: &str = "WITH RECURSIVE d(name) AS ( \
     SELECT MIN(destination) FROM deliveries WHERE state = 'pending' \
     UNION ALL \
     SELECT (SELECT MIN(destination) FROM deliveries WHERE state = 'pending' AND destination > d.name) \
     FROM d WHERE d.name IS NOT NULL) \
     SELECT name FROM d WHERE name IS NOT NULL";

/// Counts per destination.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DestinationStats {
    /// The destination.
    pub destination: String,
    /// Deliveries waiting for their next attempt.
    pub pending: u64,
    /// Deliveries being attempted.
    pub in_flight: u64,
    /// Updates waiting for a predecessor.
    pub waiting: u64,
    /// Deliveries held for an operator.
    pub held: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// The latest delivery time.
    pub last_delivered_at: Option<Timestamp>,
    /// When the oldest delivery not yet delivered, failed or cancelled was created;
    /// `None` when there is none.
    pub oldest_open_at: Option<Timestamp>,
}

/// One retention batch: which broadcasts may go, and where the scan continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneRequest {
    /// Fully delivered broadcasts whose last activity is before this go.
    pub delivered_before: Timestamp,
    /// Broadcasts with a failed or cancelled delivery whose last activity is before
    /// this go.
    pub failed_before: Timestamp,
    /// Continue after this position (`Pruned::next` of the previous batch); `None`
    /// starts from the oldest broadcast.
    pub after: Option<i64>,
    /// The most broadcasts deleted in this batch.
    pub limit: usize,
}

/// What one retention batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Broadcasts deleted.
    pub broadcasts: usize,
    /// Deliveries deleted with them.
    pub deliveries: usize,
    /// Where the next batch continues; `None` when the scan reached broadcasts too
    /// young to prune (or the end).
    pub next: Option<i64>,
}
