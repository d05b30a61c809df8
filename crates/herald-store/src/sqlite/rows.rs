//! Row mapping and the SQL building blocks the store operations share: reading and
//! writing a delivery's progress (the compare-and-set), loading a broadcast, leasing,
//! and the cascade from a predecessor to its successors.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use herald_core::delivery::NotAllowed;
use herald_core::thread;
use herald_core::{FailReason, Message, Progress, State, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::StoreError;
use crate::model::*;

/// The delivery columns every progress read selects, in `progress_from_row` order.
pub(super) const PROGRESS_COLUMNS: &str = "state, fail_reason, attempts, max_attempts, next_attempt_at, \
     expires_at, ambiguous, last_error, remote_ref, delivered_at, unconfirmed";

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

/// Reads the `PROGRESS_COLUMNS` starting at column `at`.
pub(super) fn progress_from_row(row: &Row<'_>, at: usize) -> Result<Progress, StoreError> {
    let state: String = row.get(at)?;
    let reason: Option<String> = row.get(at + 1)?;
    Ok(Progress {
        state: state_from(&state, reason.as_deref())?,
        attempts: row.get(at + 2)?,
        max_attempts: row.get(at + 3)?,
        next_attempt_at: Timestamp(row.get(at + 4)?),
        expires_at: Timestamp(row.get(at + 5)?),
        ambiguous: row.get(at + 6)?,
        last_error: row.get(at + 7)?,
        remote_ref: row.get(at + 8)?,
        delivered_at: row.get::<_, Option<i64>>(at + 9)?.map(Timestamp),
        unconfirmed: row.get(at + 10)?,
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

/// Writes `progress` to delivery `id` if it is still in `expected` state (and, with a
/// `token`, still under that lease): the compare-and-set every transition goes through.
/// Bumps the lease token, so any older lease is fenced out, and clears a hold reason
/// (only `hold_removed` sets one). Returns the delivery's
/// identity if it applied.
pub(super) fn write_progress(
    conn: &Connection,
    id: &str,
    progress: &Progress,
    expected: &str,
    token: Option<i64>,
) -> Result<Option<Identity>, StoreError> {
    // No `RETURNING`: SQLite buffers a DML statement's returned rows in an ephemeral
    // table, opened and closed per execution, which cost more than this update itself
    // (callgrind: about 16k instructions a statement). The identity is read after the
    // update instead, by the unique `id`, only when it applied.
    const SQL: &str = "UPDATE deliveries SET state = ?2, fail_reason = ?3, attempts = ?4, \
         next_attempt_at = ?5, expires_at = ?6, ambiguous = ?7, last_error = ?8, remote_ref = ?9, \
         delivered_at = ?10, unconfirmed = ?13, lease_expires_at = NULL, \
         lease_token = lease_token + 1, hold_reason = NULL \
         WHERE id = ?1 AND (?11 IS NULL OR lease_token = ?11) AND state = ?12";
    let changed = conn.prepare_cached(SQL)?.execute(params![
        id,
        progress.state.as_str(),
        fail_reason(&progress.state),
        progress.attempts,
        progress.next_attempt_at.0,
        progress.expires_at.0,
        progress.ambiguous,
        progress.last_error,
        progress.remote_ref,
        progress.delivered_at.map(|t| t.0),
        token,
        expected,
        progress.unconfirmed,
    ])?;
    if changed == 0 {
        return Ok(None);
    }
    let identity = conn
        .prepare_cached("SELECT broadcast_id, destination, seq FROM deliveries WHERE id = ?1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    Ok(Some(identity))
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

pub(super) fn load_broadcast(
    conn: &Connection,
    id: &str,
) -> Result<Option<BroadcastView>, StoreError> {
    let head = conn
        .prepare_cached(
            "SELECT idempotency_key, requested, destinations, created_at, expires_at \
             FROM broadcasts WHERE id = ?1",
        )?
        .query_row([id], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Option<i64>>(4)?,
            ))
        })
        .optional()?;
    let Some((idempotency_key, requested, destinations, created_at, expires_at)) = head else {
        return Ok(None);
    };
    let mut thread = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT seq, body, created_at FROM messages WHERE broadcast_id = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([id])?;
    while let Some(row) = rows.next()? {
        let body: String = row.get(1)?;
        thread.push(ThreadMessage {
            seq: row.get(0)?,
            message: message_from(&body)?,
            created_at: Timestamp(row.get(2)?),
        });
    }
    let mut deliveries = Vec::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, destination, seq, created_at, hold_reason, {PROGRESS_COLUMNS} FROM deliveries \
         WHERE broadcast_id = ?1 ORDER BY seq, position"
    ))?;
    let mut rows = stmt.query([id])?;
    while let Some(row) = rows.next()? {
        deliveries.push(DeliveryView {
            id: row.get(0)?,
            destination: row.get(1)?,
            seq: row.get(2)?,
            created_at: Timestamp(row.get(3)?),
            hold_reason: row.get(4)?,
            progress: progress_from_row(row, 5)?,
        });
    }
    Ok(Some(BroadcastView {
        id: id.to_string(),
        idempotency_key,
        requested: names_from(&requested)?,
        destinations: names_from(&destinations)?,
        thread,
        deliveries,
        created_at: Timestamp(created_at),
        expires_at: expires_at.map(Timestamp),
    }))
}

pub(super) fn must_load(conn: &Connection, id: &str) -> Result<BroadcastView, StoreError> {
    load_broadcast(conn, id)?
        .ok_or_else(|| StoreError::NotFound { what: "broadcast", id: id.into() })
}

pub(super) fn insert_delivery(
    conn: &Connection,
    broadcast_id: &str,
    seq: u32,
    position: usize,
    new: &NewDelivery,
    progress: &Progress,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO deliveries (id, broadcast_id, seq, position, destination, state, fail_reason, \
         attempts, max_attempts, next_attempt_at, expires_at, last_error, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        new.id,
        broadcast_id,
        seq,
        position,
        new.destination,
        progress.state.as_str(),
        fail_reason(&progress.state),
        progress.attempts,
        progress.max_attempts,
        progress.next_attempt_at.0,
        progress.expires_at.0,
        progress.last_error,
        now.0,
    ])?;
    Ok(())
}

