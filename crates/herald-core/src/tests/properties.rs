//! Property tests of the delivery invariants (DESIGN.md "Delivery state machine") over
//! random policies, capabilities, outcomes, times and jitters.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;
use crate::delivery::{cancel, claim, expire, on_predecessor, operator_retry, release};

fn policies() -> impl Strategy<Value = RetryPolicy> {
    (1u32..=10, 0u64..=5_000, 0u64..=300_000, 0u64..=7_200_000, any::<bool>()).prop_map(
        |(max_attempts, base, max, age, hold)| RetryPolicy {
            max_attempts,
            backoff_base: ms(base),
            backoff_max: ms(max),
            max_age: ms(age),
            timeout: secs(10),
            on_unknown: if hold { OnUnknown::Hold } else { OnUnknown::Resend },
        },
    )
}

fn capabilities() -> impl Strategy<Value = Capabilities> {
    any::<[bool; 4]>().prop_map(|[dedupe_by_key, lookup, edit, thread_reply]| Capabilities {
        dedupe_by_key,
        lookup,
        edit,
        thread_reply,
    })
}

fn afters() -> impl Strategy<Value = Option<Duration>> {
    prop::option::of((0u64..=400_000).prop_map(ms))
}

fn outcomes() -> impl Strategy<Value = Outcome> {
    let reason = prop::sample::select(vec!["HTTP 503", "HTTP 429", "timeout", "400 bad"]);
    prop_oneof![
        (prop::option::of(Just("ref".to_string())), any::<bool>())
            .prop_map(|(remote_ref, unconfirmed)| Outcome::Delivered { remote_ref, unconfirmed }),
        (reason.clone(), afters())
            .prop_map(|(r, after)| Outcome::Retry { reason: r.into(), after }),
        (reason.clone(), afters())
            .prop_map(|(r, after)| Outcome::Throttled { reason: r.into(), after }),
        reason.clone().prop_map(|r| Outcome::Permanent { reason: r.into() }),
        reason.clone().prop_map(|r| Outcome::Unknown { reason: r.into() }),
        (reason, (1u64..=400_000).prop_map(ms))
            .prop_map(|(r, after)| Outcome::Reconciling { reason: r.into(), after }),
    ]
}

fn states() -> impl Strategy<Value = State> {
    prop::sample::select(all_states())
}

/// Any progress the state machine can hold: a non-terminal one has attempts left.
fn progresses() -> impl Strategy<Value = Progress> {
    (states(), 1u32..=10, 0u32..=10, 0u64..=3_600_000, 0u64..=7_200_000, any::<bool>()).prop_map(
        |(state, max_attempts, attempts, next_in, expires_in, ambiguous)| {
            let cap = if state.is_terminal() { max_attempts } else { max_attempts - 1 };
            Progress {
                state,
                attempts: attempts.min(cap),
                max_attempts,
                next_attempt_at: at(ms(next_in)),
                expires_at: at(ms(expires_in)),
                ambiguous,
                last_error: None,
                remote_ref: None,
                delivered_at: None,
                unconfirmed: false,
            }
        },
    )
}

