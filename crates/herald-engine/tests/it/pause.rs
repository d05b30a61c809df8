//! A destination that is gone pauses its own lane (`Report::pause`): the delivery that
//! found out fails, every other delivery waits `pending` (nothing lost, no attempt used)
//! until an operator resumes the destination, and then each is delivered once.

use std::num::NonZeroU32;
use std::time::Duration;

use herald_core::{RateLimit, State};
use herald_engine::LaneHealth;

use crate::harness::*;

const GONE: &str = "the webhook no longer exists: replace `url` and resume the destination";

fn health(fx: &Fixture, destination: &str) -> LaneHealth {
    fx.engine.health().into_iter().find(|h| h.destination == destination).unwrap()
}

fn state(view: &herald_store::BroadcastView) -> State {
    view.deliveries[0].progress.state.clone()
}

/// The states of the broadcasts' first deliveries, sorted by name.
async fn states(fx: &Fixture, ids: &[&str]) -> Vec<&'static str> {
    let mut res = Vec::new();
    for id in ids {
        res.push(state(&fx.store.broadcast(id).await.unwrap().unwrap()).as_str());
    }
    res.sort_unstable();
    res
}

#[tokio::test]
async fn a_destination_that_is_gone_pauses_its_lane_and_the_rest_waits_for_resume() {
    let target = Scripted::new("target", delivered());
    target.script(0, [gone(GONE)]);
    let bystander = Scripted::new("bystander", delivered());
    let mut fx =
        Fixture::start(vec![(target.clone(), settings()), (bystander.clone(), settings())]);

    let first = fx.submit("first", &["target"]).await;
    let view = fx.wait_state(&first.id, 0, "failed").await;
    let attempts = fx.store.attempts(&view.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].attempt.outcome, "permanent");
    let paused = health(&fx, "target");
    assert!(paused.paused);
    assert_eq!(paused.pause_reason.as_deref(), Some(GONE));
    assert!(!health(&fx, "bystander").paused, "only the gone destination pauses");

    // Everything submitted afterwards waits, also across the lane's fallback polls.
    let second = fx.submit("second", &["target", "bystander"]).await;
    let third = fx.submit("third", &["target"]).await;
    fx.idle().await;
    fx.clock.advance(Duration::from_secs(60));
    fx.idle().await;
    assert_eq!(target.calls().len(), 1, "{:?}", target.calls());
    let view = fx.store.broadcast(&second.id).await.unwrap().unwrap();
    let by_destination = |name: &str| {
        view.deliveries.iter().find(|d| d.destination == name).unwrap().progress.clone()
    };
    assert_eq!(by_destination("target").state, State::Pending);
    assert_eq!(by_destination("target").attempts, 0, "waiting uses no attempt");
    assert_eq!(by_destination("bystander").state, State::Delivered);
    assert_eq!(states(&fx, &[&third.id]).await, ["pending"]);

    assert!(fx.engine.set_paused("target", false).await.unwrap());
    assert_eq!(health(&fx, "target").pause_reason, None, "resume clears the reason");
    fx.settle(&second.id).await;
    fx.settle(&third.id).await;
    assert_eq!(states(&fx, &[&first.id, &third.id]).await, ["delivered", "failed"]);
    let calls = target.calls();
    assert_eq!(calls.len(), 3, "each delivery was sent once: {calls:?}");
    assert!(calls.iter().all(|c| c.attempt == 1), "{calls:?}");
    assert!(!health(&fx, "target").paused);
}

/// A batch claimed together waits for the rate limit one item at a time; when an
/// earlier item finds the destination gone, the items not yet started go back to
/// `pending` instead of being sent to it.
#[tokio::test]
async fn a_pause_hands_back_claimed_work_still_waiting_for_the_rate_limit() {
    let target = Scripted::new("target", delivered());
    target.script(0, [gone(GONE)]);
    let mut lane = settings();
    lane.rate_limit =
        Some(RateLimit { count: NonZeroU32::new(1).unwrap(), per: Duration::from_secs(10) });
    lane.concurrency = 3;
    let mut fx = Fixture::start(vec![(target.clone(), lane)]);
    // Paused while the three are submitted, so that the resume claims them in one batch.
    fx.engine.set_paused("target", true).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(fx.submit(&format!("m{n}"), &["target"]).await.id);
    }
    fx.idle().await;
    assert_eq!(health(&fx, "target").pause_reason, None, "an operator's pause has no reason");
    fx.engine.set_paused("target", false).await.unwrap();
    wait_calls(&target, 1).await;
    fx.idle().await;
    // The first went out and failed; the two others are claimed, waiting for a permit.
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(states(&fx, &ids).await, ["failed", "in_flight", "in_flight"]);
    assert_eq!(health(&fx, "target").pause_reason.as_deref(), Some(GONE));

    fx.clock.advance(Duration::from_secs(10));
    fx.idle().await;
    assert_eq!(states(&fx, &ids).await, ["failed", "pending", "pending"]);
    assert_eq!(target.calls().len(), 1, "nothing more was sent to a gone destination");

    // The first goes at once; the rate limit spaces the second by 10 s.
    fx.engine.set_paused("target", false).await.unwrap();
    wait_calls(&target, 2).await;
    fx.idle().await;
    fx.clock.advance(Duration::from_secs(10));
    for id in &ids {
        fx.settle(id).await;
    }
    assert_eq!(states(&fx, &ids).await, ["delivered", "delivered", "failed"]);
    let calls = target.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| c.attempt == 1), "the hand-back used no attempt: {calls:?}");
}
