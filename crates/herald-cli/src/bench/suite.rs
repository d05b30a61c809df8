//! The suite: starts the sink process, then for each scenario and run a fresh `herald
//! serve` process on a fresh SQLite file and the load client process, measures herald,
//! then the raw baseline (the load client straight to the sink), and writes the report.
//! With `--database` and `--nodes`, every case runs once per node count instead: that
//! many `herald serve` processes on a fresh schema of one PostgreSQL database, the load
//! spread over their APIs.
//!
//! Scenarios (issue 11): throughput (broadcasts × webhooks × clients, closed loop),
//! latency (a fixed offered rate, and one client), backlog (deliveries queued for an
//! unreachable port, SIGKILL, restart with the sink up), outage (one destination
//! answering 503 for a while among five healthy ones) and retry (a share of random
//! 503s). Every phase is bounded by `--max-seconds`; a phase the cap cuts says so in its
//! notes, and its figures are of what was done by then.

mod phase;
mod scenarios;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_store::postgres::PgStore;

use crate::bench::report::{self, Measured, Metrics, Report, Scenario};
use crate::bench::suite::phase::Sink;
use crate::bench::{percentile_ms, wall_nanos};

#[cfg(test)]
pub(crate) use crate::bench::suite::phase::match_latencies;

/// A scenario of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioName {
    /// Broadcasts × webhooks × clients as fast as herald accepts them.
    Throughput,
    /// Submit→delivered at a fixed offered rate and at one client.
    Latency,
    /// Deliveries queued for an unreachable port; SIGKILL; restart with the sink up.
    Backlog,
    /// One destination answering 503 for a while among five healthy ones.
    Outage,
    /// A share of random 503s: requests sent per delivered message.
    Retry,
}

impl ScenarioName {
    fn name(self) -> &'static str {
        match self {
            ScenarioName::Throughput => "throughput",
            ScenarioName::Latency => "latency",
            ScenarioName::Backlog => "backlog",
            ScenarioName::Outage => "outage",
            ScenarioName::Retry => "retry",
        }
    }
}

/// `herald bench` settings (the suite).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The scenarios to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "throughput,latency,backlog,outage,retry"
    )]
    pub scenarios: Vec<ScenarioName>,
    /// Runs of every case; the report shows the median.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Throughput: broadcasts per case.
    #[arg(long, default_value_t = 20_000)]
    pub broadcasts: usize,
    /// Throughput: webhooks (destinations) per broadcast, one case each.
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    pub webhooks: Vec<usize>,
    /// Throughput: concurrent submitting clients, one case each.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    pub clients: Vec<usize>,
    /// Attempts in flight per destination (`concurrency` in herald's configuration).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Latency: the fixed offered rate, broadcasts per second.
    #[arg(long, default_value_t = 1000.0)]
    pub latency_rate: f64,
    /// Latency: webhooks per broadcast.
    #[arg(long, default_value_t = 3)]
    pub latency_webhooks: usize,
    /// Latency: how long each case submits.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub latency_for: Duration,
    /// Backlog: pending deliveries to queue.
    #[arg(long, default_value_t = 10_000_000)]
    pub backlog: usize,
    /// Backlog: webhooks per broadcast (more makes seeding faster).
    #[arg(long, default_value_t = 20)]
    pub backlog_webhooks: usize,
    /// Outage: how long the dead destination answers 503 (and the load lasts).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub outage_for: Duration,
    /// Outage: broadcasts per second, each to the five healthy and the dead destination.
    #[arg(long, default_value_t = 200.0)]
    pub outage_rate: f64,
    /// Retry: broadcasts (to five webhooks).
    #[arg(long, default_value_t = 2_000)]
    pub retry_broadcasts: usize,
    /// Retry: the share of requests the sink answers 503, at random.
    #[arg(long, default_value_t = 0.3)]
    pub retry_fail_rate: f64,
    /// The cap on every phase (submitting plus waiting for deliveries), in seconds.
    #[arg(long, default_value_t = 600.0)]
    pub max_seconds: f64,
    /// Where to write bench.json and bench.html.
    #[arg(long, default_value = "bench-report")]
    pub out_dir: PathBuf,
    /// The herald binary to run as the server [default: this one]; use a release build.
    #[arg(long)]
    pub herald_bin: Option<PathBuf>,
    /// Use this running sink (`herald bench sink --listen ADDR` elsewhere) instead of
    /// starting one. The backlog scenario needs its own sink and is skipped.
    #[arg(long)]
    pub sink_url: Option<String>,
    /// Drive this running herald instead of starting one. Its configuration must have
    /// webhook destinations `bench-0` ... `bench-5` at `SINK/d/bench-N` (see
    /// docs/performance.md). The backlog scenario restarts herald and is skipped.
    #[arg(long)]
    pub herald_url: Option<String>,
    /// With `--herald-url`: its process id, to read its CPU time and memory in /proc.
    #[arg(long)]
    pub herald_pid: Option<u32>,
    /// With `--herald-url`: a file holding an API token with the `send` scope.
    #[arg(long)]
    pub herald_token_file: Option<PathBuf>,
    /// Seed of the sink's random failures.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run herald on PostgreSQL instead of SQLite: every run gets a fresh schema of this
    /// database (created before it and dropped after it through this URL, so its user
    /// needs CREATE there), shared by `--nodes` `herald serve` processes. E.g.
    /// `postgres://postgres@127.0.0.1:5432/test`.
    #[arg(long)]
    pub database: Option<String>,
    /// With `--database`: the node counts, every case once per count, e.g. `1,2,3`; a 0
    /// runs the case on SQLite too, for both in one report [default: 1].
    #[arg(long, value_delimiter = ',')]
    pub nodes: Option<Vec<usize>>,
}

