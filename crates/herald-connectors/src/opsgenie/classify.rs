//! Opsgenie's answers as outcomes, per DESTINATIONS.md §7: errors come as
//! `{"message":"…","errors":{…},"took":…,"requestId":"…"}` and Opsgenie's words go into
//! the reason; 400, 401, 402, 403, 404, 409 and 422 are permanent; 429 is throttling, its
//! `X-RateLimit-State`, `X-RateLimit-Reason` and `X-RateLimit-Period-In-Sec` quoted in
//! the reason and the detail (the period is the wait when no `Retry-After` came); 5xx is
//! retried; no answer in time is ambiguous. Pure.
//!
//! No answer pauses the destination (`Report::pause`): a 404 or 422 may concern one
//! alert (a note on an alert already closed), and Opsgenie documents no answer as
//! "this integration is gone"; each delivery fails on its own.

use std::time::Duration;

use herald_core::Outcome;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::{Report, http};

/// The most characters of Opsgenie's message quoted in a reason.
const MESSAGE_CHARS: usize = 300;

/// The rate-limit headers Opsgenie sends on a 429, in the order they are quoted.
pub(super) const RATE_HEADERS: &[&str] =
    &["X-RateLimit-State", "X-RateLimit-Reason", "X-RateLimit-Period-In-Sec"];

/// A failed answer from Opsgenie, reduced to what classification uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The HTTP status.
    pub(super) status: u16,
    /// `Retry-After`, else `X-RateLimit-Period-In-Sec`, if either was sent.
    pub(super) wait: Option<Duration>,
    /// The rate-limit headers as `Name=value` pairs, if any were sent.
    pub(super) rate: Option<String>,
    /// What Opsgenie said (`message` and `errors`), or an excerpt.
    pub(super) message: String,
}

impl Failure {
    /// Reduces an answer's status, headers and body.
    pub(crate) fn new(
        status: u16,
        retry_after: Option<Duration>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Failure {
        let period = headers
            .get("X-RateLimit-Period-In-Sec")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs).min(http::RETRY_AFTER_CAP));
        Failure {
            status,
            wait: retry_after.or(period),
            rate: rate_detail(headers),
            message: said(body),
        }
    }
}

/// `Name=value, ...` of the rate-limit headers present, or `None`.
pub(super) fn rate_detail(headers: &HeaderMap) -> Option<String> {
    let pairs: Vec<String> = RATE_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(format!("{name}={}", http::excerpt(value.as_bytes(), 64)))
        })
        .collect();
    (!pairs.is_empty()).then(|| pairs.join(", "))
}

/// Opsgenie's words in an error body, or a one-line excerpt of another body.
pub(super) fn said(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let mut parts: Vec<String> = Vec::new();
    if let Some(value) = &parsed {
        if let Some(message) = value.get("message").and_then(Value::as_str) {
            parts.push(message.to_owned());
        }
        if let Some(errors) = value.get("errors").and_then(Value::as_object) {
            for (field, text) in errors {
                let text = text.as_str().map_or_else(|| text.to_string(), str::to_owned);
                parts.push(format!("{field}: {text}"));
            }
        }
    }
    let joined =
        if parts.is_empty() { http::excerpt(body, MESSAGE_CHARS) } else { parts.join("; ") };
    let joined = http::excerpt(joined.as_bytes(), MESSAGE_CHARS * 4);
    let mut short: String = joined.chars().take(MESSAGE_CHARS).collect();
    if short.len() < joined.len() {
        short.push('…');
    }
    short
}

/// The outcome of a failed step (`what`: "creating the alert", "adding the note", ...).
pub(super) fn outcome(failure: &Failure, what: &str) -> Outcome {
    let status = failure.status;
    let said = if failure.message.is_empty() {
        String::new()
    } else {
        format!(": \"{}\"", failure.message)
    };
    let head = format!("Opsgenie answered HTTP {status} to {what}");
    match status {
        400 | 422 => Outcome::Permanent { reason: format!("{head}, rejecting the request{said}") },
        401 => Outcome::Permanent {
            reason: format!(
                "{head}: it did not accept the key{said}; check the destination's `api_key` \
                 (an API integration's key) and that the integration is enabled"
            ),
        },
        402 => Outcome::Permanent {
            reason: format!("{head}: the account's plan does not allow this{said}"),
        },
        403 => Outcome::Permanent {
            reason: format!(
                "{head}: the key may not do this{said}; use an API integration's key with \
                 create and update rights"
            ),
        },
        404 => Outcome::Permanent {
            reason: format!(
                "{head}: not found{said}; check the destination's `base_url`, and that the \
                 alert still exists"
            ),
        },
        429 => {
            let why = failure.rate.as_deref().map_or(String::new(), |r| format!(" ({r})"));
            Outcome::Throttled {
                reason: format!("{head}: it asks herald to slow down{why}{said}"),
                after: failure.wait,
            }
        }
        500..=599 => Outcome::Retry {
            reason: format!("{head}: it failed on its side{said}; herald will try again"),
            after: failure.wait,
        },
        _ => match http::classify(status, failure.wait, &failure.message) {
            Outcome::Delivered { .. } => Outcome::Unknown {
                reason: format!("{head}, which herald did not expect here{said}"),
            },
            other => other,
        },
    }
}

/// The report of a failed step: the outcome, the status, and Opsgenie's message with the
/// rate-limit headers as the detail.
pub(crate) fn report(failure: &Failure, what: &str) -> Report {
    let mut detail = failure.message.clone();
    if let Some(rate) = &failure.rate {
        if !detail.is_empty() {
            detail.push_str(" | ");
        }
        detail.push_str(rate);
    }
    Report {
        outcome: outcome(failure, what),
        status: Some(failure.status),
        detail: (!detail.is_empty()).then_some(detail),
        pause: None,
    }
}

/// The report of a step that got no answer (timeouts ambiguous, refused retried).
pub(super) fn unanswered(error: &http::SendError) -> Report {
    Report { outcome: http::classify_error(error), status: None, detail: None, pause: None }
}
