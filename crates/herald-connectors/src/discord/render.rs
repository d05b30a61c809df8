//! The portable message as a Discord webhook message: a one-line `content` (what
//! notifications show) and one embed carrying the rest, every part cut to Discord's
//! documented limits with a visible marker. Discord renders Markdown itself, so the body
//! goes into the embed's description as written. Mentions are switched off
//! (`allowed_mentions.parse = []`): an alert text must never ping `@everyone`. Pure: no
//! I/O.
//!
//! | message | Discord |
//! |---|---|
//! | severity + title | `content` `🚨 **title**` (≤2,000 chars) and embed `title` (≤256) |
//! | severity | embed `color` |
//! | body (Markdown) | embed `description` (≤4,096) |
//! | fields | embed `fields`, inline (≤25; name ≤256, value ≤1,024) |
//! | links | a `Links` field of `[title](url)` |
//! | severity, tags, update number | embed `footer.text` |
//!
//! The embed's parts together stay within Discord's 6,000-character total: title 256 +
//! description 4,096 + fields [`FIELDS_BUDGET`] + footer [`FOOTER_BUDGET`].

use herald_core::{Message, Severity};
use serde_json::{Value, json};

use crate::text::{TRUNCATION_MARKER, cut};

/// The longest `content` (Discord's message resource).
pub const CONTENT_LIMIT: usize = 2_000;
/// The longest embed title.
pub const TITLE_LIMIT: usize = 256;
/// The longest embed description.
pub const DESCRIPTION_LIMIT: usize = 4_096;
/// The most fields of an embed.
pub const MAX_FIELDS: usize = 25;
/// The longest field name.
pub const FIELD_NAME_LIMIT: usize = 256;
/// The longest field value.
pub const FIELD_VALUE_LIMIT: usize = 1_024;
/// The most characters of all embeds of a message together.
pub const EMBED_TOTAL_LIMIT: usize = 6_000;
/// The fields' (and links') share of the embed total.
pub const FIELDS_BUDGET: usize = 1_400;
/// The footer's share of the embed total.
pub const FOOTER_BUDGET: usize = 200;

/// Whether the message is the original or an edit of it carrying update `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The broadcast's first message.
    Original,
    /// Update `seq` replacing the original's content.
    Edit {
        /// 1 for the first update.
        seq: u32,
    },
}

/// The emoji shown before the title.
pub fn severity_emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "ℹ️",
        Severity::Warning => "⚠️",
        Severity::Error => "❌",
        Severity::Critical => "🚨",
        Severity::Resolved => "✅",
    }
}

/// The embed's side colour for a severity.
pub fn severity_color(severity: Severity) -> u32 {
    match severity {
        Severity::Info => 0x3498DB,
        Severity::Warning => 0xF1C40F,
        Severity::Error => 0xE67E22,
        Severity::Critical => 0xE74C3C,
        Severity::Resolved => 0x2ECC71,
    }
}

/// Text Discord shows as written: Markdown markup characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']' | '(' | ')') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The JSON body of an execute (POST) or edit (PATCH) for `message`.
pub fn payload(message: &Message, role: Role) -> Value {
    json!({
        "content": content(message, role),
        "embeds": [embed(message, role)],
        "allowed_mentions": { "parse": [] },
    })
}

/// The one-line `content`: emoji, bold title, and which update an edit carries.
pub fn content(message: &Message, role: Role) -> String {
    let emoji = severity_emoji(message.severity);
    let suffix = match role {
        Role::Original => String::new(),
        Role::Edit { seq } => format!(" (update {seq})"),
    };
    let escaped = escape(&message.title);
    let title = cut(&escaped, CONTENT_LIMIT / 2);
    cut(&format!("{emoji} **{title}**{suffix}"), CONTENT_LIMIT).into_owned()
}

