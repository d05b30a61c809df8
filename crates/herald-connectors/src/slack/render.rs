//! The portable message as a Slack message: Block Kit `blocks` plus a plain `text`
//! fallback (what notifications and clients without blocks show), with the Markdown body
//! converted to Slack mrkdwn and every part cut to Slack's documented limits with a
//! visible marker. Pure: no I/O.
//!
//! | message | Slack |
//! |---|---|
//! | severity + title | `header` block `:emoji: title` (≤150 chars) |
//! | severity, tags, update number | `context` block |
//! | body (Markdown) | `section` blocks of mrkdwn (≤3,000 chars each, ≤8,000 in all) |
//! | fields | `section` blocks with `fields` (`*key*\nvalue`, ≤10 per section) |
//! | links | a `section` of `<url\|title>` links |
//! | everything | `text` fallback: `:emoji: *title*` + body mrkdwn (≤40,000 chars) |

use herald_core::{Message, Severity};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde_json::{Value, json};

use crate::teams_workflow::render::allowed_url;
use crate::text::{TRUNCATION_MARKER, cut};

/// Slack truncates `text` beyond this (chat.postMessage reference).
pub const TEXT_LIMIT: usize = 40_000;
/// The longest header block text (Block Kit reference).
pub const HEADER_LIMIT: usize = 150;
/// The longest section block text (Block Kit reference).
pub const SECTION_LIMIT: usize = 3_000;
/// The longest section field text (Block Kit reference).
pub const FIELD_LIMIT: usize = 2_000;
/// The most fields in one section block (Block Kit reference).
pub const FIELDS_PER_SECTION: usize = 10;
/// The body's share of the blocks: Slack refuses blocks whose text totals ~13,000
/// characters with `msg_blocks_too_long` (slackapi/bolt-js#2509), so the body, fields and
/// links get budgets that add up to well under that.
pub const BODY_BUDGET: usize = 8_000;
/// The fields' share of the blocks (see [`BODY_BUDGET`]).
pub const FIELDS_BUDGET: usize = 3_000;
/// The links' share of the blocks (see [`BODY_BUDGET`]).
pub const LINKS_BUDGET: usize = 1_000;

/// The event type of herald's message metadata.
pub const EVENT_TYPE: &str = "herald_delivery";

/// Slack's emoji short code for a severity.
pub fn severity_emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => ":information_source:",
        Severity::Warning => ":warning:",
        Severity::Error => ":x:",
        Severity::Critical => ":rotating_light:",
        Severity::Resolved => ":white_check_mark:",
    }
}

/// `&`, `<` and `>` escaped as Slack requires in any text it parses for markup.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A link in mrkdwn: `<url|label>`; a label cannot hold `|` or `>` there. Only web and
/// mail targets become links: `<!channel>`, `<@U…>` and `<#C…>` are mentions in Slack, so
/// any other target (`[x](!here)`) leaves just the label, as text.
fn link(url: &str, label: &str) -> String {
    if !allowed_url(url) {
        return if label.is_empty() { escape(url) } else { escape(label) };
    }
    let label = escape(label).replace('|', "¦");
    let url = url.replace('|', "%7C").replace('>', "%3E").replace('<', "%3C");
    if label.is_empty() { format!("<{url}>") } else { format!("<{url}|{label}>") }
}

/// Converts CommonMark (plus strikethrough) to Slack mrkdwn.
///
/// Headings become bold lines, emphasis `_x_`, strong `*x*`, strikethrough `~x~`, code
/// spans and blocks keep their backticks, links `<url|text>`, images their link, lists
/// `•`/`1.` items indented per level, block quotes `>` lines, rules a line of `—`; raw
/// HTML is shown as text. Text is escaped (`&amp;`, `&lt;`, `&gt;`).
pub fn mrkdwn(markdown: &str) -> String {
    let mut w = Writer::default();
    let parser = Parser::new_ext(markdown, Options::ENABLE_STRIKETHROUGH);
    for event in parser {
        w.event(event);
    }
    w.out.trim_end().to_owned()
}

/// The state of one Markdown → mrkdwn conversion.
#[derive(Default)]
struct Writer {
    out: String,
    /// `>` depth of block quotes.
    quote: usize,
    /// Open lists: the next number of an ordered one, `None` for bullets.
    lists: Vec<Option<u64>>,
    /// Inside a link or image: its target and the text collected so far.
    link: Option<(String, String)>,
    /// Inside a fenced or indented code block.
    code_block: bool,
}