/// One destination's thread in a broadcast: (id, seq, progress) of the original and
/// every update there, in order.
pub(super) fn load_thread(
    conn: &Connection,
    broadcast_id: &str,
    destination: &str,
) -> Result<Vec<(String, u32, Progress)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, seq, {PROGRESS_COLUMNS} FROM deliveries \
         WHERE broadcast_id = ?1 AND destination = ?2 ORDER BY seq"
    ))?;
    let mut rows = stmt.query(params![broadcast_id, destination])?;
    let mut res = Vec::new();
    while let Some(row) = rows.next()? {
        res.push((row.get(0)?, row.get(1)?, progress_from_row(row, 2)?));
    }
    Ok(res)
}

/// After a message of one destination's thread changed, moves the updates the change
/// allows to move (`thread::settle`: released, failed by their original, revived, or
/// given a reason to wait), in the same transaction. Reports each state change.
pub(super) fn settle_thread(
    conn: &Connection,
    broadcast_id: &str,
    destination: &str,
    now: Timestamp,
    changes: &mut Vec<Change>,
) -> Result<(), StoreError> {
    // Most threads are a lone original: a look at the covering unique index (no row
    // read, no allocation) settles that, instead of loading the thread (callgrind:
    // about 14k instructions a recorded delivery).
    let entries: usize = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries \
             WHERE broadcast_id = ?1 AND destination = ?2 LIMIT 2)",
        )?
        .query_row(params![broadcast_id, destination], |row| row.get(0))?;
    if entries < 2 {
        return Ok(());
    }
    let rows = load_thread(conn, broadcast_id, destination)?;
    if rows.len() < 2 {
        return Ok(());
    }
    let progresses: Vec<Progress> = rows.iter().map(|(_, _, p)| p.clone()).collect();
    for (idx, next) in thread::settle(&progresses, now) {
        let (id, seq, before) = &rows[idx];
        write_progress(conn, id, &next, before.state.as_str(), None)?;
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

/// Reads a delivery's identity and progress.
pub(super) fn load_delivery(
    conn: &Connection,
    id: &str,
) -> Result<(String, String, u32, Progress), StoreError> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT broadcast_id, destination, seq, {PROGRESS_COLUMNS} FROM deliveries WHERE id = ?1"
        ))?
        .query_row([id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, progress_from_row(row, 3)))
        })
        .optional()?;
    let Some((broadcast_id, destination, seq, progress)) = found else {
        return Err(StoreError::NotFound { what: "delivery", id: id.into() });
    };
    Ok((broadcast_id, destination, seq, progress?))
}

pub(super) fn not_allowed(id: &str, error: NotAllowed, action: &'static str) -> StoreError {
    StoreError::NotAllowed { id: id.into(), state: error.state.into(), action }
}

/// A delivery selected for a lease: id, broadcast id, destination, seq, lease token,
/// creation time and progress.
pub(super) type LeaseRow = (String, String, String, u32, i64, i64, Progress);

/// The columns a lease selection starts with, in `LeaseRow` order (`PROGRESS_COLUMNS`
/// follow).
pub(super) const LEASE_COLUMNS: &str =
    "id, broadcast_id, destination, seq, lease_token, created_at";

