//! The embedded default store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! All writes go through one writer thread that groups whatever requests are queued into
//! a single transaction (group commit): each request runs in its own savepoint, the
//! transaction commits once, and only then does any caller get its answer. So no caller
//! is told "stored" before its data is fsync'd, yet a burst of requests costs one fsync.
//! Reads use a small pool of separate connections and never wait for the writer.
//!
//! The writer's queue has priorities (`queue.rs`): work on existing deliveries goes
//! first and is never refused; new submits and updates are bounded and refused with
//! `StoreError::Overloaded` when full; retention batches run only when idle. A panic on
//! the writer thread is caught, logged, and reported through
//! [`SqliteStore::writer_failure`] so the server can stop and be restarted; every
//! request not yet committed is answered with an error, never with success.
//!
//! One process serves a database file at a time (enforced by a lock file), which is why
//! at start-up every lease left by the previous process can be expired at once: nobody
//! else can be holding it.

mod queue;
mod rows;
mod store;

use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use self::queue::{Priority, Queue};
use crate::StoreError;
use crate::metrics::StoreMetrics;

/// The schema, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_threads.sql"),
    include_str!("../../migrations/0003_retention.sql"),
    include_str!("../../migrations/0004_connectors.sql"),
    include_str!("../../migrations/0005_probe.sql"),
];

/// How many queued write requests one transaction may take.
const MAX_GROUP: usize = 1024;

/// Read connections kept open.
const READERS: usize = 4;

type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;
pub use crate::StoreClock;
type Job = Box<dyn FnOnce(&Connection) -> Finish + Send>;

