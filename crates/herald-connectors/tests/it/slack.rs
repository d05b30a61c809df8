//! The `slack` and `slack-webhook` connectors against the simulator's Slack dialect on
//! loopback: the classification tables over HTTP, reconciliation of ambiguous attempts by
//! look-up (exactly one copy), permanent errors naming Slack's code, thread and edit
//! updates, and the webhook's text-body errors.

use std::time::Duration;

use herald_connectors::slack::{self, Slack, SlackConfig, UpdateMode};
use herald_connectors::slack_webhook::{SlackWebhook, SlackWebhookConfig};
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Message, Outcome};
use herald_simulator::{FaultPlan, SimView, Simulator, SlackFault};

use crate::webhook::{message, request, wall_clock};

const CHANNEL: &str = "C0HERALD01";
const TOKEN: &str = "xoxb-test";

async fn simulator(plan: FaultPlan) -> (Simulator, SimView) {
    let sim = Simulator::start(vec![("ws".to_owned(), plan)]).await.unwrap();
    let view = sim.view();
    (sim, view)
}

fn connector(view: &SimView, token: &str, channel: &str, mode: UpdateMode) -> Slack {
    let config = SlackConfig::new(token, channel)
        .with_base_url(&view.slack_api_url("ws"))
        .with_update_mode(mode);
    Slack::new(config, crate::client()).unwrap()
}

/// One attempt bounded as the engine bounds it: past `limit` it is `Unknown`.
async fn attempt(connector: &dyn Connector, request: &Request<'_>) -> Report {
    match tokio::time::timeout(Duration::from_millis(500), connector.send(request)).await {
        Ok(report) => report,
        Err(_) => Report {
            outcome: Outcome::Unknown { reason: "timed out".to_owned() },
            status: None,
            detail: None,
            pause: None,
        },
    }
}

fn remote(report: &Report) -> String {
    match &report.outcome {
        Outcome::Delivered { remote_ref: Some(r), .. } => r.clone(),
        other => panic!("not delivered with a ref: {other:?}"),
    }
}

#[tokio::test]
async fn every_slack_error_code_over_http_is_classified_per_the_table() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false)).await;
    let slack = connector(&view, TOKEN, CHANNEL, UpdateMode::Thread);
    let message = message();
    let mut rows: Vec<(u16, &str, &str)> = Vec::new();
    rows.extend(slack::PERMANENT.iter().map(|c| (200, *c, "permanent")));
    rows.extend(slack::RETRYABLE.iter().map(|c| (200, *c, "retry")));
    rows.extend(slack::THROTTLED.iter().map(|c| (200, *c, "throttled")));
    rows.extend(slack::AMBIGUOUS.iter().map(|c| (200, *c, "unknown")));
    rows.extend([(429, "ratelimited", "throttled"), (503, "service_unavailable", "retry")]);
    for (status, code, class) in rows {
        view.slack_inject("ws", SlackFault::new("chat.postMessage", status, code));
        let report = attempt(&slack, &request(&message)).await;
        assert_eq!(report.outcome.class(), class, "{status} {code}: {report:?}");
        assert!(report.outcome.reason().unwrap_or("").contains(code), "{code}: {report:?}");
        assert_eq!(report.status, Some(status));
        let gone = slack::TOKEN_GONE.contains(&code) || slack::CHANNEL_GONE.contains(&code);
        assert_eq!(report.pause.is_some(), gone, "{code}: {report:?}");
    }
    assert!(view.slack_messages("ws").is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn permanent_errors_fail_at_once_with_slacks_code() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false)).await;
    let message = message();
    for (token, channel, code) in [
        ("xoxb-bad", CHANNEL, "invalid_auth"),
        ("xoxb-revoked", CHANNEL, "token_revoked"),
        (TOKEN, "CMISSING42", "channel_not_found"),
        (TOKEN, "CNOTIN42", "not_in_channel"),
        (TOKEN, "CARCHIVED42", "is_archived"),
    ] {
        let slack = connector(&view, token, channel, UpdateMode::Thread);
        let report = attempt(&slack, &request(&message)).await;
        let Outcome::Permanent { reason } = &report.outcome else { panic!("{code}: {report:?}") };
        assert!(reason.contains(code), "{reason}");
        // The token or the configured channel: every delivery would fail alike.
        let pause = report.pause.as_deref().unwrap_or_default();
        assert!(pause.contains(code) && pause.contains("resume the destination"), "{report:?}");
        assert!(!pause.contains(token), "{pause}");
        assert!(!reason.contains(token) && !report.detail.unwrap_or_default().contains("xoxb"));
    }
    assert_eq!(view.slack_stats("ws").refused, 5);
    assert!(view.slack_messages("ws").is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_post_stored_then_hung_is_found_by_the_next_attempt() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false).hang_first(1)).await;
    let slack = connector(&view, TOKEN, CHANNEL, UpdateMode::Thread);
    let message = message();
    let mut req = request(&message);
    let first = attempt(&slack, &req).await;
    assert_eq!(first.outcome.class(), "unknown");
    req.attempt = 2;
    req.ambiguous = true;
    req.now = wall_clock();
    let second = attempt(&slack, &req).await;
    let stored = view.slack_messages("ws");
    assert_eq!(stored.len(), 1, "exactly one copy");
    assert_eq!(remote(&second), format!("{CHANNEL}:{}", stored[0].ts));
    assert_eq!(stored[0].delivery_id(), Some(req.delivery_id));
    assert_eq!(view.copies_of("ws", req.delivery_id), 1);
    assert_eq!(view.slack_stats("ws").history_calls, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn internal_error_after_storing_is_reconciled_to_one_copy() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false)).await;
    let slack = connector(&view, TOKEN, CHANNEL, UpdateMode::Thread);
    view.slack_inject(
        "ws",
        SlackFault::new("chat.postMessage", 200, "internal_error").after_storing(),
    );
    let message = message();
    let mut req = request(&message);
    let first = attempt(&slack, &req).await;
    let Outcome::Unknown { reason } = &first.outcome else { panic!("{first:?}") };
    assert!(reason.contains("internal_error"));
    req.attempt = 2;
    req.ambiguous = true;
    let second = attempt(&slack, &req).await;
    let stored = view.slack_messages("ws");
    assert_eq!(stored.len(), 1);
    assert_eq!(remote(&second), format!("{CHANNEL}:{}", stored[0].ts));
    sim.shutdown().await;
}

