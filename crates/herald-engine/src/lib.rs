//! The delivery engine: the imperative shell around `herald-core`.
//!
//! One lane per destination claims due deliveries from the store, enforces the
//! destination's rate limit, concurrency and circuit breaker, bounds each attempt by its
//! timeout, and records outcomes through the core state machine. Time comes from an
//! injected [`Clock`]; randomness from a seeded generator.

pub mod clock;
pub mod destination;

pub use clock::{Clock, FakeClock, SystemClock};
pub use destination::{Destination, LaneSettings};
