//! `herald demo`: the whole idea in thirty seconds.
//!
//! Starts simulated destinations (healthy, flaky, rate limited, one that posts and then
//! times out, one that posts and then resets the connection), a real herald server on
//! the embedded store in a temporary directory, sends a broadcast and an update through
//! the HTTP API, shows each destination converge, and ends with the proof read from the
//! destinations themselves: each holds exactly one copy of each message.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};

use crate::client::Client;
use crate::config::Config;
use crate::{progress, serve};

/// The destinations of the demo: name, what it does, its fault plan.
fn destinations() -> Vec<(&'static str, &'static str, FaultPlan)> {
    vec![
        ("healthy", "answers 200 at once", FaultPlan::healthy()),
        (
            "flaky",
            "fails the first 2 tries of each message with 503",
            FaultPlan::healthy().fail_first(2, 503),
        ),
        (
            "rate-limited",
            "allows 1 request/s, answers 429 + Retry-After beyond",
            FaultPlan::healthy().rate_limit(1, Duration::from_secs(1)),
        ),
        (
            "times-out",
            "posts the first try, then never answers",
            FaultPlan::healthy().hang_first(1),
        ),
        (
            "resets",
            "posts the first try, then drops the connection",
            FaultPlan::healthy().reset_first(1),
        ),
    ]
}

/// A demo secret (Standard Webhooks format), so the requests are signed as in production.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config_text(sim: &Simulator, database: &std::path::Path) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\nshutdown_grace = \"2s\"\n\n",
        database.display()
    );
    for (name, _, _) in destinations() {
        text.push_str(&format!(
            "[destinations.{name}]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\
             backoff_base = \"200ms\"\nbackoff_max = \"2s\"\ntimeout = \"1500ms\"\n\n",
            sim.url(name)
        ));
    }
    let names: Vec<String> =
        destinations().iter().map(|(name, _, _)| format!("\"{name}\"")).collect();
    text.push_str(&format!("[groups]\neverywhere = [{}]\n", names.join(", ")));
    text
}

/// Runs the demo, writing to `out`. Exit code 0 when every destination holds exactly one
/// copy of each message.
///
/// # Errors
/// When the simulator or the server cannot start.
pub async fn run(out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let sim = Simulator::start(
        destinations().into_iter().map(|(name, _, plan)| (name.to_string(), plan)).collect(),
    )
    .await
    .context("cannot start the simulated destinations")?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let database = dir.path().join("herald-demo.db");
    let config = Config::parse(&config_text(&sim, &database), "demo", &|_| None)
        .map_err(|errors| anyhow::anyhow!("the demo configuration is invalid:\n{errors}"))?;
    let server = serve::start(&config).await?;
    let client = Client::new(&format!("http://{}", server.addr));

    writeln!(out, "herald demo: one broadcast, five destinations, partial failure everywhere.\n")?;
    for (name, what, _) in destinations() {
        writeln!(out, "  {name:<14} {what}")?;
    }
    writeln!(
        out,
        "\nherald is serving on http://{} (store: {})\n",
        server.addr,
        database.display()
    )?;

    let request = json!({
        "destinations": ["everywhere"],
        "idempotency_key": "demo-incident-open",
        "message": {
            "title": "P1: checkout is down",
            "body": "Error rate **38 %** since 12:01.",
            "severity": "critical",
            "fields": {"service": "checkout"},
            "links": [{"title": "Runbook", "url": "https://runbooks.example/checkout"}]
        }
    });
    let (_, view) = client.post("/v1/broadcasts", &request).await?;
    let id = view.get("id").and_then(Value::as_str).context("no broadcast id")?.to_string();
    writeln!(out, "POST /v1/broadcasts -> 202 {id}: \"P1: checkout is down\"")?;
    let update =
        json!({"message": {"title": "Resolved: checkout is back", "severity": "resolved"}});
    client.post(&format!("/v1/broadcasts/{id}/updates"), &update).await?;
    writeln!(out, "POST /v1/broadcasts/{id}/updates -> 202 \"Resolved: checkout is back\"")?;
    writeln!(out, "   (each update waits for the original on its destination)\n")?;

    let view = progress::follow(&client, &id, Duration::from_secs(60), out).await?;
    writeln!(out, "\n{}\n", progress::summary(&view))?;

    // The proof comes from the destinations, not from herald's own bookkeeping.
    writeln!(out, "What each destination holds:")?;
    writeln!(
        out,
        "  {:<14} {:>8} {:>10} {:>9} {:>9}",
        "destination", "requests", "duplicates", "original", "update"
    )?;
    let mut all_one = true;
    for (name, _, _) in destinations() {
        let copies = sim.copies(name);
        let stats = sim.stats(name);
        let copies_of = |seq: u64| -> usize {
            view.get("deliveries")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|d| {
                    d.get("destination").and_then(Value::as_str) == Some(name)
                        && d.get("seq").and_then(Value::as_u64) == Some(seq)
                })
                .filter_map(|d| d.get("id").and_then(Value::as_str))
                .map(|key| copies.get(key).copied().unwrap_or(0))
                .sum()
        };
        let (original, update) = (copies_of(0), copies_of(1));
        let stray = copies.values().sum::<usize>() - original - update;
        let ok = original == 1 && update == 1 && stray == 0;
        all_one &= ok;
        writeln!(
            out,
            "  {name:<14} {:>8} {:>10} {:>8}{} {:>8}{}",
            stats.requests,
            stats.duplicates_dropped,
            original,
            if original == 1 { "✓" } else { "✗" },
            update,
            if update == 1 { "✓" } else { "✗" },
        )?;
    }
    writeln!(out)?;
    if all_one {
        writeln!(
            out,
            "Converged: every destination holds exactly one copy of each message, although \
             herald sent some of them more than once (the resends after a timeout or reset \
             carried the same webhook-id, and the destination dropped them as duplicates)."
        )?;
    } else {
        writeln!(out, "NOT converged to exactly one copy everywhere (see above).")?;
    }
    server.shutdown().await;
    sim.shutdown().await;
    Ok(if all_one { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
