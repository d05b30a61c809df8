//! The scenario of issue 5: five webhook destinations (ok, flaky, throttle, hang, dead),
//! broadcasts to all five, updates with idempotency keys on a tenth of them (each
//! replayed), a SIGKILL of the server after the first half, a restart, the other half.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use herald_simulator::{FaultPlan, Simulator};
use serde_json::json;
use tokio::sync::watch;

use super::{
    Api, Breaker, Findings, HeraldProcess, Options, Spec, check, converge, fetch, write_config,
};

/// How the scenario runs.
#[derive(Debug, Clone)]
pub struct Issue5 {
    /// Broadcasts submitted (the issue: 100).
    pub broadcasts: usize,
    /// Whether the circuit breaker is effectively off (`circuit_failures = 1000000`).
    pub breaker_off: bool,
    /// How long convergence may take after the first submit.
    pub converge_within: Duration,
}

/// What one run of the scenario showed.
#[derive(Debug, Clone, Default)]
pub struct Issue5Report {
    /// Broadcasts accepted.
    pub broadcasts: usize,
    /// Updates accepted.
    pub updates: usize,
    /// Replayed updates, and how many of them were answered `200` with the same update.
    pub replays: (usize, usize),
    /// Updates (with an idempotency key) the server did not accept.
    pub rejected_updates: Vec<String>,
    /// From the first submit until no broadcast was in progress; `None` if not within
    /// the bound.
    pub convergence: Option<Duration>,
    /// Deliveries in the wrong final state: dead ones not failed, the others not delivered.
    pub wrong_states: Vec<String>,
    /// The checks of the torture suite.
    pub findings: Findings,
}

impl Issue5Report {
    /// Whether everything the issue asks for held.
    pub fn passed(&self) -> bool {
        self.convergence.is_some()
            && self.wrong_states.is_empty()
            && self.findings.violations() == 0
            && self.replays.0 == self.replays.1
            && self.rejected_updates.is_empty()
    }
}

/// Runs the scenario once with the server binary `herald`.
///
/// # Errors
/// When the server, the simulator or the client cannot run.
pub async fn issue5(herald: &Path, run: &Issue5) -> anyhow::Result<Issue5Report> {
    let specs = [
        ("ok", FaultPlan::healthy()),
        ("flaky", FaultPlan::healthy().fail_first(2, 500)),
        ("throttle", FaultPlan::healthy().rate_limit(20, Duration::from_secs(1))),
        ("hang", FaultPlan::healthy().delay_first(1, Duration::from_secs(4))),
        ("dead", FaultPlan::healthy().status_always(404)),
    ]
    .map(|(name, plan)| Spec::new(name, plan, String::new()));
    let sim =
        Simulator::start(specs.iter().map(|s| (s.name.clone(), s.plan.clone())).collect()).await?;
    let dir = tempfile::tempdir()?;
    let mut common = vec![
        ("max_attempts", "12"),
        ("backoff_base", "\"100ms\""),
        ("backoff_max", "\"1s\""),
        ("timeout", "\"1s\""),
    ];
    if run.breaker_off {
        common.push(("circuit_failures", "1000000"));
    }
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let config = write_config(dir.path(), &database, None, &sim.view(), &specs, &common)?;
    let log = dir.path().join("herald.log");
    let server = HeraldProcess::start(herald, &config, &log).await?;
    let (base_tx, base_rx) = watch::channel(vec![server.base.clone()]);
    let api = Api::new(base_rx)?;
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();

    let mut report = Issue5Report::default();
    let mut accepted = Vec::with_capacity(run.broadcasts);
    let mut updates: HashMap<String, Vec<u64>> = HashMap::new();
    let started = Instant::now();
    let mut server = Some(server);
    for n in 0..run.broadcasts {
        if n == run.broadcasts / 2
            && let Some(running) = server.take()
        {
            running.kill().await?;
            let restarted = HeraldProcess::start(herald, &config, &log).await?;
            base_tx.send_replace(vec![restarted.base.clone()]);
            server = Some(restarted);
        }
        let body = json!({
            "destinations": names,
            "message": {"title": format!("issue 5 broadcast {n}"), "severity": "critical"},
            "idempotency_key": format!("issue5-b{n}"),
        });
        let (status, view) = api.post("/v1/broadcasts", &body, None).await?;
        let Some(id) = view["id"].as_str().filter(|_| status == 202 || status == 200) else {
            anyhow::bail!("submit {n} answered {status}: {view}");
        };
        let id = id.to_string();
        accepted.push(id.clone());
        if n % 10 == 0 {
            let path = format!("/v1/broadcasts/{id}/updates");
            let body = json!({
                "message": {"title": format!("issue 5 broadcast {n}: resolved"), "severity": "resolved"},
                "idempotency_key": format!("issue5-u{n}"),
            });
            let (status, view) = api.post(&path, &body, None).await?;
            let Some(seq) = view["update_seq"].as_u64().filter(|_| status == 202 || status == 200)
            else {
                // Keep going: the convergence figures still mean something.
                let detail = view["detail"].as_str().unwrap_or_default();
                report
                    .rejected_updates
                    .push(format!("update of broadcast {n} answered {status}: {detail}"));
                continue;
            };
            report.updates += 1;
            updates.entry(id.clone()).or_default().push(seq);
            let (status, again) = api.post(&path, &body, None).await?;
            report.replays.0 += 1;
            if status == 200 && again["update_seq"].as_u64() == Some(seq) {
                report.replays.1 += 1;
            }
        }
    }
    report.broadcasts = accepted.len();
    let remaining = run.converge_within.saturating_sub(started.elapsed());
    report.convergence = converge(&api, remaining).await?.map(|_| started.elapsed());

    let mut reported = fetch(&api, &accepted, updates, &HashSet::new()).await?;
    let all: Vec<String> = names.iter().map(|name| (*name).to_string()).collect();
    reported.destinations = accepted.iter().map(|id| (id.clone(), all.clone())).collect();
    report.findings = check(&sim.view(), &reported, &HashSet::new());
    for (id, view) in &reported.broadcasts {
        for d in view["deliveries"].as_array().into_iter().flatten() {
            let destination = d["destination"].as_str().unwrap_or_default();
            let state = d["state"].as_str().unwrap_or_default();
            let right =
                if destination == "dead" { state == "failed" } else { state == "delivered" };
            if !right {
                report.wrong_states.push(format!(
                    "{id} #{} at {destination} is {state} ({})",
                    d["seq"],
                    d["last_error"].as_str().unwrap_or("")
                ));
            }
        }
    }
    if let Some(server) = server {
        server.kill().await?;
    }
    sim.shutdown().await;
    Ok(report)
}