/// Tuning of a [`SqliteStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How many submits and updates may wait for the writer before new ones are refused
    /// with `StoreError::Overloaded`.
    pub submit_queue: usize,
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions { submit_queue: 1024 }
    }
}

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    /// Requests for the writer thread; dropping the store closes it and ends the thread.
    queue: Arc<Queue>,
    /// `Some(cause)` once the writer thread has died of a panic.
    failure: watch::Receiver<Option<String>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    path: PathBuf,
    /// Stamps leases when their claim commits; without it, leases run from the
    /// caller's `now`.
    clock: Option<Arc<StoreClock>>,
    /// The writer's batch sizes and transaction times.
    metrics: StoreMetrics,
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
        SqliteStore::open_with(path, &SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with explicit options.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_with(path: &Path, options: &SqliteOptions) -> Result<SqliteStore, StoreError> {
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
        // file after a burst. The writer's page cache holds what its statements revisit
        // (the right edges of the tables, the due-work index per destination, the rows
        // leased and recorded a moment ago); 8 MiB keeps those, and a miss is a read from
        // the kernel's cache, not the disk. More only grows the resident set (32 MiB made
        // it half of herald's memory under load).
        conn.execute_batch("PRAGMA cache_size = -8000; PRAGMA journal_size_limit = 67108864;")?;

        let queue = Arc::new(Queue::new(options.submit_queue));
        let (report, failure) = watch::channel(None);
        let jobs = Arc::clone(&queue);
        let metrics = StoreMetrics::new(true);
        let writer_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || run_writer(conn, &jobs, &report, &writer_metrics))
            .map_err(unavailable)?;

        Ok(SqliteStore {
            queue,
            failure,
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            path: path.to_path_buf(),
            clock: None,
            metrics,
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

    /// Resolves with the panic's message once the writer thread has died; never while
    /// it runs. The server watches this and exits, since nothing can be stored any more.
    pub async fn writer_failure(&self) -> String {
        let mut failure = self.failure.clone();
        match failure.wait_for(Option::is_some).await {
            Ok(cause) => cause.clone().unwrap_or_default(),
            // The sender lives as long as the thread; it is gone only after a report.
            Err(_) => std::future::pending().await,
        }
    }

    /// How many write requests wait: (urgent, new, background).
    pub fn queue_depth(&self) -> (usize, usize, usize) {
        self.queue.depth()
    }

    /// Test hook: blocks the writer thread inside a transaction until the returned guard
    /// is dropped, so tests can fill its queue. Resolves once the writer is blocked.
    #[doc(hidden)]
    pub async fn stall_writer(&self) -> WriterStall {
        let (entered_tx, entered_rx) = oneshot::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let stall = self.write(Priority::Urgent, move |_conn| {
            let _ = entered_tx.send(());
            // Returns when the guard is dropped (the sender disconnects).
            let _ = released.recv();
            Ok(())
        });
        let stall = tokio::spawn(async move {
            let _ = stall.await;
        });
        let _ = entered_rx.await;
        WriterStall { _release: release, _task: stall }
    }

    /// Test hook: makes the writer thread panic while it runs a job.
    #[doc(hidden)]
    pub async fn panic_writer(&self) -> Result<(), StoreError> {
        self.write(Priority::Urgent, |_conn| -> Result<(), StoreError> {
            panic!("panic_writer test hook")
        })
        .await
    }

    /// Test hook: rolls the writer's current transaction back from inside a job, as
    /// SQLite itself does after some errors (`SQLITE_FULL`, `SQLITE_IOERR`,
    /// `SQLITE_NOMEM`), so tests can see what happens to the rest of the batch.
    #[doc(hidden)]
    pub async fn abort_writer_transaction(&self) -> Result<(), StoreError> {
        self.write(Priority::Urgent, |conn| {
            conn.execute_batch("ROLLBACK")?;
            Ok(())
        })
        .await
    }

    /// Runs `f` in the writer's next transaction and answers after it committed.
    fn write<R, F>(
        &self,
        priority: Priority,
        f: F,
    ) -> impl std::future::Future<Output = Result<R, StoreError>> + Send + 'static
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
        let queued = self.queue.push(priority, job);
        async move {
            queued?;
            rx.await.map_err(|_| unavailable("the writer thread stopped before answering"))?
        }
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
    if conn.is_autocommit() {
        // SQLite rolled the batch's transaction back after an earlier request's error
        // (full disk, I/O error). Run now, this request would commit on its own at its
        // savepoint's release and then be answered with the batch's failed COMMIT.
        return Err(unavailable(
            "the write transaction was rolled back by an earlier error in its batch; nothing was stored",
        ));
    }
    // Cached statements: a group commit runs these around every request.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let res = f(conn);
    if res.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    res
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Held by a test while the writer is stalled; dropping it lets the writer go on.
#[doc(hidden)]
#[derive(Debug)]
pub struct WriterStall {
    _release: std::sync::mpsc::Sender<()>,
    _task: tokio::task::JoinHandle<()>,
}

/// The writer thread: the write loop, and what happens when it panics.
fn run_writer(
    conn: Connection,
    queue: &Queue,
    report: &watch::Sender<Option<String>>,
    metrics: &StoreMetrics,
) {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| write_loop(&conn, queue, metrics)));
    // Dropping the connection rolls back the transaction the panic interrupted, so
    // nothing half-done is committed and everything committed before stays.
    drop(conn);
    if let Err(panic) = outcome {
        let cause = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(
            %cause,
            "The SQLite writer thread panicked; stopping so the supervisor restarts herald. \
             Nothing committed is lost."
        );
        // Every queued request is answered with an error: none was committed.
        queue.abandon();
        let _ = report.send(Some(cause));
    }
}

fn write_loop(conn: &Connection, queue: &Queue, metrics: &StoreMetrics) {
    while let Some(batch) = queue.take(MAX_GROUP) {
        let started = std::time::Instant::now();
        let size = batch.len();
        // One span per group commit, for trace export: how many writes shared it.
        let span = tracing::info_span!(
            "herald.store.commit",
            herald.store.batch_size = size as i64,
            otel.status_code = tracing::field::Empty,
        );
        let _in_span = span.enter();
        let begin = conn.execute_batch("BEGIN IMMEDIATE").map_err(StoreError::from);
        if let Err(error) = begin {
            for job in batch {
                // The job never ran; report the failure without running it.
                drop(job);
                tracing::error!(%error, "Could not begin a write transaction.");
            }
            continue;
        }
        let finishers: Vec<Finish> = batch.into_iter().map(|job| job(conn)).collect();
        let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let commit_error = commit.err();
        if commit_error.is_some() {
            span.record("otel.status_code", "error");
        }
        if commit_error.is_none() {
            metrics.transaction_duration.observe(started.elapsed().as_secs_f64());
            if let Some(batch_size) = &metrics.batch_size {
                batch_size.observe(size as f64);
            }
        }
        for finish in finishers {
            finish(commit_error.as_ref());
        }
    }
}
