//! The embedded default store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! All writes go through one writer thread that groups whatever requests are queued into
//! a single transaction (group commit): each request runs in its own savepoint, the
//! transaction commits once, and only then does any caller get its answer. So no caller
//! is told "stored" before its data is fsync'd, yet a burst of requests costs one fsync.
//! Reads use a small pool of separate connections and never wait for the writer.
//!
//! One process serves a database file at a time (enforced by a lock file), which is why
//! at start-up every lease left by the previous process can be expired at once: nobody
//! else can be holding it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use herald_core::delivery::{self, NotAllowed};
use herald_core::{BroadcastState, FailReason, Message, Progress, RetryPolicy, State, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::{mpsc, oneshot};

use crate::model::*;
use crate::{Store, StoreError};

/// The schema, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_initial.sql")];

/// How many queued write requests one transaction may take.
const MAX_GROUP: usize = 1024;

/// Read connections kept open.
const READERS: usize = 4;

type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Finish + Send>;

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    /// Requests for the writer thread; dropping the store ends the thread.
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    path: PathBuf,
    /// Dropping it stops the checkpoint thread.
    _checkpoints: std::sync::mpsc::Sender<()>,
    /// Held for the store's lifetime so a second process cannot open the same file.
    _lock: File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        unavailable(error)
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|error| unavailable(format!("cannot open {}: {error}", path.display())))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies migrations and expires
    /// the leases a previous process left behind.
    ///
    /// # Errors
    /// `Unavailable` when the file cannot be opened or is in use by another process.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| {
                unavailable(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = File::create(&lock_path).map_err(|error| {
            unavailable(format!("cannot create {}: {error}", lock_path.display()))
        })?;
        lock.try_lock().map_err(|_| {
            unavailable(format!(
                "{} is in use by another herald process; a SQLite database is served by one process at a time",
                path.display()
            ))
        })?;

        let conn = open_connection(path)?;
        migrate(&conn)?;
        // Every in-flight lease belongs to a process that is gone (we hold the lock), so
        // expire them now: recovery treats them as ambiguous at once instead of waiting.
        conn.execute("UPDATE deliveries SET lease_expires_at = 0 WHERE state = 'in_flight'", [])?;

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = open_connection(path)?;
            reader.execute_batch("PRAGMA query_only = ON;")?;
            readers.push(Mutex::new(reader));
        }

        // Checkpoints copy the WAL back into the database file and fsync it; done by the
        // writer they would stall every commit queued behind them, so a separate
        // connection does them in the background.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -32000;")?;
        let checkpointer = open_connection(path)?;
        let (checkpoints, stop) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("herald-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stop))
            .map_err(unavailable)?;

        let (writer, jobs) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || write_loop(conn, jobs))
            .map_err(unavailable)?;

        Ok(SqliteStore {
            writer,
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            path: path.to_path_buf(),
            _checkpoints: checkpoints,
            _lock: lock,
        })
    }

    /// Runs `f` in the writer's next transaction and answers after it committed.
    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let res = in_savepoint(conn, f);
            Box::new(move |commit_error: Option<&StoreError>| {
                let _ = tx.send(match commit_error {
                    Some(error) => Err(error.clone()),
                    None => res,
                });
            })
        });
        self.writer.send(job).map_err(|_| unavailable("the writer thread has stopped"))?;
        rx.await.map_err(|_| unavailable("the writer thread stopped before answering"))?
    }

    /// Runs `f` on a read connection.
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let idx = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let conn = readers[idx].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // One snapshot per read: outside a transaction every statement sees its own
            // snapshot, so a view built from several statements could mix two commits.
            // Dropping the transaction rolls it back; nothing was written.
            let snapshot = conn.unchecked_transaction()?;
            f(&snapshot)
        })
        .await
        .map_err(|error| unavailable(format!("read task failed: {error}")))?
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(unavailable(format!(
            "the database has schema version {version}, newer than this herald knows ({}); upgrade herald",
            MIGRATIONS.len()
        )));
    }
    for (idx, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            idx + 1
        ))?;
    }
    Ok(())
}

fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    // Cached statements: a group commit runs these around every request.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let res = f(conn);
    if res.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    res
}

/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Checkpoints the WAL without blocking the writer (`PASSIVE`) until the store is dropped.
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY)
    {
        let res: Result<(i64, i64, i64), _> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            });
        if let Err(error) = res {
            tracing::warn!(%error, "WAL checkpoint failed; will try again.");
        }
    }
}

