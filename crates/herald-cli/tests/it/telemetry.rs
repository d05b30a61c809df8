//! `[telemetry] otlp_endpoint` on a real `herald serve`: a fake OTLP/HTTP collector on
//! loopback decodes what herald exports (protobuf, with `opentelemetry-proto`), and a
//! collector that is down never holds deliveries or the shutdown back.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use herald_simulator::{FaultPlan, Simulator};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::ALLOW_LOOPBACK;
use crate::process::{Server, herald};

/// The credential the collector expects (given to herald through a `file:` secret).
const COLLECTOR_TOKEN: &str = "Bearer otel-collector-token-7f3a";

/// One span as the collector received it, with the `service.name` of its resource.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    kind: i32,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: Vec<KeyValue>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&AnyValue> {
        self.attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()
    }

    fn string(&self, key: &str) -> Option<&str> {
        match self.attribute(key)? {
            AnyValue::StringValue(text) => Some(text),
            _ => None,
        }
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.attribute(key)? {
            AnyValue::IntValue(n) => Some(*n),
            _ => None,
        }
    }
}

/// What the fake collector saw: every span, and each request's path and authorization.
#[derive(Default)]
struct Seen {
    spans: Vec<Received>,
    requests: Vec<(String, Option<String>, Option<String>)>,
}

/// An OTLP/HTTP collector on 127.0.0.1 that decodes and keeps every export.
struct Collector {
    base: String,
    seen: Arc<Mutex<Seen>>,
}

impl Collector {
    async fn start() -> Collector {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = axum::Router::new()
            .fallback(axum::routing::post(collect))
            .with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Collector { base, seen }
    }

    fn spans(&self) -> Vec<Received> {
        self.seen.lock().unwrap().spans.clone()
    }
}

async fn collect(
    State(seen): State<Arc<Mutex<Seen>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(String::from);
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    let mut seen = seen.lock().unwrap();
    seen.requests.push((uri.path().to_owned(), header("authorization"), header("content-type")));
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(name) => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                seen.spans.push(Received {
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes: span.attributes,
                });
            }
        }
    }
    // An empty ExportTraceServiceResponse: everything accepted.
    (StatusCode::OK, Vec::new())
}

/// `herald serve` with its stderr kept, for the log assertions.
async fn start_logged(config: &Path) -> (Server, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(herald())
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let kept = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            eprintln!("{line}");
            kept.lock().unwrap().push(line);
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("herald did not start within 30 s")
        .unwrap()
        .expect("herald exited before listening");
    let base = line.strip_prefix("herald listening on ").expect("unexpected first line").to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    (Server { child, base }, log)
}

