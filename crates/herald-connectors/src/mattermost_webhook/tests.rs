//! Unit tests of the Mattermost incoming-webhook connector: one classification row per
//! line of shared/DESTINATIONS.md §11 (incoming webhook), the payload, config parse and
//! a secret-free `Debug`.

use std::time::Duration;

use herald_core::{Message, Outcome, Severity, Timestamp};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;

use super::{HOOKS_DISABLED, INVALID_HOOK, MattermostWebhookConfig, classify, pause, payload};
use crate::{Request, Thread};

const NOW: Timestamp = Timestamp::from_millis(1_764_000_000_000);

#[test]
fn every_row_of_the_classification_table() {
    let err = |id: &str, status: u16| {
        json!({ "id": id, "message": "Unable to handle the incoming webhook.", "status_code": status }).to_string()
    };
    // (status, Retry-After, body, class, pauses): the ids and statuses Mattermost's
    // HandleIncomingWebhook answers (server/channels/app/webhook.go).
    let rows: Vec<(u16, Option<&str>, String, &str, bool)> = vec![
        (200, None, "ok".to_owned(), "delivered", false),
        (400, None, err("web.incoming_webhook.parse.app_error", 400), "permanent", false),
        (400, None, err("web.incoming_webhook.text.app_error", 400), "permanent", false),
        (400, None, err("web.incoming_webhook.attachment.app_error", 400), "permanent", false),
        (400, None, err("web.incoming_webhook.invalid.app_error", 400), "permanent", true),
        (401, None, err("api.context.session_expired.app_error", 401), "permanent", false),
        (403, None, err("web.incoming_webhook.channel_locked.app_error", 403), "permanent", false),
        (403, None, err("web.incoming_webhook.permissions.app_error", 403), "permanent", true),
        (403, None, err("web.incoming_webhook.user.app_error", 403), "permanent", true),
        (404, None, err("app.channel.get.existing.app_error", 404), "permanent", true),
        (404, None, "404 page not found".to_owned(), "permanent", false),
        (429, Some("3"), "limit exceeded".to_owned(), "throttled", false),
        (500, None, err("web.incoming_webhook.error", 500), "retry", false),
        (501, None, err("web.incoming_webhook.disabled.app_error", 501), "permanent", true),
        (501, None, String::new(), "retry", false),
        (503, None, String::new(), "retry", false),
    ];
    for (status, retry_after, body, class, pauses) in rows {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert("retry-after", HeaderValue::from_static(v));
        }
        let outcome = classify(status, &headers, &body, NOW);
        assert_eq!(outcome.class(), class, "{status} {body}: {outcome:?}");
        assert_eq!(pause(status, &body).is_some(), pauses, "{status} {body}");
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
fn a_pause_says_what_the_operator_must_do() {
    let gone = json!({ "id": INVALID_HOOK, "message": "Invalid webhook.", "status_code": 400 });
    let reason = pause(400, &gone.to_string()).unwrap_or_default();
    assert!(reason.contains("HTTP 400 web.incoming_webhook.invalid.app_error"), "{reason}");
    assert!(reason.contains("working webhook `url`"), "{reason}");
    let off = json!({ "id": HOOKS_DISABLED, "message": "Incoming webhooks have been disabled by the system admin.", "status_code": 501 });
    let reason = pause(501, &off.to_string()).unwrap_or_default();
    assert!(reason.contains("administrator must turn incoming webhooks on"), "{reason}");
    // The same id under another status is not the documented answer.
    assert_eq!(pause(404, &gone.to_string()), None);
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
