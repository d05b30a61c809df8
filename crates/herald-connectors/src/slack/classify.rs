//! A Slack Web API answer as an outcome (shared/DESTINATIONS.md §1). Slack answers
//! almost every error with HTTP 200 and `{"ok":false,"error":…}`, so the body decides,
//! never the status alone. Pure: no I/O.
//!
//! | answer | outcome |
//! |---|---|
//! | HTTP 429 (any body) | `Throttled` after `Retry-After` |
//! | `ok:true` | `Delivered` (the caller adds `CHANNEL:TS`) |
//! | `internal_error`, `fatal_error` | `Unknown`: "some aspect of the operation" may have succeeded |
//! | `ratelimited`, `rate_limited` | `Throttled` after `Retry-After` if given |
//! | `service_unavailable`, `request_timeout`, `team_added_to_org`, `org_login_required` | `Retry` |
//! | a code of [`PERMANENT`] | `Permanent`, naming the code |
//! | any other code | `Retry` (an error herald does not know is not proof that retrying is useless) |
//! | not Slack's JSON | the shared HTTP rules (`crate::http::classify`); a 2xx without `ok` is `Unknown` |
//!
//! Some permanent codes are about the destination, not the message, and also **pause**
//! it ([`pause`]), so its other deliveries wait for the operator instead of failing one
//! by one with the same code:
//!
//! | code | pauses |
//! |---|---|
//! | a code of [`TOKEN_GONE`] (`invalid_auth`, `not_authed`, `account_inactive`, `token_revoked`, `token_expired`) | always: no call can succeed with this token |
//! | a code of [`CHANNEL_GONE`] (`channel_not_found`, `is_archived`, `not_in_channel`) | when the call named the configured `channel`; an update of a message in another channel (the configuration changed since) fails alone |
//! | `missing_scope`, `no_permission`, `access_denied` | no: the scope may be one only the look-up needs, and posts still work |
//! | any other | no |

use std::time::Duration;

use herald_core::Outcome;
use serde_json::Value;

use crate::http;

/// Error codes that retrying cannot fix (DESTINATIONS.md §1 "P", plus `chat.update`'s and
/// `conversations.replies`' own).
pub const PERMANENT: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "missing_scope",
    "no_permission",
    "access_denied",
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "restricted_action",
    "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel",
    "msg_too_long",
    "msg_blocks_too_long",
    "no_text",
    "invalid_blocks",
    "invalid_blocks_format",
    "invalid_arguments",
    "invalid_metadata_format",
    "invalid_metadata_schema",
    "metadata_too_large",
    "metadata_must_be_sent_from_app",
    "too_many_attachments",
    "invalid_form_data",
    "invalid_post_type",
    "ekm_access_denied",
    "method_deprecated",
    "message_limit_exceeded",
    "cant_update_message",
    "edit_window_closed",
    "message_not_found",
    "thread_not_found",
    "invalid_cursor",
];

/// Codes that say the token is unusable: every call fails until an operator replaces it.
pub const TOKEN_GONE: &[&str] =
    &["invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"];

/// Codes that say nothing can be posted to the channel until an operator acts (creates
/// it or lets the bot see it, unarchives it, invites the bot).
pub const CHANNEL_GONE: &[&str] = &["channel_not_found", "is_archived", "not_in_channel"];

/// Codes after which the request may have been applied.
pub const AMBIGUOUS: &[&str] = &["internal_error", "fatal_error"];

/// Codes of a transient failure that posted nothing.
pub const RETRYABLE: &[&str] =
    &["service_unavailable", "request_timeout", "team_added_to_org", "org_login_required"];

/// Codes of a rate limit.
pub const THROTTLED: &[&str] = &["ratelimited", "rate_limited"];

