//! The `discord` connector against the simulator's Discord dialect on loopback: a post
//! with `wait=true` delivers with the message id, updates edit the original in order, a
//! 429's `retry_after` is reported as the wait, `Unknown Webhook` is permanent after one
//! call and pauses the destination (an edit of a deleted message does not), and a hang
//! is `Unknown`.

use std::time::Duration;

use herald_connectors::discord::{Discord, DiscordConfig};
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Message, Outcome, Severity};
use herald_simulator::{FaultPlan, SimView, Simulator};

use crate::webhook::{message, request, wall_clock};

async fn simulator(plan: FaultPlan) -> (Simulator, SimView, Discord) {
    let sim = Simulator::start(vec![("dc".to_owned(), plan.dedupe(false))]).await.unwrap();
    let view = sim.view();
    let hook =
        Discord::new(DiscordConfig::new(view.discord_hook_url("dc")), crate::client()).unwrap();
    (sim, view, hook)
}

/// One attempt bounded as the engine bounds it: past the limit it is `Unknown`.
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
async fn a_post_waits_for_the_message_and_delivers_with_its_id() {
    let (sim, view, hook) = simulator(FaultPlan::healthy()).await;
    let message = message();
    let report = attempt(&hook, &request(&message)).await;
    let id = remote(&report);
    let stored = view.discord_messages("dc");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    assert!(stored[0].content.contains("P1: checkout is down"), "{:?}", stored[0]);
    assert_eq!(stored[0].embeds[0]["title"], "P1: checkout is down");
    sim.shutdown().await;
}

#[tokio::test]
async fn updates_edit_the_original_in_order() {
    let (sim, view, hook) = simulator(FaultPlan::healthy()).await;
    let original = message();
    let original_ref = remote(&attempt(&hook, &request(&original)).await);
    let ids = ["d_edit_1", "d_edit_2", "d_edit_3"];
    let mut follow_up = message();
    for (i, id) in ids.iter().enumerate() {
        let seq = u32::try_from(i + 1).unwrap();
        follow_up.title = format!("update {seq}");
        follow_up.severity = if seq == 3 { Severity::Resolved } else { Severity::Warning };
        let report = attempt(&hook, &update(&follow_up, &original, &original_ref, seq, id)).await;
        assert_eq!(remote(&report), original_ref);
    }
    let stored = view.discord_messages("dc");
    assert_eq!(stored.len(), 1, "edits never post a new message");
    let titles: Vec<&str> =
        stored[0].edits.iter().filter_map(|e| e["embeds"][0]["title"].as_str()).collect();
    assert_eq!(titles, ["update 1", "update 2", "update 3"]);
    assert!(stored[0].content.starts_with('✅') && stored[0].content.ends_with("(update 3)"));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_429_reports_retry_after_and_stores_nothing() {
    let (sim, view, hook) =
        simulator(FaultPlan::healthy().rate_limit(1, Duration::from_secs(2))).await;
    let message = message();
    remote(&attempt(&hook, &request(&message)).await);
    let mut second = message.clone();
    second.title = "another".to_owned();
    let report = attempt(&hook, &request(&second)).await;
    match &report.outcome {
        Outcome::Throttled { after, reason } => {
            assert_eq!(*after, Some(Duration::from_secs(2)), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(report.status, Some(429));
    assert_eq!(view.discord_messages("dc").len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_webhook_is_permanent_after_one_call() {
    let (sim, view, hook) = simulator(FaultPlan::healthy()).await;
    view.discord_delete_webhook("dc");
    let message = message();
    let report = attempt(&hook, &request(&message)).await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    assert!(report.outcome.reason().unwrap_or("").contains("Unknown Webhook"), "{report:?}");
    assert_eq!(report.status, Some(404));
    let pause = report.pause.as_deref().unwrap_or_default();
    assert!(pause.contains("404 Unknown Webhook, code 10015"), "{report:?}");
    assert!(pause.contains("replace `url` and resume the destination"), "{report:?}");
    assert_eq!(view.discord_calls_after_delete("dc"), 1, "no retry of a 404");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_edit_after_the_webhook_was_deleted_pauses_too() {
    let (sim, view, hook) = simulator(FaultPlan::healthy()).await;
    let original = message();
    let original_ref = remote(&attempt(&hook, &request(&original)).await);
    view.discord_delete_webhook("dc");
    let report = attempt(&hook, &update(&original, &original, &original_ref, 1, "d_e")).await;
    assert_eq!((report.outcome.class(), report.status), ("permanent", Some(404)), "{report:?}");
    assert!(report.pause.is_some(), "{report:?}");
    // The webhook made again (the operator's new URL): it posts, and pauses nothing.
    view.discord_restore_webhook("dc");
    let report = attempt(&hook, &request(&original)).await;
    assert_eq!(report.outcome.class(), "delivered", "{report:?}");
    assert_eq!(report.pause, None);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_edit_of_a_deleted_message_is_permanent_and_a_bad_token_pauses() {
    let (sim, view, hook) = simulator(FaultPlan::healthy()).await;
    let original = message();
    let report = attempt(&hook, &update(&original, &original, "1234567", 1, "d_x")).await;
    assert_eq!(report.outcome.class(), "permanent");
    assert!(report.outcome.reason().unwrap_or("").contains("Unknown Message"), "{report:?}");
    assert_eq!(report.pause, None, "one deleted message says nothing about the webhook");
    let bad = view.discord_hook_url("dc").replace("simtoken", "bad");
    let bad = Discord::new(DiscordConfig::new(bad), crate::client()).unwrap();
    let report = attempt(&bad, &request(&original)).await;
    assert_eq!((report.outcome.class(), report.status), ("permanent", Some(401)), "{report:?}");
    assert!(report.pause.as_deref().unwrap_or_default().contains("code 50027"), "{report:?}");
    let shown = format!("{report:?}");
    assert!(!shown.contains("simtoken") && !shown.contains("/bad"), "{shown}");
    sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_retry_and_a_hang_is_unknown() {
    let (sim, view, hook) = simulator(FaultPlan::healthy().fail_first(1, 503)).await;
    let message = message();
    let report = attempt(&hook, &request(&message)).await;
    assert_eq!(report.outcome.class(), "retry", "{report:?}");
    remote(&attempt(&hook, &request(&message)).await);
    sim.shutdown().await;
    assert_eq!(view.discord_messages("dc").len(), 1);

    let (sim, view, hook) = simulator(FaultPlan::healthy().hang_first(1)).await;
    let report = attempt(&hook, &request(&message)).await;
    assert_eq!(report.outcome.class(), "unknown", "{report:?}");
    assert_eq!(view.discord_messages("dc").len(), 1, "the hung post landed");
    sim.shutdown().await;
}
