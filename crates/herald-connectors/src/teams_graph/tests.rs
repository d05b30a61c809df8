//! Unit tests of the Teams Graph kind: rendering snapshots, the marker, classification rows.

#![allow(clippy::unwrap_used)]

use super::render::{CONTENT_LIMIT_BYTES, content, has_marker, render};
use crate::teams_workflow::tests::{long_message, rich_message, snapshot, unicode_message};
use crate::text::TRUNCATION_MARKER;

#[test]
fn a_rich_message_renders_as_html() {
    let html = content(&rich_message(), "d_01JD0000000000000000000001");
    snapshot("teams_graph", "rich.html", &(html + "\n"));
}

#[test]
fn unicode_and_emoji_pass_through() {
    let html = content(&unicode_message(), "d_2");
    snapshot("teams_graph", "unicode.html", &(html + "\n"));
}

#[test]
fn the_body_is_html_with_the_marker() {
    let body = render(&unicode_message(), "d_2");
    assert_eq!(body["body"]["contentType"], "html");
    let html = body["body"]["content"].as_str().unwrap();
    assert!(has_marker(html, "d_2"));
    assert!(!has_marker(html, "d_"), "a prefix of the id is not the marker");
    assert!(!has_marker("herald:d_23", "d_2"));
    assert!(has_marker("x herald:d_23 y herald:d_2<", "d_2"));
}

#[test]
fn a_long_body_is_cut_to_the_limit_with_a_visible_marker() {
    let html = content(&long_message(), "d_4");
    let size = serde_json::Value::String(html.clone()).to_string().len();
    assert!(size <= CONTENT_LIMIT_BYTES, "{size} bytes");
    assert!(size > CONTENT_LIMIT_BYTES - 64, "cut too much: {size} bytes");
    assert!(html.contains(&format!("{TRUNCATION_MARKER}</p>")));
    assert!(has_marker(&html, "d_4"), "the marker survives the cut");
}
