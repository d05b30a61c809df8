//! Scenarios, one per rule of DESIGN.md's state machine and invariants.

use std::sync::Arc;
use std::time::Duration;

use herald_core::{Capabilities, FailReason, OnUnknown, State};
use herald_engine::{Clock, EngineConfig, FakeClock};
use herald_store::sqlite::SqliteStore;
use herald_store::{ClaimRequest, Store};

use crate::harness::*;

fn state(view: &herald_store::BroadcastView, idx: usize) -> State {
    view.deliveries[idx].progress.state.clone()
}

#[tokio::test]
async fn each_destination_gets_exactly_one_copy() {
    let a = Scripted::new("a", delivered());
    let b = Scripted::new("b", delivered());
    let mut fx = Fixture::start(vec![(a.clone(), settings()), (b.clone(), settings())]);
    let view = fx.submit("P1: checkout is down", &["a", "b"]).await;
    let view = fx.settle(&view.id).await;
    assert!(view.deliveries.iter().all(|d| d.progress.state == State::Delivered));
    assert_eq!(a.calls().len(), 1);
    assert_eq!(b.calls().len(), 1);
    assert_eq!(view.deliveries[0].progress.remote_ref.as_deref(), Some("ref-1"));
    assert_eq!(view.deliveries[0].progress.attempts, 1);
}

/// Independent retry loops: a failing destination never causes a resend to another.
#[tokio::test]
async fn a_failure_at_one_destination_never_resends_to_another() {
    let ok = Scripted::new("ok", delivered());
    let flaky = Scripted::new("flaky", delivered());
    flaky.script(0, [retry(), retry()]);
    let mut fx = Fixture::start(vec![(ok.clone(), settings()), (flaky.clone(), settings())]);
    let view = fx.submit("hello", &["ok", "flaky"]).await;
    fx.wait_state(&view.id, 0, "delivered").await;
    // Drive the flaky destination's backoff in simulated time until it delivers.
    for n in 1..=2 {
        wait_calls(&flaky, n).await;
        fx.wait_for(&view.id, |v| {
            v.deliveries[1].progress.attempts as usize == n
                && v.deliveries[1].progress.state == State::Pending
        })
        .await;
        fx.clock.advance(Duration::from_secs(60));
    }
    let view = fx.settle(&view.id).await;
    fx.idle().await;
    assert_eq!(state(&view, 1), State::Delivered);
    assert_eq!(flaky.calls().len(), 3);
    assert_eq!(view.deliveries[1].progress.attempts, 3);
    assert_eq!(ok.calls().len(), 1, "the healthy destination was sent to again");
    // The same idempotency key on every try.
    assert!(flaky.calls().iter().all(|c| c.delivery_id == view.deliveries[1].id));
}

#[tokio::test]
async fn retries_wait_for_their_backoff_in_simulated_time() {
    let flaky = Scripted::new("flaky", delivered());
    flaky.script(0, [retry()]);
    let mut lane = settings();
    lane.policy.backoff_base = Duration::from_secs(100);
    let mut fx = Fixture::start(vec![(flaky.clone(), lane)]);
    let view = fx.submit("hello", &["flaky"]).await;
    let pending = fx
        .wait_for(&view.id, |v| {
            v.deliveries[0].progress.attempts == 1
                && v.deliveries[0].progress.state == State::Pending
        })
        .await;
    let due = pending.deliveries[0].progress.next_attempt_at;
    assert!(due >= START && due <= START.add(Duration::from_secs(100)), "delay outside [0, base]");
    // Until the clock reaches the due time, nothing is sent.
    if due > START {
        fx.clock.advance(due.since(START) - Duration::from_millis(1));
        fx.idle().await;
        assert_eq!(flaky.calls().len(), 1);
    }
    fx.clock.advance(Duration::from_secs(100));
    let view = fx.settle(&view.id).await;
    assert_eq!(state(&view, 0), State::Delivered);
    assert!(flaky.calls()[1].at >= due);
}

