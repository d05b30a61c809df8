//! Request decoding without a server, for the fuzz targets (`crates/herald-fuzz`). Not
//! an API: it runs exactly the body parsing and checks the routes run, minus the store.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use herald_core::Message;

use crate::error::{ApiError, FieldError};
use crate::state::{Limits, Targets};
use crate::{extract, validate};

/// A body the API accepted, as the route would store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The destinations the names resolved to (empty for an update).
    pub resolved: Vec<String>,
    /// The message.
    pub message: Message,
    /// The idempotency key, from the body or the header.
    pub idempotency_key: Option<String>,
    /// The requested expiry.
    pub expires_in: Option<Duration>,
}

/// Decodes and checks `body` as `POST /v1/broadcasts` does, with `key_header` as its
/// `Idempotency-Key` header (bytes a header cannot carry are dropped, as HTTP would).
///
/// # Errors
/// The problem the route would answer with.
pub fn submit(
    body: &[u8],
    key_header: Option<&[u8]>,
    limits: &Limits,
    targets: &Targets,
) -> Result<Accepted, ApiError> {
    let headers = headers(key_header);
    let req: crate::dto::SubmitRequest = decode(body, limits)?;
    let checked = validate::submit(&req, &headers, limits, targets)?;
    Ok(Accepted {
        resolved: checked.resolved,
        message: req.message,
        idempotency_key: checked.key,
        expires_in: checked.expires_in,
    })
}

/// Decodes and checks `body` as `POST /v1/broadcasts/{id}/updates` does.
///
/// # Errors
/// The problem the route would answer with.
pub fn update(
    body: &[u8],
    key_header: Option<&[u8]>,
    limits: &Limits,
) -> Result<Accepted, ApiError> {
    let headers = headers(key_header);
    let req: crate::dto::UpdateRequest = decode(body, limits)?;
    let checked = validate::update(&req, &headers, limits)?;
    Ok(Accepted {
        resolved: Vec::new(),
        message: req.message,
        idempotency_key: checked.key,
        expires_in: checked.expires_in,
    })
}

/// The problems the API finds in `message` (empty: it would accept it).
pub fn check_message(message: &Message, limits: &Limits) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate::message(message, limits, "message", &mut errors);
    errors
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], limits: &Limits) -> Result<T, ApiError> {
    if body.len() > limits.max_body_bytes {
        return Err(extract::too_large(limits.max_body_bytes));
    }
    extract::parse(body)
}

fn headers(key_header: Option<&[u8]>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(value) = key_header.and_then(|bytes| HeaderValue::from_bytes(bytes).ok()) {
        headers.insert(validate::IDEMPOTENCY_HEADER, value);
    }
    headers
}