/// Every rule `next` must keep for one step from `prev` to `res`.
fn check_next(
    prev: &Progress,
    outcome: &Outcome,
    policy: &RetryPolicy,
    caps: Capabilities,
    now: Timestamp,
    res: &Progress,
) -> Result<(), TestCaseError> {
    if prev.state.is_terminal() || prev.state == State::Held {
        prop_assert_eq!(res, prev, "terminal and held states absorb every outcome");
        return Ok(());
    }
    prop_assert_eq!(res.max_attempts, prev.max_attempts);
    prop_assert!(res.attempts <= res.max_attempts, "attempts beyond the budget");
    if let Outcome::Throttled { .. } | Outcome::Reconciling { .. } = outcome {
        prop_assert_eq!(res.attempts, prev.attempts, "a throttle or a wait consumed an attempt");
    } else {
        prop_assert_eq!(res.attempts, prev.attempts + 1, "an attempt was not counted");
    }
    match &res.state {
        State::Pending => {
            prop_assert!(res.attempts < res.max_attempts, "pending with no attempt left");
        }
        State::Held => {}
        State::Delivered | State::Failed(_) => {}
        other => prop_assert!(false, "next left the delivery {:?}", other),
    }
    let delivered = matches!(outcome, Outcome::Delivered { .. });
    prop_assert_eq!(res.state == State::Delivered, delivered);
    if let Outcome::Delivered { unconfirmed, .. } = outcome {
        prop_assert_eq!(res.unconfirmed, *unconfirmed, "an unconfirmed post stays marked");
    }
    if let Outcome::Reconciling { .. } = outcome {
        prop_assert_eq!(res.ambiguous, prev.ambiguous, "a look-up that must wait keeps the doubt");
    }
    if delivered {
        prop_assert_eq!(res.delivered_at, Some(now));
        prop_assert!(!res.ambiguous);
    } else if now >= prev.expires_at {
        prop_assert_eq!(&res.state, &State::Failed(FailReason::Expired), "expiry must win");
    }
    if let Outcome::Unknown { .. } = outcome {
        prop_assert!(res.ambiguous, "an unknown outcome must be reconciled");
    }
    let last = res.attempts >= res.max_attempts;
    if res.state == State::Held {
        let hold = policy.on_unknown == OnUnknown::Hold && (last || !caps.resolves_ambiguity());
        prop_assert!(matches!(outcome, Outcome::Unknown { .. }) && hold, "held without cause");
    }
    if let (Outcome::Unknown { .. }, true) = (outcome, last) {
        // An ambiguous last attempt never hides behind "attempts exhausted".
        prop_assert!(
            matches!(
                res.state,
                State::Held | State::Failed(FailReason::Ambiguous | FailReason::Expired)
            ),
            "an ambiguous last attempt ended {:?}",
            res.state
        );
    }
    if !delivered {
        let kept = res.last_error.as_deref().zip(outcome.reason());
        prop_assert!(
            kept.is_some_and(|(error, reason)| error.starts_with(reason)),
            "the reason is kept: {:?}",
            res.last_error
        );
    }
    if res.state == State::Pending {
        prop_assert!(res.next_attempt_at >= now, "scheduled in the past");
        prop_assert!(res.next_attempt_at <= res.expires_at, "scheduled after the expiry");
        let delay = res.next_attempt_at.since(now);
        match outcome {
            Outcome::Retry { after, .. } => {
                let ceiling = policy.ceiling(res.attempts);
                let after = after.unwrap_or_default();
                if after > ceiling {
                    prop_assert_eq!(delay, after, "a longer Retry-After is honoured exactly");
                } else {
                    prop_assert!(after <= delay && delay <= ceiling, "{:?} > {:?}", delay, ceiling);
                }
            }
            Outcome::Throttled { after: Some(after), .. } => prop_assert_eq!(delay, *after),
            Outcome::Throttled { after: None, .. } => {
                prop_assert!(delay <= policy.ceiling(res.attempts + 1));
            }
            Outcome::Unknown { .. } => prop_assert!(delay <= policy.ceiling(res.attempts)),
            Outcome::Reconciling { after, .. } => prop_assert_eq!(delay, *after),
            Outcome::Delivered { .. } | Outcome::Permanent { .. } => {
                prop_assert!(false, "{} left the delivery pending", outcome.class());
            }
        }
    }
    Ok(())
}

/// One thing that can happen to a delivery.
#[derive(Debug, Clone)]
enum Op {
    /// The clock moves forward.
    Wait(u64),
    /// A lane claims the delivery if it can, then the attempt ends in the outcome.
    Attempt(Outcome, f64),
    /// The outcome is applied to whatever state the delivery is in.
    Raw(Outcome, f64),
    Release,
    OperatorRetry,
    Cancel,
    Expire,
    Predecessor(State),
}

fn ops() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..=600_000).prop_map(Op::Wait),
        8 => (outcomes(), 0.0..=1.0f64).prop_map(|(o, j)| Op::Attempt(o, j)),
        2 => (outcomes(), 0.0..=1.0f64).prop_map(|(o, j)| Op::Raw(o, j)),
        1 => Just(Op::Release),
        1 => Just(Op::OperatorRetry),
        1 => Just(Op::Cancel),
        1 => Just(Op::Expire),
        1 => states().prop_map(Op::Predecessor),
    ]
}

