//! The paging kinds end to end: a real `herald serve` configured with the keys
//! for `pagerduty` and `opsgenie`, delivering an incident (original, update, resolve) to
//! the simulator's dialects while every first request of each event is stored and never
//! answered. The verdict is read from the destinations' own state: one PagerDuty incident
//! resolved, one Opsgenie alert closed with one copy of each note.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herald_simulator::{FaultPlan, OPSGENIE_API_KEY, PAGERDUTY_ROUTING_KEY, Simulator};
use serde_json::{Value, json};

use crate::ALLOW_LOOPBACK;
use crate::process::Server;

/// How long the test waits for convergence before it gives up.
const PATIENCE: Duration = Duration::from_secs(120);

/// Fast retries and a short attempt timeout, so each hang costs about a second.
const QUICK: &str = "backoff_base = \"100ms\"\nbackoff_max = \"500ms\"\ntimeout = \"1s\"\n";

fn write_config(dir: &Path, destinations: &str) -> PathBuf {
    let config = dir.join("herald.toml");
    let text = format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\
         shutdown_grace = \"1s\"\n\n{destinations}",
        dir.join("herald.db").display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// Broadcast `id` once every delivery is terminal or held (bounded by `PATIENCE`).
async fn settled(server: &Server, id: &str, count: usize) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let view = server.get(&format!("/v1/broadcasts/{id}")).await;
        let done = view["deliveries"].as_array().is_some_and(|ds| {
            ds.len() == count
                && ds.iter().all(|d| {
                    matches!(
                        d["state"].as_str(),
                        Some("delivered" | "failed" | "cancelled" | "held")
                    )
                })
        });
        if done {
            return view;
        }
        assert!(Instant::now() < deadline, "broadcast {id} did not settle: {view:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_pages_once_across_lost_answers_and_resolves() {
    let sim = Simulator::start(vec![
        ("pd".to_owned(), FaultPlan::healthy().hang_first(1)),
        ("og".to_owned(), FaultPlan::healthy().hang_first(1)),
    ])
    .await
    .unwrap();
    let view = sim.view();
    let dir = tempfile::tempdir().unwrap();
    let destinations = format!(
        "[destinations.pager]\nkind = \"pagerduty\"\nrouting_key = \"{PAGERDUTY_ROUTING_KEY}\"\n\
         base_url = \"{}\"\n{QUICK}\n\
         [destinations.genie]\nkind = \"opsgenie\"\napi_key = \"{OPSGENIE_API_KEY}\"\n\
         base_url = \"{}\"\n{QUICK}\n",
        view.pagerduty_url("pd"),
        view.opsgenie_url("og"),
    );
    let config = write_config(dir.path(), &destinations);
    let server = Server::start(&config).await;

    let (status, body) = server
        .post(
            "/v1/broadcasts",
            json!({"destinations": ["pager", "genie"], "message": {
                "title": "P1: checkout is down",
                "body": "Error rate **38 %** since 12:01.",
                "severity": "critical",
                "fields": {"service": "checkout"},
            }}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    settled(&server, &id, 2).await;
    for (title, severity, count) in
        [("Rolling back", "warning", 4), ("Resolved: checkout is back", "resolved", 6)]
    {
        let (status, body) = server
            .post(
                &format!("/v1/broadcasts/{id}/updates"),
                json!({"message": {"title": title, "severity": severity}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        settled(&server, &id, count).await;
    }
    let settled = settled(&server, &id, 6).await;
    let dedup = format!("herald-{id}");
    for delivery in settled["deliveries"].as_array().unwrap() {
        assert_eq!(delivery["state"], "delivered", "{delivery:#}");
        assert_eq!(delivery["remote_ref"], dedup.as_str(), "{delivery:#}");
        assert!(delivery["attempts"].as_u64().unwrap() >= 2, "no hang was met: {delivery:#}");
    }

    // PagerDuty: one incident for the whole thread, now resolved.
    let incidents = view.pagerduty_incidents("pd");
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0].dedup_key, dedup);
    assert_eq!(incidents[0].status, "resolved");
    assert_eq!(incidents[0].summary, "Rolling back");

    // Opsgenie: one alert, created once, one copy of the note, closed.
    let alerts = view.opsgenie_alerts("og");
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!((alerts[0].count, alerts[0].status.as_str()), (1, "closed"), "{alerts:#?}");
    assert_eq!(alerts[0].notes.len(), 2, "the note and the close note: {alerts:#?}");
    assert!(alerts[0].notes[0].starts_with("Rolling back"));
    assert!(alerts[0].notes[1].starts_with("Resolved: checkout is back"));

    server.kill().await;
    sim.shutdown().await;
}
