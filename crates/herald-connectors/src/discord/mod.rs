//! The Discord webhook connector (`kind = "discord"`): executes the webhook with
//! `?wait=true`, so Discord answers the saved message (without it, 204 and "a message
//! that is not saved does not return an error"); the remote ref is the message id; an
//! update edits the original with `PATCH {url}/messages/{id}`. Webhooks have no
//! idempotency key and cannot read channel history, so there is no look-up: after a
//! timeout the destination's `on_unknown` decides (shared/DESTINATIONS.md §8).
//!
//! An edit is idempotent (the same PATCH twice leaves the same message), so an update
//! needs no reconciliation. 401/403/404 are never retried: Discord bans an IP for a
//! while after 10,000 invalid requests (401, 403, 429) in 10 minutes. A `404 Unknown
//! Webhook` or a `401 Invalid Webhook Token` also pauses the destination
//! ([`pause`]), so its other deliveries wait for the operator instead of
//! each spending a request on a webhook that is gone.

mod classify;
mod config;
pub mod render;

#[cfg(test)]
mod tests;

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use herald_core::{Capabilities, Outcome, RateLimit};
use serde_json::Value;

pub use classify::{
    INVALID_FORM_BODY, INVALID_WEBHOOK_TOKEN, UNKNOWN_MESSAGE, UNKNOWN_WEBHOOK, classify, pause,
    throttle_wait,
};
pub use config::DiscordConfig;
use render::Role;

use crate::{Connector, ConnectorError, Report, Request, Thread, http};

/// The `discord` kind. Discord documents no fixed numbers (obey the headers), but a
/// webhook is commonly limited to about 30 messages a minute per channel; pacing at that
/// keeps herald from spending 429s, which count toward the invalid-request ban.
pub const KIND: crate::Kind = crate::Kind {
    name: "discord",
    keys: config::KEYS,
    parse: config::parse,
    defaults: crate::Defaults { rate_limit: Some(THIRTY_PER_MINUTE), concurrency: None },
    capabilities: CAPABILITIES,
};

/// 30 messages per minute.
const THIRTY_PER_MINUTE: RateLimit = RateLimit {
    count: match NonZeroU32::new(30) {
        Some(count) => count,
        None => NonZeroU32::MIN,
    },
    per: Duration::from_secs(60),
};

/// Webhooks: edits, no dedupe key, no look-up, no threads (a reply would be a new
/// message; herald edits the original instead).
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: false, lookup: false, edit: true, thread_reply: false };

/// The most bytes of an answer read (the message object echoes the content and embeds).
const BODY_CAP: usize = 256 * 1024;

/// A Discord webhook destination.
pub struct Discord {
    url: reqwest::Url,
    client: http::Client,
}

impl std::fmt::Debug for Discord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discord").field("url", &"[redacted]").finish_non_exhaustive()
    }
}

impl Discord {
    /// A connector for `settings`, sharing `client`.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` if the URL is unusable (never echoing it).
    pub fn new(settings: DiscordConfig, client: http::Client) -> Result<Discord, ConnectorError> {
        if let Some(problem) = settings.problems().into_iter().next() {
            return Err(ConnectorError::InvalidSetting(problem));
        }
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|_| ConnectorError::InvalidSetting("`url` is not a URL".to_owned()))?;
        Ok(Discord { url, client })
    }

    /// The execute URL: the configured one with `wait=true` (any other query, such as
    /// `thread_id`, kept).
    pub fn execute_url(&self) -> reqwest::Url {
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "wait")
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept).append_pair("wait", "true");
        url
    }

    /// The edit URL of message `id` (the query, such as `thread_id`, kept; `wait` dropped).
    fn message_url(&self, id: &str) -> Option<reqwest::Url> {
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "wait")
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        url.path_segments_mut().ok()?.pop_if_empty().push("messages").push(id);
        Some(url)
    }

    async fn call(&self, request: http::RequestBuilder, body: &Value, req: &Request<'_>) -> Report {
        let sent = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Report {
                    outcome: http::classify_error(&error),
                    status: None,
                    detail: None,
                    pause: None,
                };
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        let complete = loop {
            match tokio::time::timeout(http::EXCERPT_READ_TIMEOUT, response.chunk()).await {
                Ok(Ok(Some(chunk))) if bytes.len() + chunk.len() <= BODY_CAP => {
                    bytes.extend_from_slice(&chunk);
                }
                Ok(Ok(None)) => break true,
                // Too large, broken or stalled: the status is known, the id may not be.
                _ => break false,
            }
        };
        let parsed: Option<Value> =
            if complete { serde_json::from_slice(&bytes).ok() } else { None };
        let excerpt = http::excerpt(&bytes, http::EXCERPT_LIMIT);
        let outcome = classify(status, &headers, parsed.as_ref(), &excerpt, req.now);
        let pause = pause(status, parsed.as_ref());
        let detail = match &outcome {
            // The message object echoes our own text: not worth keeping.
            Outcome::Delivered { .. } => None,
            _ => (!excerpt.is_empty()).then_some(excerpt),
        };
        Report { outcome, status: Some(status), detail, pause }
    }
}

/// Whether `id` looks like a Discord snowflake (so it is safe as a path segment).
fn snowflake(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

#[async_trait]
impl Connector for Discord {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        match request.thread {
            Thread::Original => {
                let body = render::payload(request.message, Role::Original);
                self.call(self.client.post(self.execute_url()), &body, request).await
            }
            Thread::Update { seq, original_remote_ref, .. } => {
                let url = original_remote_ref
                    .filter(|id| snowflake(id))
                    .and_then(|id| self.message_url(id));
                let Some(url) = url else {
                    return Report {
                        outcome: Outcome::Permanent {
                            reason: "the original message has no Discord message id, so herald \
                                     cannot edit it"
                                .to_owned(),
                        },
                        status: None,
                        detail: None,
                        pause: None,
                    };
                };
                let body = render::payload(request.message, Role::Edit { seq });
                let mut report = self.call(self.client.patch(url), &body, request).await;
                // The edit answers the edited message; its id is the original's.
                if let Outcome::Delivered { remote_ref, .. } = &mut report.outcome
                    && remote_ref.is_none()
                {
                    *remote_ref = original_remote_ref.map(str::to_owned);
                }
                report
            }
        }
    }
}