proptest! {
    #[test]
    fn next_keeps_every_rule_from_any_state(
        prev in progresses(),
        outcome in outcomes(),
        policy in policies(),
        caps in capabilities(),
        now_in in 0u64..=8_000_000,
        jitter in 0.0..=1.0f64,
    ) {
        let now = at(ms(now_in));
        let res = next(&prev, outcome.clone(), &policy, caps, now, jitter);
        check_next(&prev, &outcome, &policy, caps, now, &res)?;
    }

    #[test]
    fn random_lives_keep_every_rule(
        policy in policies(),
        caps in capabilities(),
        waiting in any::<bool>(),
        script in prop::collection::vec(ops(), 1..60),
    ) {
        let mut now = T0;
        let mut p = Progress::new(T0, T0.add(policy.max_age), policy.max_attempts, waiting);
        for op in script {
            let before = p.clone();
            let lane = matches!(op, Op::Attempt(..));
            match op {
                Op::Wait(d) => now = now.add(ms(d)),
                Op::Attempt(outcome, jitter) | Op::Raw(outcome, jitter) => {
                    let mut prev = p.clone();
                    if let Some(claimed) = claim(&p, now).filter(|_| lane) {
                        prev = claimed;
                    }
                    p = next(&prev, outcome.clone(), &policy, caps, now, jitter);
                    check_next(&prev, &outcome, &policy, caps, now, &p)?;
                }
                Op::Release => p = release(&p, now),
                Op::OperatorRetry => {
                    if let Ok(res) = operator_retry(&p, &policy, now) {
                        p = res;
                    }
                }
                Op::Cancel => {
                    prop_assert_eq!(cancel(&p).is_ok(), !p.state.is_terminal());
                    if let Ok(res) = cancel(&p) {
                        p = res;
                    }
                }
                Op::Expire => {
                    prop_assert_eq!(
                        expire(&p, now).is_some(),
                        !p.state.is_terminal() && now >= p.expires_at
                    );
                    if let Some(res) = expire(&p, now) {
                        p = res;
                    }
                }
                Op::Predecessor(state) => p = on_predecessor(&p, &state, now),
            }
            prop_assert!(p.attempts <= p.max_attempts);
            // A held delivery may have used its last attempt: an operator decides.
            if !p.state.is_terminal() && p.state != State::Held {
                prop_assert!(p.attempts < p.max_attempts, "{:?} with no attempt left", p.state);
            }
            prop_assert_eq!(p.max_attempts, before.max_attempts, "the budget is fixed");
            if before.state.is_terminal() && p != before {
                // Only an operator may revive a failed delivery.
                prop_assert!(matches!(before.state, State::Failed(_)) && p.state == State::Pending);
                prop_assert_eq!(p.attempts, 0);
            }
        }
    }

    #[test]
    fn throttles_alone_never_consume_the_budget(
        policy in policies(),
        afters in prop::collection::vec(afters(), 1..40),
        jitter in 0.0..=1.0f64,
    ) {
        let mut p = fresh(&policy);
        let mut now = T0;
        for after in afters {
            now = now.max(p.next_attempt_at);
            let outcome = Outcome::Throttled { after, reason: "HTTP 429".into() };
            p = next(&p, outcome, &policy, Capabilities::default(), now, jitter);
            prop_assert_eq!(p.attempts, 0);
            prop_assert!(matches!(p.state, State::Pending | State::Failed(FailReason::Expired)));
        }
    }

    #[test]
    fn the_ceiling_grows_with_the_attempt_and_stays_under_the_cap(
        base in any::<u64>(),
        max in any::<u64>(),
        attempt in any::<u32>(),
    ) {
        let policy = RetryPolicy { backoff_base: ms(base), backoff_max: ms(max), ..policy(8) };
        let ceiling = policy.ceiling(attempt);
        prop_assert!(ceiling <= policy.backoff_max);
        prop_assert!(ceiling <= policy.ceiling(attempt.saturating_add(1)));
        prop_assert!(policy.ceiling(attempt / 2) <= ceiling);
        if (1..=20).contains(&attempt) && base <= 1 << 40 {
            let doubled = ms(base << (attempt - 1));
            prop_assert_eq!(ceiling, doubled.min(policy.backoff_max), "base * 2^(attempt-1), capped");
        }
    }

    #[test]
    fn the_delay_stays_in_bounds_whatever_the_jitter(
        base in any::<u64>(),
        max in any::<u64>(),
        attempt in any::<u32>(),
        jitter in prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            -2.0..=2.0f64,
            Just(1.0),
        ],
    ) {
        let policy = RetryPolicy { backoff_base: ms(base), backoff_max: ms(max), ..policy(8) };
        let delay = policy.delay(attempt, jitter);
        prop_assert!(delay <= policy.ceiling(attempt), "{:?} > {:?}", delay, policy.ceiling(attempt));
    }

    #[test]
    fn more_jitter_never_means_a_shorter_delay(
        base in 0u64..=10_000,
        attempt in 0u32..=40,
        a in 0.0..=1.0f64,
        b in 0.0..=1.0f64,
    ) {
        let policy = RetryPolicy { backoff_base: ms(base), backoff_max: secs(600), ..policy(8) };
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(policy.delay(attempt, lo) <= policy.delay(attempt, hi));
    }
}