impl Writer {
    fn push(&mut self, s: &str) {
        match &mut self.link {
            Some((_, label)) => label.push_str(s),
            None => self.out.push_str(s),
        }
    }

    /// Starts a new line with the quote prefix.
    fn newline(&mut self) {
        self.out.push('\n');
        for _ in 0..self.quote {
            self.out.push_str("> ");
        }
    }

    /// Ends a block: one blank line after it (none at the very start).
    fn end_block(&mut self) {
        if !self.out.is_empty() && self.lists.is_empty() {
            self.newline();
            self.newline();
        } else if !self.lists.is_empty() {
            self.newline();
        }
    }

    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n') || self.out.ends_with("> ")
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => {
                if self.code_block {
                    let lines: Vec<&str> = text.split('\n').collect();
                    for (i, line) in lines.iter().enumerate() {
                        if i > 0 && !(i == lines.len() - 1 && line.is_empty()) {
                            self.newline();
                        }
                        self.out.push_str(&escape(line));
                    }
                } else {
                    self.push(&escape(&text));
                }
            }
            Event::Code(code) => self.push(&format!("`{}`", escape(&code))),
            Event::Html(html) | Event::InlineHtml(html) => self.push(&escape(&html)),
            Event::SoftBreak | Event::HardBreak => {
                if self.link.is_some() {
                    self.push(" ");
                } else {
                    self.newline();
                }
            }
            Event::Rule => {
                self.out.push_str("——————");
                self.end_block();
            }
            Event::FootnoteReference(r) => self.push(&format!("[{}]", escape(&r))),
            Event::TaskListMarker(done) => self.push(if done { "☑ " } else { "☐ " }),
            Event::InlineMath(m) | Event::DisplayMath(m) => self.push(&escape(&m)),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { .. } => self.push("*"),
            Tag::Emphasis => self.push("_"),
            Tag::Strong => self.push("*"),
            Tag::Strikethrough => self.push("~"),
            Tag::BlockQuote(_) => {
                self.quote += 1;
                if self.at_line_start() {
                    self.out.push_str("> ");
                }
            }
            Tag::CodeBlock(_) => {
                if !self.at_line_start() {
                    self.newline();
                }
                self.out.push_str("```");
                self.newline();
                self.code_block = true;
            }
            Tag::List(first) => {
                if !self.lists.is_empty() && !self.at_line_start() {
                    self.newline();
                }
                self.lists.push(first);
            }
            Tag::Item => {
                let depth = self.lists.len().saturating_sub(1);
                let indent = "    ".repeat(depth);
                let bullet = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let b = format!("{n}. ");
                        *n += 1;
                        b
                    }
                    _ => "• ".to_owned(),
                };
                self.out.push_str(&indent);
                self.out.push_str(&bullet);
            }
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                self.link = Some((dest_url.to_string(), String::new()));
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => {
                self.push("*");
                self.end_block();
            }
            TagEnd::Paragraph => {
                if self.lists.is_empty() {
                    self.end_block();
                } else {
                    // A loose list's paragraphs: keep items on their own lines only.
                    self.out.truncate(self.out.trim_end_matches(' ').len());
                }
            }
            TagEnd::Emphasis => self.push("_"),
            TagEnd::Strong => self.push("*"),
            TagEnd::Strikethrough => self.push("~"),
            TagEnd::BlockQuote(_) => {
                self.quote = self.quote.saturating_sub(1);
                self.trim_quote_tail();
            }
            TagEnd::CodeBlock => {
                self.code_block = false;
                if !self.at_line_start() {
                    self.newline();
                }
                self.out.push_str("```");
                self.end_block();
            }
            TagEnd::List(_) => {
                self.lists.pop();
                if self.lists.is_empty() {
                    self.trim_newlines();
                    self.end_block();
                }
            }
            TagEnd::Item if !self.at_line_start() => self.newline(),
            TagEnd::Link | TagEnd::Image => {
                if let Some((url, label)) = self.link.take() {
                    // The label was escaped as it was collected; undo that for `link`.
                    let label =
                        label.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
                    self.out.push_str(&link(&url, &label));
                }
            }
            _ => {}
        }
    }

    /// Drops the blank quoted lines a block left at the end of a quote.
    fn trim_quote_tail(&mut self) {
        let trimmed = self.out.trim_end_matches(['\n', '>', ' ']).len();
        self.out.truncate(trimmed);
        self.end_block();
    }

    fn trim_newlines(&mut self) {
        let trimmed = self.out.trim_end_matches(['\n', ' ']).len();
        self.out.truncate(trimmed);
    }
}

