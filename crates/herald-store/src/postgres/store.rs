//! The [`Store`] operations on PostgreSQL, each one transaction or one read snapshot.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use herald_core::{BroadcastState, Progress, RetryPolicy, State, Timestamp};
use herald_core::{delivery, thread};
use sqlx::{PgConnection, Row};

use super::rows::*;
use super::{Failure, PgStore};
use crate::model::*;
use crate::{Store, StoreClock, StoreError};

#[async_trait]
impl Store for PgStore {
    async fn submit(&self, new: NewBroadcast) -> Result<Submitted, StoreError> {
        let _permit = self.admit()?;
        self.write(move |conn| {
            let new = new.clone();
            Box::pin(async move { submit_in(conn, new).await })
        })
        .await
    }

    async fn add_update(&self, update: NewUpdate) -> Result<UpdateAdded, StoreError> {
        let _permit = self.admit()?;
        let shard = self.shard();
        self.write(move |conn| {
            let update = update.clone();
            Box::pin(async move { add_update_in(conn, update, shard).await })
        })
        .await
    }

    async fn claim(&self, claim: ClaimRequest) -> Result<Claimed, StoreError> {
        let clock = self.clock.clone();
        let node = self.node_id.clone();
        self.write(move |conn| {
            let (claim, clock, node) = (claim.clone(), clock.clone(), node.clone());
            Box::pin(async move {
                let lease_until = stamp(clock.as_deref(), claim.now, claim.lease_until);
                // A probe takes deliveries tried before first (see `ClaimRequest::probe`);
                // the rest come in due order. The first statement moved its rows out of
                // `pending`, so the second cannot take them again.
                let mut leased = Vec::new();
                let passes: &[bool] = if claim.probe { &[true, false] } else { &[false] };
                for &retried in passes {
                    let rest = claim.limit.saturating_sub(leased.len());
                    if rest == 0 {
                        break;
                    }
                    let rows = sqlx::query(&claim_sql(retried))
                        .bind(&claim.destination)
                        .bind(claim.now.0)
                        .bind(i64::try_from(rest).unwrap_or(i64::MAX))
                        .bind(&*node)
                        .bind(lease_until.0)
                        .fetch_all(&mut *conn)
                        .await?;
                    let mut pass =
                        rows.iter().map(Leased::from_row).collect::<Result<Vec<_>, _>>()?;
                    // RETURNING has no order; restore the claim's.
                    pass.sort_by(|l, r| {
                        (l.progress.next_attempt_at, &l.id)
                            .cmp(&(r.progress.next_attempt_at, &r.id))
                    });
                    leased.extend(pass);
                }
                let next_due: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(next_attempt_at) FROM deliveries \
                     WHERE destination = $1 AND state = 'pending'",
                )
                .bind(&claim.destination)
                .fetch_one(&mut *conn)
                .await?;
                let work = to_work(conn, leased, lease_until).await?;
                Ok(Claimed { work, next_due: next_due.map(Timestamp) })
            })
        })
        .await
    }

    async fn claim_expired_except(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        exclude: Vec<String>,
    ) -> Result<Vec<Work>, StoreError> {
        let clock = self.clock.clone();
        let node = self.node_id.clone();
        self.write(move |conn| {
            let (exclude, clock, node) = (exclude.clone(), clock.clone(), node.clone());
            Box::pin(async move {
                let lease_until = stamp(clock.as_deref(), now, lease_until);
                let rows = sqlx::query(&format!(
                    "UPDATE deliveries d SET lease_token = d.lease_token + 1, lease_owner = $4, \
                     lease_expires_at = $5 \
                     FROM (SELECT id, lease_expires_at AS expired_at FROM deliveries \
                           WHERE state = 'in_flight' AND lease_expires_at <= $1 AND id <> ALL($3) \
                           ORDER BY lease_expires_at, id LIMIT $2 \
                           FOR UPDATE SKIP LOCKED) expired \
                     WHERE d.id = expired.id \
                     RETURNING {}, expired.expired_at",
                    leased_columns()
                ))
                .bind(now.0)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(&exclude)
                .bind(&*node)
                .bind(lease_until.0)
                .fetch_all(&mut *conn)
                .await?;
                let mut leased = Vec::with_capacity(rows.len());
                for row in &rows {
                    let expired_at: i64 = row.try_get(LEASED_WIDTH)?;
                    leased.push((expired_at, Leased::from_row(row)?));
                }
                leased.sort_by(|(l_at, l), (r_at, r)| (l_at, &l.id).cmp(&(r_at, &r.id)));
                let leased = leased.into_iter().map(|(_, l)| l).collect();
                to_work(conn, leased, lease_until).await
            })
        })
        .await
    }

    async fn record(&self, records: Vec<Record>) -> Result<Vec<Change>, StoreError> {
        let shard = self.shard();
        let node = self.node_id.clone();
        self.write(move |conn| {
            let (records, node) = (records.clone(), node.clone());
            Box::pin(async move { record_in(conn, records, &node, shard).await })
        })
        .await
    }

    async fn release(&self, releases: Vec<Release>) -> Result<Vec<Change>, StoreError> {
        self.write(move |conn| {
            let releases = releases.clone();
            Box::pin(async move {
                let mut changes = Vec::new();
                let mut counts = Counts::default();
                for release in releases {
                    let (broadcast_id, destination, seq, progress) =
                        load_delivery(conn, &release.delivery_id).await?.ok_or_else(|| {
                            StoreError::NotFound {
                                what: "delivery",
                                id: release.delivery_id.clone(),
                            }
                        })?;
                    let next = delivery::release(&progress, release.now);
                    // A read that raced another write fails the token check below: every
                    // write bumps the token.
                    let written = write_progress(
                        conn,
                        &release.delivery_id,
                        &next,
                        "in_flight",
                        Some(release.lease_token),
                        &mut counts,
                    )
                    .await?;
                    if written.is_some() {
                        changes.push(Change {
                            delivery_id: release.delivery_id,
                            broadcast_id,
                            destination,
                            seq,
                            state: next.state,
                            next_attempt_at: next.next_attempt_at,
                        });
                    }
                }
                Ok(changes)
            })
        })
        .await
    }

    async fn retry_delivery(
        &self,
        id: &str,
        policy: &RetryPolicy,
        now: Timestamp,
    ) -> Result<Vec<Change>, StoreError> {
        let (id, policy) = (id.to_string(), policy.clone());
        let shard = self.shard();
        self.write(move |conn| {
            let (id, policy) = (id.clone(), policy.clone());
            Box::pin(async move {
                let thread = locked(conn, &id).await?;
                let (seq, progress) = thread.target();
                let progress = progress.clone();
                let next = delivery::operator_retry(&progress, &policy, now)
                    .map_err(|error| not_allowed(&id, error, "retry"))?;
                let progresses: Vec<Progress> =
                    thread.rows.iter().map(|(_, _, p)| p.clone()).collect();
                thread::retry_keeps_order(&progresses, thread.idx)
                    .map_err(|error| not_allowed(&id, error, "retry"))?;
                let mut counts = Counts::default();
                write_progress(conn, &id, &next, progress.state.as_str(), None, &mut counts)
                    .await?
                    .ok_or_else(|| changing(&id, "retry"))?;
                let mut changes = vec![Change {
                    delivery_id: id,
                    broadcast_id: thread.broadcast_id.clone(),
                    destination: thread.destination.clone(),
                    seq,
                    state: next.state,
                    next_attempt_at: next.next_attempt_at,
                }];
                // A retried original revives its `predecessor_failed` updates; a retried
                // held message clears the reason its followers showed.
                let (b, d) = (&thread.broadcast_id, &thread.destination);
                settle_thread(conn, b, d, now, &mut changes, &mut counts).await?;
                counts.flush(conn, shard).await?;
                Ok(changes)
            })
        })
        .await
    }

    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Vec<Change>, StoreError> {
        let id = id.to_string();
        let shard = self.shard();
        self.write(move |conn| {
            let id = id.clone();
            Box::pin(async move {
                let thread = locked(conn, &id).await?;
                let (seq, progress) = thread.target();
                let progress = progress.clone();
                if seq > 0 && progress.state == State::InFlight {
                    // Cancelling would release the next update at once, and it could
                    // reach the destination before the attempt in flight: the thread
                    // would reorder.
                    return Err(StoreError::NotAllowed {
                        id,
                        state: "in flight (an update: cancelled now, the next update could \
                                overtake this attempt; cancel it once the attempt has ended)"
                            .into(),
                        action: "cancel",
                    }
                    .into());
                }
                let next = delivery::cancel(&progress)
                    .map_err(|error| not_allowed(&id, error, "cancel"))?;
                let mut counts = Counts::default();
                write_progress(conn, &id, &next, progress.state.as_str(), None, &mut counts)
                    .await?
                    .ok_or_else(|| changing(&id, "cancel"))?;
                let mut changes = vec![Change {
                    delivery_id: id,
                    broadcast_id: thread.broadcast_id.clone(),
                    destination: thread.destination.clone(),
                    seq,
                    state: State::Cancelled,
                    next_attempt_at: next.next_attempt_at,
                }];
                let (b, d) = (&thread.broadcast_id, &thread.destination);
                settle_thread(conn, b, d, now, &mut changes, &mut counts).await?;
                counts.flush(conn, shard).await?;
                Ok(changes)
            })
        })
        .await
    }

    async fn hold_removed(
        &self,
        configured: Vec<String>,
        now: Timestamp,
    ) -> Result<Vec<RemovedHolds>, StoreError> {
        let shard = self.shard();
        self.write(move |conn| {
            let configured = configured.clone();
            Box::pin(async move { hold_removed_in(conn, configured, now, shard).await })
        })
        .await
    }

    async fn delivery(&self, id: &str) -> Result<Option<DeliveryRef>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "SELECT broadcast_id, destination, seq, created_at, hold_reason, \
                     {PROGRESS_COLUMNS} FROM deliveries WHERE id = $1"
                ))
                .bind(&id)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(DeliveryRef {
                    broadcast_id: row.try_get(0)?,
                    delivery: DeliveryView {
                        destination: row.try_get(1)?,
                        seq: u32::try_from(row.try_get::<i32, _>(2)?).unwrap_or(0),
                        created_at: Timestamp(row.try_get(3)?),
                        hold_reason: row.try_get(4)?,
                        progress: progress_from_row(&row, 5)?,
                        id,
                    },
                }))
            })
        })
        .await
    }

    async fn broadcast(&self, id: &str) -> Result<Option<BroadcastView>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| Box::pin(async move { load_broadcast(conn, &id).await })).await
    }

    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        self.read(move |conn| Box::pin(async move { list_in(conn, query).await })).await
    }

    async fn attempts(&self, broadcast_id: &str) -> Result<Vec<AttemptView>, StoreError> {
        let id = broadcast_id.to_string();
        self.read(move |conn| {
            Box::pin(async move {
                let rows = sqlx::query(
                    "SELECT delivery_id, destination, number, started_at, duration_ms, outcome, \
                     status, detail FROM attempts WHERE broadcast_id = $1 ORDER BY id",
                )
                .bind(&id)
                .fetch_all(&mut *conn)
                .await?;
                let mut res = Vec::with_capacity(rows.len());
                for row in rows {
                    let corrupt = |what: &str| StoreError::Corrupt(format!("attempt {what}"));
                    res.push(AttemptView {
                        delivery_id: row.try_get(0)?,
                        destination: row.try_get(1)?,
                        attempt: AttemptRecord {
                            number: u32::try_from(row.try_get::<i32, _>(2)?)
                                .map_err(|_| corrupt("number"))?,
                            started_at: Timestamp(row.try_get(3)?),
                            duration_ms: u64::try_from(row.try_get::<i64, _>(4)?)
                                .map_err(|_| corrupt("duration"))?,
                            outcome: row.try_get(5)?,
                            status: row
                                .try_get::<Option<i32>, _>(6)?
                                .map(|s| u16::try_from(s).map_err(|_| corrupt("status")))
                                .transpose()?,
                            detail: row.try_get(7)?,
                        },
                    });
                }
                Ok(res)
            })
        })
        .await
    }

    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        self.read(|conn| Box::pin(async move { destination_stats_in(conn).await })).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check_writable().await
    }

    fn metrics(&self) -> Option<crate::metrics::StoreMetrics> {
        Some(self.metrics.clone())
    }

    async fn prune(&self, request: PruneRequest) -> Result<Pruned, StoreError> {
        let shard = self.shard();
        self.write(move |conn| {
            let request = request.clone();
            Box::pin(async move { prune_batch(conn, &request, shard).await })
        })
        .await
    }
}

