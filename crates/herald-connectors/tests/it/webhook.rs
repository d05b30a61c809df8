//! The webhook connector against real loopback receivers: one test per answer or
//! failure class of DESIGN.md's outcome table, plus the headers that make retries safe.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_connectors::http::{self, ClientOptions, EXCERPT_LIMIT};
use herald_connectors::webhook::{Webhook, WebhookConfig};
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Message, Outcome, Severity, Timestamp};

use crate::receiver::{Misbehavior, RawServer, Scripted, TestReceiver, refused_url};

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) fn webhook_with(url: &str, client: http::Client) -> Webhook {
    let config = WebhookConfig {
        url: url.to_owned(),
        secret: Some(SECRET.to_owned()),
        headers: vec![("X-Team".to_owned(), "checkout".to_owned())],
    };
    Webhook::new(config, client).unwrap()
}

pub(crate) fn webhook(url: &str) -> Webhook {
    webhook_with(url, crate::client())
}

pub(crate) fn message() -> Message {
    Message {
        title: "P1: checkout is down".to_owned(),
        severity: Severity::Critical,
        ..Message::default()
    }
}

/// The wall clock, as the engine's `SystemClock` would give it: receivers (and the
/// Python verifier) check `webhook-timestamp` against their own clock.
#[allow(clippy::disallowed_methods, reason = "the verifier checks against the real clock")]
pub(crate) fn wall_clock() -> Timestamp {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Timestamp::from_millis(i64::try_from(since_epoch.as_millis()).unwrap())
}

pub(crate) fn request(message: &Message) -> Request<'_> {
    Request {
        delivery_id: "d_01JD0000000000000000000001",
        broadcast_id: "b_01JD0000000000000000000000",
        destination: "ops-webhook",
        message,
        thread: Thread::Original,
        attempt: 1,
        ambiguous: false,
        now: wall_clock(),
        created_at: wall_clock(),
        ambiguous_at: None,
    }
}

async fn send_to(url: &str) -> Report {
    let message = message();
    webhook(url).send(&request(&message)).await
}

#[tokio::test]
async fn a_2xx_is_delivered() {
    let mut receiver = TestReceiver::start(vec![Scripted::status(200).body("ok")]).await;
    let report = send_to(&receiver.url("/hook")).await;
    assert_eq!(
        report,
        Report {
            outcome: Outcome::delivered(None),
            status: Some(200),
            detail: Some("ok".to_owned()),
            pause: None
        }
    );

    let got = receiver.next().await;
    assert_eq!(got.path, "/hook");
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("x-team"), Some("checkout"));
    assert!(got.header("user-agent").unwrap().starts_with("herald/"));
    assert!(got.header("webhook-signature").unwrap().starts_with("v1,"));
    let event = got.json();
    assert_eq!(event["type"], "message.created");
    assert_eq!(event["data"]["delivery_id"], "d_01JD0000000000000000000001");
    assert_eq!(event["data"]["message"]["title"], "P1: checkout is down");
}

#[tokio::test]
async fn a_500_is_retried() {
    let receiver = TestReceiver::start(vec![Scripted::status(500).body("database on fire")]).await;
    let report = send_to(&receiver.url("/hook")).await;
    assert_eq!(report.status, Some(500));
    assert_eq!(report.detail.as_deref(), Some("database on fire"));
    let Outcome::Retry { reason, after: None } = &report.outcome else { panic!("{report:?}") };
    assert!(reason.starts_with("HTTP 500 Internal Server Error"), "{reason}");
    assert!(reason.contains("database on fire"), "{reason}");
}

