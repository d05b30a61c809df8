//! The API's one error type and its RFC 9457 problem documents.
//!
//! Handlers return [`ApiError`]; its response carries the problem and, for a 5xx, the
//! internal cause in a response extension. The [`problem_details`] middleware then adds
//! the `instance`, logs each 5xx once, and restates any error response that did not come
//! from an `ApiError` (an axum rejection, a layer) as a problem too, so a client never
//! sees a plain-text error. 4xx are not logged: they are the client's to fix.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_store::StoreError;
use serde::Serialize;

use crate::tokens::Scope;

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The most bytes of a foreign error body that are read to restate it as a problem.
const FOREIGN_BODY_LIMIT: usize = 16 * 1024;

/// One invalid input, named by its path in the request (`message.title`,
/// `destinations[2]`, the query parameter `limit`, the `Idempotency-Key` header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where the problem is.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError { field: field.to_string(), message: message.into() }
    }
}

/// Everything a request can fail with. Each variant maps to one HTTP status and one
/// problem `type`; the messages are written for the person reading the response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 422: the request is well-formed but some field is invalid.
    #[error("{detail}")]
    Invalid {
        /// A summary.
        detail: String,
        /// One entry per invalid field.
        errors: Vec<FieldError>,
    },
    /// 400: the body is not JSON, or a query parameter or header cannot be read.
    #[error("{detail}")]
    BadRequest {
        /// What could not be read, with the position where known.
        detail: String,
        /// The fields concerned, if any.
        errors: Vec<FieldError>,
    },
    /// 415: the body is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 413: the body is larger than the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 401: no token, or not one of the configured tokens. Answered with
    /// `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid token whose scopes do not allow the operation.
    #[error("{detail}")]
    Forbidden {
        /// Which token, what it has and what the operation needs.
        detail: String,
        /// The scope the operation needs (`admin` also allows it).
        scope: Scope,
    },
    /// 404: the broadcast, delivery or destination does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 404: no route has this path.
    #[error("no route")]
    NoRoute,
    /// 405: the route exists but not with this method; the text names the allowed ones.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 422: the idempotency key belongs to a different request.
    #[error("{0}")]
    KeyConflict(String),
    /// 409: the operation does not apply in the current state.
    #[error("{0}")]
    Conflict(String),
    /// 503: the store cannot be reached; retrying later may help. The text is logged,
    /// never sent.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// 503: too much work is waiting (the store's submit queue or the API's request
    /// limit is full); nothing was changed. Answered with `Retry-After`.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// 503: the store or the request did not finish within its bound, or the store's
    /// write went unconfirmed. Answered with `Retry-After`; a write may still take effect.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// 500: a bug or corrupt data. The text is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The `Retry-After` (seconds) sent with an overload or timeout 503.
const RETRY_AFTER_SECS: &str = "1";

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750).
const CHALLENGE: &str = "Bearer realm=\"herald\"";

/// The RFC 9457 document. Kept in the response's extensions until the middleware has
/// filled in `instance`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Problem {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) title: &'static str,
    pub(crate) status: u16,
    pub(crate) detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) instance: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<FieldError>,
}

/// The cause of a 5xx, for the log only.
#[derive(Debug, Clone)]
struct InternalCause(String);

