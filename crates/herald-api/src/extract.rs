//! Request extractors that fail with problem documents instead of axum's plain text.
//!
//! [`ApiJson`] checks the content type, reads the body within the configured limit and
//! deserializes it while tracking the path of the value being read, so an error names
//! the exact field (`message.links[0].url`) and the line and column. It does not
//! validate values beyond their JSON types; `validate.rs` does that.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// A JSON request body of type `T`.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<ApiJson<T>, ApiError> {
        check_content_type(req.headers())?;
        let limit = state.limits.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(limit)
            } else {
                ApiError::BadRequest {
                    detail: format!("The body could not be read: {}.", rejection.body_text()),
                    errors: Vec::new(),
                }
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// The 413 for a body over `limit` bytes.
pub(crate) fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "The body is larger than the limit of {limit} bytes; shorten the message."
    ))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)"));
    let Some(declared) = declared else {
        return Err(ApiError::UnsupportedMediaType(
            "The request has no Content-Type; send the body as JSON with `Content-Type: application/json`."
                .into(),
        ));
    };
    let essence = declared.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "The body is declared as `{declared}`; send it as JSON with `Content-Type: application/json`."
        )))
    }
}

/// Deserializes `bytes` as one JSON document of type `T`.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            detail: "The body is empty; send a JSON object.".into(),
            errors: Vec::new(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| json_error(e, bytes))?;
    de.end().map_err(|error| syntax_error(&error))?;
    Ok(value)
}

fn json_error(error: serde_path_to_error::Error<serde_json::Error>, bytes: &[u8]) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.classify() != Category::Data {
        // serde_json reports a number or an array where an enum is expected
        // (`"severity": 3`) as a syntax error ("expected value"); a body that is JSON is
        // still never refused as unreadable, but as the field it got wrong.
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
            return syntax_error(&inner);
        }
        let field = field_path(&path, "");
        let message = "is not one of the values this field takes; give one of its names, as a \
                       string";
        return ApiError::Invalid {
            detail: format!(
                "`{field}` is invalid: {message} (line {}, column {}).",
                inner.line(),
                inner.column()
            ),
            errors: vec![FieldError::new(&field, message)],
        };
    }
    let message = without_position(&inner);
    let field = field_path(&path, &message);
    ApiError::Invalid {
        detail: format!(
            "`{field}` is invalid: {message} (line {}, column {}).",
            inner.line(),
            inner.column()
        ),
        errors: vec![FieldError::new(&field, message)],
    }
}

fn syntax_error(error: &serde_json::Error) -> ApiError {
    ApiError::BadRequest {
        detail: format!(
            "The body is not valid JSON: {} at line {}, column {}.",
            without_position(error),
            error.line(),
            error.column()
        ),
        errors: Vec::new(),
    }
}

/// serde_json's message without its " at line L column C" suffix.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(idx) => text[..idx].to_string(),
        None => text,
    }
}

/// The dotted path of the offending value. A missing field is reported by serde at its
/// parent, so its name is appended; the top level is `(body)`.
fn field_path(path: &str, message: &str) -> String {
    let parent = if path == "." || path == "?" { "" } else { path };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .filter(|name| !name.is_empty());
    match (parent, missing) {
        ("", Some(name)) => name.to_string(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        ("", None) => "(body)".to_string(),
        (parent, None) => parent.to_string(),
    }
}
