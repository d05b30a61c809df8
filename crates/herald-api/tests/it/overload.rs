//! Overload and a slow or dead store: every case is a prompt `503` problem with
//! `Retry-After` where retrying helps, never a hang and never a false `2xx`. The writer
//! is stalled or killed through the SQLite store's test hooks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures_util::StreamExt;
use herald_api::{AppState, Auth, Ids, Limits, Targets, app};
use herald_engine::{Clock, Engine, EngineConfig, FakeClock};
use herald_store::Store;
use herald_store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{START, json_request, str_of, submission};

/// A router over a real SQLite store (kept for its test hooks) and an engine without
/// lanes, so nothing but the requests touches the store.
struct Harness {
    store: Arc<SqliteStore>,
    router: Router,
    _dir: tempfile::TempDir,
}

fn harness(limits: Limits, submit_queue: usize) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions { submit_queue };
    let store = Arc::new(SqliteStore::open_with(&dir.path().join("herald.db"), &options).unwrap());
    let shared: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::new(START));
    let engine =
        Engine::start(Arc::clone(&shared), Vec::new(), Arc::clone(&clock), EngineConfig::default())
            .unwrap();
    let state = AppState {
        store: shared,
        engine,
        clock: Arc::clone(&clock),
        targets: Targets::new(vec!["teams-ops".into()], Default::default()),
        limits,
        ids: Ids::new(clock, 3),
        auth: Auth::Open,
    };
    Harness { store, router: app(state), _dir: dir }
}

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    content_type: String,
    json: Value,
    took: Duration,
}

async fn send(router: &Router, req: Request<Body>) -> Reply {
    let started = Instant::now();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let (parts, body) = res.into_parts();
    let header_of = |name| parts.headers.get(name).map(|v| v.to_str().unwrap().to_string());
    let retry_after = header_of(header::RETRY_AFTER);
    let content_type = header_of(header::CONTENT_TYPE).unwrap_or_default();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, retry_after, content_type, json, took: started.elapsed() }
}

