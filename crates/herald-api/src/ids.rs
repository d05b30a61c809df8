//! Broadcast and delivery ids: a prefix plus a ULID made from the injected clock and a
//! seeded random source, so a test with a fixed clock and seed gets the same ids every
//! run. It does not check ids against the store; uniqueness comes from the ULID.

use std::sync::{Arc, Mutex};

use herald_engine::Clock;
use ulid::Ulid;

/// Generates `b_<ULID>` and `d_<ULID>` ids. Cheap to clone; clones share one sequence.
///
/// Ids are monotonic within a process: within one millisecond (or if the clock steps
/// back) the next id is the previous one plus one, so ids sort in creation order.
#[derive(Clone)]
pub struct Ids {
    inner: Arc<Mutex<Sequence>>,
}

struct Sequence {
    clock: Arc<dyn Clock>,
    rng: fastrand::Rng,
    last: Option<Ulid>,
}

impl std::fmt::Debug for Ids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ids").finish_non_exhaustive()
    }
}

impl Ids {
    /// An id source reading `clock`, with its random part seeded by `seed`. Production
    /// should pass a seed drawn from entropy (e.g. `fastrand::u64(..)`); tests a fixed one.
    pub fn new(clock: Arc<dyn Clock>, seed: u64) -> Ids {
        let sequence = Sequence { clock, rng: fastrand::Rng::with_seed(seed), last: None };
        Ids { inner: Arc::new(Mutex::new(sequence)) }
    }

    /// A new broadcast id, `b_` + ULID.
    pub fn broadcast(&self) -> String {
        format!("b_{}", self.next())
    }

    /// A new delivery id, `d_` + ULID; also the idempotency key sent to the destination.
    pub fn delivery(&self) -> String {
        format!("d_{}", self.next())
    }

    fn next(&self) -> Ulid {
        let mut sequence = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let millis = u64::try_from(sequence.clock.now().as_millis()).unwrap_or(0);
        let fresh = Ulid::from_parts(millis, sequence.rng.u128(..));
        let res = match sequence.last {
            // Same (or an earlier) millisecond: count up from the last id so the order
            // holds; if the random part is exhausted, move to the next millisecond.
            Some(last) if last.timestamp_ms() >= millis => last.increment().unwrap_or_else(|| {
                Ulid::from_parts(last.timestamp_ms() + 1, sequence.rng.u128(..))
            }),
            _ => fresh,
        };
        sequence.last = Some(res);
        res
    }
}
