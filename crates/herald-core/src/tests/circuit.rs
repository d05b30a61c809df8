//! The circuit breaker: closed → open on a high failure rate over a minimum volume →
//! one probe at a time after a growing cool-down → closed on success.

use proptest::prelude::*;

use super::*;
use crate::circuit::{DEFAULT_COOL_DOWN_CAP, FailureRate};

fn failure() -> Outcome {
    Outcome::Retry { reason: "HTTP 503".into(), after: None }
}

fn success() -> Outcome {
    Outcome::delivered(None)
}

/// Backoff from 100 ms to 1 s, as in the flaky scenario of issue 5.
fn retry_policy() -> RetryPolicy {
    RetryPolicy { backoff_base: ms(100), backoff_max: secs(1), ..RetryPolicy::default() }
}

/// Opens on 3 failures at 80 %, cool-down 100 ms doubling to 1 s.
fn breaker() -> Circuit {
    let policy = CircuitPolicy { min_failures: 3, ..CircuitPolicy::default() };
    Circuit::new(&policy, &retry_policy())
}

/// Feeds `n` results 50 ms apart, the last one at `end`.
fn feed(c: &mut Circuit, outcome: &Outcome, n: usize, end: Timestamp) {
    for i in (0..n).rev() {
        c.on_result(outcome, Timestamp(end.0 - 50 * i as i64));
    }
}

#[test]
fn opens_on_the_minimum_failures_at_the_rate_with_the_reason() {
    let mut c = breaker();
    assert_eq!(c.permits(T0), None, "closed means unlimited");
    feed(&mut c, &failure(), 2, T0);
    assert_eq!(c.state, CircuitState::Closed);
    assert_eq!(c.reason(), None);
    c.on_result(&failure(), at(secs(5)));
    assert_eq!(c.state, CircuitState::Open { until: at(ms(5100)) });
    assert_eq!(c.open_until(), Some(at(ms(5100))));
    assert_eq!(c.state.as_str(), "open");
    assert_eq!(c.reason(), Some("3 of the last 3 attempts failed: HTTP 503"));
}

#[test]
fn failures_must_outlast_one_backoff_base_without_a_success() {
    let mut c = breaker();
    // A burst of failed first tries at one instant: retrying has had no chance yet.
    for _ in 0..30 {
        c.on_result(&failure(), T0);
    }
    assert_eq!(c.state, CircuitState::Closed, "a burst at one instant");
    c.on_result(&failure(), at(ms(99)));
    assert_eq!(c.state, CircuitState::Closed, "the spell lasted 99 ms of 100");
    c.on_result(&failure(), at(ms(100)));
    assert_eq!(c.open_until(), Some(at(ms(200))), "failures for 100 ms open it");
    // A success within the spell starts it over: the destination accepts retries.
    let mut c = breaker();
    for i in 0..10 {
        c.on_result(&failure(), at(ms(10 * i)));
    }
    c.on_result(&success(), at(ms(95)));
    for i in 0..5 {
        c.on_result(&failure(), at(ms(100 + 10 * i)));
    }
    assert_eq!(c.state, CircuitState::Closed, "15 of 16 failed, but in a fresh spell");
    c.on_result(&failure(), at(ms(200)));
    assert_eq!(c.reason(), Some("16 of the last 17 attempts failed: HTTP 503"));
}

#[test]
fn a_low_failure_share_does_not_open_it_however_many_failures() {
    let mut c = breaker();
    // Two failures per success: 67 % < 80 %.
    for _ in 0..100 {
        feed(&mut c, &failure(), 2, T0);
        c.on_result(&success(), T0);
    }
    assert_eq!(c.state, CircuitState::Closed);
    // Four failures to one success: 80 % over the window, with enough failures.
    let mut c = breaker();
    c.on_result(&success(), at(ms(1)));
    feed(&mut c, &failure(), 3, at(ms(200)));
    assert_eq!(c.state, CircuitState::Closed, "3 of 4 is 75 %");
    c.on_result(&failure(), at(ms(250)));
    assert_eq!(c.state.as_str(), "open", "4 of 5 is 80 %");
    assert_eq!(c.reason(), Some("4 of the last 5 attempts failed: HTTP 503"));
}