/// The embed with the message's body, fields, links and footer.
pub fn embed(message: &Message, role: Role) -> Value {
    let mut embed = serde_json::Map::new();
    embed.insert("title".into(), json!(cut(&message.title, TITLE_LIMIT)));
    embed.insert("color".into(), json!(severity_color(message.severity)));
    if !message.body.trim().is_empty() {
        embed.insert("description".into(), json!(cut(message.body.trim(), DESCRIPTION_LIMIT)));
    }
    let fields = fields(message);
    if !fields.is_empty() {
        embed.insert("fields".into(), Value::Array(fields));
    }
    embed.insert("footer".into(), json!({ "text": footer(message, role) }));
    Value::Object(embed)
}

/// The footer: severity, which update, tags.
fn footer(message: &Message, role: Role) -> String {
    let mut text = format!("severity: {}", message.severity.as_str());
    if let Role::Edit { seq } = role {
        text.push_str(&format!(" · edited: update {seq}"));
    }
    if !message.tags.is_empty() {
        text.push_str(&format!(" · tags: {}", message.tags.join(", ")));
    }
    cut(&text, FOOTER_BUDGET).into_owned()
}

/// The fields, then a `Links` field, within [`MAX_FIELDS`] and [`FIELDS_BUDGET`]; what
/// does not fit is counted in a last field.
fn fields(message: &Message) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut used = 0;
    let links = links(message);
    // Room kept for the links field and a "more fields" note.
    let reserve = links.as_ref().map_or(0, |l| l.chars().count() + 5) + 40;
    let total = message.fields.len();
    for (i, (key, value)) in message.fields.iter().enumerate() {
        let name = cut(key, FIELD_NAME_LIMIT.min(100));
        let value = if value.is_empty() { "-".into() } else { cut(value, FIELD_VALUE_LIMIT) };
        let n = name.chars().count() + value.chars().count();
        let slots = MAX_FIELDS - 1 - usize::from(links.is_some());
        if out.len() >= slots || used + n + reserve > FIELDS_BUDGET {
            let left = total - i;
            out.push(json!({
                "name": "…",
                "value": format!("{TRUNCATION_MARKER} {left} more field(s)"),
                "inline": false,
            }));
            break;
        }
        used += n;
        out.push(json!({ "name": name, "value": value, "inline": true }));
    }
    if let Some(links) = links {
        out.push(json!({ "name": "Links", "value": links, "inline": false }));
    }
    out
}

/// The links as `[title](url)` separated by ` · `, within a share of the budget.
fn links(message: &Message) -> Option<String> {
    if message.links.is_empty() {
        return None;
    }
    let budget = (FIELDS_BUDGET / 2).min(FIELD_VALUE_LIMIT);
    let mut text = String::new();
    for (i, link) in message.links.iter().enumerate() {
        let label = if link.title.is_empty() { link.url.clone() } else { escape(&link.title) };
        let url = link.url.replace(')', "%29").replace(' ', "%20");
        let item = format!("[{label}]({url})");
        let sep = if text.is_empty() { "" } else { " · " };
        let more = format!("{sep}{TRUNCATION_MARKER} {} more link(s)", message.links.len() - i);
        if text.chars().count() + sep.len() + item.chars().count() + more.chars().count() > budget {
            text.push_str(&more);
            break;
        }
        text.push_str(sep);
        text.push_str(&item);
    }
    Some(text)
}

/// The characters of an embed that count toward Discord's 6,000 total: title,
/// description, field names and values, footer text, author name.
pub fn embed_chars(embed: &Value) -> usize {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map_or(0, |t| t.chars().count());
    let mut n = s(embed.get("title")) + s(embed.get("description"));
    n += s(embed.get("footer").and_then(|f| f.get("text")));
    n += s(embed.get("author").and_then(|a| a.get("name")));
    if let Some(fields) = embed.get("fields").and_then(Value::as_array) {
        n += fields.iter().map(|f| s(f.get("name")) + s(f.get("value"))).sum::<usize>();
    }
    n
}
