//! The circuit breaker: closed → open after consecutive destination failures → one
//! probe after the cool-down → closed or open again.

use proptest::prelude::*;

use super::*;

/// Opens after 3 consecutive failures, probes after 30 s.
fn breaker() -> Circuit {
    Circuit::new(CircuitPolicy { failure_threshold: 3, cool_down: secs(30) })
}

fn fail(c: &mut Circuit, now: Timestamp) {
    c.on_result(true, now);
}

fn succeed(c: &mut Circuit, now: Timestamp) {
    c.on_result(false, now);
}

#[test]
fn opens_after_the_threshold_of_consecutive_failures() {
    let mut c = breaker();
    assert_eq!(c.permits(T0), None, "closed means unlimited");
    fail(&mut c, T0);
    fail(&mut c, T0);
    assert_eq!(c.state, CircuitState::Closed { consecutive_failures: 2 });
    assert_eq!(c.permits(T0), None);
    let now = at(secs(5));
    fail(&mut c, now);
    assert_eq!(c.state, CircuitState::Open { until: at(secs(35)) });
    assert_eq!(c.open_until(), Some(at(secs(35))));
    assert_eq!(c.state.as_str(), "open");
}

#[test]
fn a_success_resets_the_count() {
    let mut c = breaker();
    fail(&mut c, T0);
    fail(&mut c, T0);
    succeed(&mut c, T0);
    assert_eq!(c.state, CircuitState::Closed { consecutive_failures: 0 });
    fail(&mut c, T0);
    fail(&mut c, T0);
    assert_eq!(c.state.as_str(), "closed", "two failures after a success must not open it");
    assert_eq!(c.open_until(), None);
}

#[test]
fn only_destination_failures_count() {
    let outcomes = [
        (Outcome::Retry { reason: "HTTP 503".into(), after: None }, true),
        (Outcome::Unknown { reason: "timeout".into() }, true),
        (Outcome::Throttled { after: None, reason: "HTTP 429".into() }, false),
        (Outcome::Permanent { reason: "HTTP 404".into() }, false),
        (Outcome::Delivered { remote_ref: None }, false),
    ];
    for (outcome, opens) in outcomes {
        let mut c = breaker();
        for _ in 0..3 {
            c.on_result(outcome.is_destination_failure(), T0);
        }
        assert_eq!(c.open_until().is_some(), opens, "{outcome:?}");
    }
}

#[test]
fn open_grants_nothing_until_the_cool_down_then_one_probe() {
    let mut c = breaker();
    for _ in 0..3 {
        fail(&mut c, T0);
    }
    for now in [T0, at(secs(10)), at(ms(29_999))] {
        assert_eq!(c.permits(now), Some(0));
        assert_eq!(c.open_until(), Some(at(secs(30))), "asking must not move the deadline");
    }
    assert_eq!(c.permits(at(secs(30))), Some(1));
    assert_eq!(c.state, CircuitState::HalfOpen { probing: false });
    assert_eq!(c.state.as_str(), "half_open");
    assert_eq!(c.permits(at(secs(31))), Some(1), "not handed out yet");
    c.on_dispatch();
    assert_eq!(c.permits(at(secs(31))), Some(0), "only one probe at a time");
    assert_eq!(c.permits(at(secs(300))), Some(0), "still waiting for the probe's result");
}

#[test]
fn a_failed_probe_reopens_for_another_cool_down() {
    let mut c = breaker();
    for _ in 0..3 {
        fail(&mut c, T0);
    }
    assert_eq!(c.permits(at(secs(30))), Some(1));
    c.on_dispatch();
    fail(&mut c, at(secs(31)));
    assert_eq!(c.state, CircuitState::Open { until: at(secs(61)) });
    assert_eq!(c.permits(at(secs(60))), Some(0));
    assert_eq!(c.permits(at(secs(61))), Some(1));
}

#[test]
fn a_successful_probe_closes_the_circuit() {
    let mut c = breaker();
    for _ in 0..3 {
        fail(&mut c, T0);
    }
    assert_eq!(c.permits(at(secs(30))), Some(1));
    c.on_dispatch();
    succeed(&mut c, at(secs(31)));
    assert_eq!(c.state, CircuitState::Closed { consecutive_failures: 0 });
    assert_eq!(c.permits(at(secs(31))), None);
    fail(&mut c, at(secs(32)));
    assert_eq!(c.state.as_str(), "closed", "the count starts over after closing");
}

#[test]
fn dispatch_only_matters_when_half_open() {
    let mut c = breaker();
    c.on_dispatch();
    assert_eq!(c, breaker());
    for _ in 0..3 {
        fail(&mut c, T0);
    }
    let open = c.clone();
    c.on_dispatch();
    assert_eq!(c, open);
}

#[test]
fn design_defaults() {
    let c = Circuit::new(CircuitPolicy::default());
    assert_eq!(c.policy.failure_threshold, 5);
    assert_eq!(c.state, CircuitState::Closed { consecutive_failures: 0 });
}

#[derive(Debug, Clone)]
enum Op {
    Permits(u64),
    Dispatch,
    Result { failed: bool, after: u64 },
}

fn ops() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..=20_000).prop_map(Op::Permits),
        Just(Op::Dispatch),
        (any::<bool>(), 0u64..=20_000).prop_map(|(failed, after)| Op::Result { failed, after }),
    ]
}

proptest! {
    #[test]
    fn permits_are_never_more_than_one_probe_nor_granted_early(
        threshold in 1u32..=6,
        cool_down in 0u64..=60_000,
        script in prop::collection::vec(ops(), 1..80),
    ) {
        let mut c = Circuit::new(CircuitPolicy { failure_threshold: threshold, cool_down: ms(cool_down) });
        let mut now = T0;
        // Consecutive failures fed since the last success, and when the last one came.
        let mut streak = 0u32;
        let mut last_failure = T0;
        let mut probe_out = false;
        for op in script {
            match op {
                Op::Permits(dt) => {
                    now = now.add(ms(dt));
                    let before = c.state;
                    let permits = c.permits(now);
                    prop_assert!(!matches!(permits, Some(n) if n > 1), "{:?}", permits);
                    match before {
                        CircuitState::Open { until } if now < until => {
                            prop_assert_eq!(permits, Some(0));
                            prop_assert_eq!(c.state, before);
                        }
                        CircuitState::Open { .. } => prop_assert_eq!(permits, Some(1)),
                        CircuitState::Closed { .. } => prop_assert_eq!(permits, None),
                        CircuitState::HalfOpen { .. } => {
                            prop_assert_eq!(permits, Some(if probe_out { 0 } else { 1 }));
                        }
                    }
                }
                Op::Dispatch => {
                    if let CircuitState::HalfOpen { .. } = c.state {
                        probe_out = true;
                    }
                    c.on_dispatch();
                }
                Op::Result { failed, after } => {
                    now = now.add(ms(after));
                    c.on_result(failed, now);
                    probe_out = false;
                    if failed {
                        streak += 1;
                        last_failure = now;
                    } else {
                        streak = 0;
                    }
                }
            }
            match c.state {
                CircuitState::Closed { consecutive_failures } => {
                    prop_assert_eq!(consecutive_failures, streak);
                    prop_assert!(streak < threshold, "should have opened");
                }
                CircuitState::Open { until } => {
                    prop_assert!(streak >= threshold, "opened too early");
                    prop_assert_eq!(until, last_failure.add(ms(cool_down)));
                }
                CircuitState::HalfOpen { probing } => {
                    prop_assert!(streak >= threshold);
                    prop_assert_eq!(probing, probe_out);
                }
            }
        }
    }
}
