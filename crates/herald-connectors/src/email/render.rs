//! One delivery as an e-mail: a stable `Message-ID` derived from the delivery id, the
//! threading headers of a follow-up, and a `multipart/alternative` body whose plain-text
//! part is the Markdown as written and whose HTML part is rendered from it, raw HTML
//! escaped (docs/rendering.md, "E-mail").

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use herald_core::{Message, Severity};
use lettre::message::{Mailbox, MultiPart};
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

use super::config::EmailConfig;
use crate::{Request, Thread};

/// The `Message-ID` of the delivery `delivery_id` sent from `domain`: the same on every
/// attempt, so a receiver that drops repeated ids drops a resend, and a follow-up can
/// name its original without asking anyone.
pub fn message_id(delivery_id: &str, domain: &str) -> String {
    // Keep the left side a dot-atom whatever the id looks like.
    let left: String = delivery_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect();
    format!("<{left}@{domain}>")
}

/// The subject: the title, or for a follow-up `Re: ` and the original's title, which
/// is what mail clients (Gmail among them) need besides the headers to thread it.
pub fn subject(request: &Request<'_>) -> String {
    let title = |message: &Message| one_line(&message.title);
    match request.thread {
        Thread::Original => title(request.message),
        Thread::Update { original, .. } => format!("Re: {}", title(original)),
    }
}

/// The message as it goes on the wire (headers and body, before dot-stuffing).
///
/// # Errors
/// A message lettre refuses to build (it says why; it never contains a secret).
pub fn compose(config: &EmailConfig, request: &Request<'_>) -> Result<Vec<u8>, String> {
    let domain = config.from_domain();
    let mut builder = lettre::Message::builder()
        .from(config.from.clone())
        .subject(subject(request))
        .message_id(Some(message_id(request.delivery_id, domain)))
        .date(system_time(request.created_at.as_millis()))
        .user_agent("herald".to_owned());
    for to in &config.to {
        builder = builder.to(to.clone());
    }
    if let Thread::Update { in_reply_to, original_remote_ref, .. } = request.thread {
        // The original's id as it was sent (its remote ref), else as it is derived now.
        let original = original_remote_ref
            .filter(|r| r.starts_with('<') && r.ends_with('>'))
            .map_or_else(|| message_id(in_reply_to, domain), str::to_owned);
        builder = builder.in_reply_to(original.clone()).references(original);
    }
    // lettre needs an envelope only to build; the connector sends its own per attempt.
    let envelope = lettre::address::Envelope::new(
        Some(config.from.email.clone()),
        config.to.iter().map(|m: &Mailbox| m.email.clone()).collect(),
    )
    .map_err(|e| format!("cannot address the message: {e}"))?;
    let built = builder
        .envelope(envelope)
        .multipart(MultiPart::alternative_plain_html(text(request), html(request)))
        .map_err(|e| format!("cannot build the message: {e}"))?;
    Ok(built.formatted())
}

fn system_time(millis: i64) -> SystemTime {
    let after = Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    SystemTime::UNIX_EPOCH.checked_add(after).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn heading(request: &Request<'_>) -> String {
    let title = one_line(&request.message.title);
    match request.thread {
        Thread::Original => title,
        Thread::Update { seq, .. } => format!("Update {seq}: {title}"),
    }
}

fn severity_words(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "Info",
        Severity::Warning => "Warning",
        Severity::Error => "Error",
        Severity::Critical => "Critical",
        Severity::Resolved => "Resolved",
    }
}

fn footer(request: &Request<'_>) -> String {
    format!(
        "Sent by herald · broadcast {} · delivery {}",
        request.broadcast_id, request.delivery_id
    )
}

/// The plain-text part: heading, severity, the Markdown as written (it reads well as
/// text), fields, links, tags and a footer naming the broadcast.
pub fn text(request: &Request<'_>) -> String {
    let message = request.message;
    let mut out = format!("{}\nSeverity: {}\n", heading(request), severity_words(message.severity));
    if !message.body.trim().is_empty() {
        let _ = write!(out, "\n{}\n", message.body.trim_end());
    }
    if !message.fields.is_empty() {
        out.push('\n');
        for (key, value) in &message.fields {
            let _ = writeln!(out, "{key}: {value}");
        }
    }
    if !message.links.is_empty() {
        out.push('\n');
        for link in &message.links {
            let _ = writeln!(out, "{}: {}", link.title, link.url);
        }
    }
    if !message.tags.is_empty() {
        let _ = write!(out, "\nTags: {}\n", message.tags.join(", "));
    }
    let _ = write!(out, "\n-- \n{}\n", footer(request));
    out
}

/// The HTML part: the same content, the body rendered from Markdown with every raw HTML
/// block or inline tag shown as text and links kept to http(s) and mailto.
pub fn html(request: &Request<'_>) -> String {
    let message = request.message;
    let mut out = String::from("<!DOCTYPE html>\n<html><body>\n");
    let _ = writeln!(out, "<h2>{}</h2>", escape(&heading(request)));
    let _ = writeln!(
        out,
        "<p><strong>Severity:</strong> {}</p>",
        escape(severity_words(message.severity))
    );
    out.push_str(&markdown(&message.body));
    if !message.fields.is_empty() {
        out.push_str("<table>\n");
        for (key, value) in &message.fields {
            let _ = writeln!(
                out,
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape(key),
                escape(value)
            );
        }
        out.push_str("</table>\n");
    }
    if !message.links.is_empty() {
        out.push_str("<ul>\n");
        for link in &message.links {
            let title = escape(&link.title);
            if safe_url(&link.url) {
                let _ = writeln!(out, "<li><a href=\"{}\">{title}</a></li>", escape(&link.url));
            } else {
                let _ = writeln!(out, "<li>{title}: {}</li>", escape(&link.url));
            }
        }
        out.push_str("</ul>\n");
    }
    if !message.tags.is_empty() {
        let _ = writeln!(out, "<p><strong>Tags:</strong> {}</p>", escape(&message.tags.join(", ")));
    }
    let _ = writeln!(out, "<hr>\n<p><small>{}</small></p>", escape(&footer(request)));
    out.push_str("</body></html>\n");
    out
}

/// Markdown to HTML (CommonMark plus tables and strikethrough); raw HTML becomes text.
pub fn markdown(source: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(source, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) if !safe_url(&dest_url) => {
            Event::Start(Tag::Link { link_type, dest_url: CowStr::Borrowed("#"), title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) if !safe_url(&dest_url) => {
            Event::Start(Tag::Image { link_type, dest_url: CowStr::Borrowed("#"), title, id })
        }
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    ["https://", "http://", "mailto:"].iter().any(|scheme| lower.starts_with(scheme))
}

/// `text` safe inside HTML text and double-quoted attributes.
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
