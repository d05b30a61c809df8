//! Trace tests of `delivery::next`: a delivery driven through scripted outcomes.
//!
//! Each trace line is `@<time since T0> <outcome class> -> <describe(progress)>`. The
//! driver behaves like a lane: a pending delivery is claimed when it falls due (the
//! clock jumps forward to `next_attempt_at`), then the scripted outcome is applied at
//! that instant. `wait(d)` moves the clock further, e.g. past the expiry.

use std::fmt::Write;

use super::*;
use crate::delivery::claim;

#[derive(Clone)]
enum Step {
    Attempt(Outcome),
    Wait(Duration),
}

fn retry(code: u16) -> Step {
    Step::Attempt(Outcome::Retry { reason: format!("HTTP {code}"), after: None })
}

fn retry_after(code: u16, after: Duration) -> Step {
    Step::Attempt(Outcome::Retry { reason: format!("HTTP {code}"), after: Some(after) })
}

fn throttled() -> Step {
    Step::Attempt(Outcome::Throttled { after: None, reason: "HTTP 429".into() })
}

fn throttled_for(after: Duration) -> Step {
    Step::Attempt(Outcome::Throttled { after: Some(after), reason: "HTTP 429".into() })
}

fn permanent(reason: &str) -> Step {
    Step::Attempt(Outcome::Permanent { reason: reason.into() })
}

fn unknown(reason: &str) -> Step {
    Step::Attempt(Outcome::Unknown { reason: reason.into() })
}

fn delivered(remote_ref: &str) -> Step {
    Step::Attempt(Outcome::delivered(Some(remote_ref.into())))
}

fn wait(d: Duration) -> Step {
    Step::Wait(d)
}

/// A scripted run: the policy, the destination's capabilities, the starting progress
/// and the jitter sample used for every attempt (1.0 makes each delay its ceiling).
struct Run {
    policy: RetryPolicy,
    caps: Capabilities,
    progress: Progress,
    jitter: f64,
}

fn run(policy: RetryPolicy) -> Run {
    Run { progress: fresh(&policy), policy, caps: Capabilities::default(), jitter: 1.0 }
}

const DEDUPE: Capabilities =
    Capabilities { dedupe_by_key: true, lookup: false, edit: false, thread_reply: false };
const LOOKUP: Capabilities =
    Capabilities { dedupe_by_key: false, lookup: true, edit: false, thread_reply: false };

fn hold(policy: RetryPolicy) -> RetryPolicy {
    RetryPolicy { on_unknown: OnUnknown::Hold, ..policy }
}

impl Run {
    fn caps(mut self, caps: Capabilities) -> Run {
        self.caps = caps;
        self
    }

    fn jitter(mut self, jitter: f64) -> Run {
        self.jitter = jitter;
        self
    }

    fn expires_in(mut self, d: Duration) -> Run {
        self.progress.expires_at = at(d);
        self
    }

    #[track_caller]
    fn check(self, script: &[Step], expected: &str) {
        let mut now = T0;
        let mut p = self.progress;
        let mut trace = String::new();
        for step in script {
            let outcome = match step {
                Step::Wait(d) => {
                    now = now.add(*d);
                    continue;
                }
                Step::Attempt(outcome) => outcome.clone(),
            };
            if p.state == State::Pending {
                now = now.max(p.next_attempt_at);
                p = claim(&p, now).expect("a due pending delivery is claimable");
            }
            let class = outcome.class();
            p = next(&p, outcome, &self.policy, self.caps, now, self.jitter);
            writeln!(trace, "@{} {class} -> {}", human(now.since(T0)), describe(&p, now)).unwrap();
        }
        assert_text(&trace, expected);
    }
}

#[test]
fn backoff_doubles_then_caps_and_attempts_run_out() {
    let policy = RetryPolicy { backoff_max: secs(8), ..policy(6) };
    run(policy).check(
        &[retry(503), retry(503), retry(503), retry(503), retry(502), retry(500)],
        "
        @0s retry -> #1 pending +1s
        @1s retry -> #2 pending +2s
        @3s retry -> #3 pending +4s
        @7s retry -> #4 pending +8s
        @15s retry -> #5 pending +8s
        @23s retry -> #6 failed attempts_exhausted (HTTP 500)
        ",
    );
}

#[test]
fn jitter_scales_the_delay_below_its_ceiling() {
    let policy = RetryPolicy { backoff_max: secs(8), ..policy(8) };
    run(policy.clone()).jitter(0.25).check(
        &[retry(503), retry(503), retry(503), retry(503), retry(503)],
        "
        @0s retry -> #1 pending +250ms
        @250ms retry -> #2 pending +500ms
        @750ms retry -> #3 pending +1s
        @1750ms retry -> #4 pending +2s
        @3750ms retry -> #5 pending +2s
        ",
    );
    run(policy).jitter(0.0).check(
        &[retry(503), retry(503)],
        "
        @0s retry -> #1 pending +0s
        @0s retry -> #2 pending +0s
        ",
    );
}

