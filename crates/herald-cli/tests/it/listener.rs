//! The API's front door on a real `herald serve`: HTTPS under a throwaway CA (made per
//! run by `tls_certs.py` with Python's `cryptography`, installed with pip if missing,
//! as `.ci/run` does), the slow-client and header-size limits, the connection limit,
//! idle connections closed on shutdown, and `check-config` on real certificate pairs.
//! Raw TCP where the test is about bytes on the wire.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::run;
use crate::process::Server;

/// Installs `cryptography` once per run if it is missing.
fn ensure_cryptography() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let present = Command::new("python3")
            .args(["-c", "import cryptography"])
            .status()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}): install Python 3"))
            .success();
        if !present {
            let status = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .arg("cryptography")
                .status()
                .unwrap();
            assert!(status.success(), "pip install cryptography failed");
        }
    });
}

/// A directory with a throwaway CA and certificates (see `tls_certs.py`).
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn make() -> Certs {
        ensure_cryptography();
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/tls_certs.py");
        let output = Command::new("python3").arg(script).arg(dir.path()).output().unwrap();
        assert!(
            output.status.success() && output.stdout.starts_with(b"OK"),
            "tls_certs.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `tls_cert = "file:..."` and `tls_key = "file:..."` lines.
    fn settings(&self, cert: &str, key: &str) -> String {
        format!(
            "tls_cert = \"file:{}\"\ntls_key = \"file:{}\"\n",
            self.path(cert).display(),
            self.path(key).display()
        )
    }
}

/// Starts `herald serve` on 127.0.0.1:0 with no destinations and `server` added to its
/// `[server]` table; the directory holds its configuration and database.
async fn serve(dir: &Path, server: &str) -> Server {
    let config = dir.join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\nshutdown_grace = \"1s\"\n{server}",
            dir.join("herald.db").display()
        ),
    )
    .unwrap();
    Server::start(&config).await
}

/// The `host:port` of a server's base URL.
fn authority(server: &Server) -> String {
    server.base.split("://").nth(1).unwrap().to_owned()
}

/// Reads until the peer closes the connection (EOF or reset), bounded by `limit`; what
/// was read and when it ended. Panics if the connection is still open at `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    let ended = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the connection was still open after {limit:?}"));
    (received, ended)
}

/// Reads one HTTP/1.1 response with a `content-length` body; its status line.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a whole response: {:?}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        let Some(end) = text.find("\r\n\r\n") else { continue };
        let length = text[..end]
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned)
            })
            .map_or(0, |n| n.trim().parse::<usize>().unwrap());
        if received.len() >= end + 4 + length {
            return text.lines().next().unwrap().to_owned();
        }
    }
}

/// A keep-alive `GET /healthz` on `stream`; the status line of its answer.
async fn get_healthz(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    read_response(stream).await
}