#[tokio::test]
async fn throttles_honour_retry_after_and_do_not_consume_attempts() {
    let limited = Scripted::new("limited", delivered());
    limited.script(0, std::iter::repeat_with(|| throttled(Duration::from_secs(30))).take(5));
    let mut lane = settings();
    lane.policy.max_attempts = 2;
    let mut fx = Fixture::start(vec![(limited.clone(), lane)]);
    let view = fx.submit("hello", &["limited"]).await;
    for n in 1..=5 {
        wait_calls(&limited, n).await;
        let v = fx.wait_for(&view.id, |v| v.deliveries[0].progress.state == State::Pending).await;
        assert_eq!(v.deliveries[0].progress.attempts, 0, "a throttle consumed an attempt");
        let calls = limited.calls();
        if n > 1 {
            assert!(
                calls[n - 1].at.since(calls[n - 2].at) >= Duration::from_secs(30),
                "Retry-After not honoured"
            );
        }
        fx.clock.advance(Duration::from_secs(30));
    }
    let view = fx.settle(&view.id).await;
    assert_eq!(
        state(&view, 0),
        State::Delivered,
        "five throttles exhausted a budget of two attempts"
    );
    assert_eq!(view.deliveries[0].progress.attempts, 1);
}

/// A look-up that cannot settle an ambiguous attempt yet (Jira's search lags) looks
/// again after the time it asked for: it burns no attempt, keeps the doubt (each look
/// knows when the doubt began), and neither pauses the lane nor trips the breaker.
#[tokio::test]
async fn a_look_up_that_must_wait_burns_no_attempt_and_does_not_slow_the_lane() {
    let caps = Capabilities { lookup: true, ..Capabilities::default() };
    let jira = Scripted::with_capabilities("jira", delivered(), caps);
    let wait = Duration::from_secs(5);
    jira.script(0, [unknown(), reconciling(wait), reconciling(wait), reconciling(wait)]);
    let mut lane = settings();
    lane.policy.max_attempts = 2;
    lane.policy.backoff_base = Duration::from_millis(10);
    lane.policy.backoff_max = Duration::from_millis(10);
    let mut fx = Fixture::start(vec![(jira.clone(), lane)]);
    let view = fx.submit("P1: checkout is down", &["jira"]).await;
    let doubt = fx.wait_for(&view.id, |v| v.deliveries[0].progress.ambiguous).await;
    // Rescheduled, not ended; the jittered backoff may already have made it due (up to
    // 10 ms, which can round to 0), so the lane may have claimed it again by now.
    let rescheduled = &doubt.deliveries[0].progress.state;
    assert!(matches!(rescheduled, State::Pending | State::InFlight), "{rescheduled:?}");
    fx.clock.advance(Duration::from_millis(10));
    for n in 2..=4 {
        wait_calls(&jira, n).await;
        let v = fx
            .wait_for(&view.id, |v| {
                v.deliveries[0].progress.state == State::Pending
                    && v.deliveries[0].progress.last_error.as_deref() == Some("not found yet")
            })
            .await;
        assert_eq!(v.deliveries[0].progress.attempts, 1, "a look-up that must wait burned one");
        assert!(v.deliveries[0].progress.ambiguous, "the doubt was dropped");
        assert_eq!(v.deliveries[0].progress.next_attempt_at, jira.calls()[n - 1].at.add(wait));
        assert!(fx.engine.health().iter().all(|h| !h.throttled), "a wait slowed the lane");
        if n == 4 {
            // Meanwhile the lane is not paused: another broadcast goes at once (the script
            // is used up, so it is answered delivered).
            let other = fx.submit("P2: search is slow", &["jira"]).await;
            fx.wait_state(&other.id, 0, "delivered").await;
        }
        fx.clock.advance(wait);
    }
    let view = fx.settle(&view.id).await;
    assert_eq!(state(&view, 0), State::Delivered, "three waits exhausted two attempts");
    assert_eq!(view.deliveries[0].progress.attempts, 2);
    let calls: Vec<_> =
        jira.calls().into_iter().filter(|c| c.delivery_id == view.deliveries[0].id).collect();
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert!(calls[1..].iter().all(|c| c.ambiguous && c.attempt == 2), "{calls:?}");
    let began = calls[1].ambiguous_at.expect("an ambiguous claim knows when the doubt began");
    assert!(began >= calls[0].at && began <= calls[1].at, "{calls:?}");
    assert!(calls[1..].iter().all(|c| c.ambiguous_at == Some(began)), "the doubt began once");
    let health = fx.engine.health();
    assert!(health.iter().all(|h| h.circuit == "closed"), "waits opened the breaker");
    assert!(health.iter().all(|h| !h.throttled), "waits slowed the lane");
}

