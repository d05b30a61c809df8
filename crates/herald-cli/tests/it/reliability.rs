//! The reliability bar of DESIGN.md, measured against the failure modes of the most
//! widely used alert router: 429s must slow herald down, not be hammered through.

use std::time::Duration;

use crate::ALLOW_LOOPBACK;
use herald_cli::config::Config;
use herald_cli::serve;
use herald_simulator::{FaultPlan, Simulator};
use serde_json::json;

/// DESIGN.md: Alertmanager needed 190 rejections to get 20 messages through a
/// 1 message/s bucket. Honouring `Retry-After` per delivery alone still keeps the other
/// deliveries of the lane flowing into the limit (12 rejections for these 12 messages
/// when measured); herald also pauses the whole lane for `Retry-After` and then paces
/// it, so only the first overflow is rejected (2 when measured).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_destination_sees_few_rejections() {
    const MESSAGES: usize = 12;
    let sim = Simulator::start(vec![(
        "bucket".into(),
        FaultPlan::healthy().rate_limit(4, Duration::from_secs(1)),
    )])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\n\
         [destinations.bucket]\nkind = \"webhook\"\nurl = \"{}\"\nconcurrency = 2\nbackoff_base = \"100ms\"\n",
        dir.path().join("herald.db").display(),
        sim.url("bucket")
    );
    let config = Config::parse(&text, "test", &|_| None).unwrap();
    let server = serve::start(&config).await.unwrap();
    let http = reqwest::Client::new();
    for n in 0..MESSAGES {
        let res = http
            .post(format!("http://{}/v1/broadcasts", server.addr))
            .json(&json!({"destinations": ["bucket"], "message": {"title": format!("m{n}")}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 202);
    }
    let all =
        sim.wait_until(Duration::from_secs(30), |v| v.stored("bucket") >= MESSAGES as u64).await;
    assert!(all, "not all messages got through the bucket");
    let stats = sim.stats("bucket");
    let rejections = stats.answered.get(&429).copied().unwrap_or(0);
    eprintln!(
        "{MESSAGES} messages through a 4/s bucket: {rejections} rejections, {} requests",
        stats.requests
    );
    assert!(
        rejections <= 3,
        "{rejections} rejections for {MESSAGES} messages: the lane kept sending into the limit"
    );
    assert_eq!(sim.copies("bucket").len(), MESSAGES);
    server.shutdown().await;
    sim.shutdown().await;
}

/// A dead database writer stops the server (instead of answering every write with 503
/// while `/healthz` stays green), and `/readyz` turns 503 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_database_writer_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n",
        dir.path().join("herald.db").display(),
    );
    let config = Config::parse(&text, "test", &|_| None).unwrap();
    let server = serve::start(&config).await.unwrap();
    let http = reqwest::Client::new();
    let ready = http.get(format!("http://{}/readyz", server.addr)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    let _ = server.sqlite().unwrap().panic_writer().await;
    let stop =
        tokio::time::timeout(Duration::from_secs(5), server.until_stopped(std::future::pending()))
            .await
            .expect("the server did not notice that its writer died");
    assert!(
        matches!(&stop, serve::Stop::WriterFailed(cause) if cause.contains("panic_writer")),
        "{stop:?}"
    );
    let ready = http.get(format!("http://{}/readyz", server.addr)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    server.shutdown().await;
}
