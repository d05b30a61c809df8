//! `herald bench in-process`: the earlier, single-process benchmark, kept beside the
//! suite (`bench::suite`, which also runs PostgreSQL clusters, as processes, and waits
//! for their lanes with this module's `balanced`). Deliveries per
//! second and submit→delivered latency against a local sink, beside the raw HTTP rate of
//! the same client against the same sink, measured in the same run.
//!
//! Its sink and client share herald's process and runtime, so its figures flatter herald
//! (about 10,000 deliveries/s where the separate-process suite sees far fewer): use the
//! suite for figures. Everything runs on loopback in this process: the simulator as the sink, a herald
//! server on a temporary SQLite file (`synchronous=FULL`: every intent fsync'd before its
//! 202), and a keep-alive load client. With `--database postgres://... --nodes 1,2,3` the
//! throughput phase runs once per node count on PostgreSQL instead. Run it from a release
//! build.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_connectors::http;
use herald_connectors::outbound::Outbound;
use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::demo::ALLOW_LOOPBACK;
use crate::serve;

use super::percentile_ms as percentile;

/// Benchmark settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Broadcasts submitted in the throughput phase.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Destinations per broadcast (each a separate sink endpoint and lane).
    #[arg(long, default_value_t = 5)]
    pub destinations: usize,
    /// Concurrent submitting clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Attempts in flight per destination.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Broadcasts per second in the latency phase (moderate load).
    #[arg(long, default_value_t = 200)]
    pub latency_rate: u32,
    /// Duration of the latency phase.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub latency_for: Duration,
    /// Run the throughput phase on this PostgreSQL database instead of SQLite (it writes
    /// there: use an empty database or schema).
    #[arg(long)]
    pub database: Option<String>,
    /// With `--database`: the node counts to measure, one run each, e.g. `1,2,3` (the
    /// nodes run in this process, each with its own pool and engine).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub nodes: Vec<usize>,
}

/// Runs the benchmark and prints its figures to `out`.
///
/// # Errors
/// When a component cannot start or deliveries do not complete within two minutes.
pub async fn run(options: Options, out: &mut impl Write) -> anyhow::Result<()> {
    let names: Vec<String> = (0..options.destinations).map(|n| format!("sink-{n}")).collect();
    let mut endpoints: Vec<(String, FaultPlan)> =
        names.iter().map(|n| (n.clone(), FaultPlan::healthy())).collect();
    endpoints.push(("raw".into(), FaultPlan::healthy()));
    let sim = Simulator::start(endpoints).await.context("cannot start the sink")?;
    let total = options.messages * options.destinations;

    writeln!(
        out,
        "herald bench: {} broadcasts x {} destinations = {total} deliveries; {} clients; concurrency {} per destination",
        options.messages, options.destinations, options.clients, options.concurrency
    )?;

    // Baseline: the same HTTP client, the same sink, no engine in between.
    let raw = raw_http(&sim.url("raw"), total, options.clients).await?;
    writeln!(out, "  raw HTTP, client -> sink:               {:>9.0} requests/s", raw)?;
    if let Some(database) = &options.database {
        sim.shutdown().await;
        return cluster(&options, database, raw, out).await;
    }

    let dir = tempfile::tempdir()?;
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n{ALLOW_LOOPBACK}",
        dir.path().join("bench.db").display()
    );
    for name in &names {
        text.push_str(&format!(
            "[destinations.{name}]\nkind = \"webhook\"\nurl = \"{}\"\nconcurrency = {}\n\n",
            sim.url(name),
            options.concurrency
        ));
    }
    let config =
        Config::parse(&text, "bench", &|_| None).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let server = serve::start(&config).await?;
    let base = format!("http://{}/v1/broadcasts", server.addr);
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;

    // Throughput: all clients submit as fast as the server answers.
    let submitted = Arc::new(std::sync::Mutex::new(HashMap::<String, Instant>::with_capacity(
        options.messages,
    )));
    let submit_latency = Arc::new(std::sync::Mutex::new(Vec::with_capacity(options.messages)));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..options.clients {
        let (http, base, names, next) =
            (http.clone(), base.clone(), names.clone(), Arc::clone(&next));
        let (submitted, submit_latency) = (Arc::clone(&submitted), Arc::clone(&submit_latency));
        let messages = options.messages;
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= messages {
                    return anyhow::Ok(());
                }
                let at = Instant::now();
                let id = submit(&http, &base, &names, n).await?;
                submit_latency.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(at.elapsed());
                submitted.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(id, at);
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res??;
    }
    let submit_elapsed = started.elapsed();
    let expected = total as u64;
    let names_for_wait = names.clone();
    let done = sim
        .wait_until(Duration::from_secs(120), move |view| {
            names_for_wait.iter().map(|n| view.stored(n)).sum::<u64>() >= expected
        })
        .await;
    if !done {
        bail!("deliveries did not complete within 2 minutes");
    }
    let submitted = submitted.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let (e2e, last) = latencies(&sim, &names, &submitted);
    let elapsed = last.duration_since(started);
    let rate = total as f64 / elapsed.as_secs_f64();
    let mut submit_latency =
        submit_latency.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    submit_latency.sort();
    writeln!(
        out,
        "  herald, submit -> delivered:            {:>9.0} deliveries/s  ({:.1} % of raw HTTP; {:.0} broadcasts/s accepted)",
        rate,
        100.0 * rate / raw,
        options.messages as f64 / submit_elapsed.as_secs_f64()
    )?;
    writeln!(
        out,
        "  submit latency (202, intent fsync'd):   p50 {:>7.2} ms   p99 {:>7.2} ms",
        percentile(&submit_latency, 50.0),
        percentile(&submit_latency, 99.0)
    )?;
    writeln!(
        out,
        "  submit -> delivered under full load:    p50 {:>7.2} ms   p99 {:>7.2} ms",
        percentile(&e2e, 50.0),
        percentile(&e2e, 99.0)
    )?;

    // Latency at moderate load: one client at a fixed rate.
    let before: u64 = names.iter().map(|n| sim.stats(n).stored).sum();
    let count =
        (f64::from(options.latency_rate) * options.latency_for.as_secs_f64()).ceil() as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.latency_rate.max(1)));
    let mut moderate = HashMap::with_capacity(count);
    let mut ticker = tokio::time::interval(interval);
    for n in 0..count {
        ticker.tick().await;
        let at = Instant::now();
        let id = submit(&http, &base, &names, options.messages + n).await?;
        moderate.insert(id, at);
    }
    let expected = before + (count * options.destinations) as u64;
    let names_for_wait = names.clone();
    sim.wait_until(Duration::from_secs(60), move |view| {
        names_for_wait.iter().map(|n| view.stored(n)).sum::<u64>() >= expected
    })
    .await;
    let (e2e, _) = latencies(&sim, &names, &moderate);
    writeln!(
        out,
        "  submit -> delivered at {:>4} broadcasts/s: p50 {:>7.2} ms   p99 {:>7.2} ms  ({} deliveries)",
        options.latency_rate,
        percentile(&e2e, 50.0),
        percentile(&e2e, 99.0),
        e2e.len()
    )?;
    if let Some(rss) = peak_rss_mib() {
        writeln!(out, "  peak RSS of this process (herald + sink + load client): {rss:.0} MiB")?;
    }
    server.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

