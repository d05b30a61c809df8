//! The building blocks of the scenarios: the sink and herald processes, a load on
//! herald followed by the wait for its deliveries, the raw baseline, and matching
//! submits with receipts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use herald_store::postgres::PgStore;

use crate::bench::inproc::balanced;
use crate::bench::load::{Summary, Target};
use crate::bench::report::Metrics;
use crate::bench::sink::{BUCKET_NANOS, Plan, Reset, Stats};
use crate::bench::suite::{Suite, names};
use crate::bench::{percentile_ms, procfs, wall_nanos};
use crate::demo::ALLOW_LOOPBACK;
use crate::torture::HeraldProcess;

/// A sink process (or an external sink) and its base URL.
pub(super) struct Sink {
    pub(super) base: String,
    /// `None` for an external sink; killed on drop.
    pub(super) _child: Option<Child>,
}

impl Sink {
    /// Starts `exe bench sink --listen listen` and waits for its listening line.
    pub(super) async fn spawn(exe: &Path, listen: &str) -> anyhow::Result<Sink> {
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

/// herald as the suite drives it: the processes it started (one per node), or one
/// already running.
pub(super) struct Herald {
    /// The nodes the suite started, killed together; empty for an external herald.
    pub(super) processes: Vec<HeraldProcess>,
    /// Each node's API base URL.
    pub(super) bases: Vec<String>,
    /// Each node's process id, for `/proc`.
    pub(super) pids: Vec<u32>,
    /// The nodes share a PostgreSQL database (figures summed over nodes are reported).
    pub(super) shared: bool,
}

impl Herald {
    /// The load client's `--url`: every node's API, comma-separated.
    pub(super) fn url(&self) -> String {
        self.bases.join(",")
    }

    /// CPU seconds used by all nodes; NaN when any is unknown.
    pub(super) fn cpu_seconds(&self) -> f64 {
        if self.pids.is_empty() {
            return f64::NAN;
        }
        self.pids.iter().map(|&pid| procfs::cpu_seconds(pid).unwrap_or(f64::NAN)).sum()
    }

    /// The largest node's memory figure (`VmHWM`, `VmRSS`); NaN when unknown.
    pub(super) fn memory_mib(&self, field: &str) -> f64 {
        self.node_memory(field).reduce(f64::max).unwrap_or(f64::NAN)
    }

    /// The memory figure summed over the nodes; NaN when any is unknown.
    pub(super) fn memory_sum_mib(&self, field: &str) -> f64 {
        self.node_memory(field).reduce(|a, b| a + b).unwrap_or(f64::NAN)
    }

    fn node_memory(&self, field: &str) -> impl Iterator<Item = f64> {
        self.pids.iter().map(move |&pid| procfs::memory_mib(pid, field).unwrap_or(f64::NAN))
    }

    /// The peak RSS figures under `name`: the largest node's, and on PostgreSQL also the
    /// sum over the nodes (`name` with `_sum`).
    pub(super) fn peak_rss(&self, name: &str) -> Vec<(String, f64)> {
        let mut res = vec![(format!("{name}_mib"), self.memory_mib("VmHWM"))];
        if self.shared {
            res.push((format!("{name}_sum_mib"), self.memory_sum_mib("VmHWM")));
        }
        res
    }

    /// SIGKILLs the nodes the suite started, all of them even if one fails; leaves an
    /// external herald alone.
    pub(super) async fn kill(self) -> anyhow::Result<()> {
        let mut res = Ok(());
        for process in self.processes {
            if let Err(error) = process.kill().await {
                res = Err(error);
            }
        }
        res
    }
}

/// What a herald is started from, again after a SIGKILL: one configuration per node.
pub(super) struct Deployment {
    /// The run's directory: configurations, logs, and the SQLite database.
    pub(super) dir: PathBuf,
    configs: Vec<PathBuf>,
    /// The destinations, which must all be driven before a cluster takes load.
    names: Vec<String>,
    /// On PostgreSQL (every node on one schema).
    pub(super) shared: bool,
}

/// One load or raw phase's request.
pub(super) struct PhaseSpec {
    /// Destinations submitted to (herald) or posted to in turn (raw).
    pub(super) names: Vec<String>,
    /// Broadcasts (herald) or requests (raw).
    pub(super) count: usize,
    pub(super) clients: usize,
    pub(super) rate: Option<f64>,
    /// Keep per-delivery records for latencies.
    pub(super) record: bool,
    pub(super) plans: HashMap<String, Plan>,
    /// The destinations whose deliveries the phase waits for and measures.
    pub(super) measured: Vec<String>,
    /// The load is meant to end at the time cap (one client for a while): not a cut.
    pub(super) timed: Option<f64>,
}

/// What a phase did.
pub(super) struct Phase {
    pub(super) load: Summary,
    pub(super) stats: Stats,
    /// Submit→receipt of the measured destinations' deliveries, sorted.
    pub(super) latencies: Vec<Duration>,
    /// herald's CPU seconds over the phase (NaN for raw or unknown).
    pub(super) cpu_seconds: f64,
    pub(super) delivered: u64,
    pub(super) expected: u64,
    pub(super) notes: Vec<String>,
}

impl Phase {
    /// Deliveries per second from the first send to the last measured receipt.
    pub(super) fn rate(&self) -> f64 {
        let span = self.stats.last_ns.saturating_sub(self.load.started_ns) as f64 / 1e9;
        if span > 0.0 { self.delivered as f64 / span } else { f64::NAN }
    }

    /// The figures every phase has.
    pub(super) fn metrics(&self, prefix: &str) -> Metrics {
        let mut m = Metrics::new();
        m.insert("deliveries".into(), self.delivered as f64);
        m.insert("expected_deliveries".into(), self.expected as f64);
        m.insert("deliveries_per_s".into(), self.rate());
        let elapsed = self.load.elapsed_s();
        if elapsed > 0.0 {
            m.insert("accepted_per_s".into(), self.load.accepted as f64 / elapsed);
        }
        if self.load.retried > 0 {
            m.insert("submits_retried".into(), self.load.retried as f64);
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
    pub(super) fn timeline(&self) -> Vec<(f64, f64)> {
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

impl Suite<'_> {
    /// A fresh herald with webhook destinations `names` at the sink (or at `base`), the
    /// `policy` lines in each, on the suite's current store (SQLite, or `self.nodes`
    /// nodes on a fresh PostgreSQL schema) and ready for load; or the external one.
    pub(super) async fn start_herald(
        &mut self,
        names: &[String],
        policy: &str,
        base: Option<&str>,
    ) -> anyhow::Result<Herald> {
        if let Some(url) = &self.options.herald_url {
            return Ok(Herald {
                processes: Vec::new(),
                bases: vec![url.trim_end_matches('/').to_string()],
                pids: self.options.herald_pid.into_iter().collect(),
                shared: false,
            });
        }
        let dir = self.fresh_dir("herald")?;
        let base = base.map_or_else(|| self.sink.base.clone(), str::to_string);
        let deployment = self.deploy(&dir, names, policy, &base).await?;
        self.spawn_herald(&deployment, true).await
    }

    pub(super) fn fresh_dir(&mut self, what: &str) -> anyhow::Result<PathBuf> {
        self.seq += 1;
        let dir = self.work.path().join(format!("{what}-{}", self.seq));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }

    /// herald's configuration for a run, one file per node: loopback listener, one
    /// webhook destination per name at `base/d/NAME`, and either SQLite in `dir` or, with
    /// `--database` and `self.nodes` above 0, a fresh schema of that database shared by
    /// the nodes, each with its own `node_id`.
    pub(super) async fn deploy(
        &mut self,
        dir: &Path,
        names: &[String],
        policy: &str,
        base: &str,
    ) -> anyhow::Result<Deployment> {
        let shared = self.options.database.is_some() && self.nodes > 0;
        let servers = match (&self.options.database, self.nodes) {
            (Some(url), nodes) if nodes > 0 => {
                let schema = format!("herald_bench_{}_{}", std::process::id(), self.seq);
                // A killed suite with the same pid may have left it behind.
                let created = match PgStore::drop_schema(url, &schema).await {
                    Ok(()) => PgStore::create_schema(url, &schema).await,
                    Err(error) => Err(error),
                };
                created
                    .with_context(|| format!("cannot create the schema {schema} (--database)"))?;
                self.schemas.push(schema.clone());
                let database = quoted(&schema_url(url, &schema)?);
                (0..nodes)
                    .map(|node| {
                        format!("database = {database}\nnode_id = \"bench-{}-{node}\"\n", self.seq)
                    })
                    .collect()
            }
            _ => {
                let path = dir.join("bench.db").display().to_string();
                vec![format!("database = {}\n", quoted(&format!("sqlite://{path}")))]
            }
        };
        let mut destinations = String::new();
        for name in names {
            destinations.push_str(&format!(
                "[destinations.{name}]\nkind = \"webhook\"\nurl = \"{base}/d/{name}\"\nconcurrency = {}\n{policy}\n",
                self.options.concurrency
            ));
        }
        let mut configs = Vec::new();
        for (node, server) in servers.iter().enumerate() {
            let text = format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n{ALLOW_LOOPBACK}{destinations}"
            );
            let file = if servers.len() == 1 {
                "herald.toml".to_string()
            } else {
                format!("herald-{node}.toml")
            };
            let path = dir.join(file);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            configs.push(path);
        }
        Ok(Deployment { dir: dir.to_path_buf(), configs, names: names.to_vec(), shared })
    }

    /// Starts every node of `deployment`; with `ready`, on PostgreSQL, waits until every
    /// node is alive and the lanes are spread over them, so the load meets the cluster
    /// as it will work (a restart is timed from the first spawn instead).
    pub(super) async fn spawn_herald(
        &self,
        deployment: &Deployment,
        ready: bool,
    ) -> anyhow::Result<Herald> {
        let mut processes = Vec::with_capacity(deployment.configs.len());
        for (node, config) in deployment.configs.iter().enumerate() {
            let log = if deployment.configs.len() == 1 {
                "herald.log".to_string()
            } else {
                format!("herald-{node}.log")
            };
            // The nodes started so far are killed on drop if this one fails.
            let process =
                HeraldProcess::start(&self.herald_bin, config, &deployment.dir.join(log)).await?;
            processes.push(process);
        }
        let bases: Vec<String> = processes.iter().map(|p| p.base.clone()).collect();
        let pids = processes.iter().filter_map(HeraldProcess::pid).collect();
        if ready && deployment.shared {
            balanced(&self.http, &bases, &deployment.names).await?;
        }
        Ok(Herald { processes, bases, pids, shared: deployment.shared })
    }

    pub(super) async fn herald_phase(
        &mut self,
        herald: &Herald,
        spec: PhaseSpec,
    ) -> anyhow::Result<Phase> {
        self.herald_phase_with(herald, spec, None).await
    }

    /// A load on herald, then the wait for its deliveries; with `outage = (name, for)`,
    /// that destination answers 503 from the load's start for that long.
    pub(super) async fn herald_phase_with(
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
                &herald.url(),
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
        if load.retried > 0 {
            notes.push(format!(
                "herald answered {} submits 503 or 429 (shedding load); each was sent again with \
                 its idempotency key",
                load.retried
            ));
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
    pub(super) async fn raw_phase(
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
        let stats = self.stats_at(&base, true).await?;
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
    pub(super) async fn load(
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
        self.seq += 1;
        let prefix = format!("bench{}-{}", self.seq, wall_nanos());
        self.load_at(target, url, names, count, clients, rate, records, max_seconds, &prefix).await
    }

    /// Runs `herald bench load` to completion and reads its summary.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn load_at(
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

    pub(super) async fn reset_at(
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

    /// The sink's counts, with the per-bucket ones if `buckets`.
    pub(super) async fn stats_at(&self, base: &str, buckets: bool) -> anyhow::Result<Stats> {
        let res = self.http.get(format!("{base}/_stats?buckets={buckets}")).send().await;
        let res = res.with_context(|| format!("cannot reach the sink at {base}"))?;
        res.json().await.context("reading the sink's stats")
    }

    pub(super) async fn records_at(&self, base: &str) -> anyhow::Result<String> {
        let res = self.http.get(format!("{base}/_records")).send().await;
        let res = res.with_context(|| format!("cannot reach the sink at {base}"))?;
        res.text().await.context("reading the sink's records")
    }

    /// Polls the sink until `names` got `expected` deliveries or `deadline` passes;
    /// the last stats and whether they all came.
    pub(super) async fn wait_delivered(
        &self,
        base: &str,
        names: &[String],
        expected: u64,
        deadline: Instant,
    ) -> anyhow::Result<(Stats, bool)> {
        loop {
            let stats = self.stats_at(base, false).await?;
            let done = stats.delivered(names) >= expected;
            if done || Instant::now() >= deadline {
                return Ok((self.stats_at(base, true).await?, done));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The note for failed requests.
pub(super) fn failures(load: &Summary) -> String {
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
pub(crate) fn match_latencies(submitted: &str, received: &str, names: &[String]) -> Vec<Duration> {
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
pub(super) fn dir_mib(dir: &Path) -> f64 {
    let bytes: u64 = std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
        })
        .unwrap_or(0);
    bytes as f64 / (1024.0 * 1024.0)
}

/// `url` with its connections working in `schema` (`search_path` in the startup
/// options, as an operator would write it in `herald.toml`).
pub(super) fn schema_url(url: &str, schema: &str) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url).context("--database: not a URL")?;
    if parsed.query_pairs().any(|(key, _)| key == "options") {
        bail!("--database: leave `options` out of the URL; the suite sets search_path there");
    }
    parsed.query_pairs_mut().append_pair("options", &format!("-csearch_path={schema}"));
    Ok(parsed.to_string())
}

/// `text` as a TOML basic string.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
