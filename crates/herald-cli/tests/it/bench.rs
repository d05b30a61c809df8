//! The benchmark suite end to end at tiny sizes from the debug build: every scenario
//! runs (herald, the load client and the sink as separate processes) and reports sane
//! figures, and the throughput scenario runs on PostgreSQL with one and two nodes. Not
//! a timing test: it checks counts and that the reports are written, never how fast
//! anything was.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;

use crate::database::{admin, database_url};
use crate::process::herald;

/// herald's default `max_attempts`: the outage's dead destination may be sent at most
/// this many requests per delivery.
const MAX_ATTEMPTS: f64 = 8.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_suite_runs_every_scenario_at_tiny_sizes_and_writes_its_reports() {
    let dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(herald())
        .args(["bench", "--runs", "1", "--broadcasts", "200", "--webhooks", "1,5"])
        .args(["--clients", "8", "--latency-rate", "100", "--latency-for", "2s"])
        .args(["--backlog", "2000", "--outage-for", "2s", "--outage-rate", "50"])
        .args(["--retry-broadcasts", "100", "--max-seconds", "60", "--out-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(150), run)
        .await
        .expect("the suite is bounded in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    for heading in
        ["== throughput ==", "== latency ==", "== backlog ==", "== outage ==", "== retry =="]
    {
        assert!(stdout.contains(heading), "{heading} missing from the table");
    }

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("bench.json")).unwrap())
            .unwrap();
    let scenario = |name: &str| {
        let scenarios = report["scenarios"].as_array().unwrap();
        let it = scenarios.iter().find(|s| s["name"] == name).unwrap_or_else(|| {
            panic!("scenario {name} missing from the JSON");
        });
        assert!(it["skipped"].is_null(), "{name} skipped: {}", it["skipped"]);
        it["cases"].as_array().unwrap().clone()
    };
    let figure = |metrics: &Value, key: &str| {
        metrics[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {metrics}"))
    };
    let nproc = report["machine"]["nproc"].as_str().unwrap().parse::<u32>().unwrap();
    assert!(nproc >= 1);

    // Every case: the deliveries herald was given all arrived, and the raw baseline ran.
    let throughput = scenario("throughput");
    assert_eq!(throughput.len(), 2, "1 and 5 webhooks with 8 clients");
    for (case, webhooks) in throughput.iter().zip([1.0, 5.0]) {
        let herald = &case["median"];
        assert_eq!(figure(herald, "deliveries"), 200.0 * webhooks, "{}", case["name"]);
        assert_eq!(figure(herald, "expected_deliveries"), 200.0 * webhooks);
        assert!(figure(herald, "deliveries_per_s") > 0.0);
        assert!(figure(herald, "cpu_ms_per_delivery") > 0.0);
        assert!(figure(herald, "peak_rss_mib") > 1.0);
        assert!(figure(herald, "e2e_p50_ms") <= figure(herald, "e2e_p99_ms"));
        assert_eq!(figure(&case["raw_median"], "deliveries"), 200.0 * webhooks);
        assert!(figure(&case["raw_median"], "deliveries_per_s") > 0.0);
        assert!(!case["histogram"].is_null() && !case["timeline"].as_array().unwrap().is_empty());
    }

    let latency = scenario("latency");
    assert_eq!(latency.len(), 2, "fixed rate and one client");
    for case in &latency {
        let herald = &case["median"];
        assert_eq!(figure(herald, "deliveries"), figure(herald, "expected_deliveries"));
        assert!(figure(herald, "deliveries") > 0.0);
        assert!(figure(herald, "e2e_p99_ms") > 0.0);
        assert!(figure(&case["raw_median"], "e2e_p99_ms") > 0.0);
    }
    assert_eq!(figure(&latency[0]["median"], "deliveries"), 200.0 * 3.0, "100/s for 2 s x 3");

    let backlog = &scenario("backlog")[0];
    let herald = &backlog["median"];
    assert_eq!(figure(herald, "pending_deliveries"), 2000.0);
    assert_eq!(figure(herald, "deliveries"), 2000.0);
    assert!(figure(herald, "restart_to_first_delivery_ms") > 0.0);
    assert!(figure(herald, "queued_rss_mib") > 1.0);
    assert!(figure(&backlog["raw_median"], "deliveries_per_s") > 0.0);

    let outage = &scenario("outage")[0];
    let herald = &outage["median"];
    assert_eq!(figure(herald, "deliveries"), 100.0 * 5.0, "the healthy ones got everything");
    let dead = figure(herald, "requests_to_dead");
    let owed = figure(herald, "dead_deliveries_expected");
    assert!(dead > 0.0 && dead <= owed * MAX_ATTEMPTS, "{dead} requests for {owed} deliveries");
    assert!(figure(herald, "healthy_p99_ms_without_outage") > 0.0);
    assert!(figure(&outage["raw_median"], "healthy_p99_ms") > 0.0);

    let retry = &scenario("retry")[0];
    let herald = &retry["median"];
    assert_eq!(figure(herald, "deliveries"), 500.0);
    assert!(figure(herald, "requests_per_delivered") > 1.0, "30 % of requests failed");
    assert!(figure(&retry["raw_median"], "requests_per_delivered") > 1.0);

    let html = std::fs::read_to_string(dir.path().join("bench.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("</html>"));
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));
}

/// Issue 11, item 3: `--database` with `--nodes 1,2` runs every case once per node
/// count, each run on a schema of its own that is dropped afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_suite_runs_throughput_on_postgres_with_one_and_two_nodes() {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        // Unset, the default URL would still be tried; but CI means its own server.
        assert!(
            std::env::var("HERALD_TEST_DATABASE_URL").is_ok(),
            "CI sets HERALD_TEST_DATABASE_URL (.ci/run); it is missing"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(herald())
        .args(["bench", "--scenarios", "throughput", "--runs", "1", "--broadcasts", "100"])
        .args(["--webhooks", "3", "--clients", "4", "--max-seconds", "60"])
        .args(["--database", &database_url(), "--nodes", "1,2", "--out-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let output = tokio::time::timeout(Duration::from_secs(150), child.wait_with_output())
        .await
        .expect("the suite is bounded in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("bench.json")).unwrap())
            .unwrap();
    assert_eq!(report["settings"]["nodes"], "1,2");
    let throughput = &report["scenarios"][0];
    assert!(throughput["skipped"].is_null(), "skipped: {}", throughput["skipped"]);
    let cases = throughput["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "pg 1 node, 100 broadcasts x 3 webhook(s), 4 clients",
            "pg 2 nodes, 100 broadcasts x 3 webhook(s), 4 clients"
        ]
    );
    let figure = |metrics: &Value, key: &str| {
        metrics[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {metrics}"))
    };
    for case in cases {
        let herald = &case["median"];
        assert_eq!(figure(herald, "deliveries"), 300.0, "{}", case["name"]);
        assert_eq!(figure(herald, "expected_deliveries"), 300.0);
        assert!(figure(herald, "cpu_ms_per_delivery") > 0.0);
        assert!(figure(herald, "peak_rss_mib") > 1.0);
        assert_eq!(figure(&case["raw_median"], "deliveries"), 300.0);
    }
    // The sum is over both nodes' processes, the peak of the largest one.
    let two = &cases[1]["median"];
    assert!(figure(two, "peak_rss_sum_mib") > figure(two, "peak_rss_mib"));
    assert_eq!(
        figure(&cases[0]["median"], "peak_rss_sum_mib"),
        figure(&cases[0]["median"], "peak_rss_mib")
    );

    let mut conn = admin().await;
    let left: Vec<String> = sqlx::query(
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE $1",
    )
    .bind(format!("herald\\_bench\\_{pid}\\_%"))
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect();
    assert!(left.is_empty(), "schemas left behind: {left:?}");
}
