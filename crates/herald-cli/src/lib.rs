//! The `herald` command: configuration, wiring and the user-facing commands.
//!
//! `main.rs` only parses arguments and dispatches; each command lives in its own module
//! so the demo, the benchmark and the integration tests can call them directly.

pub mod bench;
pub mod board;
pub mod client;
pub mod config;
pub mod database;
pub mod demo;
pub mod destinations;
pub mod listener;
pub mod logging;
pub mod outbound;
pub mod progress;
pub mod serve;
pub mod sse;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod torture;
