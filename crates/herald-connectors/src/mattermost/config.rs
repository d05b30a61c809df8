//! The `mattermost` kind's settings: server URL, bot token (a secret), channel id, and
//! whether updates are thread replies or edits.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::settings::Table;
use crate::{Connector, ConnectorConfig, ConnectorError, KindSettings};

/// The kind's own keys (besides the common policy keys).
pub(super) const KEYS: &[&str] = &["url", "token", "channel_id", "update_mode"];

/// How updates of a broadcast appear in Mattermost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateMode {
    /// Each update is a reply in the original's thread (`root_id`).
    #[default]
    Thread,
    /// Each update replaces the original's message (`PUT /posts/{id}/patch`).
    Edit,
}

/// A `mattermost` destination's settings, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct MattermostConfig {
    /// The server's base URL, without a trailing slash (`https://mattermost.example.com`).
    pub url: String,
    /// A bot or personal access token; never shown.
    pub token: String,
    /// The channel's id (26 characters).
    pub channel_id: String,
    /// Thread replies or edits.
    pub update_mode: UpdateMode,
}

/// Whether `id` looks like a Mattermost id: 26 lowercase letters and digits.
pub fn is_id(id: &str) -> bool {
    id.len() == 26 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl MattermostConfig {
    /// Settings with thread updates.
    pub fn new(
        url: &str,
        token: impl Into<String>,
        channel_id: impl Into<String>,
    ) -> MattermostConfig {
        MattermostConfig {
            url: url.trim_end_matches('/').to_owned(),
            token: token.into(),
            channel_id: channel_id.into(),
            update_mode: UpdateMode::Thread,
        }
    }

    /// The same settings with `update_mode`.
    pub fn with_update_mode(mut self, mode: UpdateMode) -> MattermostConfig {
        self.update_mode = mode;
        self
    }

    /// Problems that make the settings unusable, in words naming the key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => problems.push(format!("`url` {:?} is not an http(s) URL", self.url)),
        }
        if self.token.trim().is_empty() {
            problems.push("`token` is empty; set it to a bot access token".to_owned());
        }
        if !is_id(&self.channel_id) {
            problems.push(
                "`channel_id` must be a channel id (26 lowercase letters and digits, in \
                 Mattermost: channel menu > View Info), not a name"
                    .to_owned(),
            );
        }
        problems
    }
}

impl fmt::Debug for MattermostConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MattermostConfig")
            .field("url", &self.url)
            .field("token", &"[redacted]")
            .field("channel_id", &self.channel_id)
            .field("update_mode", &self.update_mode)
            .finish()
    }
}

/// Reads a `[destinations.x]` table of kind `mattermost`.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let url = table.required_url("url", "e.g. url = \"https://mattermost.example.com\"");
    let token = table.required_secret("token", "e.g. token = \"${MM_TOKEN}\"");
    let channel_id =
        table.required_string("channel_id", "e.g. channel_id = \"4xp9fdt77pncbef59f4k1qe83o\"");
    let update_mode = match table.choice("update_mode", &["thread", "edit"]) {
        Some("edit") => UpdateMode::Edit,
        _ => UpdateMode::Thread,
    };
    if let Some(id) = &channel_id
        && !is_id(id)
    {
        table.problem(
            "channel_id",
            "must be a channel id (26 lowercase letters and digits; in Mattermost: channel \
             menu > View Info), not a channel name",
        );
    }
    if !table.ok() {
        return None;
    }
    let config = MattermostConfig::new(&url?, token?, channel_id?).with_update_mode(update_mode);
    Some(ConnectorConfig::new(config))
}

impl KindSettings for MattermostConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::Mattermost::new(self.clone(), client)?))
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
