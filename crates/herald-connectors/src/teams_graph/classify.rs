//! Graph's and the token endpoint's answers as outcomes (DESTINATIONS.md §3c). Pure.
//!
//! | answer | outcome |
//! |---|---|
//! | `201 Created` chatMessage | `Delivered`, remote ref = its `id` |
//! | 401 | refresh the access token once and send again; a second 401 is `Permanent` |
//! | 400, 403, 404, 413 | `Permanent`, naming Graph's `error.code` |
//! | 429 | `Throttled` until `Retry-After` |
//! | 503, 504 (and other 5xx) | `Retry` (`Throttled` for a 503 with `Retry-After`) |
//! | no answer in time | `Unknown`: look up the marker before any resend |
//! | token endpoint `400 invalid_grant` (and other OAuth errors) | `Permanent`, naming the error |
//! | token endpoint 5xx, 429, unreachable | `Retry` / `Throttled`: nothing was posted |
//!
//! No answer pauses the destination (`Report::pause`): a 403 or 404 may concern one
//! message (a reply to a deleted original), and Entra ID's `invalid_grant` also covers
//! conditions an interactive sign-in clears (consent, MFA) that DESTINATIONS.md §3c
//! does not sort out; each delivery fails on its own, naming the error.

use std::time::Duration;

use herald_core::Outcome;
use serde_json::Value;

use crate::http;
use crate::teams_workflow::classify::{error_code, with_code};

/// The outcome of a `201` (or other 2xx) answer to a post: delivered, with the id.
pub(crate) fn posted(body: &[u8]) -> Outcome {
    let id = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .filter(|id| !id.is_empty());
    Outcome::Delivered { remote_ref: id, unconfirmed: false }
}

/// The outcome of a non-2xx Graph answer, its `error.code` leading the reason.
pub(crate) fn failed(status: u16, retry_after: Option<Duration>, excerpt: &str) -> Outcome {
    let outcome = http::classify(status, retry_after, excerpt);
    with_code(outcome, error_code(excerpt).as_deref())
}

/// The outcome of a token endpoint answer other than `200`.
pub(crate) fn token_failed(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    let value = serde_json::from_slice::<Value>(body).ok();
    let error = value.as_ref().and_then(|v| v.get("error")).and_then(Value::as_str);
    let description = value
        .as_ref()
        .and_then(|v| v.get("error_description"))
        .and_then(Value::as_str)
        .map(first_sentence)
        .unwrap_or_default();
    let said = match (error, description.is_empty()) {
        (Some(error), false) => format!("{error}: {description}"),
        (Some(error), true) => error.to_owned(),
        (None, _) => format!("HTTP {status}"),
    };
    match (status, error) {
        (429, _) => Outcome::Throttled {
            after: retry_after,
            reason: format!("the token endpoint asks herald to slow down ({said})"),
        },
        (_, Some("temporarily_unavailable" | "server_error")) | (500..=599, _) => Outcome::Retry {
            reason: format!(
                "the token endpoint could not refresh the access token ({said}); nothing was \
                 posted, herald will try again"
            ),
            after: retry_after,
        },
        _ => Outcome::Permanent {
            reason: format!(
                "{said} — the token endpoint refused to refresh the access token; give the \
                 destination a new refresh_token (or check tenant, client_id and scope)"
            ),
        },
    }
}

/// The token endpoint could not be reached: nothing was posted yet, so `Retry`.
pub(super) fn token_unreachable(error: &http::SendError) -> Outcome {
    let reason = match http::classify_error(error) {
        Outcome::Permanent { reason } => return Outcome::Permanent { reason },
        other => other.reason().unwrap_or("no answer").to_owned(),
    };
    Outcome::Retry {
        reason: format!("the token endpoint did not answer, so nothing was posted: {reason}"),
        after: None,
    }
}

/// The part of an `error_description` before its trace and correlation ids.
fn first_sentence(description: &str) -> String {
    let line = description.split(['\r', '\n']).next().unwrap_or("");
    let line = line.split(" Trace ID:").next().unwrap_or(line);
    line.chars().take(300).collect()
}