#[test]
fn delay_maps_jitter_onto_the_ceiling() {
    let policy = RetryPolicy { backoff_max: secs(600), ..policy(8) };
    assert_eq!(policy.delay(3, 1.0), secs(4));
    assert_eq!(policy.delay(3, 0.5), secs(2));
    assert_eq!(policy.delay(3, 0.0), secs(0));
    assert_eq!(policy.delay(3, 7.0), secs(4), "clamped to 1");
    assert_eq!(policy.delay(3, -1.0), secs(0), "clamped to 0");
    assert_eq!(policy.delay(3, f64::NAN), secs(0), "NaN counts as 0");
    assert_eq!(policy.delay(40, 1.0), secs(600), "capped");
}

#[test]
fn ceiling_examples() {
    let policy = RetryPolicy::default();
    let got: Vec<String> = (0..=12).map(|a| human(policy.ceiling(a))).collect();
    assert_eq!(got.join(" "), "1s 1s 2s 4s 8s 16s 32s 64s 128s 256s 512s 10m 10m");
    assert_eq!(policy.ceiling(u32::MAX), secs(600));
    let huge = RetryPolicy { backoff_base: Duration::MAX, backoff_max: Duration::MAX, ..policy };
    assert_eq!(huge.ceiling(u32::MAX), ms(u64::MAX), "saturates instead of overflowing");
}

#[test]
fn design_defaults() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.max_attempts, 8);
    assert_eq!(policy.backoff_base, secs(1));
    assert_eq!(policy.backoff_max, secs(600));
    assert_eq!(policy.max_age, secs(24 * 3600));
    assert_eq!(policy.timeout, secs(10));
    assert_eq!(policy.on_unknown, OnUnknown::Resend);
}

/// Regression: above 2^53 ms the f64 product rounded past the ceiling (found by
/// `the_delay_stays_in_bounds_whatever_the_jitter`).
#[test]
fn regression_delay_never_rounds_past_a_huge_ceiling() {
    let policy =
        RetryPolicy { backoff_base: ms(2), backoff_max: ms(9_053_313_943_432_279), ..policy(8) };
    assert_eq!(policy.delay(54, f64::INFINITY), policy.ceiling(54));
    assert_eq!(policy.delay(54, 1.0), policy.ceiling(54));
}

proptest! {
    /// A breaker's probe that fails gives its attempt back: the delivery keeps its count
    /// and never ends for want of attempts because of it; any other answer counts as a
    /// normal attempt does.
    #[test]
    fn a_failed_probe_never_uses_the_attempt_budget(
        prev in progresses(),
        outcome in outcomes(),
        policy in policies(),
        caps in capabilities(),
        now_in in 0u64..=8_000_000,
        jitter in 0.0..=1.0f64,
    ) {
        let now = at(ms(now_in));
        // A claimed delivery always has an attempt left (`claim` takes only pending ones).
        prop_assume!(prev.attempts < prev.max_attempts);
        let prev = Progress { state: State::InFlight, ..prev };
        let res = crate::delivery::next_after_probe(&prev, outcome.clone(), &policy, caps, now, jitter);
        let failed = matches!(outcome, Outcome::Retry { .. } | Outcome::Unknown { .. });
        if failed {
            prop_assert_eq!(res.attempts, prev.attempts, "a failed probe used an attempt");
            prop_assert_eq!(res.max_attempts, prev.max_attempts);
            prop_assert!(
                !matches!(res.state, State::Failed(FailReason::AttemptsExhausted | FailReason::Ambiguous)),
                "a failed probe ended the delivery: {:?}", res.state
            );
        } else {
            prop_assert_eq!(res, next(&prev, outcome, &policy, caps, now, jitter));
        }
    }
}
