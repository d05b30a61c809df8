//! The outbound policy on real connections: destinations outside the public internet
//! fail permanently without a single connection unless allowed, allowed ones are
//! reached in every form (IP literal, IPv4-mapped IPv6, a name), and a redirect from an
//! allowed server is not followed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use herald_connectors::Connector;
use herald_connectors::http::{self, SendError, classify_error};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::receiver::{Scripted, TestReceiver, read_request};
use crate::webhook::{message, request, webhook_with};

/// A loopback TCP server that counts the connections it accepts, answers each request
/// `200 OK`, and stops when dropped: "zero connections" is its proof that herald never
/// connected, not merely that no request arrived.
pub(crate) struct Listener {
    /// The port it listens on, on `127.0.0.1`.
    pub(crate) port: u16,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Starts a listener on `127.0.0.1:0`.
    pub(crate) async fn start() -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    read_request(&mut stream).await;
                    let answer =
                        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Listener { port, accepted, task }
    }

    /// The connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The loopback forms of one listener's URL: an IP literal, the same address as
/// IPv4-mapped IPv6, and a name that resolves to it.
fn loopback_urls(port: u16) -> [(String, &'static str); 3] {
    [
        (format!("http://127.0.0.1:{port}/hook"), "127.0.0.1 is a loopback address; "),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address; ",
        ),
        (format!("http://localhost:{port}/hook"), "localhost resolves to "),
    ]
}

#[tokio::test]
async fn refused_destinations_fail_permanently_without_a_connection() {
    let listener = Listener::start().await;
    let mut cases: Vec<(String, &str)> = loopback_urls(listener.port).into();
    cases.push((
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "169.254.169.254 is the cloud metadata service's address (link-local); ",
    ));
    cases.push(("http://10.0.0.1/hook".to_owned(), "10.0.0.1 is a private address (RFC 1918); "));
    // The default policy: the public internet only.
    let client = http::client();
    for (url, rule) in &cases {
        let report = webhook_with(url, client.clone()).send(&request(&message())).await;
        assert_eq!(report.outcome.class(), "permanent", "{url}: {report:?}");
        let reason = report.outcome.reason().unwrap();
        assert!(reason.starts_with(rule), "{url}: {reason}");
        assert!(reason.contains("a loopback address") || !url.contains("localhost"), "{reason}");
        assert!(
            reason.contains("unless `[outbound] allow_networks` includes the address"),
            "{url}: {reason}"
        );
    }
    assert_eq!(listener.accepted(), 0, "herald connected to a refused destination");
}

#[tokio::test]
async fn a_name_refused_by_the_resolver_is_found_among_the_error_causes() {
    let listener = Listener::start().await;
    let url = format!("http://localhost:{}/", listener.port);
    let error = http::client().post(&url).body("x").send().await.unwrap_err();
    // Names are vetted while connecting, so the refusal comes back inside reqwest's error.
    let SendError::Transport(transport) = &error else {
        panic!("not from the resolver: {error:?}")
    };
    assert!(transport.is_connect(), "{transport:?}");
    let outcome = classify_error(&error);
    assert_eq!(outcome.class(), "permanent", "{outcome:?}");
    assert!(outcome.reason().unwrap().starts_with("localhost resolves to "), "{outcome:?}");
    assert_eq!(listener.accepted(), 0);
}

#[tokio::test]
async fn allowed_loopback_is_reached_in_every_form() {
    let listener = Listener::start().await;
    for (n, (url, _)) in loopback_urls(listener.port).iter().enumerate() {
        let report = webhook_with(url, crate::client()).send(&request(&message())).await;
        assert_eq!(report.outcome.class(), "delivered", "{url}: {report:?}");
        assert_eq!(listener.accepted(), n + 1, "{url}");
    }
    // An allowance covers its networks only: allowing 10.20.0.0/16 does not open loopback.
    let options = http::ClientOptions {
        outbound: herald_connectors::outbound::Outbound::allowing([
            herald_connectors::outbound::parse_network("10.20.0.0/16").unwrap(),
        ]),
        ..http::ClientOptions::default()
    };
    let (url, rule) = &loopback_urls(listener.port)[0];
    let report =
        webhook_with(url, http::client_with(&options).unwrap()).send(&request(&message())).await;
    assert!(report.outcome.reason().unwrap_or_default().starts_with(rule), "{report:?}");
    assert_eq!(listener.accepted(), 3);
}

#[tokio::test]
async fn a_redirect_from_an_allowed_server_to_loopback_is_not_followed() {
    let target = Listener::start().await;
    let location = format!("http://127.0.0.1:{}/", target.port);
    let mut redirecting =
        TestReceiver::start(vec![Scripted::status(302).header("location", location.clone())]).await;
    let report =
        webhook_with(&redirecting.url("/hook"), crate::client()).send(&request(&message())).await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    let reason = report.outcome.reason().unwrap();
    assert!(reason.contains("herald does not follow redirects"), "{reason}");
    redirecting.next().await;
    assert_eq!(target.accepted(), 0, "the redirect was followed");
}
