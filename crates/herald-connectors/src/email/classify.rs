//! SMTP replies as outcomes (shared/DESTINATIONS.md §9, RFC 5321 §4.2.1), and how the
//! recipients' separate fates make one delivery's outcome.
//!
//! | reply or event | outcome |
//! |---|---|
//! | 2yz after the final `.` | `Delivered` (remote ref: our `Message-ID`) |
//! | 4yz anywhere (`421` closing, `450`/`451`, `452 4.2.2` mailbox full) | `Retry`: "can be successful if repeated" |
//! | 5yz anywhere (`550 5.1.1` bad mailbox, `554 5.7.x` policy, `552 5.3.4` too big, `535` auth) | `Permanent` |
//! | refused or lost connection, TLS failure, or a step unanswered within `command_timeout`, before the final `.` | `Retry`: nothing was accepted |
//! | a server certificate herald does not trust (unknown CA, wrong name, expired) | `Permanent`, naming `tls_ca`: it will not fix itself |
//! | connection lost or timed out after the final `.`, before its reply | `Unknown`: the server may have taken it (RFC 5321 §4.5.3.2.6) |
//! | RCPT refused for some recipients only | per recipient: 5yz refused for good, 4yz retried, the others delivered |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use herald_core::Outcome;

/// Where in the SMTP dialogue a reply or failure came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Connecting, the greeting and EHLO.
    Connect,
    /// STARTTLS and the TLS handshake.
    StartTls,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO, for one recipient.
    Rcpt,
    /// The DATA command, before any content.
    Data,
    /// Writing the content, before the final `.`: nothing can have been accepted yet.
    Content,
    /// The content and the final `.`: the server's reply is its acceptance.
    EndOfData,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Connect => "the greeting",
            Step::StartTls => "STARTTLS",
            Step::Auth => "AUTH",
            Step::MailFrom => "MAIL FROM",
            Step::Rcpt => "RCPT TO",
            Step::Data => "DATA",
            Step::Content => "the message content",
            Step::EndOfData => "the end of the message",
        })
    }
}

/// The outcome of a negative (or any) reply `code` with `text` at `step`.
pub fn reply(step: Step, code: u16, text: &str) -> Outcome {
    let said = format!("{code} {}", text.trim());
    match code {
        200..=399 => Outcome::delivered(None),
        400..=499 => Outcome::Retry {
            reason: format!("the SMTP server answered {said} at {step}: a transient refusal"),
            after: None,
        },
        _ => Outcome::Permanent {
            reason: format!("the SMTP server answered {said} at {step}: a permanent refusal"),
        },
    }
}

/// The outcome of a connection that failed (`what`) at `step` without a reply.
pub fn lost(step: Step, what: &str) -> Outcome {
    match step {
        Step::EndOfData => Outcome::Unknown {
            reason: format!(
                "the connection failed after the message was sent, before the server's reply \
                 ({what}): it may have been accepted"
            ),
        },
        _ => Outcome::Retry {
            reason: format!("the SMTP connection failed at {step} ({what}); nothing was accepted"),
            after: None,
        },
    }
}

/// What one delivery's recipients came to so far, across attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Recipients whose transaction ended with a 2yz after the final `.`.
    pub delivered: BTreeSet<String>,
    /// Recipients refused for good, with the server's words.
    pub refused: BTreeMap<String, String>,
}

/// The delivery's outcome once an attempt is over: `failure` ended the attempt as a
/// whole (before or after the recipients), `deferred` are the recipients refused for
/// now in this attempt (with the server's words); `queued` is the final reply's text.
pub fn settle(
    progress: &Progress,
    failure: Option<Outcome>,
    deferred: &[(String, String)],
    message_id: &str,
) -> (Outcome, Option<String>) {
    let delivered = || progress.delivered.iter().cloned().collect::<Vec<_>>().join(", ");
    let refused = || {
        progress
            .refused
            .iter()
            .map(|(who, why)| format!("{who} ({why})"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let so_far = || {
        let mut words = String::new();
        if !progress.delivered.is_empty() {
            words.push_str(&format!("; already delivered to {}", delivered()));
        }
        if !progress.refused.is_empty() {
            words.push_str(&format!("; refused for good: {}", refused()));
        }
        words
    };
    if let Some(failure) = failure {
        let outcome = match failure {
            Outcome::Retry { reason, after } => {
                Outcome::Retry { reason: reason + &so_far(), after }
            }
            Outcome::Permanent { reason } => Outcome::Permanent { reason: reason + &so_far() },
            Outcome::Unknown { reason } => Outcome::Unknown { reason: reason + &so_far() },
            other => other,
        };
        return (outcome, None);
    }
    if !deferred.is_empty() {
        let later = deferred.iter().map(|(who, why)| format!("{who} ({why})")).collect::<Vec<_>>();
        let reason =
            format!("recipients refused for now, retried: {}{}", later.join("; "), so_far());
        return (Outcome::Retry { reason, after: None }, None);
    }
    if progress.delivered.is_empty() {
        return (
            Outcome::Permanent { reason: format!("every recipient was refused: {}", refused()) },
            None,
        );
    }
    let detail = (!progress.refused.is_empty())
        .then(|| format!("delivered to {}; refused for good: {}", delivered(), refused()));
    (Outcome::delivered(Some(message_id.to_owned())), detail)
}
