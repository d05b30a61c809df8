//! Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document.

use std::sync::atomic::AtomicU64;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use herald_engine::metrics::{self, DestinationLabels};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Shared;
use crate::dto::StatusJson;
use crate::error::ApiError;

/// The hand-written OpenAPI 3.1 document of every route.
const OPENAPI: &str = include_str!("../openapi.json");

/// The OpenMetrics text format that `prometheus_client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An id no broadcast has, for the readiness probe's point lookup.
const PROBE_ID: &str = "b_readiness_probe";

/// `GET /healthz`: the process is up and serving.
pub(super) async fn healthz() -> Json<StatusJson> {
    Json(StatusJson { status: "ok" })
}

/// `GET /readyz`: a round trip through the store's writer (so a stalled or dead writer
/// is not ready) and a cheap read (a point lookup by primary key), each within
/// `Limits::ready_timeout`.
pub(super) async fn readyz(State(state): State<Shared>) -> Result<Json<StatusJson>, ApiError> {
    let bound = state.limits.ready_timeout;
    let timed_out = || ApiError::Unavailable(format!("the readiness probe took over {bound:?}"));
    tokio::time::timeout(bound, state.store.ping()).await.map_err(|_| timed_out())??;
    tokio::time::timeout(bound, state.store.broadcast(PROBE_ID))
        .await
        .map_err(|_| timed_out())??;
    Ok(Json(StatusJson { status: "ok" }))
}

/// `GET /metrics`: the engine's counters and its lanes' health (circuit, throttling,
/// pauses), the store's write-path histograms, and per destination the gauges the store
/// counts now: unfinished deliveries (`herald_pending_deliveries`), held ones, and the
/// age of the oldest unfinished one, so an alert can catch work piling up. The store's
/// counts are one read whose cost does not grow with the deliveries ever made.
pub(super) async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let stats = state.store.destination_stats().await?;
    let now = state.clock.now();
    let mut registry = Registry::default();
    state.engine.metrics().register(&mut registry);
    metrics::register_health(&state.engine.health(), &mut registry);
    if let Some(store) = state.store.metrics() {
        store.register(&mut registry);
    }
    let pending = Family::<DestinationLabels, Gauge>::default();
    let held = Family::<DestinationLabels, Gauge>::default();
    let oldest = Family::<DestinationLabels, Gauge<f64, AtomicU64>>::default();
    for name in state.engine.destinations() {
        let labels = DestinationLabels { destination: name };
        pending.get_or_create(&labels).set(0);
        held.get_or_create(&labels).set(0);
        oldest.get_or_create(&labels).set(0.0);
    }
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for s in &stats {
        let labels = DestinationLabels { destination: s.destination.clone() };
        pending.get_or_create(&labels).set(count(s.pending + s.in_flight + s.waiting + s.held));
        held.get_or_create(&labels).set(count(s.held));
        let age = s.oldest_open_at.map_or(0.0, |at| now.since(at).as_secs_f64());
        oldest.get_or_create(&labels).set(age);
    }
    registry.register(
        "herald_pending_deliveries",
        "Deliveries not yet delivered, failed or cancelled, per destination",
        pending,
    );
    registry.register(
        "herald_held_deliveries",
        "Deliveries held for an operator (ambiguous, or their destination removed)",
        held,
    );
    registry.register(
        "herald_oldest_pending_age_seconds",
        "Age of the oldest delivery not yet delivered, failed or cancelled (0 when none)",
        oldest,
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|error| ApiError::Internal(format!("encoding metrics: {error}")))?;
    let mut res = text.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    Ok(res)
}

/// `GET /openapi.json`.
pub(super) async fn openapi() -> Response {
    let mut res = OPENAPI.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
