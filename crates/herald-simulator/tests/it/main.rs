//! Integration tests of herald-simulator over real loopback HTTP.

mod alerting;
mod jira;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald_simulator::{ANONYMOUS_KEY_PREFIX, Fate, FaultPlan, SimView, Simulator};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Teams dialects (Workflows, Graph and its token endpoint).
mod teams;

/// Generous bound for anything that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("build reqwest client")
}

async fn start(endpoints: &[(&str, FaultPlan)]) -> Simulator {
    let endpoints = endpoints.iter().map(|(n, p)| ((*n).to_owned(), p.clone())).collect();
    Simulator::start(endpoints).await.expect("start simulator")
}

/// POSTs `body` with an optional `webhook-id`.
async fn post(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &str,
) -> reqwest::Result<reqwest::Response> {
    let mut request = client.post(url).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("webhook-id", key);
    }
    request.body(body.to_owned()).send().await
}

/// POSTs and returns (status, parsed JSON body).
async fn post_json(client: &reqwest::Client, url: &str, key: Option<&str>) -> (u16, Value) {
    let response = post(client, url, key, r#"{"text":"hi"}"#).await.expect("a response");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

fn fates(sim: &Simulator, name: &str) -> Vec<Fate> {
    sim.received(name).iter().map(|r| r.fate).collect()
}

fn copies(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[tokio::test]
async fn healthy_endpoint_stores_once_and_drops_duplicates() {
    let sim = start(&[("ok", FaultPlan::healthy())]).await;
    let c = client();
    let url = sim.url("ok");
    assert_eq!(url, format!("http://{}/hooks/ok", sim.addr()));

    let (status, body) = post_json(&c, &url, Some("k1")).await;
    assert_eq!((status, body), (200, serde_json::json!({ "ok": true, "id": "k1" })));
    assert_eq!(post_json(&c, &url, Some("k1")).await.0, 200);
    // The Idempotency-Key header is the fallback key.
    let response =
        c.post(&url).header("Idempotency-Key", "k2").body("{}").send().await.expect("a response");
    assert_eq!(response.status(), 200);

    assert_eq!(sim.copies("ok"), copies(&[("k1", 1), ("k2", 1)]));
    let stats = sim.stats("ok");
    assert_eq!((stats.requests, stats.stored, stats.duplicates_dropped), (3, 2, 1));
    assert_eq!(stats.answered, BTreeMap::from([(200, 3)]));
    assert_eq!(
        fates(&sim, "ok"),
        [
            Fate::Stored { status: 200 },
            Fate::Duplicate { status: 200 },
            Fate::Stored { status: 200 }
        ]
    );
    let received = sim.received("ok");
    assert_eq!(received[0].key.as_deref(), Some("k1"));
    assert_eq!(received[2].key.as_deref(), Some("k2"));
    assert_eq!(&received[0].body[..], br#"{"text":"hi"}"#);
    assert!(received[0].headers.iter().any(|(n, v)| n == "webhook-id" && v == "k1"));
    assert!(received[0].stored && !received[1].stored);
    assert!(received[0].at <= received[1].at);
    sim.shutdown().await;
}

#[tokio::test]
async fn keyless_requests_are_each_their_own_copy() {
    let sim = start(&[("anon", FaultPlan::healthy())]).await;
    let c = client();
    let (_, first) = post_json(&c, &sim.url("anon"), None).await;
    let (_, second) = post_json(&c, &sim.url("anon"), None).await;
    assert_ne!(first["id"], second["id"]);
    let stored = sim.copies("anon");
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|(k, n)| k.starts_with(ANONYMOUS_KEY_PREFIX) && *n == 1));
    assert_eq!(first["id"].as_str().map(|id| sim.view().copies_of("anon", id)), Some(1));
    assert!(sim.received("anon").iter().all(|r| r.key.is_none()));
    sim.shutdown().await;
}

#[tokio::test]
async fn dedupe_off_stores_every_copy() {
    let sim = start(&[("dup", FaultPlan::healthy().dedupe(false))]).await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(post_json(&c, &sim.url("dup"), Some("k")).await.0, 200);
    }
    assert_eq!(sim.copies("dup"), copies(&[("k", 3)]));
    assert_eq!(sim.stats("dup").duplicates_dropped, 0);
    assert_eq!(fates(&sim, "dup"), [Fate::Stored { status: 200 }; 3]);
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_first_counts_attempts_per_key() {
    let sim = start(&[("flaky", FaultPlan::healthy().fail_first(2, 503))]).await;
    let c = client();
    let url = sim.url("flaky");
    let mut seen = Vec::new();
    for key in ["a", "b", "a", "b", "a", "a"] {
        let (status, body) = post_json(&c, &url, Some(key)).await;
        if status != 200 {
            assert_eq!(body["ok"], false);
        }
        seen.push(status);
    }
    assert_eq!(seen, [503, 503, 503, 503, 200, 200]);
    assert_eq!(sim.copies("flaky"), copies(&[("a", 1)]));
    let stats = sim.stats("flaky");
    assert_eq!(stats.answered, BTreeMap::from([(200, 2), (503, 4)]));
    assert_eq!((stats.stored, stats.duplicates_dropped), (1, 1));
    assert_eq!(fates(&sim, "flaky")[0], Fate::Rejected { status: 503 });
    sim.shutdown().await;
}

#[tokio::test]
async fn status_always_is_a_permanent_failure() {
    let sim = start(&[
        ("gone", FaultPlan::healthy().status_always(404)),
        ("liar", FaultPlan::healthy().status_always(200)),
    ])
    .await;
    let c = client();
    for _ in 0..3 {
        let (status, body) = post_json(&c, &sim.url("gone"), Some("k")).await;
        assert_eq!((status, &body["ok"]), (404, &Value::Bool(false)));
    }
    let (status, body) = post_json(&c, &sim.url("liar"), Some("k")).await;
    assert_eq!((status, &body["ok"]), (200, &Value::Bool(false)));
    assert!(sim.copies("gone").is_empty() && sim.copies("liar").is_empty());
    assert_eq!(sim.stats("gone").answered, BTreeMap::from([(404, 3)]));
    assert_eq!(fates(&sim, "liar"), [Fate::Rejected { status: 200 }]);
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_until_a_token_returns() {
    let sim =
        start(&[("slow", FaultPlan::healthy().rate_limit(1, Duration::from_millis(1500)))]).await;
    let c = client();
    let url = sim.url("slow");
    assert_eq!(post_json(&c, &url, Some("a")).await.0, 200);

    let response = post(&c, &url, Some("b"), "{}").await.expect("a response");
    assert_eq!(response.status(), 429);
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok());
    assert_eq!(retry_after, Some("2"), "1.5 s rounds up to 2 delta-seconds");
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!((&body["ok"], &body["error"]), (&Value::Bool(false), &Value::from("rate_limited")));

    // One token per second: the throttled message gets through once the bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post_json(&c, &url, Some("b")).await.0, 200);

    assert_eq!(sim.copies("slow"), copies(&[("a", 1), ("b", 1)]));
    assert_eq!(
        fates(&sim, "slow"),
        [
            Fate::Stored { status: 200 },
            Fate::Throttled { status: 429 },
            Fate::Stored { status: 200 }
        ]
    );
    assert_eq!(sim.stats("slow").answered, BTreeMap::from([(200, 2), (429, 1)]));
    sim.shutdown().await;
}

#[tokio::test]
async fn hang_stores_then_never_answers_until_shutdown() {
    let sim = start(&[("hang", FaultPlan::healthy().hang_first(1))]).await;
    let url = sim.url("hang");
    let hung = tokio::spawn({
        let url = url.clone();
        async move { post(&client(), &url, Some("h"), "{}").await.map(|r| r.status()) }
    });
    assert!(sim.wait_until(PROMPTLY, |v| v.stats("hang").hangs == 1).await);
    assert_eq!(sim.copies("hang"), copies(&[("h", 1)]), "stored before hanging");
    assert_eq!(fates(&sim, "hang"), [Fate::Hung]);

    let mut hung = hung;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut hung).await.is_err(),
        "the hung request must stay unanswered"
    );
    // The retry of the same key is answered, and the destination still has one copy.
    assert_eq!(post_json(&client(), &url, Some("h")).await.0, 200);
    assert_eq!(sim.copies("hang"), copies(&[("h", 1)]));
    assert_eq!(sim.stats("hang").duplicates_dropped, 1);

    tokio::time::timeout(PROMPTLY, sim.shutdown()).await.expect("shutdown releases hangs");
    let outcome = tokio::time::timeout(PROMPTLY, hung).await.expect("released").expect("joined");
    assert!(outcome.is_err(), "a released hang ends without a response, got {outcome:?}");
}