#[tokio::test]
async fn a_permanent_error_fails_at_once_with_its_reason() {
    let broken = Scripted::new("broken", permanent());
    let mut fx = Fixture::start(vec![(broken.clone(), settings())]);
    let view = fx.submit("hello", &["broken"]).await;
    let view = fx.settle(&view.id).await;
    assert_eq!(state(&view, 0), State::Failed(FailReason::Permanent));
    assert!(
        view.deliveries[0].progress.last_error.as_deref().unwrap().contains("channel not found")
    );
    fx.clock.advance(Duration::from_secs(3600));
    fx.idle().await;
    assert_eq!(broken.calls().len(), 1);
}

#[tokio::test]
async fn attempts_are_bounded_by_max_attempts() {
    let dead = Scripted::new("dead", retry());
    let mut lane = settings();
    lane.policy.max_attempts = 3;
    lane.circuit.min_failures = 100;
    let mut fx = Fixture::start(vec![(dead.clone(), lane)]);
    let view = fx.submit("hello", &["dead"]).await;
    for n in 1..=3 {
        wait_calls(&dead, n).await;
        fx.wait_for(&view.id, |v| v.deliveries[0].progress.attempts as usize == n).await;
        fx.clock.advance(Duration::from_secs(600));
    }
    let view = fx.settle(&view.id).await;
    fx.clock.advance(Duration::from_secs(3600));
    fx.idle().await;
    assert_eq!(state(&view, 0), State::Failed(FailReason::AttemptsExhausted));
    assert_eq!(dead.calls().len(), 3);
}

#[tokio::test]
async fn a_delivery_past_its_max_age_fails_as_expired() {
    let dead = Scripted::new("dead", retry());
    let mut lane = settings();
    lane.policy.max_age = Duration::from_secs(5);
    lane.policy.backoff_base = Duration::from_secs(60);
    lane.policy.backoff_max = Duration::from_secs(60);
    let mut fx = Fixture::start(vec![(dead.clone(), lane)]);
    let view = fx.submit("hello", &["dead"]).await;
    wait_calls(&dead, 1).await;
    fx.clock.advance(Duration::from_secs(6));
    let view = fx.settle(&view.id).await;
    assert_eq!(state(&view, 0), State::Failed(FailReason::Expired));
}

/// Invariant 5: an update reaches a destination only after the original was delivered
/// there, and never where the original failed.
#[tokio::test]
async fn updates_wait_for_their_predecessor_on_each_destination() {
    let slow = Scripted::new("slow", delivered());
    slow.script(0, [retry()]);
    let fast = Scripted::new("fast", delivered());
    let mut lane = settings();
    lane.policy.backoff_base = Duration::from_secs(10);
    let mut fx = Fixture::start(vec![(slow.clone(), lane), (fast.clone(), settings())]);
    let view = fx.submit("opened", &["slow", "fast"]).await;
    fx.wait_for(&view.id, |v| v.deliveries[1].progress.state == State::Delivered).await;
    wait_calls(&slow, 1).await;
    let seq = fx.update(&view, "resolved").await;
    assert_eq!(seq, 1);
    // The update reaches `fast` at once, while on `slow` it waits for the original.
    fx.wait_for(&view.id, |v| v.deliveries[3].progress.state == State::Delivered).await;
    fx.idle().await;
    let waiting = fx.store.broadcast(&view.id).await.unwrap().unwrap();
    assert_eq!(waiting.deliveries[2].destination, "slow");
    assert_eq!(state(&waiting, 2), State::Waiting);
    assert!(slow.calls().iter().all(|c| c.seq == 0), "the update overtook the original");
    fx.clock.advance(Duration::from_secs(60));
    let view = fx.settle(&view.id).await;
    let calls = slow.calls();
    let seqs: Vec<u32> = calls.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![0, 0, 1]);
    assert_eq!(calls[2].in_reply_to.as_deref(), Some(view.deliveries[0].id.as_str()));
    assert!(view.deliveries.iter().all(|d| d.progress.state == State::Delivered));
}

#[tokio::test]
async fn an_update_behind_a_failed_original_fails_as_predecessor_failed() {
    let broken = Scripted::new("broken", delivered());
    broken.script(0, [Step::Hang]);
    let mut lane = settings();
    lane.policy.timeout = Duration::from_millis(200);
    lane.policy.max_attempts = 1;
    let mut fx = Fixture::start(vec![(broken.clone(), lane)]);
    let view = fx.submit("opened", &["broken"]).await;
    wait_calls(&broken, 1).await;
    fx.update(&view, "update 1").await;
    fx.update(&view, "update 2").await;
    fx.clock.advance(Duration::from_millis(200));
    let view = fx.settle(&view.id).await;
    fx.idle().await;
    assert_eq!(state(&view, 0), State::Failed(FailReason::Ambiguous));
    assert_eq!(state(&view, 1), State::Failed(FailReason::PredecessorFailed));
    assert_eq!(state(&view, 2), State::Failed(FailReason::PredecessorFailed));
    assert_eq!(broken.calls().len(), 1, "an update was sent although its original failed");
}

