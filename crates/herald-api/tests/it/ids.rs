//! Ids: prefixed ULIDs from the injected clock, monotonic, reproducible from a seed.

use std::sync::Arc;
use std::time::Duration;

use herald_api::Ids;
use herald_engine::{Clock, FakeClock};

use crate::START;

fn ids(seed: u64) -> (Ids, FakeClock) {
    let clock = FakeClock::new(START);
    (Ids::new(Arc::new(clock.clone()) as Arc<dyn Clock>, seed), clock)
}

#[test]
fn ids_are_prefixed_ulids_in_creation_order() {
    let (ids, clock) = ids(1);
    let mut all = Vec::new();
    for n in 0..1_000 {
        all.push(if n % 2 == 0 { ids.broadcast() } else { ids.delivery() });
        if n % 100 == 0 {
            clock.advance(Duration::from_millis(1));
        }
    }
    for id in &all {
        let (prefix, ulid) = id.split_at(2);
        assert!(prefix == "b_" || prefix == "d_", "{id}");
        let ulid: ulid::Ulid = ulid.parse().unwrap();
        let millis = u64::try_from(START.as_millis()).unwrap();
        assert!((millis..millis + 20).contains(&ulid.timestamp_ms()), "{id}");
    }
    let ulids: Vec<&str> = all.iter().map(|id| &id[2..]).collect();
    assert!(ulids.windows(2).all(|pair| pair[0] < pair[1]), "not strictly increasing");
}

#[test]
fn the_same_seed_and_clock_give_the_same_ids() {
    let (a, _) = ids(42);
    let (b, _) = ids(42);
    let (c, _) = ids(43);
    let first: Vec<String> = (0..5).map(|_| a.broadcast()).collect();
    assert_eq!(first, (0..5).map(|_| b.broadcast()).collect::<Vec<_>>());
    assert_ne!(first[0], c.broadcast());
}
