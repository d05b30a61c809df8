//! `herald serve` against a real Synapse: SIGKILL it while messages are in flight,
//! restart it on the same database, and check the room holds exactly one event per
//! message (the txnId, i.e. the delivery id, deduplicates what was resent).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::ALLOW_LOOPBACK;
use crate::process::Server;
use crate::synapse::{Limits, PASSWORD, Synapse};

const BROADCASTS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_exactly_one_event_per_message_in_a_real_room() {
    let synapse = Synapse::start(Limits::Generous).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{db}\"\n\n\
             [destinations.ops-matrix]\nkind = \"matrix\"\nhomeserver = \"{url}\"\n\
             user = \"{user}\"\npassword = \"{PASSWORD}\"\nroom = \"{room}\"\n\
             rate_limit = \"100/s\"\nconcurrency = 4\nbackoff_base = \"100ms\"\n\
             backoff_max = \"500ms\"\n",
            db = dir.path().join("herald.db").display(),
            url = synapse.url,
            user = synapse.user_id,
            room = synapse.room_alias,
        ),
    )
    .unwrap();

    let server = Server::start(&config).await;
    for n in 0..BROADCASTS {
        let body =
            json!({"destinations": ["ops-matrix"], "message": {"title": format!("message {n}")}});
        let (status, _) = server.post("/v1/broadcasts", body).await;
        assert_eq!(status, 202);
    }
    let per_delivery = |events: &[serde_json::Value]| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for e in events {
            if let Some(id) = e["content"]["org.herald.delivery"].as_str() {
                *counts.entry(id.to_owned()).or_default() += 1;
            }
        }
        counts
    };
    // Kill once some, but not all, messages are in the room.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let n = per_delivery(&synapse.messages().await).len();
        if n >= 5 {
            break n;
        }
        assert!(Instant::now() < deadline, "nothing reached the room");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.kill().await;
    assert!(before < BROADCASTS, "everything arrived before the kill; the test proves nothing");

    let server = Server::start(&config).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let counts = loop {
        let counts = per_delivery(&synapse.messages().await);
        if counts.len() >= BROADCASTS {
            break counts;
        }
        assert!(Instant::now() < deadline, "only {} of {BROADCASTS} arrived", counts.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(counts.values().all(|n| *n == 1), "duplicates in the room: {counts:?}");
    assert_eq!(synapse.messages().await.len(), BROADCASTS);
    eprintln!("matrix crash test: {before} of {BROADCASTS} in the room before SIGKILL");
    server.kill().await;
}
