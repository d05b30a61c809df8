//! The `mattermost` and `mattermost-webhook` connectors against the simulator's
//! Mattermost dialect on loopback: posts with the props marker and `pending_post_id`,
//! thread replies and edits in order, a 429 honoured, permanent refusals, and after a
//! post stored then hung, a look-up that finds it (exactly one post, no second create).

use std::time::Duration;

use herald_connectors::mattermost::{Mattermost, MattermostConfig, UpdateMode, pending_post_id};
use herald_connectors::mattermost_webhook::{MattermostWebhook, MattermostWebhookConfig};
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Message, Outcome};
use herald_simulator::{FaultPlan, SimView, Simulator};

use crate::webhook::{message, request, wall_clock};

const CHANNEL: &str = "4xp9fdt77pncbef59f4k1qe83o";

async fn simulator(plan: FaultPlan) -> (Simulator, SimView) {
    let sim = Simulator::start(vec![("mm".to_owned(), plan.dedupe(false))]).await.unwrap();
    let view = sim.view();
    (sim, view)
}

fn connector(view: &SimView, token: &str, channel: &str, mode: UpdateMode) -> Mattermost {
    let config =
        MattermostConfig::new(&view.mattermost_url("mm"), token, channel).with_update_mode(mode);
    Mattermost::new(config, crate::client()).unwrap()
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
async fn a_post_carries_the_marker_and_pending_post_id_and_delivers_with_its_id() {
    let (sim, view) = simulator(FaultPlan::healthy()).await;
    let mm = connector(&view, "tok", CHANNEL, UpdateMode::Thread);
    let message = message();
    let req = request(&message);
    let id = remote(&attempt(&mm, &req).await);
    let posts = view.mattermost_posts("mm");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].id, id);
    assert_eq!(posts[0].channel_id, CHANNEL);
    assert_eq!(posts[0].delivery_id(), Some(req.delivery_id));
    assert_eq!(posts[0].pending_post_id, pending_post_id(req.delivery_id));
    assert!(posts[0].message.starts_with("#### 🚨 P1: checkout is down"), "{}", posts[0].message);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_post_stored_then_hung_is_found_by_the_look_up_exactly_once() {
    let (sim, view) = simulator(FaultPlan::healthy().hang_first(1)).await;
    let mm = connector(&view, "tok", CHANNEL, UpdateMode::Thread);
    let message = message();
    let mut req = request(&message);
    assert_eq!(attempt(&mm, &req).await.outcome.class(), "unknown");
    // Herald's next attempt comes after Mattermost's 30-second pending_post_id window.
    view.mattermost_expire_pending("mm");
    req.attempt = 2;
    req.ambiguous = true;
    let id = remote(&attempt(&mm, &req).await);
    let posts = view.mattermost_posts("mm");
    assert_eq!(posts.len(), 1, "exactly one post");
    assert_eq!(posts[0].id, id);
    assert_eq!(view.mattermost_calls("mm"), (1, 1), "one create, one look-up, no second create");
    sim.shutdown().await;
}

