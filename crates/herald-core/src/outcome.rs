//! What one attempt came to, as data. A destination's 503 is an expected answer, not an
//! error of ours, so it is an `Outcome`, never an `Err`.

use std::time::Duration;

/// The class of one connector call's result; exactly one per attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination accepted the message; `remote_ref` identifies the posted copy
    /// (Slack `channel:ts`, Jira issue key, ...) when the destination returns one.
    Delivered {
        /// The destination's identifier for the posted message, if any.
        remote_ref: Option<String>,
        /// The destination accepted the request but cannot confirm the post (a Teams
        /// Workflows `202` only says a flow run was queued). Shown as such in the API.
        unconfirmed: bool,
    },
    /// A transient failure known not to have posted anything (5xx, refused connection).
    /// Consumes an attempt.
    Retry {
        /// What went wrong, in the destination's words where possible.
        reason: String,
        /// A delay the destination asked for, overriding the backoff when longer.
        after: Option<Duration>,
    },
    /// The destination asked us to slow down (429, `Retry-After`). Does not consume an
    /// attempt; still bounded by the maximum age.
    Throttled {
        /// The destination's requested delay, if it gave one.
        after: Option<Duration>,
        /// What the destination said.
        reason: String,
    },
    /// Retrying cannot help (bad payload, bad credentials, unknown channel).
    Permanent {
        /// What is wrong, in plain words.
        reason: String,
    },
    /// We cannot tell whether the message was posted: a timeout after the request was
    /// written, a reset before the response, a crash mid-attempt. Consumes an attempt.
    Unknown {
        /// What happened.
        reason: String,
    },
    /// A look-up could not settle an ambiguous attempt yet (a search that is only
    /// eventually consistent, or the look-up itself was rate limited). Consumes no
    /// attempt, keeps the delivery ambiguous so the next attempt looks again, and neither
    /// slows the lane nor counts for the breaker: it says nothing about the destination's
    /// health. Still bounded by the maximum age.
    Reconciling {
        /// When to look again.
        after: Duration,
        /// Why the look-up could not decide.
        reason: String,
    },
}

impl Outcome {
    /// A confirmed delivery with the destination's id for the message, if any.
    pub fn delivered(remote_ref: Option<String>) -> Outcome {
        Outcome::Delivered { remote_ref, unconfirmed: false }
    }

    /// Whether this outcome consumes one of the delivery's attempts: a throttle or a
    /// look-up that must wait says nothing about the message, so it does not.
    pub fn consumes_attempt(&self) -> bool {
        !matches!(self, Outcome::Throttled { .. } | Outcome::Reconciling { .. })
    }

    /// The class name used in the attempt log, metrics and the API.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Throttled { .. } => "throttled",
            Outcome::Permanent { .. } => "permanent",
            Outcome::Unknown { .. } => "unknown",
            Outcome::Reconciling { .. } => "reconciling",
        }
    }

    /// The human-readable reason carried by a non-delivered outcome.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::Retry { reason, .. }
            | Outcome::Throttled { reason, .. }
            | Outcome::Permanent { reason }
            | Outcome::Unknown { reason }
            | Outcome::Reconciling { reason, .. } => Some(reason),
        }
    }

    /// The reason, to rewrite in place (the engine scrubs secrets from it before it is
    /// logged or stored).
    pub fn reason_mut(&mut self) -> Option<&mut String> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::Retry { reason, .. }
            | Outcome::Throttled { reason, .. }
            | Outcome::Permanent { reason }
            | Outcome::Unknown { reason }
            | Outcome::Reconciling { reason, .. } => Some(reason),
        }
    }

    /// Whether this result says the destination itself is unhealthy (for the breaker).
    /// Throttling is the destination working as designed; a permanent error proves it
    /// is up and answering.
    pub fn is_destination_failure(&self) -> bool {
        matches!(self, Outcome::Retry { .. } | Outcome::Unknown { .. })
    }
}
