//! Pure tests of the Jira connector: ADF snapshots of rendered payloads, limits, and the
//! classification table of DESTINATIONS.md §4.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::{Link, Message, Outcome, Severity};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::classify::{self, Failure};
use super::render;
use crate::text::TRUNCATION_MARKER;

fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

fn marked(t: &str, marks: Value) -> Value {
    json!({"type": "text", "text": t, "marks": marks})
}

fn para(content: Value) -> Value {
    json!({"type": "paragraph", "content": content})
}

#[test]
fn markdown_becomes_adf() {
    let rows: Vec<(&str, Value)> = vec![
        ("", json!([])),
        (
            "plain *em* **strong** ~~gone~~",
            json!([para(json!([
                text("plain "),
                marked("em", json!([{"type": "em"}])),
                text(" "),
                marked("strong", json!([{"type": "strong"}])),
                text(" "),
                marked("gone", json!([{"type": "strike"}])),
            ]))]),
        ),
        (
            "## Impact\nline one\nline two  \nafter break",
            json!([
                {"type": "heading", "attrs": {"level": 2}, "content": [text("Impact")]},
                para(json!([text("line one"), text(" "), text("line two"), {"type": "hardBreak"}, text("after break")])),
            ]),
        ),
        (
            "- a\n- **b**\n  - c",
            json!([{"type": "bulletList", "content": [
                {"type": "listItem", "content": [para(json!([text("a")]))]},
                {"type": "listItem", "content": [
                    para(json!([marked("b", json!([{"type": "strong"}]))])),
                    {"type": "bulletList", "content": [
                        {"type": "listItem", "content": [para(json!([text("c")]))]},
                    ]},
                ]},
            ]}]),
        ),
        (
            "3. three\n4. four",
            json!([{"type": "orderedList", "attrs": {"order": 3}, "content": [
                {"type": "listItem", "content": [para(json!([text("three")]))]},
                {"type": "listItem", "content": [para(json!([text("four")]))]},
            ]}]),
        ),
        (
            "```rust\nfn main() {}\nlet x = 1;\n```",
            json!([
                {"type": "codeBlock", "attrs": {"language": "rust"}, "content": [text("fn main() {}\nlet x = 1;")]},
            ]),
        ),
        ("    indented", json!([{"type": "codeBlock", "content": [text("indented")]}])),
        (
            "run `kubectl` [the **runbook**](https://r.example/x) [`cfg`](https://c.example)",
            json!([para(json!([
                text("run "),
                marked("kubectl", json!([{"type": "code"}])),
                text(" "),
                marked("the ", json!([{"type": "link", "attrs": {"href": "https://r.example/x"}}])),
                marked(
                    "runbook",
                    json!([
                        {"type": "link", "attrs": {"href": "https://r.example/x"}},
                        {"type": "strong"},
                    ])
                ),
                text(" "),
                marked(
                    "cfg",
                    json!([
                        {"type": "code"},
                        {"type": "link", "attrs": {"href": "https://c.example"}},
                    ])
                ),
            ]))]),
        ),
        (
            "> quoted\n> > nested",
            json!([{"type": "blockquote", "content": [
                para(json!([text("quoted")])),
                para(json!([text("nested")])),
            ]}]),
        ),
        (
            "- # big in a list",
            json!([{"type": "bulletList", "content": [
                {"type": "listItem", "content": [
                    para(json!([marked("big in a list", json!([{"type": "strong"}]))])),
                ]},
            ]}]),
        ),
        (
            "a\n\n---\n\n<b>raw</b>",
            json!([
                para(json!([text("a")])),
                {"type": "rule"},
                para(json!([text("<b>"), text("raw"), text("</b>")])),
            ]),
        ),
        (
            "-\n- x",
            json!([{"type": "bulletList", "content": [
                {"type": "listItem", "content": [para(json!([]))]},
                {"type": "listItem", "content": [para(json!([text("x")]))]},
            ]}]),
        ),
        ("🚨 ünïcödé 火事", json!([para(json!([text("🚨 ünïcödé 火事")]))])),
    ];
    for (source, expected) in rows {
        assert_eq!(Value::Array(render::markdown(source)), expected, "markdown: {source:?}");
    }
}

fn message() -> Message {
    Message {
        title: "P1: checkout is down\nin eu-west".to_owned(),
        body: "Payments **fail** since 10:02.".to_owned(),
        severity: Severity::Critical,
        fields: BTreeMap::from([("region".to_owned(), "eu-west-1".to_owned())]),
        links: vec![Link {
            title: "Runbook".to_owned(),
            url: "https://runbook.example/p1".to_owned(),
        }],
        tags: vec!["payments".to_owned(), "on call".to_owned(), "herald".to_owned()],
    }
}

