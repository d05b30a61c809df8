//! The portable message as Jira wants it: a one-line summary of at most 255 characters,
//! labels carrying herald's marker, and Atlassian Document Format (ADF) for the
//! description and comments, converted from the Markdown body event by event.
//!
//! ADF (<https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/>)
//! is stricter than Markdown: a list item starts with a paragraph, headings live only at
//! the top level, `code` marks combine only with links, and text nodes are never empty.
//! The converter degrades what ADF cannot hold (a heading inside a list becomes a bold
//! paragraph, a quote inside a quote or a list is flattened, raw HTML is shown as text).
//!
//! Pure: no I/O, no clock.

use std::borrow::Cow;

use herald_core::{Message, Severity};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde_json::{Map, Value, json};

use crate::text::{self, TRUNCATION_MARKER, cut};

/// Jira's limit on a summary, in characters.
pub(crate) const SUMMARY_LIMIT: usize = 255;

/// Jira's limit on a description or a comment, in characters. Herald keeps the whole
/// serialized ADF document under it, which bounds the text however Jira counts it.
pub(crate) const TEXT_LIMIT: usize = 32_767;

/// Jira's limit on one label, in characters.
const LABEL_LIMIT: usize = 255;

/// The label every issue herald creates carries, next to its per-delivery marker.
pub(super) const HERALD_LABEL: &str = "herald";

/// The marker of one delivery: a label on an issue, a word in a comment's footer.
pub(crate) fn marker(delivery_id: &str) -> String {
    format!("herald-{delivery_id}")
}

/// The summary: the title on one line, cut to [`SUMMARY_LIMIT`] with a visible marker.
pub(crate) fn summary(title: &str) -> String {
    let line = title.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = if line.is_empty() { "(untitled)".to_owned() } else { line };
    cut(&line, SUMMARY_LIMIT).into_owned()
}

/// The labels: [`HERALD_LABEL`], the delivery's marker, then the message's tags (spaces
/// become `-`, since a Jira label has none), without duplicates.
pub(crate) fn labels(message: &Message, delivery_id: &str) -> Vec<String> {
    let mut res = vec![HERALD_LABEL.to_owned(), marker(delivery_id)];
    for tag in &message.tags {
        let label = tag.split_whitespace().collect::<Vec<_>>().join("-");
        let label: String = label.chars().take(LABEL_LIMIT).collect();
        if !label.is_empty() && !res.contains(&label) {
            res.push(label);
        }
    }
    res
}

/// The description of a new issue: severity, the body, the fields, the links.
pub(crate) fn description(message: &Message) -> Value {
    fit(message, |message, body| document(message, body, None))
}

/// A follow-up comment: a heading line naming the update, then as [`description`], then
/// a footer carrying the delivery's marker, by which a retry finds it.
pub(crate) fn comment(message: &Message, seq: u32, delivery_id: &str) -> Value {
    fit(message, |message, body| document(message, body, Some((seq, delivery_id))))
}

/// Renders with the whole body, and if the document is over [`TEXT_LIMIT`], with the body
/// cut (with a visible marker) until it fits. If the fields and links alone are over it,
/// renders without them, saying so at the top of the body: the rest of the document (a
/// comment's marker above all, which a retry looks for) is always sent.
fn fit(message: &Message, render: impl Fn(&Message, &str) -> Value) -> Value {
    let doc = render(message, &message.body);
    let mut doc_size = size(&doc);
    if doc_size <= TEXT_LIMIT {
        return doc;
    }
    let mut budget = message.body.chars().count();
    // Markup costs a roughly constant share of the document, so scaling the body by the
    // ratio of limit to size lands close; a little under it so a round or two suffice.
    for _ in 0..12 {
        let scaled = budget as u128 * TEXT_LIMIT as u128 * 97 / (doc_size as u128 * 100);
        budget = usize::try_from(scaled).unwrap_or(0).min(budget.saturating_sub(1));
        let body = cut(&message.body, budget.max(TRUNCATION_MARKER.chars().count()));
        let doc = render(message, &body);
        doc_size = size(&doc);
        if doc_size <= TEXT_LIMIT {
            return doc;
        }
    }
    if message.fields.is_empty() && message.links.is_empty() {
        // Not reached: without fields and links, a body cut to the marker leaves the
        // summary-sized heading, the severity and the footer, far under the limit.
        return render(message, TRUNCATION_MARKER);
    }
    fit(&text::without_fields_and_links(message, "Jira"), render)
}

