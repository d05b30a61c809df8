//! An operator's retry and cancel of one delivery. Both answer with the delivery's
//! broadcast, read back after the change.

use axum::Json;
use axum::extract::{Path, State};
use herald_store::{Change, StoreError};

use super::Shared;
use super::broadcasts::load;
use crate::dto::BroadcastJson;
use crate::error::ApiError;

/// `POST /v1/deliveries/{id}/retry`: a held, failed or pending delivery becomes due now
/// with a fresh attempt budget, under its destination's current policy.
pub(super) async fn retry(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<BroadcastJson>, ApiError> {
    let now = state.clock.now();
    let Some(found) = state.store.delivery(&id).await? else {
        return Err(not_found(StoreError::NotFound { what: "delivery", id: id.clone() }, &id));
    };
    let destination = &found.delivery.destination;
    let Some(settings) = state.engine.settings(destination) else {
        return Err(ApiError::Conflict(format!(
            "delivery `{id}` belongs to destination `{destination}`, which is no longer configured; \
             configure it again, then retry"
        )));
    };
    let changes = state
        .store
        .retry_delivery(&id, &settings.policy, now)
        .await
        .map_err(|e| not_found(e, &id))?;
    let Some(change) = changes.first().cloned() else {
        return Err(ApiError::Internal(format!("retry of `{id}` reported no change")));
    };
    answer(&state, &changes, &change).await
}

/// `POST /v1/deliveries/{id}/cancel`: stops a delivery that has not ended. Cancelling an
/// original fails its waiting updates with `predecessor_failed`; cancelling an update
/// lets the ones after it go.
pub(super) async fn cancel(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<BroadcastJson>, ApiError> {
    let now = state.clock.now();
    let changes = state.store.cancel_delivery(&id, now).await.map_err(|e| not_found(e, &id))?;
    let Some(change) = changes.first().cloned() else {
        return Err(ApiError::Internal(format!("cancel of `{id}` reported no change")));
    };
    answer(&state, &changes, &change).await
}

fn not_found(error: StoreError, id: &str) -> ApiError {
    match error {
        StoreError::NotFound { what: "delivery", .. } => ApiError::NotFound(format!(
            "delivery `{id}` does not exist; delivery ids (`d_...`) are listed in each broadcast's `deliveries`"
        )),
        error => error.into(),
    }
}

async fn answer(
    state: &Shared,
    changes: &[Change],
    change: &Change,
) -> Result<Json<BroadcastJson>, ApiError> {
    state.engine.notify(changes);
    let view = load(state, &change.broadcast_id).await?;
    Ok(Json(BroadcastJson::new(&view, &state.engine)))
}
