//! `herald bench load`: the suite's load client, a process of its own. Submits broadcasts
//! to herald (`POST /v1/broadcasts`, to several nodes in turn when given several URLs)
//! or, for the raw baseline, posts webhook-shaped
//! requests straight to the sink, either closed-loop (`--clients` tasks, each sending
//! its next request when the last is answered) or open-loop at a fixed `--rate`. Every
//! submit is timestamped with the wall clock just before it is sent; `--records` keeps
//! `id \t submit ns` per accepted request for the suite to match with the sink's
//! receipts. The summary is one JSON line on stdout ([`Summary`]).
//!
//! It stops at `--count` or at `--max-seconds`, whichever comes first, and says which.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_connectors::http;
use herald_connectors::outbound::Outbound;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use crate::bench::{percentile_ms, wall_nanos};
use crate::client::Bearer;

/// Most open-loop requests in flight at once: past it, the fixed rate lags (and the
/// summary says by how much) instead of the client running out of sockets.
const MAX_IN_FLIGHT: usize = 4096;

/// The pause before a submit herald answered `503` or `429` is sent again.
const SUBMIT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Where the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// herald's API: one broadcast to every destination per request.
    Herald,
    /// The sink itself (`URL/d/NAME`): one webhook-shaped request per unit, the names
    /// taken in turn; the raw baseline.
    Sink,
}

/// `herald bench load` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// herald's base URL, or the sink's with `--target sink`; several herald nodes'
    /// comma-separated: closed-loop client k uses URL k mod N, open-loop request n URL
    /// n mod N.
    #[arg(long, value_delimiter = ',', required = true)]
    pub url: Vec<String>,
    /// What `--url` is.
    #[arg(long, value_enum, default_value_t = Target::Herald)]
    pub target: Target,
    /// Destination names (herald: every broadcast goes to all; sink: taken in turn).
    #[arg(long, value_delimiter = ',', required = true)]
    pub destinations: Vec<String>,
    /// Requests to send (broadcasts for herald, single requests for the sink).
    #[arg(long)]
    pub count: usize,
    /// Closed loop: this many tasks, each waiting for its answer before the next request.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Open loop instead: this many requests per second, whatever the answers do.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop sending after this long even if `--count` is not reached.
    #[arg(long, default_value_t = 300.0)]
    pub max_seconds: f64,
    /// A file holding herald's API token (sent as `Authorization: Bearer`).
    /// (Not `--token-file`: that global option is the client commands'.)
    #[arg(long)]
    pub herald_token_file: Option<PathBuf>,
    /// Write `id \t submit ns` of every accepted request here.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Prefix of the idempotency keys (herald) or of the stand-in broadcast ids (raw);
    /// unique per run, so a herald that outlives the run takes no submit as a replay.
    #[arg(long, default_value = "raw")]
    pub id_prefix: String,
}

/// What one load run did: the last stdout line of `herald bench load`, as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered 2xx (herald: 202, the intent fsync'd).
    pub accepted: u64,
    /// Requests answered otherwise or failed in transport.
    pub failed: u64,
    /// Submits herald answered `503` or `429` and that were sent again (same key).
    pub retried: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Wall clock (ns) of the first send and of the last answer.
    pub started_ns: u64,
    /// See `started_ns`.
    pub ended_ns: u64,
    /// `--max-seconds` ended the run before `--count`.
    pub cut: bool,
    /// Answer time percentiles of accepted requests, ms.
    pub answer_p50_ms: f64,
    /// See `answer_p50_ms`.
    pub answer_p99_ms: f64,
    /// Open loop: how far behind schedule the last request was sent, ms.
    pub lag_ms: f64,
}

impl Summary {
    /// Seconds from the first send to the last answer.
    pub fn elapsed_s(&self) -> f64 {
        self.ended_ns.saturating_sub(self.started_ns) as f64 / 1e9
    }
}

