//! Broadcasts: submit, read, list, the attempt log, follow-up updates.
//!
//! A submit is answered only after the store has made the intent durable; the engine is
//! told afterwards, so a crash in between loses nothing (the lanes' fallback poll finds
//! the work).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_core::{BroadcastState, RetryPolicy, Timestamp};
use herald_store::{
    BroadcastView, Change, ListQuery, NewBroadcast, NewDelivery, NewUpdate, Submitted, UpdateKey,
};
use sha2::{Digest, Sha256};
use tracing::Instrument as _;
use tracing::field::Empty;

use super::Shared;
use crate::dto::{
    AttemptJson, AttemptsJson, BroadcastJson, Canonical, PageJson, SubmitRequest, UpdateCanonical,
    UpdateRequest, UpdatedJson,
};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::validate;

/// The page size when `limit` is not given.
const DEFAULT_PAGE: usize = 50;
/// The largest page.
const MAX_PAGE: usize = 500;

/// `POST /v1/broadcasts`: 202 with a new broadcast, 200 with the original on a replay.
pub(super) async fn submit(
    State(state): State<Shared>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SubmitRequest>,
) -> Result<Response, ApiError> {
    let validate::Checked { key, expires_in, resolved } =
        validate::submit(&req, &headers, &state.limits, &state.targets)?;
    let now = state.clock.now();
    let fingerprint = fingerprint(&Canonical {
        destinations: &req.destinations,
        message: &req.message,
        expires_in_ms: expires_in.map(|d| d.as_millis()),
    });
    let deliveries = new_deliveries(&state, &resolved, now, expires_in);
    let new = NewBroadcast {
        id: state.ids.broadcast(),
        idempotency_key: key,
        fingerprint,
        requested: req.destinations,
        message: req.message,
        deliveries,
        created_at: now,
        expires_at: expires_in.map(|d| now.add(d)),
    };
    // The broadcast's id is the thread that ties this trace to its attempts' traces
    // (attempts run later, possibly on another node, so they are traces of their own).
    let span = tracing::info_span!(
        "herald.submit",
        herald.broadcast_id = Empty,
        herald.destination_count = new.deliveries.len() as i64,
        herald.replayed = Empty,
    );
    let submitted = state.store.submit(new).instrument(span.clone()).await?;
    let (Submitted::Created(view) | Submitted::Replayed(view)) = &submitted;
    span.record("herald.broadcast_id", view.id.as_str());
    span.record("herald.replayed", matches!(submitted, Submitted::Replayed(_)));
    match submitted {
        Submitted::Created(view) => {
            state.engine.metrics().broadcasts_accepted.inc();
            state.engine.notify(&changes(&view));
            let mut res = (StatusCode::ACCEPTED, Json(BroadcastJson::new(&view, &state.engine)))
                .into_response();
            if let Ok(location) = HeaderValue::from_str(&format!("/v1/broadcasts/{}", view.id)) {
                res.headers_mut().insert(header::LOCATION, location);
            }
            Ok(res)
        }
        Submitted::Replayed(view) => {
            Ok((StatusCode::OK, Json(BroadcastJson::new(&view, &state.engine))).into_response())
        }
    }
}

/// Hex SHA-256 of the canonical JSON of the request.
fn fingerprint(canonical: &impl serde::Serialize) -> String {
    // Serializing strings, maps and numbers cannot fail.
    let bytes = serde_json::to_vec(canonical).unwrap_or_default();
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One delivery per destination, with the budget and expiry of its current policy.
fn new_deliveries(
    state: &AppState,
    destinations: &[String],
    now: Timestamp,
    expires_in: Option<Duration>,
) -> Vec<NewDelivery> {
    destinations
        .iter()
        .map(|destination| {
            // A destination the engine does not run (removed from the configuration
            // after the broadcast was accepted) still gets its delivery recorded under
            // the default policy: it waits until the destination is configured again.
            let policy =
                state.engine.settings(destination).map(|s| s.policy.clone()).unwrap_or_default();
            NewDelivery {
                id: state.ids.delivery(),
                destination: destination.clone(),
                max_attempts: policy.max_attempts,
                expires_at: expiry(&policy, now, expires_in),
            }
        })
        .collect()
}

fn expiry(policy: &RetryPolicy, now: Timestamp, expires_in: Option<Duration>) -> Timestamp {
    let by_age = now.add(policy.max_age);
    match expires_in {
        Some(d) => by_age.min(now.add(d)),
        None => by_age,
    }
}

/// The engine's view of a new broadcast's deliveries, so their lanes wake.
fn changes(view: &BroadcastView) -> Vec<Change> {
    view.deliveries
        .iter()
        .map(|d| Change {
            delivery_id: d.id.clone(),
            broadcast_id: view.id.clone(),
            destination: d.destination.clone(),
            seq: d.seq,
            state: d.progress.state.clone(),
            next_attempt_at: d.progress.next_attempt_at,
        })
        .collect()
}

/// Reads a broadcast or answers 404.
pub(super) async fn load(state: &AppState, id: &str) -> Result<BroadcastView, ApiError> {
    state.store.broadcast(id).await?.ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "broadcast `{id}` does not exist; GET /v1/broadcasts lists the existing ones"
    ))
}

