//! herald's pure core: the model, the delivery state machine, the retry policy and
//! the circuit breaker.
//!
//! Nothing here performs I/O, awaits, reads the clock or draws random numbers: time
//! (`now`) and the jitter sample are arguments, so every decision is a plain function
//! of its inputs and can be tested exhaustively. The only dependency is `serde`,
//! because the portable [`Message`] is itself a wire document (see ARCHITECTURE.md).

pub mod broadcast;
pub mod circuit;
pub mod delivery;
pub mod message;
pub mod outcome;
pub mod rate;
pub mod retry;
pub mod thread;
pub mod throttle;
pub mod time;

pub use broadcast::BroadcastState;
pub use circuit::{Circuit, CircuitPolicy, CircuitState, FailureRate};
pub use delivery::{Capabilities, FailReason, OnUnknown, Progress, State, next};
pub use message::{Link, Message, Severity};
pub use outcome::Outcome;
pub use rate::{Pacer, RateLimit};
pub use retry::RetryPolicy;
pub use throttle::Throttle;
pub use time::Timestamp;

#[cfg(test)]
mod tests;
