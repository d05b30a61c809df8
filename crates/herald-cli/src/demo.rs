//! `herald demo`: the whole idea in thirty seconds.
//!
//! Starts simulated destinations (webhooks that are healthy, flaky, rate limited, post and
//! then time out, post and then reset the connection; a Slack channel, a Teams channel
//! and a Jira project that post and then time out), a real herald server on the embedded store in a
//! temporary directory, opens an incident, updates and resolves it through the HTTP API,
//! shows each destination converge, and ends with the proof read from the destinations
//! themselves: each holds exactly one copy of each message.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use herald_simulator::{
    FaultPlan, GRAPH_CHANNEL_ID, GRAPH_REFRESH_TOKEN, GRAPH_TEAM_ID, JIRA_EMAIL, JIRA_PROJECT,
    JIRA_TOKEN, Simulator,
};
use serde_json::{Value, json};

use crate::board::{self, Display};
use crate::client::Client;
use crate::config::Config;
use crate::{progress, serve};

/// What API a demo destination speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Speaks {
    /// A Standard Webhooks receiver that drops a second copy with the same `webhook-id`.
    Webhook,
    /// Slack's Web API (updates as thread replies).
    Slack,
    /// Jira Cloud (updates as comments, resolved closes the issue).
    Jira,
    /// Microsoft Graph channel messages (updates as replies).
    Teams,
}

/// One demo destination: name, what it does, the API it speaks, its fault plan.
struct Demo {
    name: &'static str,
    what: &'static str,
    speaks: Speaks,
    plan: FaultPlan,
}

/// The destinations of the demo.
fn destinations() -> Vec<Demo> {
    let demo = |name, what, speaks, plan| Demo { name, what, speaks, plan };
    vec![
        demo("healthy", "webhook, answers 200 at once", Speaks::Webhook, FaultPlan::healthy()),
        demo(
            "flaky",
            "webhook, fails the first 2 tries of each message with 503",
            Speaks::Webhook,
            FaultPlan::healthy().fail_first(2, 503),
        ),
        demo(
            "rate-limited",
            "webhook, allows 1 request/s, answers 429 + Retry-After beyond",
            Speaks::Webhook,
            FaultPlan::healthy().rate_limit(1, Duration::from_secs(1)),
        ),
        demo(
            "times-out",
            "webhook, posts the first try, then never answers",
            Speaks::Webhook,
            FaultPlan::healthy().hang_first(1),
        ),
        demo(
            "resets",
            "webhook, posts the first try, then drops the connection",
            Speaks::Webhook,
            FaultPlan::healthy().reset_first(1),
        ),
        demo(
            "slack",
            "Slack Web API (no idempotency key): posts each message, then times out; \
             herald finds it in the channel history instead of posting again",
            Speaks::Slack,
            FaultPlan::healthy().dedupe(false).hang_first(1),
        ),
        demo(
            "teams",
            "Microsoft Teams (Graph): posts each message, then times out; herald finds \
             its marker among the channel's recent messages",
            Speaks::Teams,
            FaultPlan::healthy().dedupe(false).hang_first(1),
        ),
        demo(
            "jira",
            "Jira Cloud: creates the issue, then times out, and its search lags 2 s \
             behind; comments for updates, \"Done\" on resolve",
            Speaks::Jira,
            FaultPlan::healthy().dedupe(false).hang_first(1).search_lag(Duration::from_secs(2)),
        ),
    ]
}

/// The `[outbound]` table of every configuration herald writes for its own simulators
/// (demo, bench, torture): they listen on loopback, which herald refuses by default, so
/// it is allowed explicitly, as an operator would.
pub(crate) const ALLOW_LOOPBACK: &str =
    "[outbound]\nallow_networks = [\"127.0.0.0/8\", \"::1\"]\n\n";

