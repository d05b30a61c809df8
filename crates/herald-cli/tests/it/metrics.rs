//! `/metrics` after a scripted run on a real `herald serve`: each family's value is
//! checked against what happened, and every metric the shipped Grafana dashboard and
//! Prometheus alert rules query exists in the scrape.
//!
//! The run: broadcast A to `ok` and `flaky` (which answers each delivery's first try
//! with 503), B to `flaky`, B again with the same idempotency key (a replay), one update
//! of A, C and E to `fragile` (whose first try hangs past the timeout; no dedupe, so
//! they are held; E is then cancelled), D to `slow` (which throttles everything; paused
//! once it has throttled).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};

use crate::ALLOW_LOOPBACK;
use crate::process::Server;

/// How long the test waits for a state before it gives up.
const PATIENCE: Duration = Duration::from_secs(60);

/// Polls (the server is another process: there is no idle hook) until `done` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample `series` (name and labels exactly as herald writes them).
fn value(scrape: &str, series: &str) -> f64 {
    let line = scrape
        .lines()
        .find(|line| line.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')))
        .unwrap_or_else(|| panic!("no sample `{series}` in:\n{scrape}"));
    line[series.len()..].trim().parse().unwrap()
}

/// The names of every sample in a scrape (`_total`, `_bucket`, `_sum`, `_count` kept).
fn sample_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

/// Every `herald_…` name a text mentions.
fn herald_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("herald_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

async fn scrape(server: &Server) -> String {
    let res = reqwest::get(format!("{}/metrics", server.base)).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.text().await.unwrap()
}

async fn submit(server: &Server, body: Value, key: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{}/v1/broadcasts", server.base)).json(&body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn state_of(server: &Server, id: &str, destination: &str, seq: u64) -> String {
    let view = server.get(&format!("/v1/broadcasts/{id}")).await;
    let found = view["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == destination && d["seq"].as_u64().unwrap_or(0) == seq);
    found.map(|d| d["state"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_what_happened_and_the_dashboard_and_alerts_query_only_real_metrics() {
    let sim = Simulator::start(vec![
        ("ok".to_owned(), FaultPlan::healthy()),
        ("flaky".to_owned(), FaultPlan::healthy().fail_first(1, 503)),
        ("fragile".to_owned(), FaultPlan::healthy().dedupe(false).hang_first(1)),
        ("slow".to_owned(), FaultPlan::healthy().rate_limit(0, Duration::from_secs(1))),
    ])
    .await
    .unwrap();
    let view = sim.view();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    let policy = "backoff_base = \"50ms\"\nrate_limit = \"100/s\"\n";
    let text = format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\nshutdown_grace = \"1s\"\n\n\
         [destinations.ok]\nkind = \"webhook\"\nurl = \"{}\"\n{policy}\n\
         [destinations.flaky]\nkind = \"webhook\"\nurl = \"{}\"\n{policy}\n\
         [destinations.fragile]\nkind = \"webhook\"\nurl = \"{}\"\n{policy}dedupe = false\n\
         on_unknown = \"hold\"\ntimeout = \"300ms\"\n\n\
         [destinations.slow]\nkind = \"webhook\"\nurl = \"{}\"\n{policy}concurrency = 1\n",
        dir.path().join("herald.db").display(),
        view.url("ok"),
        view.url("flaky"),
        view.url("fragile"),
        view.url("slow"),
    );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config).await;

    let message = |title: &str| json!({"title": title});
    let (status, a) =
        submit(&server, json!({"destinations": ["ok", "flaky"], "message": message("A")}), None)
            .await;
    assert_eq!(status, 202, "{a}");
    let a = a["id"].as_str().unwrap().to_owned();
    let b_body = json!({"destinations": ["flaky"], "message": message("B")});
    let (status, b) = submit(&server, b_body.clone(), Some("key-b")).await;
    assert_eq!(status, 202, "{b}");
    let b = b["id"].as_str().unwrap().to_owned();
    let (status, replay) = submit(&server, b_body, Some("key-b")).await;
    assert_eq!((status, replay["id"].as_str()), (200, Some(b.as_str())), "a replay");
    server.wait_converged(&a).await;
    server.wait_converged(&b).await;
    let (status, update) = server
        .post(&format!("/v1/broadcasts/{a}/updates"), json!({"message": message("A2")}))
        .await;
    assert_eq!(status, 202, "{update}");
    for destination in ["ok", "flaky"] {
        until("the update being delivered", || async {
            state_of(&server, &a, destination, 1).await == "delivered"
        })
        .await;
    }
    let submitted_c = Instant::now();
    let (status, c) =
        submit(&server, json!({"destinations": ["fragile"], "message": message("C")}), None).await;
    assert_eq!(status, 202, "{c}");
    let c = c["id"].as_str().unwrap().to_owned();
    until("C being held", || async { state_of(&server, &c, "fragile", 0).await == "held" }).await;
    let (status, e) =
        submit(&server, json!({"destinations": ["fragile"], "message": message("E")}), None).await;
    assert_eq!(status, 202, "{e}");
    let e = e["id"].as_str().unwrap().to_owned();
    until("E being held", || async { state_of(&server, &e, "fragile", 0).await == "held" }).await;
    let e_delivery = server.get(&format!("/v1/broadcasts/{e}")).await["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, cancelled) =
        server.post(&format!("/v1/deliveries/{e_delivery}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{cancelled}");
    let (status, d) =
        submit(&server, json!({"destinations": ["slow"], "message": message("D")}), None).await;
    assert_eq!(status, 202, "{d}");
    let d = d["id"].as_str().unwrap().to_owned();
    until("D being throttled", || async { view.requests("slow") > 0 }).await;
    let (status, paused) = server.post("/v1/destinations/slow/pause", json!({})).await;
    assert_eq!(status, 200, "{paused}");
    // The only attempt that can be in flight ends within the simulator's answer; then
    // the attempt log and the counters stand still.
    until("slow's attempts being recorded", || async {
        let attempts = server.get(&format!("/v1/broadcasts/{d}/attempts")).await;
        let logged = attempts["attempts"].as_array().map_or(0, Vec::len) as u64;
        logged > 0 && logged == view.requests("slow")
    })
    .await;
    let throttled = server.get(&format!("/v1/broadcasts/{d}/attempts")).await["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["outcome"] == "throttled")
        .count() as f64;
    assert!(throttled >= 1.0);

    let m = scrape(&server).await;
    let since_c = submitted_c.elapsed().as_secs_f64();

    // Accepted work: A, B, C, D, E (the replay is not counted), one update.
    assert_eq!(value(&m, "herald_broadcasts_accepted_total"), 5.0, "{m}");
    assert_eq!(value(&m, "herald_updates_accepted_total"), 1.0, "{m}");
    // Attempts: flaky's three deliveries (A, B, A's update) each failed once with 503.
    let attempts = |d: &str, o: &str| {
        value(&m, &format!("herald_attempts_total{{destination=\"{d}\",outcome=\"{o}\"}}"))
    };
    assert_eq!(attempts("flaky", "retry"), 3.0);
    assert_eq!(attempts("flaky", "delivered"), 3.0);
    assert_eq!(attempts("ok", "delivered"), 2.0);
    assert_eq!(attempts("ok", "retry"), 0.0);
    assert_eq!(attempts("fragile", "unknown"), 2.0);
    assert_eq!(attempts("slow", "throttled"), throttled);
    // Deliveries that ended, by state.
    let deliveries = |d: &str, o: &str| {
        value(&m, &format!("herald_deliveries_total{{destination=\"{d}\",outcome=\"{o}\"}}"))
    };
    assert_eq!(deliveries("flaky", "delivered"), 3.0);
    assert_eq!(deliveries("ok", "delivered"), 2.0);
    // C's hold is not an end; the operator's cancel of E is.
    assert_eq!(deliveries("fragile", "cancelled"), 1.0);
    assert!(!m.contains("herald_deliveries_total{destination=\"fragile\",outcome=\"held"));
    // Throttles, and the lane slowed down and paused.
    assert_eq!(value(&m, "herald_throttles_total{destination=\"slow\"}"), throttled);
    assert_eq!(value(&m, "herald_throttles_total{destination=\"ok\"}"), 0.0);
    assert_eq!(value(&m, "herald_destination_throttled{destination=\"slow\"}"), 1.0);
    assert_eq!(value(&m, "herald_destination_throttled{destination=\"ok\"}"), 0.0);
    assert_eq!(value(&m, "herald_destination_paused{destination=\"slow\"}"), 1.0);
    assert_eq!(value(&m, "herald_destination_paused{destination=\"ok\"}"), 0.0);
    // No breaker opened: one failure per delivery, each followed by a success.
    for d in ["ok", "flaky", "fragile", "slow"] {
        assert_eq!(value(&m, &format!("herald_circuit_state{{destination=\"{d}\"}}")), 0.0, "{d}");
    }
    // Unfinished and held deliveries: C held at fragile, D pending at slow.
    let gauge = |name: &str, d: &str| value(&m, &format!("{name}{{destination=\"{d}\"}}"));
    assert_eq!(gauge("herald_pending_deliveries", "fragile"), 1.0);
    assert_eq!(gauge("herald_pending_deliveries", "slow"), 1.0);
    assert_eq!(gauge("herald_pending_deliveries", "ok"), 0.0);
    assert_eq!(gauge("herald_held_deliveries", "fragile"), 1.0);
    assert_eq!(gauge("herald_held_deliveries", "slow"), 0.0);
    // The oldest unfinished delivery's age: C's, accepted after `submitted_c` was taken.
    let oldest = gauge("herald_oldest_pending_age_seconds", "fragile");
    assert!(oldest > 0.0 && oldest <= since_c, "{oldest} vs {since_c}");
    assert!(gauge("herald_oldest_pending_age_seconds", "slow") <= oldest);
    assert_eq!(gauge("herald_oldest_pending_age_seconds", "ok"), 0.0);
    // Submit-to-delivered latency: one observation per delivery, none for the rest.
    let latency = |d: &str, part: &str| {
        value(&m, &format!("herald_delivery_latency_seconds_{part}{{destination=\"{d}\"}}"))
    };
    assert_eq!(latency("flaky", "count"), 3.0);
    assert_eq!(latency("ok", "count"), 2.0);
    assert_eq!(latency("fragile", "count"), 0.0);
    assert!(latency("flaky", "sum") > 0.0);
    assert_eq!(
        value(&m, "herald_delivery_latency_seconds_bucket{le=\"+Inf\",destination=\"flaky\"}"),
        3.0
    );
    // The attempt duration: one per attempt (slow's are throttled attempts too).
    let durations: f64 = ["ok", "flaky", "fragile", "slow"]
        .iter()
        .map(|d| {
            value(&m, &format!("herald_attempt_duration_seconds_count{{destination=\"{d}\"}}"))
        })
        .sum();
    assert_eq!(durations, 2.0 + 6.0 + 2.0 + throttled);
    // The SQLite writer: every write went through a committed batch; the submits,
    // update, records and cancel alone were 5 + 1 + 10 + 1 + throttled requests (the
    // replay writes too).
    let batches = value(&m, "herald_store_write_batch_size_count");
    let requests = value(&m, "herald_store_write_batch_size_sum");
    assert!(batches >= 1.0 && requests >= batches, "{batches} batches, {requests} requests");
    assert!(requests >= 17.0 + throttled, "{requests}");
    assert_eq!(value(&m, "herald_store_transaction_duration_seconds_count"), batches);

    // The dashboard and the alert rules query only what a scrape has.
    let names = sample_names(&m);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dashboard = std::fs::read_to_string(repo.join("ops/grafana/herald.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).unwrap();
    assert!(parsed["panels"].as_array().is_some_and(|p| !p.is_empty()), "panels");
    let rules = std::fs::read_to_string(repo.join("ops/prometheus/alerts.yml")).unwrap();
    for (file, text) in [("herald.json", &dashboard), ("alerts.yml", &rules)] {
        let queried = herald_names(text);
        assert!(!queried.is_empty(), "{file} queries no herald metric");
        let missing: Vec<&String> = queried.difference(&names).collect();
        assert!(missing.is_empty(), "{file} queries metrics /metrics lacks: {missing:?}");
    }

    server.kill().await;
    sim.shutdown().await;
}
