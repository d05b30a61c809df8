//! An incoming webhook's answer as an outcome (shared/DESTINATIONS.md §2): errors are an
//! HTTP status with a short text body (`invalid_payload`, `channel_is_archived`, ...).
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | `Delivered` (no remote ref: Slack returns none) |
//! | 429 | `Throttled` after `Retry-After` |
//! | 400 `invalid_payload`, `no_text`, `user_not_found`, ... | `Permanent` |
//! | 403 `action_prohibited`, `invalid_token`, `no_active_hooks`, ... | `Permanent` |
//! | 404 `channel_not_found`, `no_service`, `no_team` | `Permanent` |
//! | 410 `channel_is_archived` | `Permanent` |
//! | 5xx (`rollup_error`, ...) | `Retry` |
//! | timeout after sending (not here: transport) | `Unknown`; `on_unknown` decides |

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

fn words(status: u16) -> &'static str {
    match status {
        400 => "Slack refused the message as invalid",
        403 => "the webhook is not allowed to post (revoked or restricted)",
        404 => "the webhook, its app or its channel no longer exists",
        _ => "the channel is archived",
    }
}
