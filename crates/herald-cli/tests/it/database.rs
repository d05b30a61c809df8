//! The test PostgreSQL (`HERALD_TEST_DATABASE_URL`): each test works in a schema of its
//! own, dropped when the test ends, so tests run in parallel on one database.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::Url;
use sqlx::{Connection, PgConnection};

/// The test database's URL.
pub fn database_url() -> String {
    // CI sets it (.ci/run); unset, the machine's server is meant, and a missing server
    // fails the test naming the URL.
    std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The database server's address, for a proxy in front of it.
pub fn server_addr() -> SocketAddr {
    let url = Url::parse(&database_url()).unwrap();
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(5432);
    format!("{host}:{port}").parse().unwrap_or_else(|_| {
        panic!("the proxy needs the test database at an IP address, not {host}")
    })
}

/// A connection outside any test schema.
pub async fn admin() -> PgConnection {
    let url = database_url();
    PgConnection::connect(&url).await.unwrap_or_else(|error| {
        panic!("this test needs PostgreSQL at {url} (HERALD_TEST_DATABASE_URL): {error}")
    })
}

/// A schema of its own, dropped with everything in it when the test ends.
pub struct Schema(String);

impl Schema {
    pub async fn new() -> Schema {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name =
            format!("herald_cli_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut conn = admin().await;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&mut conn).await.unwrap();
        Schema(name)
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// The database URL whose connections work in this schema, as an operator would
    /// write it in `herald.toml`.
    pub fn url(&self) -> String {
        let url = database_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{}", self.0)
    }

    /// [`Schema::url`] reaching the server through `via` (a proxy) when given, with
    /// `application_name` set so this node's connections can be told apart in
    /// `pg_stat_activity`.
    pub fn node_url(&self, via: Option<SocketAddr>, application_name: &str) -> String {
        let mut url = Url::parse(&self.url()).unwrap();
        if let Some(via) = via {
            url.set_ip_host(via.ip()).unwrap();
            url.set_port(Some(via.port())).unwrap();
        }
        url.query_pairs_mut().append_pair("application_name", application_name);
        url.to_string()
    }

    /// A connection working in this schema.
    pub async fn conn(&self) -> PgConnection {
        let mut conn = admin().await;
        sqlx::query(&format!("SET search_path TO {}", self.0)).execute(&mut conn).await.unwrap();
        conn
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut conn = admin().await;
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .execute(&mut conn)
                    .await;
            });
        })
        .join();
    }
}
