//! A TCP proxy on loopback between a test's PostgreSQL client and the server that the
//! test can break: cut it (every proxied connection closed at once, new ones turned away
//! until restored, as when the database host drops off the network), or lose the answer
//! to the next `COMMIT` (the server commits, the client never hears so). Shared with
//! herald-cli's end-to-end tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy to one upstream address.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    /// Whether connections are turned away; checked under the lock together with
    /// subscribing to `cuts`, so a connection accepted while `cut` runs is either
    /// refused or closed by it.
    cut: Mutex<bool>,
    /// Bumped by every cut; each connection closes when it changes.
    cuts: watch::Sender<u64>,
    /// Connections forwarded now.
    open: AtomicUsize,
    /// The next `COMMIT` through any connection loses its answer.
    lose_commit: AtomicBool,
}

/// Counts a forwarded connection until both its sockets are closed.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Proxy {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            cut: Mutex::new(false),
            cuts: watch::channel(0).0,
            open: AtomicUsize::new(0),
            lose_commit: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let cuts = {
                    let cut = accepting.cut.lock().unwrap();
                    if *cut {
                        // Accepted only to be closed: the client sees its connection end
                        // before the server's greeting.
                        drop(client);
                        continue;
                    }
                    accepting.open.fetch_add(1, Ordering::SeqCst);
                    accepting.cuts.subscribe()
                };
                let open = Open(Arc::clone(&accepting));
                tokio::spawn(forward(client, upstream, cuts, open));
            }
        });
        Proxy { addr, shared, task }
    }

    /// Where the client should connect instead of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every proxied connection and turns new ones away until
    /// [`Proxy::restore`]; returns once every connection is closed, so nothing the client
    /// sends afterwards reaches the server.
    pub async fn cut(&self) {
        {
            let mut cut = self.shared.cut.lock().unwrap();
            *cut = true;
            self.shared.cuts.send_modify(|n| *n += 1);
        }
        for _ in 0..1000 {
            if self.shared.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("proxied connections still open after the cut");
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        *self.shared.cut.lock().unwrap() = false;
    }

    /// The next `COMMIT` any client sends is passed on, and its connection closed a
    /// moment later without passing the server's answer back: the transaction is
    /// committed, the client cannot know.
    pub fn lose_next_commit_answer(&self) {
        self.shared.lose_commit.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.cuts.send_modify(|n| *n += 1);
    }
}

async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut cuts: watch::Receiver<u64>,
    open: Open,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            read = from_client.read(&mut up) => {
                let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                if to_server.write_all(&up[..n]).await.is_err() {
                    break;
                }
                if up[..n].windows(6).any(|w| w == b"COMMIT")
                    && open.0.lose_commit.swap(false, Ordering::SeqCst)
                {
                    // Time for the server to commit; its answer is never read.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
            read = from_server.read(&mut down) => {
                let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                if to_client.write_all(&down[..n]).await.is_err() {
                    break;
                }
            }
            _ = cuts.changed() => break,
        }
    }
    // Both sockets close here: the client sees its connection end, the server its client
    // go (and rolls back whatever transaction was still open on it).
}