#[test]
fn only_destination_failures_count_and_throttles_are_not_results() {
    let cases = [
        (Outcome::Retry { reason: "HTTP 503".into(), after: None }, true),
        (Outcome::Unknown { reason: "timeout".into() }, true),
        (Outcome::Throttled { after: None, reason: "HTTP 429".into() }, false),
        (Outcome::Permanent { reason: "HTTP 404".into() }, false),
        (Outcome::delivered(None), false),
    ];
    for (outcome, opens) in cases {
        let mut c = breaker();
        feed(&mut c, &outcome, 3, T0);
        assert_eq!(c.open_until().is_some(), opens, "{outcome:?}");
    }
    // Throttles in between do not dilute the failure share.
    let mut c = breaker();
    let throttled = Outcome::Throttled { after: None, reason: "HTTP 429".into() };
    for i in 0..3 {
        feed(&mut c, &throttled, 5, at(ms(100 * i)));
        c.on_result(&failure(), at(ms(100 * i)));
    }
    assert_eq!(c.state.as_str(), "open");
}

#[test]
fn the_window_forgets_old_failures() {
    let policy = CircuitPolicy { min_failures: 30, ..CircuitPolicy::default() };
    let mut c = Circuit::new(&policy, &retry_policy());
    assert_eq!(policy.window(), 40);
    feed(&mut c, &success(), 10, T0);
    feed(&mut c, &failure(), 31, at(secs(10)));
    assert_eq!(c.state, CircuitState::Closed, "31 of the last 40 is under 80 %");
    c.on_result(&failure(), at(secs(11)));
    assert_eq!(c.reason(), Some("32 of the last 40 attempts failed: HTTP 503"));
}

#[test]
fn open_grants_nothing_until_the_cool_down_then_one_probe_at_a_time() {
    let mut c = breaker();
    feed(&mut c, &failure(), 3, T0);
    for now in [T0, at(ms(50)), at(ms(99))] {
        assert_eq!(c.permits(now), Some(0));
        assert_eq!(c.open_until(), Some(at(ms(100))), "asking must not move the deadline");
    }
    assert_eq!(c.permits(at(ms(100))), Some(1));
    assert_eq!(c.state.as_str(), "half_open");
    assert_eq!(c.permits(at(ms(101))), Some(1), "not handed out yet");
    c.on_dispatch();
    assert_eq!(c.permits(at(ms(101))), Some(0), "only one probe at a time");
    assert_eq!(c.permits(at(secs(300))), Some(0), "still waiting for the probe's result");
    c.on_abandoned();
    assert_eq!(c.permits(at(secs(300))), Some(1), "an expired probe lets another go");
}

#[test]
fn failed_probes_double_the_cool_down_up_to_the_cap() {
    let mut c = breaker();
    feed(&mut c, &failure(), 3, T0);
    let mut now = T0;
    let mut waits = Vec::new();
    for _ in 0..6 {
        let until = c.open_until().unwrap();
        waits.push(until.since(now).as_millis());
        now = until;
        assert_eq!(c.permits(now), Some(1));
        c.on_dispatch();
        c.on_result(&failure(), now);
    }
    assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    assert!(c.reason().unwrap().ends_with("attempts failed: HTTP 503"));
}

#[test]
fn a_successful_probe_closes_the_circuit_and_empties_the_window() {
    let mut c = breaker();
    feed(&mut c, &failure(), 3, T0);
    assert_eq!(c.permits(at(ms(100))), Some(1));
    c.on_dispatch();
    c.on_result(&failure(), at(ms(100)));
    assert_eq!(c.permits(at(ms(300))), Some(1));
    c.on_dispatch();
    c.on_result(&success(), at(ms(301)));
    assert_eq!(c.state, CircuitState::Closed);
    assert_eq!(c.reason(), None);
    assert_eq!(c.permits(at(ms(301))), None);
    feed(&mut c, &failure(), 2, at(ms(352)));
    assert_eq!(c.state, CircuitState::Closed, "the count starts over after closing");
    c.on_result(&failure(), at(ms(402)));
    assert_eq!(c.open_until(), Some(at(ms(502))), "the cool-down starts over too");
}

#[test]
fn the_cap_is_explicit_or_the_shorter_of_30s_and_backoff_max() {
    let slow = RetryPolicy { backoff_max: secs(600), ..RetryPolicy::default() };
    let fast = retry_policy();
    let derived = CircuitPolicy::default();
    assert_eq!(derived.cool_down_cap(&slow), DEFAULT_COOL_DOWN_CAP);
    assert_eq!(derived.cool_down_cap(&fast), secs(1));
    let explicit = CircuitPolicy { cool_down: Some(secs(120)), ..CircuitPolicy::default() };
    assert_eq!(explicit.cool_down_cap(&fast), secs(120), "explicit wins over backoff_max");
    assert_eq!(explicit.cool_down_base(&fast), ms(100));
    let short = CircuitPolicy { cool_down: Some(ms(50)), ..CircuitPolicy::default() };
    assert_eq!(short.cool_down_base(&fast), ms(50), "the base never exceeds the cap");
}

