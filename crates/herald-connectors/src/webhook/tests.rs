//! Unit tests of the webhook connector's pure parts: settings validation, the rendered
//! request (snapshots of an original and an update), redaction. Sending against real
//! receivers, and verifying signatures with the reference Python library, is in
//! `tests/it`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use herald_core::{Link, Message, Severity, Timestamp};
use reqwest::header::HeaderValue;

use super::*;
use crate::{Connector, Request, Thread};

/// The secret from the Standard Webhooks examples: 24 bytes.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// 2026-11-29T12:02:03Z.
const NOW: Timestamp = Timestamp::from_millis(1_795_953_723_000);

fn config() -> WebhookConfig {
    WebhookConfig {
        url: "https://hooks.example/herald/T0KEN".to_owned(),
        secret: Some(SECRET.to_owned()),
        headers: vec![("X-Team".to_owned(), "checkout".to_owned())],
    }
}

fn message() -> Message {
    Message {
        title: "P1: checkout is down".to_owned(),
        body: "Error rate **38 %** since 12:01.".to_owned(),
        severity: Severity::Critical,
        fields: BTreeMap::from([("service".to_owned(), "checkout".to_owned())]),
        links: vec![Link {
            title: "Runbook".to_owned(),
            url: "https://runbooks.example/checkout".to_owned(),
        }],
        tags: vec!["p1".to_owned()],
    }
}

fn request<'a>(message: &'a Message, thread: Thread<'a>, delivery_id: &'a str) -> Request<'a> {
    Request {
        delivery_id,
        broadcast_id: "b_01JD0000000000000000000000",
        destination: "ops-webhook",
        message,
        thread,
        attempt: 1,
        ambiguous: false,
        now: NOW,
        created_at: NOW,
        ambiguous_at: None,
    }
}

/// The request as text: method and URL, headers sorted by name, then the body.
fn snapshot(rendered: &RenderedRequest) -> String {
    let mut headers: Vec<String> = rendered
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
        .collect();
    headers.sort();
    format!(
        "POST {}\n{}\n\n{}",
        rendered.url,
        headers.join("\n"),
        std::str::from_utf8(&rendered.body).unwrap()
    )
}

fn invalid_setting(config: WebhookConfig) -> String {
    match Endpoint::parse(&config) {
        Err(crate::ConnectorError::InvalidSetting(message)) => message,
        Ok(endpoint) => panic!("expected an invalid setting, got {endpoint:?}"),
    }
}

#[test]
fn render_original() {
    let endpoint = Endpoint::parse(&config()).unwrap();
    let message = message();
    let rendered =
        render(&endpoint, &request(&message, Thread::Original, "d_01JD0000000000000000000001"))
            .unwrap();
    // The signature was checked independently with Python's hmac over
    // "<webhook-id>.<webhook-timestamp>.<body>" and the base64-decoded secret.
    assert_eq!(
        snapshot(&rendered),
        r#"POST https://hooks.example/herald/T0KEN
content-type: application/json
idempotency-key: d_01JD0000000000000000000001
webhook-id: d_01JD0000000000000000000001
webhook-signature: v1,8G5NF9i3jf3cs81Q1BaDjFpiUJgkkO696bbjIfz0TWw=
webhook-timestamp: 1795953723
x-team: checkout

{"type":"message.created","timestamp":"2026-11-29T12:02:03.000Z","data":{"broadcast_id":"b_01JD0000000000000000000000","delivery_id":"d_01JD0000000000000000000001","destination":"ops-webhook","attempt":1,"thread_seq":0,"in_reply_to":null,"original_remote_ref":null,"message":{"title":"P1: checkout is down","body":"Error rate **38 %** since 12:01.","severity":"critical","fields":{"service":"checkout"},"links":[{"title":"Runbook","url":"https://runbooks.example/checkout"}],"tags":["p1"]}}}"#
    );
}

