//! The API's accept loop: plain HTTP/1.1 or HTTPS (rustls) on one TCP listener, with
//! the limits that keep a slow or hostile client from exhausting the server.
//!
//! - At most `max_connections` connections are open at once: the loop takes a permit
//!   before it accepts, so connection `max_connections + 1` waits in the kernel's
//!   backlog (established, not read) until another closes.
//! - The TLS handshake, and then every request head (request line and headers), must
//!   arrive within `header_read_timeout`; a keep-alive connection with no next request
//!   within that time is closed too. A client trickling a request head (slowloris) is
//!   disconnected, without an answer.
//! - A request head larger than `max_header_bytes` is answered `431` and the connection
//!   closed (hyper's `max_header_size`).
//! - The body size and the time a request may take are the router's (`Limits`).
//!
//! On shutdown the loop stops accepting (the socket closes, new connections are
//! refused), idle keep-alive connections close at once, and connections with a request
//! in flight close after its answer, or after `drain` at the latest: that is what ends
//! SSE streams, which never finish on their own. It deliberately does not reload the
//! certificate: a renewed one takes a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the loop rests after an accept error that is not about one connection
/// (out of file descriptors): accepting again at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The limits and the optional TLS configuration of the API's listener.
#[derive(Clone)]
pub struct ListenerConfig {
    /// The most connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// The largest request head (request line and headers) in bytes; larger get `431`.
    pub max_header_bytes: usize,
    /// How long the TLS handshake, and each request head, may take to arrive.
    pub header_read_timeout: Duration,
    /// Serve HTTPS with this rustls configuration; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// After the stop, how long a connection may take to finish the request in flight
    /// before it is closed anyway (SSE streams end then).
    pub drain: Duration,
}

impl std::fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerConfig")
            .field("max_connections", &self.max_connections)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("tls", &self.tls.is_some())
            .field("drain", &self.drain)
            .finish()
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then stops accepting and waits
/// for the open connections to finish (see the module documentation).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ListenerConfig,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let acceptor = config.tls.clone().map(TlsAcceptor::from);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_header_size(config.max_header_bytes)
        .keep_alive(true);
    let http = Arc::new(http);
    loop {
        // The permit comes first: past the limit a connection waits in the backlog,
        // costing this process nothing.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // Never closed; treated as a stop all the same.
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_connection_error(&error) {
                        tracing::warn!(%error, "Cannot accept a connection; trying again in 1 s.");
                        tokio::select! {
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                            () = stop.cancelled() => break,
                        }
                    }
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let connection = Connection {
            app: app.clone(),
            http: Arc::clone(&http),
            stop: stop.clone(),
            drain: config.drain,
            peer,
            _permit: permit,
        };
        match &acceptor {
            None => connections.spawn(connection.serve(stream)),
            Some(acceptor) => connections.spawn(connection.serve_tls(
                acceptor.clone(),
                stream,
                config.header_read_timeout,
            )),
        };
    }
    // Closing the socket refuses new connections while the open ones finish.
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Errors that concern one connection only (the client gave up before it was
/// accepted); the next accept is unaffected.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// One accepted connection and what it needs; its permit is given back when it ends.
struct Connection {
    app: Router,
    http: Arc<http1::Builder>,
    stop: CancellationToken,
    drain: Duration,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    /// Completes the TLS handshake within `timeout`, then serves HTTP on it.
    async fn serve_tls(self, acceptor: TlsAcceptor, stream: TcpStream, timeout: Duration) {
        let handshake = tokio::select! {
            res = tokio::time::timeout(timeout, acceptor.accept(stream)) => res,
            () = self.stop.cancelled() => return,
        };
        match handshake {
            Ok(Ok(stream)) => self.serve(stream).await,
            // Scanners, plain HTTP on the TLS port and clients that distrust the
            // certificate end here; only worth a debug line.
            Ok(Err(error)) => {
                tracing::debug!(peer = %self.peer, %error, "TLS handshake failed.");
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "TLS handshake timed out; connection closed.");
            }
        }
    }

    /// Serves HTTP/1.1 on `io` until the client closes, a limit closes it, or `stop`:
    /// then an idle connection closes at once and a busy one after its answer, or
    /// after `drain` at the latest.
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.app);
        let connection = self.http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let res = tokio::select! {
            res = connection.as_mut() => res,
            () = self.stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                match tokio::time::timeout(self.drain, connection).await {
                    Ok(res) => res,
                    Err(_) => {
                        tracing::debug!(peer = %self.peer, "Connection still busy after the drain time (an event stream?); closed.");
                        return;
                    }
                }
            }
        };
        if let Err(error) = res {
            // A header timeout, an oversized head (already answered 431) or a client
            // that went away: the client's doing, so not a warning.
            tracing::debug!(peer = %self.peer, %error, "Connection ended with an error.");
        }
    }
}