#[test]
fn description_snapshot() {
    let expected = json!({"type": "doc", "version": 1, "content": [
        para(json!([marked("Severity: ", json!([{"type": "strong"}])), text("🚨 critical")])),
        para(json!([text("Payments "), marked("fail", json!([{"type": "strong"}])), text(" since 10:02.")])),
        {"type": "bulletList", "content": [{"type": "listItem", "content": [
            para(json!([marked("region: ", json!([{"type": "strong"}])), text("eu-west-1")])),
        ]}]},
        para(json!([marked("Links", json!([{"type": "strong"}]))])),
        {"type": "bulletList", "content": [{"type": "listItem", "content": [
            para(json!([marked("Runbook", json!([{"type": "link", "attrs": {"href": "https://runbook.example/p1"}}]))])),
        ]}]},
    ]});
    assert_eq!(render::description(&message()), expected);
    assert_eq!(render::summary(&message().title), "P1: checkout is down in eu-west");
    assert_eq!(render::labels(&message(), "d_1"), ["herald", "herald-d_1", "payments", "on-call"]);
}

#[test]
fn comment_snapshot_names_the_update_and_carries_the_marker() {
    let mut update = message();
    update.severity = Severity::Resolved;
    update.body = String::new();
    update.fields.clear();
    update.links.clear();
    let expected = json!({"type": "doc", "version": 1, "content": [
        para(json!([marked("Resolved (update 3): P1: checkout is down in eu-west", json!([{"type": "strong"}]))])),
        para(json!([marked("Severity: ", json!([{"type": "strong"}])), text("✅ resolved")])),
        para(json!([marked("sent by herald · herald-d_9", json!([{"type": "em"}]))])),
    ]});
    let comment = render::comment(&update, 3, "d_9");
    assert_eq!(comment, expected);
    assert!(render::has_marker(&comment, "herald-d_9"));
    assert!(!render::has_marker(&comment, "herald-d_90"));
    assert!(!render::has_marker(&comment, "herald-d"));
}

/// Found by the `render` fuzz target: a field with an empty value made an empty text
/// node, which ADF forbids (Jira refuses the issue with a 400).
#[test]
fn an_empty_field_value_leaves_no_empty_text_node() {
    let mut empty = message();
    empty.fields = BTreeMap::from([("region".to_owned(), String::new())]);
    let field = json!({"type": "bulletList", "content": [{"type": "listItem", "content": [
        para(json!([marked("region: ", json!([{"type": "strong"}]))])),
    ]}]});
    for doc in [render::description(&empty), render::comment(&empty, 1, "d_1")] {
        let blocks = doc["content"].as_array().cloned().unwrap_or_default();
        assert!(blocks.contains(&field), "{doc}");
        assert!(!doc.to_string().contains(r#""text":"""#), "{doc}");
    }
}

#[test]
fn summary_is_one_line_and_cut_to_255_characters() {
    let title = "🚨".repeat(300);
    let summary = render::summary(&title);
    assert_eq!(summary.chars().count(), render::SUMMARY_LIMIT);
    assert!(summary.starts_with('🚨') && summary.ends_with(TRUNCATION_MARKER));
    assert_eq!(render::summary("  \n "), "(untitled)");
}

#[test]
fn long_bodies_are_cut_under_jiras_limit_with_a_visible_marker() {
    let paragraphs = ["ünïcödé 🚨 **bold** `code` text"; 3000].join("\n\n");
    for body in [paragraphs, "x".repeat(100_000), format!("```\n{}\n```", "é".repeat(50_000))] {
        let mut long = message();
        long.body = body;
        for doc in [render::description(&long), render::comment(&long, 1, "d_1")] {
            let size = serde_json::to_string(&doc).map(|s| s.chars().count()).unwrap_or(usize::MAX);
            assert!(size <= render::TEXT_LIMIT, "{size}");
            let texts = render::texts(&doc).join("");
            assert!(texts.contains(TRUNCATION_MARKER), "no marker");
            assert!(size > render::TEXT_LIMIT * 3 / 4, "cut far too much: {size}");
        }
        assert!(render::has_marker(&render::comment(&long, 1, "d_1"), "herald-d_1"));
    }
}

/// Found by the `render` fuzz target's comment-marker property: fields and links over the
/// limit on their own made a bare paragraph of the body, so a follow-up comment lost its
/// marker (a retry after an ambiguous attempt would not find it and post it again), and
/// an issue lost its fields without a word.
#[test]
fn fields_too_long_for_jira_are_left_out_saying_so_and_the_marker_stays() {
    let mut wide = message();
    wide.fields = (0..40).map(|i| (format!("field {i}"), "v".repeat(1_000))).collect();
    for doc in [render::description(&wide), render::comment(&wide, 2, "d_7")] {
        let size = serde_json::to_string(&doc).map(|s| s.chars().count()).unwrap_or(usize::MAX);
        assert!(size <= render::TEXT_LIMIT, "{size}");
        let texts = render::texts(&doc).join("");
        assert!(texts.contains("40 field(s) and 1 link(s) are too long for Jira"), "{texts}");
        assert!(texts.contains("Payments "), "the body is kept: {texts}");
    }
    assert!(render::has_marker(&render::comment(&wide, 2, "d_7"), "herald-d_7"));
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            map.insert(name, value);
        }
    }
    map
}

