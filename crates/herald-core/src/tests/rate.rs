//! The pacer: at most `count` starts in any window of length `per`, as early as that
//! allows, on the clock it is given.

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
fn a_fresh_pacer_bursts_then_waits_for_the_window_to_move() {
    let mut pacer = Pacer::new(limit(20, 1000));
    let res = starts(&mut pacer, T0, 23);
    assert_eq!(res[..20], [0; 20]);
    // A token bucket would start the 21st at 50 ms: 21 in the first second.
    assert_eq!(res[20..], [1000, 1000, 1000]);
}

#[test]
fn spread_out_attempts_free_the_window_one_by_one() {
    let mut pacer = Pacer::new(limit(3, 1000));
    for t in [0, 400, 800] {
        pacer.take(at(ms(t)));
    }
    assert_eq!(pacer.next_permit_at(at(ms(900))), at(ms(1000)));
    pacer.take(at(ms(1000)));
    assert_eq!(pacer.next_permit_at(at(ms(1000))), at(ms(1400)));
    pacer.take(at(ms(1400)));
    assert_eq!(pacer.next_permit_at(at(ms(1500))), at(ms(1800)));
}

#[test]
fn an_idle_pacer_refills_up_to_the_burst_only() {
    let mut pacer = Pacer::new(limit(2, 1000));
    assert_eq!(starts(&mut pacer, T0, 3), [0, 0, 1000]);
    // An hour later the window is empty again, but allows 2, not more.
    let later = at(secs(3600));
    let res = starts(&mut pacer, later, 3);
    let base = 3_600_000;
    assert_eq!(res, [base, base, base + 1000]);
    assert_eq!(pacer.next_permit_at(T0), at(ms(base + 1000)), "never earlier than now");
    assert_eq!(pacer.next_permit_at(at(secs(7200))), at(secs(7200)));
}

proptest! {
    /// However attempts are asked for, no window of length `per` holds more than `count`
    /// starts, nothing starts before it was asked for, and nothing waits longer than the
    /// window requires.
    #[test]
    fn never_more_than_count_in_any_window(
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
            let n = started.len();
            let count = count as usize;
            let earliest =
                if n >= count { started[n - count].add(rate.per).max(wanted) } else { wanted };
            prop_assert_eq!(at, earliest, "waited longer than the window requires");
            pacer.take(at);
            started.push(at);
        }
        for (i, first) in started.iter().enumerate() {
            let end = first.add(rate.per);
            let inside = started[i..].iter().take_while(|t| **t < end).count();
            prop_assert!(inside <= count as usize, "{} starts within {:?} of {:?}", inside, rate.per, first);
        }
    }
}
