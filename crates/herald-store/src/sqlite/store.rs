//! The [`Store`] operations on SQLite, each one writer transaction or one read snapshot.

use async_trait::async_trait;
use herald_core::{BroadcastState, Progress, RetryPolicy, State, Timestamp};
use herald_core::{delivery, thread};
use rusqlite::{OptionalExtension, params};

use super::queue::Priority;
use super::rows::*;
use super::{SqliteStore, StoreClock};
use crate::model::*;
use crate::{Store, StoreError};

#[async_trait]
impl Store for SqliteStore {
    async fn submit(&self, new: NewBroadcast) -> Result<Submitted, StoreError> {
        self.write(Priority::New, move |conn| {
            if let Some(key) = &new.idempotency_key {
                let existing = conn
                    .prepare_cached("SELECT id, fingerprint FROM broadcasts WHERE idempotency_key = ?1")?
                    .query_row([key], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                    .optional()?;
                if let Some((id, fingerprint)) = existing {
                    if fingerprint != new.fingerprint {
                        return Err(StoreError::KeyConflict { key: key.clone(), existing: id });
                    }
                    return Ok(Submitted::Replayed(must_load(conn, &id)?));
                }
            }
            let destinations: Vec<&str> = new.deliveries.iter().map(|d| d.destination.as_str()).collect();
            conn.prepare_cached(
                "INSERT INTO broadcasts (id, idempotency_key, fingerprint, requested, destinations, \
                 created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                new.id,
                new.idempotency_key,
                new.fingerprint,
                to_json(&new.requested),
                to_json(&destinations),
                new.created_at.0,
                new.expires_at.map(|t| t.0),
            ])?;
            let body = to_json(&new.message);
            conn.prepare_cached(
                "INSERT INTO messages (broadcast_id, seq, body, created_at) VALUES (?1, 0, ?2, ?3)",
            )?
            .execute(params![new.id, body, new.created_at.0])?;
            remember_message(&new.id, 0, &new.message, new.created_at, body.len());
            let mut deliveries = Vec::with_capacity(new.deliveries.len());
            for (position, d) in new.deliveries.iter().enumerate() {
                let progress = Progress::new(new.created_at, d.expires_at, d.max_attempts, false);
                insert_delivery(conn, &new.id, 0, position, d, &progress, new.created_at)?;
                deliveries.push(DeliveryView {
                    id: d.id.clone(),
                    destination: d.destination.clone(),
                    seq: 0,
                    progress,
                    created_at: new.created_at,
                    hold_reason: None,
                });
            }
            Ok(Submitted::Created(BroadcastView {
                id: new.id,
                idempotency_key: new.idempotency_key,
                requested: new.requested,
                destinations: destinations.into_iter().map(String::from).collect(),
                thread: vec![ThreadMessage { seq: 0, message: new.message, created_at: new.created_at }],
                deliveries,
                created_at: new.created_at,
                expires_at: new.expires_at,
            }))
        })
        .await
    }