impl PgStore {
    /// A permit for one submit or update, or `Overloaded` at once when
    /// `PgOptions::submit_queue` of them are already in progress.
    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        std::sync::Arc::clone(&self.submits)
            .try_acquire_owned()
            .map_err(|_| StoreError::Overloaded { queued: self.submit_queue })
    }

    /// Test hook: the plan PostgreSQL chooses for a claim, as `EXPLAIN` prints it.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    #[doc(hidden)]
    pub async fn explain_claim(&self, claim: &ClaimRequest) -> Result<String, StoreError> {
        let res: Result<String, Failure> = async {
            let mut conn = self.pool.acquire().await?;
            let rows = sqlx::query(&format!("EXPLAIN {}", claim_sql(claim.probe)))
                .bind(&claim.destination)
                .bind(claim.now.0)
                .bind(i64::try_from(claim.limit).unwrap_or(i64::MAX))
                .bind(&*self.node_id)
                .bind(claim.lease_until.0)
                .fetch_all(&mut *conn)
                .await?;
            let mut plan = String::new();
            for row in rows {
                plan.push_str(&row.try_get::<String, _>(0)?);
                plan.push('\n');
            }
            Ok(plan)
        }
        .await;
        res.map_err(Failure::into_store)
    }
}

/// How many columns [`leased_columns`] returns.
const LEASED_WIDTH: usize = 6 + 11;