/// Leases the deliveries selected by `select` (which must return `LEASE_COLUMNS` then
/// `PROGRESS_COLUMNS`) and loads what is needed to attempt them.
pub(super) fn lease(
    conn: &Connection,
    rows: Vec<LeaseRow>,
    lease_until: Timestamp,
) -> Result<Vec<Work>, StoreError> {
    let mut messages: HashMap<(String, u32), (Arc<Message>, Timestamp)> = HashMap::new();
    let mut work = Vec::with_capacity(rows.len());
    for (id, broadcast_id, destination, seq, token, created_at, progress) in rows {
        // The token was read in this transaction, so the new one is known without
        // `RETURNING` (whose ephemeral table costs more than the update; see
        // `write_progress`); the compare on it makes sure of it.
        let lease_token = token + 1;
        let changed = conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'in_flight', lease_token = ?3, \
                 lease_expires_at = ?2 WHERE id = ?1 AND lease_token = ?4",
            )?
            .execute(params![id, lease_until.0, lease_token, token])?;
        if changed != 1 {
            return Err(StoreError::Corrupt(format!(
                "delivery {id} changed while its lease was written in the same transaction"
            )));
        }
        let (message, _) = message_cached(conn, &mut messages, &broadcast_id, seq)?;
        let original = if seq == 0 {
            None
        } else {
            let found: Option<(String, Option<String>, Option<i64>)> = conn
                .prepare_cached(
                    "SELECT id, remote_ref, delivered_at FROM deliveries \
                     WHERE broadcast_id = ?1 AND destination = ?2 AND seq = 0",
                )?
                .query_row(params![broadcast_id, destination], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            match found {
                Some((delivery_id, remote_ref, delivered_at)) => {
                    let (message, accepted_at) =
                        message_cached(conn, &mut messages, &broadcast_id, 0)?;
                    Some(Original {
                        delivery_id,
                        remote_ref,
                        message,
                        at: delivered_at.map_or(accepted_at, Timestamp),
                    })
                }
                None => None,
            }
        };
        // Only an ambiguous delivery needs to know when its doubt began (a look-up that
        // is only eventually consistent trusts "not found" only some time after it).
        let ambiguous_at = if progress.ambiguous {
            conn.prepare_cached(
                "SELECT MAX(started_at + duration_ms) FROM attempts \
                 WHERE broadcast_id = ?1 AND delivery_id = ?2 AND outcome = 'unknown'",
            )?
            .query_row(params![broadcast_id, id], |row| row.get::<_, Option<i64>>(0))?
            .map(Timestamp)
        } else {
            None
        };
        let mut progress = progress;
        progress.state = State::InFlight;
        work.push(Work {
            delivery_id: id,
            broadcast_id,
            destination,
            seq,
            lease_token,
            lease_expires_at: lease_until,
            progress,
            message,
            created_at: Timestamp(created_at),
            ambiguous_at,
            original,
        });
    }
    Ok(work)
}