/// What the tasks share while running.
struct Run {
    options: Options,
    http: http::Client,
    bearer: Option<String>,
    next: AtomicUsize,
    /// Submits sent again after a `503` or `429`.
    retried: AtomicU64,
    stop: AtomicBool,
    deadline: Instant,
    out: Mutex<Outcome>,
}

/// What the tasks collect.
#[derive(Default)]
struct Outcome {
    sent: u64,
    accepted: u64,
    failed: u64,
    first_error: Option<String>,
    answers: Vec<Duration>,
    records: String,
}

/// Runs the load and prints its [`Summary`] as one JSON line.
///
/// # Errors
/// When the options are unusable or the records cannot be written; failed requests are
/// counted, not errors.
pub async fn run(options: &Options, out: &mut impl Write) -> anyhow::Result<()> {
    if options.destinations.is_empty() {
        anyhow::bail!("--destinations: give at least one destination name");
    }
    if options.url.is_empty() || options.url.iter().any(String::is_empty) {
        anyhow::bail!("--url: give one base URL, or several comma-separated");
    }
    if options.rate.is_some_and(|rate| rate.is_nan() || rate <= 0.0) {
        anyhow::bail!("--rate: give a number of requests per second above 0");
    }
    let bearer =
        Bearer::load(options.herald_token_file.as_deref())?.map(|b| b.secret().to_string());
    // herald's own client, as its connectors use it, for both targets: the raw baseline
    // then measures the HTTP path herald could at best achieve.
    let client_options =
        http::ClientOptions { outbound: Outbound::allowing_loopback(), ..Default::default() };
    let http = http::client_with(&client_options).context("cannot build the HTTP client")?;
    let run = Arc::new(Run {
        options: options.clone(),
        http,
        bearer,
        next: AtomicUsize::new(0),
        retried: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        deadline: Instant::now() + Duration::from_secs_f64(options.max_seconds.max(0.0)),
        out: Mutex::new(Outcome::default()),
    });
    let started_ns = wall_nanos();
    let lag = match options.rate {
        None => closed_loop(&run).await?,
        Some(rate) => open_loop(&run, rate).await?,
    };
    let ended_ns = wall_nanos();
    let mut outcome = std::mem::take(&mut *run.out.lock().await);
    outcome.answers.sort();
    if let Some(path) = &options.records {
        std::fs::write(path, &outcome.records)
            .with_context(|| format!("cannot write the records to {}", path.display()))?;
    }
    let summary = Summary {
        sent: outcome.sent,
        accepted: outcome.accepted,
        failed: outcome.failed,
        retried: run.retried.load(Ordering::Relaxed),
        first_error: outcome.first_error,
        started_ns,
        ended_ns,
        cut: run.stop.load(Ordering::Relaxed),
        answer_p50_ms: percentile_ms(&outcome.answers, 50.0),
        answer_p99_ms: percentile_ms(&outcome.answers, 99.0),
        lag_ms: lag.as_secs_f64() * 1000.0,
    };
    writeln!(out, "{}", serde_json::to_string(&summary)?)?;
    Ok(())
}