/// The destinations of the outage scenario: five healthy ones, then the one that fails.
const OUTAGE_HEALTHY: usize = 5;
/// The suite's running state.
struct Suite<'a> {
    options: &'a Options,
    exe: PathBuf,
    herald_bin: PathBuf,
    sink: Sink,
    http: reqwest::Client,
    work: tempfile::TempDir,
    /// Numbers the files and raw id prefixes of each phase.
    seq: u64,
    /// The store of the cases being run: 0 for SQLite, else this many nodes on
    /// PostgreSQL (`--database`).
    nodes: usize,
    /// PostgreSQL schemas created and not yet dropped.
    schemas: Vec<String>,
}

/// Runs the suite and writes its report.
///
/// # Errors
/// When the options are unusable, the sink cannot start, a report cannot be written, or
/// a scenario failed (the others still run and are reported).
pub async fn run(options: &Options, out: &mut impl Write) -> anyhow::Result<()> {
    validate(options)?;
    let exe = std::env::current_exe().context("cannot find the path of the herald binary")?;
    let herald_bin = options.herald_bin.clone().unwrap_or_else(|| exe.clone());
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("cannot create {}", options.out_dir.display()))?;
    let sink = match &options.sink_url {
        Some(url) => Sink { base: url.trim_end_matches('/').to_string(), _child: None },
        None => Sink::spawn(&exe, "127.0.0.1:0").await?,
    };
    let work = tempfile::Builder::new().prefix("herald-bench-").tempdir()?;
    let machine = machine(work.path());
    writeln!(
        out,
        "herald bench: herald {} as its own process, sink at {}, {} run(s) per case; machine: {}",
        herald_bin.display(),
        sink.base,
        options.runs,
        machine.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    )?;
    if let Some(url) = &options.database {
        writeln!(
            out,
            "on PostgreSQL at {} (a fresh schema per run), with {} node(s)",
            redacted(url),
            stores(options).iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
        )?;
    }
    let mut suite = Suite {
        options,
        exe,
        herald_bin,
        sink,
        http: reqwest::Client::new(),
        work,
        seq: 0,
        nodes: 0,
        schemas: Vec::new(),
    };
    let started_unix_s = wall_nanos() / 1_000_000_000;
    let mut scenarios = Vec::new();
    let mut failed = Vec::new();
    for &name in &options.scenarios {
        writeln!(out, "{}:", name.name())?;
        let (method, skipped) = suite.describe(name);
        let mut scenario =
            Scenario { name: name.name().into(), method, cases: Vec::new(), skipped };
        if scenario.skipped.is_none() {
            let mut measured = Vec::new();
            for run in 0..options.runs {
                let res = suite.scenario(name, &mut measured, out).await;
                suite.drop_schemas(out).await?;
                match res {
                    Ok(()) => {}
                    Err(error) => {
                        let why = format!("run {} failed: {error:#}", run + 1);
                        writeln!(out, "  {why}")?;
                        failed.push(format!("{}: {why}", name.name()));
                        scenario.skipped = Some(why);
                        break;
                    }
                }
            }
            scenario.cases = report::merge(measured);
        }
        scenarios.push(scenario);
    }
    let report = Report {
        herald_version: env!("CARGO_PKG_VERSION").into(),
        machine,
        started_unix_s,
        settings: settings(options),
        scenarios,
    };
    report::table(&report, out)?;
    let json_path = options.out_dir.join("bench.json");
    let html_path = options.out_dir.join("bench.html");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(&html_path, report::html(&report))
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    writeln!(out, "\nwrote {} and {}", json_path.display(), html_path.display())?;
    if !failed.is_empty() {
        bail!("{} scenario(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

/// Rejects settings that cannot make a run, naming the option.
fn validate(options: &Options) -> anyhow::Result<()> {
    if options.runs == 0 {
        bail!("--runs: give at least 1");
    }
    if options.webhooks.iter().chain(&options.clients).any(|&n| n == 0)
        || options.broadcasts == 0
        || options.latency_webhooks == 0
        || options.backlog_webhooks == 0
        || options.retry_broadcasts == 0
        || options.concurrency == 0
    {
        bail!(
            "--broadcasts, --webhooks, --clients, --concurrency and the scenario counts must be above 0"
        );
    }
    if options.backlog < options.backlog_webhooks {
        bail!(
            "--backlog: give at least --backlog-webhooks ({}) deliveries",
            options.backlog_webhooks
        );
    }
    if [options.latency_rate, options.outage_rate, options.max_seconds]
        .iter()
        .any(|v| v.is_nan() || *v <= 0.0)
    {
        bail!("--latency-rate, --outage-rate and --max-seconds must be above 0");
    }
    if !(0.0..1.0).contains(&options.retry_fail_rate) {
        bail!("--retry-fail-rate: give a share in [0, 1), e.g. 0.3");
    }
    if options.herald_url.is_none()
        && (options.herald_pid.is_some() || options.herald_token_file.is_some())
    {
        bail!("--herald-pid and --herald-token-file go with --herald-url");
    }
    match &options.database {
        Some(url) => {
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                bail!("--database: give a postgres:// URL (SQLite is the default)");
            }
            if options.herald_url.is_some() {
                bail!("--database starts its own herald nodes; leave out --herald-url");
            }
            if options.nodes.as_ref().is_some_and(Vec::is_empty) {
                bail!("--nodes: give at least one node count, e.g. 1,2,3");
            }
            phase::schema_url(url, "herald_bench")?;
        }
        None if options.nodes.is_some() => bail!("--nodes goes with --database"),
        None => {}
    }
    Ok(())
}

/// The stores every case runs on, in order: 0 for SQLite, else a node count on
/// PostgreSQL.
fn stores(options: &Options) -> Vec<usize> {
    match (&options.database, &options.nodes) {
        (None, _) => vec![0],
        (Some(_), None) => vec![1],
        (Some(_), Some(nodes)) => nodes.clone(),
    }
}

/// A URL without its password, for the report.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// A case's name on `nodes`: unchanged on SQLite, `pg N nodes, ...` on PostgreSQL.
fn case_name(nodes: usize, case: &str) -> String {
    match nodes {
        0 => case.to_string(),
        1 => format!("pg 1 node, {case}"),
        n => format!("pg {n} nodes, {case}"),
    }
}

/// The settings as strings, for the report.
fn settings(options: &Options) -> BTreeMap<String, String> {
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let mut res = BTreeMap::new();
    let scenarios: Vec<&str> = options.scenarios.iter().map(|s| s.name()).collect();
    res.insert("scenarios".into(), scenarios.join(","));
    res.insert("runs".into(), options.runs.to_string());
    res.insert("broadcasts".into(), options.broadcasts.to_string());
    res.insert("webhooks".into(), list(&options.webhooks));
    res.insert("clients".into(), list(&options.clients));
    res.insert("concurrency".into(), options.concurrency.to_string());
    res.insert("latency_rate".into(), options.latency_rate.to_string());
    res.insert("latency_webhooks".into(), options.latency_webhooks.to_string());
    res.insert("latency_for".into(), humantime::format_duration(options.latency_for).to_string());
    res.insert("backlog".into(), options.backlog.to_string());
    res.insert("backlog_webhooks".into(), options.backlog_webhooks.to_string());
    res.insert("outage_for".into(), humantime::format_duration(options.outage_for).to_string());
    res.insert("outage_rate".into(), options.outage_rate.to_string());
    res.insert("retry_broadcasts".into(), options.retry_broadcasts.to_string());
    res.insert("retry_fail_rate".into(), options.retry_fail_rate.to_string());
    res.insert("max_seconds".into(), options.max_seconds.to_string());
    res.insert("seed".into(), options.seed.to_string());
    if let Some(url) = &options.herald_url {
        res.insert("herald_url".into(), url.clone());
    }
    if let Some(url) = &options.sink_url {
        res.insert("sink_url".into(), url.clone());
    }
    if let Some(url) = &options.database {
        res.insert("database".into(), redacted(url));
        let nodes: Vec<String> = stores(options).iter().map(usize::to_string).collect();
        res.insert("nodes".into(), nodes.join(","));
    }
    res
}

/// `nproc`, CPU model, kernel, and the median `fdatasync` of a 4 KiB write in the
/// directory herald's database goes to (what every accepted broadcast waits for).
fn machine(dir: &Path) -> BTreeMap<String, String> {
    let mut res = BTreeMap::new();
    let nproc = std::thread::available_parallelism().map_or(0, usize::from);
    res.insert("nproc".into(), nproc.to_string());
    if let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo")
        && let Some(model) = cpuinfo.lines().find_map(|l| l.strip_prefix("model name"))
    {
        res.insert("cpu".into(), model.trim_start_matches([' ', '\t', ':']).to_string());
    }
    if let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        res.insert("kernel".into(), kernel.trim().to_string());
    }
    if let Some(ms) = fdatasync_ms(dir) {
        res.insert("fdatasync_4k_median_ms".into(), format!("{ms:.3}"));
    }
    res
}

