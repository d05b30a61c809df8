//! A TCP proxy on loopback between a herald node and PostgreSQL that a test can cut:
//! every proxied connection is closed at once and new ones are turned away until it is
//! restored, as when the database host drops off the network and comes back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running proxy to one upstream address.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

struct State {
    cut: bool,
    /// Cancelled to close every connection accepted since the last cut.
    live: CancellationToken,
    /// Connections forwarded now.
    open: Arc<AtomicUsize>,
}

/// Counts a forwarded connection until both its sockets are closed.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Proxy {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            cut: false,
            live: CancellationToken::new(),
            open: Arc::new(AtomicUsize::new(0)),
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // Checked and the token taken under one lock, so a connection accepted
                // while `cut` runs is either refused or closed by it.
                let (live, open) = {
                    let state = shared.lock().unwrap();
                    if state.cut {
                        // Accepted only to be closed: the client sees its connection end
                        // before the server's greeting, as with a database that is down.
                        drop(client);
                        continue;
                    }
                    state.open.fetch_add(1, Ordering::SeqCst);
                    (state.live.clone(), Open(Arc::clone(&state.open)))
                };
                tokio::spawn(forward(client, upstream, live, open));
            }
        });
        Proxy { addr, state, task }
    }

    /// Where herald should connect instead of the database.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every proxied connection and turns new ones away until
    /// [`Proxy::restore`]; returns once every connection is closed, so nothing herald
    /// sends afterwards reaches the database.
    pub async fn cut(&self) {
        let open = {
            let mut state = self.state.lock().unwrap();
            state.cut = true;
            state.live.cancel();
            state.live = CancellationToken::new();
            Arc::clone(&state.open)
        };
        for _ in 0..1000 {
            if open.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("proxied connections still open after the cut");
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.lock().unwrap().cut = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.state.lock().unwrap().live.cancel();
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, live: CancellationToken, open: Open) {
    let _open = open;
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        () = live.cancelled() => {}
    }
    // Both sockets close here: herald sees its connection end, PostgreSQL its client go
    // (and rolls back whatever transaction was open on it).
}