/// The claim: up to `$3` due pending deliveries of destination `$1` at `$2` (with
/// `retried`, only those tried before), skipping rows another transaction holds, leased
/// to node `$4` until `$5` in the same statement.
fn claim_sql(retried: bool) -> String {
    // The due order matches the partial indexes `deliveries_due` and
    // `deliveries_retry_due`, so the scan reads only the rows it takes.
    let tried = if retried { "AND attempts > 0 " } else { "" };
    format!(
        "UPDATE deliveries d SET state = 'in_flight', lease_token = d.lease_token + 1, \
         lease_owner = $4, lease_expires_at = $5 \
         FROM (SELECT id FROM deliveries \
               WHERE destination = $1 AND state = 'pending' {tried}AND next_attempt_at <= $2 \
               ORDER BY next_attempt_at, id LIMIT $3 \
               FOR UPDATE SKIP LOCKED) due \
         WHERE d.id = due.id \
         RETURNING {}",
        leased_columns()
    )
}

/// The lease for a claim asked for at `asked` that runs now: `lease_until` shifted by
/// the time the request waited (for a connection, for locks), when the store has a clock.
fn stamp(clock: Option<&StoreClock>, asked: Timestamp, lease_until: Timestamp) -> Timestamp {
    match clock {
        Some(now) => lease_until.add(now().since(asked)),
        None => lease_until,
    }
}

