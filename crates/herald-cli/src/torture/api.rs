//! The torture client's view of the API: every request is retried until a server
//! answers, across kills and restarts (every write carries an idempotency key, so a
//! retry is always safe). With several nodes, requests take turns among them, and a retry
//! goes to the next node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;
use tokio::sync::watch;

/// How long one request may go unanswered (the server is down or restarting) in total.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// A client that follows the servers across restarts.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    bases: watch::Receiver<Vec<String>>,
    turn: Arc<AtomicUsize>,
}

/// One answer: status and JSON body (`Null` if it had none).
pub type Answer = (u16, Value);

impl Api {
    /// A client of the servers whose current base URLs `bases` carries.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(bases: watch::Receiver<Vec<String>>) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .tcp_nodelay(true)
            .build()?;
        Ok(Api { http, bases, turn: Arc::default() })
    }

    /// `POST path` with `body` (and the `Idempotency-Key` header if given), retried
    /// until the server answers with anything but `503`.
    ///
    /// # Errors
    /// When no answer comes within a minute.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        header_key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        self.retrying(path, || {
            let mut request = self.http.post(self.url(path)).json(body);
            if let Some(key) = header_key {
                request = request.header("Idempotency-Key", key);
            }
            request
        })
        .await
    }

    /// `GET path`, retried until the server answers with anything but `503`.
    ///
    /// # Errors
    /// When no answer comes within a minute.
    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.retrying(path, || self.http.get(self.url(path))).await
    }

    /// The next node's URL for `path`.
    fn url(&self, path: &str) -> String {
        let bases = self.bases.borrow();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        match bases.get(turn % bases.len().max(1)) {
            Some(base) => format!("{base}{path}"),
            None => path.to_owned(),
        }
    }

    async fn retrying(
        &self,
        path: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> anyhow::Result<Answer> {
        let deadline = Instant::now() + ANSWER_WITHIN;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            match request().send().await {
                Ok(res) if res.status().as_u16() == 503 => {
                    last_error = "503".into();
                    let pause = res
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map_or(Duration::from_millis(200), Duration::from_secs);
                    tokio::time::sleep(pause.min(Duration::from_secs(2))).await;
                }
                Ok(res) => {
                    let status = res.status().as_u16();
                    // A connection cut while the answer was read (a kill) is retried too.
                    match res.bytes().await {
                        Ok(bytes) => {
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            return Ok((status, body));
                        }
                        Err(e) => last_error = e.to_string(),
                    }
                }
                Err(e) => {
                    last_error = e.to_string();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        bail!("no answer to {path} within {ANSWER_WITHIN:?}: {last_error}")
    }
}
