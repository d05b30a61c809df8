//! An operator's retry and cancel of one delivery. Both answer with the delivery's
//! broadcast, read back after the change.

use axum::Json;
use axum::extract::{Path, State};
use herald_core::RetryPolicy;
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
    // The policy depends on the destination, which the store reveals only in its answer
    // (it has no lookup by delivery id). The policy matters only through `max_age`,
    // which a retry can only extend, so retry first with the shortest `max_age` of any
    // configured destination and extend afterwards if this destination's is longer: the
    // result equals a single retry under the right policy. If the lane claims the
    // delivery in between, the second step is refused and the attempt simply runs with
    // the shorter extension.
    let shortest = state
        .engine
        .destinations()
        .iter()
        .filter_map(|name| state.engine.settings(name))
        .map(|settings| settings.policy.max_age)
        .min()
        .unwrap_or_default();
    let first = RetryPolicy { max_age: shortest, ..RetryPolicy::default() };
    let mut changes =
        state.store.retry_delivery(&id, &first, now).await.map_err(|e| not_found(e, &id))?;
    let Some(change) = changes.first().cloned() else {
        return Err(ApiError::Internal(format!("retry of `{id}` reported no change")));
    };
    let Some(settings) = state.engine.settings(&change.destination) else {
        state.engine.notify(&changes);
        return Err(ApiError::Conflict(format!(
            "delivery `{id}` is due again, but its destination `{}` is no longer configured, so nothing \
             will attempt it until the destination is configured again",
            change.destination
        )));
    };
    if settings.policy.max_age > shortest {
        match state.store.retry_delivery(&id, &settings.policy, now).await {
            Ok(extended) => changes = extended,
            Err(StoreError::NotAllowed { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    answer(&state, &changes, &change).await
}

/// `POST /v1/deliveries/{id}/cancel`: stops a delivery that has not ended; its waiting
/// successors fail with `predecessor_failed`.
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
    Ok(Json(BroadcastJson::from(&view)))
}