#[tokio::test]
async fn an_ambiguous_attempt_with_nothing_stored_posts_once() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false)).await;
    view.slack_inject("ws", SlackFault::new("chat.postMessage", 200, "fatal_error"));
    let slack = connector(&view, TOKEN, CHANNEL, UpdateMode::Thread);
    let message = message();
    let mut req = request(&message);
    assert_eq!(attempt(&slack, &req).await.outcome.class(), "unknown");
    req.ambiguous = true;
    req.attempt = 2;
    let second = attempt(&slack, &req).await;
    let stored = view.slack_messages("ws");
    assert_eq!(stored.len(), 1);
    assert_eq!(remote(&second), format!("{CHANNEL}:{}", stored[0].ts));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rate_limited_lookup_is_reconciling_after_retry_after_and_posts_nothing() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false).hang_first(1)).await;
    let slack = connector(&view, TOKEN, CHANNEL, UpdateMode::Thread);
    let message = message();
    let mut req = request(&message);
    assert_eq!(attempt(&slack, &req).await.outcome.class(), "unknown");
    view.slack_rate_limit_reads("ws", 0, Duration::from_secs(9));
    req.ambiguous = true;
    req.attempt = 2;
    let report = attempt(&slack, &req).await;
    let Outcome::Reconciling { after, reason } = &report.outcome else { panic!("{report:?}") };
    assert_eq!(*after, Duration::from_secs(9));
    assert!(reason.contains("ratelimited"), "{reason}");
    assert_eq!(view.slack_messages("ws").len(), 1);
    assert_eq!(view.requests("ws"), 1, "no second post");
    sim.shutdown().await;
}

