//! The suite: starts the sink process, then for each scenario and run a fresh `herald
//! serve` process on a fresh SQLite file and the load client process, measures herald,
//! then the raw baseline (the load client straight to the sink), and writes the report.
//!
//! Scenarios (issue 11): throughput (broadcasts × webhooks × clients, closed loop),
//! latency (a fixed offered rate, and one client), backlog (deliveries queued for an
//! unreachable port, SIGKILL, restart with the sink up), outage (one destination
//! answering 503 for a while among five healthy ones) and retry (a share of random
//! 503s). Every phase is bounded by `--max-seconds`; a phase the cap cuts says so in its
//! notes, and its figures are of what was done by then.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::bench::load::{Summary, Target};
use crate::bench::report::{self, Measured, Metrics, Report, Run, Scenario};
use crate::bench::sink::{BUCKET_NANOS, Plan, Reset, Stats};
use crate::bench::{percentile_ms, procfs, wall_nanos};
use crate::demo::ALLOW_LOOPBACK;
use crate::torture::HeraldProcess;

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
}

/// The destinations of the outage scenario: five healthy ones, then the one that fails.
const OUTAGE_HEALTHY: usize = 5;

/// A sink process (or an external sink) and its base URL.
struct Sink {
    base: String,
    /// `None` for an external sink; killed on drop.
    _child: Option<Child>,
}

impl Sink {
    /// Starts `exe bench sink --listen listen` and waits for its listening line.
    async fn spawn(exe: &Path, listen: &str) -> anyhow::Result<Sink> {
        let mut child = Command::new(exe)
            .args(["bench", "sink", "--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the sink {}", exe.display()))?;
        let stdout = child.stdout.take().context("the sink's stdout was not captured")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the sink did not start listening within 30 s")?
            .context("reading the sink's output")?
            .context("the sink exited before listening")?;
        let base = line
            .strip_prefix("herald bench sink listening on ")
            .with_context(|| format!("unexpected first line from the sink: {line:?}"))?
            .trim()
            .to_string();
        Ok(Sink { base, _child: Some(child) })
    }
}

/// herald as the suite drives it: a process it started, or one already running.
struct Herald {
    process: Option<HeraldProcess>,
    base: String,
    pid: Option<u32>,
}

impl Herald {
    fn cpu_seconds(&self) -> f64 {
        self.pid.and_then(procfs::cpu_seconds).unwrap_or(f64::NAN)
    }

    fn memory_mib(&self, field: &str) -> f64 {
        self.pid.and_then(|pid| procfs::memory_mib(pid, field)).unwrap_or(f64::NAN)
    }

    /// SIGKILLs a herald the suite started; leaves an external one alone.
    async fn kill(self) -> anyhow::Result<()> {
        match self.process {
            Some(process) => process.kill().await,
            None => Ok(()),
        }
    }
}

/// One load or raw phase's request.
struct PhaseSpec {
    /// Destinations submitted to (herald) or posted to in turn (raw).
    names: Vec<String>,
    /// Broadcasts (herald) or requests (raw).
    count: usize,
    clients: usize,
    rate: Option<f64>,
    /// Keep per-delivery records for latencies.
    record: bool,
    plans: HashMap<String, Plan>,
    /// The destinations whose deliveries the phase waits for and measures.
    measured: Vec<String>,
    /// The load is meant to end at the time cap (one client for a while): not a cut.
    timed: Option<f64>,
}

/// What a phase did.
struct Phase {
    load: Summary,
    stats: Stats,
    /// Submit→receipt of the measured destinations' deliveries, sorted.
    latencies: Vec<Duration>,
    /// herald's CPU seconds over the phase (NaN for raw or unknown).
    cpu_seconds: f64,
    delivered: u64,
    expected: u64,
    notes: Vec<String>,
}

impl Phase {
    /// Deliveries per second from the first send to the last measured receipt.
    fn rate(&self) -> f64 {
        let span = self.stats.last_ns.saturating_sub(self.load.started_ns) as f64 / 1e9;
        if span > 0.0 { self.delivered as f64 / span } else { f64::NAN }
    }

