//! Messages as Opsgenie alert requests: the create body (message of at most 130
//! characters, the Markdown body as the description, a priority, the fields as details,
//! the tags), and the note of a follow-up, which carries the follow-up's marker so a
//! retry can find it. Pure.

use herald_core::{Message, Severity};
use serde_json::{Map, Value, json};

use crate::text::cut;

/// The longest alert message Opsgenie keeps, in characters.
pub(crate) const MESSAGE_LIMIT: usize = 130;

/// The longest description Opsgenie keeps, in characters.
pub(crate) const DESCRIPTION_LIMIT: usize = 15_000;

/// The longest note Opsgenie keeps, in characters.
pub(crate) const NOTE_LIMIT: usize = 25_000;

/// The `details` entry naming the herald delivery (for tracing, and the key the
/// simulator's fault plans use).
pub(super) const DELIVERY_DETAIL: &str = "herald_delivery";

/// The alias of every alert of a broadcast: Opsgenie keeps one open alert per alias, so a
/// resend bumps its count instead of opening a second one.
pub(crate) fn alias(broadcast_id: &str) -> String {
    format!("herald-{broadcast_id}")
}

/// The word a follow-up's note carries, found again by a retry.
pub(crate) fn marker(delivery_id: &str) -> String {
    format!("herald-{delivery_id}")
}

/// Opsgenie's priority for a herald severity.
pub(super) fn priority(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "P1",
        Severity::Error => "P2",
        Severity::Warning => "P3",
        Severity::Info => "P4",
        Severity::Resolved => "P5",
    }
}

/// The message: the title on one line, cut to [`MESSAGE_LIMIT`] with a visible marker.
pub(super) fn message(title: &str) -> String {
    let one_line = title.split_whitespace().collect::<Vec<_>>().join(" ");
    let one_line = if one_line.is_empty() { "(no title)".to_owned() } else { one_line };
    cut(&one_line, MESSAGE_LIMIT).into_owned()
}

/// The body of `POST /v2/alerts` for an original.
pub(crate) fn create(message: &Message, broadcast_id: &str, delivery_id: &str) -> Value {
    let mut details = Map::new();
    for (name, value) in &message.fields {
        details.insert(name.clone(), Value::from(value.as_str()));
    }
    for link in &message.links {
        if link.url.starts_with("https://") || link.url.starts_with("http://") {
            details.insert(format!("link: {}", link.title), Value::from(link.url.as_str()));
        }
    }
    details.insert(DELIVERY_DETAIL.to_owned(), Value::from(delivery_id));
    let mut tags: Vec<String> = vec!["herald".to_owned()];
    tags.extend(message.tags.iter().cloned());
    json!({
        "message": self::message(&message.title),
        "alias": alias(broadcast_id),
        "description": cut(&message.body, DESCRIPTION_LIMIT),
        "priority": priority(message.severity),
        "details": details,
        "tags": tags,
        "source": "herald",
    })
}

/// The text of a follow-up's note: title, body and the marker on the last line.
pub(super) fn note_text(message: &Message, delivery_id: &str) -> String {
    let marker = marker(delivery_id);
    let head = if message.body.trim().is_empty() {
        message.title.clone()
    } else {
        format!("{}\n\n{}", message.title, message.body)
    };
    // Room for the marker line, so a cut note can still be found again.
    let room = NOTE_LIMIT.saturating_sub(marker.chars().count() + 2);
    format!("{}\n\n{marker}", cut(&head, room))
}

/// The body of a note or close request for a follow-up.
pub(crate) fn note(message: &Message, delivery_id: &str) -> Value {
    json!({"note": note_text(message, delivery_id), "source": "herald", "user": "herald"})
}