#[test]
fn render_update() {
    let endpoint =
        Endpoint::parse(&WebhookConfig { secret: None, headers: vec![], ..config() }).unwrap();
    let message = Message {
        title: "Resolved: checkout is up".to_owned(),
        severity: Severity::Resolved,
        ..Message::default()
    };
    let original = Message { title: "Checkout is down".to_owned(), ..Message::default() };
    let thread = Thread::Update {
        seq: 2,
        in_reply_to: "d_01JD0000000000000000000001",
        original_remote_ref: Some("evt_42"),
        original: &original,
        original_at: NOW,
    };
    let mut req = request(&message, thread, "d_01JD0000000000000000000009");
    req.attempt = 3;
    let rendered = render(&endpoint, &req).unwrap();
    assert_eq!(
        snapshot(&rendered),
        r#"POST https://hooks.example/herald/T0KEN
content-type: application/json
idempotency-key: d_01JD0000000000000000000009
webhook-id: d_01JD0000000000000000000009
webhook-timestamp: 1795953723

{"type":"message.updated","timestamp":"2026-11-29T12:02:03.000Z","data":{"broadcast_id":"b_01JD0000000000000000000000","delivery_id":"d_01JD0000000000000000000009","destination":"ops-webhook","attempt":3,"thread_seq":2,"in_reply_to":"d_01JD0000000000000000000001","original_remote_ref":"evt_42","message":{"title":"Resolved: checkout is up","body":"","severity":"resolved"}}}"#
    );
}

#[test]
fn the_signature_verifies_with_the_standardwebhooks_crate() {
    let endpoint = Endpoint::parse(&config()).unwrap();
    let message = message();
    let rendered = render(&endpoint, &request(&message, Thread::Original, "d_1")).unwrap();
    let signature = rendered.headers["webhook-signature"].to_str().unwrap();
    let expected = standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .sign("d_1", NOW.as_millis() / 1000, &rendered.body)
        .unwrap();
    assert_eq!(signature, expected);
    assert!(rendered.headers["webhook-signature"].is_sensitive());
}

#[test]
fn ids_and_timestamps_follow_the_request() {
    let endpoint = Endpoint::parse(&config()).unwrap();
    let message = message();
    let mut req = request(&message, Thread::Original, "d_7");
    let first = render(&endpoint, &req).unwrap();
    req.attempt = 2;
    req.now = NOW.add(std::time::Duration::from_millis(61_500));
    let second = render(&endpoint, &req).unwrap();
    for rendered in [&first, &second] {
        assert_eq!(rendered.headers["webhook-id"], "d_7");
        assert_eq!(rendered.headers["idempotency-key"], "d_7");
    }
    assert_eq!(first.headers["webhook-timestamp"], "1795953723");
    assert_eq!(second.headers["webhook-timestamp"], "1795953784");
    assert_ne!(first.headers["webhook-signature"], second.headers["webhook-signature"]);
}

#[test]
fn render_rejects_ids_and_times_it_cannot_write() {
    let endpoint = Endpoint::parse(&config()).unwrap();
    let message = message();
    for id in ["", "d.1", "d\n1"] {
        let error = render(&endpoint, &request(&message, Thread::Original, id)).unwrap_err();
        assert!(matches!(error, RenderError::InvalidId(_)), "{id:?}: {error}");
    }
    for millis in [-1, 253_402_300_800_000, i64::MAX] {
        let mut req = request(&message, Thread::Original, "d_1");
        req.now = Timestamp::from_millis(millis);
        let error = render(&endpoint, &req).unwrap_err();
        assert!(matches!(error, RenderError::TimeOutOfRange(_)), "{millis}: {error}");
    }
    let mut req = request(&message, Thread::Original, "d_1");
    req.now = Timestamp::from_millis(253_402_300_799_999);
    render(&endpoint, &req).unwrap();
}

