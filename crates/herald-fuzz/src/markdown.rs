//! The `markdown` target: each kind's conversion of a Markdown body, the shared text
//! cutting and the one-line excerpt of an answer.
//!
//! Input: a converter selector byte (its index in [`CONVERTERS`]), a knob byte (the
//! limit for `cut` and `excerpt`, scaled), then the text. Properties: Slack mrkdwn never
//! carries mention markup; HTML has only the tags and link schemes the converter emits
//! (raw HTML in a message is shown, never interpreted); ADF keeps the rules the Jira
//! renderer documents; Teams blocks are never empty strings; `cut` and `excerpt` keep their
//! documented bounds.

use herald_connectors::{email, fuzzing, http, slack, text};

use crate::input::Input;
use crate::property::{self, chars};

/// The converters, in selector order.
pub const CONVERTERS: &[&str] =
    &["slack", "teams-workflow", "teams-graph", "email", "jira", "cut", "excerpt"];

/// The tags of the Teams (Graph) and Matrix HTML.
pub const TEAMS_TAGS: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "blockquote",
    "pre",
    "code",
    "ol",
    "ul",
    "li",
    "table",
    "tr",
    "th",
    "td",
    "em",
    "strong",
    "s",
    "a",
    "br",
    "hr",
    "small",
];
/// The tags of the Matrix HTML (the Teams converter's).
pub const MATRIX_TAGS: &[&str] = TEAMS_TAGS;
/// The tags of the e-mail's HTML part (pulldown-cmark's, plus the frame).
pub const EMAIL_TAGS: &[&str] = &[
    "html",
    "body",
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "code",
    "ol",
    "ul",
    "li",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "em",
    "strong",
    "del",
    "a",
    "img",
    "br",
    "hr",
    "small",
];
/// The attributes of the e-mail's HTML part.
pub const EMAIL_ATTRIBUTES: &[&str] =
    &["href", "src", "alt", "title", "start", "align", "style", "class"];

/// Converts one input with one converter and checks its properties.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let converter = CONVERTERS[usize::from(input.byte()) % CONVERTERS.len()];
    let knob = usize::from(input.byte());
    let source = String::from_utf8_lossy(input.rest());
    match converter {
        "slack" => {
            let mrkdwn = slack::render::mrkdwn(&source);
            property::no_slack_mention(&mrkdwn, "slack mrkdwn");
        }
        "teams-workflow" => {
            for block in fuzzing::teams_workflow_markdown(&source) {
                assert!(!block.is_empty(), "teams-workflow: an empty block");
            }
        }
        "teams-graph" => {
            let html = fuzzing::teams_graph_markdown(&source);
            property::html(&html, TEAMS_TAGS, &["href", "start"], "teams-graph html");
        }
        "email" => {
            let html = email::markdown(&source);
            property::html(&html, EMAIL_TAGS, EMAIL_ATTRIBUTES, "email html");
        }
        "jira" => {
            for node in fuzzing::jira_markdown(&source) {
                property::adf(&node, true, "jira markdown");
            }
        }
        "cut" => cut(&source, knob * 4),
        _ => excerpt(source.as_bytes(), knob * 8),
    }
}

/// `text::cut`: unchanged when short enough; else at most `max` characters, ending
/// with the marker (when there is room for it) after a start of the text.
fn cut(source: &str, max: usize) {
    let res = text::cut(source, max);
    if chars(source) <= max {
        assert_eq!(res, source, "cut changed a text that fits");
        return;
    }
    assert!(chars(&res) <= max, "cut left {} characters of {max}", chars(&res));
    let marker = text::TRUNCATION_MARKER;
    if max > chars(marker) {
        let Some(kept) = res.strip_suffix(marker) else { panic!("cut without the marker") };
        assert!(source.starts_with(kept), "cut kept text that is not the start");
    }
}

/// `http::excerpt`: one line made of at most `limit` bytes of the body (so at most as
/// many characters, plus `…` when cut), no control characters, no runs of spaces.
fn excerpt(body: &[u8], limit: usize) {
    let res = http::excerpt(body, limit);
    assert!(chars(&res) <= limit + 1, "an excerpt of {} characters for {limit}", chars(&res));
    assert!(!res.chars().any(char::is_control), "excerpt holds a control character: {res:?}");
    assert!(!res.contains("  "), "excerpt holds a run of spaces: {res:?}");
    assert_eq!(res.trim(), res, "excerpt starts or ends with a space: {res:?}");
}