/// One row per line of DESTINATIONS.md §4's classification, plus the 5xx variants.
#[test]
fn classification_table() {
    let limit_headers = [
        ("RateLimit-Reason", "jira-burst-based"),
        ("X-RateLimit-Limit", "10"),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", "2026-03-02T10:00:30Z"),
    ];
    struct Row {
        status: u16,
        retry_after: Option<u64>,
        headers: Vec<(&'static str, &'static str)>,
        body: &'static str,
        class: &'static str,
        after: Option<u64>,
        says: &'static str,
    }
    let row = |status, retry_after, body, class, after, says| Row {
        status,
        retry_after,
        headers: Vec::new(),
        body,
        class,
        after,
        says,
    };
    let rows = [
        row(
            400,
            None,
            r#"{"errorMessages":[],"errors":{"description":"CONTENT_LIMIT_EXCEEDED"}}"#,
            "permanent",
            None,
            "description: CONTENT_LIMIT_EXCEEDED",
        ),
        row(
            400,
            None,
            r#"{"errorMessages":[],"errors":{"comment":"The entered text is too long. It exceeds the allowed limit of 32767 characters."}}"#,
            "permanent",
            None,
            "exceeds the allowed limit of 32767 characters",
        ),
        row(
            400,
            None,
            r#"{"errorMessages":[],"errors":{"project":"Specify a valid project ID or key"}}"#,
            "permanent",
            None,
            "project: Specify a valid project ID or key",
        ),
        row(
            401,
            None,
            r#"{"errorMessages":["Client must be authenticated to access this resource."],"errors":{}}"#,
            "permanent",
            None,
            "Client must be authenticated",
        ),
        row(
            403,
            None,
            r#"{"errorMessages":["You do not have permission to create issues in this project."],"errors":{}}"#,
            "permanent",
            None,
            "You do not have permission",
        ),
        row(
            404,
            None,
            r#"{"errorMessages":["Issue does not exist or you do not have permission to see it."],"errors":{}}"#,
            "permanent",
            None,
            "Issue does not exist",
        ),
        row(
            410,
            None,
            r#"{"errorMessages":["The requested API has been removed."],"errors":{}}"#,
            "permanent",
            None,
            "has been removed",
        ),
        Row {
            headers: limit_headers.to_vec(),
            ..row(
                429,
                Some(30),
                r#"{"errorMessages":["Rate limit exceeded."]}"#,
                "throttled",
                Some(30),
                "RateLimit-Reason=jira-burst-based",
            )
        },
        row(
            503,
            Some(5),
            r#"{"errorMessages":["Service Unavailable"]}"#,
            "retry",
            Some(5),
            "Service Unavailable",
        ),
        row(503, None, "<html>busy</html>", "retry", None, "<html>busy</html>"),
        row(
            500,
            None,
            r#"{"errorMessages":["Internal server error"]}"#,
            "retry",
            None,
            "Internal server error",
        ),
        row(502, Some(2), "", "retry", Some(2), "HTTP 502"),
    ];
    for r in rows {
        let failure = Failure::new(
            r.status,
            r.retry_after.map(Duration::from_secs),
            &headers(&r.headers),
            r.body.as_bytes(),
        );
        let report = classify::report(&failure, "creating the issue");
        let outcome = &report.outcome;
        assert_eq!(outcome.class(), r.class, "HTTP {}: {outcome:?}", r.status);
        let after = match outcome {
            Outcome::Retry { after, .. } | Outcome::Throttled { after, .. } => *after,
            _ => None,
        };
        assert_eq!(after, r.after.map(Duration::from_secs), "HTTP {}", r.status);
        let reason = outcome.reason().unwrap_or_default();
        assert!(reason.contains(r.says), "HTTP {}: {reason}", r.status);
        assert_eq!(report.status, Some(r.status));
        if !r.headers.is_empty() {
            let detail = report.detail.unwrap_or_default();
            for (name, value) in &r.headers {
                assert!(detail.contains(&format!("{name}={value}")), "{detail}");
            }
        }
    }
}

#[test]
fn messages_are_bounded_and_fall_back_to_an_excerpt() {
    let long = format!(r#"{{"errorMessages":["{}"]}}"#, "x".repeat(5000));
    let message = classify::message(long.as_bytes());
    assert!(message.chars().count() <= 301 && message.ends_with('…'));
    assert_eq!(classify::message(b"plain\ntext"), "plain text");
    assert_eq!(classify::message(br#"{"errorMessages":["a"],"errors":{"f":"b"}}"#), "a; f: b");
}
