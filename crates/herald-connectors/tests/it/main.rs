//! Integration tests of herald-connectors against real HTTP servers on loopback
//! (`127.0.0.1:0`), started by each test: one binary, a module per area.

#![allow(clippy::unwrap_used)]

/// The Jira connector against the simulator's Jira dialect.
mod jira;
/// The Matrix connector against a real Synapse.
mod matrix;
/// Loopback receivers: a scripted axum server and raw TCP servers that misbehave.
mod receiver;
/// Signatures checked by the reference Python library, `standardwebhooks` on PyPI.
mod signature;
/// The Slack Web API and incoming-webhook connectors against the simulator's Slack dialect.
mod slack;
/// A real Synapse homeserver, installed into a cached venv and started per test.
mod synapse;
/// Teams Workflows and Teams Graph against the simulator's Teams dialects.
mod teams;
/// The webhook connector end to end: each answer and failure class.
mod webhook;
