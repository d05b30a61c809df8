//! The HTTP side: routes, handlers, and a hyper accept loop that can drop connections.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::Shared;
use crate::state::{ANONYMOUS_KEY_PREFIX, Outcome, Record, idempotency_header, key_text};

/// Largest request body an endpoint accepts.
pub(crate) const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// How long a connection may take to finish its in-flight request once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Response extension by which a handler asks for its connection to be closed unanswered.
#[derive(Clone, Copy, Debug)]
struct DropConnection;

/// The service error that makes hyper close a connection without a response.
#[derive(Debug)]
struct ConnectionDropped;

impl fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection deliberately closed without a response")
    }
}

impl std::error::Error for ConnectionDropped {}

/// Accepts connections until `shared.cancel` fires, then waits for them to wind down.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let cancel = shared.cancel.clone();
    let router = router(shared);
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                tracker.spawn(serve_connection(stream, router.clone(), cancel.clone()));
            }
            Err(e) => {
                // Typically out of file descriptors: back off briefly instead of spinning.
                tracing::warn!(error = %e, "simulator: accept failed");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Serves one keep-alive connection, turning a handler's [`DropConnection`] into an error.
async fn serve_connection(stream: TcpStream, router: Router, cancel: CancellationToken) {
    // Small request/response exchanges: do not let Nagle delay them.
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let router = router.clone();
        async move {
            let response = match router.oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<DropConnection>().is_some() {
                Err(ConnectionDropped)
            } else {
                Ok(response)
            }
        }
    });
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await {
                Ok(result) => result,
                Err(_elapsed) => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "simulator: connection ended");
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/hooks/{name}", post(hook))
        .merge(crate::teams::routes())
        .route("/_sim", get(inspect_all))
        .route("/_sim/{name}", get(inspect))
        .merge(crate::jira::routes())
        .merge(crate::slack::routes())
        .merge(crate::pagerduty::routes())
        .merge(crate::opsgenie::routes())
        .merge(crate::discord::routes())
        .merge(crate::mattermost::routes())
        .fallback(not_found)
        .with_state(shared)
}

/// The body of a 200 answer, serialized without building a JSON tree.
#[derive(Serialize)]
struct Accepted<'a> {
    ok: bool,
    id: &'a str,
}

pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) fn drop_connection() -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    response.extensions_mut().insert(DropConnection);
    response
}

pub(crate) fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn unknown_endpoint(name: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({ "ok": false, "error": "unknown_endpoint", "endpoint": name }),
    )
}

async fn hook(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    // Taking the whole request (rather than `Path` and `HeaderMap` extractors) avoids
    // copying the name and the headers; endpoint names need no percent-decoding.
    let (mut parts, body) = request.into_parts();
    let name = parts.uri.path().strip_prefix("/hooks/").unwrap_or_default();
    let Some(endpoint) = shared.endpoints.get(name) else {
        return unknown_endpoint(name);
    };
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "ok": false, "error": "unreadable_body", "limit_bytes": BODY_LIMIT }),
        );
    };
    // Cloning a parsed header value only bumps a reference count; it lets the key outlive
    // the header map, which the log takes over as it is.
    let key_header = idempotency_header(&parts.headers).cloned();
    let key = key_header.as_ref().and_then(key_text);
    let key = key.as_deref();
    let record =
        endpoint.plan.record.then(|| Record { headers: std::mem::take(&mut parts.headers), body });
    let (outcome, entry) = endpoint.handle(key, record);
    // Ends the log entry when this handler returns or is dropped, which hyper does when
    // the client closes the connection: so a request's interval ends when the client
    // stopped waiting for it, not when a hang or delay would have answered.
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    shared.notify_change();

    let Some(outcome) = wait_out(&shared, endpoint, outcome).await else {
        return drop_connection();
    };
    match outcome {
        Outcome::Accepted { anonymous } => {
            let id = match (anonymous, key) {
                (Some(n), _) => Cow::Owned(format!("{ANONYMOUS_KEY_PREFIX}{n}")),
                (None, Some(key)) => Cow::Borrowed(key),
                (None, None) => Cow::Borrowed(""),
            };
            json_response(StatusCode::OK, &Accepted { ok: true, id: &id })
        }
        Outcome::Rejected(status) | Outcome::StoredThenRejected(status) => {
            let mut response = json_response(
                status_code(status),
                &json!({ "ok": false, "error": "injected_failure", "status": status }),
            );
            // A 429 storm (an outage answering 429) says when to come back, as real
            // rate limiters do.
            if status == 429 {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            response
        }
        Outcome::Throttled { retry_after_secs } => {
            let mut response = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({
                    "ok": false,
                    "error": "rate_limited",
                    "retry_after": retry_after_secs,
                }),
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Outcome::Reset | Outcome::Hang | Outcome::Delayed { .. } => drop_connection(),
    }
}

/// Waits out what the plan decided before an answer: a hang until shutdown, the plan's
/// delay (after which the request is answered as accepted), then its latency. `None`
/// when the connection is to be closed unanswered (a hang, or shutdown came first); every
/// dialect answers through this, so the fault plans mean the same everywhere.
pub(crate) async fn wait_out(
    shared: &Shared,
    endpoint: &crate::state::Endpoint,
    outcome: Outcome,
) -> Option<Outcome> {
    let outcome = match outcome {
        Outcome::Hang => {
            shared.cancel.cancelled().await;
            return None;
        }
        Outcome::Delayed { anonymous } => {
            tokio::select! {
                () = tokio::time::sleep(endpoint.plan.delay) => {}
                () = shared.cancel.cancelled() => return None,
            }
            Outcome::Accepted { anonymous }
        }
        other => other,
    };
    let latency = endpoint.plan.latency;
    if !latency.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            () = shared.cancel.cancelled() => return None,
        }
    }
    Some(outcome)
}

/// Marks a log entry as ended when dropped.
pub(crate) struct EndOnDrop<'a> {
    pub(crate) endpoint: &'a crate::state::Endpoint,
    pub(crate) index: usize,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.endpoint.end(self.index);
    }
}

fn describe(shared: &Shared, name: &str) -> Option<serde_json::Value> {
    let endpoint = shared.endpoints.get(name)?;
    Some(json!({
        "name": name,
        "url": crate::hook_url(shared.addr, name),
        "stats": endpoint.stats(),
        "copies": endpoint.copies(),
    }))
}

async fn inspect(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match describe(&shared, &name) {
        Some(body) => json_response(StatusCode::OK, &body),
        None => unknown_endpoint(&name),
    }
}

async fn inspect_all(State(shared): State<Arc<Shared>>) -> Response {
    let endpoints: Vec<serde_json::Value> =
        shared.names.iter().filter_map(|name| describe(&shared, name)).collect();
    json_response(StatusCode::OK, &json!({ "endpoints": endpoints }))
}

async fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({
            "ok": false,
            "error": "not_found",
            "hint": "POST /hooks/{name} to deliver; GET /_sim/{name} to inspect",
        }),
    )
}
