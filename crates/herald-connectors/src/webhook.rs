//! The generic webhook connector (being written; see the helper's task).

use async_trait::async_trait;
use herald_core::{Capabilities, Outcome};

use crate::{Connector, ConnectorError, Report, Request};

/// Settings of a `kind = "webhook"` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// The Standard Webhooks signing secret (`whsec_...`), already resolved.
    pub secret: Option<String>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
}

/// A webhook destination.
#[derive(Debug)]
pub struct Webhook {
    config: WebhookConfig,
    client: reqwest::Client,
}

impl Webhook {
    /// Validates the settings.
    ///
    /// # Errors
    /// Returns `ConnectorError::InvalidSetting` for an unusable URL or secret.
    pub fn new(config: WebhookConfig, client: reqwest::Client) -> Result<Webhook, ConnectorError> {
        Ok(Webhook { config, client })
    }
}

#[async_trait]
impl Connector for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { dedupe_by_key: true, ..Capabilities::default() }
    }

    async fn send(&self, _request: &Request<'_>) -> Report {
        let _ = (&self.config, &self.client);
        Report { outcome: Outcome::Retry { reason: "not written".into(), after: None }, status: None, detail: None }
    }
}
