//! `herald torture`: runs `herald serve` as a real process against simulated destinations
//! with randomised fault plans, submits broadcasts and updates at a steady rate, SIGKILLs
//! and restarts the server at random moments, waits for convergence and then checks
//! DESIGN.md's promises from what the destinations received and what herald reports:
//! nothing lost, no duplicate where the receiver deduplicates, at most one extra copy per
//! ambiguous attempt where it does not, updates in order, never two attempts of one
//! message at once, rate limits respected, every failure with a reason.
//!
//! Everything is derived from `--seed` (fault plans, the client's choices, the kill
//! times), so a failing seed can be run again; the OS still decides the exact timing.
//! Loopback only; bounded in time (submitting for `--duration`, converging for at most
//! `--converge-within`). `--scenario issue5` runs the fixed scenario of issue 5 instead
//! and prints its convergence time with the circuit breaker on and off.

mod api;
mod check;
mod issue5;
mod process;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_simulator::{FaultPlan, SimView, Simulator};
use serde_json::{Value, json};
use tokio::sync::watch;

pub use crate::torture::api::{Answer, Api};
pub use crate::torture::check::{Findings, OVERLAP_TOLERANCE, Reported, check};
pub use crate::torture::issue5::{Issue5, Issue5Report, issue5};
pub use crate::torture::process::{HeraldProcess, current_herald};

/// `herald torture` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Seed of the fault plans, the client's choices and the kill times.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long the client submits.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Broadcasts submitted per second (updates and replays come on top).
    #[arg(long, default_value_t = 5)]
    pub rate: u32,
    /// SIGKILLs of the server while submitting [default: one per 15 s, at least one].
    #[arg(long)]
    pub kills: Option<u32>,
    /// How long every delivery may take to end once submitting stopped.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub converge_within: Duration,
    /// Run a fixed scenario instead of a random one.
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,
    /// Broadcasts of the scenario.
    #[arg(long, default_value_t = 100)]
    pub broadcasts: usize,
    /// Circuit breaker setting(s) the scenario runs with.
    #[arg(long, value_enum, default_value_t = Breaker::Both)]
    pub breaker: Breaker,
    /// The database the servers share: a `postgres://` URL (an empty database or
    /// schema: the run writes to it) [default: a fresh SQLite file].
    #[arg(long)]
    pub database: Option<String>,
    /// Server processes on that database (more than one needs PostgreSQL); each kill
    /// picks one of them.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
}

/// A fixed scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Issue 5's table: ok, flaky, throttle, hang and dead destinations, a SIGKILL halfway.
    Issue5,
}

/// Which circuit breaker the scenario runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Breaker {
    /// The default breaker.
    On,
    /// The breaker effectively off (`circuit_failures = 1000000`).
    Off,
    /// Both, one after the other, and the ratio of their convergence times.
    Both,
}

/// A small seeded generator (SplitMix64): the run's choices are reproducible from the
/// seed without a dependency, and nothing here needs more than uniform draws.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo) + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform between two durations.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + (hi.saturating_sub(lo)).mul_f64(self.unit())
    }
}

/// One simulated destination and how herald is configured for it.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Destination and endpoint name.
    pub name: String,
    /// What the simulated receiver does.
    pub plan: FaultPlan,
    /// Extra `herald.toml` lines for this destination.
    pub settings: String,
    /// One line for the report.
    pub describe: String,
    /// Whether the receiver deduplicates by `webhook-id`.
    pub dedupe: bool,
    /// Probability that a broadcast includes it.
    pub chance: f64,
}

impl Spec {
    fn new(name: &str, plan: FaultPlan, describe: String) -> Spec {
        Spec {
            name: name.into(),
            plan,
            settings: String::new(),
            describe,
            dedupe: true,
            chance: 0.6,
        }
    }

    fn with(mut self, settings: &str) -> Spec {
        self.settings.push_str(settings);
        self.settings.push('\n');
        self
    }
}

/// Probability that a broadcast is followed by an update (on a recent broadcast).
const UPDATE_CHANCE: f64 = 0.35;

/// The setting of the lanes whose first tries time out.
const SLOW_LANE: &str = "concurrency = 8";

/// How often a long run prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// Concurrency of every destination (part of the 429 bound).
const CONCURRENCY: u64 = 4;

/// `Retry-After` of the throttling receivers, in seconds.
const RETRY_AFTER_SECS: u64 = 1;

