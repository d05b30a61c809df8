//! The Mattermost incoming-webhook connector (`kind = "mattermost-webhook"`): POSTs a
//! Slack-compatible `{"text": …}` to `https://<host>/hooks/<key>`, the text being the
//! same Markdown the REST kind posts (`crate::mattermost::render`; Slack's Block Kit and
//! mrkdwn do not fit: Mattermost ignores blocks and reads `*x*` as italics). Mattermost
//! answers `200 ok` with no id, so there is no remote ref, no update in place, no thread
//! and no look-up: after a timeout the destination's `on_unknown` decides. Text longer
//! than the server's post limit would be split into several posts, so herald cuts it to
//! one (shared/DESTINATIONS.md §11).
//!
//! How each answer is classified, and which ones pause the destination: the table in
//! `classify.rs`.

mod classify;
mod config;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use herald_core::Capabilities;
use serde_json::{Value, json};

pub use classify::{HOOKS_DISABLED, INVALID_HOOK, PAUSING, classify, pause};
pub use config::MattermostWebhookConfig;

use crate::mattermost::render::{self, Role};
use crate::{Connector, ConnectorError, Report, Request, Thread, http};

/// The `mattermost-webhook` kind.
pub const KIND: crate::Kind = crate::Kind {
    name: "mattermost-webhook",
    keys: config::KEYS,
    parse: config::parse,
    defaults: crate::Defaults::NONE,
    capabilities: CAPABILITIES,
};

/// An incoming webhook returns no id: no dedupe, no look-up, no edit, no thread.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: false, lookup: false, edit: false, thread_reply: false };

/// The JSON body for one attempt: an update is a new post marked `(update N)`.
pub fn payload(request: &Request<'_>) -> Value {
    let role = match request.thread {
        Thread::Original => Role::Original,
        Thread::Update { seq, .. } => Role::Reply { seq },
    };
    json!({ "text": render::text(request.message, role) })
}

/// A Mattermost incoming-webhook destination.
pub struct MattermostWebhook {
    settings: MattermostWebhookConfig,
    client: http::Client,
}

impl std::fmt::Debug for MattermostWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MattermostWebhook")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MattermostWebhook {
    /// A connector for `settings`, sharing `client`.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` if the URL is unusable (never echoing it).
    pub fn new(
        settings: MattermostWebhookConfig,
        client: http::Client,
    ) -> Result<MattermostWebhook, ConnectorError> {
        if let Some(problem) = settings.problems().into_iter().next() {
            return Err(ConnectorError::InvalidSetting(problem));
        }
        Ok(MattermostWebhook { settings, client })
    }
}

#[async_trait]
impl Connector for MattermostWebhook {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        let sent = self.client.post(&self.settings.url).json(&payload(request)).send().await;
        match sent {
            Ok(response) => {
                let headers = response.headers().clone();
                let answer = http::read_answer(response, request.now).await;
                let outcome = classify(answer.status, &headers, &answer.excerpt, request.now);
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
