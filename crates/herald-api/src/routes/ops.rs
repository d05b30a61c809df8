//! Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use herald_engine::metrics::DestinationLabels;
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

/// `GET /metrics`: the engine's counters plus `herald_pending_deliveries`, the
/// non-terminal deliveries per destination as the store counts them now, and
/// `herald_destination_paused`, 1 while a destination is paused (by an operator or
/// because the destination said it is gone), so an alert can catch work piling up.
pub(super) async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let stats = state.store.destination_stats().await?;
    let mut registry = Registry::default();
    state.engine.metrics().register(&mut registry);
    let pending = Family::<DestinationLabels, Gauge>::default();
    for name in state.engine.destinations() {
        pending.get_or_create(&DestinationLabels { destination: name }).set(0);
    }
    for s in &stats {
        let open = s.pending + s.in_flight + s.waiting + s.held;
        pending
            .get_or_create(&DestinationLabels { destination: s.destination.clone() })
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }
    registry.register(
        "herald_pending_deliveries",
        "Deliveries not yet delivered, failed or cancelled, per destination",
        pending,
    );
    let paused = Family::<DestinationLabels, Gauge>::default();
    for health in state.engine.health() {
        paused
            .get_or_create(&DestinationLabels { destination: health.destination })
            .set(i64::from(health.paused));
    }
    registry.register(
        "herald_destination_paused",
        "1 while the destination is paused (by an operator, or because it said it is gone)",
        paused,
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