/// herald keeps its own look-up reads under `history_rate_limit` (Slack limits
/// `conversations.history` per method, apart from posting): a read beyond it waits on
/// the engine's clock as `Reconciling` without calling Slack, and goes once the pace
/// allows.
#[tokio::test]
async fn look_up_reads_keep_to_their_own_rate_limit() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false).hang_first(1)).await;
    let one_per_minute =
        herald_core::RateLimit { count: std::num::NonZeroU32::MIN, per: Duration::from_secs(60) };
    let config = SlackConfig::new(TOKEN, CHANNEL)
        .with_base_url(&view.slack_api_url("ws"))
        .with_history_rate_limit(one_per_minute);
    let slack = Slack::new(config, crate::client()).unwrap();
    let (first, second) = (message(), Message { title: "P2".into(), ..message() });
    let mut a = request(&first);
    let mut b = Request { delivery_id: "d_01JD0000000000000000000002", ..request(&second) };
    assert_eq!(attempt(&slack, &a).await.outcome.class(), "unknown");
    assert_eq!(attempt(&slack, &b).await.outcome.class(), "unknown", "each first post hangs");
    for req in [&mut a, &mut b] {
        req.ambiguous = true;
        req.attempt = 2;
    }
    // The first look-up reads; the second, at the same instant, must wait a minute.
    assert_eq!(attempt(&slack, &a).await.outcome.class(), "delivered");
    let report = attempt(&slack, &b).await;
    let Outcome::Reconciling { after, reason } = &report.outcome else { panic!("{report:?}") };
    assert_eq!(*after, Duration::from_secs(60));
    assert!(reason.contains("history_rate_limit"), "{reason}");
    assert_eq!(view.slack_stats("ws").history_calls, 1, "the paced read reached Slack");
    // A minute later on the engine's clock, the read goes.
    b.now = b.now.add(Duration::from_secs(60));
    assert_eq!(attempt(&slack, &b).await.outcome.class(), "delivered");
    assert_eq!(view.slack_stats("ws").history_calls, 2);
    assert_eq!(view.slack_messages("ws").len(), 2, "no message was posted twice");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_lookup_pages_through_history_with_the_cursor() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false)).await;
    view.slack_inject(
        "ws",
        SlackFault::new("chat.postMessage", 200, "internal_error").after_storing(),
    );
    let slack = connector(&view, TOKEN, CHANNEL, UpdateMode::Thread);
    let message = message();
    let mut req = request(&message);
    assert_eq!(attempt(&slack, &req).await.outcome.class(), "unknown");
    // Newer messages push ours past the first page (200 per page).
    let ids: Vec<String> = (0..210).map(|i| format!("d_other_{i:03}")).collect();
    for id in &ids {
        let mut other = request(&message);
        other.delivery_id = id;
        assert_eq!(attempt(&slack, &other).await.outcome.class(), "delivered");
    }
    req.ambiguous = true;
    req.attempt = 2;
    let report = attempt(&slack, &req).await;
    assert_eq!(report.outcome.class(), "delivered", "{report:?}");
    assert_eq!(view.copies_of("ws", req.delivery_id), 1);
    assert_eq!(view.slack_stats("ws").history_calls, 2);
    sim.shutdown().await;
}

fn update<'a>(
    message: &'a Message,
    original: &'a Message,
    original_ref: &'a str,
    seq: u32,
    id: &'a str,
) -> Request<'a> {
    let mut req = request(message);
    req.delivery_id = id;
    req.thread = Thread::Update {
        seq,
        in_reply_to: "d_01JD0000000000000000000001",
        original_remote_ref: Some(original_ref),
        original,
        original_at: wall_clock(),
    };
    req
}

