//! Row mapping and the SQL building blocks the PostgreSQL operations share: a delivery's
//! progress (the compare-and-set), a broadcast view, thread locks and the cascade, what a
//! claimed delivery needs to be attempted, and the terminal-state counters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use herald_core::delivery::NotAllowed;
use herald_core::thread;
use herald_core::{FailReason, Message, Progress, State, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, QueryBuilder, Row};

use super::Failure;
use crate::StoreError;
use crate::model::*;

/// The delivery columns every progress read selects, in `progress_from_row` order.
pub(super) const PROGRESS_COLUMNS: &str = "state, fail_reason, attempts, max_attempts, \
     next_attempt_at, expires_at, ambiguous, last_error, remote_ref, delivered_at, unconfirmed";

/// The terminal states, the only ones `destination_counts` counts.
const TERMINAL: [&str; 3] = ["delivered", "failed", "cancelled"];

pub(super) fn state_from(name: &str, reason: Option<&str>) -> Result<State, StoreError> {
    Ok(match name {
        "pending" => State::Pending,
        "in_flight" => State::InFlight,
        "waiting" => State::Waiting,
        "held" => State::Held,
        "delivered" => State::Delivered,
        "cancelled" => State::Cancelled,
        "failed" => State::Failed(reason.and_then(FailReason::parse).ok_or_else(|| {
            StoreError::Corrupt(format!("failed delivery with reason {reason:?}"))
        })?),
        other => return Err(StoreError::Corrupt(format!("unknown delivery state `{other}`"))),
    })
}

fn count(value: i32, what: &str) -> Result<u32, Failure> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is {value}")).into())
}

/// `n` for an INT column (counts and positions are small).
pub(super) fn int(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

/// Reads the `PROGRESS_COLUMNS` starting at column `at`.
pub(super) fn progress_from_row(row: &PgRow, at: usize) -> Result<Progress, Failure> {
    let state: String = row.try_get(at)?;
    let reason: Option<String> = row.try_get(at + 1)?;
    Ok(Progress {
        state: state_from(&state, reason.as_deref())?,
        attempts: count(row.try_get(at + 2)?, "attempts")?,
        max_attempts: count(row.try_get(at + 3)?, "max_attempts")?,
        next_attempt_at: Timestamp(row.try_get(at + 4)?),
        expires_at: Timestamp(row.try_get(at + 5)?),
        ambiguous: row.try_get(at + 6)?,
        last_error: row.try_get(at + 7)?,
        remote_ref: row.try_get(at + 8)?,
        delivered_at: row.try_get::<Option<i64>, _>(at + 9)?.map(Timestamp),
        unconfirmed: row.try_get(at + 10)?,
    })
}

pub(super) fn fail_reason(state: &State) -> Option<&'static str> {
    match state {
        State::Failed(reason) => Some(reason.as_str()),
        _ => None,
    }
}

/// Where a delivery sits: its broadcast, destination and place in the thread.
pub(super) type Identity = (String, String, u32);