#[tokio::test]
async fn within_thirty_seconds_pending_post_id_alone_keeps_one_post() {
    let (sim, view) = simulator(FaultPlan::healthy().hang_first(1)).await;
    let mm = connector(&view, "tok", CHANNEL, UpdateMode::Thread);
    let message = message();
    let req = request(&message);
    assert_eq!(attempt(&mm, &req).await.outcome.class(), "unknown");
    // Not marked ambiguous, so no look-up: the server's dedupe answers the first post.
    let id = remote(&attempt(&mm, &req).await);
    assert_eq!(view.mattermost_posts("mm").len(), 1);
    assert_eq!(view.mattermost_posts("mm")[0].id, id);
    assert_eq!(view.mattermost_calls("mm"), (2, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn an_ambiguous_attempt_with_nothing_stored_posts_once() {
    let (sim, view) = simulator(FaultPlan::healthy()).await;
    let mm = connector(&view, "tok", CHANNEL, UpdateMode::Thread);
    let message = message();
    let mut req = request(&message);
    req.ambiguous = true;
    remote(&attempt(&mm, &req).await);
    assert_eq!(view.mattermost_posts("mm").len(), 1);
    assert_eq!(view.mattermost_calls("mm"), (1, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn thread_updates_are_replies_in_order_and_an_ambiguous_reply_is_found() {
    let (sim, view) = simulator(FaultPlan::healthy()).await;
    let mm = connector(&view, "tok", CHANNEL, UpdateMode::Thread);
    let original = message();
    let original_ref = remote(&attempt(&mm, &request(&original)).await);
    let ids = ["d_update_1", "d_update_2", "d_update_3"];
    let mut follow_up = message();
    for (i, id) in ids.iter().enumerate() {
        let seq = u32::try_from(i + 1).unwrap();
        follow_up.title = format!("update {seq}");
        let mut req = update(&follow_up, &original, &original_ref, seq, id);
        if seq == 2 {
            // The first try landed but its answer was lost; the next one looks first.
            remote(&attempt(&mm, &req).await);
            view.mattermost_expire_pending("mm");
            req.ambiguous = true;
        }
        remote(&attempt(&mm, &req).await);
    }
    let posts = view.mattermost_posts("mm");
    assert_eq!(posts.len(), 1);
    let replies: Vec<Option<&str>> = posts[0].replies.iter().map(|r| r.delivery_id()).collect();
    assert_eq!(replies, ids.iter().map(|i| Some(*i)).collect::<Vec<_>>());
    assert!(posts[0].replies[2].message.contains("(update 3)"));
    sim.shutdown().await;
}

#[tokio::test]
async fn edit_updates_patch_the_original_in_order() {
    let (sim, view) = simulator(FaultPlan::healthy()).await;
    let mm = connector(&view, "tok", CHANNEL, UpdateMode::Edit);
    let original = message();
    let original_ref = remote(&attempt(&mm, &request(&original)).await);
    let mut follow_up = message();
    for (i, id) in ["d_edit_1", "d_edit_2"].iter().enumerate() {
        let seq = u32::try_from(i + 1).unwrap();
        follow_up.title = format!("edit {seq}");
        let report = attempt(&mm, &update(&follow_up, &original, &original_ref, seq, id)).await;
        assert_eq!(remote(&report), original_ref);
    }
    let posts = view.mattermost_posts("mm");
    assert_eq!(posts.len(), 1);
    assert!(posts[0].replies.is_empty());
    assert_eq!(posts[0].edits.len(), 2);
    assert!(posts[0].edits[0].contains("edit 1") && posts[0].edits[1].contains("edit 2"));
    assert!(posts[0].message.contains("(edited: update 2)"));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_429_is_throttled_for_retry_after_and_refusals_are_permanent() {
    let (sim, view) = simulator(FaultPlan::healthy().rate_limit(1, Duration::from_secs(2))).await;
    let mm = connector(&view, "tok", CHANNEL, UpdateMode::Thread);
    let message = message();
    remote(&attempt(&mm, &request(&message)).await);
    let mut second = request(&message);
    second.delivery_id = "d_second";
    let report = attempt(&mm, &second).await;
    assert!(
        matches!(report.outcome, Outcome::Throttled { after: Some(d), .. } if d == Duration::from_secs(2)),
        "{report:?}"
    );
    assert_eq!(view.mattermost_posts("mm").len(), 1);

    let bad = connector(&view, "bad", CHANNEL, UpdateMode::Thread);
    let report = attempt(&bad, &request(&message)).await;
    assert_eq!((report.outcome.class(), report.status), ("permanent", Some(401)), "{report:?}");
    assert!(!format!("{report:?}").contains("Bearer"));
    let missing = connector(&view, "tok", "missingchannel000000000000", UpdateMode::Thread);
    let report = attempt(&missing, &request(&message)).await;
    assert_eq!((report.outcome.class(), report.status), ("permanent", Some(404)), "{report:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_incoming_webhook_posts_text_and_classifies_its_errors() {
    let (sim, view) = simulator(FaultPlan::healthy().fail_first(1, 503)).await;
    let hook = MattermostWebhook::new(
        MattermostWebhookConfig::new(view.mattermost_hook_url("mm")),
        crate::client(),
    )
    .unwrap();
    let mut message = message();
    message.body = "x".repeat(40_000);
    let req = request(&message);
    assert_eq!(attempt(&hook, &req).await.outcome.class(), "retry");
    let report = attempt(&hook, &req).await;
    assert_eq!(report.outcome, Outcome::delivered(None));
    assert_eq!(view.mattermost_hook_posts("mm").len(), 1, "cut to one post, never split");

    // A deleted webhook (400) and incoming webhooks turned off (501, not a passing
    // fault) fail the delivery and pause the destination.
    for (key, status, id) in [
        ("gone", 400, "web.incoming_webhook.invalid.app_error"),
        ("disabled", 501, "web.incoming_webhook.disabled.app_error"),
    ] {
        let url = view.mattermost_hook_url("mm").replace("simhookkey", key);
        let hook =
            MattermostWebhook::new(MattermostWebhookConfig::new(url), crate::client()).unwrap();
        let report = attempt(&hook, &req).await;
        assert_eq!(
            (report.outcome.class(), report.status),
            ("permanent", Some(status)),
            "{report:?}"
        );
        assert!(report.outcome.reason().unwrap_or("").contains(id), "{report:?}");
        assert!(report.pause.as_deref().unwrap_or("").contains(id), "{report:?}");
    }
    sim.shutdown().await;

    let (sim, view) = simulator(FaultPlan::healthy().hang_first(1)).await;
    let hook = MattermostWebhook::new(
        MattermostWebhookConfig::new(view.mattermost_hook_url("mm")),
        crate::client(),
    )
    .unwrap();
    assert_eq!(attempt(&hook, &req).await.outcome.class(), "unknown");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_full_look_up_page_without_the_marker_proves_nothing() {
    let (sim, view) = simulator(FaultPlan::healthy().record(false)).await;
    let mm = connector(&view, "tok", CHANNEL, UpdateMode::Thread);
    let message = message();
    let ids: Vec<String> = (0..1_000).map(|i| format!("d_busy_{i}")).collect();
    for id in &ids {
        let mut req = request(&message);
        req.delivery_id = id;
        remote(&attempt(&mm, &req).await);
    }
    let mut req = request(&message);
    req.ambiguous = true;
    let report = attempt(&mm, &req).await;
    assert_eq!(report.outcome.class(), "unknown", "{report:?}");
    assert_eq!(view.mattermost_posts("mm").len(), 1_000, "nothing posted blindly");
    sim.shutdown().await;
}
