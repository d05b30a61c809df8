//! The transitions outside `next`: a lane's claim and release, a predecessor's end, and
//! an operator's retry and cancel.

use super::*;
use crate::delivery::{NotAllowed, cancel, claim, expire, on_predecessor, operator_retry, release};

#[test]
fn claim_takes_a_pending_delivery_once_it_is_due() {
    let p =
        Progress { next_attempt_at: at(secs(5)), attempts: 2, ..progress_in(State::Pending, 0) };
    assert_eq!(claim(&p, at(ms(4999))), None, "not due yet");
    for now in [at(secs(5)), at(secs(6)), at(secs(7200))] {
        let claimed = claim(&p, now).unwrap();
        assert_eq!(
            claimed,
            Progress { state: State::InFlight, ..p.clone() },
            "only the state moves"
        );
    }
}

#[test]
fn claim_refuses_every_state_but_pending() {
    for state in all_states().into_iter().filter(|s| *s != State::Pending) {
        let p = progress_in(state.clone(), 1);
        assert_eq!(claim(&p, at(secs(60))), None, "{state:?} must not be claimable");
    }
}

#[test]
fn a_claimed_delivery_cannot_be_claimed_again() {
    let p = fresh(&policy(3));
    let claimed = claim(&p, T0).unwrap();
    assert_eq!(claim(&claimed, T0), None);
}

#[test]
fn release_puts_an_in_flight_delivery_back_due_at_once() {
    let p = Progress { next_attempt_at: at(secs(5)), ..progress_in(State::InFlight, 2) };
    let now = at(secs(9));
    let released = release(&p, now);
    assert_eq!(describe(&released, now), "#2 pending +0s");
    assert_eq!(released, Progress { state: State::Pending, next_attempt_at: now, ..p });
    assert!(claim(&released, now).is_some());
}

#[test]
fn release_leaves_every_other_state_alone() {
    for state in all_states().into_iter().filter(|s| *s != State::InFlight) {
        let p = progress_in(state.clone(), 1);
        assert_eq!(release(&p, at(secs(9))), p, "{state:?}");
    }
}

fn waiting_update() -> Progress {
    let policy = policy(5);
    Progress::new(T0, T0.add(policy.max_age), policy.max_attempts, true)
}

#[test]
fn a_delivered_predecessor_makes_the_update_due() {
    let p = waiting_update();
    assert_eq!(p.state, State::Waiting);
    let now = at(secs(42));
    let res = on_predecessor(&p, &State::Delivered, now);
    assert_eq!(res, Progress { state: State::Pending, next_attempt_at: now, ..p });
}

#[test]
fn a_predecessor_that_ended_otherwise_fails_the_update() {
    let p = waiting_update();
    let ended = all_states().into_iter().filter(|s| s.is_terminal() && *s != State::Delivered);
    for predecessor in ended {
        let res = on_predecessor(&p, &predecessor, at(secs(1)));
        assert_eq!(res.state, State::Failed(FailReason::PredecessorFailed), "{predecessor:?}");
        assert_eq!(res.attempts, 0);
        assert!(res.last_error.is_some(), "the API must say why");
    }
}

#[test]
fn a_predecessor_still_in_progress_changes_nothing() {
    let p = waiting_update();
    for predecessor in all_states().into_iter().filter(|s| !s.is_terminal()) {
        assert_eq!(on_predecessor(&p, &predecessor, at(secs(1))), p, "{predecessor:?}");
    }
}

#[test]
fn on_predecessor_only_moves_waiting_updates() {
    for state in all_states().into_iter().filter(|s| *s != State::Waiting) {
        let p = progress_in(state.clone(), 1);
        for predecessor in [State::Delivered, State::Failed(FailReason::Expired), State::Cancelled]
        {
            assert_eq!(
                on_predecessor(&p, &predecessor, at(secs(1))),
                p,
                "{state:?}/{predecessor:?}"
            );
        }
    }
}

