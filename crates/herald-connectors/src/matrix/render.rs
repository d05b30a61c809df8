//! The portable message as an `m.room.message` event's content (DESTINATIONS.md §5).
//! Pure.
//!
//! - `body`: plain text: `🔴 CRITICAL · title`, the Markdown body as written, the fields
//!   as `name: value` lines, the links as `title: url` lines;
//! - `format: org.matrix.custom.html` and `formatted_body`: the same as HTML, the body's
//!   Markdown converted (raw HTML in it escaped and shown as text; links other than
//!   http(s)/mailto shown as text), fields as a table;
//! - an update is an `m.thread` reply to the original event (with the reply fallback
//!   for clients without threads) or an `m.replace` edit carrying `m.new_content`;
//! - `org.herald.delivery`: the delivery id, so a person or a tool can tell which
//!   delivery an event came from.
//!
//! The whole event must stay under 65,536 bytes; the body is cut with the visible
//! marker `…(truncated by herald)` so the content stays under [`CONTENT_LIMIT_BYTES`]
//! (an edit carries its content twice, and both count); fields and links too long on
//! their own are left out, the body saying so.

use std::fmt::Write as _;

use herald_core::{Message, Severity};
use serde_json::{Value, json};

use crate::teams_graph::render::{escape, markdown};
use crate::teams_workflow::render::{allowed_url, fitting};
use crate::text;

/// The most bytes of content herald sends, leaving room under Matrix's 65,536-byte
/// event limit for what the server adds (ids, hashes, signatures, `unsigned`).
pub const CONTENT_LIMIT_BYTES: usize = 60_000;

const TITLE_CHARS: usize = 500;
const FIELD_NAME_CHARS: usize = 100;
const FIELD_VALUE_CHARS: usize = 1000;

/// What the event is in the broadcast's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<'a> {
    /// The broadcast's first message.
    Original,
    /// Update `seq` as a thread reply to the event `root`.
    Reply {
        /// 1 for the first update.
        seq: u32,
        /// The original's event id.
        root: &'a str,
    },
    /// Update `seq` as an edit of the event `root`.
    Edit {
        /// 1 for the first update.
        seq: u32,
        /// The original's event id.
        root: &'a str,
    },
}

/// The event content for `message` sent as delivery `delivery_id` in `role`.
pub fn content(message: &Message, delivery_id: &str, role: Role<'_>) -> Value {
    fitting(
        message,
        "Matrix",
        |message, body| build(message, body, delivery_id, role),
        |content| content.to_string().len() <= CONTENT_LIMIT_BYTES,
    )
}

fn build(message: &Message, body: &str, delivery_id: &str, role: Role<'_>) -> Value {
    let seq = match role {
        Role::Original => None,
        Role::Reply { seq, .. } | Role::Edit { seq, .. } => Some(seq),
    };
    let plain = plain(message, body, seq);
    let html = html(message, body, seq);
    match role {
        Role::Original => json!({
            "msgtype": "m.text",
            "body": plain,
            "format": "org.matrix.custom.html",
            "formatted_body": html,
            "org.herald.delivery": delivery_id,
        }),
        Role::Reply { root, .. } => json!({
            "msgtype": "m.text",
            "body": plain,
            "format": "org.matrix.custom.html",
            "formatted_body": html,
            "org.herald.delivery": delivery_id,
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": true,
                "m.in_reply_to": { "event_id": root },
            },
        }),
        Role::Edit { root, .. } => json!({
            "msgtype": "m.text",
            "body": format!("* {plain}"),
            "format": "org.matrix.custom.html",
            "formatted_body": format!("* {html}"),
            "org.herald.delivery": delivery_id,
            "m.new_content": {
                "msgtype": "m.text",
                "body": plain,
                "format": "org.matrix.custom.html",
                "formatted_body": html,
            },
            "m.relates_to": { "rel_type": "m.replace", "event_id": root },
        }),
    }
}

fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "ℹ️ INFO",
        Severity::Warning => "⚠️ WARNING",
        Severity::Error => "❗ ERROR",
        Severity::Critical => "🔴 CRITICAL",
        Severity::Resolved => "✅ RESOLVED",
    }
}

fn head(message: &Message, seq: Option<u32>) -> (String, String) {
    let update = seq.map(|n| format!(" · update {n}")).unwrap_or_default();
    (severity(message.severity).to_owned() + &update, text::cut(&message.title, TITLE_CHARS).into())
}

/// The plain-text `body`.
pub fn plain(message: &Message, body: &str, seq: Option<u32>) -> String {
    let (head, title) = head(message, seq);
    let mut out = format!("{head} · {title}");
    if !body.trim().is_empty() {
        let _ = write!(out, "\n\n{body}");
    }
    if !message.fields.is_empty() {
        out.push('\n');
        for (k, v) in &message.fields {
            let _ = write!(
                out,
                "\n{}: {}",
                text::cut(k, FIELD_NAME_CHARS),
                text::cut(v, FIELD_VALUE_CHARS)
            );
        }
    }
    if !message.links.is_empty() {
        out.push('\n');
        for link in &message.links {
            let _ = write!(out, "\n{}: {}", link.title, link.url);
        }
    }
    out
}

/// The HTML `formatted_body`.
pub fn html(message: &Message, body: &str, seq: Option<u32>) -> String {
    let (head, title) = head(message, seq);
    let mut out =
        format!("<p><strong>{}</strong> · <strong>{}</strong></p>", escape(&head), escape(&title));
    out.push_str(&markdown(body));
    if !message.fields.is_empty() {
        out.push_str("<table>");
        for (k, v) in &message.fields {
            let _ = write!(
                out,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(&text::cut(k, FIELD_NAME_CHARS)),
                escape(&text::cut(v, FIELD_VALUE_CHARS))
            );
        }
        out.push_str("</table>");
    }
    let links: Vec<String> = message
        .links
        .iter()
        .map(|l| {
            if allowed_url(&l.url) {
                format!("<a href=\"{}\">{}</a>", escape(&l.url), escape(&l.title))
            } else {
                format!("{}: {}", escape(&l.title), escape(&l.url))
            }
        })
        .collect();
    if !links.is_empty() {
        let _ = write!(out, "<p>{}</p>", links.join(" · "));
    }
    out
}
