//! Reconciliation by look-up: after an ambiguous attempt, find the message herald may
//! have posted by the delivery id in its metadata before posting again.
//!
//! - an original: `conversations.history` of the channel from the delivery's creation
//!   minus [`MARGIN`], `include_all_metadata=true`, page by page with the cursor;
//! - a thread reply: `conversations.replies` of the original;
//! - an edit: the original itself (`conversations.history` at its ts), whose metadata
//!   names the last delivery applied to it.
//!
//! The read methods have their own rate limits (Tier 3, or 1/min for commercially
//! distributed non-Marketplace apps), separate from chat.postMessage's: a look-up
//! answered 429 is `Reconciling` after `Retry-After` (no attempt used, the delivery stays
//! ambiguous); any other failure of the look-up is `Unknown` (still ambiguous).

use std::time::Duration;

use herald_core::{Outcome, Timestamp};
use serde_json::Value;

use super::Slack;
use crate::Report;

/// How far before the delivery's creation the look-up window starts: room for a clock
/// difference between herald and Slack.
pub const MARGIN: Duration = Duration::from_secs(60);

/// Messages asked for per page (Slack's maximum is 999; non-Marketplace apps get 15).
pub(super) const PAGE_SIZE: u32 = 200;

/// The most pages one look-up reads before it gives up (an ambiguous outcome).
pub(super) const MAX_PAGES: u32 = 25;

/// How long to wait before looking again when Slack throttled the look-up without
/// saying for how long.
pub(super) const THROTTLED_WAIT: Duration = Duration::from_secs(60);

/// What a look-up found.
#[derive(Debug)]
pub(super) enum Found {
    /// The message is there: this `ts`.
    Yes(String),
    /// It is not there: posting is safe.
    No,
}

/// A Slack ts (`seconds.micros`) for a timestamp.
pub(super) fn ts_of(at: Timestamp) -> String {
    let millis = at.as_millis().max(0);
    format!("{}.{:03}000", millis / 1000, millis % 1000)
}

/// The metadata delivery id of a message in a history or replies answer.
fn delivery_id(message: &Value) -> Option<&str> {
    message.get("metadata")?.get("event_payload")?.get("delivery_id")?.as_str()
}

/// A failed look-up as the attempt's report: throttled → `Reconciling`, else the read's
/// own outcome, turned `Unknown` where it would otherwise let herald post blindly.
fn failed(report: Report) -> Report {
    let outcome = match report.outcome {
        Outcome::Throttled { after, reason } => Outcome::Reconciling {
            after: after.unwrap_or(THROTTLED_WAIT),
            reason: format!("the look-up was rate limited: {reason}"),
        },
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: format!(
                "herald could not look up whether the message was posted ({reason}); it may \
                 have been"
            ),
        },
        other => Outcome::Unknown {
            reason: format!(
                "the look-up for a possibly posted message failed: {}",
                other.reason().unwrap_or("no reason")
            ),
        },
    };
    Report { outcome, ..report }
}

impl Slack {
    /// Looks for a top-level message carrying `delivery_id` posted since `since` minus
    /// [`MARGIN`].
    pub(super) async fn find_post(
        &self,
        delivery_id: &str,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<Found, Report> {
        let oldest = ts_of(Timestamp::from_millis(
            since.as_millis().saturating_sub(i64::try_from(MARGIN.as_millis()).unwrap_or(0)),
        ));
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let limit = PAGE_SIZE.to_string();
            let mut query = vec![
                ("channel", self.settings.channel.as_str()),
                ("oldest", oldest.as_str()),
                ("inclusive", "true"),
                ("include_all_metadata", "true"),
                ("limit", limit.as_str()),
            ];
            if let Some(c) = cursor.as_deref() {
                query.push(("cursor", c));
            }
            let page = self.read("conversations.history", &query, now).await.map_err(failed)?;
            if let Some(ts) = matching(&page, delivery_id)? {
                return Ok(Found::Yes(ts));
            }
            match next_cursor(&page) {
                Some(next) => cursor = Some(next),
                None => return Ok(Found::No),
            }
        }
        Err(Report {
            outcome: Outcome::Unknown {
                reason: format!(
                    "the look-up read {MAX_PAGES} pages of channel history without reaching \
                     the delivery's start; herald cannot tell whether the message was posted"
                ),
            },
            status: None,
            detail: None,
            pause: None,
        })
    }

    /// Looks for a reply carrying `delivery_id` in the thread of `parent_ts`.
    pub(super) async fn find_reply(
        &self,
        channel: &str,
        parent_ts: &str,
        delivery_id: &str,
        now: Timestamp,
    ) -> Result<Found, Report> {
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let limit = PAGE_SIZE.to_string();
            let mut query = vec![
                ("channel", channel),
                ("ts", parent_ts),
                ("include_all_metadata", "true"),
                ("limit", limit.as_str()),
            ];
            if let Some(c) = cursor.as_deref() {
                query.push(("cursor", c));
            }
            let page = self.read("conversations.replies", &query, now).await.map_err(failed)?;
            if let Some(ts) = matching(&page, delivery_id)?.filter(|ts| ts != parent_ts) {
                return Ok(Found::Yes(ts));
            }
            match next_cursor(&page) {
                Some(next) => cursor = Some(next),
                None => return Ok(Found::No),
            }
        }
        Err(Report {
            outcome: Outcome::Unknown {
                reason: format!("the thread has more than {MAX_PAGES} pages of replies"),
            },
            status: None,
            detail: None,
            pause: None,
        })
    }

    /// Whether the message at `ts` already carries `delivery_id` (an edit was applied).
    pub(super) async fn edited_by(
        &self,
        channel: &str,
        ts: &str,
        delivery_id: &str,
        now: Timestamp,
    ) -> Result<Found, Report> {
        let query = [
            ("channel", channel),
            ("oldest", ts),
            ("latest", ts),
            ("inclusive", "true"),
            ("include_all_metadata", "true"),
            ("limit", "1"),
        ];
        let page = self.read("conversations.history", &query, now).await.map_err(failed)?;
        Ok(match matching(&page, delivery_id)? {
            Some(found) if found == ts => Found::Yes(found),
            _ => Found::No,
        })
    }
}

/// The ts of the message in `page` whose metadata names `delivery_id`. A page without a
/// `messages` list proves nothing, so it is an error (`Unknown`), never "not there".
fn matching(page: &Value, delivery_id: &str) -> Result<Option<String>, Report> {
    let Some(messages) = page.get("messages").and_then(Value::as_array) else {
        return Err(Report {
            outcome: Outcome::Unknown {
                reason: "Slack answered the look-up ok but without a list of messages; herald \
                         cannot tell whether the message was posted"
                    .to_owned(),
            },
            status: Some(200),
            detail: None,
            pause: None,
        });
    };
    Ok(messages
        .iter()
        .find(|m| delivery_id_matches(m, delivery_id))
        .and_then(|m| m.get("ts")?.as_str().map(str::to_owned)))
}

fn delivery_id_matches(message: &Value, wanted: &str) -> bool {
    delivery_id(message) == Some(wanted)
}

/// The cursor of the next page, if Slack says there is one.
fn next_cursor(page: &Value) -> Option<String> {
    let cursor = page.get("response_metadata")?.get("next_cursor")?.as_str()?;
    (!cursor.is_empty()).then(|| cursor.to_owned())
}
