//! The portable message as a Teams Workflows payload: a `message` activity carrying one
//! Adaptive Card 1.4 (DESTINATIONS.md §3a). Pure.
//!
//! - severity: a small coloured line (`Attention` for error/critical, `Warning`, `Good` for
//!   resolved) with an emoji, so it reads without colour too;
//! - title: a large bold `TextBlock` whose element `id` is the marker `herald:{delivery id}`
//!   (invisible; lets a receiver or the simulator tell copies apart);
//! - body: Markdown converted to the subset Adaptive Cards render (bold, italic, lists,
//!   links); code blocks become monospace blocks, quotes subtle blocks in an emphasis
//!   container; raw HTML is shown as text;
//! - fields: a `FactSet`; links: `Action.OpenUrl` buttons;
//! - a follow-up starts with a quote of the original: its title and when it was posted.
//!
//! The whole payload is kept under Power Automate's ~28 KB request limit: the body is cut
//! with the visible marker `…(truncated by herald)` until it fits, and fields and links
//! too long on their own are left out, the body saying so.

use std::fmt::Write as _;

use herald_core::{Message, Severity, Timestamp};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde_json::{Value, json};

use crate::text;

/// Power Automate refuses requests over about 28 KB ("Request Entity too large");
/// keep a margin for encodings that count differently.
pub const PAYLOAD_LIMIT_BYTES: usize = 27 * 1024;

/// Longest title kept (a card title is one line; a longer one is cut).
const TITLE_CHARS: usize = 500;

/// Longest field name and value kept.
const FIELD_NAME_CHARS: usize = 100;
const FIELD_VALUE_CHARS: usize = 1000;

/// A follow-up's quote of the original it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Quote<'a> {
    /// 1 for the first update.
    pub seq: u32,
    /// The original message.
    pub original: &'a Message,
    /// When the original was posted (or accepted).
    pub original_at: Timestamp,
}

/// The payload for `message`, marked with `delivery_id`; `quote` for a follow-up.
pub fn render(message: &Message, delivery_id: &str, quote: Option<Quote<'_>>) -> Value {
    fitting(
        message,
        "Teams",
        |message, body| payload(message, body, delivery_id, quote),
        |payload| payload.to_string().len() <= PAYLOAD_LIMIT_BYTES,
    )
}

/// `build` of `message` with the longest body for which the result `fits`; when even no
/// body leaves room, of the message without its fields and links, saying so
/// ([`text::without_fields_and_links`], for `destination`).
pub(crate) fn fitting<T>(
    message: &Message,
    destination: &str,
    build: impl Fn(&Message, &str) -> T,
    fits: impl Fn(&T) -> bool,
) -> T {
    let cut_to_fit = |message: &Message| {
        let fits_with = |budget: usize| fits(&build(message, &text::cut(&message.body, budget)));
        let budget = longest_fitting(message.body.chars().count(), fits_with);
        build(message, &text::cut(&message.body, budget))
    };
    let res = cut_to_fit(message);
    if fits(&res) || (message.fields.is_empty() && message.links.is_empty()) {
        return res;
    }
    cut_to_fit(&text::without_fields_and_links(message, destination))
}

/// The largest budget in `0..=max` for which `fits` holds (0 if none does), by bisection:
/// rendering is not linear in the body (escaping, Markdown), so measure rather than guess.
fn longest_fitting(max: usize, fits: impl Fn(usize) -> bool) -> usize {
    if max == 0 || fits(max) {
        return max;
    }
    let (mut lo, mut hi) = (0, max - 1);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    lo
}