fn submit(body: &Value) -> Request<Body> {
    json_request(Method::POST, "/v1/broadcasts", body)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// Asserts a 503 problem of `kind` with `Retry-After`, answered within `within`.
fn assert_503(reply: &Reply, kind: &str, within: Duration) {
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.json);
    assert_eq!(reply.content_type, "application/problem+json");
    assert_eq!(reply.json["type"], kind, "{}", reply.json);
    assert_eq!(reply.retry_after.as_deref(), Some("1"), "no Retry-After: {}", reply.json);
    assert!(reply.took < within, "the 503 took {:?}", reply.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_submit_queue_is_a_prompt_503_with_retry_after_and_nothing_stored() {
    let h = harness(Limits::default(), 1);
    let stall = h.store.stall_writer().await;
    let queued = {
        let router = h.router.clone();
        tokio::spawn(
            async move { send(&router, submit(&submission(&["teams-ops"], "first"))).await },
        )
    };
    while h.store.queue_depth().1 < 1 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let refused = send(&h.router, submit(&submission(&["teams-ops"], "second"))).await;
    assert_503(&refused, "urn:herald:problem:overloaded", Duration::from_millis(500));
    let detail = str_of(&refused.json, "detail");
    assert!(detail.contains("nothing was changed") && detail.contains("Retry-After"), "{detail}");

    drop(stall);
    assert_eq!(queued.await.unwrap().status, StatusCode::ACCEPTED);
    let list = send(&h.router, get("/v1/broadcasts")).await;
    let titles: Vec<&str> = list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["thread"][0]["message"]["title"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        list.json["items"].as_array().unwrap().len(),
        1,
        "the refused submit was stored: {titles:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_does_not_answer_is_a_503_and_the_keyed_retry_is_safe() {
    let limits = Limits { store_timeout: Duration::from_millis(200), ..Limits::default() };
    let h = harness(limits, 16);
    let mut body = submission(&["teams-ops"], "slow disk");
    body["idempotency_key"] = json!("inc-77");

    let stall = h.store.stall_writer().await;
    let timed_out = send(&h.router, submit(&body)).await;
    assert_503(&timed_out, "urn:herald:problem:timed-out", Duration::from_secs(2));
    let detail = str_of(&timed_out.json, "detail");
    assert!(detail.contains("idempotency key"), "the detail does not say how to retry: {detail}");

    // The write was queued before the timeout and commits once the writer moves on; the
    // client's retry with the same key gets that broadcast back instead of a second one.
    drop(stall);
    h.store.ping().await.unwrap();
    let retried = send(&h.router, submit(&body)).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.json);
    let list = send(&h.router, get("/v1/broadcasts")).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1, "{}", list.json);
    assert_eq!(list.json["items"][0]["id"], retried.json["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_runs_past_the_request_timeout_is_a_503_not_a_hang() {
    let limits = Limits {
        store_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let h = harness(limits, 16);
    let _stall = h.store.stall_writer().await;
    let reply = send(&h.router, submit(&submission(&["teams-ops"], "stuck"))).await;
    assert_503(&reply, "urn:herald:problem:timed-out", Duration::from_secs(2));
    assert!(
        reply.took >= Duration::from_millis(200),
        "answered before the timeout: {:?}",
        reply.took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_concurrency_limit_are_shed_at_once_but_streams_and_probes_are_not() {
    let limits = Limits {
        max_concurrent_requests: 1,
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let h = harness(limits, 16);
    let accepted = send(&h.router, submit(&submission(&["teams-ops"], "watched"))).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.json);
    let id = str_of(&accepted.json, "id").to_string();

    // One slow request holds the only permit; the next is refused at once.
    let stall = h.store.stall_writer().await;
    let slow = {
        let router = h.router.clone();
        tokio::spawn(
            async move { send(&router, submit(&submission(&["teams-ops"], "slow"))).await },
        )
    };
    while h.store.queue_depth().1 < 1 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let shed = send(&h.router, get("/v1/broadcasts")).await;
    assert_503(&shed, "urn:herald:problem:overloaded", Duration::from_millis(200));
    // Probes and metrics are never shed: a busy herald must not look dead.
    assert_eq!(send(&h.router, get("/healthz")).await.status, StatusCode::OK);
    assert_eq!(send(&h.router, get("/metrics")).await.status, StatusCode::OK);

    // A stream is not counted: it opens while the permit is taken, and it outlives the
    // request timeout.
    let stream = h.router.clone().oneshot(get(&format!("/v1/broadcasts/{id}/events"))).await;
    let stream = stream.unwrap();
    assert_eq!(stream.status(), StatusCode::OK, "the stream was refused for the limit");
    let mut body = stream.into_body().into_data_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next()).await.unwrap();
    assert!(first.is_some_and(|chunk| chunk.is_ok()), "the stream sent no snapshot");

    assert_eq!(slow.await.unwrap().status, StatusCode::SERVICE_UNAVAILABLE);
    drop(stall);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let more = tokio::time::timeout(Duration::from_millis(100), body.next()).await;
    assert!(!matches!(more, Ok(None | Some(Err(_)))), "the stream was cut off: {more:?}");
    assert_eq!(send(&h.router, get("/v1/broadcasts")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_goes_through_the_writer_and_fails_when_it_is_stalled_or_dead() {
    let limits = Limits { ready_timeout: Duration::from_millis(200), ..Limits::default() };
    let h = harness(limits, 16);
    assert_eq!(send(&h.router, get("/readyz")).await.status, StatusCode::OK);

    let stall = h.store.stall_writer().await;
    let stalled = send(&h.router, get("/readyz")).await;
    assert_eq!(stalled.status, StatusCode::SERVICE_UNAVAILABLE, "{}", stalled.json);
    assert!(stalled.took < Duration::from_secs(2), "readyz hung: {:?}", stalled.took);
    drop(stall);
    assert_eq!(send(&h.router, get("/readyz")).await.status, StatusCode::OK);

    let _ = h.store.panic_writer().await;
    let dead = send(&h.router, get("/readyz")).await;
    assert_eq!(dead.status, StatusCode::SERVICE_UNAVAILABLE, "{}", dead.json);
    // Liveness is the process, not the writer: the supervisor learns from the exit.
    assert_eq!(send(&h.router, get("/healthz")).await.status, StatusCode::OK);
}