/// A configuration with webhooks `a` and `b` at `sim` and `telemetry` appended.
fn config(dir: &Path, sim: &Simulator, telemetry: &str) -> std::path::PathBuf {
    let view = sim.view();
    let text = format!(
        "{ALLOW_LOOPBACK}[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\
         shutdown_grace = \"1s\"\n\n\
         [destinations.a]\nkind = \"webhook\"\nurl = \"{}\"\n\n\
         [destinations.b]\nkind = \"webhook\"\nurl = \"{}\"\n\n{telemetry}",
        dir.join("herald.db").display(),
        view.url("a"),
        view.url("b"),
    );
    let path = dir.join("herald.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Polls (bounded) until `done` holds for the collector's spans.
async fn until_spans(collector: &Collector, what: &str, done: impl Fn(&[Received]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&collector.spans()) {
        assert!(
            Instant::now() < deadline,
            "{what}: not exported in time: {:#?}",
            collector.spans()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_gets_the_submit_and_one_attempt_span_per_destination() {
    let sim = Simulator::start(vec![
        ("a".to_owned(), FaultPlan::healthy()),
        ("b".to_owned(), FaultPlan::healthy()),
    ])
    .await
    .unwrap();
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("otel-token");
    std::fs::write(&token, COLLECTOR_TOKEN).unwrap();
    // A base endpoint with a path: herald posts to `<base>/otlp/v1/traces`.
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = \"{}/otlp\"\nservice_name = \"herald-it\"\n\
         headers = {{ Authorization = \"file:{}\" }}\n",
        collector.base,
        token.display()
    );
    let (server, log) = start_logged(&config(dir.path(), &sim, &telemetry)).await;

    let (status, accepted) = server
        .post(
            "/v1/broadcasts",
            json!({"destinations": ["a", "b"], "message": {"title": "disk full"}}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let view = server.wait_converged(&id).await;
    assert_eq!(view["state"], "delivered", "{view}");

    // Exported by the batch processor while herald runs (not only at shutdown).
    let of = |spans: &[Received], name: &str| -> Vec<Received> {
        spans
            .iter()
            .filter(|s| s.name == name && s.string("herald.broadcast_id") == Some(id.as_str()))
            .cloned()
            .collect()
    };
    until_spans(&collector, "the submit and both attempts", |spans| {
        of(spans, "herald.submit").len() == 1 && of(spans, "herald.attempt").len() == 2
    })
    .await;
    let started = Instant::now();
    server.terminate().await;
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());

    let spans = collector.spans();
    assert!(spans.iter().all(|s| s.service == "herald-it"), "{spans:#?}");

    let submit = of(&spans, "herald.submit").remove(0);
    assert_eq!(submit.int("herald.destination_count"), Some(2), "{submit:#?}");
    assert_eq!(submit.attribute("herald.replayed"), Some(&AnyValue::BoolValue(false)));
    // The submit is a child of its API request's server span, in the same trace.
    let request = spans
        .iter()
        .find(|s| s.span_id == submit.parent_span_id)
        .unwrap_or_else(|| panic!("no parent span for the submit in {spans:#?}"));
    assert_eq!(request.name, "POST /v1/broadcasts");
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(request.trace_id, submit.trace_id);
    assert_eq!(request.string("http.request.method"), Some("POST"));
    assert_eq!(request.string("http.route"), Some("/v1/broadcasts"));
    assert_eq!(request.int("http.response.status_code"), Some(202));

    let mut attempts = of(&spans, "herald.attempt");
    attempts.sort_by(|x, y| x.string("herald.destination").cmp(&y.string("herald.destination")));
    let deliveries = view["deliveries"].as_array().unwrap();
    for (attempt, destination) in attempts.iter().zip(["a", "b"]) {
        assert_eq!(attempt.string("herald.destination"), Some(destination), "{attempt:#?}");
        assert_eq!(attempt.kind, SpanKind::Client as i32);
        assert_eq!(attempt.string("herald.kind"), Some("webhook"));
        assert_eq!(attempt.int("herald.attempt"), Some(1));
        assert_eq!(attempt.string("herald.outcome"), Some("delivered"));
        assert_eq!(attempt.int("http.response.status_code"), Some(200));
        let delivery = deliveries.iter().find(|d| d["destination"] == destination).unwrap();
        assert_eq!(attempt.string("herald.delivery_id"), delivery["id"].as_str());
    }

    let commits: Vec<&Received> =
        spans.iter().filter(|s| s.name == "herald.store.commit").collect();
    assert!(!commits.is_empty(), "{spans:#?}");
    assert!(commits.iter().all(|s| s.int("herald.store.batch_size").is_some_and(|n| n >= 1)));

    // Every export went to the traces path under the base, with the credential.
    let requests = collector.seen.lock().unwrap().requests.clone();
    assert!(!requests.is_empty());
    for (path, authorization, content_type) in &requests {
        assert_eq!(path, "/otlp/v1/traces");
        assert_eq!(authorization.as_deref(), Some(COLLECTOR_TOKEN));
        assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
    }
    // A working collector is never complained about.
    let log = log.lock().unwrap().join("\n");
    for complaint in ["Cannot export traces", "export queue is full", "Spans lost", "last spans"] {
        assert!(!log.contains(complaint), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_holds_neither_deliveries_nor_the_shutdown_back() {
    let sim = Simulator::start(vec![
        ("a".to_owned(), FaultPlan::healthy()),
        ("b".to_owned(), FaultPlan::healthy()),
    ])
    .await
    .unwrap();
    // A port nothing listens on: every export is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let telemetry = format!("[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\n");
    let (server, log) = start_logged(&config(dir.path(), &sim, &telemetry)).await;

    let send = |title: &'static str| {
        let server = &server;
        async move {
            let body = json!({"destinations": ["a", "b"], "message": {"title": title}});
            let (status, accepted) = server.post("/v1/broadcasts", body).await;
            assert_eq!(status, 202, "{accepted}");
            let id = accepted["id"].as_str().unwrap().to_owned();
            let view = server.wait_converged(&id).await;
            assert_eq!(view["state"], "delivered", "{view}");
        }
    };
    send("first").await;
    // The batch processor exports on its own schedule; wait for its first failure.
    let deadline = Instant::now() + Duration::from_secs(30);
    let failures = |log: &Arc<Mutex<Vec<String>>>| {
        log.lock().unwrap().iter().filter(|l| l.contains("Cannot export traces")).count()
    };
    while failures(&log) == 0 {
        assert!(Instant::now() < deadline, "no export failure logged: {:#?}", log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Deliveries go on while the collector is down.
    send("second").await;
    send("third").await;
    assert_eq!(sim.view().received("a").len(), 3);
    assert_eq!(sim.view().received("b").len(), 3);

    let started = Instant::now();
    server.terminate().await;
    // shutdown_grace (1 s) plus the bounded flush (5 s) at most, with room.
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());
    let lines = log.lock().unwrap().clone();
    // The flush at shutdown failed too, but the outage is logged once.
    assert_eq!(failures(&log), 1, "{lines:#?}");
    // The warning says why, in the transport's own words.
    let failure = lines.iter().find(|l| l.contains("Cannot export traces")).unwrap();
    assert!(failure.contains("connect"), "{failure}");
    assert!(lines.iter().any(|l| l.contains("Spans lost during this run")), "{lines:#?}");
}
