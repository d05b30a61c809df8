//! A Matrix client-server answer as an outcome (shared/DESTINATIONS.md §5). Errors are
//! `{"errcode","error"}`; the errcode decides, the status only for `M_UNKNOWN` or
//! answers without one. Pure: no I/O.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | `Delivered` (the caller adds the event id; without one it is `Unknown`) |
//! | `M_LIMIT_EXCEEDED` (429) | `Throttled` after `Retry-After`, else `retry_after_ms` |
//! | `M_RESOURCE_LIMIT_EXCEEDED` | `Retry` after [`RESOURCE_LIMIT_BACKOFF`] (a server quota) |
//! | a code of [`PERMANENT`] | `Permanent`, naming the code (`M_UNKNOWN_TOKEN` re-logs in first) |
//! | any other code, or none | the shared HTTP rules (`crate::http::classify`): 5xx retried |

use std::time::Duration;

use herald_core::Outcome;
use serde_json::Value;

use crate::http;

/// Error codes that retrying cannot fix (DESTINATIONS.md §5 "P").
pub const PERMANENT: &[&str] = &[
    "M_UNKNOWN_TOKEN",
    "M_MISSING_TOKEN",
    "M_FORBIDDEN",
    "M_TOO_LARGE",
    "M_BAD_JSON",
    "M_NOT_JSON",
    "M_NOT_FOUND",
    "M_USER_LOCKED",
    "M_USER_SUSPENDED",
    "M_USER_DEACTIVATED",
    "M_INVALID_PARAM",
    "M_UNRECOGNIZED",
];

/// How long herald waits after `M_RESOURCE_LIMIT_EXCEEDED`: the server is over a quota
/// an administrator must lift, so asking again soon only adds load.
pub const RESOURCE_LIMIT_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The longest error code quoted.
const CODE_CHARS: usize = 60;

/// The `errcode` of an error body.
pub(super) fn errcode(body: &Value) -> Option<&str> {
    body.get("errcode")?.as_str()
}

/// Whether the server said the access token is no longer valid (including a
/// `soft_logout`), after which herald logs in again once.
pub(super) fn token_rejected(status: u16, body: Option<&Value>) -> bool {
    status == 401 && body.and_then(errcode) == Some("M_UNKNOWN_TOKEN")
}

fn words(code: &str) -> &'static str {
    match code {
        "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN" => {
            "the access token is not valid; check the password or access_token"
        }
        "M_FORBIDDEN" => "the user may not do this (not in the room, or too low a power level)",
        "M_TOO_LARGE" => "the message is too large for the homeserver",
        "M_BAD_JSON" | "M_NOT_JSON" => "the homeserver rejected the event's JSON",
        "M_NOT_FOUND" => "the room or event does not exist",
        "M_USER_LOCKED" | "M_USER_SUSPENDED" | "M_USER_DEACTIVATED" => {
            "the account is locked, suspended or deactivated"
        }
        "M_LIMIT_EXCEEDED" => "the homeserver asks herald to slow down",
        "M_RESOURCE_LIMIT_EXCEEDED" => {
            "the homeserver is over a resource limit; its administrator must raise it"
        }
        _ => "",
    }
}

fn reason(status: u16, code: &str, body: &Value, tail: &str) -> String {
    let mut shown = http::excerpt(code.as_bytes(), CODE_CHARS * 4);
    if shown.chars().count() > CODE_CHARS {
        shown = shown.chars().take(CODE_CHARS).chain(['…']).collect();
    }
    let said = words(code);
    let said = if said.is_empty() {
        match body.get("error").and_then(Value::as_str) {
            Some(error) => format!(": \"{}\"", http::excerpt(error.as_bytes(), 200)),
            None => String::new(),
        }
    } else {
        format!(": {said}")
    };
    format!("Matrix error {shown} (HTTP {status}){said}{tail}")
}

/// The wait a throttling answer asks for: `Retry-After` (Matrix v1.10+), else the
/// deprecated `retry_after_ms` in the body, capped like every wait.
pub fn throttle_wait(retry_after: Option<Duration>, body: Option<&Value>) -> Option<Duration> {
    retry_after.or_else(|| {
        let ms = body?.get("retry_after_ms")?.as_u64()?;
        Some(Duration::from_millis(ms).min(http::RETRY_AFTER_CAP))
    })
}

/// The outcome of an answer: `status`, its `Retry-After`, its body parsed as JSON if it
/// was JSON, and a text excerpt for answers that were not.
pub fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: Option<&Value>,
    excerpt: &str,
) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::delivered(None);
    }
    let code = body.and_then(errcode);
    let (Some(code), Some(body)) = (code, body) else {
        if status == 429 {
            return Outcome::Throttled {
                after: throttle_wait(retry_after, body),
                reason: "HTTP 429 from the homeserver: it asks herald to slow down".to_owned(),
            };
        }
        return http::classify(status, retry_after, excerpt);
    };
    if code == "M_LIMIT_EXCEEDED" || status == 429 {
        let after = throttle_wait(retry_after, Some(body));
        return Outcome::Throttled { after, reason: reason(status, code, body, "") };
    }
    if code == "M_RESOURCE_LIMIT_EXCEEDED" {
        return Outcome::Retry {
            reason: reason(status, code, body, "; herald will try again later"),
            after: Some(retry_after.unwrap_or(RESOURCE_LIMIT_BACKOFF)),
        };
    }
    if PERMANENT.contains(&code) {
        return Outcome::Permanent { reason: reason(status, code, body, "") };
    }
    // `M_UNKNOWN` and codes herald does not know: the status says more.
    match http::classify(status, retry_after, "") {
        Outcome::Retry { after, .. } => {
            Outcome::Retry { reason: reason(status, code, body, "; herald will try again"), after }
        }
        Outcome::Permanent { .. } => Outcome::Permanent { reason: reason(status, code, body, "") },
        other => other,
    }
}
