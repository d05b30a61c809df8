//! The Slack incoming-webhook connector (`kind = "slack-webhook"`): POSTs `text` and
//! Block Kit `blocks` to the webhook URL. Slack answers `200 ok` with no id, so there is
//! no remote ref, no update in place, no thread and no look-up: after a timeout the
//! destination's `on_unknown` decides (hold or resend). Errors are an HTTP status plus a
//! short text body (shared/DESTINATIONS.md §2).

mod classify;
mod config;
mod render;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use herald_core::Capabilities;

pub use classify::{PAUSING, classify, pause};
pub use config::SlackWebhookConfig;
pub use render::payload;

use crate::{Connector, ConnectorError, Report, Request, http};

/// The `slack-webhook` kind: incoming webhooks share chat.postMessage's pace of about
/// one message per second (DESTINATIONS.md §2).
pub const KIND: crate::Kind = crate::Kind {
    name: "slack-webhook",
    keys: config::KEYS,
    parse: config::parse,
    defaults: crate::Defaults { rate_limit: Some(crate::slack::ONE_PER_SECOND), concurrency: None },
    capabilities: CAPABILITIES,
};

/// An incoming webhook returns no id: no dedupe, no look-up, no edit, no thread.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: false, lookup: false, edit: false, thread_reply: false };

/// A Slack incoming-webhook destination.
pub struct SlackWebhook {
    settings: SlackWebhookConfig,
    client: http::Client,
}

impl std::fmt::Debug for SlackWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackWebhook").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl SlackWebhook {
    /// A connector for `settings`, sharing `client`.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` if the URL is unusable (never echoing it).
    pub fn new(
        settings: SlackWebhookConfig,
        client: http::Client,
    ) -> Result<SlackWebhook, ConnectorError> {
        if let Some(problem) = settings.problems().into_iter().next() {
            return Err(ConnectorError::InvalidSetting(problem));
        }
        Ok(SlackWebhook { settings, client })
    }
}

#[async_trait]
impl Connector for SlackWebhook {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        let body = payload(request);
        let sent = self.client.post(&self.settings.url).json(&body).send().await;
        match sent {
            Ok(response) => {
                let answer = http::read_answer(response, request.now).await;
                let outcome = classify(answer.status, answer.retry_after, &answer.excerpt);
                let pause = pause(answer.status, &answer.excerpt);
                let detail = (!answer.excerpt.is_empty()).then_some(answer.excerpt);
                Report { outcome, status: Some(answer.status), detail, pause }
            }
            Err(error) => Report {
                outcome: http::classify_error(&error),
                status: None,
                detail: None,
                pause: None,
            },
        }
    }
}
