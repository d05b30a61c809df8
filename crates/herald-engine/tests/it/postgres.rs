//! The engine suite's PostgreSQL stores (`HERALD_ENGINE_STORE=postgres`): each a fresh
//! schema of the test database, migrated before the test's runtime uses it. Schemas are
//! named after the test process; those of processes that are gone are dropped when the
//! next run starts, so the shared database does not fill up.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use herald_store::postgres::{PgOptions, PgStore};
use sqlx::{Connection, PgConnection};

const PREFIX: &str = "herald_engine_";

fn database_url() -> String {
    // CI always sets it (.ci/run); unset, the machine's server is the one meant, and a
    // missing server fails the test naming the URL.
    std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs `f` on a runtime of its own in a thread of its own: the tests' stores are built
/// from synchronous code on a single-threaded runtime.
fn on_the_side<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(f())
    })
    .join()
    .unwrap()
}

/// Drops the schemas of earlier test processes that are gone.
async fn drop_leftovers(conn: &mut PgConnection) {
    let schemas: Vec<String> =
        sqlx::query_scalar("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1")
            .bind(format!("{PREFIX}%"))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    for schema in schemas {
        let pid = schema.trim_start_matches(PREFIX).split('_').next().unwrap_or("");
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&mut *conn)
                .await;
        }
    }
}

async fn admin(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|error| {
        panic!("HERALD_ENGINE_STORE=postgres needs PostgreSQL at {url}: {error}")
    })
}

/// A PostgreSQL store on a fresh, migrated schema.
pub fn store() -> PgStore {
    static CLEANED: OnceLock<()> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let schema = format!("{PREFIX}{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let options =
        PgOptions { schema: Some(schema.clone()), max_connections: 4, ..PgOptions::default() };
    let url = database_url();
    let (name, side_url, side_options) = (schema.clone(), url.clone(), options.clone());
    // Once per process, and every other test waits for it: a schema created meanwhile
    // must not be mistaken for a leftover.
    CLEANED.get_or_init(|| {
        let url = url.clone();
        on_the_side(move || Box::pin(async move { drop_leftovers(&mut admin(&url).await).await }))
    });
    on_the_side(move || {
        Box::pin(async move {
            let mut conn = admin(&side_url).await;
            sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut conn).await.unwrap();
            PgStore::migrate(&side_url, &side_options).await.unwrap();
        })
    });
    PgStore::connect_lazy(&url, "engine-test", &options).unwrap()
}
