//! The Teams Workflows connector (`kind = "teams-workflow"`): posts an Adaptive Card to a
//! flow started by "When a Teams webhook request is received" (DESTINATIONS.md §3a).
//!
//! The flow answers `202 Accepted` once a run is queued; the card may still fail inside
//! the flow, visible only in its run history, so a `202` is recorded as delivered but
//! unconfirmed. There is no message id, no edit, no look-up and no idempotency key: a
//! follow-up is a new card quoting the original's title and time, and after an ambiguous
//! attempt (a timeout) the destination's `on_unknown` decides between holding and
//! resending.

pub(crate) mod classify;
pub(crate) mod config;
pub mod render;

#[cfg(test)]
pub(crate) mod tests;

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use herald_core::{Capabilities, Outcome, RateLimit};

pub use config::{KEYS, TeamsWorkflowConfig};

use crate::{Connector, ConnectorError, Report, Request, Thread, http};
use crate::{Defaults, Kind};

/// The `teams-workflow` kind.
pub const KIND: Kind = Kind {
    name: "teams-workflow",
    keys: KEYS,
    parse: config::parse,
    defaults: DEFAULTS,
    capabilities: CAPABILITIES,
};

/// No idempotency key, no look-up, no edit, no reply: a Workflows webhook returns nothing
/// to refer to.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: false, lookup: false, edit: false, thread_reply: false };

/// One card per second. Each card is a flow run whose "Post card in a chat or channel"
/// action goes through the Teams connector, documented at 100 API calls per connection
/// per 60 seconds (learn.microsoft.com/connectors/teams, "Throttling limits"); 60 a
/// minute stays under that with room for the flow's other actions, and matches Teams'
/// own pacing of channel posts (the legacy connectors' 4 requests/s burst is spent by
/// the fourth card of an incident storm either way).
pub const DEFAULTS: Defaults = Defaults {
    rate_limit: Some(RateLimit { count: NonZeroU32::MIN, per: Duration::from_secs(1) }),
    concurrency: None,
};

/// A Teams Workflows destination.
pub struct TeamsWorkflow {
    url: reqwest::Url,
    /// The `sig` query value, redacted from excerpts.
    sig: Option<String>,
    client: http::Client,
}

/// Only the URL's origin: its path and `sig=` grant the right to post.
impl std::fmt::Debug for TeamsWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamsWorkflow")
            .field("url", &self.url.origin().ascii_serialization())
            .finish_non_exhaustive()
    }
}

impl TeamsWorkflow {
    /// Validates the settings.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` for an unusable URL (never quoted).
    pub fn new(
        config: TeamsWorkflowConfig,
        client: http::Client,
    ) -> Result<TeamsWorkflow, ConnectorError> {
        config::check_url(&config.url)
            .map_err(|why| ConnectorError::InvalidSetting(format!("`url` {why}")))?;
        let url = reqwest::Url::parse(&config.url).map_err(|e| {
            ConnectorError::InvalidSetting(format!("`url` is not a valid URL ({e})"))
        })?;
        let sig = url.query_pairs().find(|(k, _)| k == "sig").map(|(_, v)| v.into_owned());
        Ok(TeamsWorkflow { url, sig, client })
    }
}

#[async_trait]
impl Connector for TeamsWorkflow {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    /// Posts one card. `request.ambiguous` changes nothing here: nothing can be looked
    /// up, and the engine only calls again when `on_unknown = "resend"`.
    async fn send(&self, request: &Request<'_>) -> Report {
        let quote = match request.thread {
            Thread::Original => None,
            Thread::Update { seq, original, original_at, .. } => {
                Some(render::Quote { seq, original, original_at })
            }
        };
        let payload = render::render(request.message, request.delivery_id, quote);
        let body = match serde_json::to_vec(&payload) {
            Ok(body) => body,
            Err(e) => {
                let reason = format!("herald could not encode the card: {e}");
                return Report {
                    outcome: Outcome::Permanent { reason },
                    status: None,
                    detail: None,
                    pause: None,
                };
            }
        };
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => classify::answered(
                http::read_answer(response, request.now).await,
                self.sig.as_deref(),
            ),
            Err(error) => classify::unanswered(&error),
        }
    }
}
