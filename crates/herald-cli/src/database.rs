//! Opening the store `server.database` names, and `herald migrate`.
//!
//! SQLite is one file served by one process; PostgreSQL is shared by every node that
//! names it, each under its `server.node_id`. Both apply their migrations when opened.

use std::sync::Arc;

use anyhow::Context;
use herald_engine::{Clock, SystemClock};
use herald_store::Store;
use herald_store::postgres::{PgOptions, PgStore};
use herald_store::sqlite::{SqliteOptions, SqliteStore};

use crate::config::{Config, Database};

/// The open store, kept by its type for what only one backend has (SQLite's writer
/// thread, which can die).
#[derive(Debug, Clone)]
pub enum Backend {
    /// One file, one process.
    Sqlite(Arc<SqliteStore>),
    /// Shared by several nodes.
    Postgres(Arc<PgStore>),
}

impl Backend {
    /// The store, for the engine and the API.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(store) => Arc::clone(store) as Arc<dyn Store>,
            Backend::Postgres(store) => Arc::clone(store) as Arc<dyn Store>,
        }
    }

    /// Resolves with the cause once the store can no longer write at all (SQLite's
    /// writer thread died); never for PostgreSQL, whose pool reconnects by itself.
    pub async fn failure(&self) -> String {
        match self {
            Backend::Sqlite(store) => store.writer_failure().await,
            Backend::Postgres(_) => std::future::pending().await,
        }
    }

    /// Lets go of the database: PostgreSQL connections are closed now rather than when
    /// the process ends.
    pub async fn close(&self) {
        if let Backend::Postgres(store) = self {
            store.close().await;
        }
    }
}

fn pg_options(config: &Config) -> PgOptions {
    PgOptions { submit_queue: config.server.submit_queue, ..PgOptions::default() }
}

/// Opens (and migrates) the store `config` names; leases are stamped by the system clock.
///
/// # Errors
/// When the database cannot be opened, reached or migrated.
pub async fn open(config: &Config) -> anyhow::Result<Backend> {
    let clock = Arc::new(|| SystemClock.now());
    Ok(match &config.server.database {
        Database::Sqlite { path } => {
            let options = SqliteOptions { submit_queue: config.server.submit_queue };
            let store = SqliteStore::open_with(path, &options)
                .with_context(|| format!("cannot open the database {}", path.display()))?;
            Backend::Sqlite(Arc::new(store.with_clock(clock)))
        }
        Database::Postgres { url } => {
            let node_id = config.server.node_id();
            let store = PgStore::connect(url, &node_id, &pg_options(config))
                .await
                .context("cannot open the PostgreSQL database")?;
            Backend::Postgres(Arc::new(store.with_clock(clock)))
        }
    })
}

/// `herald migrate`: applies the migrations this version knows and says what it did.
///
/// # Errors
/// As [`open`]; SQLite also refuses while a server holds the file.
pub async fn migrate(config: &Config) -> anyhow::Result<String> {
    match &config.server.database {
        Database::Sqlite { path } => {
            let options = SqliteOptions { submit_queue: config.server.submit_queue };
            SqliteStore::open_with(path, &options)
                .with_context(|| format!("cannot open the database {}", path.display()))?;
            Ok(format!("{}: the schema is up to date", path.display()))
        }
        Database::Postgres { url } => {
            let migrated = PgStore::migrate(url, &pg_options(config))
                .await
                .context("cannot migrate the PostgreSQL database")?;
            let versions: Vec<String> = migrated.applied.iter().map(u32::to_string).collect();
            Ok(if versions.is_empty() {
                format!("schema `{}`: up to date (version {})", migrated.schema, migrated.version)
            } else {
                format!(
                    "schema `{}`: applied version {}; now at version {}",
                    migrated.schema,
                    versions.join(", "),
                    migrated.version
                )
            })
        }
    }
}
