//! Unit tests of the Teams Workflows kind: rendering snapshots and classification rows.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use herald_core::{Link, Message, Severity, Timestamp};

use super::render::{PAYLOAD_LIMIT_BYTES, Quote, render};
use crate::text::TRUNCATION_MARKER;

/// Compares `actual` with the snapshot file `name`; `HERALD_UPDATE_SNAPSHOTS=1` rewrites it.
pub(crate) fn snapshot(dir: &str, name: &str, actual: &str) {
    let path = format!("{}/src/{dir}/snapshots/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("HERALD_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(actual, expected, "snapshot {path} differs (HERALD_UPDATE_SNAPSHOTS=1 rewrites)");
}

/// A message exercising every Markdown feature and field herald renders.
pub(crate) fn rich_message() -> Message {
    Message {
        title: "P1: checkout is <down> & \"slow\"".to_owned(),
        body: "# Impact\n\nCheckout fails for **all** users in _eu-west_, ~~maybe~~ `us` too.\n\n\
               - first\n- second with [runbook](https://runbooks.example/checkout)\n  \
               1. nested one\n  2. nested two\n\n3. three\n4. four\n\n\
               > quoted **line**\n> second\n\n\
               ```sh\nkubectl rollout undo deploy/checkout\n```\n\n\
               | a | b |\n|---|---|\n| 1 | 2 |\n\n\
               - [x] paged\n- [ ] status page\n\n\
               Inline <b>html</b>, [bad](javascript:alert(1)) and ![graph](https://img.example/g.png)\n\n\
               <script>alert(1)</script>\n\n\
               ---\nline one  \nline two"
            .to_owned(),
        severity: Severity::Critical,
        fields: BTreeMap::from([
            ("region".to_owned(), "eu-west-1".to_owned()),
            ("service".to_owned(), "checkout".to_owned()),
        ]),
        links: vec![
            Link { title: "Dashboard".to_owned(), url: "https://grafana.example/d/1".to_owned() },
            Link { title: "Evil".to_owned(), url: "javascript:alert(1)".to_owned() },
        ],
        tags: vec!["p1".to_owned()],
    }
}

pub(crate) fn unicode_message() -> Message {
    Message {
        title: "🔥 Übertragung gestört — 支付失败 — שגיאה".to_owned(),
        body: "Emoji 👩🏽‍💻🚀 and combining e\u{301} and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢.".to_owned(),
        severity: Severity::Resolved,
        ..Message::default()
    }
}

pub(crate) fn long_message() -> Message {
    Message {
        title: "long".to_owned(),
        body: "ä🙂x".repeat(20_000),
        severity: Severity::Warning,
        ..Message::default()
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap() + "\n"
}

#[test]
fn a_rich_message_renders_as_an_adaptive_card() {
    let payload = render(&rich_message(), "d_01JD0000000000000000000001", None);
    snapshot("teams_workflow", "rich.json", &pretty(&payload));
}

#[test]
fn unicode_and_emoji_pass_through() {
    let payload = render(&unicode_message(), "d_2", None);
    snapshot("teams_workflow", "unicode.json", &pretty(&payload));
}

#[test]
fn a_follow_up_quotes_the_original_title_and_time() {
    let original = rich_message();
    let update = Message {
        title: "P1: checkout recovering".to_owned(),
        body: "Rolled back.".to_owned(),
        severity: Severity::Warning,
        ..Message::default()
    };
    let quote = Quote { seq: 2, original: &original, original_at: Timestamp(1_798_761_660_000) };
    let payload = render(&update, "d_3", Some(quote));
    snapshot("teams_workflow", "update.json", &pretty(&payload));
    let first = &payload["attachments"][0]["content"]["body"][0]["items"][0]["text"];
    assert_eq!(
        first,
        "Update 2 to “P1: checkout is <down> & \"slow\"” (first posted 2027-01-01 00:01 UTC)"
    );
}

#[test]
fn a_long_body_is_cut_to_the_limit_with_a_visible_marker() {
    let payload = render(&long_message(), "d_4", None);
    let size = payload.to_string().len();
    assert!(size <= PAYLOAD_LIMIT_BYTES, "{size} bytes");
    assert!(size > PAYLOAD_LIMIT_BYTES - 64, "cut too much: {size} bytes");
    let body = payload["attachments"][0]["content"]["body"][2]["text"].as_str().unwrap();
    assert!(body.ends_with(TRUNCATION_MARKER), "{}", &body[body.len() - 40..]);
    // A short body is not touched.
    let short = render(&unicode_message(), "d_5", None).to_string();
    assert!(!short.contains(TRUNCATION_MARKER));
}
