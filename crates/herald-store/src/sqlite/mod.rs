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

mod rows;
mod store;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

/// The schema, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_threads.sql"),
];

/// How many queued write requests one transaction may take.
const MAX_GROUP: usize = 1024;

/// Read connections kept open.
const READERS: usize = 4;

type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// The store's source of "now" for stamps taken at commit time (leases).
pub type StoreClock = dyn Fn() -> herald_core::Timestamp + Send + Sync;
type Job = Box<dyn FnOnce(&Connection) -> Finish + Send>;

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    /// Requests for the writer thread; dropping the store ends the thread.
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    path: PathBuf,
    /// Stamps leases when their claim commits; without it, leases run from the
    /// caller's `now`.
    clock: Option<Arc<StoreClock>>,
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

        // The writer checkpoints the WAL itself (SQLite's default, every ~1000 pages):
        // a checkpoint on another connection never completes while commits keep
        // arriving, and the WAL then grows without bound. The size limit truncates the
        // file after a burst.
        conn.execute_batch("PRAGMA cache_size = -32000; PRAGMA journal_size_limit = 67108864;")?;

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
            clock: None,
            _lock: lock,
        })
    }

    /// Gives the store the engine's clock, so a lease is stamped when its claim commits
    /// rather than when it was asked for: a lagging writer cannot shorten an attempt's
    /// lease.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<StoreClock>) -> SqliteStore {
        self.clock = Some(clock);
        self
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