    async fn add_update(&self, update: NewUpdate) -> Result<UpdateAdded, StoreError> {
        self.write(Priority::New, move |conn| {
            let destinations: Option<String> = conn
                .prepare_cached("SELECT destinations FROM broadcasts WHERE id = ?1")?
                .query_row([&update.broadcast_id], |row| row.get(0))
                .optional()?;
            let Some(destinations) = destinations else {
                return Err(StoreError::NotFound { what: "broadcast", id: update.broadcast_id });
            };
            if let Some(idempotency) = &update.idempotency {
                // Checked in the writer's transaction, so concurrent replays serialize
                // here and exactly one of them inserts; the unique index is the backstop.
                let existing = conn
                    .prepare_cached(
                        "SELECT seq, fingerprint FROM messages \
                         WHERE broadcast_id = ?1 AND idempotency_key = ?2",
                    )?
                    .query_row(params![update.broadcast_id, idempotency.key], |row| {
                        Ok((row.get::<_, u32>(0)?, row.get::<_, Option<String>>(1)?))
                    })
                    .optional()?;
                if let Some((seq, fingerprint)) = existing {
                    if fingerprint.as_deref() != Some(idempotency.fingerprint.as_str()) {
                        return Err(StoreError::KeyConflict {
                            key: idempotency.key.clone(),
                            existing: update.broadcast_id,
                        });
                    }
                    let broadcast = must_load(conn, &update.broadcast_id)?;
                    return Ok(UpdateAdded { seq, broadcast, changes: Vec::new(), replayed: true });
                }
            }
            let destinations = names_from(&destinations)?;
            let seq: u32 = conn
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE broadcast_id = ?1")?
                .query_row([&update.broadcast_id], |row| row.get(0))?;
            let (key, fingerprint) = match &update.idempotency {
                Some(k) => (Some(k.key.as_str()), Some(k.fingerprint.as_str())),
                None => (None, None),
            };
            let body = to_json(&update.message);
            conn.prepare_cached(
                "INSERT INTO messages (broadcast_id, seq, body, created_at, idempotency_key, fingerprint) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                update.broadcast_id,
                seq,
                body,
                update.created_at.0,
                key,
                fingerprint
            ])?;
            remember_message(&update.broadcast_id, seq, &update.message, update.created_at, body.len());
            let mut changes = Vec::new();
            for d in &update.deliveries {
                let Some(position) = destinations.iter().position(|name| *name == d.destination) else {
                    continue;
                };
                let waiting = Progress::new(update.created_at, d.expires_at, d.max_attempts, true);
                // The update joins the end of the destination's thread; where the messages
                // ahead of it put it is `settle`'s decision for its last entry.
                let mut thread: Vec<Progress> = load_thread(conn, &update.broadcast_id, &d.destination)?
                    .into_iter()
                    .map(|(_, _, progress)| progress)
                    .collect();
                let progress = if thread.is_empty() {
                    // Every destination has an original, so this cannot happen: nothing to
                    // wait for.
                    Progress::new(update.created_at, d.expires_at, d.max_attempts, false)
                } else {
                    thread.push(waiting.clone());
                    let last = thread.len() - 1;
                    thread::settle(&thread, update.created_at)
                        .into_iter()
                        .find(|(idx, _)| *idx == last)
                        .map_or(waiting, |(_, progress)| progress)
                };
                insert_delivery(conn, &update.broadcast_id, seq, position, d, &progress, update.created_at)?;
                changes.push(Change {
                    delivery_id: d.id.clone(),
                    broadcast_id: update.broadcast_id.clone(),
                    destination: d.destination.clone(),
                    seq,
                    state: progress.state.clone(),
                    next_attempt_at: progress.next_attempt_at,
                });
            }
            let broadcast = must_load(conn, &update.broadcast_id)?;
            Ok(UpdateAdded { seq, broadcast, changes, replayed: false })
        })
        .await
    }

    async fn claim(&self, claim: ClaimRequest) -> Result<Claimed, StoreError> {
        let clock = self.clock.clone();
        self.write(Priority::Urgent, move |conn| {
            let lease_until = stamp(clock.as_deref(), claim.now, claim.lease_until);
            // A probe takes deliveries tried before first (see `ClaimRequest::probe`), read
            // from their own partial index so a large backlog costs it nothing; the rest
            // come in due order. Each lease moves its rows out of `pending`, so the second
            // read cannot take them again.
            let mut work = Vec::new();
            if claim.probe {
                let rows = select_for_lease(
                    conn,
                    &claim_sql(true),
                    params![claim.destination, claim.now.0, claim.limit],
                )?;
                work = lease(conn, rows, lease_until)?;
            }
            let rest = claim.limit.saturating_sub(work.len());
            if rest > 0 {
                let rows = select_for_lease(
                    conn,
                    &claim_sql(false),
                    params![claim.destination, claim.now.0, rest],
                )?;
                work.extend(lease(conn, rows, lease_until)?);
            }
            let next_due: Option<i64> = conn
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE destination = ?1 AND state = 'pending'",
                )?
                .query_row([&claim.destination], |row| row.get(0))?;
            Ok(Claimed { work, next_due: next_due.map(Timestamp) })
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
        self.write(Priority::Urgent, move |conn| {
            let lease_until = stamp(clock.as_deref(), now, lease_until);
            let rows = select_for_lease(
                conn,
                &format!(
                    "SELECT {LEASE_COLUMNS}, {PROGRESS_COLUMNS} FROM deliveries \
                     WHERE state = 'in_flight' AND lease_expires_at <= ?1 \
                     AND id NOT IN (SELECT value FROM json_each(?3)) \
                     ORDER BY lease_expires_at LIMIT ?2"
                ),
                params![now.0, limit, to_json(&exclude)],
            )?;
            lease(conn, rows, lease_until)
        })
        .await
    }

    async fn record(&self, records: Vec<Record>) -> Result<Vec<Change>, StoreError> {
        self.write(Priority::Urgent, move |conn| {
            let mut changes = Vec::with_capacity(records.len());
            for record in records {
                let written = write_progress(
                    conn,
                    &record.delivery_id,
                    &record.progress,
                    "in_flight",
                    Some(record.lease_token),
                )?;
                let written = match written {
                    None if record.progress.state == State::Delivered => {
                        write_late_delivery(conn, &record.delivery_id, &record.progress)?
                    }
                    written => written,
                };
                let applied = written.is_some();
                // A fenced-out record still needs the identity for the attempt log.
                let identity = match written {
                    Some(identity) => Some(identity),
                    None => conn
                        .prepare_cached(
                            "SELECT broadcast_id, destination, seq FROM deliveries WHERE id = ?1",
                        )?
                        .query_row([&record.delivery_id], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })
                        .optional()?,
                };
                let Some((broadcast_id, destination, seq)) = identity else { continue };
                if let Some(attempt) = &record.attempt {
                    let mut detail = attempt.detail.clone();
                    if !applied {
                        // The attempt happened, so it is logged, but a newer lease
                        // (recovery, cancel) owns the delivery now and its result stands.
                        // (A late `Delivered` is applied above unless the delivery ended.)
                        const NOTE: &str = "not applied: the delivery's lease had moved on";
                        detail = Some(match detail {
                            Some(detail) => format!("{detail} ({NOTE})"),
                            None => NOTE.to_string(),
                        });
                    }
                    conn.prepare_cached(
                        "INSERT INTO attempts (delivery_id, broadcast_id, destination, number, \
                         started_at, duration_ms, outcome, status, detail) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )?
                    .execute(params![
                        record.delivery_id,
                        broadcast_id,
                        destination,
                        attempt.number,
                        attempt.started_at.0,
                        attempt.duration_ms,
                        attempt.outcome,
                        attempt.status,
                        detail,
                    ])?;
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
                    state: state.clone(),
                    next_attempt_at: record.progress.next_attempt_at,
                });
                // Only an end or a hold can move or explain the updates behind it; a
                // retry or a throttle leaves them waiting as they are.
                if state.is_terminal() || state == State::Held {
                    settle_thread(conn, &broadcast_id, &destination, record.now, &mut changes)?;
                }
            }
            Ok(changes)
        })
        .await
    }

    async fn release(&self, releases: Vec<Release>) -> Result<Vec<Change>, StoreError> {
        self.write(Priority::Urgent, move |conn| {
            let mut changes = Vec::new();
            for release in releases {
                let (broadcast_id, destination, seq, progress) =
                    load_delivery(conn, &release.delivery_id)?;
                let next = delivery::release(&progress, release.now);
                if write_progress(
                    conn,
                    &release.delivery_id,
                    &next,
                    "in_flight",
                    Some(release.lease_token),
                )?
                .is_some()
                {
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
        .await
    }

    async fn retry_delivery(
        &self,
        id: &str,
        policy: &RetryPolicy,
        now: Timestamp,
    ) -> Result<Vec<Change>, StoreError> {
        let (id, policy) = (id.to_string(), policy.clone());
        self.write(Priority::Urgent, move |conn| {
            let (broadcast_id, destination, seq, progress) = load_delivery(conn, &id)?;
            let next = delivery::operator_retry(&progress, &policy, now)
                .map_err(|error| not_allowed(&id, error, "retry"))?;
            let thread = load_thread(conn, &broadcast_id, &destination)?;
            let idx = thread.iter().position(|(other, _, _)| *other == id).unwrap_or(0);
            let progresses: Vec<Progress> = thread.into_iter().map(|(_, _, p)| p).collect();
            thread::retry_keeps_order(&progresses, idx)
                .map_err(|error| not_allowed(&id, error, "retry"))?;
            if write_progress(conn, &id, &next, progress.state.as_str(), None)?.is_none() {
                return Err(StoreError::NotAllowed {
                    id,
                    state: "changing".into(),
                    action: "retry",
                });
            }
            let mut changes = vec![Change {
                delivery_id: id,
                broadcast_id: broadcast_id.clone(),
                destination: destination.clone(),
                seq,
                state: next.state,
                next_attempt_at: next.next_attempt_at,
            }];
            // A retried original revives its `predecessor_failed` updates; a retried held
            // message clears the reason its followers showed.
            settle_thread(conn, &broadcast_id, &destination, now, &mut changes)?;
            Ok(changes)
        })
        .await
    }

    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Vec<Change>, StoreError> {
        let id = id.to_string();
        self.write(Priority::Urgent, move |conn| {
            let (broadcast_id, destination, seq, progress) = load_delivery(conn, &id)?;
            if seq > 0 && progress.state == State::InFlight {
                // Cancelling would release the next update at once, and it could reach
                // the destination before the attempt in flight: the thread would reorder.
                return Err(StoreError::NotAllowed {
                    id,
                    state: "in flight (an update: cancelled now, the next update could \
                            overtake this attempt; cancel it once the attempt has ended)"
                        .into(),
                    action: "cancel",
                });
            }
            let next =
                delivery::cancel(&progress).map_err(|error| not_allowed(&id, error, "cancel"))?;
            if write_progress(conn, &id, &next, progress.state.as_str(), None)?.is_none() {
                return Err(StoreError::NotAllowed {
                    id,
                    state: "changing".into(),
                    action: "cancel",
                });
            }
            let mut changes = vec![Change {
                delivery_id: id,
                broadcast_id: broadcast_id.clone(),
                destination: destination.clone(),
                seq,
                state: State::Cancelled,
                next_attempt_at: next.next_attempt_at,
            }];
            settle_thread(conn, &broadcast_id, &destination, now, &mut changes)?;
            Ok(changes)
        })
        .await
    }

    async fn hold_removed(
        &self,
        configured: Vec<String>,
        now: Timestamp,
    ) -> Result<Vec<RemovedHolds>, StoreError> {
        self.write(Priority::Urgent, move |conn| {
            let configured = to_json(&configured);
            let mut counts: std::collections::BTreeMap<String, RemovedHolds> = Default::default();
            let mut threads = std::collections::BTreeSet::new();
            // Each statement names its state as a literal, so that it reads that state's
            // partial index instead of every delivery ever made. The pending backlog can
            // be millions of rows behind a restart: its destinations are found by a skip
            // through `deliveries_due` (one seek per destination) and only a removed
            // one's rows are read. In-flight rows are few (bounded by concurrency). An
            // attempt that was in flight was cut short by the stop: ambiguous, so the
            // first attempt after a resume reconciles, as recovery would have made it.
            const HOLD: &str = "UPDATE deliveries SET state = 'held', hold_reason = ?2, \
                 ambiguous = CASE WHEN state = 'in_flight' THEN 1 ELSE ambiguous END, \
                 last_error = 'held: destination `' || destination || '` is not in the configuration; \
                 configure it again and restart herald to resume, or cancel the delivery', \
                 lease_expires_at = NULL, lease_token = lease_token + 1 WHERE ";
            let removed: Vec<String> = conn
                .prepare_cached(&format!("{PENDING_DESTINATIONS} AND name NOT IN (SELECT value FROM json_each(?1))"))?
                .query_map([&configured], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            let mut holds: Vec<(&str, String)> = removed
                .iter()
                .map(|name| ("destination = ?1 AND state = 'pending'", name.clone()))
                .collect();
            holds.push(("destination NOT IN (SELECT value FROM json_each(?1)) AND state = 'in_flight'", configured.clone()));
            for (which, destinations) in holds {
                let mut stmt = conn.prepare_cached(&format!("{HOLD}{which} RETURNING broadcast_id, destination"))?;
                let held: Vec<(String, String)> = stmt
                    .query_map(params![destinations, DESTINATION_REMOVED], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                for (broadcast_id, destination) in held {
                    counts
                        .entry(destination.clone())
                        .or_insert_with(|| RemovedHolds { destination: destination.clone(), ..Default::default() })
                        .held += 1;
                    threads.insert((broadcast_id, destination));
                }
            }
            let mut stmt = conn.prepare_cached(
                "UPDATE deliveries SET state = 'pending', hold_reason = NULL, next_attempt_at = ?2, \
                 last_error = NULL, lease_token = lease_token + 1 \
                 WHERE state = 'held' AND hold_reason = ?3 \
                 AND destination IN (SELECT value FROM json_each(?1)) \
                 RETURNING broadcast_id, destination",
            )?;
            let resumed: Vec<(String, String)> = stmt
                .query_map(params![configured, now.0, DESTINATION_REMOVED], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            for (broadcast_id, destination) in resumed {
                counts
                    .entry(destination.clone())
                    .or_insert_with(|| RemovedHolds { destination: destination.clone(), ..Default::default() })
                    .resumed += 1;
                threads.insert((broadcast_id, destination));
            }
            // The updates behind a message that was held or resumed say why they wait.
            let mut changes = Vec::new();
            for (broadcast_id, destination) in threads {
                settle_thread(conn, &broadcast_id, &destination, now, &mut changes)?;
            }
            Ok(counts.into_values().collect())
        })
        .await
    }

    async fn delivery(&self, id: &str) -> Result<Option<DeliveryRef>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            let found = conn
                .prepare_cached(&format!(
                    "SELECT broadcast_id, destination, seq, created_at, hold_reason, {PROGRESS_COLUMNS} \
                     FROM deliveries WHERE id = ?1"
                ))?
                .query_row([&id], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, Option<String>>(4)?,
                        progress_from_row(row, 5),
                    ))
                })
                .optional()?;
            let Some((broadcast_id, destination, seq, created_at, hold_reason, progress)) = found
            else {
                return Ok(None);
            };
            Ok(Some(DeliveryRef {
                broadcast_id,
                delivery: DeliveryView {
                    id,
                    destination,
                    seq,
                    progress: progress?,
                    created_at: Timestamp(created_at),
                    hold_reason,
                },
            }))
        })
        .await
    }

    async fn broadcast(&self, id: &str) -> Result<Option<BroadcastView>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| load_broadcast(conn, &id)).await
    }

    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        self.read(move |conn| {
            let limit = query.limit.clamp(1, 500);
            let mut cursor: Option<i64> = match &query.cursor {
                Some(c) => Some(
                    c.parse()
                        .map_err(|_| StoreError::NotFound { what: "cursor", id: c.clone() })?,
                ),
                None => None,
            };
            let mut items = Vec::new();
            // A state filter is applied after loading, so scan a bounded number of
            // candidates per page and hand back a cursor to continue from.
            let scan_budget = limit * 20;
            let mut scanned = 0;
            let mut exhausted = false;
            while items.len() < limit && scanned < scan_budget {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, id FROM broadcasts b WHERE (?1 IS NULL OR seq < ?1) \
                     AND (?2 IS NULL OR EXISTS (SELECT 1 FROM deliveries d \
                          WHERE d.broadcast_id = b.id AND d.destination = ?2)) \
                     AND (?4 = 0 OR EXISTS (SELECT 1 FROM deliveries h \
                          WHERE h.broadcast_id = b.id AND h.state = 'held')) \
                     ORDER BY seq DESC LIMIT ?3",
                )?;
                let batch: Vec<(i64, String)> = stmt
                    .query_map(params![cursor, query.destination, limit, query.held], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect::<Result<_, _>>()?;
                if batch.is_empty() {
                    exhausted = true;
                    break;
                }
                for (seq, id) in batch {
                    scanned += 1;
                    cursor = Some(seq);
                    let view = must_load(conn, &id)?;
                    let matches = query.state.is_none_or(|want| {
                        BroadcastState::of(view.deliveries.iter().map(|d| &d.progress.state))
                            == want
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
        })
        .await
    }

    async fn attempts(&self, broadcast_id: &str) -> Result<Vec<AttemptView>, StoreError> {
        let id = broadcast_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT delivery_id, destination, number, started_at, duration_ms, outcome, status, detail \
                 FROM attempts WHERE broadcast_id = ?1 ORDER BY rowid",
            )?;
            let rows = stmt.query_map([id], |row| {
                Ok(AttemptView {
                    delivery_id: row.get(0)?,
                    destination: row.get(1)?,
                    attempt: AttemptRecord {
                        number: row.get(2)?,
                        started_at: Timestamp(row.get(3)?),
                        duration_ms: row.get(4)?,
                        outcome: row.get(5)?,
                        status: row.get(6)?,
                        detail: row.get(7)?,
                    },
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        self.read(|conn| {
            // The counters table (kept by triggers, see 0003_retention.sql): one row per
            // destination and state, however many deliveries there are.
            let mut stmt = conn.prepare_cached(
                "SELECT destination, state, n, last_delivered_at FROM destination_counts \
                 WHERE n > 0 OR last_delivered_at IS NOT NULL ORDER BY destination",
            )?;
            let mut rows = stmt.query([])?;
            let mut res: Vec<DestinationStats> = Vec::new();
            while let Some(row) = rows.next()? {
                let destination: String = row.get(0)?;
                let state: String = row.get(1)?;
                let count: u64 = row.get(2)?;
                if res.last().is_none_or(|s| s.destination != destination) {
                    res.push(DestinationStats {
                        destination: destination.clone(),
                        ..Default::default()
                    });
                }
                let Some(stats) = res.last_mut() else { continue };
                match state.as_str() {
                    "pending" => stats.pending = count,
                    "in_flight" => stats.in_flight = count,
                    "waiting" => stats.waiting = count,
                    "held" => stats.held = count,
                    "delivered" => {
                        stats.delivered = count;
                        stats.last_delivered_at = row.get::<_, Option<i64>>(3)?.map(Timestamp);
                    }
                    "failed" => stats.failed = count,
                    "cancelled" => stats.cancelled = count,
                    _ => {}
                }
            }
            // The oldest unfinished delivery, from the partial indexes of pending,
            // in-flight and held rows (O(backlog)). Waiting updates need no look: one
            // waits only behind an earlier, unfinished delivery of its thread, and the
            // first of those is pending, in flight or held.
            let mut stmt = conn.prepare_cached(
                "SELECT destination, MIN(created_at) FROM ( \
                   SELECT destination, created_at FROM deliveries WHERE state = 'pending' \
                   UNION ALL SELECT destination, created_at FROM deliveries WHERE state = 'in_flight' \
                   UNION ALL SELECT destination, created_at FROM deliveries WHERE state = 'held' \
                 ) GROUP BY destination",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let destination: String = row.get(0)?;
                let oldest: i64 = row.get(1)?;
                if let Some(stats) = res.iter_mut().find(|s| s.destination == destination) {
                    stats.oldest_open_at = Some(Timestamp(oldest));
                }
            }
            Ok(res)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.write(Priority::Urgent, |conn| {
            conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    fn metrics(&self) -> Option<crate::metrics::StoreMetrics> {
        Some(self.metrics.clone())
    }

    async fn prune(&self, request: PruneRequest) -> Result<Pruned, StoreError> {
        self.write(Priority::Background, move |conn| prune_batch(conn, &request)).await
    }
}

/// How many candidates one batch looks at per broadcast it may delete, so a stretch of
/// young or unfinished broadcasts cannot make one batch long.
const SCAN_FACTOR: usize = 4;

/// One retention batch; see [`Store::prune`]. Broadcasts are scanned in insertion order,
/// and the scan ends at the first one created after the later cut-off: nothing after it
/// can be old enough (clocks aside, creation order is age order).
fn prune_batch(conn: &rusqlite::Connection, request: &PruneRequest) -> Result<Pruned, StoreError> {
    let newest_cutoff = request.delivered_before.0.max(request.failed_before.0);
    let limit = request.limit.max(1);
    let mut stmt = conn.prepare_cached(
        "SELECT b.seq, b.id, b.created_at, \
           (SELECT MAX(created_at) FROM messages m WHERE m.broadcast_id = b.id), \
           (SELECT MAX(started_at + duration_ms) FROM attempts a WHERE a.broadcast_id = b.id), \
           (SELECT COUNT(*) FROM deliveries d WHERE d.broadcast_id = b.id \
              AND d.state NOT IN ('delivered', 'failed', 'cancelled')), \
           (SELECT COUNT(*) FROM deliveries d WHERE d.broadcast_id = b.id \
              AND d.state IN ('failed', 'cancelled')) \
         FROM broadcasts b WHERE ?1 IS NULL OR b.seq > ?1 ORDER BY b.seq LIMIT ?2",
    )?;
    // Pick the batch first and delete after the scan statement is done: changing a table
    // while a statement still steps over it is undefined in SQLite.
    let mut doomed = Vec::with_capacity(limit);
    let mut next = None;
    let mut rows = stmt.query(params![request.after, limit * SCAN_FACTOR])?;
    let mut scanned = 0;
    let mut reached_young = false;
    while let Some(row) = rows.next()? {
        scanned += 1;
        let (seq, id, created_at): (i64, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        if created_at >= newest_cutoff {
            reached_young = true;
            break;
        }
        if doomed.len() == limit {
            break;
        }
        next = Some(seq);
        let (last_message, last_attempt): (Option<i64>, Option<i64>) = (row.get(3)?, row.get(4)?);
        let (open, unhappy): (i64, i64) = (row.get(5)?, row.get(6)?);
        let last = created_at.max(last_message.unwrap_or(0)).max(last_attempt.unwrap_or(0));
        let cutoff = if unhappy > 0 { request.failed_before.0 } else { request.delivered_before.0 };
        if open == 0 && last < cutoff {
            doomed.push(id);
        }
    }
    drop(rows);
    // The scan reached the end, or a broadcast too young: this pass is over.
    let reached_end = scanned < limit * SCAN_FACTOR && doomed.len() < limit;
    if reached_end || reached_young {
        next = None;
    }
    let mut pruned = Pruned { next, ..Pruned::default() };
    for id in doomed {
        conn.prepare_cached("DELETE FROM attempts WHERE broadcast_id = ?1")?.execute([&id])?;
        pruned.deliveries += conn
            .prepare_cached("DELETE FROM deliveries WHERE broadcast_id = ?1")?
            .execute([&id])?;
        conn.prepare_cached("DELETE FROM messages WHERE broadcast_id = ?1")?.execute([&id])?;
        conn.prepare_cached("DELETE FROM broadcasts WHERE id = ?1")?.execute([&id])?;
        pruned.broadcasts += 1;
    }
    Ok(pruned)
}

/// The claim's read: up to `?3` due pending deliveries of destination `?1` at `?2` (with
/// `retried`, only those tried before), in due order. `INDEXED BY` makes SQLite refuse the
/// statement rather than fall back to a scan of the destination's backlog.
fn claim_sql(retried: bool) -> String {
    let (index, tried) = if retried {
        ("deliveries_retry_due", "AND attempts > 0 ")
    } else {
        ("deliveries_due", "")
    };
    format!(
        "SELECT {LEASE_COLUMNS}, {PROGRESS_COLUMNS} FROM deliveries INDEXED BY {index} \
         WHERE destination = ?1 AND state = 'pending' {tried}AND next_attempt_at <= ?2 \
         ORDER BY next_attempt_at LIMIT ?3"
    )
}

impl SqliteStore {
    /// Test hook: SQLite's plan for a claim's read (`EXPLAIN QUERY PLAN`, one step per
    /// line); with `probe`, the read of the deliveries tried before.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be asked.
    #[doc(hidden)]
    pub async fn explain_claim(&self, probe: bool) -> Result<String, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", claim_sql(probe)))?;
            let steps = stmt.query_map(params!["lane", 0, 1], |row| row.get::<_, String>(3))?;
            let mut plan = String::new();
            for step in steps {
                plan.push_str(&step?);
                plan.push('\n');
            }
            Ok(plan)
        })
        .await
    }
}

/// The lease for a claim that was asked for at `asked` and commits now: `lease_until`
/// shifted by the time the request waited for the writer, when the store has a clock.
fn stamp(clock: Option<&StoreClock>, asked: Timestamp, lease_until: Timestamp) -> Timestamp {
    match clock {
        Some(now) => {
            let waited = now().since(asked);
            lease_until.add(waited)
        }
        None => lease_until,
    }
}

/// Records a `Delivered` that arrived after its lease moved on (recovery took the
/// delivery, or another node did): the destination has the message, so a delivery that
/// has not ended is delivered, and the newer lease is fenced out. A delivery that ended
/// meanwhile (cancelled, delivered, failed) keeps its state; the attempt log shows the
/// late answer.
fn write_late_delivery(
    conn: &rusqlite::Connection,
    id: &str,
    progress: &Progress,
) -> Result<Option<Identity>, StoreError> {
    let current: Option<String> = conn
        .prepare_cached("SELECT state FROM deliveries WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?;
    let Some(current) = current else { return Ok(None) };
    if matches!(current.as_str(), "delivered" | "failed" | "cancelled") {
        return Ok(None);
    }
    tracing::info!(delivery_id = %id, was = %current, "Recorded a delivery confirmed after its lease had moved on.");
    write_progress(conn, id, progress, &current, None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rusqlite::Connection;

    use super::claim_sql;
    use crate::model::PENDING_DESTINATIONS;

    /// SQLite's plan for `sql`, one step per line.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let unbound = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
        let steps = stmt
            .query_map(rusqlite::params_from_iter(unbound), |row| row.get::<_, String>(3))
            .unwrap();
        steps.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    fn migrated() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&conn).unwrap();
        conn
    }

    /// A restart finds the destinations with pending work by seeking through the due-work
    /// index, never by reading the backlog (10,000,000 pending made that take minutes).
    #[test]
    fn pending_destinations_seek_the_due_index_and_scan_nothing() {
        let conn = migrated();
        let plan = plan(&conn, PENDING_DESTINATIONS);
        assert!(plan.contains("USING COVERING INDEX deliveries_due"), "{plan}");
        assert!(!plan.contains("SCAN deliveries"), "{plan}");
    }

    /// The recursive query lists each destination with pending work once, and none other.
    #[test]
    fn pending_destinations_lists_each_destination_with_pending_work_once() {
        let conn = migrated();
        let mut insert = conn
            .prepare(
                "INSERT INTO deliveries (id, broadcast_id, seq, position, destination, state, \
                 attempts, max_attempts, next_attempt_at, expires_at, created_at) \
                 VALUES (?1, ?1, 0, 0, ?2, ?3, 0, 8, ?4, 0, 0)",
            )
            .unwrap();
        let rows = [("a", "pending"), ("c", "pending"), ("a", "pending"), ("b", "delivered")];
        for (n, (destination, state)) in rows.iter().enumerate() {
            insert.execute(rusqlite::params![format!("d{n}"), destination, state, n]).unwrap();
        }
        let names: Vec<String> = conn
            .prepare(PENDING_DESTINATIONS)
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert!(plan(&conn, &claim_sql(true)).contains("deliveries_retry_due"));
    }
}