fn payload(message: &Message, body: &str, delivery_id: &str, quote: Option<Quote<'_>>) -> Value {
    let mut items = Vec::new();
    if let Some(q) = quote {
        items.push(json!({
            "type": "Container",
            "style": "emphasis",
            "items": [{
                "type": "TextBlock",
                "text": format!(
                    "Update {} to “{}” (first posted {})",
                    q.seq,
                    text::cut(&q.original.title, TITLE_CHARS),
                    utc(q.original_at)
                ),
                "wrap": true,
                "isSubtle": true,
                "size": "Small",
            }],
        }));
    }
    let (label, color) = severity(message.severity);
    items.push(json!({
        "type": "TextBlock",
        "text": label,
        "color": color,
        "weight": "Bolder",
        "size": "Small",
        "spacing": "None",
    }));
    items.push(json!({
        "type": "TextBlock",
        "id": format!("herald:{delivery_id}"),
        "text": text::cut(&message.title, TITLE_CHARS),
        "size": "Large",
        "weight": "Bolder",
        "wrap": true,
        "style": "heading",
    }));
    for block in markdown(body) {
        items.push(match block {
            Block::Text(text) => json!({ "type": "TextBlock", "text": text, "wrap": true }),
            Block::Code(text) => {
                json!({ "type": "TextBlock", "text": text, "wrap": true, "fontType": "Monospace" })
            }
            Block::Quote(text) => json!({
                "type": "Container",
                "style": "emphasis",
                "items": [{ "type": "TextBlock", "text": text, "wrap": true, "isSubtle": true }],
            }),
        });
    }
    if !message.fields.is_empty() {
        let facts: Vec<Value> = message
            .fields
            .iter()
            .map(|(k, v)| {
                json!({
                    "title": text::cut(k, FIELD_NAME_CHARS),
                    "value": text::cut(v, FIELD_VALUE_CHARS),
                })
            })
            .collect();
        items.push(json!({ "type": "FactSet", "facts": facts }));
    }
    let actions: Vec<Value> = message
        .links
        .iter()
        .filter(|l| allowed_url(&l.url))
        .map(|l| json!({ "type": "Action.OpenUrl", "title": l.title, "url": l.url }))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": { "width": "Full" },
        "body": items,
    });
    if !actions.is_empty() {
        card["actions"] = Value::Array(actions);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// The severity line and its Adaptive Card colour.
fn severity(severity: Severity) -> (&'static str, &'static str) {
    match severity {
        Severity::Info => ("ℹ️ INFO", "Accent"),
        Severity::Warning => ("⚠️ WARNING", "Warning"),
        Severity::Error => ("❗ ERROR", "Attention"),
        Severity::Critical => ("🔴 CRITICAL", "Attention"),
        Severity::Resolved => ("✅ RESOLVED", "Good"),
    }
}

/// Only web and mail links are rendered as links (no `javascript:` and friends).
pub(crate) fn allowed_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
}

/// `at` as `2026-12-02 22:15 UTC`.
pub(crate) fn utc(at: Timestamp) -> String {
    match crate::text::rfc3339_millis(at) {
        // `2026-12-02T22:15:04.123Z`: the date, then hours and minutes.
        Some(text) => format!("{} {} UTC", &text[..10], &text[11..16]),
        None => format!("{} ms after 1970 (UTC)", at.as_millis()),
    }
}

/// One piece of a card body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Block {
    /// Adaptive Card Markdown (bold, italic, lists, links).
    Text(String),
    /// Shown in a monospace font, as is.
    Code(String),
    /// A quotation, shown subtle in an emphasis container.
    Quote(String),
}

/// Markdown parser options herald accepts in message bodies.
pub(crate) fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// Converts Markdown to card blocks.
pub(crate) fn markdown(source: &str) -> Vec<Block> {
    let mut out = Blocks::default();
    for event in Parser::new_ext(source, options()) {
        out.event(event);
    }
    out.flush(false);
    out.blocks
}

#[derive(Default)]
struct Blocks {
    blocks: Vec<Block>,
    cur: String,
    code: Option<String>,
    quote_depth: usize,
    /// Per open list: the next number, or `None` for bullets.
    lists: Vec<Option<u64>>,
    /// Per open link: where its `[` is in `cur`, and its target if allowed.
    links: Vec<(usize, Option<String>)>,
    table_head: bool,
    cell: usize,
}

impl Blocks {
    /// Ends the current text block (as a quote when inside one).
    fn flush(&mut self, quote: bool) {
        let text = self.cur.trim().to_owned();
        self.cur.clear();
        if !text.is_empty() {
            self.blocks.push(if quote || self.quote_depth > 0 {
                Block::Quote(text)
            } else {
                Block::Text(text)
            });
        }
    }

