//! The lane's throttle: pause for `Retry-After`, pace, calm down after a streak.

use std::time::Duration;

use proptest::prelude::*;

use crate::throttle::{CALM_STREAK, DEFAULT_PAUSE, Throttle};
use crate::{Outcome, Timestamp};

fn throttled(secs: u64) -> Outcome {
    Outcome::Throttled { after: Some(Duration::from_secs(secs)), reason: "HTTP 429".into() }
}

fn delivered() -> Outcome {
    Outcome::delivered(None)
}

const T: Timestamp = Timestamp(1_000_000);

#[test]
fn a_calm_lane_is_not_limited() {
    let throttle = Throttle::default();
    assert_eq!(throttle.permits(T), None);
    assert_eq!(throttle.wait_until(T), None);
}

#[test]
fn a_throttle_pauses_the_lane_for_retry_after_then_paces_it() {
    let mut throttle = Throttle::default();
    throttle.on_outcome(&throttled(2), T);
    assert_eq!(throttle.permits(T), Some(0));
    assert_eq!(throttle.permits(T.add(Duration::from_millis(1999))), Some(0));
    assert_eq!(throttle.wait_until(T), Some(T.add(Duration::from_secs(2))));
    let later = T.add(Duration::from_secs(2));
    assert_eq!(throttle.permits(later), Some(1));
    throttle.on_dispatch(later);
    assert_eq!(throttle.permits(later), Some(0), "pacing allowed two attempts in one interval");
    assert_eq!(throttle.permits(later.add(Duration::from_secs(2))), Some(1));
}

#[test]
fn pacing_ends_after_a_streak_of_unthrottled_attempts() {
    let mut throttle = Throttle::default();
    throttle.on_outcome(&throttled(1), T);
    for n in 1..CALM_STREAK {
        throttle.on_outcome(&delivered(), T);
        assert!(throttle.is_pacing(), "pacing ended after {n} successes");
    }
    throttle.on_outcome(&delivered(), T);
    assert!(!throttle.is_pacing());
    assert_eq!(throttle.permits(T), None);
}

#[test]
fn a_throttle_during_pacing_restarts_the_streak() {
    let mut throttle = Throttle::default();
    throttle.on_outcome(&throttled(1), T);
    for _ in 0..CALM_STREAK - 1 {
        throttle.on_outcome(&delivered(), T);
    }
    throttle.on_outcome(&throttled(1), T);
    throttle.on_outcome(&delivered(), T);
    assert!(throttle.is_pacing());
}

#[test]
fn a_throttle_without_retry_after_pauses_for_the_default() {
    let mut throttle = Throttle::default();
    throttle.on_outcome(&Outcome::Throttled { after: None, reason: "429".into() }, T);
    assert_eq!(throttle.wait_until(T), Some(T.add(DEFAULT_PAUSE)));
}

#[test]
fn a_shorter_retry_after_never_shortens_a_pause() {
    let mut throttle = Throttle::default();
    throttle.on_outcome(&throttled(10), T);
    throttle.on_outcome(&throttled(1), T);
    assert_eq!(throttle.wait_until(T), Some(T.add(Duration::from_secs(10))));
}

proptest! {
    /// Never more than one attempt at a time while slowed down, and none before the
    /// pause ends.
    #[test]
    fn permits_respect_the_pause(events in proptest::collection::vec((0u8..3, 0u64..5_000), 1..60)) {
        let mut throttle = Throttle::default();
        let mut now = T;
        for (kind, step) in events {
            now = now.add(Duration::from_millis(step));
            let permits = throttle.permits(now);
            if let Some(until) = throttle.wait_until(now) {
                prop_assert!(until > now);
                prop_assert_eq!(permits, Some(0));
            }
            if throttle.is_pacing() {
                prop_assert!(permits.is_some_and(|p| p <= 1));
            }
            match kind {
                0 => throttle.on_outcome(&throttled(1), now),
                1 => throttle.on_outcome(&delivered(), now),
                _ => if permits != Some(0) { throttle.on_dispatch(now) },
            }
        }
    }
}