/// Changes to the terminal counters made by one transaction, written at its end.
#[derive(Debug, Default)]
pub(super) struct Counts(BTreeMap<(String, &'static str), (i64, Option<i64>)>);

impl Counts {
    /// `n` more (or fewer) deliveries of `destination` in `state`; non-terminal states
    /// are not counted here.
    pub(super) fn add(&mut self, destination: &str, state: &str, n: i64, delivered: Option<i64>) {
        let Some(state) = TERMINAL.iter().find(|t| **t == state) else { return };
        let entry = self.0.entry((destination.to_string(), state)).or_insert((0, None));
        entry.0 += n;
        entry.1 = entry.1.max(delivered);
    }

    /// A delivery of `destination` moved from state `from` to `to`.
    pub(super) fn moved(&mut self, destination: &str, from: &str, to: &Progress) {
        self.add(destination, from, -1, None);
        self.add(destination, to.state.as_str(), 1, to.delivered_at.map(|t| t.0));
    }

    /// Adds the changes to counter shard `shard`, in key order: every transaction takes
    /// the counter rows' locks last and in one order, so counters never deadlock.
    pub(super) async fn flush(self, conn: &mut PgConnection, shard: i32) -> Result<(), Failure> {
        for ((destination, state), (n, delivered)) in self.0 {
            if n == 0 && delivered.is_none() {
                continue;
            }
            sqlx::query(
                "INSERT INTO destination_counts (destination, state, shard, n, last_delivered_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (destination, state, shard) DO UPDATE SET \
                 n = destination_counts.n + EXCLUDED.n, \
                 last_delivered_at = GREATEST( \
                     COALESCE(destination_counts.last_delivered_at, EXCLUDED.last_delivered_at), \
                     COALESCE(EXCLUDED.last_delivered_at, destination_counts.last_delivered_at))",
            )
            .bind(destination)
            .bind(state)
            .bind(shard)
            .bind(n)
            .bind(delivered)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// Writes `progress` to delivery `id` if it is still in `expected` state (and, with a
/// `token`, still under that lease): the compare-and-set every transition goes through.
/// Bumps the lease token, so any older lease is fenced out, ends the lease and clears a
/// hold reason. Returns the delivery's identity if it applied.
pub(super) async fn write_progress(
    conn: &mut PgConnection,
    id: &str,
    progress: &Progress,
    expected: &str,
    token: Option<i64>,
    counts: &mut Counts,
) -> Result<Option<Identity>, Failure> {
    let row = sqlx::query(
        "UPDATE deliveries SET state = $2, fail_reason = $3, attempts = $4, \
         next_attempt_at = $5, expires_at = $6, ambiguous = $7, last_error = $8, remote_ref = $9, \
         delivered_at = $10, unconfirmed = $13, lease_expires_at = NULL, lease_owner = NULL, \
         lease_token = lease_token + 1, hold_reason = NULL \
         WHERE id = $1 AND ($11::BIGINT IS NULL OR lease_token = $11) AND state = $12 \
         RETURNING broadcast_id, destination, seq",
    )
    .bind(id)
    .bind(progress.state.as_str())
    .bind(fail_reason(&progress.state))
    .bind(int(progress.attempts))
    .bind(progress.next_attempt_at.0)
    .bind(progress.expires_at.0)
    .bind(progress.ambiguous)
    .bind(&progress.last_error)
    .bind(&progress.remote_ref)
    .bind(progress.delivered_at.map(|t| t.0))
    .bind(token)
    .bind(expected)
    .bind(progress.unconfirmed)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let (broadcast_id, destination, seq): (String, String, i32) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    counts.moved(&destination, expected, progress);
    Ok(Some((broadcast_id, destination, count(seq, "seq")?)))
}

pub(super) fn message_from(json: &str) -> Result<Message, StoreError> {
    serde_json::from_str(json)
        .map_err(|error| StoreError::Corrupt(format!("stored message: {error}")))
}

pub(super) fn names_from(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json)
        .map_err(|error| StoreError::Corrupt(format!("stored names: {error}")))
}

pub(super) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Serializing plain strings and derived structs cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

pub(super) async fn load_broadcast(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<BroadcastView>, Failure> {
    let head = sqlx::query(
        "SELECT idempotency_key, requested, destinations, created_at, expires_at \
         FROM broadcasts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(head) = head else { return Ok(None) };
    let requested: String = head.try_get(1)?;
    let destinations: String = head.try_get(2)?;
    let mut thread = Vec::new();
    let rows = sqlx::query(
        "SELECT seq, body, created_at FROM messages WHERE broadcast_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let body: String = row.try_get(1)?;
        thread.push(ThreadMessage {
            seq: count(row.try_get(0)?, "seq")?,
            message: message_from(&body)?,
            created_at: Timestamp(row.try_get(2)?),
        });
    }
    let rows = sqlx::query(&format!(
        "SELECT id, destination, seq, created_at, hold_reason, {PROGRESS_COLUMNS} FROM deliveries \
         WHERE broadcast_id = $1 ORDER BY seq, position"
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in rows {
        deliveries.push(DeliveryView {
            id: row.try_get(0)?,
            destination: row.try_get(1)?,
            seq: count(row.try_get(2)?, "seq")?,
            created_at: Timestamp(row.try_get(3)?),
            hold_reason: row.try_get(4)?,
            progress: progress_from_row(&row, 5)?,
        });
    }
    Ok(Some(BroadcastView {
        id: id.to_string(),
        idempotency_key: head.try_get(0)?,
        requested: names_from(&requested)?,
        destinations: names_from(&destinations)?,
        thread,
        deliveries,
        created_at: Timestamp(head.try_get(3)?),
        expires_at: head.try_get::<Option<i64>, _>(4)?.map(Timestamp),
    }))
}

pub(super) async fn must_load(conn: &mut PgConnection, id: &str) -> Result<BroadcastView, Failure> {
    load_broadcast(conn, id)
        .await?
        .ok_or_else(|| StoreError::NotFound { what: "broadcast", id: id.into() }.into())
}

/// A delivery row to insert.
pub(super) struct NewRow<'a> {
    pub(super) new: &'a NewDelivery,
    pub(super) seq: u32,
    pub(super) position: usize,
    pub(super) progress: Progress,
}

/// Inserts `rows` of `broadcast_id` in one statement.
pub(super) async fn insert_deliveries(
    conn: &mut PgConnection,
    broadcast_id: &str,
    rows: &[NewRow<'_>],
    now: Timestamp,
    counts: &mut Counts,
) -> Result<(), Failure> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = QueryBuilder::new(
        "INSERT INTO deliveries (id, broadcast_id, seq, position, destination, state, \
         fail_reason, attempts, max_attempts, next_attempt_at, expires_at, last_error, created_at) ",
    );
    insert.push_values(rows, |mut values, row| {
        values
            .push_bind(&row.new.id)
            .push_bind(broadcast_id)
            .push_bind(int(row.seq))
            .push_bind(int(row.position))
            .push_bind(&row.new.destination)
            .push_bind(row.progress.state.as_str())
            .push_bind(fail_reason(&row.progress.state))
            .push_bind(int(row.progress.attempts))
            .push_bind(int(row.progress.max_attempts))
            .push_bind(row.progress.next_attempt_at.0)
            .push_bind(row.progress.expires_at.0)
            .push_bind(&row.progress.last_error)
            .push_bind(now.0);
    });
    insert.build().execute(&mut *conn).await?;
    for row in rows {
        counts.add(&row.new.destination, row.progress.state.as_str(), 1, None);
    }
    Ok(())
}

/// One destination's thread in a broadcast: (id, seq, progress) of the original and
/// every update there, in order, each row locked until the transaction ends. Locks are
/// taken in `seq` order, the one order every operation on a thread uses.
pub(super) async fn lock_thread(
    conn: &mut PgConnection,
    broadcast_id: &str,
    destination: &str,
) -> Result<Vec<(String, u32, Progress)>, Failure> {
    let rows = sqlx::query(&format!(
        "SELECT id, seq, {PROGRESS_COLUMNS} FROM deliveries \
         WHERE broadcast_id = $1 AND destination = $2 ORDER BY seq FOR UPDATE"
    ))
    .bind(broadcast_id)
    .bind(destination)
    .fetch_all(&mut *conn)
    .await?;
    let mut res = Vec::with_capacity(rows.len());
    for row in rows {
        res.push((row.try_get(0)?, count(row.try_get(1)?, "seq")?, progress_from_row(&row, 2)?));
    }
    Ok(res)
}

/// The thread delivery `id` belongs to, locked as by [`lock_thread`].
pub(super) struct LockedThread {
    pub(super) broadcast_id: String,
    pub(super) destination: String,
    /// (id, seq, progress) in `seq` order.
    pub(super) rows: Vec<(String, u32, Progress)>,
    /// Where delivery `id` is in `rows`.
    pub(super) idx: usize,
}

impl LockedThread {
    /// The delivery asked for: its seq and progress.
    pub(super) fn target(&self) -> (u32, &Progress) {
        let (_, seq, progress) = &self.rows[self.idx];
        (*seq, progress)
    }
}

/// Locks the thread delivery `id` belongs to (as [`lock_thread`], one statement);
/// `None` if there is no such delivery.
pub(super) async fn lock_thread_of(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<LockedThread>, Failure> {
    let rows = sqlx::query(&format!(
        "SELECT d.id, d.broadcast_id, d.destination, d.seq, {} FROM deliveries d \
         WHERE (d.broadcast_id, d.destination) IN \
             (SELECT broadcast_id, destination FROM deliveries WHERE id = $1) \
         ORDER BY d.seq FOR UPDATE",
        prefixed("d", PROGRESS_COLUMNS)
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut thread = LockedThread {
        broadcast_id: String::new(),
        destination: String::new(),
        rows: Vec::with_capacity(rows.len()),
        idx: usize::MAX,
    };
    for row in rows {
        let row_id: String = row.try_get(0)?;
        if row_id == id {
            thread.idx = thread.rows.len();
            thread.broadcast_id = row.try_get(1)?;
            thread.destination = row.try_get(2)?;
        }
        thread.rows.push((row_id, count(row.try_get(3)?, "seq")?, progress_from_row(&row, 4)?));
    }
    Ok((thread.idx != usize::MAX).then_some(thread))
}

/// `columns` (comma-separated) each prefixed with `alias.`.
pub(super) fn prefixed(alias: &str, columns: &str) -> String {
    columns.split(',').map(|c| format!("{alias}.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

/// After a message of one destination's thread changed, moves the updates the change
/// allows to move (`thread::settle`), in the same transaction, under the thread's locks.
/// Reports each state change.
pub(super) async fn settle_thread(
    conn: &mut PgConnection,
    broadcast_id: &str,
    destination: &str,
    now: Timestamp,
    changes: &mut Vec<Change>,
    counts: &mut Counts,
) -> Result<(), Failure> {
    let rows = lock_thread(conn, broadcast_id, destination).await?;
    if rows.len() < 2 {
        return Ok(());
    }
    let progresses: Vec<Progress> = rows.iter().map(|(_, _, p)| p.clone()).collect();
    for (idx, next) in thread::settle(&progresses, now) {
        let (id, seq, before) = &rows[idx];
        write_progress(conn, id, &next, before.state.as_str(), None, counts).await?;
        if next.state != before.state {
            changes.push(Change {
                delivery_id: id.clone(),
                broadcast_id: broadcast_id.into(),
                destination: destination.into(),
                seq: *seq,
                state: next.state.clone(),
                next_attempt_at: next.next_attempt_at,
            });
        }
    }
    Ok(())
}

pub(super) fn not_allowed(id: &str, error: NotAllowed, action: &'static str) -> Failure {
    StoreError::NotAllowed { id: id.into(), state: error.state.into(), action }.into()
}

/// A delivery just leased by a claim's `UPDATE ... RETURNING` of `LEASED_COLUMNS`.
pub(super) struct Leased {
    pub(super) id: String,
    pub(super) broadcast_id: String,
    pub(super) destination: String,
    pub(super) seq: u32,
    pub(super) lease_token: i64,
    pub(super) created_at: Timestamp,
    pub(super) progress: Progress,
}

/// What a leasing `UPDATE deliveries d` returns, in [`Leased::from_row`] order.
pub(super) fn leased_columns() -> String {
    format!(
        "d.id, d.broadcast_id, d.destination, d.seq, d.lease_token, d.created_at, {}",
        prefixed("d", PROGRESS_COLUMNS)
    )
}

impl Leased {
    pub(super) fn from_row(row: &PgRow) -> Result<Leased, Failure> {
        Ok(Leased {
            id: row.try_get(0)?,
            broadcast_id: row.try_get(1)?,
            destination: row.try_get(2)?,
            seq: count(row.try_get(3)?, "seq")?,
            lease_token: row.try_get(4)?,
            created_at: Timestamp(row.try_get(5)?),
            progress: progress_from_row(row, 6)?,
        })
    }
}

/// Loads what is needed to attempt each leased delivery (its message, the original it
/// follows, when its doubt began), three statements for the whole batch.
pub(super) async fn to_work(
    conn: &mut PgConnection,
    leased: Vec<Leased>,
    lease_until: Timestamp,
) -> Result<Vec<Work>, Failure> {
    if leased.is_empty() {
        return Ok(Vec::new());
    }
    let mut wanted: BTreeSet<(String, i32)> = BTreeSet::new();
    let mut threads: BTreeSet<(String, String)> = BTreeSet::new();
    let mut doubtful: BTreeSet<(String, String)> = BTreeSet::new();
    for l in &leased {
        wanted.insert((l.broadcast_id.clone(), int(l.seq)));
        if l.seq > 0 {
            wanted.insert((l.broadcast_id.clone(), 0));
            threads.insert((l.broadcast_id.clone(), l.destination.clone()));
        }
        if l.progress.ambiguous {
            doubtful.insert((l.broadcast_id.clone(), l.id.clone()));
        }
    }

    let mut query = QueryBuilder::new(
        "SELECT broadcast_id, seq, body, created_at FROM messages WHERE (broadcast_id, seq) IN ",
    );
    query.push_tuples(&wanted, |mut tuple, (broadcast_id, seq)| {
        tuple.push_bind(broadcast_id).push_bind(*seq);
    });
    let mut messages: HashMap<(String, u32), (Arc<Message>, Timestamp)> = HashMap::new();
    for row in query.build().fetch_all(&mut *conn).await? {
        let body: String = row.try_get(2)?;
        messages.insert(
            (row.try_get(0)?, count(row.try_get(1)?, "seq")?),
            (Arc::new(message_from(&body)?), Timestamp(row.try_get(3)?)),
        );
    }

    // (broadcast, destination) → the original's id, remote ref and delivery time.
    type Found = (String, Option<String>, Option<i64>);
    let mut originals: HashMap<(String, String), Found> = HashMap::new();
    if !threads.is_empty() {
        let mut query = QueryBuilder::new(
            "SELECT broadcast_id, destination, id, remote_ref, delivered_at FROM deliveries \
             WHERE seq = 0 AND (broadcast_id, destination) IN ",
        );
        query.push_tuples(&threads, |mut tuple, (broadcast_id, destination)| {
            tuple.push_bind(broadcast_id).push_bind(destination);
        });
        for row in query.build().fetch_all(&mut *conn).await? {
            originals.insert(
                (row.try_get(0)?, row.try_get(1)?),
                (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?),
            );
        }
    }

    // Only an ambiguous delivery needs to know when its doubt began (a look-up that is
    // only eventually consistent trusts "not found" only some time after it).
    let mut doubt_began: HashMap<String, i64> = HashMap::new();
    if !doubtful.is_empty() {
        let mut query = QueryBuilder::new(
            "SELECT delivery_id, MAX(started_at + duration_ms) FROM attempts \
             WHERE outcome = 'unknown' AND (broadcast_id, delivery_id) IN ",
        );
        query.push_tuples(&doubtful, |mut tuple, (broadcast_id, id)| {
            tuple.push_bind(broadcast_id).push_bind(id);
        });
        query.push(" GROUP BY delivery_id");
        for row in query.build().fetch_all(&mut *conn).await? {
            if let Some(at) = row.try_get::<Option<i64>, _>(1)? {
                doubt_began.insert(row.try_get(0)?, at);
            }
        }
    }

    let mut work = Vec::with_capacity(leased.len());
    for l in leased {
        let missing =
            || StoreError::Corrupt(format!("message {} of {} is missing", l.seq, l.broadcast_id));
        let (message, _) =
            messages.get(&(l.broadcast_id.clone(), l.seq)).cloned().ok_or_else(missing)?;
        let original = if l.seq == 0 {
            None
        } else {
            match originals.get(&(l.broadcast_id.clone(), l.destination.clone())) {
                Some((delivery_id, remote_ref, delivered_at)) => {
                    let (message, accepted_at) =
                        messages.get(&(l.broadcast_id.clone(), 0)).cloned().ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "the original of {} is missing",
                                l.broadcast_id
                            ))
                        })?;
                    Some(Original {
                        delivery_id: delivery_id.clone(),
                        remote_ref: remote_ref.clone(),
                        message,
                        at: delivered_at.map_or(accepted_at, Timestamp),
                    })
                }
                None => None,
            }
        };
        let mut progress = l.progress;
        progress.state = State::InFlight;
        work.push(Work {
            ambiguous_at: doubt_began.get(&l.id).copied().map(Timestamp),
            delivery_id: l.id,
            broadcast_id: l.broadcast_id,
            destination: l.destination,
            seq: l.seq,
            lease_token: l.lease_token,
            lease_expires_at: lease_until,
            progress,
            message,
            created_at: l.created_at,
            original,
        });
    }
    Ok(work)
}
