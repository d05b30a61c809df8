//! herald-api's integration tests: the real router over a real SQLite file and a running
//! engine whose destinations are scripted in-test connectors. Requests go through
//! `app(state).oneshot(req)`; only the SSE test uses real loopback HTTP.

#![allow(clippy::unwrap_used)]

mod auth;
mod bad_input;
mod broadcasts;
mod ids;
mod openapi;
mod operate;
mod overload;
mod sse;
mod ui;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use herald_api::{AppState, Auth, Ids, Limits, Targets, app};
use herald_connectors::{Connector, Report, Request as Attempt};
use herald_core::{Capabilities, Outcome, Timestamp};
use herald_engine::{Clock, Destination, Engine, EngineConfig, FakeClock, LaneSettings};
use herald_store::Store;
use herald_store::sqlite::SqliteStore;
use serde_json::{Value, json};
use tower::ServiceExt;

/// 2026-11-29T12:02:03Z, the instant of DESIGN.md's example exchange.
const START: Timestamp = Timestamp::from_millis(1_795_953_723_000);

/// How long a test waits for the engine before it gives up.
const PATIENCE: Duration = Duration::from_secs(20);

/// A connector that answers from a script, then with its default outcome.
struct Scripted {
    kind: &'static str,
    script: Mutex<VecDeque<Outcome>>,
    default: Outcome,
    calls: AtomicUsize,
    /// While set, the destination is gone: every call fails and asks for a pause with
    /// this reason.
    gone: Mutex<Option<String>>,
}

impl Scripted {
    fn new(kind: &'static str, default: Outcome) -> Arc<Scripted> {
        Arc::new(Scripted {
            kind,
            script: Mutex::new(VecDeque::new()),
            default,
            calls: AtomicUsize::new(0),
            gone: Mutex::new(None),
        })
    }
}

#[async_trait]
impl Connector for Scripted {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn remote_link(&self, remote_ref: &str) -> Option<String> {
        Some(format!("https://chat.example/m/{remote_ref}"))
    }

    async fn send(&self, request: &Attempt<'_>) -> Report {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(reason) = self.gone.lock().unwrap().clone() {
            return Report {
                outcome: Outcome::Permanent { reason: format!("HTTP 404: {reason}") },
                status: Some(404),
                detail: None,
                pause: Some(reason),
            };
        }
        let outcome =
            self.script.lock().unwrap().pop_front().unwrap_or_else(|| self.default.clone());
        let status = match &outcome {
            Outcome::Delivered { .. } => 200,
            Outcome::Permanent { .. } => 401,
            _ => 503,
        };
        let outcome = match outcome {
            Outcome::Delivered { remote_ref: None, unconfirmed } => Outcome::Delivered {
                remote_ref: Some(format!("ref-{}", request.delivery_id)),
                unconfirmed,
            },
            other => other,
        };
        Report {
            outcome,
            status: Some(status),
            detail: Some(format!("scripted {status}")),
            pause: None,
        }
    }
}

/// One API over a fresh database and engine.
struct TestApp {
    router: Router,
    engine: Engine,
    connectors: BTreeMap<&'static str, Arc<Scripted>>,
    /// Simulated time; it moves only when a test advances it.
    clock: FakeClock,
    _dir: tempfile::TempDir,
}

fn delivered() -> Outcome {
    Outcome::delivered(None)
}