/// Submits broadcast `n` to `names`; returns its id.
async fn submit(
    http: &reqwest::Client,
    base: &str,
    names: &[String],
    n: usize,
) -> anyhow::Result<String> {
    let body = json!({
        "destinations": names,
        "message": {"title": format!("bench message {n}"), "body": "load test", "severity": "info"}
    });
    let res = http.post(base).json(&body).send().await?;
    if res.status().as_u16() != 202 {
        bail!("submit answered {}", res.status());
    }
    let view: Value = res.json().await?;
    Ok(view.get("id").and_then(Value::as_str).unwrap_or_default().to_string())
}

/// Submit→arrival latency of every delivery of the given broadcasts, sorted, and the
/// last arrival.
fn latencies(
    sim: &Simulator,
    names: &[String],
    submitted: &HashMap<String, Instant>,
) -> (Vec<Duration>, Instant) {
    let mut res = Vec::new();
    let mut last = Instant::now();
    let mut first = true;
    for name in names {
        for received in sim.received(name) {
            if !received.stored {
                continue;
            }
            let Ok(body) = serde_json::from_slice::<Value>(&received.body) else { continue };
            let Some(id) = body.pointer("/data/broadcast_id").and_then(Value::as_str) else {
                continue;
            };
            if let Some(at) = submitted.get(id) {
                res.push(received.at.duration_since(*at));
                if first || received.at > last {
                    last = received.at;
                    first = false;
                }
            }
        }
    }
    res.sort();
    (res, last)
}

