//! The portable message as a Mattermost post: Mattermost renders Markdown itself, so the
//! post's `message` is Markdown built from the parts, each cut to a budget so the whole
//! stays within the server's post limit (16,383 characters; 4,000 on servers before 5.0),
//! with a visible marker. Raw HTML is not rendered by Mattermost (it shows as text), so
//! the body goes in as written. Shared by the `mattermost` (REST) and
//! `mattermost-webhook` kinds. Pure: no I/O.
//!
//! | message | Mattermost Markdown |
//! |---|---|
//! | severity + title | `#### 🚨 title` (≤300 chars), `(update N)` for an update |
//! | body (Markdown) | as written (≤12,000 chars) |
//! | fields | a two-column table `\| Field \| Value \|` (≤3,000 chars) |
//! | links | `[title](url)` separated by ` · ` (≤800 chars) |
//! | severity, tags | a last line `` `severity: critical` · tags: `a` `b` `` |

use herald_core::{Message, Severity};
use serde_json::{Value, json};

use crate::text::{TRUNCATION_MARKER, cut};

/// The longest post `message` on current servers (`MaxPostSize` default).
pub const POST_LIMIT: usize = 16_383;
/// The title line's share.
pub const TITLE_BUDGET: usize = 300;
/// The body's share.
pub const BODY_BUDGET: usize = 12_000;
/// The fields table's share.
pub const FIELDS_BUDGET: usize = 3_000;
/// The links line's share.
pub const LINKS_BUDGET: usize = 800;

/// The `props` key carrying the herald delivery id (the look-up's marker).
pub const MARKER_KEY: &str = "herald_delivery_id";

/// Whether the post is the original, a thread reply, or an edit of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The broadcast's first message.
    Original,
    /// Update `seq` posted as a thread reply.
    Reply {
        /// 1 for the first update.
        seq: u32,
    },
    /// Update `seq` replacing the original's message.
    Edit {
        /// 1 for the first update.
        seq: u32,
    },
}

/// The emoji before the title.
pub fn severity_emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "ℹ️",
        Severity::Warning => "⚠️",
        Severity::Error => "❌",
        Severity::Critical => "🚨",
        Severity::Resolved => "✅",
    }
}

/// Text shown as written in Markdown: markup characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']' | '<') {
            out.push('\\');
        }
        out.push(if c == '\n' || c == '\r' { ' ' } else { c });
    }
    out
}

/// The post's Markdown `message`.
pub fn text(message: &Message, role: Role) -> String {
    let emoji = severity_emoji(message.severity);
    let suffix = match role {
        Role::Original => String::new(),
        Role::Reply { seq } => format!(" (update {seq})"),
        Role::Edit { seq } => format!(" (edited: update {seq})"),
    };
    let title = escape(&message.title);
    let mut parts = vec![cut(&format!("#### {emoji} {title}{suffix}"), TITLE_BUDGET).into_owned()];
    let body = message.body.trim();
    if !body.is_empty() {
        parts.push(cut(body, BODY_BUDGET).into_owned());
    }
    if !message.fields.is_empty() {
        let mut table = "| Field | Value |\n|---|---|".to_owned();
        for (i, (key, value)) in message.fields.iter().enumerate() {
            let row = format!("\n| {} | {} |", escape(key), escape(value));
            if table.chars().count() + row.chars().count() + 60 > FIELDS_BUDGET {
                let left = message.fields.len() - i;
                table.push_str(&format!("\n| {TRUNCATION_MARKER} | {left} more field(s) |"));
                break;
            }
            table.push_str(&row);
        }
        parts.push(table);
    }
    if !message.links.is_empty() {
        let mut line = String::new();
        for (i, link) in message.links.iter().enumerate() {
            let label = if link.title.is_empty() { escape(&link.url) } else { escape(&link.title) };
            let url = link.url.replace(')', "%29").replace(' ', "%20");
            let item = format!("[{label}]({url})");
            let sep = if line.is_empty() { "" } else { " · " };
            if line.chars().count() + item.chars().count() + 60 > LINKS_BUDGET {
                let left = message.links.len() - i;
                line.push_str(&format!("{sep}{TRUNCATION_MARKER} {left} more link(s)"));
                break;
            }
            line.push_str(sep);
            line.push_str(&item);
        }
        parts.push(line);
    }
    let mut footer = format!("`severity: {}`", message.severity.as_str());
    if !message.tags.is_empty() {
        let tags: Vec<String> =
            message.tags.iter().map(|t| format!("`{}`", t.replace('`', "'"))).collect();
        footer.push_str(&format!(" · tags: {}", tags.join(" ")));
    }
    parts.push(cut(&footer, 200).into_owned());
    cut(&parts.join("\n\n"), POST_LIMIT).into_owned()
}

/// herald's `props` for a post carrying `delivery_id`.
pub fn props(delivery_id: &str) -> Value {
    json!({ MARKER_KEY: delivery_id })
}
