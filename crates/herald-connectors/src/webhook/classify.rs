//! A webhook's answer, or the failure to get one, as a [`Report`]. Standard Webhooks
//! receivers answer with plain HTTP statuses, so the shared rules in `crate::http`
//! apply unchanged; this file adds what the attempt log keeps, and keeps configured
//! header values (often credentials an echoing receiver sends back) out of it.

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
    let detail = (!answer.excerpt.is_empty()).then_some(answer.excerpt);
    Report { outcome, status: Some(answer.status), detail, pause: None }
}

/// The report for an attempt that got no answer.
pub(super) fn unanswered(error: &reqwest::Error) -> Report {
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
