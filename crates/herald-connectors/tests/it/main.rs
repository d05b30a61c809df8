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
/// The outbound policy end to end: refused addresses and names, allowances, redirects.
mod outbound;
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

use herald_connectors::http::{self, ClientOptions};
use herald_connectors::outbound::Outbound;

/// The policy these tests run under: every server they start listens on loopback, so
/// loopback is allowed, explicitly, as `[outbound] allow_networks` would.
pub(crate) fn loopback() -> Outbound {
    Outbound::allowing_loopback()
}

/// The shared client's default options with loopback allowed.
pub(crate) fn options() -> ClientOptions {
    ClientOptions { outbound: loopback(), ..ClientOptions::default() }
}

/// The shared client with loopback allowed.
pub(crate) fn client() -> http::Client {
    http::client_with(&options()).unwrap()
}
