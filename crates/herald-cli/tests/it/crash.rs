//! The crash test: SIGKILL `herald serve` while deliveries are in flight, restart it on
//! the same database, and check what the destinations ended up with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};

use crate::ALLOW_LOOPBACK;
use crate::process::Server;

const BROADCASTS: usize = 120;

fn config(sim: &Simulator, db: &std::path::Path) -> String {
    format!(
        r#"
{ALLOW_LOOPBACK}[server]
listen = "127.0.0.1:0"
database = "sqlite://{db}"

# Deduplicates by webhook-id, as a Standard Webhooks receiver should.
[destinations.dedupe]
kind = "webhook"
url = "{dedupe}"
concurrency = 4
backoff_base = "100ms"
backoff_max = "500ms"

# Stores every request it gets: shows exactly what herald sent again.
[destinations.counting]
kind = "webhook"
url = "{counting}"
concurrency = 4
backoff_base = "100ms"
backoff_max = "500ms"
"#,
        db = db.display(),
        dedupe = sim.url("dedupe"),
        counting = sim.url("counting"),
    )
}

/// Invariants 1, 3 and 4 across a SIGKILL, and the reliability bar of DESIGN.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_nothing_and_resends_only_what_was_in_flight() {
    // Slow answers keep attempts in flight when the kill lands.
    let sim = Simulator::start(vec![
        ("dedupe".into(), FaultPlan::healthy().latency(Duration::from_millis(40))),
        ("counting".into(), FaultPlan::healthy().dedupe(false).latency(Duration::from_millis(40))),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("herald.toml");
    std::fs::write(&config_path, config(&sim, &dir.path().join("herald.db"))).unwrap();

    let server = Server::start(&config_path).await;
    let mut accepted = Vec::new();
    for n in 0..BROADCASTS {
        let request = json!({"destinations": ["dedupe", "counting"], "message": {"title": format!("message {n}")}});
        let (status, view) = server.post("/v1/broadcasts", request).await;
        assert_eq!(status, 202);
        accepted.push(view["id"].as_str().unwrap().to_string());
    }
    // Kill once some, but not all, deliveries have arrived.
    let arrived = sim.wait_until(Duration::from_secs(30), |v| v.requests("counting") >= 30).await;
    assert!(arrived);
    server.kill().await;
    let killed_at = Instant::now();
    let before_restart = sim.received("counting").len();
    assert!(
        before_restart < BROADCASTS,
        "everything was delivered before the kill; the test proves nothing"
    );

    // From the moment the restart is launched: process start-up counts too.
    let restarted_at = Instant::now();
    let server = Server::start(&config_path).await;
    let all = sim
        .wait_until(Duration::from_secs(60), |v| {
            v.stored("dedupe") >= BROADCASTS as u64 && {
                let copies = v.copies("counting");
                copies.len() >= BROADCASTS
            }
        })
        .await;
    assert!(all, "not every accepted broadcast reached the destinations after the restart");

    // No loss: every accepted broadcast converged, as herald itself reports.
    let mut attempt_logs: HashMap<String, Vec<Value>> = HashMap::new();
    for id in &accepted {
        let view: Value = wait_converged(&server, id).await;
        assert_eq!(view["state"], "delivered", "{view:#}");
        let attempts = server.get(&format!("/v1/broadcasts/{id}/attempts")).await;
        for attempt in attempts["attempts"].as_array().unwrap() {
            attempt_logs
                .entry(attempt["delivery_id"].as_str().unwrap().to_string())
                .or_default()
                .push(attempt.clone());
        }
    }

    // The deduplicating destination holds exactly one copy of each message.
    let copies = sim.copies("dedupe");
    assert_eq!(copies.len(), BROADCASTS);
    assert!(
        copies.values().all(|n| *n == 1),
        "duplicates at the deduplicating destination: {copies:?}"
    );

    // The counting destination shows every resend. A message it had received before the
    // kill may be sent again only if herald had not recorded the answer, i.e. the
    // attempt was in flight: herald's log then shows it recovered as `unknown`.
    let received = sim.received("counting");
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for r in &received {
        *per_key.entry(r.key.clone().unwrap()).or_default() += 1;
    }
    let resent: HashSet<&String> =
        per_key.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k).collect();
    for key in &resent {
        let log = attempt_logs.get(*key).unwrap();
        assert!(
            log.iter().any(|a| a["outcome"] == "unknown"),
            "{key} was sent again although herald had recorded its delivery: {log:#?}"
        );
    }
    // Only deliveries leased at the kill can be resent: at most `concurrency` (4)
    // requests open at the destination plus, per slot, one answered attempt whose
    // record was still queued (a slot is freed when the answer arrives, and its next
    // claim commits in the writer's order, i.e. with or after that record).
    assert!(resent.len() <= 8, "{} messages were sent twice", resent.len());

    // Work resumed promptly after the restart.
    let first_after = received[before_restart..].iter().map(|r| r.at).min().unwrap();
    let resumed = first_after.saturating_duration_since(restarted_at);
    eprintln!(
        "crash test: {} of {BROADCASTS} delivered before SIGKILL, {} resent after restart, first delivery {:?} after restart ({:?} after the kill)",
        before_restart,
        resent.len(),
        resumed,
        first_after.saturating_duration_since(killed_at)
    );
    // DESIGN.md's reliability bar: a restarted server resumes within a second (leases of
    // the dead process are expired at start-up, not waited out).
    assert!(
        resumed <= Duration::from_secs(1),
        "the first delivery came {resumed:?} after the restart; the bar is 1 s"
    );
    server.kill().await;
    sim.shutdown().await;
}

async fn wait_converged(server: &Server, id: &str) -> Value {
    // Bounded: the destinations already hold every copy, so only the final records remain.
    for _ in 0..200 {
        let view = server.get(&format!("/v1/broadcasts/{id}")).await;
        if view["state"] != "in_progress" {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("broadcast {id} did not converge");
}
