//! After an ambiguous attempt: is the message already in the channel? Searches the
//! channel's newest messages (or the original's replies, for a follow-up) for the marker
//! `herald:{delivery id}`, newest first, 50 a page, following `@odata.nextLink` (below
//! `base_url` only) until the page is older than the delivery itself. Graph's channel
//! messages are read back from the same store they are written to, so a miss means the
//! post did not happen (unlike Jira's search, which lags).
//!
//! Graph lists channel messages by `lastModifiedDateTime`, newest first (`$orderby` is not
//! supported there), so "older than the delivery" is judged by that time: a message
//! created long ago but edited (or replied to) lately sorts among the new ones and must
//! not end the search. A page that is not a list, or a next link that leads elsewhere,
//! ends the search without an answer: only a search that reached the delivery's start
//! may say "not there".

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
    /// Not on this page; read `next` if the search should go on, `None` once the search
    /// reached the delivery's start (or the list's end): the message is not there.
    Next(Option<String>),
    /// The search cannot go on and cannot conclude (why, in words).
    Unusable(&'static str),
}

/// Searches one list page for `delivery_id`'s marker; `created_at` is when the delivery
/// was created (nothing of it can be older), `base_url` the only place links may lead.
pub(super) fn search(
    page: &Value,
    delivery_id: &str,
    created_at: Timestamp,
    base_url: &str,
) -> Page {
    let Some(items) = page.get("value").and_then(Value::as_array) else {
        return Page::Unusable("Graph's answer is not a list of messages");
    };
    let mut oldest: Option<Timestamp> = None;
    for item in items {
        let content = item.pointer("/body/content").and_then(Value::as_str).unwrap_or("");
        if has_marker(content, delivery_id)
            && let Some(id) = item.get("id").and_then(Value::as_str)
        {
            return Page::Found(id.to_owned());
        }
        // The list's sort key; a message is never modified before it was created, so
        // `createdDateTime` stands in where the other is missing.
        let at = ["lastModifiedDateTime", "createdDateTime"]
            .iter()
            .find_map(|key| item.get(*key).and_then(Value::as_str).and_then(parse_time));
        if let Some(at) = at {
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
        }
    }
    let start = created_at.as_millis().saturating_sub(CLOCK_SKEW_MS);
    if oldest.is_some_and(|o| o.as_millis() < start) {
        return Page::Next(None);
    }
    match page.get("@odata.nextLink").and_then(Value::as_str) {
        None => Page::Next(None),
        Some(link) if below(link, base_url) => Page::Next(Some(link.to_owned())),
        Some(_) => Page::Unusable("the next page's link leads away from `base_url`"),
    }
}

/// Whether `link` is `base_url` or below it (not merely a string starting with it, like
/// `https://graph.microsoft.com.example` for a `base_url` without a path).
fn below(link: &str, base_url: &str) -> bool {
    let base = base_url.trim_end_matches('/');
    link.strip_prefix(base).is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
}

/// Parses Graph's `2026-12-02T22:15:04.123Z` (UTC; fraction optional).
pub(super) fn parse_time(text: &str) -> Option<Timestamp> {
    crate::text::parse_rfc3339(text)
}
