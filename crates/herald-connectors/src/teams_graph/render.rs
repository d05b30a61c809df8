//! The portable message as a Microsoft Graph chatMessage body (`contentType: html`,
//! DESTINATIONS.md §3c). Pure.
//!
//! - severity and title: `<p><strong>🔴 CRITICAL</strong> · <strong>title</strong></p>`
//!   (the emoji carries the severity where colour is not shown);
//! - body: Markdown converted to the HTML Teams renders (paragraphs, headings h1–h3,
//!   emphasis, strike, code, lists, quotes, tables, links); raw HTML in the Markdown is
//!   escaped and shown as text, links other than http(s)/mailto are shown as text,
//!   images become links (Teams only shows hosted images);
//! - fields: a two-column `<table>`; links: one line of `<a>`s;
//! - the marker: a last line `herald:{delivery id}` in small italics.
//!
//! The marker is what a look-up searches for after an ambiguous attempt. Graph's HTML
//! sanitising is not documented (microsoftgraph/microsoft-graph-docs#9462 asks and got no
//! answer; reports say even `href`s were dropped in some versions), so the marker is
//! visible text rather than an attribute or an empty element a sanitiser may remove: text
//! is the one thing every version keeps.
//!
//! The content is kept under Graph's ~28 KB message limit by cutting the body with the
//! visible marker `…(truncated by herald)`, and by leaving out fields and links too long
//! on their own, the body saying so.

use std::fmt::Write as _;

use herald_core::{Message, Severity};
use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use serde_json::{Value, json};

use crate::teams_workflow::render::{allowed_url, fitting, options};
use crate::text;

/// Graph refuses chatMessages over about 28 KB; keep a margin for the JSON around it.
pub const CONTENT_LIMIT_BYTES: usize = 27 * 1024;

/// Longest title kept.
const TITLE_CHARS: usize = 500;
const FIELD_NAME_CHARS: usize = 100;
const FIELD_VALUE_CHARS: usize = 1000;

/// The marker text identifying delivery `delivery_id` in a posted message.
pub fn marker(delivery_id: &str) -> String {
    format!("herald:{delivery_id}")
}

/// Whether `content` carries the marker of `delivery_id` (not a longer id starting
/// with it).
pub fn has_marker(content: &str, delivery_id: &str) -> bool {
    let marker = marker(delivery_id);
    content.match_indices(&marker).any(|(at, _)| {
        content[at + marker.len()..]
            .bytes()
            .next()
            .is_none_or(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')))
    })
}

/// The request body posting `message` as delivery `delivery_id`.
pub fn render(message: &Message, delivery_id: &str) -> Value {
    json!({ "body": { "contentType": "html", "content": content(message, delivery_id) } })
}

/// The HTML content, cut to fit [`CONTENT_LIMIT_BYTES`].
pub fn content(message: &Message, delivery_id: &str) -> String {
    fitting(
        message,
        "Teams",
        |message, body| assemble(message, body, delivery_id),
        // Measured as sent: JSON escaping can grow the content.
        |content| Value::String(content.clone()).to_string().len() <= CONTENT_LIMIT_BYTES,
    )
}

fn assemble(message: &Message, body: &str, delivery_id: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<p><strong>{}</strong> · <strong>{}</strong></p>",
        severity(message.severity),
        escape(&text::cut(&message.title, TITLE_CHARS))
    );
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
        .filter(|l| allowed_url(&l.url))
        .map(|l| format!("<a href=\"{}\">{}</a>", escape(&l.url), escape(&l.title)))
        .collect();
    if !links.is_empty() {
        let _ = write!(out, "<p>{}</p>", links.join(" · "));
    }
    let _ = write!(out, "<p><em><small>{}</small></em></p>", escape(&marker(delivery_id)));
    out
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

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Converts Markdown to the HTML Teams renders.
pub(crate) fn markdown(source: &str) -> String {
    let mut out = String::new();
    let mut table_head = false;
    // Per open link: whether it was rendered as `<a>` (an allowed target).
    let mut links: Vec<bool> = Vec::new();
    for event in Parser::new_ext(source, options()) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => out.push_str("<p>"),
                Tag::Heading { level, .. } => {
                    let _ = write!(out, "<h{}>", (level as usize).min(3));
                }
                Tag::BlockQuote(_) => out.push_str("<blockquote>"),
                Tag::CodeBlock(_) => out.push_str("<pre><code>"),
                Tag::List(Some(1)) => out.push_str("<ol>"),
                Tag::List(Some(n)) => {
                    let _ = write!(out, "<ol start=\"{n}\">");
                }
                Tag::List(None) => out.push_str("<ul>"),
                Tag::Item => out.push_str("<li>"),
                Tag::Table(_) => out.push_str("<table>"),
                Tag::TableHead => {
                    table_head = true;
                    out.push_str("<tr>");
                }
                Tag::TableRow => out.push_str("<tr>"),
                Tag::TableCell => out.push_str(if table_head { "<th>" } else { "<td>" }),
                Tag::Emphasis => out.push_str("<em>"),
                Tag::Strong => out.push_str("<strong>"),
                Tag::Strikethrough => out.push_str("<s>"),
                Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                    let ok = allowed_url(&dest_url);
                    if ok {
                        let _ = write!(out, "<a href=\"{}\">", escape(&dest_url));
                    }
                    links.push(ok);
                }
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => out.push_str("</p>"),
                TagEnd::Heading(level) => {
                    let _ = write!(out, "</h{}>", (level as usize).min(3));
                }
                TagEnd::BlockQuote(_) => out.push_str("</blockquote>"),
                TagEnd::CodeBlock => out.push_str("</code></pre>"),
                TagEnd::List(true) => out.push_str("</ol>"),
                TagEnd::List(false) => out.push_str("</ul>"),
                TagEnd::Item => out.push_str("</li>"),
                TagEnd::Table => out.push_str("</table>"),
                TagEnd::TableHead => {
                    table_head = false;
                    out.push_str("</tr>");
                }
                TagEnd::TableRow => out.push_str("</tr>"),
                TagEnd::TableCell => out.push_str(if table_head { "</th>" } else { "</td>" }),
                TagEnd::Emphasis => out.push_str("</em>"),
                TagEnd::Strong => out.push_str("</strong>"),
                TagEnd::Strikethrough => out.push_str("</s>"),
                TagEnd::Link | TagEnd::Image if links.pop() == Some(true) => out.push_str("</a>"),
                _ => {}
            },
            Event::Text(t) | Event::Html(t) | Event::InlineHtml(t) => out.push_str(&escape(&t)),
            Event::Code(t) => {
                let _ = write!(out, "<code>{}</code>", escape(&t));
            }
            Event::SoftBreak => out.push('\n'),
            Event::HardBreak => out.push_str("<br>"),
            Event::Rule => out.push_str("<hr>"),
            Event::TaskListMarker(done) => out.push_str(if done { "☑ " } else { "☐ " }),
            Event::FootnoteReference(name) => {
                let _ = write!(out, "[^{}]", escape(&name));
            }
            _ => {}
        }
    }
    out
}