/// `GET /v1/broadcasts/{id}`.
pub(super) async fn show(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<BroadcastJson>, ApiError> {
    let view = load(&state, &id).await?;
    Ok(Json(BroadcastJson::new(&view, &state.engine)))
}

/// `GET /v1/broadcasts?state=&destination=&cursor=&limit=`.
pub(super) async fn list(
    State(state): State<Shared>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<PageJson>, ApiError> {
    let Query(pairs) = query.map_err(|rejection| ApiError::BadRequest {
        detail: format!("The query string cannot be read: {}.", rejection.body_text()),
        errors: Vec::new(),
    })?;
    let query = list_query(pairs)?;
    let page = state.store.list(query).await.map_err(|error| match error {
        herald_store::StoreError::NotFound { what: "cursor", id } => ApiError::bad_field(
            "cursor",
            format!(
                "`{id}` is not a cursor from this server; use `next_cursor` of a previous page"
            ),
        ),
        error => error.into(),
    })?;
    Ok(Json(PageJson {
        items: page.items.iter().map(|view| BroadcastJson::new(view, &state.engine)).collect(),
        next_cursor: page.next_cursor,
    }))
}

fn list_query(pairs: Vec<(String, String)>) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery { limit: DEFAULT_PAGE, ..ListQuery::default() };
    let mut seen = Vec::new();
    for (name, value) in pairs {
        if seen.contains(&name) {
            return Err(ApiError::bad_field(&name, "is given more than once; give it once"));
        }
        match name.as_str() {
            // `held` is a delivery state, not a broadcast's: it lists the broadcasts an
            // operator has to look at (some delivery held).
            "state" if value == "held" => query.held = true,
            "state" => {
                query.state = Some(BroadcastState::parse(&value).ok_or_else(|| {
                    ApiError::bad_field(
                        "state",
                        format!(
                            "`{value}` is not a broadcast state; use one of in_progress, delivered, \
                             partially_failed, failed, cancelled, or held (broadcasts with a held \
                             delivery)"
                        ),
                    )
                })?);
            }
            "destination" if value.is_empty() => {
                return Err(ApiError::bad_field(
                    "destination",
                    "must not be empty; omit it to list all",
                ));
            }
            "destination" => query.destination = Some(value),
            "cursor" if value.is_empty() => {}
            "cursor" => query.cursor = Some(value),
            "limit" => {
                query.limit =
                    value.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                        ApiError::bad_field(
                            "limit",
                            format!("`{value}` is not a whole number from 1 to {MAX_PAGE}"),
                        )
                    })?;
            }
            _ => {
                return Err(ApiError::bad_field(
                    &name,
                    "is not a query parameter of this route; use state, destination, cursor or limit",
                ));
            }
        }
        seen.push(name);
    }
    Ok(query)
}

/// `GET /v1/broadcasts/{id}/attempts`: the attempt log, oldest first.
pub(super) async fn attempts(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<AttemptsJson>, ApiError> {
    load(&state, &id).await?;
    let attempts = state.store.attempts(&id).await?;
    Ok(Json(AttemptsJson { attempts: attempts.iter().map(AttemptJson::from).collect() }))
}

/// `POST /v1/broadcasts/{id}/updates`: a follow-up to every destination of the broadcast;
/// 202 with a new update, 200 with the stored one on a replay of its idempotency key.
pub(super) async fn update(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<UpdateRequest>,
) -> Result<Response, ApiError> {
    let validate::Checked { key, expires_in, .. } =
        validate::update(&req, &headers, &state.limits)?;
    let view = load(&state, &id).await?;
    let now = state.clock.now();
    let idempotency = key.map(|key| UpdateKey {
        key,
        fingerprint: fingerprint(&UpdateCanonical {
            message: &req.message,
            expires_in_ms: expires_in.map(|d| d.as_millis()),
        }),
    });
    let update = NewUpdate {
        broadcast_id: view.id.clone(),
        message: req.message,
        created_at: now,
        deliveries: new_deliveries(&state, &view.destinations, now, expires_in),
        idempotency,
    };
    let mut added = state.store.add_update(update).await.map_err(|error| match error {
        herald_store::StoreError::NotFound { what: "broadcast", .. } => not_found(&id),
        herald_store::StoreError::KeyConflict { key, .. } => ApiError::KeyConflict(format!(
            "idempotency key `{key}` was already used for another update of broadcast `{id}` \
             with a different request; send the same request to get that update, or use a new key"
        )),
        error => error.into(),
    })?;
    if !added.replayed
        && added.changes.iter().any(|c| state.engine.settings(&c.destination).is_none())
    {
        // A destination removed from the configuration has no lane: hold its new
        // delivery as start-up would, rather than leave it pending for ever.
        state.store.hold_removed(state.engine.destinations(), now).await?;
        if let Some(view) = state.store.broadcast(&id).await? {
            added.broadcast = view;
        }
    }
    if !added.replayed {
        state.engine.metrics().updates_accepted.inc();
    }
    state.engine.notify(&added.changes);
    let status = if added.replayed { StatusCode::OK } else { StatusCode::ACCEPTED };
    let body = UpdatedJson {
        broadcast: BroadcastJson::new(&added.broadcast, &state.engine),
        update_seq: added.seq,
    };
    Ok((status, Json(body)).into_response())
}