fn line(label: &str, report: &Issue5Report) -> String {
    format!(
        "  breaker {label}: {} broadcasts, {} updates accepted, {} rejected ({}/{} replays answered 200): converged {}; \
         wrong final states {}, lost {}, duplicates {}, order violations {}, double sends {}",
        report.broadcasts,
        report.updates,
        report.rejected_updates.len(),
        report.replays.1,
        report.replays.0,
        report.convergence.map_or("NEVER".to_string(), |d| format!("in {d:.1?}")),
        report.wrong_states.len(),
        report.findings.lost,
        report.findings.duplicates,
        report.findings.order_violations,
        report.findings.double_sends,
    )
}

/// `herald torture --scenario issue5`: the scenario with the breaker on and/or off, and
/// the ratio of the convergence times (the issue's bar: at most 1.5).
///
/// # Errors
/// When a run cannot start.
pub(super) async fn bench(
    options: &Options,
    herald: &Path,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    writeln!(
        out,
        "issue 5 scenario: {} broadcasts to ok, flaky, throttle, hang and dead; SIGKILL after {}",
        options.broadcasts,
        options.broadcasts / 2
    )?;
    let mut passed = true;
    let mut times = Vec::new();
    for (label, off) in [("on", false), ("off", true)] {
        let wanted = match options.breaker {
            Breaker::Both => true,
            Breaker::On => !off,
            Breaker::Off => off,
        };
        if !wanted {
            continue;
        }
        let run = Issue5 {
            broadcasts: options.broadcasts,
            breaker_off: off,
            converge_within: options.converge_within,
        };
        let report = issue5(herald, &run).await?;
        writeln!(out, "{}", line(label, &report))?;
        let problems = report.rejected_updates.iter().chain(&report.wrong_states);
        for problem in problems.chain(&report.findings.examples).take(10) {
            writeln!(out, "    {problem}")?;
        }
        passed &= report.passed();
        times.push(report.convergence);
    }
    if let [Some(on), Some(off)] = times[..] {
        let ratio = on.as_secs_f64() / off.as_secs_f64();
        writeln!(
            out,
            "  convergence with the breaker on / off: {ratio:.2} (the bar: at most 1.50)"
        )?;
        passed &= ratio <= 1.5;
    }
    writeln!(out, "issue 5 scenario: {}", if passed { "PASS" } else { "FAIL" })?;
    Ok(passed)
}
