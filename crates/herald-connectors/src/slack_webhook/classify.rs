//! An incoming webhook's answer as an outcome (shared/DESTINATIONS.md §2): errors are an
//! HTTP status with a short text body (`invalid_payload`, `channel_is_archived`, ...).
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | `Delivered` (no remote ref: Slack returns none) |
//! | 429 | `Throttled` after `Retry-After` |
//! | 400 `invalid_payload`, `no_text`, `user_not_found`, ... | `Permanent` |
//! | 403 `invalid_token`, `no_active_hooks` | `Permanent` **and pause** (the webhook is revoked or disabled) |
//! | 403 `action_prohibited`, other | `Permanent` |
//! | 404 `channel_not_found`, `no_service`, `no_team` | `Permanent` **and pause** (the webhook, its app or its channel is gone) |
//! | 410 `channel_is_archived` | `Permanent` **and pause** |
//! | other 404, 410 (no Slack code) | `Permanent` |
//! | 5xx (`rollup_error`, ...) | `Retry` |
//! | timeout after sending (not here: transport) | `Unknown`; `on_unknown` decides |
//!
//! "Pause" ([`pause`]): the code says the webhook itself cannot post any more, so every
//! other delivery would fail the same way; the engine pauses the destination and they
//! wait for the operator. An incoming webhook is bound to one channel (herald sends no
//! channel override), so a channel code concerns the destination, not the message.
//! `action_prohibited` is not paused: Slack documents it as a restriction "in this
//! context", which may be one message's.

use std::time::Duration;

use herald_core::Outcome;

use crate::http;

/// The outcome of an answer with `status`, `Retry-After` and body excerpt `said`.
pub fn classify(status: u16, retry_after: Option<Duration>, said: &str) -> Outcome {
    let code = said.trim();
    match status {
        200..=299 => Outcome::delivered(None),
        429 => Outcome::Throttled {
            after: retry_after,
            reason: format!("Slack webhook answered HTTP 429 {code}: it asks herald to slow down"),
        },
        400 | 403 | 404 | 410 => Outcome::Permanent {
            reason: format!("Slack webhook error {code} (HTTP {status}): {}", words(status)),
        },
        _ => http::classify(status, retry_after, code),
    }
}

/// The error codes (with their status) that say the webhook itself is unusable.
pub const PAUSING: &[(u16, &str)] = &[
    (403, "invalid_token"),
    (403, "no_active_hooks"),
    (404, "channel_not_found"),
    (404, "no_service"),
    (404, "no_team"),
    (410, "channel_is_archived"),
];

/// Why the destination itself is unusable until an operator acts, if the answer's
/// status and code are one of [`PAUSING`].
pub fn pause(status: u16, said: &str) -> Option<String> {
    let code = said.trim();
    PAUSING.iter().any(|&(s, c)| s == status && c == code).then(|| {
        format!(
            "Slack says the incoming webhook cannot post any more (HTTP {status} {code}: {}): \
             give the destination a working webhook `url` and resume it",
            words(status)
        )
    })
}

fn words(status: u16) -> &'static str {
    match status {
        400 => "Slack refused the message as invalid",
        403 => "the webhook is not allowed to post (revoked or restricted)",
        404 => "the webhook, its app or its channel no longer exists",
        _ => "the channel is archived",
    }
}
