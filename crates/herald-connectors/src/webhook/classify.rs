//! A webhook's answer, or the failure to get one, as a [`Report`]. Standard Webhooks
//! receivers answer with plain HTTP statuses, so the shared rules in `crate::http`
//! apply unchanged; this file adds what the attempt log keeps, and keeps configured
//! header values (often credentials an echoing receiver sends back) out of it.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | `Delivered` |
//! | 410 Gone | `Permanent` **and pause**: the spec says "410 ⇒ disable endpoint" (DESTINATIONS.md §10) |
//! | anything else | the shared rules (`crate::http::classify`), no pause |
//!
//! Only 410 pauses: it is the one status the spec defines as "this endpoint is gone";
//! a 404 or 401 may be a receiver's answer to one message (an unknown event type, a
//! signature it could not check) and fails that delivery only.

use reqwest::header::HeaderValue;

use super::Endpoint;
use crate::Report;
use crate::http::{self, Answer};

/// Configured header values shorter than this are not redacted from excerpts: they are
/// too likely to be ordinary words ("true", "json") to be secrets.
const MIN_REDACTED_LEN: usize = 8;

/// The report for an answer the destination gave.
pub(super) fn answered(mut answer: Answer, endpoint: &Endpoint) -> Report {
    answer.excerpt = redact(&answer.excerpt, endpoint.headers.iter().map(|(_, value)| value));
    let outcome = answer.outcome();
    let pause = pause(answer.status);
    let detail = (!answer.excerpt.is_empty()).then_some(answer.excerpt);
    Report { outcome, status: Some(answer.status), detail, pause }
}

/// Why the endpoint itself is unusable until an operator acts: only `410 Gone`.
pub(super) fn pause(status: u16) -> Option<String> {
    (status == 410).then(|| {
        "the endpoint answered 410 Gone, which Standard Webhooks defines as \"disable this \
         endpoint\": fix `url` (or remove the destination) and resume it"
            .to_owned()
    })
}

/// The report for an attempt that got no answer.
pub(super) fn unanswered(error: &crate::http::SendError) -> Report {
    Report { outcome: http::classify_error(error), status: None, detail: None, pause: None }
}

/// `excerpt` with every long-enough value in `secrets` replaced by `[redacted]`.
pub(super) fn redact<'a>(excerpt: &str, secrets: impl Iterator<Item = &'a HeaderValue>) -> String {
    let mut res = excerpt.to_owned();
    for secret in secrets.filter_map(|value| value.to_str().ok()) {
        if secret.len() >= MIN_REDACTED_LEN {
            res = res.replace(secret, "[redacted]");
        }
    }
    res
}