/// Message `seq` of `broadcast_id` with the time it was accepted, read once per batch
/// (and usually not read at all: see [`MessageCache`]).
fn message_cached(
    conn: &Connection,
    cache: &mut HashMap<(String, u32), (Arc<Message>, Timestamp)>,
    broadcast_id: &str,
    seq: u32,
) -> Result<(Arc<Message>, Timestamp), StoreError> {
    let key = (broadcast_id.to_owned(), seq);
    if let Some((message, at)) = cache.get(&key) {
        return Ok((Arc::clone(message), *at));
    }
    if let Some((message, at)) = MESSAGES.with_borrow(|recent| recent.get(&key)) {
        cache.insert(key, (Arc::clone(&message), at));
        return Ok((message, at));
    }
    let (body, created_at): (String, i64) = conn
        .prepare_cached(
            "SELECT body, created_at FROM messages WHERE broadcast_id = ?1 AND seq = ?2",
        )?
        .query_row(params![broadcast_id, seq], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let message = Arc::new(message_from(&body)?);
    let at = Timestamp(created_at);
    MESSAGES.with_borrow_mut(|recent| {
        recent.insert(key.clone(), Arc::clone(&message), at, body.len());
    });
    cache.insert(key, (Arc::clone(&message), at));
    Ok((message, at))
}

/// Keeps message `seq` of `broadcast_id` (its JSON form `json_len` bytes long) for the
/// claims that will lease its deliveries, so they need neither the read nor the parse.
pub(super) fn remember_message(
    broadcast_id: &str,
    seq: u32,
    message: &Message,
    created_at: Timestamp,
    json_len: usize,
) {
    MESSAGES.with_borrow_mut(|recent| {
        recent.insert(
            (broadcast_id.to_owned(), seq),
            Arc::new(message.clone()),
            created_at,
            json_len,
        );
    });
}

/// How many bytes of messages (by their JSON length) the writer keeps in memory.
const MESSAGE_CACHE_BYTES: usize = 1 << 20;

thread_local! {
    /// The writer thread's recent messages. Only the writer thread leases, so only its
    /// copy is used; each store has its own writer thread and so its own cache.
    static MESSAGES: RefCell<MessageCache> = RefCell::new(MessageCache::default());
}

/// The messages most recently submitted or read, bounded by their total size, oldest
/// out first. Every destination of a broadcast leases the same message, usually soon
/// after it was submitted: without this each of them read and parsed it again
/// (callgrind: about 10k instructions a delivery). A message never changes once
/// written, and every write replaces the entry, so an entry is never stale; one whose
/// broadcast was pruned, or whose transaction did not commit, is never asked for
/// (broadcast ids are not reused) and ages out.
#[derive(Default)]
struct MessageCache {
    entries: HashMap<(String, u32), (Arc<Message>, Timestamp, usize)>,
    order: VecDeque<(String, u32)>,
    bytes: usize,
}

impl MessageCache {
    fn get(&self, key: &(String, u32)) -> Option<(Arc<Message>, Timestamp)> {
        self.entries.get(key).map(|(message, at, _)| (Arc::clone(message), *at))
    }

    /// Keeps `message` under `key`, replacing what was there: a write whose savepoint or
    /// transaction was rolled back leaves its entry behind, and the next message written
    /// under the same key (an update gets the rolled-back one's `seq`) must win.
    fn insert(&mut self, key: (String, u32), message: Arc<Message>, at: Timestamp, size: usize) {
        if let Some((_, _, old)) = self.entries.remove(&key) {
            self.bytes -= old;
            self.order.retain(|other| *other != key);
        }
        if size > MESSAGE_CACHE_BYTES {
            return;
        }
        while self.bytes + size > MESSAGE_CACHE_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some((_, _, freed)) = self.entries.remove(&oldest) {
                self.bytes -= freed;
            }
        }
        self.bytes += size;
        self.order.push_back(key.clone());
        self.entries.insert(key, (message, at, size));
    }
}

pub(super) fn select_for_lease(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<LeaseRow>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut res = Vec::new();
    while let Some(row) = rows.next()? {
        res.push((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            progress_from_row(row, 6)?,
        ));
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(title: &str) -> Arc<Message> {
        Arc::new(Message { title: title.into(), ..Message::default() })
    }

    fn key(broadcast: &str, seq: u32) -> (String, u32) {
        (broadcast.to_owned(), seq)
    }

    /// The cache holds at most `MESSAGE_CACHE_BYTES` of JSON and lets the oldest go first.
    #[test]
    fn the_message_cache_is_bounded_and_forgets_the_oldest_first() {
        let mut cache = MessageCache::default();
        let size = MESSAGE_CACHE_BYTES / 4;
        for n in 0..6u32 {
            cache.insert(key("b", n), message(&format!("m{n}")), Timestamp(i64::from(n)), size);
            assert!(cache.bytes <= MESSAGE_CACHE_BYTES, "{} bytes kept", cache.bytes);
        }
        assert!(cache.get(&key("b", 0)).is_none() && cache.get(&key("b", 1)).is_none());
        for n in 2..6u32 {
            let (kept, at) = cache.get(&key("b", n)).expect("a recent message was dropped");
            assert_eq!(
                (kept.title.as_str(), at),
                (format!("m{n}").as_str(), Timestamp(i64::from(n)))
            );
        }
        // A message larger than the whole cache is not kept, and evicts nothing.
        cache.insert(key("huge", 0), message("huge"), Timestamp(9), MESSAGE_CACHE_BYTES + 1);
        assert!(cache.get(&key("huge", 0)).is_none());
        assert_eq!(cache.entries.len(), 4);
    }

    /// A message written again under the same key (an update whose predecessor with that
    /// `seq` was rolled back) replaces the first one: the cache never answers with a
    /// message the database does not hold.
    #[test]
    fn a_message_written_again_under_its_key_replaces_the_old_one() {
        let mut cache = MessageCache::default();
        cache.insert(key("b", 1), message("rolled back"), Timestamp(1), 100);
        cache.insert(key("b", 1), message("committed"), Timestamp(2), 40);
        let (kept, at) = cache.get(&key("b", 1)).expect("the message is kept");
        assert_eq!((kept.title.as_str(), at), ("committed", Timestamp(2)));
        assert_eq!((cache.bytes, cache.order.len()), (40, 1));
    }
}