impl TestApp {
    /// Destinations `slack-incidents`, `teams-ops`, `jira-ops` (deliver at once) and
    /// `broken` (permanent failure); groups `p1` (the first three), `ops`
    /// (`teams-ops`, `broken`), `stale` (names a destination that does not exist) and
    /// `empty`;
    /// `retired` is addressable but has no lane (removed from the engine's configuration).
    fn new() -> TestApp {
        TestApp::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> TestApp {
        TestApp::build(limits, Auth::Open)
    }

    /// [`TestApp::new`] with `auth`.
    fn with_auth(auth: Auth) -> TestApp {
        TestApp::build(Limits::default(), auth)
    }

    fn build(limits: Limits, auth: Auth) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("herald.db")).unwrap());
        let fake_clock = FakeClock::new(START);
        let clock: Arc<dyn Clock> = Arc::new(fake_clock.clone());
        let mut connectors = BTreeMap::new();
        connectors.insert("slack-incidents", Scripted::new("slack", delivered()));
        connectors.insert("teams-ops", Scripted::new("teams", delivered()));
        connectors.insert("jira-ops", Scripted::new("jira", delivered()));
        connectors.insert(
            "broken",
            Scripted::new("webhook", Outcome::Permanent { reason: "401: bad token".into() }),
        );
        let destinations = connectors
            .iter()
            .map(|(name, connector)| Destination {
                name: (*name).to_string(),
                connector: Arc::clone(connector) as Arc<dyn Connector>,
                settings: LaneSettings::default(),
            })
            .collect();
        let engine = Engine::start(
            Arc::clone(&store),
            destinations,
            Arc::clone(&clock),
            EngineConfig::default(),
        )
        .unwrap();
        let mut names: Vec<String> = connectors.keys().map(|n| n.to_string()).collect();
        names.push("retired".into());
        let groups = BTreeMap::from([
            (
                "p1".to_string(),
                vec!["slack-incidents".into(), "teams-ops".into(), "jira-ops".into()],
            ),
            ("ops".to_string(), vec!["teams-ops".into(), "broken".into()]),
            ("stale".to_string(), vec!["gone".into()]),
            ("empty".to_string(), Vec::new()),
        ]);
        let state = AppState {
            store: Arc::clone(&store),
            engine: engine.clone(),
            clock: Arc::clone(&clock),
            targets: Targets::new(names, groups),
            limits,
            ids: Ids::new(clock, 7),
            auth,
        };
        TestApp { router: app(state), engine, connectors, clock: fake_clock, _dir: dir }
    }

    /// Sends `req` through the router.
    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, headers, text, json }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn post(&self, uri: &str, body: &Value) -> Answer {
        self.send(json_request(Method::POST, uri, body)).await
    }

    async fn post_empty(&self, uri: &str) -> Answer {
        self.send(Request::post(uri).body(Body::empty()).unwrap()).await
    }

    /// Submits `message` to `destinations`; asserts 202.
    async fn submit(&self, destinations: &[&str], title: &str) -> Value {
        let res = self.post("/v1/broadcasts", &submission(destinations, title)).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
        res.json
    }

    /// Waits until the broadcast is no longer in progress and returns it.
    async fn settle(&self, id: &str) -> Value {
        self.wait(id, |b| b["state"] != "in_progress").await
    }

    /// Waits until the broadcast satisfies `done`, looking again after each engine
    /// event, and returns it.
    async fn wait(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        // Subscribed before the first read, so no change can slip between the two.
        let mut events = self.engine.subscribe();
        let wait = async {
            loop {
                let res = self.get(&format!("/v1/broadcasts/{id}")).await;
                assert_eq!(res.status, StatusCode::OK, "{}", res.text);
                if done(&res.json) {
                    return res.json;
                }
                let _ = events.recv().await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("the broadcast did not reach the expected state in time")
    }

    fn calls(&self, destination: &str) -> usize {
        self.connectors[destination].calls.load(Ordering::SeqCst)
    }
}

/// A response, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Answer {
    fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// Asserts a problem document with `status` and returns it.
    #[track_caller]
    fn problem(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.content_type(), "application/problem+json", "{}", self.text);
        for key in ["type", "title", "status", "detail"] {
            assert!(self.json.get(key).is_some(), "problem without `{key}`: {}", self.text);
        }
        assert_eq!(self.json["status"], status.as_u16());
        &self.json
    }

    /// The `field`s of a problem's `errors`.
    fn fields(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .map(|errors| {
                errors.iter().map(|e| e["field"].as_str().unwrap_or_default().to_string()).collect()
            })
            .unwrap_or_default()
    }
}

fn json_request(method: Method, uri: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// DESIGN.md's example request, to `destinations`.
fn submission(destinations: &[&str], title: &str) -> Value {
    json!({
        "destinations": destinations,
        "message": {
            "title": title,
            "body": "Error rate **38 %** since 12:01.",
            "severity": "critical",
            "fields": {"service": "checkout"},
            "links": [{"title": "Runbook", "url": "https://runbooks.example/checkout"}]
        }
    })
}

/// The delivery of `broadcast` to `destination` with `seq`.
fn delivery<'a>(broadcast: &'a Value, destination: &str, seq: u64) -> &'a Value {
    broadcast["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == destination && d["seq"] == seq)
        .unwrap_or_else(|| panic!("no delivery to {destination} with seq {seq} in {broadcast}"))
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("`{key}` is not a string in {value}"))
}
