//! The shared store: PostgreSQL, for several herald nodes working on one database.
//!
//! Every operation is one transaction on a pooled connection (reads: one `REPEATABLE
//! READ` snapshot). Unlike the SQLite store there is no single writer to serialize
//! everything, so concurrency is the database's: claims take rows with `FOR UPDATE SKIP
//! LOCKED` (two nodes never wait for, or get, the same delivery), the idempotency key is a
//! unique index (`ON CONFLICT DO NOTHING` decides between concurrent submits), an update
//! or a thread cascade locks the thread's rows in `seq` order first, and a transaction
//! that the database aborts as a deadlock is run again. Outcomes are still fenced by the
//! lease token, exactly as in SQLite.
//!
//! Nothing here expires leases at start-up: another node may hold them. A lease ends
//! when its `lease_expires_at` passes, and whichever node's recovery claims it first
//! records the attempt as ambiguous.
//!
//! Heartbeats, lane leases, cluster-wide pauses and wake-ups across nodes
//! (`LISTEN/NOTIFY`) are [`PgCluster`]'s, on the same database.

mod cluster;
mod migrate;
mod rows;
mod store;

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Semaphore;

pub use self::cluster::PgCluster;
pub use self::migrate::{MIGRATIONS, Migrated};
use crate::metrics::StoreMetrics;
use crate::{StoreClock, StoreError};

/// Tuning of a [`PgStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// How many submits and updates may run at once; more are refused at once with
    /// `StoreError::Overloaded` instead of queueing for a connection.
    pub submit_queue: usize,
    /// Connections in this node's pool.
    pub max_connections: u32,
    /// The longest an operation waits for a pooled connection (and a new connection for
    /// its handshake) before it fails as `Unavailable`.
    pub acquire_timeout: Duration,
    /// The schema to work in (`search_path`, set on every pooled connection); `None`
    /// keeps the server's default, or what the URL's `options=-csearch_path=...` says.
    pub schema: Option<String>,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            submit_queue: 1024,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            schema: None,
        }
    }
}

/// How many counter rows each (destination, terminal state) is spread over.
const SHARDS: u32 = 16;

/// How often a transaction the database aborted as a deadlock (or a serialization
/// failure) is run again before the error is reported.
const TRIES: u32 = 5;

/// A PostgreSQL-backed [`crate::Store`], one per node.
pub struct PgStore {
    pool: PgPool,
    /// Written to `lease_owner` by this node's claims and to `node_id` of its attempts.
    node_id: Arc<str>,
    /// Permits for submits and updates in progress (`PgOptions::submit_queue`).
    submits: Arc<Semaphore>,
    submit_queue: usize,
    /// Stamps leases when their claim commits; without it, leases run from the caller's
    /// `now`.
    clock: Option<Arc<StoreClock>>,
    /// Picks the counter shard of the next transaction.
    next_shard: AtomicU32,
    /// Write transaction times (no batch sizes: one operation per transaction).
    metrics: StoreMetrics,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

/// What an operation's body can fail with: the database (which may be worth another
/// try) or a store-level answer (`NotFound`, `KeyConflict`, ...).
#[derive(Debug)]
pub(super) enum Failure {
    Db(sqlx::Error),
    /// `COMMIT` itself failed.
    Commit(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Failure {
        Failure::Db(error)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure::Store(error)
    }
}

impl Failure {
    /// A deadlock or serialization failure: the transaction was rolled back and running
    /// it again may succeed.
    fn is_transient(&self) -> bool {
        let (Failure::Db(sqlx::Error::Database(error))
        | Failure::Commit(sqlx::Error::Database(error))) = self
        else {
            return false;
        };
        matches!(error.code().as_deref(), Some("40001" | "40P01"))
    }

