//! The torture suite: its short seeded CI run, issue 5's scenario end to end, and the
//! checks themselves, which must catch what they claim to catch.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use herald_cli::torture::{Issue5, Reported, check, issue5};
use herald_simulator::{FaultPlan, Simulator};
use serde_json::{Value, json};

use crate::process::herald;

/// CI's short seeded run: a real `herald serve` SIGKILLed twice while a client submits
/// broadcasts and keyed updates (some replayed) to ten simulated destinations with
/// randomised faults. Depends on idempotent updates, `dedupe = false` and a breaker
/// that does not stall the flaky destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_seeded_torture_run_keeps_every_promise() {
    let run = tokio::process::Command::new(herald())
        .args(["torture", "--seed", "7", "--duration", "8s", "--kills", "2", "--rate", "5"])
        .args(["--converge-within", "60s"])
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(150), run)
        .await
        .expect("the torture run is bounded in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let verdict = stdout.lines().find(|l| l.starts_with("torture seed=7")).expect("a verdict line");
    assert!(output.status.success(), "{verdict}");
    assert!(verdict.contains(" PASS: "), "{verdict}");
    for zero in ["lost=0 ", "duplicates=0 ", "order_violations=0 ", "double_sends=0 "] {
        assert!(verdict.contains(zero), "{zero} missing: {verdict}");
    }
    assert!(verdict.contains("kills=2 "), "{verdict}");
}

/// The same promises with three `herald serve` nodes sharing PostgreSQL (issue 8): the
/// client spreads its requests over the nodes, and each SIGKILL hits one of them (it is
/// started again on its configuration); the lanes of a killed node move to the others
/// after their lease, so converging takes longer than on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_seeded_torture_run_on_three_postgres_nodes_keeps_every_promise() {
    let schema = crate::database::Schema::new().await;
    let run = tokio::process::Command::new(herald())
        .args(["torture", "--seed", "11", "--duration", "8s", "--kills", "2", "--rate", "5"])
        .args(["--nodes", "3", "--database", &schema.url(), "--converge-within", "90s"])
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(200), run)
        .await
        .expect("the torture run is bounded in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let verdict =
        stdout.lines().find(|l| l.starts_with("torture seed=11")).expect("a verdict line");
    assert!(stdout.contains("3 node(s) on PostgreSQL"), "{stdout}");
    assert!(output.status.success(), "{verdict}");
    assert!(verdict.contains(" PASS: "), "{verdict}");
    for zero in ["lost=0 ", "duplicates=0 ", "order_violations=0 ", "double_sends=0 "] {
        assert!(verdict.contains(zero), "{zero} missing: {verdict}");
    }
    assert!(verdict.contains("kills=2 "), "{verdict}");
}

/// Issue 5's table end to end with a real server, the issue's 100 broadcasts: ok, flaky
/// (500 on the first two tries), throttle (20/s bucket), hang (first try answered after
/// 4 s, timeout 1 s) and dead (404); SIGKILL after the first half; run with the default
/// breaker and with it off, which must converge no more than 1.5 times faster. (With
/// probes taken in due order the breaker run took 88 s against 32 s; fewer broadcasts do
/// not open the breaker at all, which is why the test uses the full 100.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue5_scenario_converges_with_no_duplicate_and_in_order() {
    let run =
        Issue5 { broadcasts: 100, breaker_off: false, converge_within: Duration::from_secs(90) };
    let report = issue5(&herald(), &run).await.unwrap();
    eprintln!("{report:#?}");
    assert_eq!(report.broadcasts, 100);
    assert!(report.convergence.is_some(), "not every broadcast converged: {report:#?}");
    assert!(report.wrong_states.is_empty(), "{:#?}", report.wrong_states);
    assert_eq!(report.findings.lost, 0, "{:#?}", report.findings.examples);
    assert_eq!(report.findings.duplicates, 0, "{:#?}", report.findings.examples);
    assert_eq!(report.findings.order_violations, 0, "{:#?}", report.findings.examples);
    assert_eq!(report.findings.double_sends, 0, "{:#?}", report.findings.examples);
    assert!(report.rejected_updates.is_empty(), "{:#?}", report.rejected_updates);
    assert_eq!(report.updates, 10);
    assert_eq!(
        report.replays,
        (10, 10),
        "a replayed update was not answered 200 with the same update"
    );
    assert!(report.passed());

    // The same run with the breaker effectively off: the breaker must not slow a
    // destination that accepts messages (issue 5: at most 1.5 times as long).
    let off = Issue5 { breaker_off: true, ..run };
    let without = issue5(&herald(), &off).await.unwrap();
    eprintln!("{without:#?}");
    let (Some(on), Some(off)) = (report.convergence, without.convergence) else {
        panic!("the run without the breaker did not converge: {without:#?}")
    };
    assert!(
        on.as_secs_f64() <= 1.5 * off.as_secs_f64(),
        "converged in {on:?} with the breaker, {off:?} without it"
    );
}