/// The destinations of a random run, their faults drawn from `rng`.
pub fn destinations(rng: &mut Rng, duration: Duration, rate: u32) -> Vec<Spec> {
    let ms = Duration::from_millis;
    let mut specs = Vec::new();

    let latency = rng.between(ms(0), ms(30));
    specs.push(Spec::new(
        "steady",
        FaultPlan::healthy().latency(latency),
        format!("200 after {latency:.0?}"),
    ));

    let (fails, status) = (rng.range(1, 3) as u32, [500, 502, 503][rng.range(0, 2) as usize]);
    let mut flaky = FaultPlan::healthy().fail_first(fails, status);
    let mut bursts = Vec::new();
    for _ in 0..2 {
        let at = rng.between(duration / 10, duration * 9 / 10);
        let length = rng.between(ms(500), ms(2500));
        flaky = flaky.outage(at, length, 500);
        bursts.push(format!("{at:.1?}+{length:.1?}"));
    }
    specs.push(Spec::new(
        "flaky",
        flaky,
        format!(
            "{status} on the first {fails} tries of each message; 500 bursts at {}",
            bursts.join(", ")
        ),
    ));

    // The bucket is above the average load (one below it could never drain), so it
    // overflows only in bursts: after a restart, after the storm, and when the backlog of
    // a paced lane is released. The load stays low: after a 429 the lane sends one
    // attempt per Retry-After for CALM_STREAK attempts, then bursts into the bucket
    // again, so a lane loaded above about one message per second never drains its
    // backlog (measured: a 4/s load behind a 7/s bucket fell further behind after each
    // storm).
    let share = 0.15;
    let load = f64::from(rate) * share * (1.0 + UPDATE_CHANCE);
    let bucket = (load * (1.2 + rng.unit())).ceil().max(2.0) as u32;
    let storm_at = rng.between(duration / 10, duration * 8 / 10);
    let storm = rng.between(ms(2000), ms(5000));
    let mut throttled = Spec::new(
        "throttled",
        FaultPlan::healthy()
            .rate_limit(bucket, Duration::from_secs(RETRY_AFTER_SECS))
            .outage(storm_at, storm, 429),
        format!(
            "token bucket {bucket}/s, over it 429 Retry-After: {RETRY_AFTER_SECS}; \
             a 429 storm at {storm_at:.1?} for {storm:.1?}"
        ),
    );
    throttled.chance = share;
    specs.push(throttled);

    let limit = rng.range(5, 10);
    specs.push(
        Spec::new(
            "paced",
            FaultPlan::healthy()
                .rate_limit(2 * limit as u32, Duration::from_secs(RETRY_AFTER_SECS)),
            format!("token bucket {}/s; herald rate_limit = \"{limit}/s\": never a 429", 2 * limit),
        )
        .with(&format!("rate_limit = \"{limit}/s\"")),
    );

    let delay = rng.between(ms(2000), ms(4000));
    // Each first try holds a slot for the whole 1 s timeout: twice the concurrency keeps
    // the lane ahead of its load (4 first tries a second at the default rate).
    specs.push(
        Spec::new(
            "hang",
            FaultPlan::healthy().delay_first(1, delay),
            format!("stores the first try, answers it after {delay:.1?} (timeout 1s)"),
        )
        .with(SLOW_LANE),
    );

    specs.push(Spec::new(
        "reset",
        FaultPlan::healthy().reset_first(1),
        "stores the first try, then resets the connection".into(),
    ));

    let slow = rng.between(ms(200), ms(700));
    specs.push(Spec::new(
        "slow",
        FaultPlan::healthy().latency(slow),
        format!("200 after {slow:.0?}"),
    ));

    let from = rng.between(duration * 15 / 100, duration * 35 / 100);
    let length = rng.between(
        (duration / 5).min(Duration::from_secs(5)),
        (duration * 2 / 5).min(Duration::from_secs(20)),
    );
    let mut down = Spec::new(
        "down",
        FaultPlan::healthy().outage(from, length, 503),
        format!("503 to everything from {from:.1?} for {length:.1?}"),
    );
    down.settings = "max_attempts = 100\n".into();
    specs.push(down);

    let ambiguous = if rng.chance(0.5) {
        (FaultPlan::healthy().dedupe(false).reset_first(1), "resets the first try after storing it")
    } else {
        (
            FaultPlan::healthy().dedupe(false).delay_first(1, ms(2000)),
            "stores the first try, answers it after 2s",
        )
    };
    let mut nodedupe = Spec::new(
        "nodedupe",
        ambiguous.0,
        format!("does not deduplicate; {}; dedupe = false, on_unknown = \"resend\"", ambiguous.1),
    )
    .with("dedupe = false\non_unknown = \"resend\"")
    .with(SLOW_LANE);
    nodedupe.dedupe = false;
    specs.push(nodedupe);

    let mut dead =
        Spec::new("dead", FaultPlan::healthy().status_always(404), "404 to everything".into());
    dead.chance = 0.1;
    specs.push(dead);
    specs
}

