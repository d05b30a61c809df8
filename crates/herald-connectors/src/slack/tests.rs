//! Unit tests of the Slack connector's pure parts: one classification row per line of
//! shared/DESTINATIONS.md §1, rendering snapshots, limits, and secret-free `Debug`.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::{Link, Message, Severity};
use serde_json::{Value, json};

use super::render::{self, Role};
use super::{
    CHANNEL_GONE, PERMANENT, SlackConfig, TOKEN_GONE, classify, parse_remote_ref, pause, remote_ref,
};
use crate::text::TRUNCATION_MARKER;

/// (HTTP status, Retry-After seconds, body, expected class, the reason must contain).
type Row = (u16, Option<u64>, &'static str, &'static str, &'static str);

const fn err(code: &'static str, class: &'static str) -> Row {
    (200, None, code, class, code)
}

/// One row per line of DESTINATIONS.md §1 "Errors" (P, R, A) and per success shape.
const TABLE: &[Row] = &[
    // success
    (200, None, r#"{"ok":true,"channel":"C1","ts":"1.000001"}"#, "delivered", ""),
    // P
    err("invalid_auth", "permanent"),
    err("not_authed", "permanent"),
    err("account_inactive", "permanent"),
    err("token_revoked", "permanent"),
    err("token_expired", "permanent"),
    err("missing_scope", "permanent"),
    err("no_permission", "permanent"),
    err("access_denied", "permanent"),
    err("channel_not_found", "permanent"),
    err("not_in_channel", "permanent"),
    err("is_archived", "permanent"),
    err("restricted_action", "permanent"),
    err("restricted_action_read_only_channel", "permanent"),
    err("msg_too_long", "permanent"),
    err("msg_blocks_too_long", "permanent"),
    err("no_text", "permanent"),
    err("invalid_blocks", "permanent"),
    err("invalid_blocks_format", "permanent"),
    err("invalid_arguments", "permanent"),
    err("invalid_metadata_format", "permanent"),
    err("invalid_metadata_schema", "permanent"),
    err("metadata_too_large", "permanent"),
    err("metadata_must_be_sent_from_app", "permanent"),
    err("too_many_attachments", "permanent"),
    err("invalid_form_data", "permanent"),
    err("invalid_post_type", "permanent"),
    err("ekm_access_denied", "permanent"),
    err("method_deprecated", "permanent"),
    err("message_limit_exceeded", "permanent"),
    // chat.update / conversations.replies
    err("cant_update_message", "permanent"),
    err("edit_window_closed", "permanent"),
    err("message_not_found", "permanent"),
    err("thread_not_found", "permanent"),
    // R
    (429, Some(30), r#"{"ok":false,"error":"ratelimited"}"#, "throttled", "ratelimited"),
    (429, None, "", "throttled", "ratelimited"),
    err("rate_limited", "throttled"),
    err("ratelimited", "throttled"),
    err("service_unavailable", "retry"),
    err("request_timeout", "retry"),
    err("team_added_to_org", "retry"),
    err("org_login_required", "retry"),
    (503, None, r#"{"ok":false,"error":"service_unavailable"}"#, "retry", "service_unavailable"),
    (502, None, "<html>bad gateway</html>", "retry", "502"),
    (503, Some(5), "", "throttled", "503"),
    // A
    err("internal_error", "unknown"),
    err("fatal_error", "unknown"),
    (500, None, r#"{"ok":false,"error":"fatal_error"}"#, "unknown", "fatal_error"),
    (200, None, "not json", "unknown", "without its JSON"),
    // an error herald does not know
    err("some_new_error", "retry"),
];

#[test]
fn every_row_of_the_classification_table() {
    for &(status, retry_after, body, class, needle) in TABLE {
        let text = if body.starts_with('{') || body.is_empty() || body.contains(' ') {
            body.to_owned()
        } else {
            format!(r#"{{"ok":false,"error":"{body}"}}"#)
        };
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let outcome =
            classify(status, retry_after.map(Duration::from_secs), parsed.as_ref(), &text);
        assert_eq!(outcome.class(), class, "{status} {body}: {outcome:?}");
        assert!(outcome.reason().unwrap_or("").contains(needle), "{status} {body}: {outcome:?}");
        if let Some(secs) = retry_after
            && let herald_core::Outcome::Throttled { after, .. } = &outcome
        {
            assert_eq!(*after, Some(Duration::from_secs(secs)));
        }
    }
}

/// An error code from outside is quoted shortened and on one line: a megabyte "code"
/// must not become a megabyte `last_error`.
#[test]
fn token_codes_always_pause_and_channel_codes_only_for_the_configured_channel() {
    for code in PERMANENT {
        let token = TOKEN_GONE.contains(code);
        let channel = CHANNEL_GONE.contains(code);
        assert_eq!(pause(code, true).is_some(), token || channel, "{code}");
        assert_eq!(pause(code, false).is_some(), token, "{code}");
    }
    for code in TOKEN_GONE.iter().chain(CHANNEL_GONE) {
        assert!(PERMANENT.contains(code), "{code} pauses but is not permanent");
    }
    let reason = pause("is_archived", true).unwrap_or_default();
    assert!(
        reason.contains("is_archived") && reason.contains("resume the destination"),
        "{reason}"
    );
    assert_eq!(pause("ratelimited", true), None);
}

#[test]
fn a_huge_or_multiline_error_code_is_quoted_short() {
    let body = serde_json::json!({"ok": false, "error": format!("x\n{}", "y".repeat(1 << 20))});
    let outcome = classify(200, None, Some(&body), "");
    let reason = outcome.reason().unwrap_or("");
    assert_eq!(outcome.class(), "retry", "{reason}");
    assert!(reason.len() < 400 && !reason.contains('\n'), "{} chars", reason.len());
}

#[test]
fn remote_refs_round_trip() {
    let r = remote_ref("C123", "1503435956.000247");
    assert_eq!(r, "C123:1503435956.000247");
    assert_eq!(parse_remote_ref(&r), Some(("C123", "1503435956.000247")));
    assert_eq!(parse_remote_ref("C123"), None);
    assert_eq!(parse_remote_ref(":1.2"), None);
}

#[test]
fn markdown_becomes_mrkdwn() {
    let cases = [
        (
            "# Title\n\nSome **bold** and *italic* and ~~gone~~.",
            "*Title*\n\nSome *bold* and _italic_ and ~gone~.",
        ),
        ("Use `a < b && c > d`", "Use `a &lt; b &amp;&amp; c &gt; d`"),
        (
            "See [the runbook](https://r.example/x?a=1&b=2) now",
            "See <https://r.example/x?a=1&b=2|the runbook> now",
        ),
        ("- one\n- two\n  - nested\n- three", "• one\n• two\n    • nested\n• three"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("> quoted\n> lines", "> quoted\n> lines"),
        ("```\nlet x = 1;\n```", "```\nlet x = 1;\n```"),
        ("Ünïcödé — 日本語 🚨🔥", "Ünïcödé — 日本語 🚨🔥"),
        ("line one\nline two", "line one\nline two"),
        ("<b>raw</b> html", "&lt;b&gt;raw&lt;/b&gt; html"),
        ("a\n\n---\n\nb", "a\n\n——————\n\nb"),
        ("[x|y](https://e.example)", "<https://e.example|x¦y>"),
        ("[mail](mailto:oncall@example.com)", "<mailto:oncall@example.com|mail>"),
    ];
    for (markdown, expected) in cases {
        assert_eq!(render::mrkdwn(markdown), expected, "{markdown:?}");
    }
}

/// Found by the `markdown` fuzz target: a link target is written into `<…>` markup, where
/// `!here`, `!channel`, `@U…` and `#C…` are mentions; such a link leaves just its text.
#[test]
fn a_link_to_anything_but_the_web_or_mail_mentions_nobody() {
    let cases = [
        ("[runbook](!channel)", "runbook"),
        ("[x](!here)", "x"),
        ("[on call](@U024BE7LH)", "on call"),
        ("[ops](#C0123456789)", "ops"),
        ("[](!everyone)", "!everyone"),
        ("![img](!subteam^S012)", "img"),
        ("[a <b>](javascript:alert(1))", "a &lt;b&gt;"),
    ];
    for (markdown, expected) in cases {
        assert_eq!(render::mrkdwn(markdown), expected, "{markdown:?}");
    }
}

fn incident() -> Message {
    Message {
        title: "Checkout is down 🔥".to_owned(),
        body: "**Impact:** all payments fail.\n\n- EU\n- US".to_owned(),
        severity: Severity::Critical,
        fields: BTreeMap::from([
            ("region".to_owned(), "eu-west-1".to_owned()),
            ("service".to_owned(), "checkout <api>".to_owned()),
        ]),
        links: vec![Link {
            title: "Runbook".to_owned(),
            url: "https://runbooks.example/checkout".to_owned(),
        }],
        tags: vec!["payments".to_owned()],
    }
}

#[test]
fn an_incident_renders_to_the_expected_blocks_and_text() {
    let message = incident();
    let expected = json!([
        { "type": "header", "text": { "type": "plain_text", "text": ":rotating_light: Checkout is down 🔥", "emoji": true } },
        { "type": "context", "elements": [{ "type": "mrkdwn", "text": "*Severity:* critical  ·  `payments`" }] },
        { "type": "section", "text": { "type": "mrkdwn", "text": "*Impact:* all payments fail.\n\n• EU\n• US" } },
        { "type": "section", "fields": [
            { "type": "mrkdwn", "text": "*region*\neu-west-1" },
            { "type": "mrkdwn", "text": "*service*\ncheckout &lt;api&gt;" },
        ] },
        { "type": "section", "text": { "type": "mrkdwn", "text": "<https://runbooks.example/checkout|Runbook>" } },
    ]);
    assert_eq!(render::blocks(&message, Role::Original), expected);
    assert_eq!(
        render::fallback_text(&message, Role::Original),
        ":rotating_light: *Checkout is down 🔥*\n*Impact:* all payments fail.\n\n• EU\n• US"
    );
    let reply = render::blocks(&message, Role::Reply { seq: 2 });
    assert_eq!(
        reply[1]["elements"][0]["text"],
        json!("*Severity:* critical  ·  update 2  ·  `payments`")
    );
    assert_eq!(
        render::fallback_text(&message, Role::Edit { seq: 3 }),
        ":rotating_light: [update 3] *Checkout is down 🔥*\n*Impact:* all payments fail.\n\n• EU\n• US"
    );
    assert_eq!(
        render::metadata("d-1"),
        json!({ "event_type": "herald_delivery", "event_payload": { "delivery_id": "d-1" } })
    );
}

/// Every text of the blocks, for the limits Slack checks.
fn texts(blocks: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for block in blocks.as_array().into_iter().flatten() {
        if let Some(t) = block["text"]["text"].as_str() {
            out.push(t.to_owned());
        }
        for f in block["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(block["elements"].as_array().into_iter().flatten())
        {
            if let Some(t) = f["text"].as_str() {
                out.push(t.to_owned());
            }
        }
    }
    out
}

#[test]
fn long_messages_are_cut_to_slacks_limits_with_a_visible_marker() {
    let message = Message {
        title: "🚨".repeat(400),
        body: format!("{}\n\n{}", "word ".repeat(5_000), "é".repeat(50_000)),
        severity: Severity::Error,
        fields: (0..60).map(|i| (format!("key{i:02}"), "v".repeat(300))).collect(),
        links: (0..100)
            .map(|i| Link { title: format!("link {i}"), url: format!("https://e.example/{i}") })
            .collect(),
        tags: Vec::new(),
    };
    let blocks = render::blocks(&message, Role::Original);
    let list = blocks.as_array().map(Vec::len).unwrap_or_default();
    assert!(list <= 50, "{list} blocks");
    let header = blocks[0]["text"]["text"].as_str().unwrap_or_default();
    assert!(header.chars().count() <= render::HEADER_LIMIT && header.ends_with(TRUNCATION_MARKER));
    let all = texts(&blocks);
    let total: usize = all.iter().map(|t| t.chars().count()).sum();
    assert!(total <= 13_000, "{total} chars of blocks");
    assert!(all.iter().any(|t| t.ends_with(TRUNCATION_MARKER)), "the body shows it was cut");
    assert!(all.iter().any(|t| t.starts_with(TRUNCATION_MARKER) && t.contains("more field")));
    assert!(all.iter().any(|t| t.contains("more link")));
    for block in blocks.as_array().into_iter().flatten() {
        if block["type"] == "section" {
            assert!(
                block["text"]["text"].as_str().unwrap_or_default().chars().count()
                    <= render::SECTION_LIMIT
            );
            assert!(block["fields"].as_array().map_or(0, Vec::len) <= render::FIELDS_PER_SECTION);
        }
    }
    let text = render::fallback_text(&message, Role::Original);
    assert_eq!(text.chars().count(), render::TEXT_LIMIT);
    assert!(text.ends_with(TRUNCATION_MARKER));
}

#[test]
fn debug_never_shows_the_token() {
    let config = SlackConfig::new("xoxb-very-secret-token", "C1");
    let shown = format!("{config:?}");
    assert!(!shown.contains("very-secret") && shown.contains("[redacted]"), "{shown}");
    assert!(
        SlackConfig::new("xoxb-1", "#general").problems().iter().any(|p| p.contains("channel"))
    );
    assert!(SlackConfig::new("", "C1").with_base_url("ftp://x").problems().len() == 2);
}