/// `--clients` tasks sending back to back until the count or the deadline; client k
/// sends to URL k mod N.
async fn closed_loop(run: &Arc<Run>) -> anyhow::Result<Duration> {
    let mut tasks = JoinSet::new();
    for client in 0..run.options.clients.max(1) {
        let run = Arc::clone(run);
        tasks.spawn(async move {
            let url = client % run.options.url.len();
            while let Some(n) = claim(&run) {
                send(&run, n, url).await;
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.context("a load task panicked")?;
    }
    Ok(Duration::ZERO)
}

/// One request every `1 / rate` s on schedule, each in its own task, request n to URL
/// n mod N; returns the lag of the last one behind its schedule.
async fn open_loop(run: &Arc<Run>, rate: f64) -> anyhow::Result<Duration> {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let start = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    let mut lag = Duration::ZERO;
    while let Some(n) = claim(run) {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due).await;
        let permit = Arc::clone(&permits).acquire_owned().await.context("permits closed")?;
        lag = tokio::time::Instant::now().saturating_duration_since(due);
        let run = Arc::clone(run);
        tasks.spawn(async move {
            let url = n % run.options.url.len();
            send(&run, n, url).await;
            drop(permit);
        });
        // Reap finished tasks as we go so the set stays small on long runs.
        while let Some(res) = tasks.try_join_next() {
            res.context("a load task panicked")?;
        }
    }
    while let Some(res) = tasks.join_next().await {
        res.context("a load task panicked")?;
    }
    Ok(lag)
}

/// The next request number, or `None` at the count or past the deadline.
fn claim(run: &Run) -> Option<usize> {
    if Instant::now() >= run.deadline {
        run.stop.store(true, Ordering::Relaxed);
        return None;
    }
    let n = run.next.fetch_add(1, Ordering::Relaxed);
    (n < run.options.count).then_some(n)
}

/// Sends request `n` to URL number `url` and files its outcome.
async fn send(run: &Run, n: usize, url: usize) {
    let options = &run.options;
    let base = options.url[url].trim_end_matches('/');
    let at = Instant::now();
    let at_ns = wall_nanos();
    let res = match options.target {
        Target::Herald => submit(run, base, n).await,
        Target::Sink => raw(run, base, n).await,
    };
    let took = at.elapsed();
    let mut out = run.out.lock().await;
    out.sent += 1;
    match res {
        Ok(id) => {
            out.accepted += 1;
            out.answers.push(took);
            if options.records.is_some() {
                out.records.push_str(&format!("{id}\t{at_ns}\n"));
            }
        }
        Err(error) => {
            out.failed += 1;
            if out.first_error.is_none() {
                out.first_error = Some(format!("{error:#}"));
            }
        }
    }
}

/// Broadcast `n` to every destination; its id. A `503` or `429` (herald shedding load,
/// or a store call that timed out and may have stored it) is sent again with the same
/// idempotency key after a short pause, as herald's answer asks a client to, until the
/// deadline: the run then measures what herald accepted, and a retried submit that had
/// been stored is not a second broadcast.
async fn submit(run: &Run, base: &str, n: usize) -> anyhow::Result<String> {
    let body = serde_json::json!({
        "destinations": run.options.destinations,
        "idempotency_key": format!("{}-{n}", run.options.id_prefix),
        "message": {"title": format!("bench message {n}"), "body": "load test", "severity": "info"}
    });
    let url = format!("{base}/v1/broadcasts");
    loop {
        let mut req = run.http.post(&url).json(&body);
        if let Some(token) = &run.bearer {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.context("submitting to herald")?;
        let status = res.status().as_u16();
        if matches!(status, 503 | 429) && Instant::now() < run.deadline {
            run.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(SUBMIT_RETRY_PAUSE).await;
            continue;
        }
        // 200: a replay of a key herald had stored before answering a retried one 503.
        if status != 202 && status != 200 {
            anyhow::bail!("herald answered {} to a submit", res.status());
        }
        let view: Value = res.json().await.context("reading herald's answer")?;
        return view
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .context("herald's answer had no id");
    }
}

/// Raw request `n` to the sink, shaped like herald's webhook; its stand-in id.
async fn raw(run: &Run, base: &str, n: usize) -> anyhow::Result<String> {
    let options = &run.options;
    let name = &options.destinations[n % options.destinations.len()];
    let id = format!("{}-{n}", options.id_prefix);
    let body = serde_json::json!({
        "type": "message.created",
        "data": {"broadcast_id": id, "destination": name,
                 "message": {"title": format!("bench message {n}"), "body": "load test", "severity": "info"}}
    });
    let url = format!("{base}/d/{name}");
    let res = run
        .http
        .post(url)
        .header("webhook-id", &id)
        .json(&body)
        .send()
        .await
        .context("posting to the sink")?;
    let status = res.status();
    let _ = res.bytes().await;
    if !status.is_success() {
        anyhow::bail!("the sink answered {status}");
    }
    Ok(id)
}