#[test]
fn retry_after_longer_than_the_backoff_wins() {
    run(policy(5)).check(
        &[
            retry_after(503, secs(30)),
            retry_after(503, secs(1)),
            retry(503),
            retry_after(503, secs(5)),
        ],
        "
        @0s retry -> #1 pending +30s
        @30s retry -> #2 pending +2s
        @32s retry -> #3 pending +4s
        @36s retry -> #4 pending +8s
        ",
    );
}

#[test]
fn throttles_wait_as_asked_and_never_consume_an_attempt() {
    run(policy(2)).check(
        &[
            throttled_for(secs(30)),
            throttled(),
            retry(503),
            throttled(),
            throttled_for(ms(500)),
            delivered("C1:1700000000.1"),
        ],
        "
        @0s throttled -> #0 pending +30s
        @30s throttled -> #0 pending +1s
        @31s retry -> #1 pending +1s
        @32s throttled -> #1 pending +2s
        @34s throttled -> #1 pending +500ms
        @34500ms delivered -> #2 delivered ref=C1:1700000000.1
        ",
    );
}

#[test]
fn a_single_attempt_budget_survives_any_number_of_throttles() {
    let mut script: Vec<Step> = (0..5).map(|_| throttled_for(secs(1))).collect();
    script.push(retry(503));
    run(policy(1)).check(
        &script,
        "
        @0s throttled -> #0 pending +1s
        @1s throttled -> #0 pending +1s
        @2s throttled -> #0 pending +1s
        @3s throttled -> #0 pending +1s
        @4s throttled -> #0 pending +1s
        @5s retry -> #1 failed attempts_exhausted (HTTP 503)
        ",
    );
}

#[test]
fn throttles_are_still_bounded_by_the_maximum_age() {
    run(policy(5)).expires_in(secs(60)).check(
        &[throttled_for(secs(30)), throttled_for(secs(31))],
        "
        @0s throttled -> #0 pending +30s
        @30s throttled -> #0 failed expired (HTTP 429)
        ",
    );
}

#[test]
fn permanent_fails_at_once_and_keeps_the_reason() {
    run(policy(5)).check(
        &[retry(503), permanent("401 invalid_auth: the token was revoked")],
        "
        @0s retry -> #1 pending +1s
        @1s permanent -> #2 failed permanent (401 invalid_auth: the token was revoked)
        ",
    );
}

#[test]
fn unknown_with_a_deduplicating_destination_resends_under_the_same_key() {
    // Even with `hold`: the key makes a resend safe.
    run(hold(policy(5))).caps(DEDUPE).check(
        &[unknown("timeout after the request was written"), retry(503), delivered("msg-1")],
        "
        @0s unknown -> #1 pending +1s ambiguous
        @1s retry -> #2 pending +2s ambiguous
        @3s delivered -> #3 delivered ref=msg-1
        ",
    );
}

#[test]
fn unknown_with_a_searchable_destination_reconciles_on_the_next_attempt() {
    run(hold(policy(5)))
        .caps(LOOKUP)
        .check(&[unknown("connection reset")], "@0s unknown -> #1 pending +1s ambiguous");
}

#[test]
fn unknown_without_capabilities_follows_on_unknown() {
    run(hold(policy(5))).check(
        &[unknown("timeout after the request was written")],
        "@0s unknown -> #1 held ambiguous",
    );
    run(policy(5)).check(
        &[unknown("timeout after the request was written"), unknown("connection reset")],
        "
        @0s unknown -> #1 pending +1s ambiguous
        @1s unknown -> #2 pending +2s ambiguous
        ",
    );
}

/// What `next` adds to the reason of an ambiguous outcome no attempt can follow.
const MAY_HAVE_IT: &str = "no attempt is left to settle it, so the destination may have \
                           received the message";

/// An ambiguous last attempt is not "attempts exhausted": the destination may have the
/// message. `hold` leaves it to an operator; otherwise it fails as `ambiguous`.
#[test]
fn unknown_on_the_last_attempt_holds_or_fails_as_ambiguous() {
    run(hold(policy(2))).check(
        &[retry(503), unknown("timeout")],
        "
        @0s retry -> #1 pending +1s
        @1s unknown -> #2 held ambiguous
        ",
    );
    run(policy(1)).caps(DEDUPE).check(
        &[unknown("timeout")],
        &format!("@0s unknown -> #1 failed ambiguous ambiguous (timeout; {MAY_HAVE_IT})"),
    );
    run(hold(policy(1)))
        .caps(DEDUPE)
        .check(&[unknown("timeout")], "@0s unknown -> #1 held ambiguous");
    run(policy(2)).check(
        &[unknown("timeout"), unknown("reset")],
        &format!(
            "
            @0s unknown -> #1 pending +1s ambiguous
            @1s unknown -> #2 failed ambiguous ambiguous (reset; {MAY_HAVE_IT})
            "
        ),
    );
}