/// The serialized size of an ADF document, in characters.
fn size(doc: &Value) -> usize {
    serde_json::to_string(doc).map_or(usize::MAX, |s| s.chars().count())
}

fn document(message: &Message, body: &str, update: Option<(u32, &str)>) -> Value {
    let mut content = Vec::new();
    if let Some((seq, _)) = update {
        let head = match message.severity {
            Severity::Resolved => format!("Resolved (update {seq}): {}", summary(&message.title)),
            _ => format!("Update {seq}: {}", summary(&message.title)),
        };
        content.push(paragraph(vec![text_node(&head, &[json!({"type": "strong"})])]));
    }
    content.push(severity_line(message.severity));
    content.extend(markdown(body));
    if !message.fields.is_empty() {
        let items: Vec<Value> = message
            .fields
            .iter()
            .map(|(key, value)| {
                list_item(vec![paragraph(vec![
                    text_node(&format!("{key}: "), &[json!({"type": "strong"})]),
                    text_node(value, &[]),
                ])])
            })
            .collect();
        content.push(json!({"type": "bulletList", "content": items}));
    }
    if !message.links.is_empty() {
        content.push(paragraph(vec![text_node("Links", &[json!({"type": "strong"})])]));
        let items: Vec<Value> = message
            .links
            .iter()
            .map(|link| {
                let title = if link.title.trim().is_empty() { &link.url } else { &link.title };
                let mark = json!({"type": "link", "attrs": {"href": link.url}});
                list_item(vec![paragraph(vec![text_node(title, &[mark])])])
            })
            .collect();
        content.push(json!({"type": "bulletList", "content": items}));
    }
    if let Some((_, delivery_id)) = update {
        let footer = format!("sent by herald · {}", marker(delivery_id));
        content.push(paragraph(vec![text_node(&footer, &[json!({"type": "em"})])]));
    }
    doc_of(content)
}

/// `Severity: 🚨 critical`, with an emoji a reader spots in a list of comments.
fn severity_line(severity: Severity) -> Value {
    let icon = match severity {
        Severity::Info => "ℹ️",
        Severity::Warning => "⚠️",
        Severity::Error => "🔴",
        Severity::Critical => "🚨",
        Severity::Resolved => "✅",
    };
    paragraph(vec![
        text_node("Severity: ", &[json!({"type": "strong"})]),
        text_node(&format!("{icon} {}", severity.as_str()), &[]),
    ])
}

fn doc_of(content: Vec<Value>) -> Value {
    json!({"type": "doc", "version": 1, "content": content})
}

/// A paragraph of `content`, empty text nodes left out: ADF forbids them, and a field's
/// value or a body may be empty.
fn paragraph(content: Vec<Value>) -> Value {
    let content: Vec<Value> =
        content.into_iter().filter(|node| node.get("text") != Some(&json!(""))).collect();
    json!({"type": "paragraph", "content": content})
}

fn list_item(content: Vec<Value>) -> Value {
    json!({"type": "listItem", "content": content})
}

/// A text node. ADF forbids empty ones: [`paragraph`] leaves them out, and the
/// converter's `text` and `code` never make one.
fn text_node(text: &str, marks: &[Value]) -> Value {
    let mut node = Map::new();
    node.insert("type".into(), "text".into());
    node.insert("text".into(), text.into());
    if !marks.is_empty() {
        node.insert("marks".into(), Value::Array(marks.to_vec()));
    }
    Value::Object(node)
}

/// The ADF blocks of a Markdown text.
pub(crate) fn markdown(source: &str) -> Vec<Value> {
    let mut builder = Builder::default();
    let options = Options::ENABLE_STRIKETHROUGH;
    for event in Parser::new_ext(source, options) {
        builder.event(event);
    }
    builder.finish()
}

