//! End-to-end tests of the `herald` binary: real processes, real SQLite files, real
//! loopback HTTP to simulated destinations.

#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod auth;
mod bench;
mod chat;
mod cli;
mod cluster;
mod crash;
mod database;
mod follow;
mod hold;
mod listener;
mod matrix;
mod metrics;
mod outbound;
mod paging;
mod pause;
mod postgres;
mod process;
/// The PostgreSQL proxy of herald-store's tests, shared.
#[allow(dead_code)]
#[path = "../../../herald-store/tests/it/postgres/proxy.rs"]
mod proxy;
mod reliability;
mod removed;
mod secrets;
/// The Synapse harness of herald-connectors' tests, shared.
#[allow(dead_code)]
#[path = "../../../herald-connectors/tests/it/synapse.rs"]
mod synapse;
mod telemetry;
mod torture;
mod ui;

/// The `[outbound]` table of every configuration these tests write: their destinations
/// are simulators on loopback, which herald refuses unless allowed, so they allow it
/// explicitly, as an operator would.
pub const ALLOW_LOOPBACK: &str = "[outbound]\nallow_networks = [\"127.0.0.0/8\", \"::1\"]\n\n";