#[tokio::test]
async fn a_429_with_retry_after_is_throttled_for_that_long() {
    let receiver =
        TestReceiver::start(vec![Scripted::status(429).header("retry-after", "7")]).await;
    let report = send_to(&receiver.url("/hook")).await;
    assert_eq!(report.status, Some(429));
    let Outcome::Throttled { after, .. } = &report.outcome else { panic!("{report:?}") };
    assert_eq!(*after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn a_503_with_a_retry_after_date_is_throttled_until_then() {
    let message = message();
    let mut request = request(&message);
    // A whole second, because HTTP-dates have no finer resolution.
    request.now = Timestamp::from_millis(1_795_953_723_000);
    let until = UNIX_EPOCH + Duration::from_millis(1_795_953_723_000 + 120_000);
    let receiver = TestReceiver::start(vec![
        Scripted::status(503).header("retry-after", httpdate::fmt_http_date(until)),
    ])
    .await;
    let report = webhook(&receiver.url("/hook")).send(&request).await;
    let Outcome::Throttled { after, .. } = &report.outcome else { panic!("{report:?}") };
    assert_eq!(*after, Some(Duration::from_secs(120)));
}

#[tokio::test]
async fn a_400_is_permanent() {
    let receiver =
        TestReceiver::start(vec![Scripted::status(400).body(r#"{"error":"missing field title"}"#)])
            .await;
    let report = send_to(&receiver.url("/hook")).await;
    assert_eq!(report.status, Some(400));
    let Outcome::Permanent { reason } = &report.outcome else { panic!("{report:?}") };
    assert_eq!(
        reason,
        r#"HTTP 400 Bad Request from the destination: it rejected the request as invalid (it said: "{"error":"missing field title"}")"#
    );
}

#[tokio::test]
async fn a_410_gone_is_permanent_and_pauses_the_destination() {
    let receiver = TestReceiver::start(vec![Scripted::status(410).body("gone")]).await;
    let report = send_to(&receiver.url("/hook")).await;
    assert_eq!((report.outcome.class(), report.status), ("permanent", Some(410)), "{report:?}");
    let pause = report.pause.unwrap_or_default();
    assert!(pause.contains("410 Gone") && pause.contains("resume"), "{pause}");
    // A 404 may be the receiver's answer to this one event: no pause.
    let receiver = TestReceiver::start(vec![Scripted::status(404)]).await;
    let report = send_to(&receiver.url("/hook")).await;
    assert_eq!((report.outcome.class(), report.pause), ("permanent", None));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let mut receiver = TestReceiver::start(vec![Scripted::status(200)]).await;
    let elsewhere = receiver.url("/elsewhere?token=T0KEN");
    let mut redirecting =
        TestReceiver::start(vec![Scripted::status(307).header("location", elsewhere)]).await;
    let report = send_to(&redirecting.url("/hook")).await;
    assert_eq!(report.status, Some(307));
    let Outcome::Permanent { reason } = &report.outcome else { panic!("{report:?}") };
    assert!(reason.contains(&format!("redirects to {},", receiver.base)), "{reason}");
    assert!(!reason.contains("T0KEN"), "{reason}");
    redirecting.next().await;
    assert!(redirecting.got_nothing_more());
    assert!(receiver.got_nothing_more(), "the redirect was followed");
}

#[tokio::test]
async fn a_refused_connection_is_retried() {
    let report = send_to(&refused_url()).await;
    assert_eq!(report.status, None);
    let Outcome::Retry { reason, after: None } = &report.outcome else { panic!("{report:?}") };
    assert!(
        reason.starts_with("could not connect to the destination, so nothing was sent: "),
        "{reason}"
    );
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert!(!reason.contains("127.0.0.1"), "the reason must not quote the URL: {reason}");
}

#[tokio::test]
async fn a_connection_dropped_after_the_request_is_unknown() {
    let mut server = RawServer::start(Misbehavior::DropAfterRequest).await;
    let report = send_to(&server.url).await;
    let request = server.next().await;
    assert!(String::from_utf8_lossy(&request).contains("\"type\":\"message.created\""));
    assert_eq!(report.status, None);
    let Outcome::Unknown { reason } = &report.outcome else { panic!("{report:?}") };
    assert!(
        reason.starts_with(
            "the connection failed after the request may have reached the destination"
        ),
        "{reason}"
    );
}

#[tokio::test]
async fn no_answer_runs_into_the_engines_timeout() {
    let mut server = RawServer::start(Misbehavior::NeverAnswer).await;
    let message = message();
    let webhook = webhook(&server.url);
    let request = request(&message);
    // The default client sets no total timeout: the engine bounds the attempt (and
    // records `Unknown`), so the send must still be pending when that bound fires.
    let res = tokio::time::timeout(Duration::from_millis(300), webhook.send(&request)).await;
    assert!(res.is_err(), "the send ended on its own: {res:?}");
    server.next().await;
}

#[tokio::test]
async fn the_clients_own_timeout_is_unknown() {
    let mut server = RawServer::start(Misbehavior::NeverAnswer).await;
    let options = ClientOptions { timeout: Some(Duration::from_millis(300)), ..crate::options() };
    let webhook = webhook_with(&server.url, http::client_with(&options).unwrap());
    let message = message();
    let report = tokio::time::timeout(Duration::from_secs(10), webhook.send(&request(&message)))
        .await
        .unwrap();
    server.next().await;
    assert_eq!(report.status, None);
    let Outcome::Unknown { reason } = &report.outcome else { panic!("{report:?}") };
    assert!(reason.starts_with("no answer from the destination in time"), "{reason}");
}

#[tokio::test]
async fn a_2xx_whose_body_stalls_is_still_delivered() {
    let _server_keeps_the_connection = {
        let server = RawServer::start(Misbehavior::StallBody).await;
        let report = send_to(&server.url).await;
        assert_eq!(report.outcome, Outcome::delivered(None));
        assert_eq!(report.status, Some(200));
        server
    };
}

#[tokio::test]
async fn a_huge_body_is_cut_to_an_excerpt() {
    let receiver = TestReceiver::start(vec![Scripted::status(404).body("z".repeat(4 << 20))]).await;
    let report = send_to(&receiver.url("/hook")).await;
    let detail = report.detail.unwrap();
    assert_eq!(detail.len(), EXCERPT_LIMIT + "…".len());
    assert!(report.outcome.reason().unwrap().len() < 400);
}

#[tokio::test]
async fn ids_stay_the_same_across_attempts() {
    let mut receiver =
        TestReceiver::start(vec![Scripted::status(503), Scripted::status(200)]).await;
    let webhook = webhook(&receiver.url("/hook"));
    let message = message();
    let mut request = request(&message);
    let first = webhook.send(&request).await;
    assert_eq!(first.outcome.class(), "retry");
    request.attempt = 2;
    request.now = request.now.add(Duration::from_secs(2));
    let second = webhook.send(&request).await;
    assert_eq!(second.outcome, Outcome::delivered(None));

    let (one, two) = (receiver.next().await, receiver.next().await);
    for got in [&one, &two] {
        assert_eq!(got.header("webhook-id"), Some("d_01JD0000000000000000000001"));
        assert_eq!(got.header("idempotency-key"), Some("d_01JD0000000000000000000001"));
    }
    // Each attempt carries its own timestamp, attempt number and signature.
    let timestamp = |got: &crate::receiver::Received| {
        got.header("webhook-timestamp").unwrap().parse::<i64>().unwrap()
    };
    assert_eq!(timestamp(&two) - timestamp(&one), 2);
    assert_eq!(one.json()["data"]["attempt"], 1);
    assert_eq!(two.json()["data"]["attempt"], 2);
    assert_ne!(one.header("webhook-signature"), two.header("webhook-signature"));
}
