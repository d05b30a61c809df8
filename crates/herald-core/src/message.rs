//! The portable message every connector renders natively.
//!
//! This is the one core type that derives `serde`: its JSON form is the contract shared
//! by the HTTP API, the store and the webhook payload, so a mirror type per layer would
//! only add a place to drift.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How urgent a message is; connectors map it to colours, priorities or urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record; nobody needs to act.
    #[default]
    Info,
    /// Something is degraded or about to be.
    Warning,
    /// Something is broken.
    Error,
    /// Something important is broken now; page someone.
    Critical,
    /// A previously reported problem is over.
    Resolved,
}

impl Severity {
    /// The lowercase name used in the API and in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
            Severity::Resolved => "resolved",
        }
    }
}

/// A titled hyperlink shown with the message (runbook, dashboard, incident page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// The text shown for the link.
    pub title: String,
    /// The target address.
    pub url: String,
}

/// A message as submitted: what to say, independent of where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// One line summary, e.g. "P1: checkout is down".
    pub title: String,
    /// Markdown body.
    #[serde(default)]
    pub body: String,
    /// Urgency.
    #[serde(default)]
    pub severity: Severity,
    /// Key/value facts, shown as a table where the destination can.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// Related links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Free-form labels for routing and search at the destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}
