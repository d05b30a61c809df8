//! An incoming webhook's answer as an outcome (shared/DESTINATIONS.md §11). Errors are
//! an HTTP status with an AppError body `{"id":"…","message":…,"status_code":…}`; the
//! ids and statuses below are the ones Mattermost's `HandleIncomingWebhook`
//! (server/channels/app/webhook.go) answers.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx (`ok`) | `Delivered` (no remote ref: Mattermost returns none) |
//! | 400 `web.incoming_webhook.invalid.app_error` | `Permanent` **and pause** (no webhook with that key: deleted, or a wrong `url`) |
//! | 404 `app.channel.get.existing.app_error` | `Permanent` **and pause** (the webhook's channel was deleted) |
//! | 403 `web.incoming_webhook.permissions.app_error`, `web.incoming_webhook.user.app_error` | `Permanent` **and pause** (the webhook's owner cannot post in its channel any more) |
//! | 501 `web.incoming_webhook.disabled.app_error` | `Permanent` **and pause** (an administrator turned incoming webhooks off) |
//! | 400 (`parse`, `text`, attachments too large), 401, 403, 404 (other ids) | `Permanent` |
//! | 429 | `Throttled` after `Retry-After` / `X-Ratelimit-Reset` |
//! | 5xx | `Retry` |
//! | timeout after sending (transport, not here) | `Unknown`; `on_unknown` decides |
//!
//! "Pause" ([`pause`]): the id says the webhook itself cannot post any more, so every
//! other delivery would fail the same way; the engine pauses the destination and they
//! wait for the operator. An incoming webhook is bound to one channel and herald sends
//! no channel or user override, so a channel or owner error concerns the destination,
//! not the message. A `501` with that id is not a passing server fault: retrying it
//! only spends attempts until an administrator acts.

use herald_core::{Outcome, Timestamp};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::http;

/// The AppError id of a webhook key Mattermost does not know (400).
pub const INVALID_HOOK: &str = "web.incoming_webhook.invalid.app_error";

/// The AppError id of a server with incoming webhooks turned off (501).
pub const HOOKS_DISABLED: &str = "web.incoming_webhook.disabled.app_error";

/// The answers (status and AppError id) that say the webhook itself cannot post.
pub const PAUSING: &[(u16, &str)] = &[
    (400, INVALID_HOOK),
    (403, "web.incoming_webhook.permissions.app_error"),
    (403, "web.incoming_webhook.user.app_error"),
    (404, "app.channel.get.existing.app_error"),
    (501, HOOKS_DISABLED),
];

/// The AppError `id` and `message` of a body, if it is one.
fn app_error(said: &str) -> (Option<String>, Option<String>) {
    let body: Option<Value> = serde_json::from_str(said).ok();
    let field = |name: &str| {
        body.as_ref().and_then(|b| b.get(name)).and_then(Value::as_str).map(str::to_owned)
    };
    (field("id"), field("message"))
}

/// The outcome of a webhook answer: `status`, headers, body excerpt `said`.
pub fn classify(status: u16, headers: &HeaderMap, said: &str, now: Timestamp) -> Outcome {
    let (id, message) = app_error(said);
    let quoted = match &message {
        Some(message) => format!("{}: {message}", id.as_deref().unwrap_or_default()),
        None => said.trim().to_owned(),
    };
    match status {
        200..=299 => Outcome::delivered(None),
        429 => Outcome::Throttled {
            after: crate::mattermost::throttle_wait(headers, now),
            reason: format!("Mattermost webhook answered HTTP 429 {quoted}: slow down"),
        },
        400..=499 => Outcome::Permanent {
            reason: format!(
                "Mattermost webhook error (HTTP {status}) {quoted}: {}",
                words(status, id.as_deref())
            ),
        },
        501 if id.as_deref() == Some(HOOKS_DISABLED) => Outcome::Permanent {
            reason: format!(
                "Mattermost webhook error (HTTP 501) {quoted}: {}",
                words(status, id.as_deref())
            ),
        },
        _ => http::classify(status, http::retry_after(headers, now), &quoted),
    }
}

/// Why the destination itself is unusable until an operator acts, if the answer's
/// status and AppError id are one of [`PAUSING`].
pub fn pause(status: u16, said: &str) -> Option<String> {
    let (id, _) = app_error(said);
    let id = id?;
    PAUSING.iter().any(|&(s, i)| s == status && i == id).then(|| {
        format!(
            "Mattermost says the incoming webhook cannot post any more (HTTP {status} {id}: {}): \
             {}",
            words(status, Some(&id)),
            if id == HOOKS_DISABLED {
                "an administrator must turn incoming webhooks on again, then resume the \
                 destination"
            } else {
                "give the destination a working webhook `url` and resume it"
            }
        )
    })
}

fn words(status: u16, id: Option<&str>) -> &'static str {
    match (status, id) {
        (400, Some(INVALID_HOOK)) => "no such webhook (deleted, or a wrong `url`)",
        (501, Some(HOOKS_DISABLED)) => "incoming webhooks are turned off on the server",
        (404, Some("app.channel.get.existing.app_error")) => "the webhook's channel was deleted",
        (403, Some("web.incoming_webhook.permissions.app_error")) => {
            "the webhook's owner may no longer read its private channel"
        }
        (403, Some("web.incoming_webhook.user.app_error")) => {
            "the webhook's owner no longer exists"
        }
        (400, _) => "Mattermost refused the payload (invalid, or attachments too large)",
        (401 | 403, _) => "the webhook may not post (disabled, or its channel is locked)",
        (404, _) => "not found; check `url`",
        _ => "Mattermost refused the request, and sending it again will not help",
    }
}
