//! `herald bench sink`: the suite's webhook receiver, a process of its own. `POST
//! /d/{name}` is a destination: it answers 200, or 503 when told (a share of random
//! failures, or down until a moment), and timestamps each receipt with the wall clock
//! (`bench::wall_nanos`) so the suite can match it with the load client's submit time.
//!
//! Kept lean on purpose (no body parsing beyond finding the broadcast id, one lock per
//! request): the raw baseline measures this same sink, and a slow sink would hide the
//! difference herald makes. The control endpoints (`/_reset`, `/_stats`, `/_records`)
//! are for the suite; nothing here knows herald's API.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::{Deserialize, Serialize};

use crate::bench::wall_nanos;
use crate::torture::Rng;

/// The receipt-count bucket of the throughput-over-time plot.
pub const BUCKET_NANOS: u64 = 100_000_000;

/// `herald bench sink` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Where to listen (a loopback address; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// How one destination answers (the suite sets it with `POST /_reset`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    /// The share of requests answered 503, drawn from the seeded generator.
    #[serde(default)]
    pub fail_rate: f64,
    /// Answer 503 to every request received before this wall-clock moment (ns).
    #[serde(default)]
    pub down_until_ns: u64,
}

/// The body of `POST /_reset`: forget what was received and answer from now on as told.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reset {
    /// Keep every delivered request's (destination, id, receipt time) for `/_records`.
    #[serde(default)]
    pub record: bool,
    /// Seed of the random failures.
    #[serde(default)]
    pub seed: u64,
    /// Per destination name; a name not listed answers 200.
    #[serde(default)]
    pub plans: HashMap<String, Plan>,
}

/// One destination's counts since the last reset.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Requests received.
    pub requests: u64,
    /// Requests answered 200.
    pub delivered: u64,
    /// Requests answered 503.
    pub rejected: u64,
}

/// What `GET /_stats` answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Per destination name.
    pub destinations: BTreeMap<String, Counts>,
    /// Receipt time (ns) of the first and the last request answered 200, 0 before any.
    pub first_ns: u64,
    /// See `first_ns`.
    pub last_ns: u64,
    /// Requests answered 200 per [`BUCKET_NANOS`] bucket: (bucket start ns, count);
    /// only with `?buckets=true`.
    pub buckets: Vec<(u64, u64)>,
}

impl Stats {
    /// Requests answered 200 by the named destinations.
    pub fn delivered(&self, names: &[String]) -> u64 {
        names.iter().filter_map(|n| self.destinations.get(n)).map(|c| c.delivered).sum()
    }

    /// Requests received by the named destinations.
    pub fn requests(&self, names: &[String]) -> u64 {
        names.iter().filter_map(|n| self.destinations.get(n)).map(|c| c.requests).sum()
    }
}

/// The sink's state behind its one lock: plans, counts and (when asked) records.
#[derive(Debug, Default)]
struct Received {
    reset: Reset,
    rng: Option<Rng>,
    counts: BTreeMap<String, Counts>,
    first_ns: u64,
    last_ns: u64,
    buckets: BTreeMap<u64, u64>,
    /// `name \t id \t receipt ns \n` per request answered 200, when `reset.record`.
    records: String,
}

type Shared = Arc<Mutex<Received>>;

/// Runs the sink until the process is killed; prints `herald bench sink listening on
/// http://ADDR` first, which the suite waits for.
///
/// # Errors
/// When the address cannot be bound.
pub async fn run(options: &Options, out: &mut impl Write) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = listener.local_addr()?;
    let shared: Shared = Arc::default();
    let app = Router::new()
        .route("/d/{name}", post(receive))
        .route("/_reset", post(reset))
        .route("/_stats", get(stats))
        .route("/_records", get(records))
        .with_state(shared);
    writeln!(out, "herald bench sink listening on http://{addr}")?;
    out.flush()?;
    // Small request/response exchanges: do not let Nagle delay them.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.context("the sink stopped")?;
    Ok(())
}

/// A destination's request: counted, maybe recorded, answered as its plan says.
async fn receive(State(shared): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    let at = wall_nanos();
    let Ok(mut state) = shared.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let state = &mut *state;
    let plan = state.reset.plans.get(&name).cloned().unwrap_or_default();
    let failing = at < plan.down_until_ns
        || (plan.fail_rate > 0.0
            && state.rng.get_or_insert_with(|| Rng::new(state.reset.seed)).unit() < plan.fail_rate);
    let counts = state.counts.entry(name.clone()).or_default();
    counts.requests += 1;
    if failing {
        counts.rejected += 1;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    counts.delivered += 1;
    if state.first_ns == 0 {
        state.first_ns = at;
    }
    state.last_ns = state.last_ns.max(at);
    *state.buckets.entry(at / BUCKET_NANOS * BUCKET_NANOS).or_default() += 1;
    if state.reset.record {
        let id = broadcast_id(&body).unwrap_or("-");
        state.records.push_str(&format!("{name}\t{id}\t{at}\n"));
    }
    StatusCode::OK.into_response()
}

/// The `"broadcast_id":"..."` of a webhook body (herald's, or the load client's raw
/// stand-in), found without parsing the JSON.
pub(crate) fn broadcast_id(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"broadcast_id\":\"";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

async fn reset(State(shared): State<Shared>, axum::Json(reset): axum::Json<Reset>) -> StatusCode {
    let Ok(mut state) = shared.lock() else { return StatusCode::INTERNAL_SERVER_ERROR };
    *state = Received { rng: Some(Rng::new(reset.seed)), reset, ..Received::default() };
    StatusCode::NO_CONTENT
}

/// The query of `GET /_stats`.
#[derive(Debug, Deserialize)]
struct StatsQuery {
    /// Include the buckets (the suite's polls leave them out: a long drain has
    /// thousands).
    #[serde(default)]
    buckets: bool,
}

async fn stats(State(shared): State<Shared>, Query(query): Query<StatsQuery>) -> Response {
    let Ok(state) = shared.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let buckets = if query.buckets {
        state.buckets.iter().map(|(k, v)| (*k, *v)).collect()
    } else {
        Vec::new()
    };
    axum::Json(Stats {
        destinations: state.counts.clone(),
        first_ns: state.first_ns,
        last_ns: state.last_ns,
        buckets,
    })
    .into_response()
}

async fn records(State(shared): State<Shared>) -> Response {
    let Ok(state) = shared.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    state.records.clone().into_response()
}
