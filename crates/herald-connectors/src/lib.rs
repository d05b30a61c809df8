//! Destination connectors: each turns a message into one destination's API call and the
//! answer into an [`Outcome`].
//!
//! Connectors never see the store and never retry: a failure is reported as an outcome
//! and the engine schedules the next try durably. `Err` is reserved for our own mistakes
//! (bad configuration), never for a destination's answer.

pub mod discord;
pub mod email;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod jira;
mod kind;
#[cfg(test)]
mod kind_test_support;
pub mod matrix;
pub mod mattermost;
pub mod mattermost_webhook;
pub mod opsgenie;
pub mod outbound;
pub mod pagerduty;
pub mod redact;
pub mod settings;
pub mod slack;
pub mod slack_webhook;
pub mod teams_graph;
pub mod teams_workflow;
pub mod text;
pub mod webhook;

use async_trait::async_trait;
use herald_core::{Capabilities, Message, Outcome, Timestamp};

pub use kind::{ConnectorConfig, Defaults, Kind, KindSettings};

/// Every kind this build can deliver to; adding a kind is one line here.
pub static KINDS: &[&Kind] = &[
    &webhook::KIND,
    &slack::KIND,
    &slack_webhook::KIND,
    &teams_workflow::KIND,
    &teams_graph::KIND,
    &jira::KIND,
    &pagerduty::KIND,
    &opsgenie::KIND,
    &discord::KIND,
    &mattermost::KIND,
    &mattermost_webhook::KIND,
    &email::KIND,
    &matrix::KIND,
];

/// The registered kind called `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|kind| kind.name == name)
}

/// Where a message sits in its broadcast's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thread<'a> {
    /// The broadcast's first message.
    Original,
    /// A follow-up, delivered after its predecessor on the same destination.
    Update {
        /// 1 for the first update, 2 for the second, ...
        seq: u32,
        /// The id of the original's delivery on this destination.
        in_reply_to: &'a str,
        /// The destination's id for the original message, if it returned one.
        original_remote_ref: Option<&'a str>,
        /// The original message (to quote or edit it).
        original: &'a Message,
        /// When the original was delivered there (when it was accepted, if unknown).
        original_at: Timestamp,
    },
}

/// Everything a connector needs for one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The delivery's id; also its idempotency key, stable across retries.
    pub delivery_id: &'a str,
    /// The broadcast the message belongs to.
    pub broadcast_id: &'a str,
    /// The destination's configured name.
    pub destination: &'a str,
    /// What to say.
    pub message: &'a Message,
    /// Original or follow-up.
    pub thread: Thread<'a>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The previous attempt ended ambiguously: reconcile before posting if possible.
    pub ambiguous: bool,
    /// Now, for timestamps the destination checks (webhook signatures).
    pub now: Timestamp,
    /// When the delivery was created: nothing was posted before it, so a look-up's
    /// window starts here.
    pub created_at: Timestamp,
    /// For an ambiguous delivery: when its latest ambiguous attempt ended. A search that
    /// is only eventually consistent trusts "not found" only some time after it.
    pub ambiguous_at: Option<Timestamp>,
}

/// One attempt's result plus what the attempt log keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The outcome class.
    pub outcome: Outcome,
    /// The HTTP status, if an answer arrived.
    pub status: Option<u16>,
    /// A short, secret-free excerpt of what the destination said.
    pub detail: Option<String>,
    /// Set when the answer says the destination itself is unusable until an operator
    /// acts (a deleted webhook, a revoked token, an archived channel), never for a
    /// problem of this one message: the engine then pauses the destination's lane, with
    /// this reason, so its other deliveries wait instead of failing one by one.
    pub pause: Option<String>,
}

/// A destination kind's implementation.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The `kind` name used in configuration (`webhook`, `slack`, ...).
    fn kind(&self) -> &'static str;

    /// What this destination's API allows.
    fn capabilities(&self) -> Capabilities;

    /// Makes one attempt. Never panics and never returns early without an outcome; the
    /// engine bounds it with the destination's timeout and reports a timeout as
    /// `Unknown`.
    async fn send(&self, request: &Request<'_>) -> Report;

    /// A web address where a person can open the message `remote_ref` names (the ref
    /// this connector returned on delivery), where the kind allows building one from
    /// its settings; `None` otherwise.
    fn remote_link(&self, remote_ref: &str) -> Option<String> {
        let _ = remote_ref;
        None
    }
}

/// Why a connector could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A setting is invalid; the message names it.
    #[error("{0}")]
    InvalidSetting(String),
}
