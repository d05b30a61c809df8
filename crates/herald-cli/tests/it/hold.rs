//! Restart + `on_unknown = "hold"`: an attempt in flight when the server is SIGKILLed is
//! ambiguous; at a receiver that does not deduplicate herald must not guess, so after the
//! restart the delivery is held until an operator retries or cancels it.

use std::time::Duration;

use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};

use crate::ALLOW_LOOPBACK;
use crate::process::{Server, herald};

async fn cli(base: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new(herald())
        .args(["--server", base])
        .args(args)
        .env("RUST_LOG", "error")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The only delivery of broadcast `id`, once `done` holds for it (bounded).
async fn delivery_when(server: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let view = server.get(&format!("/v1/broadcasts/{id}")).await;
        let delivery = view["deliveries"][0].clone();
        if done(&delivery) {
            return delivery;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the delivery of {id} never reached the expected state");
}

/// Depends on the per-destination `dedupe = false` (the lead's ambiguity work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_in_flight_at_a_kill_is_held_after_restart_until_an_operator_acts() {
    // The first try of each message is stored and never answered: in flight at the kill.
    let sim = Simulator::start(vec![(
        "fragile".into(),
        FaultPlan::healthy().dedupe(false).hang_first(1),
    )])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(
        &path,
        format!(
            "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n\
             [destinations.fragile]\nkind = \"webhook\"\nurl = \"{}\"\ndedupe = false\n\
             on_unknown = \"hold\"\ntimeout = \"30s\"\nbackoff_base = \"100ms\"\n",
            dir.path().join("herald.db").display(),
            sim.url("fragile")
        ),
    )
    .unwrap();
    let server = Server::start(&path).await;
    let mut ids = Vec::new();
    for title in ["to retry", "to cancel"] {
        let (status, view) = server
            .post(
                "/v1/broadcasts",
                json!({"destinations": ["fragile"], "message": {"title": title}}),
            )
            .await;
        assert_eq!(status, 202, "{view}");
        ids.push(view["id"].as_str().unwrap().to_string());
    }
    assert!(sim.wait_until(Duration::from_secs(10), |v| v.requests("fragile") == 2).await);
    server.kill().await;

    let server = Server::start(&path).await;
    let mut held = Vec::new();
    for id in &ids {
        let delivery =
            delivery_when(&server, id, |d| d["state"] != "in_flight" && d["state"] != "pending")
                .await;
        assert_eq!(delivery["state"], "held", "not held after the restart: {delivery:#}");
        assert!(
            delivery["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "a held delivery must say why: {delivery:#}"
        );
        held.push(delivery["id"].as_str().unwrap().to_string());
    }
    // The operator cancels one and retries the other.
    cli(&server.base, &["cancel", &held[1]]).await;
    let cancelled = delivery_when(&server, &ids[1], |d| d["state"] != "held").await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled:#}");
    cli(&server.base, &["retry", &held[0]]).await;
    let retried =
        delivery_when(&server, &ids[0], |d| d["state"] == "delivered" || d["state"] == "failed")
            .await;
    assert_eq!(retried["state"], "delivered", "{retried:#}");

    // Nothing was resent on its own: the two interrupted tries plus the operator's retry.
    // The retry went through the same lane after the cancel, so a resend of the cancelled
    // delivery would have been sent by then.
    assert_eq!(sim.stats("fragile").requests, 3);
    assert_eq!(sim.view().copies_of("fragile", &held[0]), 2, "the retry is the operator's risk");
    assert_eq!(sim.view().copies_of("fragile", &held[1]), 1);
    server.kill().await;
    sim.shutdown().await;
}
