//! The rules a request must satisfy beyond its JSON types, checked field by field so a
//! response can list every problem at once. Pure: no store, no clock.

use std::time::Duration;

use axum::http::HeaderMap;
use herald_core::Message;

use crate::dto::{SubmitRequest, UpdateRequest};
use crate::error::{ApiError, FieldError};
use crate::state::{Limits, Targets};

/// The header that may carry the idempotency key instead of the body.
pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Checks a message against `limits`, reporting under `prefix` (`message`).
pub(crate) fn message(
    message: &Message,
    limits: &Limits,
    prefix: &str,
    errors: &mut Vec<FieldError>,
) {
    let field = |name: &str| format!("{prefix}.{name}");
    if message.title.trim().is_empty() {
        errors.push(FieldError::new(&field("title"), "must not be empty; give a one-line summary"));
    } else if message.title.contains(['\n', '\r']) {
        errors.push(FieldError::new(&field("title"), "must be one line; put details in `body`"));
    }
    too_long(&message.title, limits.max_title, &field("title"), errors);
    too_long(&message.body, limits.max_body, &field("body"), errors);

    too_many(message.fields.len(), limits.max_fields, &field("fields"), "entries", errors);
    for (key, value) in &message.fields {
        let key_field = format!("{prefix}.fields.{key}");
        if key.trim().is_empty() {
            errors.push(FieldError::new(&key_field, "field names must not be empty"));
        }
        if key.chars().count() > limits.max_key {
            errors.push(FieldError::new(
                &key_field,
                format!("the field name is longer than {} characters", limits.max_key),
            ));
        }
        too_long(value, limits.max_body, &key_field, errors);
    }

    too_many(message.links.len(), limits.max_links, &field("links"), "links", errors);
    for (idx, link) in message.links.iter().enumerate() {
        let url_field = format!("{prefix}.links[{idx}].url");
        let lower = link.url.to_ascii_lowercase();
        let host = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
        if host.is_none_or(str::is_empty) {
            errors.push(FieldError::new(
                &url_field,
                format!("`{}` is not an http(s) URL; write it as `https://host/path`", link.url),
            ));
        }
        too_long(&link.url, limits.max_title, &url_field, errors);
        too_long(&link.title, limits.max_title, &format!("{prefix}.links[{idx}].title"), errors);
    }

    too_many(message.tags.len(), limits.max_tags, &field("tags"), "tags", errors);
    for (idx, tag) in message.tags.iter().enumerate() {
        let tag_field = format!("{prefix}.tags[{idx}]");
        if tag.trim().is_empty() {
            errors.push(FieldError::new(&tag_field, "tags must not be empty"));
        }
        too_long(tag, limits.max_key, &tag_field, errors);
    }
}

fn too_long(value: &str, max: usize, field: &str, errors: &mut Vec<FieldError>) {
    let n_chars = value.chars().count();
    if n_chars > max {
        errors.push(FieldError::new(
            field,
            format!("is {n_chars} characters long; the limit is {max}"),
        ));
    }
}

fn too_many(n: usize, max: usize, field: &str, what: &str, errors: &mut Vec<FieldError>) {
    if n > max {
        errors.push(FieldError::new(field, format!("has {n} {what}; the limit is {max}")));
    }
}

/// Parses `expires_in` (`"2h"`, `"90m"`, `"1d 12h"`).
pub(crate) fn expires_in(value: Option<&str>, errors: &mut Vec<FieldError>) -> Option<Duration> {
    let value = value?;
    match humantime::parse_duration(value.trim()) {
        Ok(duration) if duration.is_zero() => {
            errors.push(FieldError::new("expires_in", "must be longer than zero, e.g. `2h`"));
            None
        }
        Ok(duration) => Some(duration),
        Err(error) => {
            errors.push(FieldError::new(
                "expires_in",
                format!("`{value}` is not a duration ({error}); write it like `90s`, `30m`, `2h` or `1d`"),
            ));
            None
        }
    }
}

