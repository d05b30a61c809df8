//! Reconciliation by look-up: after an ambiguous attempt, find the post herald may have
//! created by the delivery id in its `props` before creating it again.
//!
//! `GET /api/v4/channels/{channel_id}/posts?since=<ms>` answers every post of the channel
//! created or changed since then (thread replies included) as `{"order":[…],"posts":{…}}`;
//! `since` is the delivery's creation minus [`MARGIN`]. The server caps one `since` read
//! ([`PAGE_CAP`]): a full page without the marker is `Unknown`, not "not there". A 429 on
//! the look-up is `Reconciling` (no attempt used); any other failure is `Unknown` (still
//! ambiguous), never "not there".

use std::time::Duration;

use herald_core::{Outcome, Timestamp};
use serde_json::Value;

use super::Mattermost;
use super::render::MARKER_KEY;
use crate::Report;

/// How far before the delivery's creation the look-up window starts: room for a clock
/// difference between herald and the server.
pub const MARGIN: Duration = Duration::from_secs(60);

/// The most posts one `since` read is taken to return (the server's store caps it; 1,000
/// in the versions read): a full page without the marker proves nothing.
pub(super) const PAGE_CAP: usize = 1_000;

/// How long to wait before looking again when the server throttled the look-up without
/// saying for how long.
const THROTTLED_WAIT: Duration = Duration::from_secs(10);

/// What a look-up found.
#[derive(Debug)]
pub(super) enum Found {
    /// The post is there: this id.
    Yes(String),
    /// It is not there: posting is safe.
    No,
}

/// A failed look-up as the attempt's report.
fn failed(report: Report) -> Report {
    let outcome = match report.outcome {
        Outcome::Throttled { after, reason } => Outcome::Reconciling {
            after: after.unwrap_or(THROTTLED_WAIT),
            reason: format!("the look-up was rate limited: {reason}"),
        },
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: format!(
                "herald could not look up whether the post was created ({reason}); it may \
                 have been"
            ),
        },
        other => Outcome::Unknown {
            reason: format!(
                "the look-up for a possibly created post failed: {}",
                other.reason().unwrap_or("no reason")
            ),
        },
    };
    Report { outcome, ..report }
}

impl Mattermost {
    /// Looks for a post carrying `delivery_id` created since `since` minus [`MARGIN`]
    /// (a reply to `root` when given).
    pub(super) async fn find(
        &self,
        delivery_id: &str,
        since: Timestamp,
        root: Option<&str>,
        now: Timestamp,
    ) -> Result<Found, Report> {
        let margin = i64::try_from(MARGIN.as_millis()).unwrap_or(0);
        let since_ms = since.as_millis().saturating_sub(margin).max(0).to_string();
        let path = format!("channels/{}/posts", self.settings.channel_id);
        let call = self.client.get(self.api(&path)).query(&[("since", since_ms.as_str())]);
        let page = self.call(call, now, true).await.map_err(failed)?;
        let Some(posts) = page.get("posts").and_then(Value::as_object) else {
            return Err(Report {
                outcome: Outcome::Unknown {
                    reason: "Mattermost answered the look-up without `posts`; herald cannot \
                             tell whether the post was created"
                        .to_owned(),
                },
                status: Some(200),
                detail: None,
                pause: None,
            });
        };
        let found = posts.values().find(|post| {
            let marker = post.get("props").and_then(|p| p.get(MARKER_KEY)).and_then(Value::as_str);
            let in_thread = match root {
                Some(root) => post.get("root_id").and_then(Value::as_str) == Some(root),
                None => true,
            };
            marker == Some(delivery_id) && in_thread
        });
        match found.and_then(|post| post.get("id")).and_then(Value::as_str) {
            Some(id) => Ok(Found::Yes(id.to_owned())),
            None if posts.len() >= PAGE_CAP => Err(Report {
                outcome: Outcome::Unknown {
                    reason: format!(
                        "the channel changed {} times since the delivery began, more than one \
                         look-up reads; herald cannot tell whether the post was created",
                        posts.len()
                    ),
                },
                status: Some(200),
                detail: None,
                pause: None,
            }),
            None => Ok(Found::No),
        }
    }
}