/// The median of 50 `fdatasync`s after a 4 KiB write, ms.
fn fdatasync_ms(dir: &Path) -> Option<f64> {
    let path = dir.join("fdatasync.probe");
    let mut file = std::fs::File::create(&path).ok()?;
    let block = [7u8; 4096];
    let mut times = Vec::with_capacity(50);
    for _ in 0..50 {
        file.write_all(&block).ok()?;
        let at = Instant::now();
        file.sync_data().ok()?;
        times.push(at.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    times.sort();
    Some(percentile_ms(&times, 50.0))
}

/// Names `prefix-0` ... `prefix-(n-1)`.
fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|k| format!("{prefix}-{k}")).collect()
}

impl Suite<'_> {
    /// The scenario's method sentence, and why it is skipped if it is.
    fn describe(&self, name: ScenarioName) -> (String, Option<String>) {
        let o = self.options;
        let method = match name {
            ScenarioName::Throughput => format!(
                "{} broadcasts per case, closed loop (each client sends its next broadcast when \
                 the last is accepted); deliveries/s from the first submit to the last receipt; \
                 CPU and peak RSS of the herald process alone. Raw: the same clients post \
                 broadcasts x webhooks requests straight to the sink.",
                o.broadcasts
            ),
            ScenarioName::Latency => format!(
                "Submit (load client, just before sending) to receipt (sink), both CLOCK_REALTIME \
                 on this machine, matched by broadcast id: {} broadcasts/s x {} webhooks open loop \
                 for {}, and 1 client closed loop for as long. Raw: the same offered request \
                 rate (broadcasts/s x webhooks) and 1 client, straight to the sink.",
                o.latency_rate,
                o.latency_webhooks,
                humantime::format_duration(o.latency_for)
            ),
            ScenarioName::Backlog => format!(
                "{} deliveries ({} webhooks per broadcast, 32 clients) to a closed port \
                 (connection refused); RSS while queued; SIGKILL; the sink comes up on that port; \
                 herald restarts: time from its spawn to the first delivery, drain rate, peak RSS \
                 while draining. Policy: max_attempts = 1000, backoff_max = 5s, so no delivery \
                 gives up or waits minutes while the port is closed. Raw: 32 clients straight to \
                 the sink.",
                o.backlog, o.backlog_webhooks
            ),
            ScenarioName::Outage => format!(
                "{} broadcasts/s for {} to {OUTAGE_HEALTHY} healthy webhooks and one that answers \
                 503 (not a refused connection: the sink counts what it is sent) for the whole \
                 load; the same load once more without the outage, on a fresh herald. Default \
                 retry policy and circuit breaker. Raw: {OUTAGE_HEALTHY} x the rate straight to \
                 the sink, at most 10 s.",
                o.outage_rate,
                humantime::format_duration(o.outage_for)
            ),
            ScenarioName::Retry => format!(
                "{} broadcasts x 5 webhooks, 8 clients; the sink answers {:.0} % of requests 503 \
                 at random (seeded). Policy: max_attempts = 50, backoff_base = 100ms, \
                 backoff_max = 2s, so the run is short and nothing gives up. Raw: the same \
                 requests once each; its requests per delivered is what retrying each failure \
                 at once would cost.",
                o.retry_broadcasts,
                o.retry_fail_rate * 100.0
            ),
        };
        let method = if o.database.is_some() {
            let restart = if name == ScenarioName::Backlog {
                " The backlog's restart kills every node and spawns them all again, timed from \
                 the first spawn."
            } else {
                ""
            };
            format!(
                "{method} On PostgreSQL (cases named `pg N nodes`): each run on a fresh schema \
                 of --database, N `herald serve` processes (their own node_id) started and \
                 waited for until every node is alive and the lanes are spread; the load \
                 client's clients (or open-loop requests) take the nodes' APIs in turn; CPU is \
                 summed over the nodes (the PostgreSQL server's own is not counted); peak RSS \
                 is the largest node's, `_sum_mib` the nodes' total.{restart}"
            )
        } else {
            method
        };
        let skipped = match name {
            ScenarioName::Backlog if o.herald_url.is_some() => {
                Some("it restarts herald, which --herald-url does not allow".into())
            }
            ScenarioName::Backlog if o.sink_url.is_some() => Some(
                "it starts its own sink on a port it chose, which --sink-url does not allow".into(),
            ),
            _ => None,
        };
        (method, skipped)
    }

    /// One run of scenario `name`: pushes one [`Measured`] per case.
    async fn scenario(
        &mut self,
        name: ScenarioName,
        measured: &mut Vec<Measured>,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        for nodes in stores(self.options) {
            self.nodes = nodes;
            let first = measured.len();
            match name {
                ScenarioName::Throughput => {
                    for webhooks in self.options.webhooks.clone() {
                        for clients in self.options.clients.clone() {
                            measured.push(self.throughput(webhooks, clients).await?);
                        }
                    }
                }
                ScenarioName::Latency => {
                    measured.push(self.latency(Some(self.options.latency_rate)).await?);
                    measured.push(self.latency(None).await?);
                }
                ScenarioName::Backlog => measured.push(self.backlog().await?),
                ScenarioName::Outage => measured.push(self.outage().await?),
                ScenarioName::Retry => measured.push(self.retry().await?),
            }
            for m in &mut measured[first..] {
                m.case = case_name(nodes, &m.case);
            }
            for m in &measured[first..] {
                let show = |metrics: &Metrics, key: &str| {
                    metrics.get(key).map_or("-".to_string(), |v| format!("{v:.1}"))
                };
                writeln!(
                    out,
                    "  {}: {} deliveries/s (raw {}), p99 {} ms (raw {}){}",
                    m.case,
                    show(&m.run.herald, "deliveries_per_s"),
                    show(&m.run.raw, "deliveries_per_s"),
                    show(&m.run.herald, "e2e_p99_ms"),
                    show(&m.run.raw, "e2e_p99_ms"),
                    if m.run.notes.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", m.run.notes.join("; "))
                    }
                )?;
                out.flush()?;
            }
        }
        Ok(())
    }
}

impl Suite<'_> {
    /// Drops the PostgreSQL schemas of the runs so far; one that cannot be dropped is
    /// named on `out` (drop it by hand) and not tried again.
    async fn drop_schemas(&mut self, out: &mut impl Write) -> anyhow::Result<()> {
        let options = self.options;
        let Some(url) = &options.database else { return Ok(()) };
        for schema in std::mem::take(&mut self.schemas) {
            if let Err(error) = PgStore::drop_schema(url, &schema).await {
                writeln!(out, "  cannot drop the schema {schema}: {error}")?;
            }
        }
        Ok(())
    }
}