#[tokio::test]
async fn only_errors_about_the_token_or_the_configured_channel_pause_the_destination() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false)).await;
    let message = message();
    // An edit of a message in a channel archived since the configuration moved on to
    // another: that update fails alone.
    let slack = connector(&view, TOKEN, CHANNEL, UpdateMode::Edit);
    let old = update(&message, &message, "CARCHIVED42:1700000000.000100", 1, "d_edit_old");
    let report = attempt(&slack, &old).await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    assert!(report.outcome.reason().unwrap_or("").contains("is_archived"), "{report:?}");
    assert_eq!(report.pause, None);
    // The same edit when that channel is the configured one: the destination pauses.
    let archived = connector(&view, TOKEN, "CARCHIVED42", UpdateMode::Edit);
    assert!(attempt(&archived, &old).await.pause.is_some());
    // A look-up refused for the token pauses too.
    let revoked = connector(&view, "xoxb-revoked", CHANNEL, UpdateMode::Thread);
    let mut ambiguous = request(&message);
    ambiguous.ambiguous = true;
    ambiguous.attempt = 2;
    let report = attempt(&revoked, &ambiguous).await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    assert!(report.pause.unwrap_or_default().contains("token_revoked"));
    // A missing scope may be one only the look-up needs: no pause.
    let no_scope = connector(&view, "xoxb-noscope", CHANNEL, UpdateMode::Thread);
    let report = attempt(&no_scope, &request(&message)).await;
    assert_eq!((report.outcome.class(), report.pause), ("permanent", None));
    assert!(view.slack_messages("ws").is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn thread_updates_are_replies_and_an_ambiguous_reply_is_found() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false)).await;
    let slack = connector(&view, TOKEN, CHANNEL, UpdateMode::Thread);
    let original = message();
    let first = attempt(&slack, &request(&original)).await;
    let original_ref = remote(&first);
    let ids = ["d_update_1", "d_update_2", "d_update_3"];
    let mut follow_up = message();
    for (i, id) in ids.iter().enumerate() {
        follow_up.title = format!("update {}", i + 1);
        let seq = u32::try_from(i + 1).unwrap();
        if seq == 2 {
            view.slack_inject(
                "ws",
                SlackFault::new("chat.postMessage", 200, "internal_error").after_storing(),
            );
            let req = update(&follow_up, &original, &original_ref, seq, id);
            assert_eq!(attempt(&slack, &req).await.outcome.class(), "unknown");
        }
        let mut req = update(&follow_up, &original, &original_ref, seq, id);
        req.ambiguous = seq == 2;
        let report = attempt(&slack, &req).await;
        assert!(remote(&report).starts_with(&format!("{CHANNEL}:")));
    }
    let stored = view.slack_messages("ws");
    assert_eq!(stored.len(), 1);
    let replies: Vec<Option<&str>> = stored[0].replies.iter().map(|r| r.delivery_id()).collect();
    assert_eq!(replies, ids.iter().map(|i| Some(*i)).collect::<Vec<_>>());
    assert_eq!(format!("{CHANNEL}:{}", stored[0].ts), original_ref);
    sim.shutdown().await;
}

#[tokio::test]
async fn edit_updates_edit_the_original_once_each() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false)).await;
    let slack = connector(&view, TOKEN, CHANNEL, UpdateMode::Edit);
    let original = message();
    let original_ref = remote(&attempt(&slack, &request(&original)).await);
    let ids = ["d_edit_1", "d_edit_2", "d_edit_3"];
    let mut follow_up = message();
    for (i, id) in ids.iter().enumerate() {
        follow_up.title = format!("edit {}", i + 1);
        let seq = u32::try_from(i + 1).unwrap();
        if seq == 3 {
            view.slack_inject(
                "ws",
                SlackFault::new("chat.update", 200, "internal_error").after_storing(),
            );
            let req = update(&follow_up, &original, &original_ref, seq, id);
            assert_eq!(attempt(&slack, &req).await.outcome.class(), "unknown");
        }
        let mut req = update(&follow_up, &original, &original_ref, seq, id);
        req.ambiguous = seq == 3;
        assert_eq!(remote(&attempt(&slack, &req).await), original_ref);
    }
    let stored = view.slack_messages("ws");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].edits, 3, "the ambiguous edit was found, not applied twice");
    assert!(stored[0].text.contains("edit 3"));
    assert_eq!(stored[0].delivery_id(), Some("d_edit_3"));
    sim.shutdown().await;
}