impl ApiError {
    /// A 422 about a single field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> ApiError {
        let error = FieldError::new(field, message);
        ApiError::Invalid {
            detail: format!("`{}` is invalid: {}", error.field, error.message),
            errors: vec![error],
        }
    }

    /// A 422 about several fields.
    pub fn invalid(errors: Vec<FieldError>) -> ApiError {
        let detail = match errors.as_slice() {
            [one] => format!("`{}` is invalid: {}", one.field, one.message),
            many => {
                let fields: Vec<String> = many.iter().map(|e| format!("`{}`", e.field)).collect();
                format!("{} fields are invalid: {}; see `errors`", many.len(), fields.join(", "))
            }
        };
        ApiError::Invalid { detail, errors }
    }

    /// A 400 about a single query parameter or header.
    pub fn bad_field(field: &str, message: impl Into<String>) -> ApiError {
        let error = FieldError::new(field, message);
        ApiError::BadRequest {
            detail: format!("`{}` is invalid: {}", error.field, error.message),
            errors: vec![error],
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::KeyConflict(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) | ApiError::Overloaded(_) | ApiError::TimedOut(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem `type`, a stable URN per kind of error.
    fn kind(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "urn:herald:problem:invalid-request",
            ApiError::BadRequest { .. } => "urn:herald:problem:bad-request",
            ApiError::UnsupportedMediaType(_) => "urn:herald:problem:unsupported-media-type",
            ApiError::PayloadTooLarge(_) => "urn:herald:problem:payload-too-large",
            ApiError::Unauthorized(_) => "urn:herald:problem:unauthorized",
            ApiError::Forbidden { .. } => "urn:herald:problem:forbidden",
            ApiError::NotFound(_) => "urn:herald:problem:not-found",
            ApiError::NoRoute => "urn:herald:problem:no-such-route",
            ApiError::MethodNotAllowed(_) => "urn:herald:problem:method-not-allowed",
            ApiError::KeyConflict(_) => "urn:herald:problem:idempotency-key-conflict",
            ApiError::Conflict(_) => "urn:herald:problem:conflict",
            ApiError::Unavailable(_) => "urn:herald:problem:unavailable",
            ApiError::Overloaded(_) => "urn:herald:problem:overloaded",
            ApiError::TimedOut(_) => "urn:herald:problem:timed-out",
            ApiError::Internal(_) => "urn:herald:problem:internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "The request is invalid",
            ApiError::BadRequest { .. } => "The request cannot be read",
            ApiError::UnsupportedMediaType(_) => "The body must be JSON",
            ApiError::PayloadTooLarge(_) => "The body is too large",
            ApiError::Unauthorized(_) => "A valid token is needed",
            ApiError::Forbidden { .. } => "The token does not allow this",
            ApiError::NotFound(_) => "Not found",
            ApiError::NoRoute => "No such route",
            ApiError::MethodNotAllowed(_) => "Method not allowed",
            ApiError::KeyConflict(_) => "The idempotency key was used for a different request",
            ApiError::Conflict(_) => "Not possible in the current state",
            ApiError::Unavailable(_) => "Temporarily unavailable",
            ApiError::Overloaded(_) => "Overloaded",
            ApiError::TimedOut(_) => "Timed out",
            ApiError::Internal(_) => "Internal error",
        }
    }

    fn problem(&self) -> Problem {
        let (detail, errors) = match self {
            ApiError::Invalid { detail, errors } | ApiError::BadRequest { detail, errors } => {
                (detail.clone(), errors.clone())
            }
            ApiError::UnsupportedMediaType(detail)
            | ApiError::PayloadTooLarge(detail)
            | ApiError::Unauthorized(detail)
            | ApiError::Forbidden { detail, .. }
            | ApiError::NotFound(detail)
            | ApiError::MethodNotAllowed(detail)
            | ApiError::Conflict(detail) => (detail.clone(), Vec::new()),
            ApiError::KeyConflict(detail) => {
                (detail.clone(), vec![FieldError::new("idempotency_key", detail.clone())])
            }
            ApiError::NoRoute => {
                ("No route has this path; GET /openapi.json lists every route.".into(), Vec::new())
            }
            ApiError::Unavailable(_) => (
                "herald cannot reach its database right now; nothing was changed. Retry shortly.".into(),
                Vec::new(),
            ),
            ApiError::Overloaded(_) => (
                "herald has more work waiting than it accepts right now, so this request was \
                 refused and nothing was changed. Retry after the number of seconds in \
                 Retry-After, and slow down if this persists."
                    .into(),
                Vec::new(),
            ),
            ApiError::TimedOut(_) => (
                "herald did not get its database's answer to this request in time (the database \
                 is slow or busy, or the connection to it broke). A submit or update may still \
                 be stored after this answer: retry with the same idempotency key, which makes \
                 the retry safe (you get the original back), after the number of seconds in \
                 Retry-After."
                    .into(),
                Vec::new(),
            ),
            ApiError::Internal(_) => (
                "herald failed to handle the request; the error was logged. Retry, and report it if it persists."
                    .into(),
                Vec::new(),
            ),
        };
        Problem {
            kind: self.kind().into(),
            title: self.title(),
            status: self.status().as_u16(),
            detail,
            instance: None,
            errors,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound { what, id } => {
                ApiError::NotFound(format!("{what} `{id}` does not exist"))
            }
            StoreError::KeyConflict { key, existing } => ApiError::KeyConflict(format!(
                "idempotency key `{key}` was already used for broadcast `{existing}` with a different \
                 request; send the same request to get that broadcast, or use a new key"
            )),
            StoreError::NotAllowed { id, state, action } => {
                let rule = match action {
                    "retry" => {
                        "only held, failed or pending deliveries can be retried, and an update only \
                         while no later update to its destination was released"
                    }
                    "cancel" => "only deliveries that have not ended can be cancelled",
                    _ => "the operation does not apply",
                };
                ApiError::Conflict(format!("delivery `{id}` is {state}; {rule}"))
            }
            error @ StoreError::Overloaded { .. } => ApiError::Overloaded(error.to_string()),
            error @ StoreError::TimedOut(_) => ApiError::TimedOut(error.to_string()),
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
            // The answer never came, as with a time-out: the write may be stored.
            error @ StoreError::Unconfirmed(_) => ApiError::TimedOut(error.to_string()),
            error @ StoreError::Corrupt(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let mut res = problem_response(&problem);
        match &self {
            ApiError::Unavailable(cause)
            | ApiError::Internal(cause)
            | ApiError::Overloaded(cause)
            | ApiError::TimedOut(cause) => {
                res.extensions_mut().insert(InternalCause(cause.clone()));
            }
            _ => {}
        }
        match &self {
            ApiError::Overloaded(_) | ApiError::TimedOut(_) => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            // RFC 6750's challenges: how to authenticate, and which scope was missing.
            ApiError::Unauthorized(_) => {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
            }
            ApiError::Forbidden { scope, .. } => {
                let challenge =
                    format!("{CHALLENGE}, error=\"insufficient_scope\", scope=\"{scope}\"");
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    res.headers_mut().insert(header::WWW_AUTHENTICATE, value);
                }
            }
            _ => {}
        }
        res.extensions_mut().insert(problem);
        res
    }
}

fn problem_response(problem: &Problem) -> Response {
    // Serializing strings and numbers cannot fail.
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (status, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

/// Completes every error response as a problem document: fills in `instance`, restates
/// foreign error bodies, and logs 5xx once.
pub(crate) async fn problem_details(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    let status = res.status();
    if !status.is_client_error() && !status.is_server_error() {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let cause = parts.extensions.remove::<InternalCause>();
    let mut problem = match parts.extensions.remove::<Problem>() {
        Some(problem) => problem,
        None => foreign_problem(status, body).await,
    };
    if status.is_server_error() {
        let error = cause.map_or_else(|| problem.detail.clone(), |cause| cause.0);
        if problem.kind == ApiError::Overloaded(String::new()).kind() {
            // Shedding load is the server working as designed; an error line per refused
            // request would flood the log exactly when it matters.
            tracing::warn!(%error, %method, %path, "Request refused: overloaded.");
        } else {
            tracing::error!(%error, %method, %path, status = status.as_u16(), "Request failed.");
        }
    }
    problem.instance = Some(path);
    // Serializing strings and numbers cannot fail.
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    Response::from_parts(parts, Body::from(body))
}

/// A problem for an error response made outside [`ApiError`]. A 4xx keeps its text as
/// the detail; a 5xx gets the generic message, as its text may hold internals.
async fn foreign_problem(status: StatusCode, body: Body) -> Problem {
    let text = axum::body::to_bytes(body, FOREIGN_BODY_LIMIT).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let base = match status {
        StatusCode::NOT_FOUND => ApiError::NoRoute,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(text.clone()),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(text.clone()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text.clone()),
        StatusCode::UNPROCESSABLE_ENTITY => {
            ApiError::Invalid { detail: text.clone(), errors: Vec::new() }
        }
        s if s.is_client_error() => {
            ApiError::BadRequest { detail: text.clone(), errors: Vec::new() }
        }
        _ => ApiError::Internal(text.clone()),
    };
    let mut problem = base.problem();
    problem.status = status.as_u16();
    if status.is_client_error() && !text.is_empty() {
        problem.detail = text;
    }
    problem
}