/// A webhook request as herald sends it, for the checker tests.
async fn send(http: &reqwest::Client, url: &str, key: &str, broadcast: &str, seq: u64) {
    let body =
        json!({"type": "message.created", "data": {"broadcast_id": broadcast, "thread_seq": seq}});
    let res = http.post(url).header("webhook-id", key).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

fn view(id: &str, deliveries: &[(&str, &str, u64)]) -> (String, Value) {
    let deliveries: Vec<Value> = deliveries
        .iter()
        .map(|(delivery, destination, seq)| {
            json!({"id": delivery, "destination": destination, "seq": seq, "state": "delivered"})
        })
        .collect();
    (id.to_string(), json!({"id": id, "deliveries": deliveries}))
}

/// The checks find each kind of violation, and nothing in a clean record.
#[tokio::test]
async fn the_checks_catch_duplicates_disorder_double_sends_and_loss() {
    let sim = Simulator::start(vec![
        ("dedupe".into(), FaultPlan::healthy()),
        ("counting".into(), FaultPlan::healthy().dedupe(false).latency(Duration::from_millis(300))),
    ])
    .await
    .unwrap();
    let (dedupe, counting) = (sim.url("dedupe"), sim.url("counting"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let non_dedupe = HashSet::from(["counting".to_string()]);

    // Clean: one copy each, the update after its original.
    send(&http, &dedupe, "d1", "b1", 0).await;
    send(&http, &dedupe, "d2", "b1", 1).await;
    send(&http, &counting, "c1", "b1", 0).await;
    send(&http, &counting, "c1u", "b1", 1).await;
    let mut reported = Reported {
        broadcasts: vec![view(
            "b1",
            &[
                ("d1", "dedupe", 0),
                ("d2", "dedupe", 1),
                ("c1", "counting", 0),
                ("c1u", "counting", 1),
            ],
        )],
        updates: HashMap::from([("b1".to_string(), vec![1])]),
        destinations: HashMap::from([("b1".to_string(), vec!["dedupe".into(), "counting".into()])]),
        attempts: HashMap::new(),
    };
    let clean = check(&sim.view(), &reported, &non_dedupe);
    assert_eq!(clean.violations(), 0, "{:#?}", clean.examples);
    assert_eq!(clean.delivered, 4);

    // A second key for one message at a deduplicating receiver is a duplicate.
    send(&http, &dedupe, "d1-again", "b1", 0).await;
    // An update that arrives before its original was acknowledged is out of order.
    send(&http, &dedupe, "d4", "b2", 1).await;
    send(&http, &dedupe, "d3", "b2", 0).await;
    // Two requests of one key open at once are a double send, and the second copy at a
    // receiver that does not deduplicate is excess unless herald logged an ambiguity.
    let (a, b) =
        tokio::join!(send(&http, &counting, "c2", "b3", 0), send(&http, &counting, "c2", "b3", 0));
    let ((), ()) = (a, b);
    reported.broadcasts.push(view("b2", &[("d3", "dedupe", 0), ("d4", "dedupe", 1)]));
    reported.broadcasts.push(view("b3", &[("c2", "counting", 0)]));
    // Delivered per herald, never stored: lost. Unknown to herald: lost.
    reported.broadcasts.push(view("b4", &[("d5", "dedupe", 0)]));
    reported.broadcasts.push(("b5".to_string(), Value::Null));
    // Submitted to a destination herald made no delivery for: lost.
    reported.broadcasts.push(view("b6", &[("d6", "dedupe", 0)]));
    send(&http, &dedupe, "d6", "b6", 0).await;
    reported.destinations.insert("b6".into(), vec!["dedupe".into(), "counting".into()]);
    let found = check(&sim.view(), &reported, &non_dedupe);
    assert_eq!(found.duplicates, 1, "{:#?}", found.examples);
    assert_eq!(found.order_violations, 1, "{:#?}", found.examples);
    assert_eq!(found.double_sends, 1, "{:#?}", found.examples);
    assert_eq!(found.excess_copies, 1, "{:#?}", found.examples);
    assert_eq!(found.lost, 3, "{:#?}", found.examples);

    // One ambiguous attempt in herald's log allows the one extra copy.
    reported.attempts.insert("c2".into(), vec![json!({"delivery_id": "c2", "outcome": "unknown"})]);
    assert_eq!(check(&sim.view(), &reported, &non_dedupe).excess_copies, 0);
    sim.shutdown().await;
}