#[tokio::test]
async fn https_is_served_to_clients_that_trust_the_ca_and_to_no_one_else() {
    let certs = Certs::make();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        &format!("header_read_timeout = \"1s\"\n{}", certs.settings("server.pem", "server.key")),
    )
    .await;
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);

    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.path("ca.pem")).unwrap()).unwrap();
    let trusting = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let res = trusting.get(format!("{}/healthz", server.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_11);

    let error = reqwest::get(format!("{}/healthz", server.base)).await.unwrap_err();
    let chain = format!("{error:?}");
    assert!(chain.contains("UnknownIssuer"), "not refused for its issuer: {chain}");

    // The CLI trusts the CA through --ca-file or HERALD_CA_FILE, and only then.
    let ca_file = certs.path("ca.pem");
    let ca_file = ca_file.to_str().unwrap();
    let output = run(&["destinations", "--server", &server.base, "--ca-file", ca_file]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = tokio::process::Command::new(crate::process::herald())
        .args(["destinations", "--server", &server.base])
        .env("HERALD_CA_FILE", ca_file)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = run(&["destinations", "--server", &server.base]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("cannot reach herald"), "{stderr}");
    let output =
        run(&["destinations", "--server", &server.base, "--ca-file", "/nonexistent/ca.pem"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read the CA file /nonexistent/ca.pem"), "{stderr}");

    // Plain HTTP on the TLS port gets no HTTP answer: the connection is just closed.
    let mut plain = TcpStream::connect(authority(&server)).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let (received, _) = read_until_closed(&mut plain, Duration::from_secs(5)).await;
    assert!(
        !String::from_utf8_lossy(&received).contains("HTTP/1"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&received)
    );

    // A connection that never starts its handshake is closed after header_read_timeout.
    let mut silent = TcpStream::connect(authority(&server)).await.unwrap();
    let opened = Instant::now();
    let (received, ended) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    let open_for = ended - opened;
    assert!(received.is_empty(), "{received:?}");
    assert!(
        open_for >= Duration::from_millis(900),
        "closed after {open_for:?}, before the timeout"
    );

    server.terminate().await;
}

#[tokio::test]
async fn a_client_trickling_its_request_head_is_cut_off_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "header_read_timeout = \"1s\"\n").await;

    // A slowloris client: a byte of its header every 100 ms, for ever.
    let slow = TcpStream::connect(authority(&server)).await.unwrap();
    let (mut slow_read, mut slow_write) = slow.into_split();
    let started = Instant::now();
    slow_write.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
    let trickle = tokio::spawn(async move {
        let mut sent = 0u32;
        while slow_write.write_all(b"a").await.is_ok() {
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    });

    // Meanwhile another client is served as usual.
    let mut normal = TcpStream::connect(authority(&server)).await.unwrap();
    assert_eq!(get_healthz(&mut normal).await, "HTTP/1.1 200 OK");

    let mut received = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        loop {
            match slow_read.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the trickling client was still connected after 5 s");
    let open_for = ended - started;
    assert!(received.is_empty(), "answered: {:?}", String::from_utf8_lossy(&received));
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&open_for),
        "disconnected after {open_for:?}; header_read_timeout is 1 s"
    );
    let sent = tokio::time::timeout(Duration::from_secs(5), trickle).await.unwrap().unwrap();
    assert!(sent >= 5, "the client only trickled {sent} bytes");

    // The served client's connection, idle since its answer, was closed by the same
    // timeout (a keep-alive connection lives header_read_timeout without a request);
    // the server still serves new ones.
    let (received, _) = read_until_closed(&mut normal, Duration::from_secs(5)).await;
    assert!(received.is_empty(), "{received:?}");
    let mut again = TcpStream::connect(authority(&server)).await.unwrap();
    assert_eq!(get_healthz(&mut again).await, "HTTP/1.1 200 OK");
    server.terminate().await;
}

#[tokio::test]
async fn a_head_over_max_header_bytes_gets_431_and_a_body_over_max_body_bytes_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "max_header_bytes = 8192\nmax_body_bytes = 2048\n").await;
    let request = |value_len: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(value_len)
        )
    };

    let mut fits = TcpStream::connect(authority(&server)).await.unwrap();
    fits.write_all(request(7_000).as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut fits, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    let mut too_large = TcpStream::connect(authority(&server)).await.unwrap();
    // The server may answer and close before it read everything: the write may fail.
    let _ = too_large.write_all(request(9_000).as_bytes()).await;
    let (answer, _) = read_until_closed(&mut too_large, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer}");

    let body = serde_json::json!({"destinations": ["x"], "message": {"title": "t".repeat(3000)}});
    let (status, problem) = server.post("/v1/broadcasts", body).await;
    assert_eq!(status, 413, "{problem}");
    server.terminate().await;
}

#[tokio::test]
async fn past_max_connections_a_connection_waits_until_another_closes() {
    let dir = tempfile::tempdir().unwrap();
    // A long header timeout keeps the idle keep-alive connections open.
    let server = serve(dir.path(), "max_connections = 2\nheader_read_timeout = \"30s\"\n").await;
    let mut first = TcpStream::connect(authority(&server)).await.unwrap();
    assert_eq!(get_healthz(&mut first).await, "HTTP/1.1 200 OK");
    let mut second = TcpStream::connect(authority(&server)).await.unwrap();
    assert_eq!(get_healthz(&mut second).await, "HTTP/1.1 200 OK");

    // The kernel completes the third connection, but herald does not read from it.
    let mut third = TcpStream::connect(authority(&server)).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "the third connection was answered while two were open: {early:?}");

    let closed = Instant::now();
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(5), read_response(&mut third))
        .await
        .expect("the third connection was not served after the first closed");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(closed.elapsed() < Duration::from_secs(5));
    assert_eq!(get_healthz(&mut second).await, "HTTP/1.1 200 OK");
    server.terminate().await;
}

