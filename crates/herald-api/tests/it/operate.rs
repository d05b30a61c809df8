//! Operating herald: retry and cancel, destinations, pause and resume, health,
//! readiness, metrics, and the problems for unknown routes, wrong methods and a broken
//! store.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use herald_api::{AppState, Auth, Ids, Limits, Targets, app};
use herald_core::{RetryPolicy, Timestamp};
use herald_engine::{Clock, Engine, EngineConfig, FakeClock};
use herald_store::{
    AttemptView, BroadcastView, Change, ClaimRequest, Claimed, DeliveryRef, DestinationStats,
    ListQuery, NewBroadcast, NewUpdate, Page, PruneRequest, Pruned, Record, Release, Store,
    StoreError, Submitted, UpdateAdded, Work,
};
use serde_json::json;
use tower::ServiceExt;

use crate::{START, TestApp, delivery, str_of};

#[tokio::test]
async fn retry_makes_a_failed_delivery_due_again() {
    let t = TestApp::new();
    let b = t.submit(&["ops"], "retry me").await;
    let id = str_of(&b, "id");
    let settled = t.settle(id).await;
    assert_eq!(settled["state"], "partially_failed");
    let failed = delivery(&settled, "broken", 0);
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["failure_reason"], "permanent");
    assert_eq!(failed["last_error"], "401: bad token");
    let failed_id = str_of(failed, "id");

    let res = t.post_empty(&format!("/v1/deliveries/{failed_id}/retry")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.json["id"], b["id"]);
    let retried = delivery(&res.json, "broken", 0);
    // The lane may already have tried it again by the time the broadcast is read back.
    assert!(["pending", "in_flight", "failed"].contains(&str_of(retried, "state")), "{retried}");
    let again = t.settle(id).await;
    assert_eq!(delivery(&again, "broken", 0)["attempts"], 1);
    assert_eq!(t.calls("broken"), 2);
    let log = t.get(&format!("/v1/broadcasts/{id}/attempts")).await;
    let numbers: Vec<u64> = log.json["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["delivery_id"] == failed_id)
        .map(|a| a["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 1]);

    // A delivered delivery cannot be retried; an unknown one does not exist.
    let delivered = str_of(delivery(&again, "teams-ops", 0), "id");
    let res = t.post_empty(&format!("/v1/deliveries/{delivered}/retry")).await;
    let problem = res.problem(StatusCode::CONFLICT);
    assert!(str_of(problem, "detail").contains("is delivered"), "{}", res.text);
    let res = t.post_empty("/v1/deliveries/d_nope/retry").await;
    assert!(str_of(res.problem(StatusCode::NOT_FOUND), "detail").contains("d_nope"));
}

#[tokio::test]
async fn retry_of_a_delivery_whose_destination_is_gone_is_a_conflict() {
    let t = TestApp::new();
    let b = t.submit(&["retired"], "to a removed destination").await;
    let d = str_of(delivery(&b, "retired", 0), "id");
    let res = t.post_empty(&format!("/v1/deliveries/{d}/retry")).await;
    let problem = res.problem(StatusCode::CONFLICT);
    assert!(
        str_of(problem, "detail").contains("destination `retired`, which is no longer configured"),
        "{}",
        res.text
    );
}

#[tokio::test]
async fn cancel_stops_a_delivery_that_has_not_ended() {
    let t = TestApp::new();
    let paused = t.post_empty("/v1/destinations/teams-ops/pause").await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    assert_eq!(paused.json["paused"], true);

    let b = t.submit(&["teams-ops"], "cancel me").await;
    let d = str_of(delivery(&b, "teams-ops", 0), "id");
    let res = t.post_empty(&format!("/v1/deliveries/{d}/cancel")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(delivery(&res.json, "teams-ops", 0)["state"], "cancelled");
    assert_eq!(res.json["state"], "cancelled");
    assert_eq!(res.json["summary"]["cancelled"], 1);

    let again = t.post_empty(&format!("/v1/deliveries/{d}/cancel")).await;
    let problem = again.problem(StatusCode::CONFLICT);
    assert!(str_of(problem, "detail").contains("is cancelled"), "{}", again.text);
    t.post_empty("/v1/deliveries/d_nope/cancel").await.problem(StatusCode::NOT_FOUND);

    let resumed = t.post_empty("/v1/destinations/teams-ops/resume").await;
    assert_eq!(resumed.json["paused"], false);
    assert_eq!(t.calls("teams-ops"), 0);
}

/// A destination whose every attempt fails shows an open circuit, why, and until when.
#[tokio::test]
async fn destinations_show_an_open_circuit_with_its_reason() {
    let t = TestApp::new();
    let failing = herald_core::Outcome::Retry { reason: "HTTP 503".into(), after: None };
    t.connectors["teams-ops"].script.lock().unwrap().extend(std::iter::repeat_n(failing, 100));
    let teams = |json: &serde_json::Value| {
        let list = json["destinations"].as_array().unwrap();
        list.iter().find(|d| d["name"] == "teams-ops").cloned().unwrap()
    };
    let closed = teams(&t.get("/v1/destinations").await.json);
    assert_eq!(closed["circuit"], "closed");
    assert_eq!(closed["circuit_reason"], serde_json::Value::Null);
    assert_eq!(closed["circuit_open_until"], serde_json::Value::Null);
    // The default breaker opens on 20 failures at 80 % that lasted one backoff_base (1 s):
    // 20 failed first tries, then the first retry a second later.
    for n in 0..20 {
        let b = t.submit(&["teams-ops"], &format!("failing {n}")).await;
        t.wait(str_of(&b, "id"), |b| delivery(b, "teams-ops", 0)["attempts"] == 1).await;
    }
    t.engine.idle().await.unwrap();
    assert_eq!(teams(&t.get("/v1/destinations").await.json)["circuit"], "closed");
    t.clock.advance(std::time::Duration::from_secs(1));
    let mut events = t.engine.subscribe();
    let open = tokio::time::timeout(crate::PATIENCE, async {
        loop {
            let res = t.get("/v1/destinations").await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.text);
            if teams(&res.json)["circuit"] != "closed" {
                return teams(&res.json);
            }
            let _ = events.recv().await;
        }
    })
    .await
    .expect("the circuit did not open");
    assert_eq!(open["circuit"], "open", "{open}");
    assert_eq!(open["circuit_reason"], "21 of the last 21 attempts failed: HTTP 503");
    // The first cool-down is the default backoff_base, 1 s, from the failure at +1 s.
    assert_eq!(open["circuit_open_until"], "2026-11-29T12:02:05.000Z");
    t.engine.idle().await.unwrap();
    // At most the one claim of 4 (the concurrency) that held the opening failure.
    assert!(t.calls("teams-ops") <= 24, "an open circuit let attempts through");
}

/// A destination that says it is gone pauses itself: `GET /v1/destinations` and the
/// metrics show it paused and why, its next delivery waits, and resume clears the reason.
#[tokio::test]
async fn a_destination_that_is_gone_shows_why_it_paused_until_resumed() {
    let t = TestApp::new();
    let reason = "the webhook no longer exists: replace `url` and resume the destination";
    *t.connectors["teams-ops"].gone.lock().unwrap() = Some(reason.into());
    let teams = |json: &serde_json::Value| {
        let list = json["destinations"].as_array().unwrap();
        list.iter().find(|d| d["name"] == "teams-ops").cloned().unwrap()
    };
    let running = teams(&t.get("/v1/destinations").await.json);
    assert_eq!(running["paused"], false);
    assert_eq!(running["paused_reason"], serde_json::Value::Null);

    let first = t.submit(&["teams-ops"], "into the void").await;
    let first = t.settle(str_of(&first, "id")).await;
    assert_eq!(delivery(&first, "teams-ops", 0)["state"], "failed");
    let paused = teams(&t.get("/v1/destinations").await.json);
    assert_eq!(paused["paused"], true, "{paused}");
    assert_eq!(paused["paused_reason"], reason);
    let metrics = t.get("/metrics").await.text;
    assert!(
        metrics.contains("herald_destination_paused{destination=\"teams-ops\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("herald_destination_paused{destination=\"jira-ops\"} 0"), "{metrics}");

    let second = t.submit(&["teams-ops"], "waits for the operator").await;
    let second = str_of(&second, "id");
    t.engine.idle().await.unwrap();
    let waiting = t.get(&format!("/v1/broadcasts/{second}")).await.json;
    assert_eq!(delivery(&waiting, "teams-ops", 0)["state"], "pending", "{waiting}");
    assert_eq!(t.calls("teams-ops"), 1);

    // The operator replaces the webhook, then resumes.
    *t.connectors["teams-ops"].gone.lock().unwrap() = None;
    let resumed = t.post_empty("/v1/destinations/teams-ops/resume").await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.text);
    assert_eq!(resumed.json["paused"], false);
    assert_eq!(resumed.json["paused_reason"], serde_json::Value::Null);
    assert_eq!(t.settle(second).await["state"], "delivered");
    assert_eq!(t.calls("teams-ops"), 2);
    let metrics = t.get("/metrics").await.text;
    assert!(
        metrics.contains("herald_destination_paused{destination=\"teams-ops\"} 0"),
        "{metrics}"
    );

    // An operator's own pause gives no reason.
    let by_hand = t.post_empty("/v1/destinations/teams-ops/pause").await;
    assert_eq!(by_hand.json["paused"], true);
    assert_eq!(by_hand.json["paused_reason"], serde_json::Value::Null);
}

#[tokio::test]
async fn destinations_report_health_and_counts() {
    let t = TestApp::new();
    t.post_empty("/v1/destinations/jira-ops/pause").await;
    let b = t.submit(&["ops", "jira-ops"], "counted").await;
    let id = str_of(&b, "id");
    // teams-ops delivers and broken fails; jira-ops stays pending while paused.
    t.wait(id, |b| b["summary"]["pending"] == 1).await;

    let res = t.get("/v1/destinations").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let list = res.json["destinations"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|d| str_of(d, "name")).collect();
    assert_eq!(names, ["broken", "jira-ops", "slack-incidents", "teams-ops"]);
    let find = |name: &str| list.iter().find(|d| d["name"] == name).unwrap().clone();
    let teams = find("teams-ops");
    assert_eq!(teams["kind"], "teams");
    assert_eq!(teams["circuit"], "closed");
    assert_eq!(teams["paused"], false);
    assert_eq!(teams["delivered"], 1);
    assert_eq!(teams["pending"], 0);
    assert_eq!(teams["last_success_at"], "2026-11-29T12:02:03.000Z");
    assert_eq!(teams["recent_error_rate"], 0.0);
    let broken = find("broken");
    assert_eq!(broken["failed"], 1);
    assert_eq!(broken["last_error"], "401: bad token");
    let jira = find("jira-ops");
    assert_eq!(jira["paused"], true);
    assert_eq!(jira["pending"], 1);
    let slack = find("slack-incidents");
    assert_eq!(slack["last_success_at"], serde_json::Value::Null);
    for key in ["in_flight", "waiting", "held", "cancelled"] {
        assert!(slack[key].is_u64(), "{key}");
    }

    let metrics = t.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK, "{}", metrics.text);
    assert!(
        metrics.content_type().starts_with("application/openmetrics-text"),
        "{}",
        metrics.content_type()
    );
    assert!(
        metrics
            .text
            .contains("herald_attempts_total{destination=\"teams-ops\",outcome=\"delivered\"} 1"),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("herald_pending_deliveries{destination=\"jira-ops\"} 1"),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("herald_pending_deliveries{destination=\"teams-ops\"} 0"),
        "{}",
        metrics.text
    );

    let resumed = t.post_empty("/v1/destinations/jira-ops/resume").await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(t.settle(id).await["state"], "partially_failed");

    let unknown = t.post_empty("/v1/destinations/nope/pause").await;
    let problem = unknown.problem(StatusCode::NOT_FOUND);
    assert!(str_of(problem, "detail").contains("broken, jira-ops"), "{}", unknown.text);
    t.post_empty("/v1/destinations/nope/resume").await.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_and_readiness() {
    let t = TestApp::new();
    let health = t.get("/healthz").await;
    assert_eq!((health.status, health.json.clone()), (StatusCode::OK, json!({"status": "ok"})));
    let ready = t.get("/readyz").await;
    assert_eq!((ready.status, ready.json.clone()), (StatusCode::OK, json!({"status": "ok"})));
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let t = TestApp::new();
    let res = t.get("/v2/nothing").await;
    let problem = res.problem(StatusCode::NOT_FOUND);
    assert_eq!(problem["type"], "urn:herald:problem:no-such-route");
    assert_eq!(problem["instance"], "/v2/nothing");
    assert!(str_of(problem, "detail").contains("/openapi.json"));

    let res = t.send(Request::delete("/v1/broadcasts").body(Body::empty()).unwrap()).await;
    let problem = res.problem(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(problem["type"], "urn:herald:problem:method-not-allowed");
    let detail = str_of(problem, "detail");
    assert!(
        detail.contains("DELETE") && detail.contains("GET") && detail.contains("POST"),
        "{detail}"
    );
    assert!(res.headers.contains_key(header::ALLOW));

    let res = t.get("/v1/deliveries/d_1/retry").await;
    let detail = str_of(res.problem(StatusCode::METHOD_NOT_ALLOWED), "detail");
    assert_eq!(detail, "/v1/deliveries/d_1/retry does not accept GET; it accepts POST.");
}

/// A store whose every operation fails with the error its function makes, as a
/// database that went away would.
struct Broken(fn() -> StoreError);

impl Broken {
    fn down<T>(&self) -> Result<T, StoreError> {
        Err(self.0())
    }
}

fn unavailable() -> StoreError {
    StoreError::Unavailable("disk I/O error at /var/lib/herald/secret.db".into())
}

#[async_trait]
impl Store for Broken {
    async fn submit(&self, _: NewBroadcast) -> Result<Submitted, StoreError> {
        self.down()
    }
    async fn add_update(&self, _: NewUpdate) -> Result<UpdateAdded, StoreError> {
        self.down()
    }
    async fn claim(&self, _: ClaimRequest) -> Result<Claimed, StoreError> {
        self.down()
    }
    async fn claim_expired_except(
        &self,
        _: Timestamp,
        _: Timestamp,
        _: usize,
        _: Vec<String>,
    ) -> Result<Vec<Work>, StoreError> {
        self.down()
    }
    async fn record(&self, _: Vec<Record>) -> Result<Vec<Change>, StoreError> {
        self.down()
    }
    async fn release(&self, _: Vec<Release>) -> Result<Vec<Change>, StoreError> {
        self.down()
    }
    async fn retry_delivery(
        &self,
        _: &str,
        _: &RetryPolicy,
        _: Timestamp,
    ) -> Result<Vec<Change>, StoreError> {
        self.down()
    }
    async fn cancel_delivery(&self, _: &str, _: Timestamp) -> Result<Vec<Change>, StoreError> {
        self.down()
    }
    async fn hold_removed(
        &self,
        _: Vec<String>,
        _: Timestamp,
    ) -> Result<Vec<herald_store::RemovedHolds>, StoreError> {
        self.down()
    }
    async fn delivery(&self, _: &str) -> Result<Option<DeliveryRef>, StoreError> {
        self.down()
    }
    async fn broadcast(&self, _: &str) -> Result<Option<BroadcastView>, StoreError> {
        self.down()
    }
    async fn list(&self, _: ListQuery) -> Result<Page, StoreError> {
        self.down()
    }
    async fn attempts(&self, _: &str) -> Result<Vec<AttemptView>, StoreError> {
        self.down()
    }
    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        self.down()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.down()
    }
    async fn prune(&self, _: PruneRequest) -> Result<Pruned, StoreError> {
        self.down()
    }
}

#[tokio::test]
async fn a_broken_store_is_a_generic_503_that_leaks_nothing() {
    let router = broken_app(unavailable);
    let requests = [
        Request::get("/readyz").body(Body::empty()).unwrap(),
        Request::get("/v1/broadcasts/b_1").body(Body::empty()).unwrap(),
        Request::get("/v1/broadcasts").body(Body::empty()).unwrap(),
        Request::get("/v1/destinations").body(Body::empty()).unwrap(),
        Request::get("/metrics").body(Body::empty()).unwrap(),
        crate::json_request(
            axum::http::Method::POST,
            "/v1/broadcasts",
            &crate::submission(&["teams-ops"], "t"),
        ),
    ];
    for req in requests {
        let uri = req.uri().to_string();
        let res = router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/problem+json");
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains("secret") && !text.contains("disk"), "{uri} leaks: {text}");
        assert!(text.contains("Retry"), "{uri}: {text}");
    }
    // Liveness does not depend on the store.
    let res = router.oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// The API over a store failing as `error` says, with one destination, `teams-ops`.
fn broken_app(error: fn() -> StoreError) -> axum::Router {
    let store: Arc<dyn Store> = Arc::new(Broken(error));
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::new(START));
    let engine =
        Engine::start(Arc::clone(&store), Vec::new(), Arc::clone(&clock), EngineConfig::default())
            .unwrap();
    app(AppState {
        store,
        engine,
        clock: Arc::clone(&clock),
        targets: Targets::new(vec!["teams-ops".into()], Default::default()),
        limits: Limits::default(),
        ids: Ids::new(clock, 1),
        auth: Auth::Open,
    })
}

/// The connection broke before the database confirmed the submit's commit: it may be
/// stored, so the answer is the time-out problem (retry with the same key), never
/// "unavailable: nothing was changed".
#[tokio::test]
async fn a_submit_whose_commit_went_unconfirmed_says_it_may_be_stored() {
    let router = broken_app(|| StoreError::Unconfirmed("the connection broke".into()));
    let req = crate::json_request(
        axum::http::Method::POST,
        "/v1/broadcasts",
        &crate::submission(&["teams-ops"], "t"),
    );
    let res = router.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:timed-out", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("may still be stored") && detail.contains("same idempotency key"),
        "{detail}"
    );
    assert!(!detail.contains("nothing was changed"), "{detail}");
}
