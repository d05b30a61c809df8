//! The span of each API request, for trace export (`[telemetry]` in `herald.toml`).
//!
//! The span is `info` under herald's target: without telemetry no layer wants it, so it
//! is disabled at its call site and costs one check per request.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tracing::field::Empty;

/// The middleware: one `server` span per request, named `METHOD /route/{template}` (the
/// template, never the path, so ids do not make every name unique), with the status.
pub(crate) async fn request(req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http.request",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %req.method(),
        http.route = Empty,
        http.response.status_code = Empty,
    );
    if span.is_disabled() {
        return next.run(req).await;
    }
    match req.extensions().get::<MatchedPath>() {
        Some(route) => {
            span.record("otel.name", format!("{} {}", req.method(), route.as_str()));
            span.record("http.route", route.as_str());
        }
        None => {
            span.record("otel.name", req.method().as_str());
        }
    }
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}
