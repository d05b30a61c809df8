//! Unit tests of the Mattermost REST connector's pure parts: one classification row per
//! line of shared/DESTINATIONS.md §11 (REST and rate limiting), the rendering snapshot
//! and limits, config parse, and a secret-free `Debug`.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::{Link, Message, Outcome, Severity, Timestamp};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::render::{self, Role};
use super::{MattermostConfig, UpdateMode, classify, pending_post_id};
use crate::text::TRUNCATION_MARKER;

const NOW: Timestamp = Timestamp::from_millis(1_764_000_000_000);
const POST_ID: &str = "8kq6ahf7ujn9ipwu3ec7g4tznw";

/// (status, headers, body, class, the reason must contain, the wait in seconds if throttled)
type Row =
    (u16, &'static [(&'static str, &'static str)], String, &'static str, &'static str, Option<u64>);

fn app_error(id: &str, message: &str, status: u16) -> String {
    json!({ "id": id, "message": message, "detailed_error": "", "request_id": "r1", "status_code": status })
        .to_string()
}

#[test]
fn every_row_of_the_classification_table() {
    let created = json!({ "id": POST_ID, "channel_id": "c", "message": "m" }).to_string();
    // (status, headers, body, class, the reason must contain, the wait in seconds if throttled)
    let rows: Vec<Row> = vec![
        // REST: 201 post {id}
        (201, &[], created.clone(), "delivered", "", None),
        // PUT/PATCH post answers 200 with the post
        (200, &[], created, "delivered", "", None),
        (201, &[], "{}".to_owned(), "unknown", "without the post's id", None),
        // P 400/401/403/404
        (
            400,
            &[],
            app_error("api.post.create_post.root_id.app_error", "Invalid RootId parameter", 400),
            "permanent",
            "Invalid RootId",
            None,
        ),
        (
            400,
            &[],
            app_error("model.post.is_valid.msg.app_error", "Invalid Message", 400),
            "permanent",
            "Invalid Message",
            None,
        ),
        (
            401,
            &[],
            app_error(
                "api.context.session_expired.app_error",
                "Invalid or expired session, please login again.",
                401,
            ),
            "permanent",
            "session",
            None,
        ),
        (
            403,
            &[],
            app_error(
                "api.context.permissions.app_error",
                "You do not have the appropriate permissions.",
                403,
            ),
            "permanent",
            "permissions",
            None,
        ),
        (
            404,
            &[],
            app_error(
                "app.channel.get.existing.app_error",
                "Unable to find the existing channel.",
                404,
            ),
            "permanent",
            "channel",
            None,
        ),
        (413, &[], "request too large".to_owned(), "permanent", "413", None),
        // Rate limiting: 429 + X-Ratelimit-*
        (
            429,
            &[
                ("x-ratelimit-limit", "10"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "4"),
            ],
            "limit exceeded".to_owned(),
            "throttled",
            "429",
            Some(4),
        ),
        (
            429,
            &[("retry-after", "2"), ("x-ratelimit-reset", "9")],
            "limit exceeded".to_owned(),
            "throttled",
            "429",
            Some(2),
        ),
        // pending_post_id: a concurrent duplicate create → retry with the same id
        (
            500,
            &[],
            app_error(
                "api.post.deduplicate_create_post.pending",
                "Post rejected: a duplicate is being created",
                500,
            ),
            "retry",
            "same pending_post_id",
            None,
        ),
        // R 5xx
        (
            500,
            &[],
            app_error("app.post.save.app_error", "Unable to save the post.", 500),
            "retry",
            "500",
            None,
        ),
        (502, &[], "<html>bad gateway</html>".to_owned(), "retry", "502", None),
        (503, &[], String::new(), "retry", "503", None),
    ];
    for (status, headers, body, class, needle, wait) in rows {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_static(v));
        }
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let outcome = classify(status, &map, parsed.as_ref(), &body, NOW);
        assert_eq!(outcome.class(), class, "{status} {body}: {outcome:?}");
        assert!(outcome.reason().unwrap_or("").contains(needle), "{status} {body}: {outcome:?}");
        match outcome {
            Outcome::Throttled { after, .. } => assert_eq!(after, wait.map(Duration::from_secs)),
            Outcome::Delivered { remote_ref, .. } => {
                assert_eq!(remote_ref.as_deref(), Some(POST_ID))
            }
            _ => assert_eq!(wait, None),
        }
    }
}

