//! Messages as Events API v2 events: a `trigger` carrying the summary (the title, one
//! line, at most 1024 characters), source, severity, the body and fields as
//! `custom_details`, and the links; a `resolve` for severity `resolved`. Pure.

use herald_core::{Message, Severity};
use serde_json::{Map, Value, json};

use crate::text::cut;

/// The longest summary PagerDuty keeps, in characters.
pub(crate) const SUMMARY_LIMIT: usize = 1024;

/// The longest body herald puts into `custom_details`, in characters: the whole event
/// must stay below PagerDuty's 512 KB, with room for the fields.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// The `custom_details` entry naming the herald delivery (for tracing, and the key the
/// simulator's fault plans use).
pub(super) const DELIVERY_DETAIL: &str = "herald_delivery";

/// The `source` when the message has no `source` or `host` field.
pub(super) const DEFAULT_SOURCE: &str = "herald";

/// The dedup key of every event of a broadcast: each resend and every update of the
/// incident share it, so PagerDuty keeps one alert (well below its 255 characters).
pub(super) fn dedup_key(broadcast_id: &str) -> String {
    format!("herald-{broadcast_id}")
}

/// The event's action: `resolve` for a resolved message, else `trigger`.
pub(super) fn action(message: &Message) -> &'static str {
    if message.severity == Severity::Resolved { "resolve" } else { "trigger" }
}

/// PagerDuty's severity for a herald severity (a resolved message sends no payload).
pub(super) fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info | Severity::Resolved => "info",
    }
}

/// The summary: the title on one line, cut to [`SUMMARY_LIMIT`] with a visible marker.
pub(super) fn summary(title: &str) -> String {
    let one_line = title.split_whitespace().collect::<Vec<_>>().join(" ");
    let one_line = if one_line.is_empty() { "(no title)".to_owned() } else { one_line };
    cut(&one_line, SUMMARY_LIMIT).into_owned()
}

/// The whole event for `message`; `seq` is the update's number (0 for the original).
pub(crate) fn event(
    message: &Message,
    routing_key: &str,
    broadcast_id: &str,
    delivery_id: &str,
    seq: u32,
) -> Value {
    let dedup_key = dedup_key(broadcast_id);
    let action = action(message);
    if action == "resolve" {
        // PagerDuty ignores a payload on resolve; the alert keeps what the last trigger said.
        return json!({
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": dedup_key,
        });
    }
    let mut details = Map::new();
    for (name, value) in &message.fields {
        details.insert(name.clone(), Value::from(value.as_str()));
    }
    if !message.body.trim().is_empty() {
        details.insert("body".to_owned(), Value::from(cut(&message.body, BODY_LIMIT)));
    }
    if !message.tags.is_empty() {
        details.insert("tags".to_owned(), Value::from(message.tags.clone()));
    }
    if seq > 0 {
        details.insert("herald_update".to_owned(), Value::from(seq));
    }
    details.insert(DELIVERY_DETAIL.to_owned(), Value::from(delivery_id));
    let source = message
        .fields
        .get("source")
        .or_else(|| message.fields.get("host"))
        .map_or(DEFAULT_SOURCE, String::as_str);
    // PagerDuty turns links into clickable ones; only web links are worth one.
    let links: Vec<Value> = message
        .links
        .iter()
        .filter(|link| link.url.starts_with("https://") || link.url.starts_with("http://"))
        .map(|link| json!({"href": link.url, "text": link.title}))
        .collect();
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key,
        "client": "herald",
        "payload": {
            "summary": summary(&message.title),
            "source": cut(source, 255),
            "severity": severity(message.severity),
            "custom_details": details,
        },
    });
    if !links.is_empty()
        && let Some(object) = event.as_object_mut()
    {
        object.insert("links".to_owned(), Value::from(links));
    }
    event
}