/// Invariant 7: a destination that hangs ties up only its own lane.
#[tokio::test]
async fn a_hanging_destination_never_delays_the_others() {
    let hung = Scripted::new("hung", Step::Hang);
    let ok = Scripted::new("ok", delivered());
    let mut slow_lane = settings();
    slow_lane.policy.timeout = Duration::from_secs(3600);
    slow_lane.concurrency = 2;
    let mut fx = Fixture::start(vec![(hung.clone(), slow_lane), (ok.clone(), settings())]);
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(fx.submit(&format!("message {n}"), &["hung", "ok"]).await.id);
    }
    for id in &ids {
        fx.wait_for(id, |v| v.deliveries[1].progress.state == State::Delivered).await;
    }
    assert_eq!(ok.calls().len(), 20);
    // The hung lane holds exactly its concurrency in flight; the rest wait their turn.
    wait_calls(&hung, 2).await;
    assert_eq!(hung.calls().len(), 2);
}

/// Invariant 3: an attempt whose lease expired (its worker died) is treated as
/// ambiguous, and the next attempt reconciles under the same idempotency key.
#[tokio::test]
async fn an_expired_lease_is_recovered_as_unknown_and_resent_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("herald.db")).unwrap());
    let clock = FakeClock::new(START);
    let target = Scripted::new("target", delivered());
    // A paused lane lets the test play the part of a worker that claims and dies.
    let mut fx = Fixture::on_store(
        dir,
        store,
        clock,
        vec![(target.clone(), settings())],
        EngineConfig::default(),
    );
    fx.engine.set_paused("target", true).await.unwrap();
    let view = fx.submit("hello", &["target"]).await;
    let claimed = fx
        .store
        .claim(ClaimRequest {
            destination: "target".into(),
            limit: 10,
            now: fx.clock.now(),
            lease_until: fx.clock.now().add(Duration::from_secs(15)),
            probe: false,
        })
        .await
        .unwrap();
    assert_eq!(claimed.work.len(), 1);
    fx.engine.set_paused("target", false).await.unwrap();
    fx.clock.advance(Duration::from_secs(16));
    fx.wait_for(&view.id, |v| v.deliveries[0].progress.ambiguous).await;
    fx.clock.advance(Duration::from_secs(2));
    let view = fx.settle(&view.id).await;
    assert_eq!(state(&view, 0), State::Delivered);
    let calls = target.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].ambiguous, "the resend did not know the previous attempt was ambiguous");
    assert_eq!(calls[0].attempt, 2, "the interrupted attempt was not counted");
    assert_eq!(calls[0].delivery_id, view.deliveries[0].id);
    let attempts = fx.store.attempts(&view.id).await.unwrap();
    assert_eq!(attempts[0].attempt.outcome, "unknown");
}

#[tokio::test]
async fn an_unknown_outcome_is_held_where_resending_could_duplicate() {
    let blind = Scripted::with_capabilities("blind", unknown(), Capabilities::default());
    let mut lane = settings();
    lane.policy.on_unknown = OnUnknown::Hold;
    let mut fx = Fixture::start(vec![(blind.clone(), lane)]);
    let view = fx.submit("hello", &["blind"]).await;
    let view = fx.wait_state(&view.id, 0, "held").await;
    assert!(view.deliveries[0].progress.ambiguous);
    fx.clock.advance(Duration::from_secs(3600));
    fx.idle().await;
    assert_eq!(blind.calls().len(), 1, "a held delivery was resent");
}

#[tokio::test]
async fn an_unknown_outcome_is_resent_with_the_same_key_where_the_destination_dedupes() {
    let dedupe = Scripted::new("dedupe", delivered());
    dedupe.script(0, [unknown()]);
    let mut lane = settings();
    lane.policy.on_unknown = OnUnknown::Hold;
    let mut fx = Fixture::start(vec![(dedupe.clone(), lane)]);
    let view = fx.submit("hello", &["dedupe"]).await;
    wait_calls(&dedupe, 1).await;
    fx.wait_for(&view.id, |v| v.deliveries[0].progress.ambiguous).await;
    fx.clock.advance(Duration::from_secs(10));
    let view = fx.settle(&view.id).await;
    assert_eq!(state(&view, 0), State::Delivered);
    let calls = dedupe.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].delivery_id, calls[1].delivery_id);
    assert!(calls[1].ambiguous);
}