/// The idempotency key from the body and/or the `Idempotency-Key` header; both may be
/// given only if they are equal.
///
/// # Errors
/// A 400 for an unreadable header, a 422 for a mismatch, an empty or an overlong key.
pub(crate) fn idempotency_key(
    headers: &HeaderMap,
    body: Option<&str>,
    limits: &Limits,
) -> Result<Option<String>, ApiError> {
    let header = match headers.get(IDEMPOTENCY_HEADER) {
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::bad_field("Idempotency-Key", "the header must be visible ASCII text")
        })?),
        None => None,
    };
    let key = match (header, body) {
        (Some(header), Some(body)) if header != body => {
            return Err(ApiError::invalid_field(
                "idempotency_key",
                format!(
                    "the Idempotency-Key header (`{header}`) and the body's `idempotency_key` (`{body}`) \
                     differ; send one of them, or the same key in both"
                ),
            ));
        }
        (Some(key), _) | (None, Some(key)) => key,
        (None, None) => return Ok(None),
    };
    let field = if body.is_some() { "idempotency_key" } else { "Idempotency-Key" };
    if key.trim().is_empty() {
        return Err(ApiError::invalid_field(
            field,
            "must not be empty; omit it to submit without a key",
        ));
    }
    let n_chars = key.chars().count();
    if n_chars > limits.max_key {
        return Err(ApiError::invalid_field(
            field,
            format!("is {n_chars} characters long; the limit is {}", limits.max_key),
        ));
    }
    Ok(Some(key.to_string()))
}

/// What a submit or update body came to once checked: the idempotency key, the expiry
/// and (for a submit) the destinations its names resolve to.
pub(crate) struct Checked {
    pub(crate) key: Option<String>,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) resolved: Vec<String>,
}

/// Checks a decoded submit body (`POST /v1/broadcasts`) against the limits and the
/// configured targets.
///
/// # Errors
/// A 400 for an unreadable `Idempotency-Key` header, else a 422 listing every problem.
pub(crate) fn submit(
    req: &SubmitRequest,
    headers: &HeaderMap,
    limits: &Limits,
    targets: &Targets,
) -> Result<Checked, ApiError> {
    let key = idempotency_key(headers, req.idempotency_key.as_deref(), limits)?;
    let mut errors = Vec::new();
    if req.destinations.is_empty() {
        errors.push(FieldError::new("destinations", "must name at least one destination or group"));
    }
    if req.destinations.len() > limits.max_destinations {
        errors.push(FieldError::new(
            "destinations",
            format!(
                "lists {} names; the limit is {}",
                req.destinations.len(),
                limits.max_destinations
            ),
        ));
    }
    message(&req.message, limits, "message", &mut errors);
    let expires_in = expires_in(req.expires_in.as_deref(), &mut errors);
    let resolved = match targets.resolve(&req.destinations) {
        Ok(resolved) => resolved,
        Err(unknown) => {
            errors.extend(unknown);
            Vec::new()
        }
    };
    if resolved.len() > limits.max_destinations {
        errors.push(FieldError::new(
            "destinations",
            format!(
                "resolves to {} destinations; the limit is {}; split the broadcast",
                resolved.len(),
                limits.max_destinations
            ),
        ));
    }
    if errors.is_empty() && resolved.is_empty() {
        errors.push(FieldError::new(
            "destinations",
            "resolves to no destination (every group named is empty); name a destination",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(Checked { key, expires_in, resolved })
}

/// Checks a decoded update body (`POST /v1/broadcasts/{id}/updates`) against the limits.
///
/// # Errors
/// As [`submit`].
pub(crate) fn update(
    req: &UpdateRequest,
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<Checked, ApiError> {
    let key = idempotency_key(headers, req.idempotency_key.as_deref(), limits)?;
    let mut errors = Vec::new();
    message(&req.message, limits, "message", &mut errors);
    let expires_in = expires_in(req.expires_in.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(Checked { key, expires_in, resolved: Vec::new() })
}
