//! Loopback stand-ins for webhook receivers. [`TestReceiver`] answers from a script and
//! records every request (svix's `TestReceiver`); [`RawServer`] speaks just enough
//! HTTP/1.1 to misbehave in ways a framework won't (drop the connection after reading
//! the request, never answer, stall the body). Both stop when dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Response, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a test waits for a request that should arrive before failing.
const WAIT: Duration = Duration::from_secs(10);

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) struct Scripted {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Scripted {
    /// An answer with `status`, no headers and an empty body.
    pub(crate) fn status(status: u16) -> Scripted {
        Scripted { status, headers: Vec::new(), body: String::new() }
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Scripted {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body; `{base}` in it becomes the receiver's `http://127.0.0.1:<port>`.
    pub(crate) fn body(mut self, body: impl Into<String>) -> Scripted {
        self.body = body.into();
        self
    }
}

/// One request as a receiver got it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// The request target's path.
    pub(crate) path: String,
    /// Every header, names lowercase, in arrival order.
    pub(crate) headers: Vec<(String, String)>,
    /// The raw body bytes.
    pub(crate) body: Vec<u8>,
}

impl Received {
    /// The first value of header `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct ReceiverState {
    script: Mutex<VecDeque<Scripted>>,
    received: mpsc::UnboundedSender<Received>,
    /// The receiver's own `http://127.0.0.1:<port>`, put where a body says `{base}`.
    base: String,
}

/// A scripted receiver on `127.0.0.1:0`: answers in script order, repeating the last
/// answer, and records each request.
pub(crate) struct TestReceiver {
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    received: mpsc::UnboundedReceiver<Received>,
    task: JoinHandle<()>,
}

impl TestReceiver {
    /// Starts a receiver that answers with `script`.
    pub(crate) async fn start(script: Vec<Scripted>) -> TestReceiver {
        assert!(!script.is_empty(), "a receiver needs at least one answer");
        let (sender, received) = mpsc::unbounded_channel();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ReceiverState {
            script: Mutex::new(script.into()),
            received: sender,
            base: base.clone(),
        });
        let app = axum::Router::new().fallback(answer).with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestReceiver { base, received, task }
    }

    /// The URL of `path` on this receiver.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The next request received; fails the test if none arrives in time.
    pub(crate) async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.received.recv())
            .await
            .expect("the receiver got no request in time")
            .unwrap()
    }

    /// The next request already received, if any (meaningful once `send` has returned).
    pub(crate) fn try_next(&mut self) -> Option<Received> {
        self.received.try_recv().ok()
    }

    /// Whether no further request has arrived. Meaningful once `send` has returned,
    /// because the receiver records a request before it answers.
    pub(crate) fn got_nothing_more(&mut self) -> bool {
        self.received.try_recv().is_err()
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let headers = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap().to_owned()))
        .collect();
    let received = Received { path: uri.path().to_owned(), headers, body: body.to_vec() };
    state.received.send(received).unwrap();
    let scripted = {
        let mut script = state.script.lock().unwrap();
        if script.len() > 1 { script.pop_front().unwrap() } else { script[0].clone() }
    };
    let mut response = Response::builder().status(scripted.status);
    for (name, value) in scripted.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(scripted.body.replace("{base}", &state.base))).unwrap()
}

/// A URL on which nothing listens: a port that was bound and released.
pub(crate) fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

/// How a [`RawServer`] misbehaves once it has read a whole request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Misbehavior {
    /// Closes the connection without a word.
    DropAfterRequest,
    /// Keeps the connection open and never answers.
    NeverAnswer,
    /// Sends `200 OK` headers and part of the body, then stalls.
    StallBody,
}

/// A TCP server on `127.0.0.1:0` that reads each request in full, reports it, then
/// misbehaves.
pub(crate) struct RawServer {
    /// `http://127.0.0.1:<port>/hook`.
    pub(crate) url: String,
    requests: mpsc::UnboundedReceiver<Vec<u8>>,
    task: JoinHandle<()>,
}

impl RawServer {
    /// Starts a server that misbehaves as `misbehavior` says.
    pub(crate) async fn start(misbehavior: Misbehavior) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (sender, requests) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // Held connections stay open until the server is dropped.
            let mut held: Vec<TcpStream> = Vec::new();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let request = read_request(&mut stream).await;
                sender.send(request).unwrap();
                match misbehavior {
                    Misbehavior::DropAfterRequest => drop(stream),
                    Misbehavior::NeverAnswer => held.push(stream),
                    Misbehavior::StallBody => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial";
                        stream.write_all(head.as_bytes()).await.unwrap();
                        held.push(stream);
                    }
                }
            }
        });
        RawServer { url, requests, task }
    }

    /// The next request's raw bytes; fails the test if none arrives in time.
    pub(crate) async fn next(&mut self) -> Vec<u8> {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("the server got no request in time")
            .unwrap()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request with a `content-length` body, in full.
pub(crate) async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head_end) = buf.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            if buf.len() >= head_end + 4 + length {
                return buf;
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client closed the connection mid-request");
        buf.extend_from_slice(&chunk[..n]);
    }
}