#[tokio::test]
async fn shutdown_lets_short_attempts_finish_and_cuts_long_ones_short_as_unknown() {
    let hung = Scripted::new("hung", Step::Hang);
    let mut lane = settings();
    lane.policy.timeout = Duration::from_secs(3600);
    let config =
        EngineConfig { shutdown_grace: Duration::from_millis(100), ..EngineConfig::default() };
    let mut fx = Fixture::start_with(vec![(hung.clone(), lane)], config);
    let view = fx.submit("hello", &["hung"]).await;
    wait_calls(&hung, 1).await;
    fx.engine.shutdown().await;
    let view = fx.wait_for(&view.id, |v| v.deliveries[0].progress.state != State::InFlight).await;
    assert_eq!(state(&view, 0), State::Pending);
    assert!(
        view.deliveries[0].progress.ambiguous,
        "the cut-short attempt was not treated as ambiguous"
    );
    assert_eq!(fx.store.attempts(&view.id).await.unwrap()[0].attempt.outcome, "unknown");
}

#[tokio::test]
async fn a_paused_destination_sends_nothing_until_resumed() {
    let target = Scripted::new("target", delivered());
    let mut fx = Fixture::start(vec![(target.clone(), settings())]);
    fx.engine.set_paused("target", true).await.unwrap();
    let view = fx.submit("hello", &["target"]).await;
    fx.idle().await;
    assert!(target.calls().is_empty());
    fx.engine.set_paused("target", false).await.unwrap();
    let view = fx.settle(&view.id).await;
    assert_eq!(state(&view, 0), State::Delivered);
}

/// The rate limit runs on the engine's clock: at most `count` starts in any window of
/// `per` of simulated time, and nothing before the window allows it.
#[tokio::test]
async fn rate_limit_holds_in_every_window() {
    let target = Scripted::new("target", delivered());
    let mut lane = settings();
    lane.rate_limit = Some(herald_core::RateLimit {
        count: std::num::NonZeroU32::new(20).unwrap(),
        per: Duration::from_secs(1),
    });
    lane.concurrency = 50;
    let mut fx = Fixture::start(vec![(target.clone(), lane)]);
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(fx.submit(&format!("m{n}"), &["target"]).await.id);
    }
    wait_calls(&target, 20).await;
    fx.idle().await;
    assert_eq!(target.calls().len(), 20, "the burst exceeded the limit");
    // Twenty started in this second: nothing more until the window moves past them.
    fx.clock.advance(Duration::from_millis(999));
    fx.idle().await;
    assert_eq!(target.calls().len(), 20, "an attempt came before its permit");
    fx.clock.advance(Duration::from_millis(1));
    wait_calls(&target, 30).await;
    for id in &ids {
        fx.settle(id).await;
    }
    let calls = target.calls();
    assert_eq!(calls.len(), 30);
    let offsets: Vec<u64> = calls.iter().map(|c| c.at.since(START).as_millis() as u64).collect();
    assert_eq!(offsets[..20], [0; 20]);
    assert_eq!(offsets[20..], [1000; 10]);
}

/// `dedupe = false` overrides a connector that claims deduplication: an ambiguous
/// attempt is then held under `on_unknown = "hold"` instead of resent.
#[tokio::test]
async fn dedupe_false_makes_hold_really_hold() {
    let receiver = Scripted::new("receiver", unknown());
    assert!(receiver.capabilities.dedupe_by_key, "the connector must claim dedupe for this test");
    let mut lane = settings();
    lane.policy.on_unknown = OnUnknown::Hold;
    lane.dedupe = Some(false);
    let mut fx = Fixture::start(vec![(receiver.clone(), lane)]);
    let view = fx.submit("hello", &["receiver"]).await;
    let view = fx.wait_state(&view.id, 0, "held").await;
    assert!(view.deliveries[0].progress.ambiguous);
    assert_eq!(receiver.calls().len(), 1);
}

/// An ambiguous last attempt does not hide as `attempts_exhausted`: it fails as
/// `ambiguous`, saying the destination may have the message.
#[tokio::test]
async fn an_ambiguous_last_attempt_fails_as_ambiguous() {
    let receiver = Scripted::new("receiver", unknown());
    let mut lane = settings();
    lane.policy.max_attempts = 1;
    let mut fx = Fixture::start(vec![(receiver.clone(), lane)]);
    let view = fx.submit("hello", &["receiver"]).await;
    let view = fx.settle(&view.id).await;
    assert_eq!(state(&view, 0), State::Failed(FailReason::Ambiguous));
    let error = view.deliveries[0].progress.last_error.clone().unwrap_or_default();
    assert!(error.contains("may have received the message"), "{error}");
}