fn full_message() -> Message {
    Message {
        title: "P1: checkout *down*".to_owned(),
        body: "Error rate **12%** on `checkout`.\n\n- step one".to_owned(),
        severity: Severity::Critical,
        fields: BTreeMap::from([
            ("region".to_owned(), "eu|west".to_owned()),
            ("service".to_owned(), "checkout".to_owned()),
        ]),
        links: vec![Link {
            title: "Runbook".to_owned(),
            url: "https://runbooks.example/x".to_owned(),
        }],
        tags: vec!["payments".to_owned()],
    }
}

#[test]
fn rendering_snapshot() {
    let message = full_message();
    assert_eq!(
        render::text(&message, Role::Original),
        "#### 🚨 P1: checkout \\*down\\*\n\n\
         Error rate **12%** on `checkout`.\n\n- step one\n\n\
         | Field | Value |\n|---|---|\n| region | eu\\|west |\n| service | checkout |\n\n\
         [Runbook](https://runbooks.example/x)\n\n\
         `severity: critical` · tags: `payments`"
    );
    let mut resolved =
        Message { title: "ok".to_owned(), severity: Severity::Resolved, ..Message::default() };
    assert_eq!(
        render::text(&resolved, Role::Reply { seq: 2 }),
        "#### ✅ ok (update 2)\n\n`severity: resolved`"
    );
    resolved.title = "again".to_owned();
    assert_eq!(
        render::text(&resolved, Role::Edit { seq: 3 }),
        "#### ✅ again (edited: update 3)\n\n`severity: resolved`"
    );
    assert_eq!(render::props("d_1"), json!({ "herald_delivery_id": "d_1" }));
    assert_eq!(pending_post_id("d_1"), "herald:d_1");
}

#[test]
fn a_huge_message_fits_one_post_with_a_visible_marker() {
    let message = Message {
        title: "t".repeat(1_000),
        body: "b".repeat(40_000),
        severity: Severity::Warning,
        fields: (0..500).map(|i| (format!("key{i:03}"), "v".repeat(50))).collect(),
        links: (0..200)
            .map(|i| Link { title: format!("l{i}"), url: format!("https://x.example/{i}") })
            .collect(),
        tags: (0..100).map(|i| format!("tag{i}")).collect(),
    };
    let text = render::text(&message, Role::Original);
    assert!(text.chars().count() <= render::POST_LIMIT, "{}", text.chars().count());
    assert!(text.contains(TRUNCATION_MARKER));
    assert!(text.contains("more field(s)") && text.contains("more link(s)"));
    assert!(text.starts_with("#### ⚠️ ttt"));
}

fn parse(pairs: &[(&str, &str)]) -> Result<crate::ConnectorConfig, Vec<String>> {
    crate::kind_test_support::parse_strings(&super::KIND, pairs)
}

#[test]
fn config_parses_checks_the_channel_id_and_hides_the_token() {
    let config = parse(&[
        ("url", "https://mm.example.com/"),
        ("token", "tokSECRET"),
        ("channel_id", "4xp9fdt77pncbef59f4k1qe83o"),
        ("update_mode", "edit"),
    ])
    .unwrap_or_else(|e| panic!("{e:?}"));
    let settings = config.downcast_ref::<MattermostConfig>().cloned();
    let expected =
        MattermostConfig::new("https://mm.example.com", "tokSECRET", "4xp9fdt77pncbef59f4k1qe83o")
            .with_update_mode(UpdateMode::Edit);
    assert_eq!(settings, Some(expected));
    assert!(!format!("{config:?}").contains("tokSECRET"));
    let errors =
        parse(&[("url", "https://mm.example.com"), ("token", "t"), ("channel_id", "town-square")])
            .err()
            .unwrap_or_default();
    assert!(errors.iter().any(|e| e.starts_with("channel_id")), "{errors:?}");
    let errors = parse(&[]).err().unwrap_or_default();
    for key in ["url", "token", "channel_id"] {
        assert!(errors.iter().any(|e| e.starts_with(key)), "{key}: {errors:?}");
    }
}
