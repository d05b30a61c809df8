//! Schema migrations: the files of `migrations/postgres/`, applied in order, each version
//! recorded in `schema_migrations`.
//!
//! All pending migrations run in one transaction under a transaction-level advisory lock
//! keyed on the schema, so nodes starting at once (or `herald migrate` next to a running
//! node) apply each migration exactly once: the others wait for the lock, then find
//! nothing left to do. PostgreSQL's DDL is transactional, so a failed migration leaves
//! the schema as it was.

use sqlx::{Connection, Executor, PgConnection};

use crate::StoreError;

/// The schema, applied in order; version n is the n-th file.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_initial.sql"),
    include_str!("../../migrations/postgres/0002_cluster.sql"),
    include_str!("../../migrations/postgres/0003_probe.sql"),
];

/// What [`run`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The schema the tables live in.
    pub schema: String,
    /// The versions applied now, in order (empty when the schema was up to date).
    pub applied: Vec<u32>,
    /// The schema's version afterwards.
    pub version: u32,
}

/// Applies every migration the schema lacks, on `conn`, in one transaction.
///
/// Boxed as `Send` here, where its lifetimes are concrete: left to inference, sqlx's
/// executor bounds make the future's `Send` unprovable for callers that spawn it.
pub(super) fn run(conn: &mut PgConnection) -> super::Op<'_, Migrated> {
    Box::pin(async move {
        let mut tx = conn.begin().await?;
        let schema: Option<String> =
            sqlx::query_scalar("SELECT current_schema()").fetch_one(&mut *tx).await?;
        let Some(schema) = schema else {
            return Err(StoreError::Unavailable(
                "no schema to create herald's tables in: none of the search_path's schemas \
                 exists; create it first"
                    .into(),
            )
            .into());
        };
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(&schema))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version INT PRIMARY KEY, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        )
        .execute(&mut *tx)
        .await?;
        let current: Option<i32> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?;
        let current = usize::try_from(current.unwrap_or(0)).unwrap_or(0);
        if current > MIGRATIONS.len() {
            return Err(StoreError::Unavailable(format!(
                "the database has schema version {current}, newer than this herald knows ({}); \
                 upgrade herald",
                MIGRATIONS.len()
            ))
            .into());
        }
        let mut applied = Vec::new();
        for (idx, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let version = idx + 1;
            // Through `Executor` directly: `RawSql::execute` is an `async fn` whose
            // future callers cannot prove `Send`.
            (&mut *tx).execute(sqlx::raw_sql(sql)).await?;
            sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                .bind(i32::try_from(version).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await?;
            applied.push(u32::try_from(version).unwrap_or(u32::MAX));
        }
        tx.commit().await?;
        let version = u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX);
        Ok(Migrated { schema, applied, version })
    })
}

/// The advisory lock for migrating `schema`: one per schema, so tests (and tenants) in
/// separate schemas of one database do not wait for each other. FNV-1a, stable across
/// builds and platforms.
fn lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "herald-migrations:".bytes().chain(schema.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}
