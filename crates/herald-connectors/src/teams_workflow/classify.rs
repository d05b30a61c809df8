//! A Workflows webhook's answer as a [`Report`] (DESTINATIONS.md §3a). Pure.
//!
//! | answer | outcome |
//! |---|---|
//! | `202 Accepted` | `Delivered { unconfirmed: true }`: a flow run was queued, the post may still fail inside it |
//! | other 2xx (a flow with a Response action) | `Delivered` |
//! | 400, 401, 403, 404, 413 (> 28 KB) | `Permanent`, naming Power Automate's `error.code` |
//! | 429 | `Throttled` until `Retry-After` |
//! | 5xx | `Retry` (`Throttled` for a 503 with `Retry-After`) |
//! | no answer in time, connection lost after sending | `Unknown`: `on_unknown` decides |
//!
//! No answer pauses the destination (`Report::pause`): Power Automate documents no
//! status as "this workflow is gone" (a 404 or 401 may come from a flow's own Response
//! action about one message), so each delivery fails on its own.

use herald_core::Outcome;

use crate::Report;
use crate::http::{self, Answer};

/// The report for an answer the flow endpoint gave; `secret` (the `sig`) is redacted
/// from the excerpt should the endpoint echo it.
pub(crate) fn answered(mut answer: Answer, secret: Option<&str>) -> Report {
    if let Some(secret) = secret.filter(|s| s.len() >= 8) {
        answer.excerpt = answer.excerpt.replace(secret, "[redacted]");
    }
    let outcome = match answer.status {
        202 => Outcome::Delivered { remote_ref: None, unconfirmed: true },
        200..=299 => Outcome::Delivered { remote_ref: None, unconfirmed: false },
        _ => with_code(answer.outcome(), error_code(&answer.excerpt).as_deref()),
    };
    let detail = (!answer.excerpt.is_empty()).then_some(answer.excerpt);
    Report { outcome, status: Some(answer.status), detail, pause: None }
}

/// The report for an attempt that got no answer (a timeout is `Unknown`).
pub(super) fn unanswered(error: &crate::http::SendError) -> Report {
    Report { outcome: http::classify_error(error), status: None, detail: None, pause: None }
}

/// `error.code` of a Power Automate / Graph error body (`{"error":{"code":…}}`).
pub(crate) fn error_code(excerpt: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(excerpt).ok()?;
    let code = value.pointer("/error/code")?.as_str()?;
    (!code.is_empty()).then(|| code.to_owned())
}

/// `outcome` with the destination's own error code leading its reason.
pub(crate) fn with_code(outcome: Outcome, code: Option<&str>) -> Outcome {
    let Some(code) = code else { return outcome };
    match outcome {
        Outcome::Permanent { reason } => Outcome::Permanent { reason: format!("{code}: {reason}") },
        Outcome::Retry { reason, after } => {
            Outcome::Retry { reason: format!("{code}: {reason}"), after }
        }
        Outcome::Throttled { reason, after } => {
            Outcome::Throttled { reason: format!("{code}: {reason}"), after }
        }
        Outcome::Unknown { reason } => Outcome::Unknown { reason: format!("{code}: {reason}") },
        other => other,
    }
}