    /// The figures every phase has.
    fn metrics(&self, prefix: &str) -> Metrics {
        let mut m = Metrics::new();
        m.insert("deliveries".into(), self.delivered as f64);
        m.insert("expected_deliveries".into(), self.expected as f64);
        m.insert("deliveries_per_s".into(), self.rate());
        let elapsed = self.load.elapsed_s();
        if elapsed > 0.0 {
            m.insert("accepted_per_s".into(), self.load.accepted as f64 / elapsed);
        }
        if !self.latencies.is_empty() {
            for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0)] {
                m.insert(format!("{prefix}_{name}_ms"), percentile_ms(&self.latencies, p));
            }
        }
        if !self.cpu_seconds.is_nan() && self.delivered > 0 {
            m.insert(
                "cpu_ms_per_delivery".into(),
                self.cpu_seconds * 1000.0 / self.delivered as f64,
            );
        }
        m
    }

    /// Deliveries per second per sink bucket, from the load's start.
    fn timeline(&self) -> Vec<(f64, f64)> {
        let Some(&(first, _)) = self.stats.buckets.first() else { return Vec::new() };
        let counts: BTreeMap<u64, u64> = self.stats.buckets.iter().copied().collect();
        let last = self.stats.buckets.last().map_or(first, |b| b.0);
        let start = self.load.started_ns / BUCKET_NANOS * BUCKET_NANOS;
        let mut res = Vec::new();
        let mut at = start.min(first);
        while at <= last {
            let per_s = counts.get(&at).copied().unwrap_or(0) as f64 * 1e9 / BUCKET_NANOS as f64;
            res.push((at.saturating_sub(start) as f64 / 1e9, per_s));
            at += BUCKET_NANOS;
        }
        res
    }
}

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
    let mut suite =
        Suite { options, exe, herald_bin, sink, http: reqwest::Client::new(), work, seq: 0 };
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
                match suite.scenario(name, &mut measured, out).await {
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
    if !(options.latency_rate > 0.0 && options.outage_rate > 0.0 && options.max_seconds > 0.0) {
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
    Ok(())
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
        let before = measured.len();
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
        for m in &measured[before..] {
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
        Ok(())
    }

    async fn throughput(&mut self, webhooks: usize, clients: usize) -> anyhow::Result<Measured> {
        let o = self.options;
        let herald_names = names("bench", webhooks);
        let herald = self.start_herald(&herald_names, "", None).await?;
        let phase = self
            .herald_phase(
                &herald,
                PhaseSpec {
                    names: herald_names.clone(),
                    count: o.broadcasts,
                    clients,
                    rate: None,
                    record: true,
                    plans: HashMap::new(),
                    measured: herald_names,
                    timed: None,
                },
            )
            .await;
        let peak = herald.memory_mib("VmHWM");
        herald.kill().await?;
        let phase = phase?;
        let raw = self
            .raw_phase(webhooks, o.broadcasts * webhooks, clients, None, HashMap::new(), None)
            .await?;
        let mut m = measured(
            format!("{} broadcasts x {webhooks} webhook(s), {clients} clients", o.broadcasts),
            &phase,
            &raw,
        );
        m.run.herald.insert("peak_rss_mib".into(), peak);
        m.run.herald.insert("answer_p50_ms".into(), phase.load.answer_p50_ms);
        m.run.herald.insert("answer_p99_ms".into(), phase.load.answer_p99_ms);
        percent_of_raw(&mut m.run);
        Ok(m)
    }

    /// The fixed-rate case with `Some(rate)`, the one-client case with `None`.
    async fn latency(&mut self, rate: Option<f64>) -> anyhow::Result<Measured> {
        let o = self.options;
        let webhooks = o.latency_webhooks;
        let seconds = o.latency_for.as_secs_f64();
        let (count, clients, timed, case) = match rate {
            Some(rate) => (
                (rate * seconds).ceil() as usize,
                1,
                None,
                format!("{rate} broadcasts/s x {webhooks} webhooks, open loop"),
            ),
            None => (usize::MAX / 2, 1, Some(seconds), format!("1 client x {webhooks} webhooks")),
        };
        let herald_names = names("bench", webhooks);
        let herald = self.start_herald(&herald_names, "", None).await?;
        let phase = self
            .herald_phase(
                &herald,
                PhaseSpec {
                    names: herald_names.clone(),
                    count,
                    clients,
                    rate,
                    record: true,
                    plans: HashMap::new(),
                    measured: herald_names,
                    timed,
                },
            )
            .await;
        let peak = herald.memory_mib("VmHWM");
        herald.kill().await?;
        let phase = phase?;
        let raw_count = if timed.is_some() { count } else { count * webhooks };
        let raw_rate = rate.map(|r| r * webhooks as f64);
        let raw =
            self.raw_phase(webhooks, raw_count, clients, raw_rate, HashMap::new(), timed).await?;
        let mut m = measured(case, &phase, &raw);
        m.run.herald.insert("peak_rss_mib".into(), peak);
        if let Some(rate) = rate {
            m.run.herald.insert("offered_broadcasts_per_s".into(), rate);
            m.run.herald.insert("load_lag_ms".into(), phase.load.lag_ms);
        }
        Ok(m)
    }

    async fn backlog(&mut self) -> anyhow::Result<Measured> {
        let o = self.options;
        let webhooks = o.backlog_webhooks;
        let broadcasts = o.backlog.div_ceil(webhooks);
        // A port nothing listens on until the sink comes up there after the restart.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port for the unreachable destinations")?
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let herald_names = names("bench", webhooks);
        let policy = "max_attempts = 1000\nbackoff_max = \"5s\"\n";
        let dir = self.fresh_dir("backlog")?;
        let config = self.write_config(&dir, &herald_names, policy, &base)?;
        let herald = self.spawn_herald(&config, &dir).await?;
        let mut notes = Vec::new();
        let seeding = self
            .load(
                Target::Herald,
                &herald.base,
                &herald_names,
                broadcasts,
                32,
                None,
                None,
                o.max_seconds,
            )
            .await;
        let seeding = match seeding {
            Ok(seeding) => seeding,
            Err(error) => {
                herald.kill().await?;
                return Err(error);
            }
        };
        if seeding.cut {
            notes.push(format!(
                "--max-seconds cut the seeding at {} of {broadcasts} broadcasts",
                seeding.accepted
            ));
        }
        if seeding.failed > 0 {
            notes.push(failures(&seeding));
        }
        // Let the lanes settle into waiting before reading the resident set.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let queued_rss = herald.memory_mib("VmRSS");
        let seeding_peak = herald.memory_mib("VmHWM");
        herald.kill().await?;
        let database_mib = dir_mib(&dir);
        let expected = seeding.accepted * webhooks as u64;

        let sink = Sink::spawn(&self.exe, &format!("127.0.0.1:{port}")).await?;
        self.reset_at(&sink.base, false, HashMap::new()).await?;
        let spawned_ns = wall_nanos();
        let herald = self.spawn_herald(&config, &dir).await?;
        let cpu_before = herald.cpu_seconds();
        let deadline = Instant::now() + Duration::from_secs_f64(o.max_seconds);
        let waited = self.wait_delivered(&sink.base, &herald_names, expected, deadline).await;
        let cpu = herald.cpu_seconds() - cpu_before;
        let drain_peak = herald.memory_mib("VmHWM");
        herald.kill().await?;
        let (stats, done) = waited?;
        let delivered = stats.delivered(&herald_names);
        if !done {
            notes.push(format!(
                "--max-seconds ({}) cut the drain at {delivered} of {expected} deliveries",
                o.max_seconds
            ));
        }
        let mut run = Run { notes, ..Run::default() };
        let h = &mut run.herald;
        h.insert("pending_deliveries".into(), expected as f64);
        h.insert("seeding_s".into(), seeding.elapsed_s());
        h.insert("seeding_broadcasts_per_s".into(), seeding.accepted as f64 / seeding.elapsed_s());
        h.insert("queued_rss_mib".into(), queued_rss);
        h.insert("seeding_peak_rss_mib".into(), seeding_peak);
        h.insert("database_mib".into(), database_mib);
        h.insert("deliveries".into(), delivered as f64);
        if stats.first_ns > 0 {
            h.insert(
                "restart_to_first_delivery_ms".into(),
                (stats.first_ns.saturating_sub(spawned_ns)) as f64 / 1e6,
            );
            let span = stats.last_ns.saturating_sub(stats.first_ns) as f64 / 1e9;
            if span > 0.0 {
                h.insert("deliveries_per_s".into(), delivered as f64 / span);
            }
        }
        h.insert("drain_peak_rss_mib".into(), drain_peak);
        if delivered > 0 {
            h.insert("cpu_ms_per_delivery".into(), cpu * 1000.0 / delivered as f64);
        }
        let timeline = {
            let phase = Phase {
                load: Summary { started_ns: spawned_ns, ..Summary::default() },
                stats,
                latencies: Vec::new(),
                cpu_seconds: f64::NAN,
                delivered,
                expected,
                notes: Vec::new(),
            };
            phase.timeline()
        };
        // The raw baseline on the same sink: up to 200,000 requests from 32 clients.
        let raw_count = o.backlog.min(200_000);
        let raw_names = names("raw", webhooks);
        self.seq += 1;
        let prefix = format!("raw{}", self.seq);
        self.reset_at(&sink.base, false, HashMap::new()).await?;
        let load = self
            .load_at(
                Target::Sink,
                &sink.base,
                &raw_names,
                raw_count,
                32,
                None,
                None,
                o.max_seconds,
                &prefix,
            )
            .await?;
        let stats = self.stats_at(&sink.base).await?;
        let raw = Phase {
            delivered: stats.delivered(&raw_names),
            expected: raw_count as u64,
            load,
            stats,
            latencies: Vec::new(),
            cpu_seconds: f64::NAN,
            notes: Vec::new(),
        };
        run.raw.insert("deliveries_per_s".into(), raw.rate());
        run.raw.insert("deliveries".into(), raw.delivered as f64);
        percent_of_raw(&mut run);
        drop(sink);
        Ok(Measured {
            case: format!(
                "{} pending deliveries ({broadcasts} broadcasts x {webhooks} webhooks)",
                o.backlog
            ),
            run,
            timeline,
            raw_timeline: raw.timeline(),
            ..Measured::default()
        })
    }

    async fn outage(&mut self) -> anyhow::Result<Measured> {
        let o = self.options;
        let herald_names = names("bench", OUTAGE_HEALTHY + 1);
        let healthy: Vec<String> = herald_names[..OUTAGE_HEALTHY].to_vec();
        let dead = herald_names[OUTAGE_HEALTHY].clone();
        let seconds = o.outage_for.as_secs_f64();
        let count = (o.outage_rate * seconds).ceil() as usize;
        let spec = |plans| PhaseSpec {
            names: herald_names.clone(),
            count,
            clients: 1,
            rate: Some(o.outage_rate),
            record: true,
            plans,
            measured: healthy.clone(),
            timed: None,
        };
        // Without the outage first, then with it, each on a fresh herald.
        let herald = self.start_herald(&herald_names, "", None).await?;
        let calm = self.herald_phase(&herald, spec(HashMap::new())).await;
        herald.kill().await?;
        let calm = calm?;
        let herald = self.start_herald(&herald_names, "", None).await?;
        // The outage starts with the load: the sink's window is set at the phase's reset.
        let stormy = self
            .herald_phase_with(&herald, spec(HashMap::new()), Some((dead.clone(), o.outage_for)))
            .await;
        let peak = herald.memory_mib("VmHWM");
        herald.kill().await?;
        let stormy = stormy?;
        let raw_count = ((o.outage_rate * seconds.min(10.0)).ceil() as usize) * OUTAGE_HEALTHY;
        let raw = self
            .raw_phase(
                OUTAGE_HEALTHY,
                raw_count,
                1,
                Some(o.outage_rate * OUTAGE_HEALTHY as f64),
                HashMap::new(),
                None,
            )
            .await?;
        let mut m = measured(
            format!(
                "{} broadcasts/s x ({OUTAGE_HEALTHY} healthy + 1 dead) for {}",
                o.outage_rate,
                humantime::format_duration(o.outage_for)
            ),
            &stormy,
            &raw,
        );
        m.run.notes.extend(calm.notes.iter().map(|n| format!("without the outage: {n}")));
        let h = &mut m.run.herald;
        let calm_p99 = percentile_ms(&calm.latencies, 99.0);
        let stormy_p99 = percentile_ms(&stormy.latencies, 99.0);
        h.insert("healthy_p50_ms".into(), percentile_ms(&stormy.latencies, 50.0));
        h.insert("healthy_p99_ms".into(), stormy_p99);
        h.insert("healthy_p50_ms_without_outage".into(), percentile_ms(&calm.latencies, 50.0));
        h.insert("healthy_p99_ms_without_outage".into(), calm_p99);
        h.insert("healthy_p99_change_pct".into(), (stormy_p99 - calm_p99) / calm_p99 * 100.0);
        let dead_counts = stormy.stats.destinations.get(&dead).copied().unwrap_or_default();
        h.insert("requests_to_dead".into(), dead_counts.rejected as f64);
        h.insert("dead_deliveries_expected".into(), stormy.load.accepted as f64);
        h.insert(
            "dead_requests_per_broadcast".into(),
            dead_counts.rejected as f64 / stormy.load.accepted.max(1) as f64,
        );
        h.insert("peak_rss_mib".into(), peak);
        m.run.raw.insert("healthy_p99_ms".into(), percentile_ms(&raw.latencies, 99.0));
        m.run.raw.insert("healthy_p50_ms".into(), percentile_ms(&raw.latencies, 50.0));
        Ok(m)
    }

    async fn retry(&mut self) -> anyhow::Result<Measured> {
        let o = self.options;
        let webhooks = 5;
        let herald_names = names("bench", webhooks);
        let failing = |names: &[String]| {
            names
                .iter()
                .map(|n| (n.clone(), Plan { fail_rate: o.retry_fail_rate, down_until_ns: 0 }))
                .collect::<HashMap<_, _>>()
        };
        let policy = "max_attempts = 50\nbackoff_base = \"100ms\"\nbackoff_max = \"2s\"\n";
        let herald = self.start_herald(&herald_names, policy, None).await?;
        let phase = self
            .herald_phase(
                &herald,
                PhaseSpec {
                    names: herald_names.clone(),
                    count: o.retry_broadcasts,
                    clients: 8,
                    rate: None,
                    record: false,
                    plans: failing(&herald_names),
                    measured: herald_names.clone(),
                    timed: None,
                },
            )
            .await;
        let peak = herald.memory_mib("VmHWM");
        herald.kill().await?;
        let phase = phase?;
        let raw_names = names("raw", webhooks);
        let raw = self
            .raw_phase(webhooks, o.retry_broadcasts * webhooks, 8, None, failing(&raw_names), None)
            .await?;
        let mut m = measured(
            format!(
                "{} broadcasts x {webhooks} webhooks, {:.0} % random 503s",
                o.retry_broadcasts,
                o.retry_fail_rate * 100.0
            ),
            &phase,
            &raw,
        );
        let per = |p: &Phase, names: &[String]| {
            p.stats.requests(names) as f64 / p.delivered.max(1) as f64
        };
        m.run.herald.insert("requests_per_delivered".into(), per(&phase, &herald_names));
        m.run.herald.insert("requests".into(), phase.stats.requests(&herald_names) as f64);
        m.run.herald.insert("peak_rss_mib".into(), peak);
        m.run.raw.insert("requests_per_delivered".into(), per(&raw, &raw_names));
        m.run.raw.insert("ideal_requests_per_delivered".into(), 1.0 / (1.0 - o.retry_fail_rate));
        Ok(m)
    }

    /// A fresh herald with webhook destinations `names` at the sink (or at `base`), the
    /// `policy` lines in each; or the external one.
    async fn start_herald(
        &mut self,
        names: &[String],
        policy: &str,
        base: Option<&str>,
    ) -> anyhow::Result<Herald> {
        if let Some(url) = &self.options.herald_url {
            return Ok(Herald {
                process: None,
                base: url.trim_end_matches('/').to_string(),
                pid: self.options.herald_pid,
            });
        }
        let dir = self.fresh_dir("herald")?;
        let base = base.map_or_else(|| self.sink.base.clone(), str::to_string);
        let config = self.write_config(&dir, names, policy, &base)?;
        self.spawn_herald(&config, &dir).await
    }

    fn fresh_dir(&mut self, what: &str) -> anyhow::Result<PathBuf> {
        self.seq += 1;
        let dir = self.work.path().join(format!("{what}-{}", self.seq));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }

    /// herald's configuration for a run: loopback listener, SQLite in `dir`, one webhook
    /// destination per name at `base/d/NAME`.
    fn write_config(
        &self,
        dir: &Path,
        names: &[String],
        policy: &str,
        base: &str,
    ) -> anyhow::Result<PathBuf> {
        let mut text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n{ALLOW_LOOPBACK}",
            dir.join("bench.db").display()
        );
        for name in names {
            text.push_str(&format!(
                "[destinations.{name}]\nkind = \"webhook\"\nurl = \"{base}/d/{name}\"\nconcurrency = {}\n{policy}\n",
                self.options.concurrency
            ));
        }
        let path = dir.join("herald.toml");
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    async fn spawn_herald(&self, config: &Path, dir: &Path) -> anyhow::Result<Herald> {
        let process =
            HeraldProcess::start(&self.herald_bin, config, &dir.join("herald.log")).await?;
        let pid = process.pid();
        let base = process.base.clone();
        Ok(Herald { process: Some(process), base, pid })
    }

    async fn herald_phase(&mut self, herald: &Herald, spec: PhaseSpec) -> anyhow::Result<Phase> {
        self.herald_phase_with(herald, spec, None).await
    }

    /// A load on herald, then the wait for its deliveries; with `outage = (name, for)`,
    /// that destination answers 503 from the load's start for that long.
    async fn herald_phase_with(
        &mut self,
        herald: &Herald,
        mut spec: PhaseSpec,
        outage: Option<(String, Duration)>,
    ) -> anyhow::Result<Phase> {
        let started = Instant::now();
        if let Some((name, lasting)) = &outage {
            let until = wall_nanos() + lasting.as_nanos() as u64;
            spec.plans.insert(name.clone(), Plan { fail_rate: 0.0, down_until_ns: until });
        }
        self.reset_at(&self.sink.base.clone(), spec.record, spec.plans.clone()).await?;
        let cpu_before = herald.cpu_seconds();
        let records =
            spec.record.then(|| self.work.path().join(format!("load-{}.tsv", self.seq + 1)));
        self.seq += 1;
        let max_seconds = spec.timed.unwrap_or(self.options.max_seconds);
        let load = self
            .load(
                Target::Herald,
                &herald.base,
                &spec.names,
                spec.count,
                spec.clients,
                spec.rate,
                records.as_deref(),
                max_seconds,
            )
            .await?;
        let expected = load.accepted * spec.measured.len() as u64;
        let deadline = (started + Duration::from_secs_f64(self.options.max_seconds))
            .max(Instant::now() + Duration::from_secs(10));
        let (stats, done) = self
            .wait_delivered(&self.sink.base.clone(), &spec.measured, expected, deadline)
            .await?;
        let cpu_seconds = herald.cpu_seconds() - cpu_before;
        let delivered = stats.delivered(&spec.measured);
        let mut notes = Vec::new();
        if load.cut && spec.timed.is_none() {
            notes.push(format!(
                "--max-seconds cut the load at {} of {} broadcasts",
                load.sent, spec.count
            ));
        }
        if load.failed > 0 {
            notes.push(failures(&load));
        }
        if !done {
            notes.push(format!(
                "--max-seconds ({}) ran out waiting: {delivered} of {expected} deliveries",
                self.options.max_seconds
            ));
        }
        let latencies = match &records {
            Some(path) => {
                let submitted = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the load records {}", path.display()))?;
                let received = self.records_at(&self.sink.base.clone()).await?;
                match_latencies(&submitted, &received, &spec.measured)
            }
            None => Vec::new(),
        };
        Ok(Phase { load, stats, latencies, cpu_seconds, delivered, expected, notes })
    }

    /// The raw baseline: `count` requests to `raw-0` ... `raw-(webhooks-1)` in turn.
    async fn raw_phase(
        &mut self,
        webhooks: usize,
        count: usize,
        clients: usize,
        rate: Option<f64>,
        plans: HashMap<String, Plan>,
        timed: Option<f64>,
    ) -> anyhow::Result<Phase> {
        let raw_names = names("raw", webhooks);
        self.seq += 1;
        let prefix = format!("raw{}", self.seq);
        let records = self.work.path().join(format!("raw-{}.tsv", self.seq));
        let base = self.sink.base.clone();
        self.reset_at(&base, true, plans).await?;
        let max_seconds = timed.unwrap_or(self.options.max_seconds);
        let load = self
            .load_at(
                Target::Sink,
                &base,
                &raw_names,
                count,
                clients,
                rate,
                Some(&records),
                max_seconds,
                &prefix,
            )
            .await?;
        let stats = self.stats_at(&base).await?;
        let submitted = std::fs::read_to_string(&records)
            .with_context(|| format!("cannot read the load records {}", records.display()))?;
        let received = self.records_at(&base).await?;
        let latencies = match_latencies(&submitted, &received, &raw_names);
        let mut notes = Vec::new();
        if load.cut && timed.is_none() {
            notes.push(format!(
                "--max-seconds cut the raw baseline at {} of {count} requests",
                load.sent
            ));
        }
        Ok(Phase {
            delivered: stats.delivered(&raw_names),
            expected: load.sent,
            load,
            stats,
            latencies,
            cpu_seconds: f64::NAN,
            notes,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn load(
        &mut self,
        target: Target,
        url: &str,
        names: &[String],
        count: usize,
        clients: usize,
        rate: Option<f64>,
        records: Option<&Path>,
        max_seconds: f64,
    ) -> anyhow::Result<Summary> {
        self.load_at(target, url, names, count, clients, rate, records, max_seconds, "raw").await
    }

    /// Runs `herald bench load` to completion and reads its summary.
    #[allow(clippy::too_many_arguments)]
    async fn load_at(
        &mut self,
        target: Target,
        url: &str,
        names: &[String],
        count: usize,
        clients: usize,
        rate: Option<f64>,
        records: Option<&Path>,
        max_seconds: f64,
        prefix: &str,
    ) -> anyhow::Result<Summary> {
        let mut command = Command::new(&self.exe);
        command
            .args(["bench", "load", "--url", url, "--destinations", &names.join(",")])
            .args(["--count", &count.to_string(), "--clients", &clients.to_string()])
            .args(["--max-seconds", &max_seconds.to_string(), "--id-prefix", prefix])
            .args(["--target", if target == Target::Herald { "herald" } else { "sink" }])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(rate) = rate {
            command.args(["--rate", &rate.to_string()]);
        }
        if let Some(path) = records {
            command.arg("--records").arg(path);
        }
        if let (Target::Herald, Some(file)) = (target, &self.options.herald_token_file) {
            command.arg("--herald-token-file").arg(file);
        }
        let output =
            tokio::time::timeout(Duration::from_secs_f64(max_seconds + 60.0), command.output())
                .await
                .context("the load client did not end within --max-seconds + 60 s")?
                .context("cannot run the load client")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "the load client failed: {}{}",
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let line = stdout.lines().last().context("the load client printed no summary")?;
        serde_json::from_str(line)
            .with_context(|| format!("the load client's summary is not JSON: {line}"))
    }

    async fn reset_at(
        &self,
        base: &str,
        record: bool,
        plans: HashMap<String, Plan>,
    ) -> anyhow::Result<()> {
        let reset = Reset { record, seed: self.options.seed, plans };
        let res = self.http.post(format!("{base}/_reset")).json(&reset).send().await;
        let res = res.with_context(|| format!("cannot reach the sink at {base}"))?;
        if !res.status().is_success() {
            bail!(
                "the sink at {base} answered {} to a reset (is it a `herald bench sink`?)",
                res.status()
            );
        }
        Ok(())
    }

    async fn stats_at(&self, base: &str) -> anyhow::Result<Stats> {
        let res = self.http.get(format!("{base}/_stats")).send().await;
        let res = res.with_context(|| format!("cannot reach the sink at {base}"))?;
        res.json().await.context("reading the sink's stats")
    }

    async fn records_at(&self, base: &str) -> anyhow::Result<String> {
        let res = self.http.get(format!("{base}/_records")).send().await;
        let res = res.with_context(|| format!("cannot reach the sink at {base}"))?;
        res.text().await.context("reading the sink's records")
    }

    /// Polls the sink until `names` got `expected` deliveries or `deadline` passes;
    /// the last stats and whether they all came.
    async fn wait_delivered(
        &self,
        base: &str,
        names: &[String],
        expected: u64,
        deadline: Instant,
    ) -> anyhow::Result<(Stats, bool)> {
        loop {
            let stats = self.stats_at(base).await?;
            if stats.delivered(names) >= expected {
                return Ok((stats, true));
            }
            if Instant::now() >= deadline {
                return Ok((stats, false));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A case's figures from herald's phase and the raw phase.
fn measured(case: String, phase: &Phase, raw: &Phase) -> Measured {
    let mut run =
        Run { herald: phase.metrics("e2e"), raw: raw.metrics("e2e"), notes: phase.notes.clone() };
    run.notes.extend(raw.notes.iter().cloned());
    run.raw.remove("expected_deliveries");
    Measured {
        case,
        run,
        latencies: phase.latencies.clone(),
        raw_latencies: raw.latencies.clone(),
        timeline: phase.timeline(),
        raw_timeline: raw.timeline(),
    }
}

/// herald's deliveries per second as a share of the raw baseline's, %.
fn percent_of_raw(run: &mut Run) {
    if let (Some(herald), Some(raw)) =
        (run.herald.get("deliveries_per_s"), run.raw.get("deliveries_per_s"))
    {
        let pct = herald / raw * 100.0;
        run.herald.insert("pct_of_raw_rate".into(), pct);
    }
}

/// The note for failed requests.
fn failures(load: &Summary) -> String {
    format!(
        "{} of {} requests failed; the first: {}",
        load.failed,
        load.sent,
        load.first_error.as_deref().unwrap_or("-")
    )
}

/// Submit→receipt of each delivery to `names`: the load's `id \t submit ns` lines
/// against the sink's `name \t id \t receipt ns` lines, the first receipt per
/// (destination, id) (a retried or duplicate copy is not a new delivery); sorted.
fn match_latencies(submitted: &str, received: &str, names: &[String]) -> Vec<Duration> {
    let submits: HashMap<&str, u64> = submitted
        .lines()
        .filter_map(|line| {
            let (id, at) = line.split_once('\t')?;
            Some((id, at.parse().ok()?))
        })
        .collect();
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    let mut res = Vec::new();
    for line in received.lines() {
        let mut fields = line.split('\t');
        let (Some(name), Some(id), Some(at)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if !wanted.contains(name) || !seen.insert((name, id)) {
            continue;
        }
        let (Some(&sent), Ok(at)) = (submits.get(id), at.parse::<u64>()) else { continue };
        res.push(Duration::from_nanos(at.saturating_sub(sent)));
    }
    res.sort();
    res
}

/// The size of the files in `dir`, MiB (the database and its WAL).
fn dir_mib(dir: &Path) -> f64 {
    let bytes: u64 = std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
        })
        .unwrap_or(0);
    bytes as f64 / (1024.0 * 1024.0)
}
