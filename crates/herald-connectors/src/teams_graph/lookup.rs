//! After an ambiguous attempt: is the message already in the channel? Searches the
//! channel's newest messages (or the original's replies, for a follow-up) for the marker
//! `herald:{delivery id}`, newest first, 50 a page, following `@odata.nextLink` (on the
//! same host only) until the page is older than the delivery itself. Graph's channel
//! messages are read back from the same store they are written to, so a miss means the
//! post did not happen (unlike Jira's search, which lags).

use herald_core::Timestamp;
use serde_json::Value;

use super::render::has_marker;

/// Most pages read in one look-up (50 messages each).
pub(super) const MAX_PAGES: usize = 10;

/// Clocks differ: a message stamped this much before the delivery existed is still
/// searched.
const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// What one page of a list answer says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Page {
    /// The marker is on message `id`.
    Found(String),
    /// Not on this page; read `next` if the search should go on.
    Next(Option<String>),
}

/// Searches one list page for `delivery_id`'s marker; `created_at` is when the delivery
/// was created (nothing of it can be older), `base_url` the only place links may lead.
pub(super) fn search(
    page: &Value,
    delivery_id: &str,
    created_at: Timestamp,
    base_url: &str,
) -> Page {
    let items = page.get("value").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let mut oldest: Option<Timestamp> = None;
    for item in items {
        let content = item.pointer("/body/content").and_then(Value::as_str).unwrap_or("");
        if has_marker(content, delivery_id)
            && let Some(id) = item.get("id").and_then(Value::as_str)
        {
            return Page::Found(id.to_owned());
        }
        if let Some(at) = item.get("createdDateTime").and_then(Value::as_str).and_then(parse_time) {
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
        }
    }
    let old_enough = oldest.is_some_and(|o| o.as_millis() < created_at.as_millis() - CLOCK_SKEW_MS);
    let next = page
        .get("@odata.nextLink")
        .and_then(Value::as_str)
        .filter(|link| link.starts_with(base_url) && !old_enough)
        .map(str::to_owned);
    Page::Next(next)
}

/// Parses Graph's `2026-12-02T22:15:04.123Z` (UTC; fraction optional).
pub(super) fn parse_time(text: &str) -> Option<Timestamp> {
    crate::text::parse_rfc3339(text)
}
