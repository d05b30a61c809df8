//! The `slack` kind's settings: keys, defaults and validation.

use std::any::Any;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use herald_core::RateLimit;

use crate::settings::Table;
use crate::{Connector, ConnectorConfig, ConnectorError, KindSettings};

/// The kind's own keys (besides the common policy keys).
pub(super) const KEYS: &[&str] =
    &["token", "channel", "update_mode", "base_url", "history_rate_limit"];

/// How often herald reads `conversations.history` / `conversations.replies` unless
/// `history_rate_limit` says otherwise: Slack's Tier 3 (50+ per minute). Commercially
/// distributed apps outside the Marketplace get 1 per minute and set "1/m".
pub const DEFAULT_HISTORY_RATE_LIMIT: RateLimit = RateLimit {
    count: match NonZeroU32::new(50) {
        Some(count) => count,
        None => NonZeroU32::MIN,
    },
    per: std::time::Duration::from_secs(60),
};

/// Where Slack's Web API lives unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://slack.com/api";

/// How updates of a broadcast appear in Slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateMode {
    /// Each update is a reply in the original's thread (`thread_ts`).
    #[default]
    Thread,
    /// Each update replaces the original's content (`chat.update`).
    Edit,
}

impl UpdateMode {
    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateMode::Thread => "thread",
            UpdateMode::Edit => "edit",
        }
    }
}

/// A `slack` destination's settings, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackConfig {
    /// The bot token (`xoxb-…`); never shown.
    pub token: String,
    /// The channel id (`C0123456789`).
    pub channel: String,
    /// Thread replies or edits.
    pub update_mode: UpdateMode,
    /// The Web API base URL, without a trailing slash.
    pub base_url: String,
    /// The pace of look-up reads (`conversations.history`, `conversations.replies`),
    /// which Slack limits per method, apart from `chat.postMessage`.
    pub history_rate_limit: RateLimit,
}

impl SlackConfig {
    /// Settings with the defaults for everything but the token and channel.
    pub fn new(token: impl Into<String>, channel: impl Into<String>) -> SlackConfig {
        SlackConfig {
            token: token.into(),
            channel: channel.into(),
            update_mode: UpdateMode::Thread,
            base_url: DEFAULT_BASE_URL.to_owned(),
            history_rate_limit: DEFAULT_HISTORY_RATE_LIMIT,
        }
    }

    /// The same settings with `history_rate_limit`.
    pub fn with_history_rate_limit(mut self, limit: RateLimit) -> SlackConfig {
        self.history_rate_limit = limit;
        self
    }

    /// The same settings with `base_url` (trailing slashes dropped).
    pub fn with_base_url(mut self, base_url: &str) -> SlackConfig {
        self.base_url = base_url.trim_end_matches('/').to_owned();
        self
    }

    /// The same settings with `update_mode`.
    pub fn with_update_mode(mut self, mode: UpdateMode) -> SlackConfig {
        self.update_mode = mode;
        self
    }

    /// Problems that make the settings unusable, in words naming the key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.token.trim().is_empty() {
            problems.push("`token` is empty; set it to the bot token (xoxb-…)".to_owned());
        }
        if self.channel.trim().is_empty() || self.channel.starts_with('#') {
            problems.push(
                "`channel` must be a channel id such as \"C0123456789\" (not a #name: Slack \
                 answers with the id, and look-ups need it)"
                    .to_owned(),
            );
        }
        match reqwest::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => problems.push(format!("`base_url` {:?} is not an http(s) URL", self.base_url)),
        }
        problems
    }
}

impl fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackConfig")
            .field("token", &"[redacted]")
            .field("channel", &self.channel)
            .field("update_mode", &self.update_mode)
            .field("base_url", &self.base_url)
            .field("history_rate_limit", &self.history_rate_limit)
            .finish()
    }
}

/// Reads a `[destinations.x]` table of kind `slack`.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let token = table.required_secret("token", "e.g. token = \"${SLACK_BOT_TOKEN}\"");
    let channel = table.required_string("channel", "e.g. channel = \"C0123456789\"");
    let update_mode = match table.choice("update_mode", &["thread", "edit"]) {
        Some("edit") => UpdateMode::Edit,
        _ => UpdateMode::Thread,
    };
    let base_url = table.url("base_url");
    let history_rate_limit = table.rate_limit("history_rate_limit");
    if let Some(channel) = &channel
        && (channel.trim().is_empty() || channel.starts_with('#'))
    {
        table.problem(
            "channel",
            "must be a channel id such as \"C0123456789\", not a #name: Slack answers with \
             the id and the look-up after a timeout needs it (in Slack: channel details, \
             at the bottom)",
        );
    }
    if let Some(token) = &token
        && !token.starts_with("xox")
    {
        table.problem(
            "token",
            "is not a Slack token (they start with \"xox\", a bot token with \"xoxb-\")",
        );
    }
    if !table.ok() {
        return None;
    }
    let mut config = SlackConfig::new(token?, channel?).with_update_mode(update_mode);
    if let Some(base_url) = base_url {
        config = config.with_base_url(&base_url);
    }
    if let Some(limit) = history_rate_limit {
        config = config.with_history_rate_limit(limit);
    }
    Some(ConnectorConfig::new(config))
}

impl KindSettings for SlackConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::Slack::new(self.clone(), client)?))
    }

    fn servers(&self) -> Vec<crate::outbound::Server> {
        crate::outbound::Server::of_url("base_url", &self.base_url).into_iter().collect()
    }

    fn capabilities(&self) -> herald_core::Capabilities {
        super::CAPABILITIES
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
