//! `herald serve` on PostgreSQL: a real process on its own schema of the test database
//! (`HERALD_TEST_DATABASE_URL`, by default the machine's server) delivers to simulated
//! webhooks, is killed with SIGKILL mid-run and started again as a new node; every
//! accepted broadcast converges, the deduplicating destination holds one copy of each,
//! and the attempt log shows no delivery in the hands of two nodes at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use herald_simulator::{FaultPlan, Simulator};
use herald_store::postgres::MIGRATIONS;
use serde_json::json;
use sqlx::Row;

use crate::ALLOW_LOOPBACK;
use crate::database::Schema;
use crate::process::Server;

const BROADCASTS: usize = 80;

fn config(sim: &Simulator, url: &str) -> String {
    format!(
        r#"
{ALLOW_LOOPBACK}[server]
listen = "127.0.0.1:0"
database = "{url}"

# Deduplicates by webhook-id, as a Standard Webhooks receiver should.
[destinations.dedupe]
kind = "webhook"
url = "{dedupe}"
concurrency = 4
timeout = "1s"
backoff_base = "100ms"
backoff_max = "500ms"

# Stores every request it gets: shows what herald sent again.
[destinations.counting]
kind = "webhook"
url = "{counting}"
concurrency = 4
timeout = "1s"
backoff_base = "100ms"
backoff_max = "500ms"
"#,
        dedupe = sim.url("dedupe"),
        counting = sim.url("counting"),
    )
}

/// Invariants 1, 2, 3 and 4 on PostgreSQL across a SIGKILL. The restarted process is a
/// new node (another pid): it does not know the old leases are dead, so it recovers them
/// as ambiguous once they run out (timeout 1 s + the engine's 5 s grace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_on_postgres_loses_nothing_and_its_successor_converges_once() {
    let schema = Schema::new().await;
    let sim = Simulator::start(vec![
        ("dedupe".into(), FaultPlan::healthy().latency(Duration::from_millis(40))),
        ("counting".into(), FaultPlan::healthy().dedupe(false).latency(Duration::from_millis(40))),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("herald.toml");
    std::fs::write(&config_path, config(&sim, &schema.url())).unwrap();

    let server = Server::start(&config_path).await;
    let mut accepted = Vec::new();
    for n in 0..BROADCASTS {
        let request = json!({"destinations": ["dedupe", "counting"], "message": {"title": format!("message {n}")}});
        let (status, view) = server.post("/v1/broadcasts", request).await;
        assert_eq!(status, 202, "{view}");
        accepted.push(view["id"].as_str().unwrap().to_string());
    }
    let arrived = sim.wait_until(Duration::from_secs(30), |v| v.requests("counting") >= 20).await;
    assert!(arrived);
    server.kill().await;
    let before_restart = sim.received("counting").len();
    assert!(
        before_restart < BROADCASTS,
        "everything arrived before the kill; the test proves nothing"
    );

    let server = Server::start(&config_path).await;
    let all = sim
        .wait_until(Duration::from_secs(60), |v| {
            v.stored("dedupe") >= BROADCASTS as u64 && v.copies("counting").len() >= BROADCASTS
        })
        .await;
    assert!(all, "not every accepted broadcast reached the destinations after the restart");

    let mut unknown: BTreeSet<String> = BTreeSet::new();
    for id in &accepted {
        let view = server.wait_converged(id).await;
        assert_eq!(view["state"], "delivered", "{view:#}");
        let attempts = server.get(&format!("/v1/broadcasts/{id}/attempts")).await;
        for attempt in attempts["attempts"].as_array().unwrap() {
            if attempt["outcome"] == "unknown" {
                unknown.insert(attempt["delivery_id"].as_str().unwrap().to_string());
            }
        }
    }
    let copies = sim.copies("dedupe");
    assert_eq!(copies.len(), BROADCASTS);
    assert!(
        copies.values().all(|n| *n == 1),
        "duplicates at the deduplicating destination: {copies:?}"
    );
    // Only what was in flight at the kill may have been sent again, and herald's log then
    // shows it recovered as ambiguous.
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for r in sim.received("counting") {
        *per_key.entry(r.key.unwrap()).or_default() += 1;
    }
    for (key, n) in &per_key {
        assert!(
            *n == 1 || unknown.contains(key),
            "{key} was sent {n} times without an ambiguous attempt"
        );
    }

    // Two nodes worked on the schema; no delivery was attempted by both at once.
    let mut conn = schema.conn().await;
    let nodes: Vec<String> = sqlx::query_scalar("SELECT DISTINCT node_id FROM attempts")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(nodes.len(), 2, "expected the killed node and its successor: {nodes:?}");
    let overlaps = sqlx::query(
        "SELECT a.delivery_id FROM attempts a JOIN attempts b \
         ON a.delivery_id = b.delivery_id AND a.node_id <> b.node_id \
         AND a.started_at < b.started_at + b.duration_ms AND b.started_at < a.started_at + a.duration_ms",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let overlapping: Vec<String> = overlaps.iter().map(|row| row.get(0)).collect();
    assert!(overlapping.is_empty(), "attempted by two nodes at once: {overlapping:?}");
    eprintln!(
        "postgres crash test: {before_restart} of {BROADCASTS} at `counting` before SIGKILL, {} recovered as ambiguous",
        unknown.len()
    );
    server.kill().await;
    sim.shutdown().await;
}

/// `herald migrate` applies the schema once and then finds it up to date; `check-config`
/// accepts the URL without connecting, and neither ever prints the password.
#[tokio::test]
async fn migrate_applies_the_schema_once_and_check_config_needs_no_connection() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, format!("[server]\ndatabase = \"{}\"\n", schema.url())).unwrap();
    let migrate = || {
        tokio::process::Command::new(crate::process::herald())
            .args(["migrate", "--config"])
            .arg(&path)
            .output()
    };
    let first = migrate().await.unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}{}", String::from_utf8_lossy(&first.stderr));
    // Every migration herald has, in order: 1, 2, ... MIGRATIONS.len().
    let all: Vec<i32> = (1..=i32::try_from(MIGRATIONS.len()).unwrap()).collect();
    let listed = all.iter().map(i32::to_string).collect::<Vec<_>>().join(", ");
    assert!(
        stdout.contains(&format!(
            "schema `{}`: applied version {listed}; now at version {}",
            schema.name(),
            all.len()
        )),
        "{stdout}"
    );
    let again = migrate().await.unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("up to date"), "{stdout}");
    let mut conn = schema.conn().await;
    let versions: Vec<i32> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(versions, all);

    // Nothing listens on port 1: check-config does not connect; migrate fails plainly.
    let unreachable = "postgres://herald:hunter2@127.0.0.1:1/herald";
    std::fs::write(&path, format!("[server]\ndatabase = \"{unreachable}\"\n")).unwrap();
    let checked = tokio::process::Command::new(crate::process::herald())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    let failed = migrate().await.unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains("cannot migrate the PostgreSQL database"), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && !String::from_utf8_lossy(&failed.stdout).contains("hunter2")
    );
}
