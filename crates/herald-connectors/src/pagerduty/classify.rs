//! The Events API's answers as outcomes, per DESTINATIONS.md §6: 202 delivered (the
//! remote ref is the dedup key), 400 permanent with the body's `errors`, 429 throttled
//! (PagerDuty names no delay and suggests retrying 30 s apart), 5xx retried, other 4xx
//! permanent, no answer in time ambiguous (a resend carries the same dedup key, so it is
//! harmless). Pure: the caller reads the answer, this decides.
//!
//! No answer pauses the destination (`Report::pause`): PagerDuty answers 400 for an
//! invalid event, and documents no answer as "this integration is gone".

use std::time::Duration;

use herald_core::Outcome;
use serde_json::Value;

use crate::{Report, http};

/// How long to wait after a 429 that names no delay: PagerDuty's own suggestion.
pub(super) const THROTTLE_WAIT: Duration = Duration::from_secs(30);

/// The most characters of PagerDuty's message quoted in a reason.
const MESSAGE_CHARS: usize = 300;

/// PagerDuty's words in an answer body: `message` and `errors`, or an excerpt, with the
/// routing key (should the body echo it) blanked out.
pub(super) fn said(body: &[u8], routing_key: &str) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let mut parts: Vec<String> = Vec::new();
    if let Some(value) = &parsed {
        if let Some(message) = value.get("message").and_then(Value::as_str) {
            parts.push(message.to_owned());
        }
        if let Some(errors) = value.get("errors").and_then(Value::as_array) {
            parts.extend(
                errors.iter().map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned)),
            );
        }
    }
    let joined =
        if parts.is_empty() { http::excerpt(body, MESSAGE_CHARS) } else { parts.join("; ") };
    let joined = http::excerpt(joined.as_bytes(), MESSAGE_CHARS * 4);
    let mut short: String = joined.chars().take(MESSAGE_CHARS).collect();
    if short.len() < joined.len() {
        short.push('…');
    }
    if routing_key.len() >= 8 { short.replace(routing_key, "[redacted]") } else { short }
}

/// The report for an answer: `status`, its `Retry-After`, its body; `dedup_key` is the
/// remote ref of a delivered event when the body names none.
pub(crate) fn answered(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    dedup_key: &str,
    routing_key: &str,
) -> Report {
    let words = said(body, routing_key);
    let quoted = if words.is_empty() { String::new() } else { format!(": \"{words}\"") };
    let outcome = match status {
        200..=299 => {
            let named = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("dedup_key").and_then(Value::as_str).map(str::to_owned));
            Outcome::delivered(Some(named.unwrap_or_else(|| dedup_key.to_owned())))
        }
        400 => Outcome::Permanent {
            reason: format!("PagerDuty rejected the event as invalid (HTTP 400){quoted}"),
        },
        429 => Outcome::Throttled {
            reason: format!(
                "PagerDuty throttled the event (HTTP 429): more events for this routing key \
                 than it takes now{quoted}"
            ),
            after: Some(retry_after.unwrap_or(THROTTLE_WAIT)),
        },
        500..=599 => Outcome::Retry {
            reason: format!(
                "PagerDuty failed on its side (HTTP {status}); herald will try again{quoted}"
            ),
            after: retry_after,
        },
        _ => match http::classify(status, retry_after, &words) {
            // A 1xx or an unheard-of status: nothing says the event was taken.
            Outcome::Delivered { .. } => Outcome::Unknown {
                reason: format!("PagerDuty answered HTTP {status}, which herald did not expect"),
            },
            other => other,
        },
    };
    let detail = (!words.is_empty()).then_some(words);
    let detail = match (&outcome, detail) {
        (Outcome::Delivered { .. }, None) => Some("event processed".to_owned()),
        (_, detail) => detail,
    };
    Report { outcome, status: Some(status), detail, pause: None }
}

/// The report of a request that got no answer (timeouts ambiguous, refused retried).
pub(super) fn unanswered(error: &http::SendError) -> Report {
    Report { outcome: http::classify_error(error), status: None, detail: None, pause: None }
}
