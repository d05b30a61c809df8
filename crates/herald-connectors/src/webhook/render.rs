//! Turns one attempt into the exact HTTP request a webhook receiver gets. Pure: the
//! time is `request.now`, the id is the delivery id, nothing is read from outside.
//!
//! The body is a Standard Webhooks event, `{"type", "timestamp", "data"}`, and the
//! headers are those the spec names (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`) plus `Idempotency-Key`. `webhook-id` is the delivery id, so it
//! stays the same across retries and the receiver can drop a second copy; the timestamp
//! and signature are those of this attempt.

use herald_core::{Message, Timestamp};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use super::Endpoint;
use crate::{Request, Thread};

/// The event type of a broadcast's first message.
pub const EVENT_CREATED: &str = "message.created";
/// The event type of a follow-up in a broadcast's thread.
pub const EVENT_UPDATED: &str = "message.updated";

/// One webhook request, ready to send.
#[derive(Debug, Clone)]
pub struct RenderedRequest {
    /// Where to POST.
    pub url: reqwest::Url,
    /// Every header herald sets, extra configured headers included.
    pub headers: HeaderMap,
    /// The JSON event, exactly the bytes that were signed.
    pub body: Vec<u8>,
}

/// Why an attempt could not be turned into a request. Every variant is a bug upstream
/// (ids and clocks come from the engine), so the attempt fails as `Permanent`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The delivery id cannot serve as `webhook-id`: it is empty, contains a `.` (the
    /// spec's signed-content separator) or a character a header cannot carry.
    #[error("delivery id {0:?} cannot be used as a webhook-id")]
    InvalidId(String),
    /// `request.now` is before 1970 or after 9999, which RFC 3339 cannot write.
    #[error("the attempt time ({0} ms after 1970) cannot be written as a date")]
    TimeOutOfRange(i64),
    /// The event could not be encoded as JSON.
    #[error("could not encode the event as JSON")]
    Encode(#[source] serde_json::Error),
    /// The signature could not be computed.
    #[error("could not sign the event")]
    Sign(#[source] standardwebhooks::WebhookError),
}

/// The Standard Webhooks event envelope.
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    event_type: &'static str,
    timestamp: String,
    data: EventData<'a>,
}

/// What herald says about the attempt, plus the message itself.
#[derive(Serialize)]
struct EventData<'a> {
    broadcast_id: &'a str,
    delivery_id: &'a str,
    destination: &'a str,
    attempt: u32,
    /// 0 for the original, n for the n-th update.
    thread_seq: u32,
    /// The original's delivery id on this destination, for updates.
    in_reply_to: Option<&'a str>,
    /// The destination's id for the original, if it returned one.
    original_remote_ref: Option<&'a str>,
    message: &'a Message,
}

/// Builds the request for one attempt at `endpoint`.
///
/// # Errors
/// Returns `RenderError` when the delivery id cannot be a `webhook-id` or `request.now`
/// cannot be written as a date; both are the engine's bugs, never the destination's.
pub fn render(endpoint: &Endpoint, request: &Request<'_>) -> Result<RenderedRequest, RenderError> {
    let id = webhook_id(request.delivery_id)?;
    let timestamp = rfc3339(request.now)?;
    let unix_seconds = request.now.as_millis().div_euclid(1000);

    let (event_type, thread_seq, in_reply_to, original_remote_ref) = match request.thread {
        Thread::Original => (EVENT_CREATED, 0, None, None),
        Thread::Update { seq, in_reply_to, original_remote_ref, .. } => {
            (EVENT_UPDATED, seq, Some(in_reply_to), original_remote_ref)
        }
    };
    let event = Event {
        event_type,
        timestamp,
        data: EventData {
            broadcast_id: request.broadcast_id,
            delivery_id: request.delivery_id,
            destination: request.destination,
            attempt: request.attempt,
            thread_seq,
            in_reply_to,
            original_remote_ref,
            message: request.message,
        },
    };
    let body = serde_json::to_vec(&event).map_err(RenderError::Encode)?;

    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(HeaderName::from_static("webhook-id"), id.clone());
    headers.insert(HeaderName::from_static("webhook-timestamp"), HeaderValue::from(unix_seconds));
    if let Some(signer) = &endpoint.signer {
        let signature =
            signer.sign(request.delivery_id, unix_seconds, &body).map_err(RenderError::Sign)?;
        // A base64 signature is always a valid header value; the error arm is unreachable.
        let mut value = HeaderValue::from_str(&signature)
            .map_err(|_| RenderError::Sign(standardwebhooks::WebhookError::InvalidSignature))?;
        value.set_sensitive(true);
        headers.insert(HeaderName::from_static("webhook-signature"), value);
    }
    headers.insert(HeaderName::from_static("idempotency-key"), id);
    for (name, value) in &endpoint.headers {
        headers.append(name.clone(), value.clone());
    }

    Ok(RenderedRequest { url: endpoint.url.clone(), headers, body })
}

/// The delivery id as a header value, if it is a valid Standard Webhooks id.
fn webhook_id(delivery_id: &str) -> Result<HeaderValue, RenderError> {
    let invalid = || RenderError::InvalidId(delivery_id.to_owned());
    if delivery_id.is_empty() || delivery_id.contains('.') {
        return Err(invalid());
    }
    HeaderValue::from_str(delivery_id).map_err(|_| invalid())
}

/// `now` as RFC 3339 in UTC with milliseconds, e.g. `2026-11-29T12:02:03.000Z`.
fn rfc3339(now: Timestamp) -> Result<String, RenderError> {
    crate::text::rfc3339_millis(now).ok_or(RenderError::TimeOutOfRange(now.as_millis()))
}
