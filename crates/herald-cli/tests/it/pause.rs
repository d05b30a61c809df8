//! A destination that is gone pauses itself, end to end: a real `herald serve` with a
//! `discord` destination whose webhook was deleted in the simulator (Discord's own
//! `DELETE`, then `404 {"message": "Unknown Webhook", "code": 10015}`). Of three
//! broadcasts the first fails with the 404, the destination shows paused with the reason
//! (API and `herald destinations`), the others wait; once the webhook is back and the
//! operator resumes, each of them is posted exactly once.

use std::time::{Duration, Instant};

use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};

use crate::ALLOW_LOOPBACK;
use crate::cli::run;
use crate::process::Server;

/// How long the test waits for convergence before it gives up.
const PATIENCE: Duration = Duration::from_secs(60);

/// The `discord` destination as `GET /v1/destinations` shows it.
async fn destination(server: &Server) -> Value {
    let list = server.get("/v1/destinations").await;
    list["destinations"].as_array().unwrap().iter().find(|d| d["name"] == "alerts").unwrap().clone()
}

/// The states of the broadcasts' single deliveries, in the order given.
async fn states(server: &Server, ids: &[String]) -> Vec<String> {
    let mut res = Vec::new();
    for id in ids {
        let view = server.get(&format!("/v1/broadcasts/{id}")).await;
        res.push(view["deliveries"][0]["state"].as_str().unwrap().to_owned());
    }
    res
}

/// Polls (the server is another process: there is no idle hook) until `done` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_discord_webhook_pauses_the_destination_until_resumed() {
    let sim = Simulator::start(vec![("dc".to_owned(), FaultPlan::healthy().dedupe(false))])
        .await
        .unwrap();
    let view = sim.view();
    let url = view.discord_hook_url("dc");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    // One attempt at a time, so the 404 pauses the lane before a second one starts (an
    // attempt already in flight would end as it ends); a fast rate limit so pacing plays
    // no part in what is or is not sent.
    let text = format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\nshutdown_grace = \"1s\"\n\n\
         [destinations.alerts]\nkind = \"discord\"\nurl = \"{url}\"\nconcurrency = 1\n\
         rate_limit = \"100/s\"\nbackoff_base = \"100ms\"\ntimeout = \"2s\"\non_unknown = \"hold\"\n",
        dir.path().join("herald.db").display()
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config).await;

    // The webhook is deleted as a Discord user deletes it.
    let deleted = reqwest::Client::new().delete(&url).send().await.unwrap();
    assert_eq!(deleted.status().as_u16(), 204);

    let mut ids = Vec::new();
    for n in 1..=3 {
        let (status, body) = server
            .post(
                "/v1/broadcasts",
                json!({"destinations": ["alerts"], "message": {"title": format!("alert {n}")}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }

    until("the 404 failing a delivery", || async {
        states(&server, &ids).await.iter().any(|s| s == "failed")
    })
    .await;
    let paused = destination(&server).await;
    assert_eq!(paused["paused"], true, "{paused}");
    let reason = paused["paused_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("404 Unknown Webhook, code 10015"), "{paused}");
    assert!(reason.contains("replace `url` and resume the destination"), "{paused}");
    let failed = states(&server, &ids).await.iter().position(|s| s == "failed").unwrap();
    let attempts = server.get(&format!("/v1/broadcasts/{}/attempts", ids[failed])).await;
    assert_eq!(attempts["attempts"].as_array().unwrap().len(), 1, "{attempts}");
    assert_eq!(attempts["attempts"][0]["status"], 404, "{attempts}");

    // Submitted broadcasts wake the lane at once, so an unpaused lane would have sent
    // the other two within milliseconds; a second is generous.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut now = states(&server, &ids).await;
    now.sort();
    assert_eq!(now, ["failed", "pending", "pending"]);
    assert_eq!(view.discord_calls_after_delete("dc"), 1, "only one request met the 404");
    assert_eq!(destination(&server).await["pending"], 2);
    let output = run(&["--server", &server.base, "destinations"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let row = stdout.lines().find(|l| l.starts_with("alerts")).unwrap_or_default();
    assert!(row.contains("paused"), "{stdout}");
    assert!(stdout.contains("paused by the destination: Discord says the webhook"), "{stdout}");

    // The operator puts the webhook back (here: the simulator un-deletes it) and resumes.
    view.discord_restore_webhook("dc");
    let (status, resumed) = server.post("/v1/destinations/alerts/resume", json!({})).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["paused_reason"], Value::Null);
    until("the waiting broadcasts being delivered", || async {
        states(&server, &ids).await.iter().filter(|s| *s == "delivered").count() == 2
    })
    .await;
    let mut now = states(&server, &ids).await;
    now.sort();
    assert_eq!(now, ["delivered", "delivered", "failed"]);
    let mut titles: Vec<String> = view
        .discord_messages("dc")
        .iter()
        .map(|m| m.embeds[0]["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    titles.sort();
    let mut expected: Vec<String> = (1..=3).map(|n| format!("alert {n}")).collect();
    expected.remove(failed);
    assert_eq!(titles, expected, "each waiting broadcast posted exactly once");
    let output = run(&["--server", &server.base, "destinations"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("paused"), "{stdout}");

    server.kill().await;
    sim.shutdown().await;
}