fn write_loop(conn: Connection, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let begin = conn.execute_batch("BEGIN IMMEDIATE").map_err(StoreError::from);
        if let Err(error) = begin {
            for job in batch {
                // The job never ran; report the failure without running it.
                drop(job);
                tracing::error!(%error, "Could not begin a write transaction.");
            }
            continue;
        }
        let finishers: Vec<Finish> = batch.into_iter().map(|job| job(&conn)).collect();
        let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let commit_error = commit.err();
        for finish in finishers {
            finish(commit_error.as_ref());
        }
    }
}

// ---- row mapping -------------------------------------------------------------------

/// The delivery columns every progress read selects, in `progress_from_row` order.
const PROGRESS_COLUMNS: &str = "state, fail_reason, attempts, max_attempts, next_attempt_at, \
     expires_at, ambiguous, last_error, remote_ref, delivered_at";

fn state_from(name: &str, reason: Option<&str>) -> Result<State, StoreError> {
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
fn progress_from_row(row: &Row<'_>, at: usize) -> Result<Progress, StoreError> {
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
    })
}

fn fail_reason(state: &State) -> Option<&'static str> {
    match state {
        State::Failed(reason) => Some(reason.as_str()),
        _ => None,
    }
}

/// Where a delivery sits: its broadcast, destination and place in the thread.
type Identity = (String, String, u32);