    /// Ends a paragraph: exactly one blank line, never more.
    fn blank_line(&mut self) {
        let kept = self.cur.trim_end_matches('\n').len();
        self.cur.truncate(kept);
        if !self.cur.is_empty() {
            self.cur.push_str("\n\n");
        }
    }

    fn newline(&mut self) {
        if !self.cur.is_empty() && !self.cur.ends_with('\n') {
            self.cur.push('\n');
        }
    }

    fn event(&mut self, event: Event<'_>) {
        if let Some(code) = &mut self.code {
            match event {
                Event::End(TagEnd::CodeBlock) => {
                    let text = code.trim_end_matches('\n').to_owned();
                    self.code = None;
                    if !text.is_empty() {
                        self.blocks.push(Block::Code(text));
                    }
                }
                Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                    code.push_str(&t);
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) | Event::Html(t) | Event::InlineHtml(t) => self.cur.push_str(&t),
            Event::Code(t) => {
                self.cur.push('`');
                self.cur.push_str(&t);
                self.cur.push('`');
            }
            Event::SoftBreak => self.cur.push(' '),
            Event::HardBreak => self.cur.push('\n'),
            Event::Rule => {
                self.newline();
                self.cur.push_str("―――");
                self.blank_line();
            }
            Event::TaskListMarker(done) => self.cur.push_str(if done { "☑ " } else { "☐ " }),
            Event::FootnoteReference(name) => {
                let _ = write!(self.cur, "[^{name}]");
            }
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { .. } => {
                self.newline();
                self.cur.push_str("**");
            }
            Tag::Emphasis => self.cur.push('_'),
            Tag::Strong => self.cur.push_str("**"),
            Tag::BlockQuote(_) => {
                self.flush(false);
                self.quote_depth += 1;
            }
            Tag::CodeBlock(_) => {
                self.flush(false);
                self.code = Some(String::new());
            }
            Tag::List(start) => {
                self.newline();
                self.lists.push(start);
            }
            Tag::Item => {
                self.newline();
                let depth = self.lists.len().saturating_sub(1);
                self.cur.push_str(&"    ".repeat(depth));
                match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let _ = write!(self.cur, "{n}. ");
                        *n += 1;
                    }
                    _ => self.cur.push_str("- "),
                }
            }
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                let url = allowed_url(&dest_url).then(|| dest_url.to_string());
                self.links.push((self.cur.len(), url));
                self.cur.push('[');
            }
            Tag::TableHead => {
                self.table_head = true;
                self.newline();
            }
            Tag::TableRow => self.newline(),
            Tag::TableCell => {
                if self.cell > 0 {
                    self.cur.push_str(" | ");
                }
                self.cell += 1;
                if self.table_head {
                    self.cur.push_str("**");
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                if self.lists.is_empty() {
                    self.blank_line();
                } else {
                    self.newline();
                }
            }
            TagEnd::Heading(_) => {
                self.cur.push_str("**");
                self.blank_line();
            }
            TagEnd::Emphasis => self.cur.push('_'),
            TagEnd::Strong => self.cur.push_str("**"),
            TagEnd::BlockQuote(_) => {
                self.flush(true);
                self.quote_depth = self.quote_depth.saturating_sub(1);
            }
            TagEnd::List(_) => {
                self.lists.pop();
                if self.lists.is_empty() {
                    self.blank_line();
                }
            }
            TagEnd::Item => self.newline(),
            TagEnd::Link | TagEnd::Image => {
                if let Some((at, url)) = self.links.pop() {
                    match url {
                        Some(url) => {
                            let _ = write!(self.cur, "]({url})");
                        }
                        None => {
                            self.cur.remove(at);
                        }
                    }
                }
            }
            TagEnd::TableCell if self.table_head => self.cur.push_str("**"),
            TagEnd::TableHead => {
                self.table_head = false;
                self.cell = 0;
            }
            TagEnd::TableRow => self.cell = 0,
            TagEnd::Table => self.blank_line(),
            _ => {}
        }
    }
}
