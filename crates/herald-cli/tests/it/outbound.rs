//! The SSRF guard end to end, through a real `herald serve`: destinations outside the
//! public internet fail permanently without a single connection, `check-config` warns
//! about them beforehand, and `[outbound] allow_networks` lets the allowed ones through
//! (while a redirect from an allowed server is still not followed).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::ALLOW_LOOPBACK;
use crate::cli::run;
use crate::process::Server;

/// A loopback TCP server that counts the connections it accepts and gives every request
/// the same raw answer; stops when dropped. "Zero connections" is the proof that herald
/// never connected, not merely that no request arrived.
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Listener {
    async fn start(answer: String) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    // herald's requests are small: the head and body arrive together.
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Listener { port, accepted, task }
    }

    /// Answers `200 OK` to everything.
    async fn ok() -> Listener {
        Listener::start("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into())
            .await
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A configuration in `dir` with `outbound` (an `[outbound]` table or nothing) and one
/// webhook destination per `(name, url)`.
fn write_config(dir: &Path, outbound: &str, destinations: &[(&str, String)]) -> std::path::PathBuf {
    let mut text = format!(
        "{outbound}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\
         shutdown_grace = \"1s\"\n\n",
        dir.join("herald.db").display()
    );
    for (name, url) in destinations {
        text.push_str(&format!(
            "[destinations.{name}]\nkind = \"webhook\"\nurl = \"{url}\"\nbackoff_base = \"50ms\"\n\n"
        ));
    }
    let path = dir.join("herald.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Sends one broadcast to `names` and waits until it converged; its deliveries.
async fn broadcast(server: &Server, names: &[&str]) -> Vec<Value> {
    let request = json!({"destinations": names, "message": {"title": "P1: checkout is down"}});
    let (status, view) = server.post("/v1/broadcasts", request).await;
    assert_eq!(status, 202, "{view}");
    let view = server.wait_converged(view["id"].as_str().unwrap()).await;
    view["deliveries"].as_array().unwrap().clone()
}

fn delivery<'a>(deliveries: &'a [Value], name: &str) -> &'a Value {
    deliveries.iter().find(|d| d["destination"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_outside_the_public_internet_are_refused_unless_allowed() {
    let listener = Listener::ok().await;
    let port = listener.port;
    let loopback = [
        ("literal", format!("http://127.0.0.1:{port}/hook"), "127.0.0.1 is a loopback address; "),
        (
            "mapped",
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address; ",
        ),
        ("named", format!("http://localhost:{port}/hook"), "localhost resolves to "),
    ];
    let elsewhere = [
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254 is the cloud metadata service's address (link-local); ",
        ),
        (
            "private",
            "http://10.0.0.1/hook".to_owned(),
            "10.0.0.1 is a private address (RFC 1918); ",
        ),
    ];
    let all: Vec<_> = loopback.iter().chain(&elsewhere).collect();
    let mut destinations: Vec<(&str, String)> =
        all.iter().map(|(name, url, _)| (*name, url.clone())).collect();
    // `.invalid` never resolves (RFC 6761): only a note, and left out of the broadcast.
    destinations.push(("unresolved", "http://herald-test.invalid/hook".to_owned()));
    let names: Vec<&str> = all.iter().map(|(name, _, _)| *name).collect();

    // Without `[outbound]`: check-config warns about each, and every delivery fails.
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "", &destinations);
    let checked = run(&["check-config", "--config", path.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{stdout}{}", String::from_utf8_lossy(&checked.stderr));
    for (name, _, rule) in &all {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("warning: destinations.{name}.url: {rule}")))
            .unwrap_or_else(|| panic!("no warning about {name}: {stdout}"));
        assert!(line.contains("`[outbound] allow_networks`"), "{line}");
    }
    assert!(
        stdout.contains("note: destinations.unresolved.url: cannot resolve herald-test.invalid"),
        "{stdout}"
    );
    let server = Server::start(&path).await;
    let deliveries = broadcast(&server, &names).await;
    for (name, _, rule) in &all {
        let delivery = delivery(&deliveries, name);
        assert_eq!(delivery["state"], "failed", "{delivery:#}");
        let error = delivery["last_error"].as_str().unwrap();
        assert!(error.starts_with(rule), "{name}: {error}");
        assert!(error.contains("a loopback address") || *name != "named", "{error}");
        assert!(error.contains("unless `[outbound] allow_networks` includes"), "{error}");
        assert_eq!(delivery["attempts"], 1, "a refusal is permanent: {delivery:#}");
    }
    server.terminate().await;
    assert_eq!(listener.accepted(), 0, "herald connected to a refused destination");

    // With loopback allowed: every loopback form is reached; a redirect from an allowed
    // server to another allowed one is still not followed.
    let target = Listener::ok().await;
    let redirecting = Listener::start(format!(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{}/\r\ncontent-length: 0\r\n\
         connection: close\r\n\r\n",
        target.port
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut destinations: Vec<(&str, String)> =
        loopback.iter().map(|(name, url, _)| (*name, url.clone())).collect();
    destinations.push(("bouncing", format!("http://127.0.0.1:{}/hook", redirecting.port)));
    let path = write_config(dir.path(), ALLOW_LOOPBACK, &destinations);
    let checked = run(&["check-config", "--config", path.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success() && !stdout.contains("allow_networks"), "{stdout}");
    let server = Server::start(&path).await;
    let deliveries = broadcast(&server, &["literal", "mapped", "named", "bouncing"]).await;
    for (name, _, _) in &loopback {
        assert_eq!(delivery(&deliveries, name)["state"], "delivered", "{deliveries:#?}");
    }
    assert_eq!(listener.accepted(), 3, "one connection per loopback form");
    let bounced = delivery(&deliveries, "bouncing");
    assert_eq!(bounced["state"], "failed", "{bounced:#}");
    let error = bounced["last_error"].as_str().unwrap();
    assert!(error.contains("herald does not follow redirects"), "{error}");
    assert_eq!(redirecting.accepted(), 1);
    assert_eq!(target.accepted(), 0, "the redirect was followed");
    server.terminate().await;
}