#[test]
fn valid_settings() {
    for (url, secret) in [
        ("http://127.0.0.1:8080/hook", None),
        ("https://hooks.example/", Some(SECRET)),
        // Unpadded base64 and a file's trailing newline are fine.
        ("https://hooks.example/", Some("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\n")),
        ("https://hooks.example/", Some("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
    ] {
        let config = WebhookConfig {
            url: url.to_owned(),
            secret: secret.map(str::to_owned),
            headers: vec![],
        };
        Endpoint::parse(&config).unwrap();
    }
}

#[test]
fn invalid_urls_are_named_but_not_echoed() {
    #[rustfmt::skip]
    let table = [
        ("not a url T0KEN", "webhook url: not a valid URL (relative URL without a base)"),
        ("ftp://files.example/T0KEN", "webhook url: must start with http:// or https://, not ftp:"),
        ("https://", "webhook url: not a valid URL (empty host)"),
        ("", "webhook url: not a valid URL (relative URL without a base)"),
    ];
    for (url, expected) in table {
        assert_eq!(invalid_setting(WebhookConfig { url: url.to_owned(), ..config() }), expected);
    }
}

#[test]
fn invalid_secrets_are_named_but_never_echoed() {
    #[rustfmt::skip]
    let table = [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "webhook secret: must be a Standard Webhooks secret, \"whsec_\" followed by base64 (the value given does not start with \"whsec_\")"),
        ("", "webhook secret: must be a Standard Webhooks secret, \"whsec_\" followed by base64 (the value given does not start with \"whsec_\")"),
        ("whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "webhook secret: ed25519 keys (whsk_/whpk_) are not supported; use a whsec_ secret"),
        ("whsec_MfKQ9r8GKYqr*wjUPD8ILPZIo2LaLaSw", "webhook secret: the part after \"whsec_\" is not valid base64"),
        ("whsec_c2hvcnQ=", "webhook secret: decodes to 5 bytes; Standard Webhooks secrets are 24 to 64 random bytes"),
        ("whsec_", "webhook secret: decodes to 0 bytes; Standard Webhooks secrets are 24 to 64 random bytes"),
    ];
    for (secret, expected) in table {
        let message =
            invalid_setting(WebhookConfig { secret: Some(secret.to_owned()), ..config() });
        assert_eq!(message, expected);
        if secret.len() > 6 {
            assert!(!message.contains(&secret[6..]), "{message}");
        }
    }
    let too_long = format!("whsec_{}", "A".repeat(88)); // 66 bytes
    assert_eq!(
        invalid_setting(WebhookConfig { secret: Some(too_long), ..config() }),
        "webhook secret: decodes to 66 bytes; Standard Webhooks secrets are 24 to 64 random bytes"
    );
}

#[test]
fn invalid_headers_are_named_but_values_not_echoed() {
    #[rustfmt::skip]
    let table = [
        ("X Bad", "v", "webhook header \"X Bad\": not a valid HTTP header name"),
        ("", "v", "webhook header \"\": not a valid HTTP header name"),
        ("Authorization", "Bearer s3cret\r\nX-Evil: 1", "webhook header \"Authorization\": the value is not a valid HTTP header value (line breaks or control characters)"),
        ("Webhook-Id", "x", "webhook header \"Webhook-Id\": herald sets this header itself; remove it from the destination's headers"),
        ("idempotency-key", "x", "webhook header \"idempotency-key\": herald sets this header itself; remove it from the destination's headers"),
        ("Content-Type", "text/plain", "webhook header \"Content-Type\": herald sets this header itself; remove it from the destination's headers"),
    ];
    for (name, value, expected) in table {
        let config =
            WebhookConfig { headers: vec![(name.to_owned(), value.to_owned())], ..config() };
        assert_eq!(invalid_setting(config), expected);
    }
}

#[test]
fn debug_output_never_shows_secrets() {
    let config = WebhookConfig {
        headers: vec![("Authorization".to_owned(), "Bearer s3cret-t0ken".to_owned())],
        ..config()
    };
    let endpoint = Endpoint::parse(&config).unwrap();
    let webhook = Webhook::new(config.clone(), crate::http::client()).unwrap();
    for text in [format!("{config:?}"), format!("{endpoint:?}"), format!("{webhook:?}")] {
        for secret in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "s3cret-t0ken", "T0KEN"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("hooks.example"), "{text}");
    }
    let message = message();
    let rendered = render(&endpoint, &request(&message, Thread::Original, "d_1")).unwrap();
    assert!(!format!("{rendered:?}").contains("s3cret-t0ken"));
}

#[test]
fn capabilities() {
    let webhook = Webhook::new(config(), crate::http::client()).unwrap();
    assert_eq!(webhook.kind(), "webhook");
    let capabilities = webhook.capabilities();
    assert!(capabilities.dedupe_by_key);
    assert!(!capabilities.lookup);
    assert!(!capabilities.edit);
    assert!(capabilities.thread_reply);
    assert!(capabilities.resolves_ambiguity());
}

#[test]
fn excerpts_never_repeat_configured_header_values() {
    let values =
        [HeaderValue::from_static("Bearer s3cret-t0ken"), HeaderValue::from_static("short")];
    let excerpt = r#"{"echo":{"authorization":"Bearer s3cret-t0ken","x":"short"}}"#;
    assert_eq!(
        classify::redact(excerpt, values.iter()),
        r#"{"echo":{"authorization":"[redacted]","x":"short"}}"#
    );
}

#[test]
fn only_410_gone_pauses_the_endpoint() {
    for status in 100..=599 {
        assert_eq!(classify::pause(status).is_some(), status == 410, "{status}");
    }
}
