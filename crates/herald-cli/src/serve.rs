//! `herald serve`: wire the store, connectors, engine and HTTP API together and run
//! until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use herald_api::{AppState, Auth, Ids, Limits, Targets};
use herald_connectors::http;
use herald_core::Timestamp;
use herald_engine::{Clock, Destination, Engine, EngineConfig, Membership, Retention, SystemClock};
use herald_store::Store;
use herald_store::cluster::Cluster;
use herald_store::sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Database};
use crate::database::{self, Backend};
use crate::listener::{self, ListenerConfig};
use crate::tls::TlsIdentity;

/// A server running in this process: the API listening, the engine working.
pub struct Running {
    /// Where the API listens (the real port when the configuration asked for port 0).
    pub addr: SocketAddr,
    /// The engine, for shutdown.
    pub engine: Engine,
    /// The store by its type, watched for a dead SQLite writer.
    backend: Backend,
    /// `https` when the API serves TLS, else `http`.
    pub scheme: &'static str,
    stop_http: CancellationToken,
    http: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("addr", &self.addr).finish()
    }
}

/// Opens the store, builds the connectors, starts the engine and the API.
///
/// # Errors
/// When the database cannot be opened, a connector cannot be built or the listen
/// address cannot be bound.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    crate::logging::set_secrets(config.redactor.clone());
    let backend = database::open(config).await?;
    let store = backend.store();
    for warning in config.warnings() {
        tracing::warn!(%warning, "Configuration warning (see herald check-config).");
    }
    // Every connector connects through this client, so `[outbound]` applies to all.
    let options = http::ClientOptions { outbound: config.outbound.clone(), ..Default::default() };
    let client = http::client_with(&options)?;
    let mut destinations = Vec::with_capacity(config.destinations.len());
    for destination in &config.destinations {
        let connector = destination
            .connector
            .build(client.clone())
            .with_context(|| format!("destination `{}`", destination.name))?;
        destinations.push(Destination {
            name: destination.name.clone(),
            connector,
            settings: destination.settings.clone(),
        });
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // On PostgreSQL other nodes may still send to a destination this node does not
    // configure (a rolling change of the configuration): only what no live node
    // configures is held.
    let cluster = match &backend {
        database::Backend::Sqlite(_) => None,
        database::Backend::Postgres(pg) => {
            Some(Arc::new(pg.cluster().await.context("cannot join the cluster on PostgreSQL")?))
        }
    };
    let mut configured: Vec<String> = config.destinations.iter().map(|d| d.name.clone()).collect();
    if let Some(cluster) = &cluster {
        let nodes = cluster.nodes(clock.now()).await.context("cannot read the cluster's nodes")?;
        for node in nodes.into_iter().filter(|node| node.alive) {
            for name in node.destinations {
                if !configured.contains(&name) {
                    tracing::info!(destination = %name, node = %node.node_id, "Not configured here, but a live node sends to it; its deliveries are left to that node.");
                    configured.push(name);
                }
            }
        }
    }
    hold_removed(store.as_ref(), configured, clock.now()).await?;
    let retention = Retention {
        delivered: config.retention.delivered,
        failed: config.retention.failed,
        ..Retention::default()
    };
    // Bound before the engine starts, so the node can tell the others where it listens.
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let engine_config = EngineConfig {
        shutdown_grace: config.server.shutdown_grace,
        retention: Some(retention),
        node_id: config.server.node_id(),
        node_address: addr.to_string(),
        redactor: config.redactor.clone(),
        ..EngineConfig::default()
    };
    // On PostgreSQL the node joins the cluster of every node on the database: each
    // destination's lane runs on one of them at a time.
    let membership = cluster.map(|cluster| Membership::new(cluster as Arc<dyn Cluster>));
    let engine = Engine::start_in(
        Arc::clone(&store),
        destinations,
        Arc::clone(&clock),
        engine_config,
        membership,
    )?;
    let state = AppState {
        store,
        engine: engine.clone(),
        clock: Arc::clone(&clock),
        targets: Targets {
            destinations: config.destinations.iter().map(|d| d.name.clone()).collect(),
            groups: config.groups.clone(),
        },
        limits: Limits {
            max_body_bytes: config.server.max_body_bytes,
            max_concurrent_requests: config.server.max_concurrent_requests,
            request_timeout: config.server.request_timeout,
            store_timeout: config.server.store_timeout,
            ..Limits::default()
        },
        ids: Ids::new(clock, seed()),
        auth: Auth::new(config.tokens.clone(), config.server.metrics_public),
    };
    if state.auth == Auth::Open {
        tracing::warn!(
            %addr,
            "The API is unauthenticated: no [[tokens]] are configured, so every process on \
             this machine may send, cancel and pause. Create tokens with `herald token create` \
             to require them."
        );
    }
    let stop_http = CancellationToken::new();
    let stop = stop_http.clone();
    let app = herald_api::app(state);
    let listener_config = ListenerConfig {
        max_connections: config.server.max_connections,
        max_header_bytes: config.server.max_header_bytes,
        header_read_timeout: config.server.header_read_timeout,
        tls: config.server.tls.as_ref().map(TlsIdentity::server_config),
        // Every request but an event stream is answered within request_timeout (the
        // API's own limit), so waiting that long lets them all finish.
        drain: config.server.request_timeout,
    };
    let scheme = if listener_config.tls.is_some() { "https" } else { "http" };
    let http = tokio::spawn(listener::serve(listener, app, listener_config, stop));
    match &config.server.database {
        Database::Sqlite { path } => tracing::info!(
            %addr,
            %scheme,
            destinations = config.destinations.len(),
            database = %path.display(),
            "herald is serving."
        ),
        Database::Postgres { .. } => tracing::info!(
            %addr,
            %scheme,
            destinations = config.destinations.len(),
            node_id = %config.server.node_id(),
            "herald is serving (PostgreSQL)."
        ),
    }
    Ok(Running { addr, engine, backend, scheme, stop_http, http })
}