#[test]
fn a_retry_that_would_land_after_the_expiry_fails_now() {
    run(policy(10)).expires_in(secs(10)).check(
        &[retry(503), retry(503), retry(503), retry(503)],
        "
        @0s retry -> #1 pending +1s
        @1s retry -> #2 pending +2s
        @3s retry -> #3 pending +4s
        @7s retry -> #4 failed expired (HTTP 503)
        ",
    );
}

#[test]
fn a_retry_due_exactly_at_the_expiry_is_still_scheduled() {
    run(policy(10)).expires_in(secs(7)).check(
        &[retry(503), retry(503), retry(503), delivered("ts-1")],
        "
        @0s retry -> #1 pending +1s
        @1s retry -> #2 pending +2s
        @3s retry -> #3 pending +4s
        @7s delivered -> #4 delivered ref=ts-1
        ",
    );
    run(policy(10)).expires_in(ms(6999)).check(
        &[retry(503), retry(503), retry(503)],
        "
        @0s retry -> #1 pending +1s
        @1s retry -> #2 pending +2s
        @3s retry -> #3 failed expired (HTTP 503)
        ",
    );
}

/// Regression: a permanent outcome after the deadline used to fail as `permanent`.
#[test]
fn every_outcome_but_delivered_fails_as_expired_once_the_deadline_passed() {
    let cases = [
        (retry(503), "retry -> #1 failed expired (HTTP 503)"),
        (retry_after(503, secs(1)), "retry -> #1 failed expired (HTTP 503)"),
        (throttled(), "throttled -> #0 failed expired (HTTP 429)"),
        (throttled_for(ms(1)), "throttled -> #0 failed expired (HTTP 429)"),
        (
            permanent("404 channel_not_found"),
            "permanent -> #1 failed expired (404 channel_not_found)",
        ),
        (
            unknown("timeout"),
            "unknown -> #1 failed expired ambiguous (timeout; no attempt is left to settle it, \
             so the destination may have received the message)",
        ),
        (delivered("ts-1"), "delivered -> #1 delivered ref=ts-1"),
    ];
    for late in [secs(10), secs(11), secs(3600)] {
        for (step, line) in &cases {
            let expected = format!("@{} {line}", human(late));
            run(hold(policy(5))).expires_in(secs(10)).check(&[wait(late), step.clone()], &expected);
        }
    }
}

/// Regression: the last attempt after the deadline used to fail as `attempts_exhausted`.
#[test]
fn expiry_wins_over_an_exhausted_budget() {
    run(policy(2)).expires_in(secs(10)).check(
        &[retry(503), wait(secs(10)), retry(503)],
        "
        @0s retry -> #1 pending +1s
        @10s retry -> #2 failed expired (HTTP 503)
        ",
    );
    run(hold(policy(1))).expires_in(secs(10)).check(
        &[wait(secs(10)), unknown("timeout")],
        &format!("@10s unknown -> #1 failed expired ambiguous (timeout; {MAY_HAVE_IT})"),
    );
}

/// Only an operator moves a held delivery: no outcome, not even past its expiry,
/// resends or fails it behind the operator's back.
#[test]
fn a_held_delivery_absorbs_later_outcomes() {
    run(hold(policy(5))).expires_in(secs(10)).check(
        &[unknown("timeout"), wait(secs(20)), unknown("timeout")],
        "
        @0s unknown -> #1 held ambiguous
        @20s unknown -> #1 held ambiguous
        ",
    );
}

#[test]
fn terminal_deliveries_ignore_later_outcomes() {
    run(policy(5)).check(
        &[delivered("a"), retry(503), permanent("400"), delivered("b"), unknown("timeout")],
        "
        @0s delivered -> #1 delivered ref=a
        @0s retry -> #1 delivered ref=a
        @0s permanent -> #1 delivered ref=a
        @0s delivered -> #1 delivered ref=a
        @0s unknown -> #1 delivered ref=a
        ",
    );
    run(policy(5)).check(
        &[permanent("400 invalid_blocks"), delivered("late"), throttled()],
        "
        @0s permanent -> #1 failed permanent (400 invalid_blocks)
        @0s delivered -> #1 failed permanent (400 invalid_blocks)
        @0s throttled -> #1 failed permanent (400 invalid_blocks)
        ",
    );
}

#[test]
fn delivered_records_when_and_what() {
    let policy = policy(5);
    let p = fresh(&policy);
    let now = at(secs(3));
    let d = next(
        &Progress { ambiguous: true, ..p.clone() },
        Outcome::delivered(None),
        &policy,
        DEDUPE,
        now,
        0.5,
    );
    assert_eq!(d.state, State::Delivered);
    assert_eq!(d.delivered_at, Some(now));
    assert_eq!(d.remote_ref, None);
    assert!(!d.ambiguous, "a delivered message is no longer ambiguous");
    assert_eq!(d.attempts, 1);
    assert_eq!(d.expires_at, p.expires_at);
}