/// Writes a configuration for `specs` on `sim` into `dir` (`herald.toml`, or
/// `herald-NODE.toml` for a named node); `common` is added to every destination (unless a
/// spec sets the same key). Returns its path.
///
/// # Errors
/// When the file cannot be written.
pub fn write_config(
    dir: &Path,
    database: &str,
    node_id: Option<&str>,
    sim: &SimView,
    specs: &[Spec],
    common: &[(&str, &str)],
) -> anyhow::Result<PathBuf> {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{database}\"\nshutdown_grace = \"1s\"\n"
    );
    if let Some(node_id) = node_id {
        text.push_str(&format!("node_id = \"{node_id}\"\n"));
    }
    text.push('\n');
    text.push_str(crate::demo::ALLOW_LOOPBACK);
    for spec in specs {
        text.push_str(&format!(
            "[destinations.{}]\nkind = \"webhook\"\nurl = \"{}\"\n{}",
            spec.name,
            sim.url(&spec.name),
            spec.settings
        ));
        for (key, value) in common {
            let set =
                spec.settings.lines().any(|l| l.split('=').next().map(str::trim) == Some(key));
            if !set {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text.push('\n');
    }
    let path = match node_id {
        Some(node_id) => dir.join(format!("herald-{node_id}.toml")),
        None => dir.join("herald.toml"),
    };
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Waits until no delivery has work left (pending, in flight or waiting for its
/// predecessor, summed over `GET /v1/destinations`); the time it took, or `None` after
/// `within`. Held deliveries wait for an operator and so count as ended.
///
/// # Errors
/// When the server stops answering.
pub async fn converge(api: &Api, within: Duration) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    loop {
        let (status, view) = api.get("/v1/destinations").await?;
        if status != 200 {
            bail!("GET /v1/destinations answered {status}: {view}");
        }
        let open: u64 = view["destinations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                ["pending", "in_flight", "waiting"]
                    .iter()
                    .map(|k| d[*k].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .sum();
        if open == 0 {
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() > within {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fetches every accepted broadcast's view, and the attempt logs of those with a delivery
/// to a destination in `logs_for`.
///
/// # Errors
/// When the server stops answering.
pub async fn fetch(
    api: &Api,
    accepted: &[String],
    updates: HashMap<String, Vec<u64>>,
    logs_for: &HashSet<String>,
) -> anyhow::Result<Reported> {
    let mut reported = Reported { updates, ..Reported::default() };
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, chunk) in accepted.chunks(accepted.len().div_ceil(8).max(1)).enumerate() {
        let (api, chunk, logs_for) = (api.clone(), chunk.to_vec(), logs_for.clone());
        tasks.spawn(async move {
            let mut views = Vec::with_capacity(chunk.len());
            let mut attempts: Vec<Value> = Vec::new();
            for id in chunk {
                let (status, view) = api.get(&format!("/v1/broadcasts/{id}")).await?;
                let view = if status == 200 { view } else { Value::Null };
                let wants_log =
                    view["deliveries"].as_array().into_iter().flatten().any(|d| {
                        d["destination"].as_str().is_some_and(|name| logs_for.contains(name))
                    });
                if wants_log {
                    let (_, log) = api.get(&format!("/v1/broadcasts/{id}/attempts")).await?;
                    attempts.extend(log["attempts"].as_array().cloned().unwrap_or_default());
                }
                views.push((id, view));
            }
            anyhow::Ok((worker, views, attempts))
        });
    }
    let mut parts = Vec::new();
    while let Some(part) = tasks.join_next().await {
        parts.push(part.context("a fetching task failed")??);
    }
    parts.sort_by_key(|(worker, _, _)| *worker);
    for (_, views, attempts) in parts {
        reported.broadcasts.extend(views);
        for attempt in attempts {
            let delivery = attempt["delivery_id"].as_str().unwrap_or_default().to_string();
            reported.attempts.entry(delivery).or_default().push(attempt);
        }
    }
    Ok(reported)
}

/// What the client did and saw.
#[derive(Debug, Default)]
struct Submitted {
    broadcasts: Vec<String>,
    /// The destinations each broadcast was submitted to.
    to: HashMap<String, Vec<String>>,
    updates: HashMap<String, Vec<u64>>,
    update_count: usize,
    replays: usize,
    /// Replays not answered `200` with the same resource, conflicts not answered `422`,
    /// and answers other than the documented ones.
    api_violations: Vec<String>,
}

/// The client: broadcasts at `rate` for `duration`, updates on recent ones, replays.
async fn client(
    api: &Api,
    mut rng: Rng,
    options: &Options,
    specs: &[Spec],
) -> anyhow::Result<Submitted> {
    let mut s = Submitted::default();
    let seed = options.seed;
    let mut ticker =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut n = 0usize;
    let mut next_progress = PROGRESS_EVERY;
    while started.elapsed() < options.duration {
        ticker.tick().await;
        n += 1;
        if started.elapsed() >= next_progress {
            // A long run says it is alive (on stderr: stdout is the report).
            eprintln!(
                "  {:?}: {} broadcasts, {} updates submitted",
                next_progress,
                s.broadcasts.len(),
                s.update_count
            );
            next_progress += PROGRESS_EVERY;
        }
        let mut to: Vec<&str> = specs
            .iter()
            .filter(|spec| rng.chance(spec.chance))
            .map(|spec| spec.name.as_str())
            .collect();
        if to.is_empty() {
            to.push(&specs[0].name);
        }
        let key = format!("torture-{seed}-b{n}");
        let body = json!({
            "destinations": to,
            "message": {"title": format!("torture {seed} broadcast {n}"), "body": "under fire", "severity": "warning"},
            "idempotency_key": key,
        });
        let (status, view) = api.post("/v1/broadcasts", &body, None).await?;
        let Some(id) = view["id"].as_str().filter(|_| status == 202 || status == 200) else {
            s.api_violations.push(format!("submit {n} answered {status}: {view}"));
            continue;
        };
        let id = id.to_string();
        s.broadcasts.push(id.clone());
        s.to.insert(id.clone(), to.iter().map(|name| (*name).to_string()).collect());
        if rng.chance(0.15) {
            s.replays += 1;
            let (status, again) = api.post("/v1/broadcasts", &body, None).await?;
            if status != 200 || again["id"].as_str() != Some(&id) {
                s.api_violations.push(format!("replay of submit {n} answered {status}: {again}"));
            }
        }
        if rng.chance(UPDATE_CHANCE) {
            let recent = s.broadcasts.len().min(20) as u64;
            let target =
                s.broadcasts[s.broadcasts.len() - 1 - rng.range(0, recent - 1) as usize].clone();
            update(api, &mut rng, &mut s, seed, &target).await?;
        }
    }
    Ok(s)
}

/// Posts one update to `target` with an idempotency key (in the body or the header),
/// sometimes replaying it (200, same update) or reusing its key for another body (422).
async fn update(
    api: &Api,
    rng: &mut Rng,
    s: &mut Submitted,
    seed: u64,
    target: &str,
) -> anyhow::Result<()> {
    s.update_count += 1;
    let m = s.update_count;
    let key = format!("torture-{seed}-u{m}");
    let in_header = rng.chance(0.5);
    let mut body =
        json!({"message": {"title": format!("torture {seed} update {m}"), "severity": "info"}});
    if !in_header {
        body["idempotency_key"] = json!(key);
    }
    let header = in_header.then_some(key.as_str());
    let path = format!("/v1/broadcasts/{target}/updates");
    let (status, view) = api.post(&path, &body, header).await?;
    let Some(seq) = view["update_seq"].as_u64().filter(|_| status == 202 || status == 200) else {
        s.api_violations.push(format!("update {m} of {target} answered {status}: {view}"));
        return Ok(());
    };
    s.updates.entry(target.to_string()).or_default().push(seq);
    if rng.chance(0.3) {
        s.replays += 1;
        let (status, again) = api.post(&path, &body, header).await?;
        if status != 200 || again["update_seq"].as_u64() != Some(seq) {
            s.api_violations.push(format!("replay of update {m} answered {status}: {again}"));
        }
    }
    if rng.chance(0.1) {
        s.replays += 1;
        let mut other = body.clone();
        other["message"]["title"] = json!(format!("torture {seed} update {m}, changed"));
        let (status, again) = api.post(&path, &other, header).await?;
        if status != 422 {
            s.api_violations.push(format!(
                "update key {key} reused for another body answered {status}: {again}"
            ));
        }
    }
    Ok(())
}

/// How to start a server again after a kill.
struct Relaunch {
    herald: PathBuf,
    /// One configuration per node.
    configs: Vec<PathBuf>,
    log: PathBuf,
}

/// SIGKILLs one of the servers (chosen by `rng`) at each offset from `started` and starts
/// it again on its configuration, publishing the new base URLs; the servers at the end
/// and how many kills it took.
async fn killer(
    mut servers: Vec<HeraldProcess>,
    at: Vec<Duration>,
    started: Instant,
    relaunch: Relaunch,
    mut rng: Rng,
    bases: watch::Sender<Vec<String>>,
) -> anyhow::Result<(Vec<HeraldProcess>, usize)> {
    let mut kills = 0;
    for offset in at {
        tokio::time::sleep_until((started + offset).into()).await;
        let victim = rng.range(0, servers.len() as u64 - 1) as usize;
        let restarted = {
            let dead = servers.swap_remove(victim);
            dead.kill().await?;
            kills += 1;
            HeraldProcess::start(&relaunch.herald, &relaunch.configs[victim], &relaunch.log).await?
        };
        servers.push(restarted);
        let last = servers.len() - 1;
        servers.swap(victim, last);
        bases.send_replace(servers.iter().map(|s| s.base.clone()).collect());
    }
    Ok((servers, kills))
}

/// Faults the receivers injected: answers other than a plain 200, no answer at all, and
/// late answers.
pub fn faults(sim: &SimView) -> u64 {
    sim.names()
        .iter()
        .map(|name| {
            let stats = sim.stats(name);
            let ok = stats.answered.get(&200).copied().unwrap_or(0);
            stats.requests.saturating_sub(ok) + stats.delayed
        })
        .sum()
}

/// Runs `herald torture`; whether every check passed. The server is `herald` (this
/// binary in normal use).
///
/// # Errors
/// When the server, the simulator or the client cannot run at all (a check that fails is
/// `Ok(false)`, not an error).
pub async fn run(options: &Options, herald: &Path, out: &mut impl Write) -> anyhow::Result<bool> {
    if options.scenario == Some(Scenario::Issue5) {
        return issue5::bench(options, herald, out).await;
    }
    if options.duration.is_zero() || options.rate == 0 {
        bail!("--duration and --rate must be positive");
    }
    if options.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let shared = options.database.as_deref().filter(|url| url.starts_with("postgres"));
    if options.nodes > 1 && shared.is_none() {
        bail!(
            "--nodes {} needs --database postgres://...: SQLite serves one process",
            options.nodes
        );
    }
    let mut rng = Rng::new(options.seed);
    let specs = destinations(&mut rng, options.duration, options.rate);
    let kills = options.kills.unwrap_or_else(|| (options.duration.as_secs() / 15).max(1) as u32);
    let mut kill_at: Vec<Duration> =
        (0..kills).map(|_| rng.between(options.duration / 10, options.duration * 9 / 10)).collect();
    kill_at.sort();
    let client_rng = Rng::new(rng.next_u64());
    let kill_rng = Rng::new(rng.next_u64());

    let sim = Simulator::start(specs.iter().map(|s| (s.name.clone(), s.plan.clone())).collect())
        .await
        .context("cannot start the simulator")?;
    let dir = tempfile::tempdir()?;
    let common = [
        ("max_attempts", "40"),
        ("backoff_base", "\"100ms\""),
        ("backoff_max", "\"1s\""),
        ("timeout", "\"1s\""),
        ("concurrency", "4"),
    ];
    let database = match &options.database {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", dir.path().join("herald.db").display()),
    };
    let mut configs = Vec::with_capacity(options.nodes);
    if options.nodes == 1 {
        configs.push(write_config(dir.path(), &database, None, &sim.view(), &specs, &common)?);
    } else {
        for n in 0..options.nodes {
            let node = format!("torture-{n}");
            configs.push(write_config(
                dir.path(),
                &database,
                Some(&node),
                &sim.view(),
                &specs,
                &common,
            )?);
        }
    }
    let log = dir.path().join("herald.log");
    writeln!(
        out,
        "herald torture: seed {}, submitting for {:?} at {}/s, {} node(s) on {}, {} SIGKILLs at {:.1?}",
        options.seed,
        options.duration,
        options.rate,
        options.nodes,
        if shared.is_some() { "PostgreSQL" } else { "SQLite" },
        kills,
        kill_at
    )?;
    for spec in &specs {
        writeln!(out, "  {:<10} {}", spec.name, spec.describe)?;
    }

    let mut servers = Vec::with_capacity(configs.len());
    for config in &configs {
        servers.push(HeraldProcess::start(herald, config, &log).await?);
    }
    let (base_tx, base_rx) = watch::channel(servers.iter().map(|s| s.base.clone()).collect());
    let api = Api::new(base_rx)?;
    let started = Instant::now();
    let relaunch = Relaunch { herald: herald.to_path_buf(), configs, log: log.clone() };
    let killing = tokio::spawn(killer(servers, kill_at, started, relaunch, kill_rng, base_tx));
    let submitted = client(&api, client_rng, options, &specs).await;
    let (servers, kills_survived) = killing.await.context("the kill task failed")??;
    let submitted = match submitted {
        Ok(s) => s,
        Err(e) => {
            for server in servers {
                server.kill().await?;
            }
            return Err(e);
        }
    };
    let submitting = started.elapsed();

    let converged = converge(&api, options.converge_within).await?;
    let non_dedupe: HashSet<String> =
        specs.iter().filter(|s| !s.dedupe).map(|s| s.name.clone()).collect();
    let mut reported =
        fetch(&api, &submitted.broadcasts, submitted.updates.clone(), &non_dedupe).await?;
    reported.destinations = submitted.to.clone();
    let findings = check(&sim.view(), &reported, &non_dedupe);
    let elapsed = started.elapsed();
    for server in servers {
        server.kill().await?;
    }

    let throttled = sim.stats("throttled").throttled;
    // Each 429 pauses the lane for Retry-After and then paces it, one attempt per
    // Retry-After, for CALM_STREAK attempts before it runs at full concurrency again: the
    // lane can overflow the bucket at most once per (CALM_STREAK + 1) x Retry-After, with
    // at most `concurrency` requests in flight then. A restart forgets the throttle, so
    // each kill allows one more overflow; so does each handover of the lane to another
    // node (as nodes join at the start, and after each kill).
    let episode = (u64::from(herald_core::throttle::CALM_STREAK) + 1) * RETRY_AFTER_SECS;
    let handovers = (options.nodes as u64 - 1) * (1 + kills_survived as u64);
    let throttle_bound =
        CONCURRENCY * (1 + kills_survived as u64 + handovers + elapsed.as_secs().div_ceil(episode));
    let paced_429 = sim.stats("paced").throttled;
    let faults = faults(&sim.view());

    let unconverged = converged.is_none();
    let violations = findings.violations()
        + submitted.api_violations.len()
        + usize::from(throttled > throttle_bound)
        + paced_429 as usize
        + usize::from(unconverged);
    for example in findings.examples.iter().chain(&submitted.api_violations).take(20) {
        writeln!(out, "  violation: {example}")?;
    }
    if unconverged {
        writeln!(
            out,
            "  violation: not converged within {:?} after submitting stopped",
            options.converge_within
        )?;
    }
    if throttled > throttle_bound {
        writeln!(
            out,
            "  violation: {throttled} requests over the throttled bucket, bound {throttle_bound}"
        )?;
    }
    if paced_429 > 0 {
        writeln!(
            out,
            "  violation: herald exceeded its rate_limit on `paced` ({paced_429} x 429)"
        )?;
    }
    let verdict = if violations == 0 { "PASS" } else { "FAIL" };
    writeln!(
        out,
        "torture seed={} {verdict}: broadcasts={} updates={} replays={} kills={} faults={} deliveries={} \
         delivered={} failed={} lost={} duplicates={} extra_copies={} ambiguous_attempts={} excess_copies={} \
         order_violations={} double_sends={} throttled={}/{} paced_429={} failures_without_reason={} \
         api_violations={} submitting={:.1?} converged_in={}",
        options.seed,
        submitted.broadcasts.len(),
        submitted.update_count,
        submitted.replays,
        kills_survived,
        faults,
        findings.deliveries,
        findings.delivered,
        findings.failed,
        findings.lost,
        findings.duplicates,
        findings.extra_copies,
        findings.ambiguous_attempts,
        findings.excess_copies,
        findings.order_violations,
        findings.double_sends,
        throttled,
        throttle_bound,
        paced_429,
        findings.failures_without_reason,
        submitted.api_violations.len(),
        submitting,
        converged.map_or("never".to_string(), |d| format!("{d:.1?}")),
    )?;
    if violations > 0 {
        let kept = dir.keep();
        writeln!(out, "  kept the server's database and log in {}", kept.display())?;
    }
    sim.shutdown().await;
    Ok(violations == 0)
}
