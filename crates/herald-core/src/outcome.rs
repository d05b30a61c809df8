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
}

impl Outcome {
    /// The class name used in the attempt log, metrics and the API.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Throttled { .. } => "throttled",
            Outcome::Permanent { .. } => "permanent",
            Outcome::Unknown { .. } => "unknown",
        }
    }

    /// The human-readable reason carried by a non-delivered outcome.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::Retry { reason, .. }
            | Outcome::Throttled { reason, .. }
            | Outcome::Permanent { reason }
            | Outcome::Unknown { reason } => Some(reason),
        }
    }

    /// Whether this result says the destination itself is unhealthy (for the breaker).
    /// Throttling is the destination working as designed; a permanent error proves it
    /// is up and answering.
    pub fn is_destination_failure(&self) -> bool {
        matches!(self, Outcome::Retry { .. } | Outcome::Unknown { .. })
    }
}
