//! Destinations: health and counts, pause and resume. Health lives in the engine
//! (this process's view); counts come from the store (durable, shared).

use axum::Json;
use axum::extract::{Path, State};
use herald_store::DestinationStats;

use super::Shared;
use crate::dto::{DestinationJson, DestinationsJson};
use crate::error::ApiError;

/// `GET /v1/destinations`: every configured destination, sorted by name.
pub(super) async fn list(State(state): State<Shared>) -> Result<Json<DestinationsJson>, ApiError> {
    let stats = state.store.destination_stats().await?;
    let destinations = state
        .engine
        .health()
        .iter()
        .map(|health| DestinationJson::new(health, find(&stats, &health.destination)))
        .collect();
    Ok(Json(DestinationsJson { destinations }))
}

/// `POST /v1/destinations/{name}/pause`: the lane stops claiming; nothing is lost.
pub(super) async fn pause(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<DestinationJson>, ApiError> {
    set_paused(&state, &name, true).await
}

/// `POST /v1/destinations/{name}/resume`: the lane claims again at once, and the reason
/// a destination gave for pausing itself is cleared.
pub(super) async fn resume(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<DestinationJson>, ApiError> {
    set_paused(&state, &name, false).await
}

async fn set_paused(
    state: &Shared,
    name: &str,
    paused: bool,
) -> Result<Json<DestinationJson>, ApiError> {
    if !state.engine.set_paused(name, paused).await? {
        return Err(ApiError::NotFound(format!(
            "destination `{name}` is not configured; configured: {}",
            state.engine.destinations().join(", ")
        )));
    }
    let stats = state.store.destination_stats().await?;
    let health = state.engine.health().into_iter().find(|h| h.destination == name);
    let Some(health) = health else {
        return Err(ApiError::Internal(format!("destination `{name}` has no health entry")));
    };
    Ok(Json(DestinationJson::new(&health, find(&stats, name))))
}

fn find<'a>(stats: &'a [DestinationStats], name: &str) -> Option<&'a DestinationStats> {
    stats.iter().find(|s| s.destination == name)
}
