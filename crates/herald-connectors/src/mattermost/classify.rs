//! A Mattermost REST API v4 answer as an outcome (shared/DESTINATIONS.md §11). Errors are
//! an HTTP status with an AppError body `{"id":"api.…","message":…,"status_code":…}`;
//! the optional rate limiter answers 429 with `X-Ratelimit-*` (and `Retry-After`).
//!
//! | answer | outcome |
//! |---|---|
//! | 201/200 with the post (`id`) | `Delivered`, remote ref = post id |
//! | 2xx without an id | `Unknown` (something was created; the look-up settles it) |
//! | 400, 401, 403, 404, 413 | `Permanent` |
//! | 429 | `Throttled` after `Retry-After`, else `X-Ratelimit-Reset` (seconds) |
//! | 500 `api.post.deduplicate_create_post.pending` | `Retry` (a create with the same `pending_post_id` is in flight; resend the same id) |
//! | 5xx | `Retry` |
//! | timeout after sending (transport, not here) | `Unknown`; the next attempt looks up first |
//!
//! No answer pauses the destination (`Report::pause`): a 403 or 404 may concern one
//! post (an edit or reply of a deleted original), and the AppError ids that would say
//! the token or channel is gone are not documented as a stable contract
//! (DESTINATIONS.md §11); each delivery fails on its own.

use std::time::Duration;

use herald_core::{Outcome, Timestamp};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::http;

/// The AppError id of a concurrent duplicate create (same `pending_post_id`).
pub const DEDUPLICATE_PENDING: &str = "api.post.deduplicate_create_post.pending";

/// The wait a 429 asks for: `Retry-After`, else `X-Ratelimit-Reset` (seconds left).
pub fn throttle_wait(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    http::retry_after(headers, now).or_else(|| {
        let reset = headers.get("x-ratelimit-reset")?.to_str().ok()?;
        let secs = reset.trim().parse::<u64>().ok()?;
        Some(Duration::from_secs(secs).min(http::RETRY_AFTER_CAP))
    })
}

/// The outcome of an answer with `status`, `headers`, the body (`body` if JSON,
/// `excerpt` for quoting).
pub fn classify(
    status: u16,
    headers: &HeaderMap,
    body: Option<&Value>,
    excerpt: &str,
    now: Timestamp,
) -> Outcome {
    let id = body.and_then(|b| b.get("id")).and_then(Value::as_str).unwrap_or_default();
    let said = match body.and_then(|b| b.get("message")).and_then(Value::as_str) {
        Some(message) => format!("{id}: {}", http::excerpt(message.as_bytes(), 200)),
        None => excerpt.to_owned(),
    };
    match status {
        200..=299 => {
            if id.is_empty() {
                Outcome::Unknown {
                    reason: format!(
                        "Mattermost answered HTTP {status} without the post's id; herald cannot \
                         tell what was posted"
                    ),
                }
            } else {
                Outcome::delivered(Some(id.to_owned()))
            }
        }
        429 => Outcome::Throttled {
            after: throttle_wait(headers, now),
            reason: format!("Mattermost rate limit (HTTP 429): {said}"),
        },
        500 if id == DEDUPLICATE_PENDING => Outcome::Retry {
            reason: format!(
                "Mattermost is still creating the same post (HTTP 500 {said}); herald sends the \
                 same pending_post_id again"
            ),
            after: Some(Duration::from_secs(1)),
        },
        400..=499 => Outcome::Permanent {
            reason: format!("Mattermost error (HTTP {status}) {said}: {}", words(status)),
        },
        _ => http::classify(status, http::retry_after(headers, now), &said),
    }
}

fn words(status: u16) -> &'static str {
    match status {
        400 => "Mattermost refused the request as invalid",
        401 => "the token is invalid or expired; check `token`",
        403 => "the token's user may not post in the channel; add the bot to it",
        404 => "the channel or post does not exist; check `channel_id` and `url`",
        413 => "the post is too large for the server",
        _ => "Mattermost refused the request, and sending it again will not help",
    }
}
