//! Unit and property tests of the core.
//!
//! `machine` drives deliveries through scripted outcomes and compares compact traces;
//! `operations` covers the operator and lane transitions; `properties` checks the
//! delivery invariants of DESIGN.md over random inputs; `thread` the order of a
//! destination's thread (examples and random lives); `circuit` the breaker; `rate` the
//! pacer; `model`
//! the small value types. The helpers below are shared by all of them. Nothing here
//! reads the clock: every instant is an offset from `T0`.

#![allow(clippy::unwrap_used)]

mod circuit;
mod machine;
mod model;
mod operations;
mod properties;
mod rate;
mod thread;
mod throttle;

use std::time::Duration;

use crate::*;

/// The instant every test starts from (an arbitrary day in 2023).
const T0: Timestamp = Timestamp(1_700_000_000_000);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// Every state, with each failure reason.
fn all_states() -> Vec<State> {
    vec![
        State::Pending,
        State::InFlight,
        State::Waiting,
        State::Held,
        State::Delivered,
        State::Failed(FailReason::Permanent),
        State::Failed(FailReason::AttemptsExhausted),
        State::Failed(FailReason::Expired),
        State::Failed(FailReason::PredecessorFailed),
        State::Cancelled,
    ]
}

/// `T0` moved `d` into the future.
fn at(d: Duration) -> Timestamp {
    T0.add(d)
}

/// A readable policy: `max_attempts`, backoff from 1 s doubling up to 1 min, 1 h max age,
/// resend after ambiguous outcomes.
fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff_base: secs(1),
        backoff_max: secs(60),
        max_age: secs(3600),
        ..RetryPolicy::default()
    }
}

/// A fresh original delivery created at `T0` under `policy`.
fn fresh(policy: &RetryPolicy) -> Progress {
    Progress::new(T0, T0.add(policy.max_age), policy.max_attempts, false)
}

/// A delivery created under `policy(5)`, moved to `state` with `attempts` made.
fn progress_in(state: State, attempts: u32) -> Progress {
    Progress { state, attempts, ..fresh(&policy(5)) }
}

/// Durations as people write them: `250ms`, `4s`, `90s`, `10m`, `2h`.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s != 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// One line about a delivery as seen at `now`: attempts made, state (a pending one with
/// its delay from `now`), the ambiguity flag, and the error of a failed one.
fn describe(p: &Progress, now: Timestamp) -> String {
    let mut line = format!("#{} ", p.attempts);
    match &p.state {
        State::Pending if p.next_attempt_at >= now => {
            line += &format!("pending +{}", human(p.next_attempt_at.since(now)));
        }
        State::Pending => line += &format!("pending -{}", human(now.since(p.next_attempt_at))),
        State::Failed(reason) => line += &format!("failed {reason}"),
        State::Delivered => {
            line += "delivered";
            if let Some(remote_ref) = &p.remote_ref {
                line += &format!(" ref={remote_ref}");
            }
        }
        other => line += other.as_str(),
    }
    if p.ambiguous {
        line += " ambiguous";
    }
    if let (State::Failed(_), Some(error)) = (&p.state, &p.last_error) {
        line += &format!(" ({error})");
    }
    line
}

/// Compares multi-line text, ignoring indentation and blank lines in `expected`, and
/// prints the actual text ready to paste on mismatch.
#[track_caller]
fn assert_text(actual: &str, expected: &str) {
    let expected: Vec<&str> = expected.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let expected = expected.join("\n");
    let actual = actual.trim_end();
    assert!(actual == expected, "\n--- expected\n{expected}\n--- actual\n{actual}\n---\n");
}

#[test]
fn human_durations() {
    let cases = [(ms(0), "0s"), (ms(250), "250ms"), (ms(1500), "1500ms"), (secs(4), "4s")];
    for (d, want) in cases {
        assert_eq!(human(d), want);
    }
    assert_eq!(human(secs(90)), "90s");
    assert_eq!(human(secs(600)), "10m");
    assert_eq!(human(secs(7200)), "2h");
}
