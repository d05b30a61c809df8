//! Unit tests of the Discord connector's pure parts: one classification row per line of
//! shared/DESTINATIONS.md §8, rendering snapshots and limits, config parse, and a
//! secret-free `Debug`.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::{Link, Message, Severity, Timestamp};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::render::{self, Role};
use super::{Discord, DiscordConfig, classify};
use crate::text::TRUNCATION_MARKER;

const NOW: Timestamp = Timestamp::from_millis(1_764_000_000_000);

/// (status, headers, body, class, the reason must contain, the wait in ms if throttled)
type Row = (
    u16,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
    &'static str,
    Option<u64>,
);

/// One row per line of DESTINATIONS.md §8 (Post, Rate, Errors).
const TABLE: &[Row] = &[
    // Post: 200 with the message object (wait=true)
    (
        200,
        &[],
        r#"{"id":"1100000000000000001","channel_id":"9","content":"x"}"#,
        "delivered",
        "",
        None,
    ),
    // without wait=true: 204 and no id
    (204, &[], "", "unknown", "without the message's id", None),
    // Rate: the body's retry_after (float seconds) wins over the headers
    (
        429,
        &[("retry-after", "3"), ("x-ratelimit-reset-after", "2.5")],
        r#"{"message":"You are being rate limited.","retry_after":1.234,"global":false}"#,
        "throttled",
        "bucket",
        Some(1_234),
    ),
    (
        429,
        &[("x-ratelimit-global", "true"), ("x-ratelimit-scope", "global"), ("retry-after", "2")],
        r#"{"message":"You are being rate limited.","retry_after":0.5,"global":true}"#,
        "throttled",
        "global",
        Some(500),
    ),
    // no body (Cloudflare): Retry-After, else X-RateLimit-Reset-After
    (429, &[("retry-after", "7")], "<html>1015</html>", "throttled", "", Some(7_000)),
    (
        429,
        &[("x-ratelimit-reset-after", "0.25"), ("x-ratelimit-scope", "shared")],
        "",
        "throttled",
        "shared",
        Some(250),
    ),
    // Errors: P
    (
        400,
        &[],
        r#"{"code":50035,"message":"Invalid Form Body","errors":{}}"#,
        "permanent",
        "50035",
        None,
    ),
    (
        400,
        &[],
        r#"{"code":50006,"message":"Cannot send an empty message"}"#,
        "permanent",
        "50006",
        None,
    ),
    (
        401,
        &[],
        r#"{"code":50027,"message":"Invalid Webhook Token"}"#,
        "permanent",
        "Invalid Webhook Token",
        None,
    ),
    (
        403,
        &[],
        r#"{"code":50013,"message":"Missing Permissions"}"#,
        "permanent",
        "Missing Permissions",
        None,
    ),
    (
        404,
        &[],
        r#"{"code":10015,"message":"Unknown Webhook"}"#,
        "permanent",
        "Unknown Webhook",
        None,
    ),
    (404, &[], r#"{"code":10008,"message":"Unknown Message"}"#, "permanent", "deleted", None),
    (413, &[], "request entity too large", "permanent", "413", None),
    // R: 5xx
    (500, &[], r#"{"message":"500: Internal Server Error","code":0}"#, "retry", "500", None),
    (502, &[], "<html>bad gateway</html>", "retry", "502", None),
    (503, &[], "", "retry", "503", None),
];

#[test]
fn every_row_of_the_classification_table() {
    for &(status, headers, body, class, needle, wait) in TABLE {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_static(v));
        }
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let outcome = classify(status, &map, parsed.as_ref(), body, NOW);
        assert_eq!(outcome.class(), class, "{status} {body}: {outcome:?}");
        assert!(outcome.reason().unwrap_or("").contains(needle), "{status} {body}: {outcome:?}");
        match outcome {
            herald_core::Outcome::Throttled { after, .. } => {
                assert_eq!(after, wait.map(Duration::from_millis), "{status} {body}");
            }
            herald_core::Outcome::Delivered { remote_ref, .. } => {
                assert_eq!(remote_ref.as_deref(), Some("1100000000000000001"));
            }
            _ => assert_eq!(wait, None),
        }
    }
}