#[tokio::test]
async fn reset_stores_then_closes_the_connection_unanswered() {
    let sim = start(&[("reset", FaultPlan::healthy().reset_first(2))]).await;
    let c = client();
    let url = sim.url("reset");

    let err = post(&c, &url, Some("r"), "{}").await.expect_err("no response on a reset");
    assert!(err.status().is_none(), "a transport error, not an HTTP status: {err:?}");
    assert_eq!(sim.copies("reset"), copies(&[("r", 1)]), "stored before the reset");

    // Raw TCP: the server closes the connection without writing a single byte.
    let mut stream =
        tokio::net::TcpStream::connect(sim.addr()).await.expect("connect to simulator");
    let request = "POST /hooks/reset HTTP/1.1\r\nhost: sim\r\nwebhook-id: r\r\n\
                   content-length: 2\r\n\r\n{}";
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut answer = Vec::new();
    match tokio::time::timeout(PROMPTLY, stream.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => assert!(answer.is_empty(), "got {:?}", String::from_utf8_lossy(&answer)),
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Err(_) => panic!("connection neither answered nor closed"),
    }

    // Third attempt is answered; the destination kept exactly one copy throughout.
    assert_eq!(post_json(&c, &url, Some("r")).await.0, 200);
    assert_eq!(sim.copies("reset"), copies(&[("r", 1)]));
    let stats = sim.stats("reset");
    assert_eq!((stats.resets, stats.stored, stats.duplicates_dropped), (2, 1, 2));
    assert_eq!(stats.answered, BTreeMap::from([(200, 1)]));
    assert_eq!(fates(&sim, "reset"), [Fate::Reset, Fate::Reset, Fate::Duplicate { status: 200 }]);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_apply_in_order_per_key() {
    let plan = FaultPlan::healthy().fail_first(1, 500).reset_first(1);
    let sim = start(&[("mixed", plan)]).await;
    let c = client();
    let url = sim.url("mixed");
    assert_eq!(post_json(&c, &url, Some("m")).await.0, 500);
    assert!(post(&c, &url, Some("m"), "{}").await.is_err());
    assert_eq!(post_json(&c, &url, Some("m")).await.0, 200);
    assert_eq!(
        fates(&sim, "mixed"),
        [Fate::Rejected { status: 500 }, Fate::Reset, Fate::Duplicate { status: 200 }]
    );
    assert_eq!(sim.copies("mixed"), copies(&[("m", 1)]));
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let delay = Duration::from_millis(250);
    let sim = start(&[
        ("lag", FaultPlan::healthy().latency(delay)),
        ("lag-fail", FaultPlan::healthy().latency(delay).status_always(503)),
    ])
    .await;
    let c = client();
    for (name, expected) in [("lag", 200), ("lag-fail", 503)] {
        let started = Instant::now();
        assert_eq!(post_json(&c, &sim.url(name), Some("k")).await.0, expected);
        assert!(started.elapsed() >= delay, "{name} answered before its latency");
    }
    // Stored on arrival, before the delayed answer.
    assert_eq!(sim.copies("lag"), copies(&[("k", 1)]));
    sim.shutdown().await;
}

#[tokio::test]
async fn wait_until_wakes_on_requests_without_polling() {
    let sim = start(&[("w", FaultPlan::healthy())]).await;
    let evaluations = Arc::new(AtomicUsize::new(0));
    let waiter = tokio::spawn({
        let view: SimView = sim.view();
        let evaluations = Arc::clone(&evaluations);
        async move {
            view.wait_until(Duration::from_secs(60), move |v| {
                evaluations.fetch_add(1, Ordering::SeqCst);
                v.stored("w") >= 2
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(evaluations.load(Ordering::SeqCst), 1, "checked once, then asleep: no polling");

    let c = client();
    assert_eq!(post_json(&c, &sim.url("w"), Some("a")).await.0, 200);
    assert_eq!(post_json(&c, &sim.url("w"), Some("b")).await.0, 200);
    let woke = tokio::time::timeout(PROMPTLY, waiter).await.expect("woken").expect("joined");
    assert!(woke);
    let evaluations = evaluations.load(Ordering::SeqCst);
    assert!((2..=3).contains(&evaluations), "one check per request, got {evaluations}");

    // A condition that never holds gives up at the timeout.
    let started = Instant::now();
    assert!(!sim.wait_until(Duration::from_millis(100), |v| v.stored("w") > 2).await);
    assert!(started.elapsed() >= Duration::from_millis(100));
    sim.shutdown().await;
}

#[tokio::test]
async fn inspection_endpoint_and_unknown_names_answer_json() {
    let sim = start(&[("seen", FaultPlan::healthy().fail_first(1, 502))]).await;
    let c = client();
    let _ = post_json(&c, &sim.url("seen"), Some("x")).await;
    let _ = post_json(&c, &sim.url("seen"), Some("x")).await;

    let base = format!("http://{}", sim.addr());
    let response = c.get(format!("{base}/_sim/seen")).send().await.expect("a response");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["name"], "seen");
    assert_eq!(body["url"], sim.url("seen"));
    assert_eq!(body["stats"]["requests"], 2);
    assert_eq!(body["stats"]["stored"], 1);
    assert_eq!(body["stats"]["answered"]["502"], 1);
    assert_eq!(body["copies"], serde_json::json!({ "x": 1 }));

    let all: Value =
        c.get(format!("{base}/_sim")).send().await.expect("a response").json().await.expect("JSON");
    assert_eq!(all["endpoints"][0]["name"], "seen");

    for response in [
        c.get(format!("{base}/_sim/nope")).send().await.expect("a response"),
        post(&c, &sim.url("nope"), Some("x"), "{}").await.expect("a response"),
        c.get(format!("{base}/elsewhere")).send().await.expect("a response"),
    ] {
        assert_eq!(response.status(), 404);
        let body: Value = response.json().await.expect("a JSON 404 body");
        assert_eq!(body["ok"], false);
    }
    assert_eq!(sim.stats("seen").requests, 2, "unknown endpoints touch no endpoint");
    sim.shutdown().await;
}

#[tokio::test]
async fn record_off_keeps_counting_but_not_requests() {
    let sim = start(&[("quiet", FaultPlan::healthy().record(false))]).await;
    let c = client();
    assert_eq!(post_json(&c, &sim.url("quiet"), Some("k")).await.0, 200);
    assert_eq!(post_json(&c, &sim.url("quiet"), Some("k")).await.0, 200);
    assert!(sim.received("quiet").is_empty());
    assert_eq!(sim.copies("quiet"), copies(&[("k", 1)]));
    assert_eq!(sim.stats("quiet").duplicates_dropped, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn start_on_validates_and_binds_a_fixed_loopback_port() {
    let outside = SocketAddr::from(([0, 0, 0, 0], 0));
    let err = Simulator::start_on(outside, vec![]).await.expect_err("loopback only");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let duplicate =
        vec![("a".to_owned(), FaultPlan::healthy()), ("a".to_owned(), FaultPlan::healthy())];
    assert!(Simulator::start(duplicate).await.is_err());
    assert!(Simulator::start(vec![("a/b".to_owned(), FaultPlan::healthy())]).await.is_err());

    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe");
        probe.local_addr().expect("probe address").port()
    };
    let fixed = SocketAddr::from(([127, 0, 0, 1], port));
    let sim = Simulator::start_on(fixed, vec![("f".to_owned(), FaultPlan::healthy())])
        .await
        .expect("start on a fixed port");
    assert_eq!(sim.addr(), fixed);
    assert_eq!(sim.url("f"), format!("http://127.0.0.1:{port}/hooks/f"));
    assert_eq!(post_json(&client(), &sim.url("f"), Some("k")).await.0, 200);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throughput_sanity_every_request_stored_exactly_once() {
    const TASKS: usize = 16;
    const PER_TASK: usize = 125;
    let sim = start(&[("bulk", FaultPlan::healthy())]).await;
    let c = client();
    let url = sim.url("bulk");
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let key = format!("t{t}-{i}");
                let response = post(&c, &url, Some(&key), "{}").await.expect("a response");
                assert_eq!(response.status(), 200);
            }
        }));
    }
    let total = (TASKS * PER_TASK) as u64;
    assert!(sim.wait_until(Duration::from_secs(60), |v| v.stored("bulk") == total).await);
    for task in tasks {
        task.await.expect("sender task");
    }
    let stats = sim.stats("bulk");
    assert_eq!((stats.requests, stats.stored, stats.duplicates_dropped), (total, total, 0));
    let stored = sim.copies("bulk");
    assert_eq!(stored.len() as u64, total);
    assert!(stored.values().all(|&n| n == 1));
    assert_eq!(sim.received("bulk").len() as u64, total);
    sim.shutdown().await;
}

/// The hang endpoint of issue 5: the first try is stored, then answered only after a
/// delay; a client that gives up earlier ends the request when it closes the connection.
#[tokio::test]
async fn delay_first_stores_then_answers_late_and_a_client_that_gives_up_ends_the_request() {
    let delay = Duration::from_secs(3);
    let sim = start(&[("late", FaultPlan::healthy().delay_first(1, delay))]).await;
    let url = sim.url("late");
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let started = Instant::now();
    let first = post(&impatient, &url, Some("k"), "{}").await;
    assert!(first.is_err(), "the first try must outlast the client's timeout: {first:?}");
    assert_eq!(sim.copies("late"), copies(&[("k", 1)]), "stored before answering");
    // The client closed its connection: the request ends then, not when the delay is over.
    assert!(
        sim.wait_until(PROMPTLY, |v| v.received("late")[0].ended.is_some()).await,
        "the closed connection never ended the request"
    );
    let ended = sim.received("late")[0].ended.expect("ended");
    assert!(ended.duration_since(started) < delay, "ended only after the delay");
    // Later tries are answered at once and not stored again.
    assert_eq!(post_json(&client(), &url, Some("k")).await.0, 200);
    assert_eq!(sim.copies("late"), copies(&[("k", 1)]));
    assert_eq!(
        fates(&sim, "late"),
        [Fate::Delayed { status: 200 }, Fate::Duplicate { status: 200 }]
    );
    assert_eq!(sim.stats("late").delayed, 1);
    assert!(sim.view().overlapping_keys("late", Duration::from_millis(50)).is_empty());

    // A patient client gets the late 200.
    let at = Instant::now();
    let (status, _) = post_json(&client(), &url, Some("j")).await;
    assert_eq!(status, 200);
    assert!(at.elapsed() >= delay, "answered before the delay");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_outage_answers_its_status_and_stores_nothing_until_it_ends() {
    let sim = start(&[(
        "down",
        FaultPlan::healthy().outage(Duration::ZERO, Duration::from_millis(400), 503),
    )])
    .await;
    let url = sim.url("down");
    assert_eq!(post_json(&client(), &url, Some("k")).await.0, 503);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(post_json(&client(), &url, Some("k")).await.0, 200);
    assert_eq!(sim.copies("down"), copies(&[("k", 1)]));
    let stats = sim.stats("down");
    assert_eq!((stats.requests, stats.outage_rejected, stats.stored), (2, 1, 1));
    sim.shutdown().await;

    let sim = start(&[("storm", FaultPlan::healthy().outage(Duration::ZERO, PROMPTLY, 429))]).await;
    let response = post(&client(), &sim.url("storm"), Some("k"), "{}").await.expect("a response");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1", "a 429 storm says when to come back");
    sim.shutdown().await;
}

/// Two requests with the same key open at once are a double send; one after the other
/// is not.
#[tokio::test]
async fn overlapping_requests_with_one_key_are_reported() {
    let sim =
        start(&[("slow", FaultPlan::healthy().dedupe(false).latency(Duration::from_millis(400)))])
            .await;
    let url = sim.url("slow");
    let tolerance = Duration::from_millis(50);
    assert_eq!(post_json(&client(), &url, Some("serial")).await.0, 200);
    assert_eq!(post_json(&client(), &url, Some("serial")).await.0, 200);
    assert!(sim.view().overlapping_keys("slow", tolerance).is_empty());

    let (c1, c2) = (client(), client());
    let (a, b) =
        tokio::join!(post_json(&c1, &url, Some("twice")), post_json(&c2, &url, Some("twice")));
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(sim.view().overlapping_keys("slow", tolerance), ["twice"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn requests_over_the_bucket_are_counted() {
    let sim =
        start(&[("bucket", FaultPlan::healthy().rate_limit(2, Duration::from_secs(1)))]).await;
    let url = sim.url("bucket");
    let statuses: Vec<u16> = {
        let mut res = Vec::new();
        for n in 0..4 {
            res.push(post_json(&client(), &url, Some(&format!("k{n}"))).await.0);
        }
        res
    };
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(sim.stats("bucket").throttled, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn store_then_fail_keeps_the_copy_but_answers_the_failure() {
    let sim = start(&[("liar", FaultPlan::healthy().dedupe(false).store_then_fail(1, 500))]).await;
    let c = client();
    let (status, body) = post_json(&c, &sim.url("liar"), Some("k1")).await;
    assert_eq!((status, body["ok"].clone()), (500, Value::Bool(false)));
    assert_eq!(sim.copies("liar"), copies(&[("k1", 1)]), "the failed answer hid a stored copy");
    let (status, _) = post_json(&c, &sim.url("liar"), Some("k1")).await;
    assert_eq!(status, 200);
    assert_eq!(sim.copies("liar"), copies(&[("k1", 2)]), "without dedupe a resend is a copy");
    assert_eq!(
        fates(&sim, "liar"),
        [Fate::StoredThenRejected { status: 500 }, Fate::Stored { status: 200 }]
    );
    sim.shutdown().await;
}
