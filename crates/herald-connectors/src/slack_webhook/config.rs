//! The `slack-webhook` kind's settings: the webhook URL, a secret (it carries the token).

use std::fmt;

/// A `slack-webhook` destination's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackWebhookConfig {
    /// The incoming-webhook URL (`https://hooks.slack.com/services/T…/B…/…`); never shown.
    pub url: String,
}

impl SlackWebhookConfig {
    /// Settings for `url`.
    pub fn new(url: impl Into<String>) -> SlackWebhookConfig {
        SlackWebhookConfig { url: url.into() }
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

impl fmt::Debug for SlackWebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackWebhookConfig").field("url", &"[redacted]").finish()
    }
}