/// (status, body, what the pause reason must contain; `None`: no pause)
const PAUSES: &[(u16, &str, Option<&str>)] = &[
    (404, r#"{"code":10015,"message":"Unknown Webhook"}"#, Some("replace `url` and resume")),
    (401, r#"{"code":50027,"message":"Invalid Webhook Token"}"#, Some("Invalid Webhook Token")),
    // About one message, or not clearly about the webhook: no pause.
    (404, r#"{"code":10008,"message":"Unknown Message"}"#, None),
    (404, "<html>not found</html>", None),
    (404, r#"{"code":0,"message":"404: Not Found"}"#, None),
    (401, r#"{"code":0,"message":"401: Unauthorized"}"#, None),
    (403, r#"{"code":50013,"message":"Missing Permissions"}"#, None),
    (400, r#"{"code":50035,"message":"Invalid Form Body"}"#, None),
    (400, r#"{"code":10015,"message":"Unknown Webhook"}"#, None),
    (429, r#"{"message":"You are being rate limited.","retry_after":1.0,"global":false}"#, None),
    (200, r#"{"id":"1100000000000000001"}"#, None),
    (503, "", None),
];

#[test]
fn only_a_webhook_that_is_gone_pauses_the_destination() {
    for &(status, body, expected) in PAUSES {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let pause = super::pause(status, parsed.as_ref());
        match (expected, &pause) {
            (Some(needle), Some(reason)) => {
                assert!(reason.contains(needle), "{status} {body}: {reason}")
            }
            (None, None) => {}
            _ => panic!("{status} {body}: expected {expected:?}, got {pause:?}"),
        }
    }
}

#[test]
fn a_huge_or_odd_retry_after_is_capped_or_ignored() {
    let body = json!({ "retry_after": 1e12, "global": false });
    let outcome = classify(429, &HeaderMap::new(), Some(&body), "", NOW);
    assert!(
        matches!(outcome, herald_core::Outcome::Throttled { after: Some(d), .. } if d == crate::http::RETRY_AFTER_CAP)
    );
    let body = json!({ "retry_after": "soon" });
    let outcome = classify(429, &HeaderMap::new(), Some(&body), "", NOW);
    assert!(matches!(outcome, herald_core::Outcome::Throttled { after: None, .. }), "{outcome:?}");
}

fn full_message() -> Message {
    Message {
        title: "P1: checkout *down*".to_owned(),
        body: "Error rate **12%** on `checkout`.\n\n- step one\n- step two".to_owned(),
        severity: Severity::Critical,
        fields: BTreeMap::from([
            ("region".to_owned(), "eu-west-1".to_owned()),
            ("service".to_owned(), "checkout".to_owned()),
        ]),
        links: vec![Link {
            title: "Runbook".to_owned(),
            url: "https://runbooks.example/checkout".to_owned(),
        }],
        tags: vec!["payments".to_owned()],
    }
}

#[test]
fn rendering_snapshot_original_and_edit() {
    let message = full_message();
    assert_eq!(
        render::payload(&message, Role::Original),
        json!({
            "content": "🚨 **P1: checkout \\*down\\***",
            "embeds": [{
                "title": "P1: checkout *down*",
                "color": 0xE74C3C,
                "description": "Error rate **12%** on `checkout`.\n\n- step one\n- step two",
                "fields": [
                    { "name": "region", "value": "eu-west-1", "inline": true },
                    { "name": "service", "value": "checkout", "inline": true },
                    { "name": "Links", "value": "[Runbook](https://runbooks.example/checkout)", "inline": false },
                ],
                "footer": { "text": "severity: critical · tags: payments" },
            }],
            "allowed_mentions": { "parse": [] },
        })
    );
    let mut resolved = full_message();
    resolved.severity = Severity::Resolved;
    resolved.fields.clear();
    resolved.links.clear();
    resolved.tags.clear();
    resolved.body = String::new();
    assert_eq!(
        render::payload(&resolved, Role::Edit { seq: 2 }),
        json!({
            "content": "✅ **P1: checkout \\*down\\*** (update 2)",
            "embeds": [{
                "title": "P1: checkout *down*",
                "color": 0x2ECC71,
                "footer": { "text": "severity: resolved · edited: update 2" },
            }],
            "allowed_mentions": { "parse": [] },
        })
    );
}

#[test]
fn everything_fits_discords_limits_with_a_visible_marker() {
    let message = Message {
        title: "t".repeat(5_000),
        body: "b".repeat(10_000),
        severity: Severity::Warning,
        fields: (0..60).map(|i| (format!("key{i:02}"), "v".repeat(2_000))).collect(),
        links: (0..100)
            .map(|i| Link { title: format!("link {i}"), url: format!("https://x.example/{i}") })
            .collect(),
        tags: (0..200).map(|i| format!("tag{i}")).collect(),
    };
    let payload = render::payload(&message, Role::Edit { seq: 1 });
    let content = payload["content"].as_str().unwrap_or_default();
    assert!(content.chars().count() <= render::CONTENT_LIMIT);
    let embed = &payload["embeds"][0];
    assert!(
        render::embed_chars(embed) <= render::EMBED_TOTAL_LIMIT,
        "{}",
        render::embed_chars(embed)
    );
    let title = embed["title"].as_str().unwrap_or_default();
    assert!(title.chars().count() <= render::TITLE_LIMIT && title.ends_with(TRUNCATION_MARKER));
    let description = embed["description"].as_str().unwrap_or_default();
    assert!(description.chars().count() <= render::DESCRIPTION_LIMIT);
    assert!(description.ends_with(TRUNCATION_MARKER));
    let fields = embed["fields"].as_array().cloned().unwrap_or_default();
    assert!(fields.len() <= render::MAX_FIELDS);
    for field in &fields {
        assert!(
            field["name"].as_str().unwrap_or_default().chars().count() <= render::FIELD_NAME_LIMIT
        );
        assert!(
            field["value"].as_str().unwrap_or_default().chars().count()
                <= render::FIELD_VALUE_LIMIT
        );
    }
    let text: Vec<&str> = fields.iter().filter_map(|f| f["value"].as_str()).collect();
    assert!(text.iter().any(|v| v.contains("more field(s)")), "{text:?}");
    assert!(text.iter().any(|v| v.contains("more link(s)")), "{text:?}");
    assert!(embed["footer"]["text"].as_str().unwrap_or_default().ends_with(TRUNCATION_MARKER));
}

/// Parses `pairs` (string values) as a `discord` table; the problems' messages on failure.
fn parse(pairs: &[(&str, &str)]) -> Result<crate::ConnectorConfig, Vec<String>> {
    crate::kind_test_support::parse_strings(&super::KIND, pairs)
}

#[test]
fn config_parses_and_rejects_a_bad_url_without_showing_it() {
    let config = parse(&[("url", "https://discord.com/api/webhooks/123/abcSECRET")])
        .unwrap_or_else(|e| panic!("{e:?}"));
    let shown = format!("{config:?}");
    assert!(!shown.contains("abcSECRET"), "{shown}");
    assert_eq!(config.kind(), "discord");
    assert_eq!(config.capabilities(), super::CAPABILITIES);
    let errors = parse(&[("url", "ftp://nope/SECRET")]).err().unwrap_or_default();
    assert!(errors.iter().any(|e| e.contains("url")), "{errors:?}");
    assert!(errors.iter().all(|e| !e.contains("SECRET")), "{errors:?}");
    let errors = parse(&[]).err().unwrap_or_default();
    assert!(errors.iter().any(|e| e.contains("url")), "{errors:?}");
}

#[test]
fn urls_carry_wait_true_and_edits_keep_the_thread() {
    let hook = Discord::new(
        DiscordConfig::new("https://discord.com/api/webhooks/1/tok?thread_id=77&wait=false"),
        crate::http::client(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        hook.execute_url().as_str(),
        "https://discord.com/api/webhooks/1/tok?thread_id=77&wait=true"
    );
    assert_eq!(
        hook.message_url("42").map(|u| u.to_string()).as_deref(),
        Some("https://discord.com/api/webhooks/1/tok/messages/42?thread_id=77")
    );
    assert!(!format!("{hook:?}").contains("tok"));
}
