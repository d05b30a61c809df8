//! Integration tests of herald-connectors against real HTTP servers on loopback
//! (`127.0.0.1:0`), started by each test: one binary, a module per area.

#![allow(clippy::unwrap_used)]

/// The Discord webhook connector against the simulator's Discord dialect.
mod discord;
/// The e-mail connector against a real SMTP server (aiosmtpd).
mod email;
/// The Jira connector against the simulator's Jira dialect.
mod jira;
/// The Matrix connector against a real Synapse.
mod matrix;
/// Mattermost REST and incoming webhook against the simulator's Mattermost dialect.
mod mattermost;
/// The Opsgenie Alert API against the simulator's Opsgenie dialect.
mod opsgenie;
/// PagerDuty Events API v2 against the simulator's PagerDuty dialect.
mod pagerduty;
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
