//! The generic webhook connector (`kind = "webhook"`): POSTs each message as a JSON
//! event signed per Standard Webhooks (<https://www.standardwebhooks.com>).
//!
//! One attempt is `config` → `render` → send → `classify`: [`Endpoint::parse`]
//! validates the settings once, [`render`] builds the request (pure), [`Webhook::send`]
//! is the only I/O, and `classify` turns the answer into a report (pure, on the rules
//! of `crate::http`). Signatures are made by the `standardwebhooks` crate, the spec's
//! own, not by hand.
//!
//! Receivers deduplicate on `webhook-id` (the delivery id, stable across retries), so an
//! ambiguous attempt is resolved by sending again. There is no edit and no look-up;
//! a follow-up is a new `message.updated` event that names the original.

mod classify;
mod config;
mod render;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use herald_core::{Capabilities, Outcome};

pub use config::{Endpoint, KEYS, RESERVED_HEADERS, WebhookConfig};
pub use render::{EVENT_CREATED, EVENT_UPDATED, RenderError, RenderedRequest, render};

use crate::{Connector, ConnectorError, Defaults, Kind, Report, Request, http};

/// The `webhook` kind: its keys, parser and capabilities; no policy defaults of its own.
pub const KIND: Kind = Kind {
    name: "webhook",
    keys: KEYS,
    parse: config::parse,
    defaults: Defaults::NONE,
    capabilities: CAPABILITIES,
};

/// What a webhook receiver is assumed to allow. Standard Webhooks asks receivers to
/// deduplicate on `webhook-id`; one that does not is configured with `dedupe = false`.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: true, lookup: false, edit: false, thread_reply: true };

/// A webhook destination.
#[derive(Debug)]
pub struct Webhook {
    /// The validated settings.
    endpoint: Endpoint,
    /// The shared client (one pool for all destinations); it must not follow redirects.
    client: http::Client,
}

impl Webhook {
    /// Validates the settings (see [`Endpoint::parse`]).
    ///
    /// # Errors
    /// Returns `ConnectorError::InvalidSetting` for an unusable URL, secret or header;
    /// the message names the setting and never echoes the secret.
    pub fn new(config: WebhookConfig, client: http::Client) -> Result<Webhook, ConnectorError> {
        Ok(Webhook { endpoint: Endpoint::parse(&config)?, client })
    }
}

#[async_trait]
impl Connector for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    /// Sends one attempt. `request.ambiguous` needs no special handling: the resend
    /// carries the same `webhook-id`, and the receiver drops a copy it already has.
    async fn send(&self, request: &Request<'_>) -> Report {
        let rendered = match render(&self.endpoint, request) {
            Ok(rendered) => rendered,
            Err(error) => {
                let outcome = Outcome::Permanent {
                    reason: format!("herald could not build the webhook request: {error}"),
                };
                return Report { outcome, status: None, detail: None, pause: None };
            }
        };
        let sent = self
            .client
            .post(rendered.url)
            .headers(rendered.headers)
            .body(rendered.body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                classify::answered(http::read_answer(response, request.now).await, &self.endpoint)
            }
            Err(error) => classify::unanswered(&error),
        }
    }
}
