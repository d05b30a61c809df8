//! The `discord` kind's settings: the webhook URL, a secret (its path carries the token).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::settings::Table;
use crate::{Connector, ConnectorConfig, ConnectorError, KindSettings};

/// The kind's own keys (besides the common policy keys).
pub(super) const KEYS: &[&str] = &["url"];

/// A `discord` destination's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct DiscordConfig {
    /// The webhook URL (`https://discord.com/api/webhooks/{id}/{token}`, optionally with
    /// `?thread_id=…`); never shown.
    pub url: String,
}

impl DiscordConfig {
    /// Settings for `url`.
    pub fn new(url: impl Into<String>) -> DiscordConfig {
        DiscordConfig { url: url.into() }
    }

    /// Problems that make the settings unusable, in words naming the key (never the URL).
    pub fn problems(&self) -> Vec<String> {
        match reqwest::Url::parse(&self.url) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.has_host()
                    && url.path_segments().is_some_and(|mut s| s.any(|p| !p.is_empty())) =>
            {
                Vec::new()
            }
            _ => vec![
                "`url` is not an http(s) webhook URL (it is not shown: it carries a token)"
                    .to_owned(),
            ],
        }
    }
}

impl fmt::Debug for DiscordConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordConfig").field("url", &"[redacted]").finish()
    }
}

/// Reads a `[destinations.x]` table of kind `discord`. The URL carries the webhook's
/// token, so it may come from `${ENV}` or `file:` like any secret, and no message repeats
/// it.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let url = table.required_secret(
        "url",
        "e.g. url = \"${DISCORD_WEBHOOK_URL}\" (https://discord.com/api/webhooks/{id}/{token})",
    )?;
    let config = DiscordConfig::new(url.trim());
    for problem in config.problems() {
        table.problem("url", problem);
    }
    table.ok().then(|| ConnectorConfig::new(config))
}

impl KindSettings for DiscordConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::Discord::new(self.clone(), client)?))
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