/// Invariant 5 with a failed update: it does not poison the thread; the updates after it
/// still go, in order, once it has ended.
#[tokio::test]
async fn a_failed_update_does_not_fail_the_updates_after_it() {
    let target = Scripted::new("target", delivered());
    target.script(1, [permanent()]);
    let mut fx = Fixture::start(vec![(target.clone(), settings())]);
    let view = fx.submit("opened", &["target"]).await;
    fx.update(&view, "update 1").await;
    fx.update(&view, "update 2").await;
    fx.update(&view, "update 3").await;
    let view = fx.settle(&view.id).await;
    assert_eq!(state(&view, 0), State::Delivered);
    assert_eq!(state(&view, 1), State::Failed(FailReason::Permanent));
    assert_eq!(state(&view, 2), State::Delivered, "a failed update failed the next one");
    assert_eq!(state(&view, 3), State::Delivered);
    let seqs: Vec<u32> = target.calls().iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3], "the thread went out of order");
}

/// Invariant 5 repaired: an operator's retry of a failed original revives its
/// `predecessor_failed` updates, which then go after it, in order.
#[tokio::test]
async fn retrying_a_failed_original_sends_its_updates_after_it() {
    let target = Scripted::new("target", delivered());
    target.script(0, [permanent()]);
    let mut fx = Fixture::start(vec![(target.clone(), settings())]);
    let view = fx.submit("opened", &["target"]).await;
    fx.update(&view, "update 1").await;
    fx.update(&view, "update 2").await;
    let failed = fx.settle(&view.id).await;
    assert_eq!(state(&failed, 0), State::Failed(FailReason::Permanent));
    assert_eq!(state(&failed, 2), State::Failed(FailReason::PredecessorFailed));
    assert_eq!(target.calls().len(), 1, "an update was sent although its original failed");

    let policy = settings().policy;
    let changes =
        fx.store.retry_delivery(&failed.deliveries[0].id, &policy, fx.clock.now()).await.unwrap();
    assert_eq!(changes.len(), 3, "the retry did not revive both updates: {changes:?}");
    fx.engine.notify(&changes);
    let view = fx.settle(&view.id).await;
    assert!(view.deliveries.iter().all(|d| d.progress.state == State::Delivered), "{view:#?}");
    let seqs: Vec<u32> = target.calls().iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![0, 0, 1, 2]);
}

/// Polls the store (no events announce a prune) until the broadcast is gone, bounded by
/// a real-time safety limit.
async fn wait_pruned(fx: &Fixture, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fx.store.broadcast(id).await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "{id} was never pruned");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn retention_prunes_terminal_broadcasts_by_age_on_the_engine_clock() {
    let ok = Scripted::new("ok", delivered());
    let bad = Scripted::new("bad", permanent());
    let retention = herald_engine::Retention {
        delivered: Duration::from_secs(3600),
        failed: Duration::from_secs(3 * 3600),
        interval: Duration::from_secs(600),
        batch: 1,
    };
    let config = EngineConfig { retention: Some(retention), ..EngineConfig::default() };
    let mut fx = Fixture::start_with(vec![(ok, settings()), (bad, settings())], config);
    let delivered = fx.submit("fine", &["ok"]).await;
    let failed = fx.submit("broken", &["ok", "bad"]).await;
    fx.settle(&delivered.id).await;
    fx.settle(&failed.id).await;

    // Passes run every 10 minutes of engine time; after 2 h the delivered broadcast is
    // past its hour, the failed one is within its 3 hours.
    for _ in 0..12 {
        fx.clock.advance(Duration::from_secs(600));
        tokio::task::yield_now().await;
    }
    wait_pruned(&fx, &delivered.id).await;
    let kept = fx.store.broadcast(&failed.id).await.unwrap();
    assert!(kept.is_some(), "a failed broadcast went before the failed age");

    for _ in 0..7 {
        fx.clock.advance(Duration::from_secs(600));
        tokio::task::yield_now().await;
    }
    wait_pruned(&fx, &failed.id).await;
    let stats = fx.store.destination_stats().await.unwrap();
    assert!(
        stats.iter().all(|s| s.delivered + s.failed == 0),
        "counters kept pruned rows: {stats:?}"
    );
}