/// Requests per second of `clients` keep-alive tasks posting `total` webhook-shaped
/// requests straight to the sink.
async fn raw_http(url: &str, total: usize, clients: usize) -> anyhow::Result<f64> {
    // herald's own client, as connectors use it, allowed to reach the loopback sink.
    let options =
        http::ClientOptions { outbound: Outbound::allowing_loopback(), ..Default::default() };
    let http = http::client_with(&options)?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (http, url, next) = (http.clone(), url.to_string(), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return anyhow::Ok(());
                }
                let body = json!({"type": "message.created", "data": {"n": n, "message": {"title": "raw"}}});
                let res = http.post(&url).header("webhook-id", format!("raw-{n}")).json(&body).send().await?;
                if !res.status().is_success() {
                    bail!("sink answered {}", res.status());
                }
                let _ = res.bytes().await?;
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// The process's peak resident set size, from /proc (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The throughput phase on PostgreSQL with 1, 2, ... nodes in this process: the clients
/// take turns among the nodes' APIs; each run uses its own destination names (and so its
/// own lanes and sink endpoints), and starts once every lane has its node.
async fn cluster(
    options: &Options,
    database: &str,
    raw: f64,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let total = options.messages * options.destinations;
    let run_id = std::process::id();
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    for &nodes in &options.nodes {
        if nodes == 0 {
            bail!("--nodes: a run needs at least one node");
        }
        let names: Vec<String> =
            (0..options.destinations).map(|n| format!("b{run_id}-{nodes}-{n}")).collect();
        let endpoints: Vec<(String, FaultPlan)> =
            names.iter().map(|n| (n.clone(), FaultPlan::healthy())).collect();
        let sink = Simulator::start(endpoints).await.context("cannot start the sink")?;
        let mut servers = Vec::with_capacity(nodes);
        for i in 0..nodes {
            let mut text = format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{database}\"\nnode_id = \"bench-{run_id}-{nodes}-{i}\"\n\n{ALLOW_LOOPBACK}"
            );
            for name in &names {
                text.push_str(&format!(
                    "[destinations.{name}]\nkind = \"webhook\"\nurl = \"{}\"\nconcurrency = {}\n\n",
                    sink.url(name),
                    options.concurrency
                ));
            }
            let config = Config::parse(&text, "bench", &|_| None)
                .map_err(|errors| anyhow::anyhow!("{errors}"))?;
            servers.push(serve::start(&config).await?);
        }
        let bases: Vec<String> = servers.iter().map(|s| format!("http://{}", s.addr)).collect();
        balanced(&http, &bases, &names).await?;
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for client in 0..options.clients {
            let url = format!("{}/v1/broadcasts", bases[client % bases.len()]);
            let (http, names, next) = (http.clone(), names.clone(), Arc::clone(&next));
            let messages = options.messages;
            tasks.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= messages {
                        return anyhow::Ok(());
                    }
                    submit(&http, &url, &names, n).await?;
                }
            });
        }
        while let Some(res) = tasks.join_next().await {
            res??;
        }
        let submit_elapsed = started.elapsed();
        let expected = total as u64;
        let waiting = names.clone();
        let done = sink
            .wait_until(Duration::from_secs(300), move |view| {
                waiting.iter().map(|n| view.stored(n)).sum::<u64>() >= expected
            })
            .await;
        if !done {
            bail!("deliveries with {nodes} node(s) did not complete within 5 minutes");
        }
        let last = names
            .iter()
            .flat_map(|name| sink.received(name))
            .filter(|r| r.stored)
            .map(|r| r.at)
            .max()
            .unwrap_or_else(Instant::now);
        let rate = total as f64 / last.duration_since(started).as_secs_f64();
        writeln!(
            out,
            "  herald on PostgreSQL, {nodes} node(s):      {:>9.0} deliveries/s  ({:.1} % of raw HTTP; {:.0} broadcasts/s accepted)",
            rate,
            100.0 * rate / raw,
            options.messages as f64 / submit_elapsed.as_secs_f64()
        )?;
        for server in servers {
            server.shutdown().await;
        }
        sink.shutdown().await;
    }
    Ok(())
}

/// Waits (up to 60 s) until every one of `names` is driven by a live node, the lanes
/// spread fairly over the live `bench-` nodes and there are at least as many of those
/// as `bases` (the suite's clusters too).
pub(crate) async fn balanced(
    http: &reqwest::Client,
    bases: &[String],
    names: &[String],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view: Value = http.get(format!("{}/v1/nodes", bases[0])).send().await?.json().await?;
        let nodes = view.get("nodes").and_then(Value::as_array).cloned().unwrap_or_default();
        let live: Vec<&Value> =
            nodes.iter().filter(|n| n.get("alive") == Some(&Value::Bool(true))).collect();
        let driven: Vec<&str> = live
            .iter()
            .flat_map(|n| n.get("lanes").and_then(Value::as_array).into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        let mine = live.iter().filter(|n| {
            n.get("id").and_then(Value::as_str).is_some_and(|id| id.starts_with("bench-"))
        });
        let all_driven = names.iter().all(|name| driven.contains(&name.as_str()));
        let fair = names.len().div_ceil(bases.len());
        let spread = mine.clone().all(|n| {
            let lanes = n.get("lanes").and_then(Value::as_array).map_or(0, Vec::len);
            lanes <= fair
        });
        if all_driven && spread && mine.count() >= bases.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the lanes were not spread over {} nodes within 60 s: {view}", bases.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
