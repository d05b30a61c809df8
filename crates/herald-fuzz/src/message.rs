//! Messages for the renderer targets, read from fuzz input and kept to what the API
//! accepts: renderers only ever see messages that passed `POST /v1/broadcasts`, so a
//! property of theirs is checked on exactly that domain.
//!
//! Format: knobs `[thread][severity][repeat]`, then NUL-separated parts `title`, `body`,
//! `fields` (lines `key=value`), `links` (lines `title|url`), `tags` (lines) and the
//! original's title (for an update). `thread` 0 is the original, `n` update `n`; `repeat`
//! repeats the body, the field values, and the lists of fields and links (numbering the
//! copies' keys) `2^(repeat % 8)` times (1 to 128; small more often than large, which
//! are slow to render), within the API's limits, so short inputs reach the destinations'
//! size limits.

use std::collections::BTreeMap;

use herald_api::Limits;
use herald_core::{Link, Message, Severity, Timestamp};

use crate::input::Input;

/// The delivery id every rendered case uses (the shape the API's ids have).
pub const DELIVERY_ID: &str = "d_01JFUZZ0000000000000000001";
/// The original's delivery id, for updates.
pub const ORIGINAL_DELIVERY_ID: &str = "d_01JFUZZ0000000000000000000";
/// The broadcast id every rendered case uses.
pub const BROADCAST_ID: &str = "b_01JFUZZ0000000000000000000";
/// When every rendered case is sent (2026-11-29T12:02:03Z).
pub const NOW: Timestamp = Timestamp::from_millis(1_795_953_723_000);

/// One message to render, with its place in the thread.
#[derive(Debug, Clone)]
pub struct Case {
    /// The message sent now.
    pub message: Message,
    /// 0 for the original, `n` for update `n`.
    pub seq: u32,
    /// The broadcast's original (the message itself for `seq` 0).
    pub original: Message,
}

impl Case {
    /// Reads a case; `None` when the API would refuse the message.
    pub fn read(input: &mut Input<'_>) -> Option<Case> {
        let seq = u32::from(input.byte());
        let severity = match input.byte() % 5 {
            0 => Severity::Info,
            1 => Severity::Warning,
            2 => Severity::Error,
            3 => Severity::Critical,
            _ => Severity::Resolved,
        };
        let repeat = 1 << (input.byte() % 8);
        let limits = Limits::default();
        let title = one_line(&input.text());
        let body = clamp(&input.text().repeat(repeat), limits.max_body);
        let mut fields = BTreeMap::new();
        let lines = input.text();
        for copy in 0..repeat {
            for line in lines.lines() {
                let (key, value) = line.split_once('=').unwrap_or((line, ""));
                let key = if copy == 0 { key.to_owned() } else { format!("{key} {copy}") };
                if !key.trim().is_empty() && fields.len() < limits.max_fields {
                    let key = clamp(&key, limits.max_key);
                    fields.insert(key, clamp(&value.repeat(repeat), limits.max_body));
                }
            }
        }
        let lines = input.text();
        let links = (0..repeat)
            .flat_map(|_| lines.lines())
            .take(limits.max_links)
            .map(|line| {
                let (title, url) = line.split_once('|').unwrap_or((line, ""));
                Link {
                    title: clamp(title, limits.max_title),
                    url: clamp(&web_url(url), limits.max_title),
                }
            })
            .collect();
        let tags = input
            .text()
            .lines()
            .filter(|tag| !tag.trim().is_empty())
            .take(limits.max_tags)
            .map(|tag| clamp(tag, limits.max_key))
            .collect();
        let message =
            Message { title: clamp(&title, limits.max_title), body, severity, fields, links, tags };
        let original = if seq == 0 {
            message.clone()
        } else {
            Message {
                title: clamp(&one_line(&input.text()), limits.max_title),
                ..Message::default()
            }
        };
        let accepted = |m: &Message| herald_api::fuzzing::check_message(m, &limits).is_empty();
        let fits =
            serde_json::to_vec(&message).map_or(0, |json| json.len()) <= limits.max_body_bytes;
        (fits && accepted(&message) && accepted(&original)).then_some(Case {
            message,
            seq,
            original,
        })
    }
}

/// A title the API accepts: one non-empty line.
fn one_line(text: &str) -> String {
    let line = text.replace(['\r', '\n'], " ");
    if line.trim().is_empty() { "alert".to_owned() } else { line }
}

/// An http(s) URL: `url` if it is one, else `url` as the path of one.
fn web_url(url: &str) -> String {
    let lower = url.to_ascii_lowercase();
    let host = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
    if host.is_some_and(|host| !host.is_empty()) {
        url.to_owned()
    } else {
        format!("https://example.com/{url}")
    }
}

/// `text` cut to at most `max` characters.
fn clamp(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