/// SIGTERM: new connections are refused, an idle keep-alive connection is closed at
/// once (not after its 30 s header timeout), and an event stream, which never ends on
/// its own, is closed `request_timeout` after the stop.
#[tokio::test]
async fn on_shutdown_idle_connections_close_at_once_and_event_streams_within_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // The destination is paused before anything is sent to it, so the broadcast stays in
    // progress and its stream open; its URL is never contacted.
    let server = serve(
        dir.path(),
        "header_read_timeout = \"30s\"\nrequest_timeout = \"2s\"\n\n\
         [destinations.paused]\nkind = \"webhook\"\nurl = \"https://hooks.example/herald\"\n",
    )
    .await;
    let (status, _) = server.post("/v1/destinations/paused/pause", serde_json::json!({})).await;
    assert_eq!(status, 200);
    let (status, view) = server
        .post(
            "/v1/broadcasts",
            serde_json::json!({"destinations": ["paused"], "message": {"title": "waits"}}),
        )
        .await;
    assert_eq!(status, 202, "{view}");
    let id = view["id"].as_str().unwrap();

    let mut idle = TcpStream::connect(authority(&server)).await.unwrap();
    assert_eq!(get_healthz(&mut idle).await, "HTTP/1.1 200 OK");
    let mut events = TcpStream::connect(authority(&server)).await.unwrap();
    let request = format!("GET /v1/broadcasts/{id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    events.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), events.read(&mut head))
        .await
        .expect("no answer to the event stream request")
        .unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200 OK"), "{:?}", String::from_utf8_lossy(&head[..n]));

    let pid = server.child.id().unwrap().to_string();
    let term = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (_, idle_closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(
        idle_closed - term < Duration::from_millis(1500),
        "idle closed after {:?}",
        idle_closed - term
    );
    // The listening socket is closed at the stop as well.
    let refused = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if TcpStream::connect(authority(&server)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "new connections were still accepted after SIGTERM");
    let (received, events_closed) = read_until_closed(&mut events, Duration::from_secs(10)).await;
    assert!(String::from_utf8_lossy(&received).contains("event: snapshot"), "{received:?}");
    let open_for = events_closed - term;
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(6)).contains(&open_for),
        "the event stream was closed {open_for:?} after SIGTERM; request_timeout is 2 s"
    );
    let mut server = server;
    let exit = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .expect("herald did not stop within 30 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "herald exited with {exit}");
}

#[tokio::test]
async fn check_config_accepts_matching_pairs_and_names_a_mismatched_or_swapped_one() {
    let certs = Certs::make();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    let check = async |cert: &str, key: &str| {
        std::fs::write(&path, format!("[server]\n{}", certs.settings(cert, key))).unwrap();
        run(&["check-config", "--config", path.to_str().unwrap()]).await
    };
    for (cert, key) in
        [("server.pem", "server.key"), ("server.pem", "server-sec1.key"), ("rsa.pem", "rsa.key")]
    {
        let output = check(cert, key).await;
        assert!(
            output.status.success(),
            "{cert} with {key}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let output = check("server.pem", "other.key").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("herald.toml:3:11: server.tls_key:"), "{stderr}");
    assert!(stderr.contains("does not belong to the certificate in tls_cert"), "{stderr}");
    assert!(stderr.contains(&certs.path("other.key").display().to_string()), "{stderr}");
    let key = std::fs::read_to_string(certs.path("other.key")).unwrap();
    let key_line = key.lines().nth(1).unwrap();
    assert!(!stderr.contains(key_line), "the key is in the error: {stderr}");

    let output = check("server.key", "server.pem").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("herald.toml:2:12: server.tls_cert:"), "{stderr}");
    assert!(stderr.contains("holds a private key, not a certificate"), "{stderr}");
    assert!(stderr.contains("herald.toml:3:11: server.tls_key:"), "{stderr}");
    assert!(stderr.contains("holds a certificate, not a private key"), "{stderr}");
    assert!(stderr.contains("2 problems found"), "{stderr}");
}
