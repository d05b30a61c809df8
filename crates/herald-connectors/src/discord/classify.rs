//! A Discord webhook answer as an outcome (shared/DESTINATIONS.md §8). Errors are an
//! HTTP status with a JSON body `{"code":…,"message":…}`; a 429 carries
//! `{"message":…,"retry_after":<seconds, float>,"global":bool}`, `Retry-After` and the
//! bucket headers `X-RateLimit-*`.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx with the message object (`?wait=true`) | `Delivered`, remote ref = message id |
//! | 2xx without an id | `Unknown` (it may have posted; nothing to refer to) |
//! | 429 | `Throttled` after the body's `retry_after`, else `Retry-After`, else `X-RateLimit-Reset-After` |
//! | 400 (50035 invalid form body, embed limits, …) | `Permanent` |
//! | 401 50027 `Invalid Webhook Token` | `Permanent` **and pause**: no message can pass until the URL is fixed |
//! | 401, 403 (other codes) | `Permanent` (never retried: they count toward the invalid-request ban) |
//! | 404 10015 `Unknown Webhook` | `Permanent` **and pause**: the webhook was deleted; replace the URL |
//! | 404 10008 `Unknown Message` (an edit of a deleted message) | `Permanent` |
//! | other 4xx | `Permanent` |
//! | 5xx | `Retry` |
//! | timeout after sending (transport, not here) | `Unknown`; `on_unknown` decides |
//!
//! "Pause" ([`pause`]): the answer is about the webhook itself, so every other delivery
//! would get the same answer; the engine pauses the destination and they wait, where
//! failing each would spend a request that counts toward Discord's ban (DESTINATIONS.md
//! §8: "after a webhook 404, stop using it", 10015 ⇒ disable the destination). Only
//! these two codes pause: a 400 or a 10008 concerns one message, and a 403 `Missing
//! Permissions` may concern only a thread the message was sent to.

use std::time::Duration;

use herald_core::{Outcome, Timestamp};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::http;

/// Discord's JSON error code for a deleted webhook.
pub const UNKNOWN_WEBHOOK: i64 = 10015;
/// Discord's JSON error code for a message that does not exist (deleted).
pub const UNKNOWN_MESSAGE: i64 = 10008;
/// Discord's JSON error code for a webhook token that is not the webhook's.
pub const INVALID_WEBHOOK_TOKEN: i64 = 50027;
/// Discord's JSON error code for an invalid form body.
pub const INVALID_FORM_BODY: i64 = 50035;

/// The wait a 429 asks for: the body's `retry_after` (float seconds, rounded up to the
/// millisecond), else `Retry-After`, else `X-RateLimit-Reset-After`; capped.
pub fn throttle_wait(
    headers: &HeaderMap,
    body: Option<&Value>,
    now: Timestamp,
) -> Option<Duration> {
    let from_body = body.and_then(|b| b.get("retry_after")).and_then(Value::as_f64);
    let from_reset = headers
        .get("x-ratelimit-reset-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    if let Some(secs) = from_body.and_then(seconds) {
        return Some(secs);
    }
    if let Some(wait) = http::retry_after(headers, now) {
        return Some(wait);
    }
    from_reset.and_then(seconds)
}

/// Float seconds as a duration rounded up to the millisecond; `None` if not a number.
fn seconds(secs: f64) -> Option<Duration> {
    if !secs.is_finite() {
        return None;
    }
    let millis = (secs.max(0.0) * 1000.0).ceil();
    let cap = http::RETRY_AFTER_CAP.as_millis() as f64;
    // Clamped to [0, cap] above, so the conversion is exact enough and cannot overflow.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(Duration::from_millis(millis.min(cap) as u64))
}

/// The outcome of an answer: `status`, its headers, its body (`body` parsed if JSON,
/// `excerpt` for quoting).
pub fn classify(
    status: u16,
    headers: &HeaderMap,
    body: Option<&Value>,
    excerpt: &str,
    now: Timestamp,
) -> Outcome {
    let code = body.and_then(|b| b.get("code")).and_then(Value::as_i64);
    let said = body
        .and_then(|b| b.get("message"))
        .and_then(Value::as_str)
        .map_or_else(|| excerpt.to_owned(), |m| http::excerpt(m.as_bytes(), 200));
    let quoted = match code {
        Some(code) => format!("{code} {said}"),
        None => said.clone(),
    };
    match status {
        200..=299 => match body.and_then(|b| b.get("id")).and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Outcome::delivered(Some(id.to_owned())),
            _ => Outcome::Unknown {
                reason: format!(
                    "Discord answered HTTP {status} without the message's id (was `wait=true` \
                     dropped by a proxy?); herald cannot tell what was posted"
                ),
            },
        },
        429 => {
            let global = body.and_then(|b| b.get("global")).and_then(Value::as_bool) == Some(true);
            let scope = headers
                .get("x-ratelimit-scope")
                .and_then(|v| v.to_str().ok())
                .map(|s| format!(", scope {s}"))
                .unwrap_or_default();
            Outcome::Throttled {
                after: throttle_wait(headers, body, now),
                reason: format!(
                    "Discord rate limit ({}{scope}): {quoted}",
                    if global { "global" } else { "this webhook's bucket" }
                ),
            }
        }
        404 if code == Some(UNKNOWN_WEBHOOK) => Outcome::Permanent {
            reason: format!(
                "Discord error {quoted} (HTTP 404): the webhook was deleted; herald pauses the \
                 destination so nothing more is sent to it, as Discord asks"
            ),
        },
        404 if code == Some(UNKNOWN_MESSAGE) => Outcome::Permanent {
            reason: format!(
                "Discord error {quoted} (HTTP 404): the original message was deleted, so the \
                 update cannot edit it"
            ),
        },
        400..=499 => Outcome::Permanent {
            reason: format!("Discord error {quoted} (HTTP {status}): {}", words(status, code)),
        },
        _ => http::classify(status, http::retry_after(headers, now), &quoted),
    }
}

/// Why the destination itself is unusable until an operator acts, if the answer says
/// so (see the module's table): the webhook was deleted (404, code 10015) or its token
/// is not the webhook's (401, code 50027). `None` for every other answer.
pub fn pause(status: u16, body: Option<&Value>) -> Option<String> {
    let code = body.and_then(|b| b.get("code")).and_then(Value::as_i64);
    match (status, code) {
        (404, Some(UNKNOWN_WEBHOOK)) => Some(
            "Discord says the webhook no longer exists (404 Unknown Webhook, code 10015): \
             replace `url` and resume the destination"
                .to_owned(),
        ),
        (401, Some(INVALID_WEBHOOK_TOKEN)) => Some(
            "Discord refuses the webhook's token (401 Invalid Webhook Token, code 50027): \
             replace `url` with the webhook's current URL and resume the destination"
                .to_owned(),
        ),
        _ => None,
    }
}

fn words(status: u16, code: Option<i64>) -> &'static str {
    match (status, code) {
        (400, Some(INVALID_FORM_BODY)) => "Discord refused the message's form (a limit or field)",
        (400, _) => "Discord refused the request as invalid",
        (401, _) => "the webhook token is invalid; check the URL",
        (403, _) => "the webhook may not post there",
        (404, _) => "the webhook or message does not exist; check the URL",
        (413, _) => "the message is too large for Discord",
        _ => "Discord refused the request, and sending it again will not help",
    }
}
