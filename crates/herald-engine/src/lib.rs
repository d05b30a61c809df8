//! The delivery engine: the imperative shell around `herald-core`.
//!
//! One lane per destination claims due deliveries from the store, enforces the
//! destination's rate limit, concurrency and circuit breaker, bounds each attempt by its
//! timeout, and records outcomes through the core state machine. A recovery task turns
//! expired leases into `Unknown` outcomes; a retention task prunes old terminal broadcasts. Time comes from an injected [`Clock`];
//! randomness from a seeded generator, so a test can replay a run exactly.
//!
//! The engine never retries in memory: every failure is written back as a scheduled
//! `pending` delivery, and the lane claims it again when it falls due.

mod attempt;
pub mod clock;
pub mod destination;
mod engine;
pub mod events;
mod lane;
mod membership;
pub mod metrics;
mod recovery;
pub mod retention;

pub use attempt::deadline as attempt_deadline;
pub use clock::{Clock, FakeClock, SystemClock};
pub use destination::{Destination, LaneSettings};
pub use engine::{Engine, EngineConfig, EngineError, LaneHealth};
pub use events::Event;
pub use membership::Membership;
pub use metrics::EngineMetrics;
pub use retention::Retention;