/// What a Slack error code means, in plain words, for the reason.
fn words(code: &str) -> &'static str {
    match code {
        "invalid_auth" | "not_authed" => "the token is missing or not valid",
        "account_inactive" => "the token belongs to a deleted user or workspace",
        "token_revoked" | "token_expired" => "the token was revoked or expired",
        "missing_scope" | "no_permission" | "access_denied" => {
            "the token lacks a permission (e.g. chat:write, channels:history)"
        }
        "channel_not_found" => "the channel does not exist or the bot cannot see it",
        "not_in_channel" => "the bot is not a member of the channel",
        "is_archived" => "the channel is archived",
        "msg_too_long" | "msg_blocks_too_long" => "the message is too long",
        "message_limit_exceeded" => "the workspace's message limit is reached",
        "message_not_found" | "thread_not_found" => "the original message no longer exists",
        "cant_update_message" | "edit_window_closed" => "Slack does not allow editing it",
        "internal_error" | "fatal_error" => {
            "Slack failed mid-way, and the message may have been posted"
        }
        "ratelimited" | "rate_limited" => "Slack asks herald to slow down",
        "service_unavailable" | "request_timeout" => "Slack is temporarily unavailable",
        _ => "",
    }
}

/// The longest error code quoted: Slack's are short words, anything longer is not one.
const CODE_CHARS: usize = 100;

fn reason(code: &str, tail: &str) -> String {
    let said = words(code);
    let said = if said.is_empty() { String::new() } else { format!(": {said}") };
    let mut shown = http::excerpt(code.as_bytes(), CODE_CHARS * 4);
    if shown.chars().count() > CODE_CHARS {
        shown = shown.chars().take(CODE_CHARS).chain(['…']).collect();
    }
    format!("Slack error {shown}{said}{tail}")
}

/// Why the destination itself is unusable until an operator acts, for an error `code`
/// of a call that named the destination's configured channel (`configured_channel`) or
/// another one; `None` when the code concerns one message or call.
pub fn pause(code: &str, configured_channel: bool) -> Option<String> {
    if TOKEN_GONE.contains(&code) {
        Some(reason(code, ": set a working `token` and resume the destination"))
    } else if configured_channel && CHANNEL_GONE.contains(&code) {
        Some(reason(
            code,
            ": make the channel postable again (or change `channel`) and resume the destination",
        ))
    } else {
        None
    }
}

/// The `error` code of an `ok:false` body.
pub(super) fn error_code(body: &Value) -> Option<&str> {
    (body.get("ok")? == &Value::Bool(false)).then(|| body.get("error")?.as_str()).flatten()
}

/// The outcome of an answer: `status`, its `Retry-After`, its body parsed as JSON if it
/// was JSON, and a text excerpt for answers that were not.
pub fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: Option<&Value>,
    excerpt: &str,
) -> Outcome {
    let code = body.and_then(error_code);
    if status == 429 {
        return Outcome::Throttled {
            after: retry_after,
            reason: reason(code.unwrap_or("ratelimited"), " (HTTP 429)"),
        };
    }
    let Some(body) = body.filter(|b| b.get("ok").is_some_and(Value::is_boolean)) else {
        if (200..300).contains(&status) {
            return Outcome::Unknown {
                reason: format!(
                    "HTTP {status} from Slack without its JSON answer; herald cannot tell \
                     whether the message was posted"
                ),
            };
        }
        return http::classify(status, retry_after, excerpt);
    };
    if body.get("ok") == Some(&Value::Bool(true)) {
        return Outcome::delivered(None);
    }
    let code = code.unwrap_or("unknown_error");
    if AMBIGUOUS.contains(&code) {
        Outcome::Unknown { reason: reason(code, "; herald looks it up before sending again") }
    } else if THROTTLED.contains(&code) {
        Outcome::Throttled { after: retry_after, reason: reason(code, "") }
    } else if RETRYABLE.contains(&code) {
        Outcome::Retry { reason: reason(code, "; herald will try again"), after: retry_after }
    } else if PERMANENT.contains(&code) {
        Outcome::Permanent { reason: reason(code, "") }
    } else {
        Outcome::Retry {
            reason: reason(code, " (not an error herald knows; it will try again)"),
            after: retry_after,
        }
    }
}