fn changing(id: &str, action: &'static str) -> Failure {
    StoreError::NotAllowed { id: id.into(), state: "changing".into(), action }.into()
}

/// The thread of delivery `id`, locked, or `NotFound`.
async fn locked(conn: &mut PgConnection, id: &str) -> Result<LockedThread, Failure> {
    lock_thread_of(conn, id)
        .await?
        .ok_or_else(|| StoreError::NotFound { what: "delivery", id: id.into() }.into())
}

/// A delivery's identity and progress, unlocked.
async fn load_delivery(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<(String, String, u32, Progress)>, Failure> {
    let row = sqlx::query(&format!(
        "SELECT broadcast_id, destination, seq, {PROGRESS_COLUMNS} FROM deliveries WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let seq = u32::try_from(row.try_get::<i32, _>(2)?).unwrap_or(0);
    Ok(Some((row.try_get(0)?, row.try_get(1)?, seq, progress_from_row(&row, 3)?)))
}

async fn submit_in(conn: &mut PgConnection, new: NewBroadcast) -> Result<Submitted, Failure> {
    let destinations: Vec<&str> = new.deliveries.iter().map(|d| d.destination.as_str()).collect();
    // With a key, the unique index decides between concurrent submits from any node: the
    // insert waits for a transaction inserting the same key and then does nothing if
    // that one committed.
    let inserted = sqlx::query(
        "INSERT INTO broadcasts (id, idempotency_key, fingerprint, requested, destinations, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING seq",
    )
    .bind(&new.id)
    .bind(&new.idempotency_key)
    .bind(&new.fingerprint)
    .bind(to_json(&new.requested))
    .bind(to_json(&destinations))
    .bind(new.created_at.0)
    .bind(new.expires_at.map(|t| t.0))
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_none() {
        let key = new.idempotency_key.clone().unwrap_or_default();
        let existing =
            sqlx::query("SELECT id, fingerprint FROM broadcasts WHERE idempotency_key = $1")
                .bind(&key)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(existing) = existing else {
            // The owner of the key was deleted (retention) between the two statements.
            return Err(StoreError::Unavailable(
                "the idempotency key changed hands while submitting; try again".into(),
            )
            .into());
        };
        let (id, fingerprint): (String, String) = (existing.try_get(0)?, existing.try_get(1)?);
        if fingerprint != new.fingerprint {
            return Err(StoreError::KeyConflict { key, existing: id }.into());
        }
        return Ok(Submitted::Replayed(must_load(conn, &id).await?));
    }
    sqlx::query(
        "INSERT INTO messages (broadcast_id, seq, body, created_at) VALUES ($1, 0, $2, $3)",
    )
    .bind(&new.id)
    .bind(to_json(&new.message))
    .bind(new.created_at.0)
    .execute(&mut *conn)
    .await?;
    let rows: Vec<NewRow<'_>> = new
        .deliveries
        .iter()
        .enumerate()
        .map(|(position, d)| NewRow {
            new: d,
            seq: 0,
            position,
            progress: Progress::new(new.created_at, d.expires_at, d.max_attempts, false),
        })
        .collect();
    // New deliveries are pending: no terminal counter changes.
    let mut counts = Counts::default();
    insert_deliveries(conn, &new.id, &rows, new.created_at, &mut counts).await?;
    let deliveries = rows
        .into_iter()
        .map(|row| DeliveryView {
            id: row.new.id.clone(),
            destination: row.new.destination.clone(),
            seq: 0,
            progress: row.progress,
            created_at: new.created_at,
            hold_reason: None,
        })
        .collect();
    Ok(Submitted::Created(BroadcastView {
        destinations: destinations.into_iter().map(String::from).collect(),
        thread: vec![ThreadMessage { seq: 0, message: new.message, created_at: new.created_at }],
        deliveries,
        id: new.id,
        idempotency_key: new.idempotency_key,
        requested: new.requested,
        created_at: new.created_at,
        expires_at: new.expires_at,
    }))
}

async fn add_update_in(
    conn: &mut PgConnection,
    update: NewUpdate,
    shard: i32,
) -> Result<UpdateAdded, Failure> {
    // The broadcast's row lock serializes updates of one broadcast across nodes: each
    // takes the next seq, and a replayed key finds the update that was committed first.
    let destinations: Option<String> =
        sqlx::query_scalar("SELECT destinations FROM broadcasts WHERE id = $1 FOR UPDATE")
            .bind(&update.broadcast_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(destinations) = destinations else {
        return Err(StoreError::NotFound { what: "broadcast", id: update.broadcast_id }.into());
    };
    if let Some(idempotency) = &update.idempotency {
        let existing = sqlx::query(
            "SELECT seq, fingerprint FROM messages WHERE broadcast_id = $1 AND idempotency_key = $2",
        )
        .bind(&update.broadcast_id)
        .bind(&idempotency.key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(existing) = existing {
            let fingerprint: Option<String> = existing.try_get(1)?;
            if fingerprint.as_deref() != Some(idempotency.fingerprint.as_str()) {
                return Err(StoreError::KeyConflict {
                    key: idempotency.key.clone(),
                    existing: update.broadcast_id,
                }
                .into());
            }
            let seq = u32::try_from(existing.try_get::<i32, _>(0)?).unwrap_or(0);
            let broadcast = must_load(conn, &update.broadcast_id).await?;
            return Ok(UpdateAdded { seq, broadcast, changes: Vec::new(), replayed: true });
        }
    }
    let destinations = names_from(&destinations)?;
    let seq: i32 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE broadcast_id = $1",
    )
    .bind(&update.broadcast_id)
    .fetch_one(&mut *conn)
    .await?;
    let seq = u32::try_from(seq).unwrap_or(u32::MAX);
    let (key, fingerprint) = match &update.idempotency {
        Some(k) => (Some(k.key.as_str()), Some(k.fingerprint.as_str())),
        None => (None, None),
    };
    sqlx::query(
        "INSERT INTO messages (broadcast_id, seq, body, created_at, idempotency_key, fingerprint) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&update.broadcast_id)
    .bind(int(seq))
    .bind(to_json(&update.message))
    .bind(update.created_at.0)
    .bind(key)
    .bind(fingerprint)
    .execute(&mut *conn)
    .await?;
    let mut rows = Vec::new();
    for d in &update.deliveries {
        let Some(position) = destinations.iter().position(|name| *name == d.destination) else {
            continue;
        };
        let waiting = Progress::new(update.created_at, d.expires_at, d.max_attempts, true);
        // The update joins the end of the destination's thread, whose rows stay locked
        // until commit, so no cascade can move them meanwhile; where the messages ahead
        // of it put it is `settle`'s decision for its last entry.
        let mut thread: Vec<Progress> = lock_thread(conn, &update.broadcast_id, &d.destination)
            .await?
            .into_iter()
            .map(|(_, _, progress)| progress)
            .collect();
        let progress = if thread.is_empty() {
            Progress::new(update.created_at, d.expires_at, d.max_attempts, false)
        } else {
            thread.push(waiting.clone());
            let last = thread.len() - 1;
            thread::settle(&thread, update.created_at)
                .into_iter()
                .find(|(idx, _)| *idx == last)
                .map_or(waiting, |(_, progress)| progress)
        };
        rows.push(NewRow { new: d, seq, position, progress });
    }
    let mut counts = Counts::default();
    insert_deliveries(conn, &update.broadcast_id, &rows, update.created_at, &mut counts).await?;
    counts.flush(conn, shard).await?;
    let changes = rows
        .iter()
        .map(|row| Change {
            delivery_id: row.new.id.clone(),
            broadcast_id: update.broadcast_id.clone(),
            destination: row.new.destination.clone(),
            seq,
            state: row.progress.state.clone(),
            next_attempt_at: row.progress.next_attempt_at,
        })
        .collect();
    let broadcast = must_load(conn, &update.broadcast_id).await?;
    Ok(UpdateAdded { seq, broadcast, changes, replayed: false })
}

async fn record_in(
    conn: &mut PgConnection,
    records: Vec<Record>,
    node: &str,
    shard: i32,
) -> Result<Vec<Change>, Failure> {
    let mut changes = Vec::with_capacity(records.len());
    let mut counts = Counts::default();
    for record in records {
        let settles = record.progress.state.is_terminal() || record.progress.state == State::Held;
        if settles {
            // Thread locks before the delivery's own row lock, in the one order every
            // thread operation uses, so the cascade below cannot deadlock with an update
            // being added or an operator's retry.
            lock_thread_of(conn, &record.delivery_id).await?;
        }
        let mut written = write_progress(
            conn,
            &record.delivery_id,
            &record.progress,
            "in_flight",
            Some(record.lease_token),
            &mut counts,
        )
        .await?;
        if written.is_none() && record.progress.state == State::Delivered {
            written = write_late_delivery(conn, &record.delivery_id, &record.progress, &mut counts)
                .await?;
        }
        let applied = written.is_some();
        // A fenced-out record still needs the identity for the attempt log.
        let identity = match written {
            Some(identity) => Some(identity),
            None => load_delivery(conn, &record.delivery_id)
                .await?
                .map(|(broadcast_id, destination, seq, _)| (broadcast_id, destination, seq)),
        };
        let Some((broadcast_id, destination, seq)) = identity else { continue };
        if let Some(attempt) = &record.attempt {
            let mut detail = attempt.detail.clone();
            if !applied {
                // The attempt happened, so it is logged, but a newer lease (recovery, a
                // cancel, another node) owns the delivery now and its result stands.
                const NOTE: &str = "not applied: the delivery's lease had moved on";
                detail = Some(match detail {
                    Some(detail) => format!("{detail} ({NOTE})"),
                    None => NOTE.to_string(),
                });
            }
            sqlx::query(
                "INSERT INTO attempts (delivery_id, broadcast_id, destination, node_id, number, \
                 started_at, duration_ms, outcome, status, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&record.delivery_id)
            .bind(&broadcast_id)
            .bind(&destination)
            .bind(node)
            .bind(int(attempt.number))
            .bind(attempt.started_at.0)
            .bind(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX))
            .bind(&attempt.outcome)
            .bind(attempt.status.map(i32::from))
            .bind(detail)
            .execute(&mut *conn)
            .await?;
        }
        if !applied {
            continue;
        }
        let state = record.progress.state.clone();
        changes.push(Change {
            delivery_id: record.delivery_id,
            broadcast_id: broadcast_id.clone(),
            destination: destination.clone(),
            seq,
            state,
            next_attempt_at: record.progress.next_attempt_at,
        });
        // Only an end or a hold can move or explain the updates behind it; a retry or a
        // throttle leaves them waiting as they are.
        if settles {
            settle_thread(conn, &broadcast_id, &destination, record.now, &mut changes, &mut counts)
                .await?;
        }
    }
    counts.flush(conn, shard).await?;
    Ok(changes)
}

/// Records a `Delivered` that arrived after its lease moved on (recovery took the
/// delivery, or another node did): the destination has the message, so a delivery that
/// has not ended is delivered, and the newer lease is fenced out. A delivery that ended
/// meanwhile keeps its state; the attempt log shows the late answer.
async fn write_late_delivery(
    conn: &mut PgConnection,
    id: &str,
    progress: &Progress,
    counts: &mut Counts,
) -> Result<Option<Identity>, Failure> {
    let current: Option<String> = sqlx::query_scalar("SELECT state FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(current) = current else { return Ok(None) };
    if matches!(current.as_str(), "delivered" | "failed" | "cancelled") {
        return Ok(None);
    }
    tracing::info!(delivery_id = %id, was = %current, "Recorded a delivery confirmed after its lease had moved on.");
    write_progress(conn, id, progress, &current, None, counts).await
}

async fn hold_removed_in(
    conn: &mut PgConnection,
    configured: Vec<String>,
    now: Timestamp,
    shard: i32,
) -> Result<Vec<RemovedHolds>, Failure> {
    let mut counts: BTreeMap<String, RemovedHolds> = BTreeMap::new();
    let mut threads = BTreeSet::new();
    // Each statement names its state as a literal, so that it reads that state's partial
    // index instead of every delivery ever made. The pending backlog can be millions of
    // rows behind a restart: its destinations are found by a skip through
    // `deliveries_due` (one seek per destination) and only a removed one's rows are read.
    // In-flight rows are few (bounded by concurrency). An attempt that was in flight was
    // cut short: ambiguous, so the first attempt after a resume reconciles.
    const HOLD: &str = "UPDATE deliveries SET state = 'held', hold_reason = $2, \
         ambiguous = CASE WHEN state = 'in_flight' THEN TRUE ELSE ambiguous END, \
         last_error = 'held: destination `' || destination || '` is not in the configuration; \
         configure it again and restart herald to resume, or cancel the delivery', \
         lease_expires_at = NULL, lease_owner = NULL, lease_token = lease_token + 1 WHERE ";
    let removed: Vec<String> =
        sqlx::query_scalar(&format!("{PENDING_DESTINATIONS} AND name <> ALL($1)"))
            .bind(&configured)
            .fetch_all(&mut *conn)
            .await?;
    let mut held = Vec::new();
    for name in &removed {
        let sql = format!(
            "{HOLD}destination = $1 AND state = 'pending' RETURNING broadcast_id, destination"
        );
        held.extend(
            sqlx::query(&sql).bind(name).bind(DESTINATION_REMOVED).fetch_all(&mut *conn).await?,
        );
    }
    let sql = format!(
        "{HOLD}destination <> ALL($1) AND state = 'in_flight' RETURNING broadcast_id, destination"
    );
    held.extend(
        sqlx::query(&sql).bind(&configured).bind(DESTINATION_REMOVED).fetch_all(&mut *conn).await?,
    );
    for row in held {
        let (broadcast_id, destination): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        counts
            .entry(destination.clone())
            .or_insert_with(|| RemovedHolds {
                destination: destination.clone(),
                ..Default::default()
            })
            .held += 1;
        threads.insert((broadcast_id, destination));
    }
    let rows = sqlx::query(
        "UPDATE deliveries SET state = 'pending', hold_reason = NULL, next_attempt_at = $2, \
         last_error = NULL, lease_token = lease_token + 1 \
         WHERE state = 'held' AND hold_reason = $3 AND destination = ANY($1) \
         RETURNING broadcast_id, destination",
    )
    .bind(&configured)
    .bind(now.0)
    .bind(DESTINATION_REMOVED)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let (broadcast_id, destination): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        counts
            .entry(destination.clone())
            .or_insert_with(|| RemovedHolds {
                destination: destination.clone(),
                ..Default::default()
            })
            .resumed += 1;
        threads.insert((broadcast_id, destination));
    }
    // The updates behind a message that was held or resumed say why they wait.
    let mut changes = Vec::new();
    let mut terminal = Counts::default();
    for (broadcast_id, destination) in threads {
        settle_thread(conn, &broadcast_id, &destination, now, &mut changes, &mut terminal).await?;
    }
    terminal.flush(conn, shard).await?;
    Ok(counts.into_values().collect())
}

async fn list_in(conn: &mut PgConnection, query: ListQuery) -> Result<Page, Failure> {
    let limit = query.limit.clamp(1, 500);
    let mut cursor: Option<i64> = match &query.cursor {
        Some(c) => {
            Some(c.parse().map_err(|_| StoreError::NotFound { what: "cursor", id: c.clone() })?)
        }
        None => None,
    };
    let mut items = Vec::new();
    // A state filter is applied after loading, so scan a bounded number of candidates
    // per page and hand back a cursor to continue from.
    let scan_budget = limit * 20;
    let mut scanned = 0;
    let mut exhausted = false;
    while items.len() < limit && scanned < scan_budget {
        let batch = sqlx::query(
            "SELECT seq, id FROM broadcasts b WHERE ($1::BIGINT IS NULL OR seq < $1) \
             AND ($2::TEXT IS NULL OR EXISTS (SELECT 1 FROM deliveries d \
                  WHERE d.broadcast_id = b.id AND d.destination = $2)) \
             AND (NOT $4 OR EXISTS (SELECT 1 FROM deliveries h \
                  WHERE h.broadcast_id = b.id AND h.state = 'held')) \
             ORDER BY seq DESC LIMIT $3",
        )
        .bind(cursor)
        .bind(&query.destination)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(query.held)
        .fetch_all(&mut *conn)
        .await?;
        if batch.is_empty() {
            exhausted = true;
            break;
        }
        for row in batch {
            let (seq, id): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            scanned += 1;
            cursor = Some(seq);
            let view = must_load(conn, &id).await?;
            let matches = query.state.is_none_or(|want| {
                BroadcastState::of(view.deliveries.iter().map(|d| &d.progress.state)) == want
            });
            if matches {
                items.push(view);
                if items.len() == limit {
                    break;
                }
            }
        }
    }
    let next_cursor = if exhausted { None } else { cursor.map(|c| c.to_string()) };
    Ok(Page { items, next_cursor })
}

async fn destination_stats_in(conn: &mut PgConnection) -> Result<Vec<DestinationStats>, Failure> {
    // Terminal counts from the sharded counters; the rest counted from their partial
    // indexes, which hold only the unfinished deliveries, with the oldest creation time
    // among them in the last column.
    let rows = sqlx::query(
        "SELECT destination, state, SUM(n)::BIGINT, MAX(last_delivered_at) FROM destination_counts \
             GROUP BY destination, state \
         UNION ALL SELECT destination, state, COUNT(*), MIN(created_at) FROM deliveries \
             WHERE state = 'pending' GROUP BY destination, state \
         UNION ALL SELECT destination, state, COUNT(*), MIN(created_at) FROM deliveries \
             WHERE state = 'in_flight' GROUP BY destination, state \
         UNION ALL SELECT destination, state, COUNT(*), MIN(created_at) FROM deliveries \
             WHERE state = 'waiting' GROUP BY destination, state \
         UNION ALL SELECT destination, state, COUNT(*), MIN(created_at) FROM deliveries \
             WHERE state = 'held' GROUP BY destination, state",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut by_destination: BTreeMap<String, DestinationStats> = BTreeMap::new();
    for row in rows {
        let destination: String = row.try_get(0)?;
        let state: String = row.try_get(1)?;
        let n = u64::try_from(row.try_get::<i64, _>(2)?).unwrap_or(0);
        let time: Option<i64> = row.try_get(3)?;
        if n == 0 && time.is_none() {
            continue;
        }
        let stats = by_destination
            .entry(destination.clone())
            .or_insert_with(|| DestinationStats { destination, ..Default::default() });
        match state.as_str() {
            "pending" | "in_flight" | "waiting" | "held" => {
                match state.as_str() {
                    "pending" => stats.pending = n,
                    "in_flight" => stats.in_flight = n,
                    "waiting" => stats.waiting = n,
                    _ => stats.held = n,
                }
                let oldest = time.map(Timestamp);
                stats.oldest_open_at = match (stats.oldest_open_at, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            "delivered" => {
                stats.delivered = n;
                stats.last_delivered_at = time.map(Timestamp);
            }
            "failed" => stats.failed = n,
            "cancelled" => stats.cancelled = n,
            _ => {}
        }
    }
    Ok(by_destination.into_values().collect())
}

/// How many candidates one batch looks at per broadcast it may delete, so a stretch of
/// young or unfinished broadcasts cannot make one batch long.
const SCAN_FACTOR: usize = 4;

/// Whether each broadcast may go: (id, created_at, last message, last attempt, open
/// deliveries, failed or cancelled deliveries), in `seq` order.
const PRUNE_COLUMNS: &str = "b.seq, b.id, b.created_at, \
    (SELECT MAX(created_at) FROM messages m WHERE m.broadcast_id = b.id), \
    (SELECT MAX(started_at + duration_ms) FROM attempts a WHERE a.broadcast_id = b.id), \
    (SELECT COUNT(*) FROM deliveries d WHERE d.broadcast_id = b.id \
       AND d.state NOT IN ('delivered', 'failed', 'cancelled')), \
    (SELECT COUNT(*) FROM deliveries d WHERE d.broadcast_id = b.id \
       AND d.state IN ('failed', 'cancelled'))";

/// Whether a [`PRUNE_COLUMNS`] row may be deleted under `request`.
fn doomed(row: &sqlx::postgres::PgRow, request: &PruneRequest) -> Result<bool, Failure> {
    let created_at: i64 = row.try_get(2)?;
    let (last_message, last_attempt): (Option<i64>, Option<i64>) =
        (row.try_get(3)?, row.try_get(4)?);
    let (open, unhappy): (i64, i64) = (row.try_get(5)?, row.try_get(6)?);
    let last = created_at.max(last_message.unwrap_or(0)).max(last_attempt.unwrap_or(0));
    let cutoff = if unhappy > 0 { request.failed_before.0 } else { request.delivered_before.0 };
    Ok(open == 0 && last < cutoff)
}

/// One retention batch; see [`Store::prune`]. Broadcasts are scanned in `seq` order and
/// the scan ends at the first one created after the later cut-off. The candidates are
/// then locked and judged again, so an operator's retry or an update that another node
/// commits meanwhile is never deleted with them.
async fn prune_batch(
    conn: &mut PgConnection,
    request: &PruneRequest,
    shard: i32,
) -> Result<Pruned, Failure> {
    let newest_cutoff = request.delivered_before.0.max(request.failed_before.0);
    let limit = request.limit.max(1);
    let rows = sqlx::query(&format!(
        "SELECT {PRUNE_COLUMNS} FROM broadcasts b WHERE $1::BIGINT IS NULL OR b.seq > $1 \
         ORDER BY b.seq LIMIT $2"
    ))
    .bind(request.after)
    .bind(i64::try_from(limit * SCAN_FACTOR).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    let mut candidates = Vec::with_capacity(limit);
    let mut next = None;
    let mut scanned = 0;
    let mut reached_young = false;
    for row in &rows {
        scanned += 1;
        let (seq, id, created_at): (i64, String, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if created_at >= newest_cutoff {
            reached_young = true;
            break;
        }
        if candidates.len() == limit {
            break;
        }
        next = Some(seq);
        if doomed(row, request)? {
            candidates.push(id);
        }
    }
    // The scan reached the end, or a broadcast too young: this pass is over.
    let reached_end = scanned < limit * SCAN_FACTOR && candidates.len() < limit;
    if reached_end || reached_young {
        next = None;
    }
    let mut pruned = Pruned { next, ..Pruned::default() };
    if candidates.is_empty() {
        return Ok(pruned);
    }
    candidates.sort();
    // Broadcast rows first (as updates take them), then their deliveries, in id order.
    sqlx::query("SELECT id FROM broadcasts WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&candidates)
        .fetch_all(&mut *conn)
        .await?;
    sqlx::query("SELECT id FROM deliveries WHERE broadcast_id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&candidates)
        .fetch_all(&mut *conn)
        .await?;
    let rows =
        sqlx::query(&format!("SELECT {PRUNE_COLUMNS} FROM broadcasts b WHERE b.id = ANY($1)"))
            .bind(&candidates)
            .fetch_all(&mut *conn)
            .await?;
    let mut doomed_ids = Vec::with_capacity(rows.len());
    for row in &rows {
        if doomed(row, request)? {
            doomed_ids.push(row.try_get::<String, _>(1)?);
        }
    }
    if doomed_ids.is_empty() {
        return Ok(pruned);
    }
    sqlx::query("DELETE FROM attempts WHERE broadcast_id = ANY($1)")
        .bind(&doomed_ids)
        .execute(&mut *conn)
        .await?;
    let deleted = sqlx::query(
        "DELETE FROM deliveries WHERE broadcast_id = ANY($1) RETURNING destination, state",
    )
    .bind(&doomed_ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut counts = Counts::default();
    for row in &deleted {
        let (destination, state): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        counts.add(&destination, &state, -1, None);
    }
    pruned.deliveries = deleted.len();
    sqlx::query("DELETE FROM messages WHERE broadcast_id = ANY($1)")
        .bind(&doomed_ids)
        .execute(&mut *conn)
        .await?;
    let gone = sqlx::query("DELETE FROM broadcasts WHERE id = ANY($1)")
        .bind(&doomed_ids)
        .execute(&mut *conn)
        .await?;
    pruned.broadcasts = usize::try_from(gone.rows_affected()).unwrap_or(0);
    counts.flush(conn, shard).await?;
    Ok(pruned)
}