/// What an open block is, for deciding what may go inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Doc,
    Paragraph,
    /// A paragraph the converter opened itself (inline content in a tight list item).
    ImplicitParagraph,
    Heading,
    BlockQuote,
    /// A quote ADF cannot nest: its children go to the enclosing block.
    FlatQuote,
    CodeBlock,
    List,
    Item,
    /// A heading ADF cannot hold where it is, rendered as a bold paragraph.
    BoldParagraph,
}

impl Kind {
    fn inline(self) -> bool {
        matches!(
            self,
            Kind::Paragraph | Kind::ImplicitParagraph | Kind::Heading | Kind::BoldParagraph
        )
    }
}

struct Open {
    kind: Kind,
    node: Map<String, Value>,
    content: Vec<Value>,
}

impl Open {
    fn new(kind: Kind, node: Value) -> Open {
        let node = match node {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Open { kind, node, content: Vec::new() }
    }
}

/// Builds ADF from pulldown-cmark events with a stack of open blocks and of marks.
struct Builder {
    stack: Vec<Open>,
    marks: Vec<Value>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder { stack: vec![Open::new(Kind::Doc, json!({}))], marks: Vec::new() }
    }
}

impl Builder {
    fn top(&self) -> Kind {
        self.stack.last().map_or(Kind::Doc, |open| open.kind)
    }

    /// Whether a block of `kind` sits anywhere below the top.
    fn inside(&self, kind: Kind) -> bool {
        self.stack.iter().any(|open| open.kind == kind)
    }

    fn push(&mut self, kind: Kind, node: Value) {
        self.close_implicit();
        self.stack.push(Open::new(kind, node));
    }

    /// Closes the top block and appends it to its parent (skipping what ADF forbids).
    fn pop(&mut self) {
        if self.stack.len() <= 1 {
            return;
        }
        let Some(open) = self.stack.pop() else { return };
        if open.kind == Kind::FlatQuote {
            // Its children were appended to the parent already.
            return;
        }
        let mut node = open.node;
        let mut content = open.content;
        match open.kind {
            Kind::Item
                if content.first().and_then(|c| c.get("type")) != Some(&"paragraph".into()) =>
            {
                content.insert(0, paragraph(Vec::new()));
            }
            Kind::List | Kind::BlockQuote if content.is_empty() => return,
            Kind::CodeBlock => {
                // A fenced block's text ends with the newline before the closing fence.
                if let Some(Value::String(text)) =
                    content.last_mut().and_then(|t| t.get_mut("text"))
                    && text.ends_with('\n')
                {
                    text.pop();
                }
                content.retain(|t| t.get("text").and_then(Value::as_str) != Some(""));
            }
            _ => {}
        }
        node.insert("content".into(), Value::Array(content));
        self.append(Value::Object(node));
    }

    /// Appends a finished node to the innermost block that is not a flattened quote.
    fn append(&mut self, node: Value) {
        if let Some(open) = self.stack.iter_mut().rev().find(|o| o.kind != Kind::FlatQuote) {
            open.content.push(node);
        }
    }

    fn close_implicit(&mut self) {
        if self.top() == Kind::ImplicitParagraph {
            self.pop();
        }
    }

    /// Makes sure the top block takes inline content.
    fn ensure_inline(&mut self) {
        if !self.top().inline() && self.top() != Kind::CodeBlock {
            self.stack.push(Open::new(Kind::ImplicitParagraph, json!({"type": "paragraph"})));
        }
    }

    fn inline(&mut self, node: Value) {
        self.ensure_inline();
        if let Some(open) = self.stack.last_mut() {
            open.content.push(node);
        }
    }

    fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.top() == Kind::CodeBlock {
            // Code block text takes no marks; merge the parser's pieces into one node.
            if let Some(open) = self.stack.last_mut() {
                if let Some(Value::String(last)) =
                    open.content.last_mut().and_then(|t| t.get_mut("text"))
                {
                    last.push_str(text);
                } else {
                    open.content.push(text_node(text, &[]));
                }
            }
            return;
        }
        let mut marks = self.marks.clone();
        if self.top() == Kind::BoldParagraph && !marks.iter().any(|m| m["type"] == "strong") {
            marks.push(json!({"type": "strong"}));
        }
        self.inline(text_node(text, &marks));
    }

    fn code(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        // ADF lets `code` combine with a link only.
        let mut marks: Vec<Value> =
            self.marks.iter().filter(|m| m["type"] == "link").cloned().collect();
        marks.insert(0, json!({"type": "code"}));
        self.inline(text_node(text, &marks));
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => self.text(&text),
            Event::Code(text) => self.code(&text),
            Event::Html(text) | Event::InlineHtml(text) => {
                let text = text.trim_end_matches('\n').to_owned();
                self.text(&text);
            }
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => self.inline(json!({"type": "hardBreak"})),
            Event::Rule => {
                if self.inside(Kind::Item) || self.inside(Kind::BlockQuote) {
                    return;
                }
                self.close_implicit();
                self.append(json!({"type": "rule"}));
            }
            Event::FootnoteReference(text) | Event::InlineMath(text) | Event::DisplayMath(text) => {
                self.text(&text);
            }
            Event::TaskListMarker(done) => self.text(if done { "☑ " } else { "☐ " }),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => self.push(Kind::Paragraph, json!({"type": "paragraph"})),
            Tag::Heading { level, .. } => {
                if self.stack.len() > 1 {
                    self.push(Kind::BoldParagraph, json!({"type": "paragraph"}));
                } else {
                    let level = heading_level(level);
                    self.push(Kind::Heading, json!({"type": "heading", "attrs": {"level": level}}));
                }
            }
            Tag::BlockQuote(_) => {
                if self.inside(Kind::BlockQuote) || self.inside(Kind::Item) {
                    self.push(Kind::FlatQuote, json!({}));
                } else {
                    self.push(Kind::BlockQuote, json!({"type": "blockquote"}));
                }
            }
            Tag::CodeBlock(kind) => {
                let language = match kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split_whitespace().next().unwrap_or_default().to_owned()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                let node = if language.is_empty() {
                    json!({"type": "codeBlock"})
                } else {
                    json!({"type": "codeBlock", "attrs": {"language": language}})
                };
                self.push(Kind::CodeBlock, node);
            }
            Tag::List(Some(start)) => {
                let order = start.max(1);
                self.push(Kind::List, json!({"type": "orderedList", "attrs": {"order": order}}));
            }
            Tag::List(None) => self.push(Kind::List, json!({"type": "bulletList"})),
            Tag::Item => self.push(Kind::Item, json!({"type": "listItem"})),
            Tag::Emphasis => self.marks.push(json!({"type": "em"})),
            Tag::Strong => self.marks.push(json!({"type": "strong"})),
            Tag::Strikethrough => self.marks.push(json!({"type": "strike"})),
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                self.marks.push(json!({"type": "link", "attrs": {"href": dest_url.as_ref()}}));
            }
            // Not enabled in the parser options, or shown as their text only.
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Link
            | TagEnd::Image => {
                self.marks.pop();
            }
            TagEnd::Paragraph
            | TagEnd::Heading(_)
            | TagEnd::BlockQuote(_)
            | TagEnd::CodeBlock
            | TagEnd::List(_)
            | TagEnd::Item => {
                self.close_implicit();
                self.pop();
            }
            _ => {}
        }
    }

    fn finish(mut self) -> Vec<Value> {
        while self.stack.len() > 1 {
            self.pop();
        }
        self.stack.pop().map(|doc| doc.content).unwrap_or_default()
    }
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// The text of every text node of an ADF value, in document order.
pub(super) fn texts(node: &Value) -> Vec<Cow<'_, str>> {
    let mut res = Vec::new();
    collect_texts(node, &mut res);
    res
}

fn collect_texts<'a>(node: &'a Value, out: &mut Vec<Cow<'a, str>>) {
    if node.get("type").and_then(Value::as_str) == Some("text")
        && let Some(text) = node.get("text").and_then(Value::as_str)
    {
        out.push(Cow::Borrowed(text));
    }
    if let Some(children) = node.get("content").and_then(Value::as_array) {
        for child in children {
            collect_texts(child, out);
        }
    }
}

/// Whether an ADF comment body carries `marker` as a whole word of one of its texts.
pub(crate) fn has_marker(body: &Value, marker: &str) -> bool {
    texts(body)
        .iter()
        .any(|text| text.split(|c: char| c.is_whitespace() || c == '·').any(|word| word == marker))
}
