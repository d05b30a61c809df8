//! The pacer: a burst of `count`, then one attempt per `per / count`, on the clock it is
//! given.

use std::num::NonZeroU32;

use proptest::prelude::*;

use super::*;
use crate::rate::Pacer;

fn limit(count: u32, per_ms: u64) -> RateLimit {
    RateLimit { count: NonZeroU32::new(count).unwrap(), per: ms(per_ms) }
}

/// Starts `n` attempts as early as the pacer allows, all wanted at `from`.
fn starts(pacer: &mut Pacer, from: Timestamp, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let at = pacer.next_permit_at(from);
            pacer.take(at);
            at.since(T0).as_millis() as u64
        })
        .collect()
}

#[test]
fn a_full_bucket_bursts_then_spaces_attempts() {
    let mut pacer = Pacer::new(limit(20, 1000));
    let res = starts(&mut pacer, T0, 23);
    assert_eq!(res[..20], [0; 20]);
    assert_eq!(res[20..], [50, 100, 150]);
}

#[test]
fn fractional_intervals_keep_their_precision() {
    let mut pacer = Pacer::new(limit(3, 1000));
    // 333.33 ms apart, rounded up to whole milliseconds but never accumulating drift.
    assert_eq!(starts(&mut pacer, T0, 9), [0, 0, 0, 334, 667, 1000, 1334, 1667, 2000]);
}

#[test]
fn an_idle_pacer_refills_up_to_the_burst_only() {
    let mut pacer = Pacer::new(limit(2, 1000));
    assert_eq!(starts(&mut pacer, T0, 3), [0, 0, 500]);
    // An hour later the bucket is full again, but not fuller than 2.
    let later = at(secs(3600));
    let res = starts(&mut pacer, later, 3);
    let base = 3_600_000;
    assert_eq!(res, [base, base, base + 500]);
    assert_eq!(pacer.next_permit_at(T0), at(ms(base + 1000)), "never earlier than now");
    assert_eq!(pacer.next_permit_at(at(secs(7200))), at(secs(7200)));
}

proptest! {
    /// However attempts are asked for, any stretch of time holds at most the burst plus
    /// what refilled during it, and nothing starts before it was asked for.
    #[test]
    fn never_more_than_the_bucket_allows(
        count in 1u32..=50,
        per_ms in 1u64..=10_000,
        gaps in prop::collection::vec(0u64..=2_000, 1..200),
    ) {
        let rate = limit(count, per_ms);
        let mut pacer = Pacer::new(rate);
        let mut wanted = T0;
        let mut started: Vec<Timestamp> = Vec::new();
        for gap in gaps {
            wanted = wanted.add(ms(gap)).max(started.last().copied().unwrap_or(T0));
            let at = pacer.next_permit_at(wanted);
            prop_assert!(at >= wanted);
            pacer.take(at);
            started.push(at);
        }
        let interval_us = rate.interval().as_micros() as f64;
        for i in 0..started.len() {
            for j in i..started.len() {
                let span_us = started[j].since(started[i]).as_micros() as f64;
                let allowed = f64::from(count) + span_us / interval_us;
                // An extra attempt would exceed by a whole one; the slack only absorbs
                // the float error of long spans (169 against 168.999997 was seen).
                prop_assert!(
                    (j - i + 1) as f64 <= allowed + 1e-3,
                    "{} attempts in {} us, allowed {}", j - i + 1, span_us, allowed
                );
            }
        }
    }
}
