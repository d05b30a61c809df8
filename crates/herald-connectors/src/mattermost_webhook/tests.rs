//! Unit tests of the Mattermost incoming-webhook connector: one classification row per
//! line of shared/DESTINATIONS.md §11 (incoming webhook), the payload, config parse and
//! a secret-free `Debug`.

use std::time::Duration;

use herald_core::{Message, Outcome, Severity, Timestamp};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;

use super::{MattermostWebhookConfig, classify, payload};
use crate::{Request, Thread};

const NOW: Timestamp = Timestamp::from_millis(1_764_000_000_000);

#[test]
fn every_row_of_the_classification_table() {
    let err = |id: &str, status: u16| {
        json!({ "id": id, "message": "Unable to handle the incoming webhook.", "status_code": status }).to_string()
    };
    // (status, Retry-After, body, class)
    let rows: Vec<(u16, Option<&str>, String, &str)> = vec![
        (200, None, "ok".to_owned(), "delivered"),
        (400, None, err("web.incoming_webhook.parse.app_error", 400), "permanent"),
        (400, None, err("web.incoming_webhook.text.length.app_error", 400), "permanent"),
        (401, None, err("api.context.session_expired.app_error", 401), "permanent"),
        (403, None, err("web.incoming_webhook.channel_locked.app_error", 403), "permanent"),
        (404, None, err("web.incoming_webhook.invalid.app_error", 404), "permanent"),
        (429, Some("3"), "limit exceeded".to_owned(), "throttled"),
        (500, None, err("web.incoming_webhook.error", 500), "retry"),
        (503, None, String::new(), "retry"),
    ];
    for (status, retry_after, body, class) in rows {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert("retry-after", HeaderValue::from_static(v));
        }
        let outcome = classify(status, &headers, &body, NOW);
        assert_eq!(outcome.class(), class, "{status} {body}: {outcome:?}");
        if let Some(id) = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|b| b["id"].as_str().map(str::to_owned))
        {
            assert!(outcome.reason().unwrap_or("").contains(&id), "{outcome:?}");
        }
        if let Outcome::Throttled { after, .. } = outcome {
            assert_eq!(after, Some(Duration::from_secs(3)));
        }
    }
}

#[test]
fn the_payload_is_the_rest_kinds_markdown_and_an_update_says_so() {
    let message =
        Message { title: "db slow".to_owned(), severity: Severity::Warning, ..Message::default() };
    let mut request = Request {
        delivery_id: "d_1",
        broadcast_id: "b_1",
        destination: "mm",
        message: &message,
        thread: Thread::Original,
        attempt: 1,
        ambiguous: false,
        now: NOW,
        created_at: NOW,
        ambiguous_at: None,
    };
    assert_eq!(payload(&request), json!({ "text": "#### ⚠️ db slow\n\n`severity: warning`" }));
    request.thread = Thread::Update {
        seq: 1,
        in_reply_to: "d_0",
        original_remote_ref: None,
        original: &message,
        original_at: NOW,
    };
    assert_eq!(
        payload(&request),
        json!({ "text": "#### ⚠️ db slow (update 1)\n\n`severity: warning`" })
    );
}

#[test]
fn config_parses_and_never_shows_the_url() {
    let parsed = crate::kind_test_support::parse_strings(
        &super::KIND,
        &[("url", "https://mm.example.com/hooks/xyzSECRET")],
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!format!("{parsed:?}").contains("xyzSECRET"));
    assert_eq!(parsed.capabilities(), super::CAPABILITIES);
    let config = MattermostWebhookConfig::new("nope SECRET");
    assert!(
        config.problems().iter().all(|p| !p.contains("SECRET")) && !config.problems().is_empty()
    );
}
