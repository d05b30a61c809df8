//! Jira's answers as outcomes, per DESTINATIONS.md §4: errors come as
//! `{"errorMessages":[...],"errors":{"field":"message"}}` and Jira's own words go into
//! the reason; 400, 401, 403, 404 and 410 are permanent; 429 is throttling to its
//! `Retry-After`; 5xx (with or without `Retry-After`) is retried, honouring the delay;
//! no answer in time is ambiguous. The rate-limit headers (`X-RateLimit-*`,
//! `RateLimit-Reason`) go into the attempt's detail.
//!
//! Pure: the caller reads the answer, this decides.
//!
//! No answer pauses the destination (`Report::pause`): a 403, 404 or 410 may concern
//! one issue (a comment on a deleted or restricted issue, a removed endpoint), and
//! Jira documents no answer as "this site or project is gone"; each delivery fails on
//! its own.

use std::time::Duration;

use herald_core::Outcome;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::Report;
use crate::http;

/// The most characters of Jira's message quoted in a reason.
const MESSAGE_CHARS: usize = 300;

/// The rate-limit headers Jira sends, in the order they are quoted.
const RATE_HEADERS: &[&str] = &[
    "RateLimit-Reason",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-NearLimit",
];

/// A failed answer from Jira, reduced to what classification uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The HTTP status.
    pub(super) status: u16,
    /// The parsed `Retry-After`, if any.
    pub(super) retry_after: Option<Duration>,
    /// The rate-limit headers, as `Name=value` pairs, if any were sent.
    pub(super) rate: Option<String>,
    /// What Jira said: its messages, or an excerpt of a body that is not Jira's JSON.
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
        Failure { status, retry_after, rate: rate_detail(headers), message: message(body) }
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

/// Jira's messages in an error body (`errorMessages`, then `errors` as `field: message`),
/// or a one-line excerpt of a body that is not in that shape.
pub(super) fn message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let mut parts: Vec<String> = Vec::new();
    if let Some(value) = &parsed {
        if let Some(messages) = value.get("errorMessages").and_then(Value::as_array) {
            parts.extend(messages.iter().filter_map(Value::as_str).map(str::to_owned));
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

/// The outcome of a failed step (`what`: "creating the issue", "adding the comment", ...).
pub(super) fn outcome(failure: &Failure, what: &str) -> Outcome {
    let status = failure.status;
    let said = if failure.message.is_empty() {
        String::new()
    } else {
        format!(": \"{}\"", failure.message)
    };
    let head = format!("Jira answered HTTP {status} to {what}");
    match status {
        400 => {
            Outcome::Permanent { reason: format!("{head}, rejecting the request as invalid{said}") }
        }
        401 => Outcome::Permanent {
            reason: format!(
                "{head}: it did not accept the e-mail and API token{said}; check the \
                 destination's `email` and `token`"
            ),
        },
        403 => Outcome::Permanent {
            reason: format!(
                "{head}: the account may not do this{said}; check its permissions in the project"
            ),
        },
        404 => Outcome::Permanent {
            reason: format!(
                "{head}: not found{said}; check the destination's `url`, and that the issue \
                 still exists"
            ),
        },
        410 => Outcome::Permanent { reason: format!("{head}: Jira has removed this API{said}") },
        429 => {
            let why = failure.rate.as_deref().map_or(String::new(), |r| format!(" ({r})"));
            Outcome::Throttled {
                reason: format!("{head}: it asks herald to slow down{why}{said}"),
                after: failure.retry_after,
            }
        }
        408 => Outcome::Retry {
            reason: format!("{head}: it gave up waiting for the request{said}"),
            after: failure.retry_after,
        },
        500..=599 => Outcome::Retry {
            reason: format!("{head}: it failed on its side{said}; herald will try again"),
            after: failure.retry_after,
        },
        402 | 405..=407 | 409 | 411..=428 | 430..=499 => {
            Outcome::Permanent { reason: format!("{head}{said}") }
        }
        _ => match http::classify(status, failure.retry_after, &failure.message) {
            Outcome::Delivered { .. } => Outcome::Unknown {
                reason: format!("{head}, which herald did not expect here{said}"),
            },
            other => other,
        },
    }
}

/// The report of a failed step: the outcome, the status, and Jira's message with the
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

/// The report of a step that got no answer (timeouts are ambiguous, refused connections
/// retried), per the shared rules.
pub(super) fn unanswered(error: &http::SendError) -> Report {
    Report { outcome: http::classify_error(error), status: None, detail: None, pause: None }
}