    fn into_store(self) -> StoreError {
        match self {
            Failure::Store(error) => error,
            Failure::Db(error) => unavailable(&error),
            // The server answered the COMMIT: it refused, so nothing was written.
            Failure::Commit(error @ sqlx::Error::Database(_)) => unavailable(&error),
            // No answer (the connection broke with the COMMIT sent or on its way): the
            // server may have committed. Saying "unavailable" would tell the client that
            // nothing was stored, and a retry without the key would store it twice.
            Failure::Commit(error) => StoreError::Unconfirmed(format!(
                "the PostgreSQL connection broke before the commit was confirmed: {}",
                match unavailable(&error) {
                    StoreError::Unavailable(cause) => cause,
                    other => other.to_string(),
                }
            )),
        }
    }
}

/// The caller-facing form of a database error. Never contains the URL (it may hold a
/// password): sqlx's messages name the host at most.
pub(super) fn unavailable(error: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(match error {
        sqlx::Error::PoolTimedOut => {
            "no PostgreSQL connection could be had in time (the database is down, \
             unreachable or every pooled connection is busy)"
                .into()
        }
        sqlx::Error::PoolClosed => "the PostgreSQL pool is closed".into(),
        sqlx::Error::Io(error) => format!("PostgreSQL connection failed: {error}"),
        sqlx::Error::Tls(error) => format!("PostgreSQL TLS failed: {error}"),
        sqlx::Error::Database(error) => format!(
            "PostgreSQL: {} ({})",
            error.message(),
            error.code().as_deref().unwrap_or("no code")
        ),
        other => format!("PostgreSQL: {other}"),
    })
}

/// One operation's body: runs inside the transaction it is given.
pub(super) type Op<'c, R> = Pin<Box<dyn Future<Output = Result<R, Failure>> + Send + 'c>>;

/// Checks a `postgres://` URL without connecting (for `herald check-config`).
///
/// # Errors
/// What is wrong, in words that never repeat the URL (it may hold a password).
pub fn check_url(url: &str) -> Result<(), String> {
    PgConnectOptions::from_str(url).map(|_| ()).map_err(|error| match error {
        sqlx::Error::Configuration(cause) => format!("not a valid PostgreSQL URL: {cause}"),
        _ => "not a valid PostgreSQL URL".into(),
    })
}

/// The connection options for `url` with `options` applied.
fn connect_options(url: &str, options: &PgOptions) -> Result<PgConnectOptions, StoreError> {
    let connect = PgConnectOptions::from_str(url).map_err(|error| {
        StoreError::Unavailable(match error {
            sqlx::Error::Configuration(cause) => format!("not a valid PostgreSQL URL: {cause}"),
            _ => "not a valid PostgreSQL URL".into(),
        })
    })?;
    // Bounds how long a node may hold row locks when it stops mid-transaction without
    // closing its connection (a paused process, a partition): others then wait this
    // long at most for the rows, not for ever.
    let mut settings = vec![("idle_in_transaction_session_timeout", "15s".to_string())];
    if let Some(schema) = &options.schema {
        // Startup options are space-separated words, so only plain names pass.
        let plain =
            !schema.is_empty() && schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plain {
            return Err(StoreError::Unavailable(format!(
                "schema name {schema:?}: use letters, digits and `_` only"
            )));
        }
        settings.push(("search_path", schema.clone()));
    }
    // Shown in `pg_stat_activity`; a URL's own `application_name` wins.
    let connect = match connect.get_application_name() {
        Some(_) => connect,
        None => connect.application_name("herald"),
    };
    Ok(connect.options(settings))
}

/// `name` when it is a plain identifier, the only kind spliced into a statement.
fn plain_name(name: &str) -> Result<&str, StoreError> {
    let plain = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if plain {
        Ok(name)
    } else {
        Err(StoreError::Unavailable(format!(
            "schema name {name:?}: use letters, digits and `_` only"
        )))
    }
}

/// Runs one schema statement on a connection of its own.
async fn schema_statement(url: &str, statement: &str) -> Result<(), StoreError> {
    let connect = connect_options(url, &PgOptions::default())?;
    let mut conn =
        PgConnection::connect_with(&connect).await.map_err(|error| unavailable(&error))?;
    let res = sqlx::query(statement).execute(&mut conn).await.map_err(|error| unavailable(&error));
    // The connection is done either way; a failed goodbye changes nothing.
    let _ = conn.close().await;
    res.map(|_| ())
}

fn pool_options(options: &PgOptions) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(options.acquire_timeout)
        // A connection the server dropped (restart, `pg_terminate_backend`) is found out
        // on its next use; checking before handing it out turns that into a reconnect.
        .test_before_acquire(true)
}

impl PgStore {
    /// Connects to the database at `url` as node `node_id` and applies the migrations
    /// this version knows (safe when several nodes start at once).
    ///
    /// # Errors
    /// `Unavailable` when the URL is invalid, the database cannot be reached within
    /// `acquire_timeout`, or its schema is newer than this herald.
    pub async fn connect(
        url: &str,
        node_id: &str,
        options: &PgOptions,
    ) -> Result<PgStore, StoreError> {
        let store = PgStore::connect_lazy(url, node_id, options)?;
        {
            let mut conn = store.pool.acquire().await.map_err(|error| unavailable(&error))?;
            migrate::run(&mut conn).await.map_err(Failure::into_store)?;
        }
        Ok(store)
    }

    /// A store on a database whose schema is already migrated (by [`PgStore::connect`]
    /// or `herald migrate`), without connecting: the pool connects on first use. For
    /// set-up code that cannot wait (tests building a store outside a runtime).
    ///
    /// # Errors
    /// `Unavailable` when the URL or the options are invalid.
    pub fn connect_lazy(
        url: &str,
        node_id: &str,
        options: &PgOptions,
    ) -> Result<PgStore, StoreError> {
        let connect = connect_options(url, options)?;
        let pool = pool_options(options).connect_lazy_with(connect);
        Ok(PgStore {
            pool,
            node_id: Arc::from(node_id),
            submits: Arc::new(Semaphore::new(options.submit_queue.max(1))),
            submit_queue: options.submit_queue.max(1),
            clock: None,
            next_shard: AtomicU32::new(0),
            metrics: StoreMetrics::new(false),
        })
    }

