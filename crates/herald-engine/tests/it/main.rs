//! Engine behaviour on a real SQLite file with scripted connectors and simulated time.
//!
//! Each test names the DESIGN.md invariant it guards. Tests wait on the engine's event
//! stream, never on sleep-polling; simulated time moves only when a test advances it.

#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod circuit;
mod cluster;
mod harness;
mod lease;
mod pause;
mod postgres;
mod scenarios;
mod secrets;
