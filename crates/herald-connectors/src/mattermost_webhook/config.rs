//! The `mattermost-webhook` kind's settings: the webhook URL, a secret (it carries the token).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::settings::Table;
use crate::{Connector, ConnectorConfig, ConnectorError, KindSettings};

/// The kind's own keys (besides the common policy keys).
pub(super) const KEYS: &[&str] = &["url"];

/// A `mattermost-webhook` destination's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct MattermostWebhookConfig {
    /// The incoming-webhook URL (`https://mattermost.example.com/hooks/…`); never shown.
    pub url: String,
}

impl MattermostWebhookConfig {
    /// Settings for `url`.
    pub fn new(url: impl Into<String>) -> MattermostWebhookConfig {
        MattermostWebhookConfig { url: url.into() }
    }

    /// Problems that make the settings unusable, in words naming the key (never the URL).
    pub fn problems(&self) -> Vec<String> {
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Vec::new(),
            _ => {
                vec!["`url` is not an http(s) URL (it is not shown: it carries a token)".to_owned()]
            }
        }
    }
}

impl fmt::Debug for MattermostWebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MattermostWebhookConfig").field("url", &"[redacted]").finish()
    }
}

/// Reads a `[destinations.x]` table of kind `mattermost-webhook`. The URL carries the
/// webhook's token, so it may come from `${ENV}` or `file:` like any secret, and no
/// message repeats it.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let url = table.required_secret(
        "url",
        "e.g. url = \"${MM_WEBHOOK_URL}\" (https://mattermost.example.com/hooks/…)",
    )?;
    let config = MattermostWebhookConfig::new(url.trim());
    for problem in config.problems() {
        table.problem("url", problem);
    }
    table.ok().then(|| ConnectorConfig::new(config))
}

impl KindSettings for MattermostWebhookConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::MattermostWebhook::new(self.clone(), client)?))
    }

    fn servers(&self) -> Vec<crate::outbound::Server> {
        crate::outbound::Server::of_url("url", &self.url).into_iter().collect()
    }

    fn capabilities(&self) -> herald_core::Capabilities {
        super::CAPABILITIES
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