/// `text` split into pieces of at most `max` characters, preferring line breaks.
fn chunks(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut current_chars = 0;
    for line in text.split_inclusive('\n') {
        let n = line.chars().count();
        if current_chars + n > max && !current.is_empty() {
            out.push(std::mem::take(&mut current).trim_end().to_owned());
            current_chars = 0;
        }
        if n > max {
            // One very long line: hard split on characters.
            let chars: Vec<char> = line.chars().collect();
            for piece in chars.chunks(max) {
                out.push(piece.iter().collect::<String>().trim_end().to_owned());
            }
            continue;
        }
        current.push_str(line);
        current_chars += n;
    }
    if !current.trim().is_empty() {
        out.push(current.trim_end().to_owned());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Whether the message is the first of its thread, a reply in it, or an edit of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The broadcast's first message.
    Original,
    /// Update `seq` posted as a thread reply.
    Reply {
        /// 1 for the first update.
        seq: u32,
    },
    /// Update `seq` replacing the original's content.
    Edit {
        /// 1 for the first update.
        seq: u32,
    },
}

/// The `blocks` for `message`.
pub fn blocks(message: &Message, role: Role) -> Value {
    let emoji = severity_emoji(message.severity);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": cut(&format!("{emoji} {}", message.title), HEADER_LIMIT),
            "emoji": true,
        },
    })];

    let mut context = format!("*Severity:* {}", message.severity.as_str());
    match role {
        Role::Original => {}
        Role::Reply { seq } => context.push_str(&format!("  ·  update {seq}")),
        Role::Edit { seq } => context.push_str(&format!("  ·  edited: update {seq}")),
    }
    if !message.tags.is_empty() {
        let tags: Vec<String> = message.tags.iter().map(|t| format!("`{}`", escape(t))).collect();
        context.push_str(&format!("  ·  {}", tags.join(" ")));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": cut(&context, SECTION_LIMIT) }],
    }));

    let body = mrkdwn(&message.body);
    for piece in chunks(&cut(&body, BODY_BUDGET), SECTION_LIMIT) {
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": piece } }));
    }

    let mut fields: Vec<Value> = Vec::new();
    let mut used = 0;
    let total = message.fields.len();
    for (i, (key, value)) in message.fields.iter().enumerate() {
        let text = cut(&format!("*{}*\n{}", escape(key), escape(value)), FIELD_LIMIT).into_owned();
        let n = text.chars().count();
        if used + n > FIELDS_BUDGET {
            let left = total - i;
            fields.push(json!({
                "type": "mrkdwn",
                "text": format!("{TRUNCATION_MARKER} {left} more field(s)"),
            }));
            break;
        }
        used += n;
        fields.push(json!({ "type": "mrkdwn", "text": text }));
    }
    for group in fields.chunks(FIELDS_PER_SECTION) {
        blocks.push(json!({ "type": "section", "fields": group }));
    }

    if !message.links.is_empty() {
        let mut text = String::new();
        for (i, l) in message.links.iter().enumerate() {
            let item = link(&l.url, &l.title);
            let sep = if text.is_empty() { "" } else { "  ·  " };
            if text.chars().count() + sep.len() + item.chars().count() > LINKS_BUDGET {
                let left = message.links.len() - i;
                text.push_str(&format!("{sep}{TRUNCATION_MARKER} {left} more link(s)"));
                break;
            }
            text.push_str(sep);
            text.push_str(&item);
        }
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } }));
    }
    Value::Array(blocks)
}

/// The plain `text` fallback for `message`.
pub fn fallback_text(message: &Message, role: Role) -> String {
    let emoji = severity_emoji(message.severity);
    let prefix = match role {
        Role::Original => String::new(),
        Role::Reply { seq } | Role::Edit { seq } => format!("[update {seq}] "),
    };
    let mut text = format!("{emoji} {prefix}*{}*", escape(&message.title));
    let body = mrkdwn(&message.body);
    if !body.is_empty() {
        text.push('\n');
        text.push_str(&body);
    }
    cut(&text, TEXT_LIMIT).into_owned()
}

/// herald's message metadata naming the delivery the message carries.
pub fn metadata(delivery_id: &str) -> Value {
    json!({ "event_type": EVENT_TYPE, "event_payload": { "delivery_id": delivery_id } })
}