#[tokio::test]
async fn an_update_of_a_deleted_original_is_permanent() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false)).await;
    let original = message();
    for mode in [UpdateMode::Thread, UpdateMode::Edit] {
        let slack = connector(&view, TOKEN, CHANNEL, mode);
        let req = update(&original, &original, "C0HERALD01:1.000001", 1, "d_u");
        let report = attempt(&slack, &req).await;
        let Outcome::Permanent { reason } = &report.outcome else { panic!("{report:?}") };
        assert!(reason.contains("not_found"), "{reason}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_incoming_webhook_classifies_its_text_errors() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false)).await;
    let config = SlackWebhookConfig::new(view.slack_hook_url("ws"));
    let hook = SlackWebhook::new(config, crate::client()).unwrap();
    let message = message();
    let ok = attempt(&hook, &request(&message)).await;
    assert_eq!(ok.outcome, Outcome::delivered(None));
    // (status, code, class, whether the webhook itself is gone and the destination pauses)
    for (status, code, class, pauses) in [
        (400, "invalid_payload", "permanent", false),
        (403, "action_prohibited", "permanent", false),
        (403, "invalid_token", "permanent", true),
        (404, "no_service", "permanent", true),
        (404, "channel_not_found", "permanent", true),
        (410, "channel_is_archived", "permanent", true),
        (500, "rollup_error", "retry", false),
        (429, "rate_limited", "throttled", false),
    ] {
        view.slack_inject("ws", SlackFault::new("hook", status, code));
        let report = attempt(&hook, &request(&message)).await;
        assert_eq!(report.outcome.class(), class, "{code}: {report:?}");
        assert!(report.outcome.reason().unwrap_or("").contains(code), "{report:?}");
        assert_eq!(report.pause.is_some(), pauses, "{code}: {report:?}");
    }
    assert_eq!(view.slack_hook_posts("ws").len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_incoming_webhook_is_unknown_when_the_post_hangs() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false).hang_first(1)).await;
    let config = SlackWebhookConfig::new(view.slack_hook_url("ws"));
    let hook = SlackWebhook::new(config, crate::client()).unwrap();
    let message = message();
    assert_eq!(attempt(&hook, &request(&message)).await.outcome.class(), "unknown");
    // No look-up exists: a resend is a second copy, which on_unknown decides about.
    assert_eq!(attempt(&hook, &request(&message)).await.outcome.class(), "delivered");
    assert_eq!(view.slack_hook_posts("ws").len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_fault_plans_store_then_fail_reads_as_internal_error_and_is_reconciled() {
    let (sim, view) = simulator(FaultPlan::healthy().dedupe(false).store_then_fail(1, 500)).await;
    let slack = connector(&view, TOKEN, CHANNEL, UpdateMode::Thread);
    let message = message();
    let mut req = request(&message);
    let first = attempt(&slack, &req).await;
    let Outcome::Unknown { reason } = &first.outcome else { panic!("{first:?}") };
    assert!(reason.contains("internal_error"), "{reason}");
    req.ambiguous = true;
    req.attempt = 2;
    let second = attempt(&slack, &req).await;
    let stored = view.slack_messages("ws");
    assert_eq!(stored.len(), 1);
    assert_eq!(remote(&second), format!("{CHANNEL}:{}", stored[0].ts));
    assert_eq!(view.copies_of("ws", req.delivery_id), 1);
    sim.shutdown().await;
}

/// Requests as Slack's docs describe them, checked by a fake written from the docs: JSON
/// bodies declared `application/json; charset=utf-8` (without the charset Slack adds the
/// warning `missing_charset` to every answer) and the token as `Authorization: Bearer`.
#[tokio::test]
async fn writes_are_json_declared_utf8_with_a_bearer_token() {
    use crate::receiver::{Scripted, TestReceiver};

    let answer = Scripted::status(200)
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"ok":true,"channel":"C0HERALD01","ts":"1700000000.000100"}"#);
    let mut receiver = TestReceiver::start(vec![answer]).await;
    let config = SlackConfig::new(TOKEN, CHANNEL).with_base_url(&receiver.url("/api"));
    let slack = Slack::new(config, crate::client()).unwrap();
    let message = message();
    let report = attempt(&slack, &request(&message)).await;
    assert_eq!(remote(&report), "C0HERALD01:1700000000.000100");
    assert_eq!(report.detail, None, "no warning: {report:?}");
    let got = receiver.next().await;
    assert_eq!(got.path, "/api/chat.postMessage");
    assert_eq!(got.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(got.header("authorization"), Some("Bearer xoxb-test"));
    assert_eq!(
        got.json()["metadata"]["event_payload"]["delivery_id"],
        "d_01JD0000000000000000000001"
    );
}

/// A look-up answered `ok` without a `messages` list proves nothing: the ambiguous post
/// is not sent again on its word.
#[tokio::test]
async fn a_lookup_answer_without_messages_does_not_post() {
    use crate::receiver::{Scripted, TestReceiver};

    for body in [r#"{"ok":true}"#, r#"{"ok":true,"messages":null}"#] {
        let answer =
            Scripted::status(200).header("content-type", "application/json").body(body.to_owned());
        let mut receiver = TestReceiver::start(vec![answer]).await;
        let config = SlackConfig::new(TOKEN, CHANNEL).with_base_url(&receiver.url("/api"));
        let slack = Slack::new(config, crate::client()).unwrap();
        let message = message();
        let ambiguous = Request { attempt: 2, ambiguous: true, ..request(&message) };
        let report = attempt(&slack, &ambiguous).await;
        assert_eq!(report.outcome.class(), "unknown", "{body}: {report:?}");
        assert_eq!(receiver.next().await.path, "/api/conversations.history");
        assert!(receiver.got_nothing_more(), "{body}: nothing posted");
    }
}