/// Why a running server must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM or Ctrl-C: shut down gracefully.
    Signal,
    /// The database writer thread died (the cause); nothing can be stored any more, so
    /// the process exits at once for its supervisor to restart it.
    WriterFailed(String),
}

/// Before any lane runs: holds the unfinished deliveries of destinations that are no
/// longer `configured` (they have no lane, so they would wait for ever unseen) and
/// resumes those of destinations configured again. One log line per destination.
async fn hold_removed(
    store: &dyn Store,
    configured: Vec<String>,
    now: Timestamp,
) -> anyhow::Result<()> {
    let touched = store
        .hold_removed(configured, now)
        .await
        .context("cannot hold the deliveries of removed destinations")?;
    for removed in touched {
        if removed.held > 0 {
            tracing::warn!(
                destination = %removed.destination,
                held = removed.held,
                "Deliveries held: their destination is no longer configured. Configure it again \
                 and restart to resume them, or cancel them (herald list --state held)."
            );
        }
        if removed.resumed > 0 {
            tracing::info!(
                destination = %removed.destination,
                resumed = removed.resumed,
                "Deliveries resumed: their destination is configured again."
            );
        }
    }
    Ok(())
}

impl Running {
    /// Waits until `signal` completes or the database writer dies, whichever is first.
    pub async fn until_stopped(&self, signal: impl std::future::Future<Output = ()>) -> Stop {
        tokio::select! {
            () = signal => Stop::Signal,
            cause = self.backend.failure() => Stop::WriterFailed(cause),
        }
    }

    /// Test hook: the SQLite store, to stall or kill its writer; `None` on PostgreSQL.
    #[doc(hidden)]
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match &self.backend {
            Backend::Sqlite(store) => Some(store),
            Backend::Postgres(_) => None,
        }
    }

    /// Stops accepting requests, lets in-flight attempts finish within the grace period
    /// and waits for everything to end.
    pub async fn shutdown(self) {
        self.stop_http.cancel();
        self.engine.shutdown().await;
        // Idle keep-alive connections closed at once; the others within
        // request_timeout of the stop (the listener's drain).
        let _ = self.http.await;
        self.backend.close().await;
    }
}

/// A seed for id generation that differs between processes.
fn seed() -> u64 {
    let pid = u64::from(std::process::id());
    let now = SystemClock.now().as_millis() as u64;
    now.rotate_left(17) ^ pid.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Runs the server until SIGTERM or Ctrl-C, then shuts down gracefully.
///
/// # Errors
/// As [`start`].
pub async fn run(config: &Config) -> anyhow::Result<()> {
    // Handlers first: a supervisor may send SIGTERM as soon as it reads "listening",
    // and one arriving before the handler exists would kill herald without a drain.
    let stop = stop_signal();
    let running = start(config).await?;
    println!("herald listening on {}://{}", running.scheme, running.addr);
    if let Stop::WriterFailed(cause) = running.until_stopped(stop).await {
        // The store has logged the panic. Exiting at once (EX_SOFTWARE) lets the
        // supervisor restart herald: everything committed is on disk, and leases left
        // behind are recovered as ambiguous at start-up.
        tracing::error!(%cause, "Stopping: the database writer is gone (exit code 70).");
        std::process::exit(WRITER_FAILED);
    }
    tracing::info!("Shutting down: no new claims; in-flight attempts may finish.");
    running.shutdown().await;
    Ok(())
}

/// The exit code when the database writer thread died (`EX_SOFTWARE`).
const WRITER_FAILED: i32 = 70;

/// SIGTERM or SIGINT (Ctrl-C), with both handlers installed when this is called rather
/// than when the future is first polled.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