/// Writes `progress` to delivery `id` if it is still in `expected` state (and, with a
/// `token`, still under that lease): the compare-and-set every transition goes through.
/// Bumps the lease token, so any older lease is fenced out. Returns the delivery's
/// identity if it applied.
fn write_progress(
    conn: &Connection,
    id: &str,
    progress: &Progress,
    expected: &str,
    token: Option<i64>,
) -> Result<Option<Identity>, StoreError> {
    const SQL: &str = "UPDATE deliveries SET state = ?2, fail_reason = ?3, attempts = ?4, \
         next_attempt_at = ?5, expires_at = ?6, ambiguous = ?7, last_error = ?8, remote_ref = ?9, \
         delivered_at = ?10, lease_expires_at = NULL, lease_token = lease_token + 1 \
         WHERE id = ?1 AND (?11 IS NULL OR lease_token = ?11) AND state = ?12 \
         RETURNING broadcast_id, destination, seq";
    let res = conn
        .prepare_cached(SQL)?
        .query_row(
            params![
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
            ],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    Ok(res)
}

fn message_from(json: &str) -> Result<Message, StoreError> {
    serde_json::from_str(json)
        .map_err(|error| StoreError::Corrupt(format!("stored message: {error}")))
}

fn names_from(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json)
        .map_err(|error| StoreError::Corrupt(format!("stored names: {error}")))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Serializing plain strings and derived structs cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn load_broadcast(conn: &Connection, id: &str) -> Result<Option<BroadcastView>, StoreError> {
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
        "SELECT id, destination, seq, created_at, {PROGRESS_COLUMNS} FROM deliveries \
         WHERE broadcast_id = ?1 ORDER BY seq, position"
    ))?;
    let mut rows = stmt.query([id])?;
    while let Some(row) = rows.next()? {
        deliveries.push(DeliveryView {
            id: row.get(0)?,
            destination: row.get(1)?,
            seq: row.get(2)?,
            created_at: Timestamp(row.get(3)?),
            progress: progress_from_row(row, 4)?,
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

fn must_load(conn: &Connection, id: &str) -> Result<BroadcastView, StoreError> {
    load_broadcast(conn, id)?
        .ok_or_else(|| StoreError::NotFound { what: "broadcast", id: id.into() })
}

fn insert_delivery(
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

/// After a delivery reached a terminal state, moves its waiting successors on the same
/// destination: the next one becomes due, or fails (and so on down the thread). The next
/// one is the destination's next higher seq, which need not be `from_seq + 1` when an
/// update skipped this destination.
fn cascade(
    conn: &Connection,
    broadcast_id: &str,
    destination: &str,
    from_seq: u32,
    from_state: State,
    now: Timestamp,
    changes: &mut Vec<Change>,
) -> Result<(), StoreError> {
    let (mut after, mut predecessor) = (from_seq, from_state);
    loop {
        let found = conn
            .prepare_cached(&format!(
                "SELECT id, seq, {PROGRESS_COLUMNS} FROM deliveries \
                 WHERE broadcast_id = ?1 AND destination = ?2 AND seq > ?3 ORDER BY seq LIMIT 1"
            ))?
            .query_row(params![broadcast_id, destination, after], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, u32>(1)?, progress_from_row(row, 2)))
            })
            .optional()?;
        let Some((id, seq, progress)) = found else { return Ok(()) };
        let progress = progress?;
        if progress.state != State::Waiting {
            return Ok(());
        }
        let next = delivery::on_predecessor(&progress, &predecessor, now);
        write_progress(conn, &id, &next, "waiting", None)?;
        changes.push(Change {
            delivery_id: id,
            broadcast_id: broadcast_id.into(),
            destination: destination.into(),
            seq,
            state: next.state.clone(),
            next_attempt_at: next.next_attempt_at,
        });
        if !next.state.is_terminal() {
            return Ok(());
        }
        predecessor = next.state;
        after = seq;
    }
}

/// Reads a delivery's identity and progress.
fn load_delivery(
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

fn not_allowed(id: &str, error: NotAllowed, action: &'static str) -> StoreError {
    StoreError::NotAllowed { id: id.into(), state: error.state.into(), action }
}

/// A delivery selected for a lease: id, broadcast id, destination, seq and progress.
type LeaseRow = (String, String, String, u32, Progress);

/// Leases the deliveries selected by `select` (which must return `id` then
/// `PROGRESS_COLUMNS`-prefixed identity) and loads what is needed to attempt them.
fn lease(
    conn: &Connection,
    rows: Vec<LeaseRow>,
    lease_until: Timestamp,
) -> Result<Vec<Work>, StoreError> {
    let mut messages: HashMap<(String, u32), Arc<Message>> = HashMap::new();
    let mut work = Vec::with_capacity(rows.len());
    for (id, broadcast_id, destination, seq, progress) in rows {
        let lease_token: i64 = conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'in_flight', lease_token = lease_token + 1, \
                 lease_expires_at = ?2 WHERE id = ?1 RETURNING lease_token",
            )?
            .query_row(params![id, lease_until.0], |row| row.get(0))?;
        let key = (broadcast_id.clone(), seq);
        let message = match messages.get(&key) {
            Some(message) => Arc::clone(message),
            None => {
                let body: String = conn
                    .prepare_cached(
                        "SELECT body FROM messages WHERE broadcast_id = ?1 AND seq = ?2",
                    )?
                    .query_row(params![broadcast_id, seq], |row| row.get(0))?;
                let message = Arc::new(message_from(&body)?);
                messages.insert(key, Arc::clone(&message));
                message
            }
        };
        let (in_reply_to, original_remote_ref) = if seq == 0 {
            (None, None)
        } else {
            conn.prepare_cached(
                "SELECT id, remote_ref FROM deliveries \
                 WHERE broadcast_id = ?1 AND destination = ?2 AND seq = 0",
            )?
            .query_row(params![broadcast_id, destination], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?
            .unwrap_or((None, None))
        };
        let mut progress = progress;
        progress.state = State::InFlight;
        work.push(Work {
            delivery_id: id,
            broadcast_id,
            destination,
            seq,
            lease_token,
            progress,
            message,
            in_reply_to,
            original_remote_ref,
        });
    }
    Ok(work)
}

fn select_for_lease(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<LeaseRow>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut res = Vec::new();
    while let Some(row) = rows.next()? {
        res.push((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, progress_from_row(row, 4)?));
    }
    Ok(res)
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit(&self, new: NewBroadcast) -> Result<Submitted, StoreError> {
        self.write(move |conn| {
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
            conn.prepare_cached(
                "INSERT INTO messages (broadcast_id, seq, body, created_at) VALUES (?1, 0, ?2, ?3)",
            )?
            .execute(params![new.id, to_json(&new.message), new.created_at.0])?;
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
        self.write(move |conn| {
            let destinations: Option<String> = conn
                .prepare_cached("SELECT destinations FROM broadcasts WHERE id = ?1")?
                .query_row([&update.broadcast_id], |row| row.get(0))
                .optional()?;
            let Some(destinations) = destinations else {
                return Err(StoreError::NotFound { what: "broadcast", id: update.broadcast_id });
            };
            let destinations = names_from(&destinations)?;
            let seq: u32 = conn
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE broadcast_id = ?1")?
                .query_row([&update.broadcast_id], |row| row.get(0))?;
            conn.prepare_cached(
                "INSERT INTO messages (broadcast_id, seq, body, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![update.broadcast_id, seq, to_json(&update.message), update.created_at.0])?;
            let mut changes = Vec::new();
            for d in &update.deliveries {
                let Some(position) = destinations.iter().position(|name| *name == d.destination) else {
                    continue;
                };
                // The predecessor is the destination's latest earlier message, which is
                // not `seq - 1` when an update skipped this destination.
                let predecessor = conn
                    .prepare_cached(
                        "SELECT state, fail_reason FROM deliveries \
                         WHERE broadcast_id = ?1 AND destination = ?2 AND seq < ?3 \
                         ORDER BY seq DESC LIMIT 1",
                    )?
                    .query_row(params![update.broadcast_id, d.destination, seq], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
                    })
                    .optional()?;
                let waiting = Progress::new(update.created_at, d.expires_at, d.max_attempts, true);
                let progress = match predecessor {
                    Some((state, reason)) => {
                        let state = state_from(&state, reason.as_deref())?;
                        delivery::on_predecessor(&waiting, &state, update.created_at)
                    }
                    // The destination has no earlier message in this broadcast (every
                    // destination has an original, so this cannot happen): nothing to wait for.
                    None => Progress::new(update.created_at, d.expires_at, d.max_attempts, false),
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
            Ok(UpdateAdded { seq, broadcast: must_load(conn, &update.broadcast_id)?, changes })
        })
        .await
    }

    async fn claim(&self, claim: ClaimRequest) -> Result<Claimed, StoreError> {
        self.write(move |conn| {
            let rows = select_for_lease(
                conn,
                &format!(
                    "SELECT id, broadcast_id, destination, seq, {PROGRESS_COLUMNS} FROM deliveries \
                     WHERE destination = ?1 AND state = 'pending' AND next_attempt_at <= ?2 \
                     ORDER BY next_attempt_at LIMIT ?3"
                ),
                params![claim.destination, claim.now.0, claim.limit],
            )?;
            let work = lease(conn, rows, claim.lease_until)?;
            let next_due: Option<i64> = conn
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE destination = ?1 AND state = 'pending'",
                )?
                .query_row([&claim.destination], |row| row.get(0))?;
            Ok(Claimed { work, next_due: next_due.map(Timestamp) })
        })
        .await
    }

    async fn claim_expired(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Work>, StoreError> {
        self.write(move |conn| {
            let rows = select_for_lease(
                conn,
                &format!(
                    "SELECT id, broadcast_id, destination, seq, {PROGRESS_COLUMNS} FROM deliveries \
                     WHERE state = 'in_flight' AND lease_expires_at <= ?1 \
                     ORDER BY lease_expires_at LIMIT ?2"
                ),
                params![now.0, limit],
            )?;
            lease(conn, rows, lease_until)
        })
        .await
    }

    async fn record(&self, records: Vec<Record>) -> Result<Vec<Change>, StoreError> {
        self.write(move |conn| {
            let mut changes = Vec::with_capacity(records.len());
            for record in records {
                let written = write_progress(
                    conn,
                    &record.delivery_id,
                    &record.progress,
                    "in_flight",
                    Some(record.lease_token),
                )?;
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
                if state.is_terminal() {
                    cascade(
                        conn,
                        &broadcast_id,
                        &destination,
                        seq,
                        state,
                        record.now,
                        &mut changes,
                    )?;
                }
            }
            Ok(changes)
        })
        .await
    }

    async fn release(&self, releases: Vec<Release>) -> Result<Vec<Change>, StoreError> {
        self.write(move |conn| {
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
        self.write(move |conn| {
            let (broadcast_id, destination, seq, progress) = load_delivery(conn, &id)?;
            let next = delivery::operator_retry(&progress, &policy, now)
                .map_err(|error| not_allowed(&id, error, "retry"))?;
            if write_progress(conn, &id, &next, progress.state.as_str(), None)?.is_none() {
                return Err(StoreError::NotAllowed {
                    id,
                    state: "changing".into(),
                    action: "retry",
                });
            }
            Ok(vec![Change {
                delivery_id: id,
                broadcast_id,
                destination,
                seq,
                state: next.state,
                next_attempt_at: next.next_attempt_at,
            }])
        })
        .await
    }

    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Vec<Change>, StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            let (broadcast_id, destination, seq, progress) = load_delivery(conn, &id)?;
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
            cascade(conn, &broadcast_id, &destination, seq, State::Cancelled, now, &mut changes)?;
            Ok(changes)
        })
        .await
    }

    async fn delivery(&self, id: &str) -> Result<Option<DeliveryRef>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            let found = conn
                .prepare_cached(&format!(
                    "SELECT broadcast_id, destination, seq, created_at, {PROGRESS_COLUMNS} \
                     FROM deliveries WHERE id = ?1"
                ))?
                .query_row([&id], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, i64>(3)?,
                        progress_from_row(row, 4),
                    ))
                })
                .optional()?;
            let Some((broadcast_id, destination, seq, created_at, progress)) = found else {
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
                     ORDER BY seq DESC LIMIT ?3",
                )?;
                let batch: Vec<(i64, String)> = stmt
                    .query_map(params![cursor, query.destination, limit], |row| {
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
            let mut stmt = conn.prepare_cached(
                "SELECT destination, state, COUNT(*), MAX(delivered_at) FROM deliveries \
                 GROUP BY destination, state ORDER BY destination",
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
            Ok(res)
        })
        .await
    }
}