#[test]
fn operator_retry_restarts_held_failed_and_pending_deliveries() {
    let policy = policy(5);
    let now = at(secs(7200)); // after the original 1 h expiry
    let allowed = [
        State::Held,
        State::Pending,
        State::Failed(FailReason::Permanent),
        State::Failed(FailReason::AttemptsExhausted),
        State::Failed(FailReason::Expired),
    ];
    for state in allowed {
        let p = Progress {
            next_attempt_at: at(secs(30)),
            ambiguous: true,
            last_error: Some("timeout".into()),
            ..progress_in(state.clone(), 4)
        };
        let res = operator_retry(&p, &policy, now).unwrap();
        assert_eq!(
            res,
            Progress {
                state: State::Pending,
                attempts: 0,
                next_attempt_at: now,
                expires_at: now.add(policy.max_age),
                ..p.clone()
            },
            "{state:?}: due now with a fresh budget and age, still ambiguous"
        );
    }
}

#[test]
fn operator_retry_never_shortens_the_expiry() {
    let policy = policy(5);
    let p = Progress { expires_at: at(secs(86_400)), ..progress_in(State::Held, 1) };
    let res = operator_retry(&p, &policy, at(secs(10))).unwrap();
    assert_eq!(res.expires_at, at(secs(86_400)));
}

#[test]
fn operator_retry_refuses_what_would_duplicate_or_reorder() {
    let refused = [
        (State::Delivered, "delivered"),
        (State::Cancelled, "cancelled"),
        (State::Waiting, "waiting"),
        (State::InFlight, "in_flight"),
        (
            State::Failed(FailReason::PredecessorFailed),
            "failed (predecessor_failed); retry the original on this destination instead",
        ),
    ];
    for (state, name) in refused {
        let p = progress_in(state, 2);
        assert_eq!(operator_retry(&p, &policy(5), at(secs(1))), Err(NotAllowed { state: name }));
    }
}

#[test]
fn cancel_ends_any_delivery_that_has_not_ended() {
    for state in all_states().into_iter().filter(|s| !s.is_terminal()) {
        let p = progress_in(state.clone(), 2);
        // The attempt in flight at the cancel may reach the destination: it counts.
        let attempts = if state == State::InFlight { 3 } else { 2 };
        assert_eq!(
            cancel(&p),
            Ok(Progress { state: State::Cancelled, attempts, ..p }),
            "{state:?}"
        );
    }
}

#[test]
fn cancel_refuses_terminal_deliveries() {
    for state in all_states().into_iter().filter(State::is_terminal) {
        let p = progress_in(state.clone(), 2);
        assert_eq!(cancel(&p), Err(NotAllowed { state: state.as_str() }));
    }
}

#[test]
fn new_deliveries_start_pending_or_waiting_with_at_least_one_attempt() {
    let p = Progress::new(T0, at(secs(60)), 0, false);
    assert_eq!(describe(&p, T0), "#0 pending +0s");
    assert_eq!(p.max_attempts, 1, "a zero budget would fail before trying");
    assert_eq!(p.expires_at, at(secs(60)));
    assert_eq!(describe(&Progress::new(T0, at(secs(60)), 3, true), T0), "#0 waiting");
}

#[test]
fn expire_fails_a_delivery_found_past_its_deadline_without_an_attempt() {
    let p = Progress { expires_at: at(secs(60)), ..progress_in(State::InFlight, 2) };
    assert_eq!(expire(&p, at(ms(59_999))), None, "still attemptable");
    for now in [at(secs(60)), at(secs(3600))] {
        let res = expire(&p, now).unwrap();
        assert_eq!(describe(&res, now).split(" (").next(), Some("#2 failed expired"));
        assert!(res.last_error.is_some(), "the API must say why");
    }
    for state in all_states().into_iter().filter(|s| !s.is_terminal()) {
        let p = Progress { expires_at: at(secs(60)), ..progress_in(state.clone(), 1) };
        assert!(expire(&p, at(secs(60))).is_some(), "{state:?}");
    }
}

#[test]
fn expire_leaves_terminal_deliveries_alone() {
    for state in all_states().into_iter().filter(State::is_terminal) {
        let p = Progress { expires_at: at(secs(60)), ..progress_in(state.clone(), 1) };
        assert_eq!(expire(&p, at(secs(120))), None, "{state:?}");
    }
}
