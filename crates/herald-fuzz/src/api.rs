//! The `api` target: the JSON bodies of `POST /v1/broadcasts` and
//! `POST /v1/broadcasts/{id}/updates`, decoded and checked as the routes do, without a
//! server (`herald_api::fuzzing`).
//!
//! Input: a mode byte (bit 0: update instead of submit; bit 1: send an
//! `Idempotency-Key` header), the header's value up to a NUL when sent, then the body.
//! Properties: a refusal is a 400, 413 or 422 problem that says what is wrong (a body
//! that is not JSON is a 400); an accepted body obeys every limit, resolves to
//! configured destinations only, and means the same when sent again as stored.

use std::collections::BTreeMap;

use herald_api::fuzzing::{self, Accepted};
use herald_api::{ApiError, Limits, Targets};
use serde_json::{Value, json};

use crate::input::Input;

/// The destinations and groups the fuzzed server has.
fn targets() -> Targets {
    let destinations = ["ops-webhook", "slack", "pager"].map(str::to_owned).to_vec();
    let groups = BTreeMap::from([
        ("oncall".to_owned(), vec!["slack".to_owned(), "pager".to_owned()]),
        ("everyone".to_owned(), destinations.clone()),
        ("stale".to_owned(), vec!["gone".to_owned()]),
        ("empty".to_owned(), Vec::new()),
    ]);
    Targets::new(destinations, groups)
}

/// Decodes one body and checks its properties.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let update = mode & 1 == 1;
    let header = (mode & 2 == 2).then(|| input.part());
    let body = input.rest();
    let limits = Limits::default();
    let targets = targets();
    let decode = |body: &[u8], header: Option<&[u8]>| {
        if update {
            fuzzing::update(body, header, &limits)
        } else {
            fuzzing::submit(body, header, &limits, &targets)
        }
    };
    match decode(body, header) {
        Err(error) => refused(&error, body, header),
        Ok(accepted) => {
            obeys_limits(&accepted, &limits, &targets, update);
            let again = resend(&accepted, update);
            match decode(&again, None) {
                Ok(same) => assert_eq!(same, accepted, "the stored request means something else"),
                Err(error) => panic!("the stored request is refused when sent again: {error:?}"),
            }
        }
    }
}

/// A refusal: the status a client can act on, and words saying what to fix. A JSON
/// document with a readable key header is refused as invalid (422), never as unreadable.
/// (A body that is not JSON may be either: the decoder stops at the first problem, and an
/// unknown field can come before the syntax error.)
fn refused(error: &ApiError, body: &[u8], header: Option<&[u8]>) {
    let status = error.status().as_u16();
    assert!(matches!(status, 400 | 413 | 422), "a body refused with {status}: {error:?}");
    let json = serde_json::from_slice::<Value>(body).is_ok();
    let readable = header.is_none_or(|h| h.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\t'));
    if json && readable && status != 413 {
        assert_eq!(status, 422, "a JSON body refused with {status}: {error:?}");
    }
    assert!(!error.to_string().trim().is_empty(), "a refusal without a detail");
    if let ApiError::Invalid { errors, .. } = error {
        assert!(!errors.is_empty(), "a 422 naming no field: {error:?}");
        for field in errors {
            assert!(!field.field.is_empty() && !field.message.is_empty(), "{field:?}");
        }
    }
}

/// What the API accepted stays within every limit it announces.
fn obeys_limits(accepted: &Accepted, limits: &Limits, targets: &Targets, update: bool) {
    let problems = fuzzing::check_message(&accepted.message, limits);
    assert!(problems.is_empty(), "an accepted message has problems: {problems:?}");
    if !update {
        let resolved = &accepted.resolved;
        assert!(!resolved.is_empty(), "accepted without a destination");
        assert!(resolved.len() <= limits.max_destinations, "{} destinations", resolved.len());
        for (i, name) in resolved.iter().enumerate() {
            assert!(targets.destinations.contains(name), "resolved to unknown {name:?}");
            assert!(!resolved[..i].contains(name), "{name:?} resolved twice");
        }
    }
    if let Some(key) = &accepted.idempotency_key {
        let n = key.chars().count();
        assert!(!key.trim().is_empty() && n <= limits.max_key, "idempotency key {key:?}");
    }
    if let Some(expires_in) = accepted.expires_in {
        assert!(!expires_in.is_zero(), "a zero expiry was accepted");
    }
}

/// The body a client would send to make the same request: what was stored.
fn resend(accepted: &Accepted, update: bool) -> Vec<u8> {
    let mut body = json!({ "message": accepted.message });
    if !update {
        body["destinations"] = json!(accepted.resolved);
    }
    if let Some(key) = &accepted.idempotency_key {
        body["idempotency_key"] = json!(key);
    }
    if let Some(expires_in) = accepted.expires_in {
        body["expires_in"] = json!(humantime::format_duration(expires_in).to_string());
    }
    body.to_string().into_bytes()
}