    /// Applies the migrations this version knows to the database at `url` and reports
    /// what was done (`herald migrate`).
    ///
    /// # Errors
    /// As [`PgStore::connect`].
    pub async fn migrate(url: &str, options: &PgOptions) -> Result<Migrated, StoreError> {
        let connect = connect_options(url, options)?;
        let pool = pool_options(options).max_connections(1).connect_lazy_with(connect);
        let mut conn = pool.acquire().await.map_err(|error| unavailable(&error))?;
        let res = migrate::run(&mut conn).await.map_err(Failure::into_store);
        drop(conn);
        pool.close().await;
        res
    }

    /// Creates the empty schema `name` on the database at `url`, for work that must see
    /// no other rows (`herald bench` gives each run one and points its nodes at it
    /// through the URL's `search_path`).
    ///
    /// # Errors
    /// `Unavailable` when the name is not plain (letters, digits, `_`), the database
    /// cannot be reached, or the schema exists.
    pub async fn create_schema(url: &str, name: &str) -> Result<(), StoreError> {
        schema_statement(url, &format!("CREATE SCHEMA {}", plain_name(name)?)).await
    }

    /// Drops the schema `name` and everything in it, if it exists.
    ///
    /// # Errors
    /// As [`PgStore::create_schema`], except that a missing schema is no error.
    pub async fn drop_schema(url: &str, name: &str) -> Result<(), StoreError> {
        schema_statement(url, &format!("DROP SCHEMA IF EXISTS {} CASCADE", plain_name(name)?)).await
    }

    /// Gives the store the engine's clock, so a lease is stamped when its claim commits
    /// rather than when it was asked for: a slow round trip cannot shorten an attempt's
    /// lease.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<StoreClock>) -> PgStore {
        self.clock = Some(clock);
        self
    }

    /// This node's handle on the cluster of nodes sharing the database (lane leases,
    /// heartbeats, pauses, announcements).
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be reached.
    pub async fn cluster(&self) -> Result<PgCluster, StoreError> {
        PgCluster::new(self.pool.clone(), &self.node_id).await
    }

    /// This node's id, as written to leases and attempts.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The connection pool, for tests that look at the tables directly.
    #[doc(hidden)]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool: connections are returned to the server.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The counter shard for the next transaction that ends deliveries.
    fn shard(&self) -> i32 {
        // SHARDS is small, so the remainder always fits.
        (self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS) as i32
    }

    /// Runs `op` in a read-committed transaction and commits; runs it again (from the
    /// start, in a new transaction) when the database aborted it as a deadlock.
    async fn write<R, F>(&self, op: F) -> Result<R, StoreError>
    where
        R: Send,
        F: for<'c> Fn(&'c mut PgConnection) -> Op<'c, R> + Send + Sync,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let res: Result<R, Failure> = async {
                let mut tx = self.pool.begin().await?;
                let started = std::time::Instant::now();
                let res = op(&mut tx).await?;
                tx.commit().await.map_err(Failure::Commit)?;
                self.metrics.transaction_duration.observe(started.elapsed().as_secs_f64());
                Ok(res)
            }
            .await;
            match res {
                Ok(res) => return Ok(res),
                Err(failure) if failure.is_transient() && tries < TRIES => {
                    tracing::debug!(
                        ?failure,
                        tries,
                        "Running a transaction again after a deadlock."
                    );
                }
                Err(failure) => return Err(failure.into_store()),
            }
        }
    }

    /// Runs `op` in one read-only snapshot, so a view built from several statements
    /// never mixes two commits.
    async fn read<R, F>(&self, op: F) -> Result<R, StoreError>
    where
        R: Send,
        F: for<'c> FnOnce(&'c mut PgConnection) -> Op<'c, R> + Send,
    {
        let res: Result<R, Failure> = async {
            let mut tx =
                self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
            let res = op(&mut tx).await?;
            tx.commit().await?;
            Ok(res)
        }
        .await;
        res.map_err(Failure::into_store)
    }

    /// A round trip that fails unless the database takes writes now.
    async fn check_writable(&self) -> Result<(), StoreError> {
        let res: Result<(), Failure> = async {
            let mut conn = self.pool.acquire().await?;
            let read_only: String =
                sqlx::query_scalar("SHOW transaction_read_only").fetch_one(&mut *conn).await?;
            if read_only != "off" {
                return Err(StoreError::Unavailable(
                    "PostgreSQL accepts no writes (a read-only server or a standby)".into(),
                )
                .into());
            }
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            Ok(())
        }
        .await;
        res.map_err(Failure::into_store)
    }
}