/// A demo secret (Standard Webhooks format), so the requests are signed as in production.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config_text(sim: &Simulator, database: &std::path::Path) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\nshutdown_grace = \"2s\"\n\n\
         {ALLOW_LOOPBACK}",
        database.display()
    );
    let view = sim.view();
    for Demo { name, speaks, .. } in destinations() {
        text.push_str(&format!("[destinations.{name}]\n"));
        text.push_str(&match speaks {
            Speaks::Webhook => {
                format!("kind = \"webhook\"\nurl = \"{}\"\nsecret = \"${{DEMO_SECRET}}\"\n", sim.url(name))
            }
            Speaks::Slack => format!(
                "kind = \"slack\"\ntoken = \"${{DEMO_SLACK_TOKEN}}\"\nchannel = \"C0123456789\"\n\
                 base_url = \"{}\"\n",
                view.slack_api_url(name)
            ),
            Speaks::Teams => format!(
                "kind = \"teams-graph\"\ntenant = \"contoso.onmicrosoft.com\"\n\
                 client_id = \"00000000-0000-0000-0000-00000000demo\"\n\
                 refresh_token = \"${{DEMO_GRAPH_REFRESH_TOKEN}}\"\nteam_id = \"{GRAPH_TEAM_ID}\"\n\
                 channel_id = \"{GRAPH_CHANNEL_ID}\"\nbase_url = \"{}\"\nlogin_url = \"{}\"\n",
                view.graph_base_url(name),
                view.graph_login_url(name)
            ),
            Speaks::Jira => format!(
                "kind = \"jira\"\nurl = \"{}\"\nemail = \"{JIRA_EMAIL}\"\ntoken = \"${{DEMO_JIRA_TOKEN}}\"\n\
                 project = \"{JIRA_PROJECT}\"\nissue_type = \"Incident\"\n\
                 transition_on_resolve = \"Done\"\nlookup_grace = \"10s\"\n",
                view.jira_url(name)
            ),
        });
        text.push_str("backoff_base = \"200ms\"\nbackoff_max = \"2s\"\ntimeout = \"1500ms\"\n\n");
    }
    let names: Vec<String> = destinations().iter().map(|d| format!("\"{}\"", d.name)).collect();
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
        destinations().into_iter().map(|d| (d.name.to_string(), d.plan)).collect(),
    )
    .await
    .context("cannot start the simulated destinations")?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let database = dir.path().join("herald-demo.db");
    // The secrets come from "the environment", as herald.toml should have them.
    let secrets = |name: &str| match name {
        "DEMO_SECRET" => Some(SECRET.to_owned()),
        "DEMO_SLACK_TOKEN" => Some("xoxb-herald-demo".to_owned()),
        "DEMO_GRAPH_REFRESH_TOKEN" => Some(GRAPH_REFRESH_TOKEN.to_owned()),
        "DEMO_JIRA_TOKEN" => Some(JIRA_TOKEN.to_owned()),
        _ => None,
    };
    let config = Config::parse(&config_text(&sim, &database), "demo", &secrets)
        .map_err(|errors| anyhow::anyhow!("the demo configuration is invalid:\n{errors}"))?;
    let server = serve::start(&config).await?;
    let client = Client::new(&format!("http://{}", server.addr));

    writeln!(
        out,
        "herald demo: one incident, opened, updated and resolved, to {} destinations, \
         partial failure everywhere.\n",
        destinations().len()
    )?;
    for Demo { name, what, .. } in destinations() {
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
    for (title, severity) in [
        ("Update: failover to the standby database started", "critical"),
        ("Resolved: checkout is back", "resolved"),
    ] {
        let update = json!({"message": {"title": title, "severity": severity}});
        client.post(&format!("/v1/broadcasts/{id}/updates"), &update).await?;
        writeln!(out, "POST /v1/broadcasts/{id}/updates -> 202 \"{title}\"")?;
    }
    writeln!(out, "   (each update waits for the one before it on its destination)\n")?;

    let view =
        progress::follow(&client, &id, Duration::from_secs(60), Display::detect(), out).await?.view;
    writeln!(out, "\n{}\n", board::summary(&view))?;

    // The proof comes from the destinations, not from herald's own bookkeeping.
    writeln!(out, "What each destination holds:")?;
    writeln!(
        out,
        "  {:<14} {:>8} {:>10} {:>9} {:>9} {:>9}",
        "destination", "requests", "duplicates", "original", "update", "resolved"
    )?;
    let mut all_one = true;
    for Demo { name, .. } in destinations() {
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
        let thread = [copies_of(0), copies_of(1), copies_of(2)];
        let stray = copies.values().sum::<usize>() - thread.iter().sum::<usize>();
        let ok = thread.iter().all(|n| *n == 1) && stray == 0;
        all_one &= ok;
        let mark = |n: usize| format!("{n}{}", if n == 1 { "✓" } else { "✗" });
        writeln!(
            out,
            "  {name:<14} {:>8} {:>10} {:>9} {:>9} {:>9}",
            stats.requests,
            stats.duplicates_dropped,
            mark(thread[0]),
            mark(thread[1]),
            mark(thread[2]),
        )?;
    }
    writeln!(out)?;
    if all_one {
        writeln!(
            out,
            "Converged: every destination holds exactly one copy of each message. The \
             webhooks got some of them more than once (the resends after a timeout or reset \
             carried the same webhook-id, and the receiver dropped them); Slack, Teams and \
             Jira cannot drop a duplicate, so after each timeout herald looked the message up \
             (channel history, recent channel messages, Jira search) and found it instead of \
             posting again."
        )?;
        let view = sim.view();
        if let Some(message) = view.slack_messages("slack").first() {
            writeln!(out, "  slack: one message with {} thread replies.", message.replies.len())?;
        }
        if let Some(message) = view.graph_messages("teams").first() {
            writeln!(out, "  teams: one message with {} replies.", message.replies.len())?;
        }
        if let Some(issue) = view.jira_issues("jira").first() {
            writeln!(
                out,
                "  jira:  {} with {} comments, status {}.",
                issue.key,
                issue.comments.len(),
                issue.status
            )?;
        }
    } else {
        writeln!(out, "NOT converged to exactly one copy everywhere (see above).")?;
    }
    server.shutdown().await;
    sim.shutdown().await;
    Ok(if all_one { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