#[test]
fn design_defaults() {
    let policy = CircuitPolicy::default();
    assert_eq!(policy.min_failures, 20);
    assert_eq!(policy.failure_rate.get(), 0.8);
    assert_eq!(policy.cool_down, None);
    assert_eq!(policy.window(), 40);
    assert_eq!(Circuit::new(&policy, &RetryPolicy::default()).state, CircuitState::Closed);
    assert_eq!(FailureRate::new(0.0), None);
    assert_eq!(FailureRate::new(1.5), None);
    assert_eq!(FailureRate::new(f64::NAN), None);
    assert_eq!(FailureRate::new(1.0).map(FailureRate::get), Some(1.0));
}

/// A small deterministic generator (SplitMix64), so the core needs no random crate.
struct Seeded(u64);

impl Seeded {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

proptest! {
    /// 30 % random failures never open the default breaker (about 7e-7 per sequence of
    /// 5,000 results, see the module's comment).
    #[test]
    fn random_30_percent_failures_never_open_it(seed in any::<u64>()) {
        let mut c = Circuit::new(&CircuitPolicy::default(), &RetryPolicy::default());
        let mut rng = Seeded(seed);
        let mut now = T0;
        for n in 0..5_000 {
            let outcome = if rng.unit() < 0.3 { failure() } else { success() };
            c.on_result(&outcome, now);
            prop_assert_eq!(c.state, CircuitState::Closed, "opened after {} results", n + 1);
            now = now.add(ms(10));
        }
    }

    /// A destination that fails everything: once open, at most one request per
    /// cool-down; the cool-down never exceeds the cap, nor `backoff_max` when derived;
    /// and a success in half-open closes the circuit.
    #[test]
    fn a_dead_destination_gets_at_most_one_probe_per_cool_down(
        min_failures in 1u32..=50,
        rate in 0.05f64..=1.0,
        base_ms in 1u64..=2_000,
        max_ms in 1u64..=60_000,
        explicit in proptest::option::of(1u64..=60_000),
        concurrency in 1usize..=8,
        step_ms in 10u64..=3_000,
        recover_after in 1u32..=30,
    ) {
        let retry = RetryPolicy {
            backoff_base: ms(base_ms.min(max_ms)),
            backoff_max: ms(max_ms),
            ..RetryPolicy::default()
        };
        let policy = CircuitPolicy {
            min_failures,
            failure_rate: FailureRate::new(rate).unwrap(),
            cool_down: explicit.map(ms),
        };
        let cap = policy.cool_down_cap(&retry);
        if explicit.is_none() {
            prop_assert!(cap <= retry.backoff_max);
        }
        let mut c = Circuit::new(&policy, &retry);
        let mut now = T0;
        // The deadline of the current open period, and whether its probe went out.
        let mut open_until: Option<Timestamp> = None;
        let mut probed = false;
        let mut probes = 0u32;
        // Long enough to open (min_failures results spanning the base) and probe a while.
        let end = T0.add(ms(step_ms) * (min_failures + 2) + policy.cool_down_base(&retry) * 2 + cap * 5);
        while now < end {
            // The lane asks, sends what it may (each answered at once), then time moves.
            let allowed = c.permits(now).unwrap_or(concurrency).min(concurrency);
            for _ in 0..allowed {
                let probe = c.state != CircuitState::Closed;
                if probe {
                    let until = open_until.unwrap();
                    prop_assert!(now >= until, "a probe before the cool-down ended");
                    prop_assert!(!probed, "two requests in one cool-down");
                    probed = true;
                    probes += 1;
                }
                c.on_dispatch();
                let recovered = probes >= recover_after;
                let outcome = if recovered { success() } else { failure() };
                c.on_result(&outcome, now);
                if recovered {
                    prop_assert_eq!(c.state, CircuitState::Closed, "a successful probe must close it");
                    return Ok(());
                }
                if let Some(until) = c.open_until() {
                    prop_assert!(until.since(now) <= cap, "cool-down over the cap");
                    prop_assert!(until > now);
                    open_until = Some(until);
                    probed = false;
                    break;
                }
            }
            now = now.add(ms(step_ms));
        }
        prop_assert!(open_until.is_some(), "a dead destination never opened the breaker");
    }
}
