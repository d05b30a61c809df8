//! The `pagerduty` kind's keys, defaults and validation.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::settings::Table;
use crate::{Connector, ConnectorConfig, ConnectorError, KindSettings};

/// The kind's own keys (besides the common policy keys).
pub const KEYS: &[&str] = &["routing_key", "base_url"];

/// Where the Events API v2 lives unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://events.pagerduty.com";

/// A `pagerduty` destination's settings, secrets resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct PagerDutyConfig {
    /// The integration's routing key (32 characters). Never logged.
    pub routing_key: String,
    /// The Events API's origin; `/v2/enqueue` goes below it.
    pub base_url: String,
}

impl fmt::Debug for PagerDutyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDutyConfig")
            .field("routing_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// Reads a `[destinations.x]` table of kind `pagerduty`.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let routing_key =
        table.required_secret("routing_key", "e.g. routing_key = \"${PD_ROUTING_KEY}\"");
    let base_url = table.url("base_url").unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    if routing_key.as_deref().is_some_and(|key| key.trim().is_empty()) {
        table.problem("routing_key", "is empty; give the integration's routing key");
    }
    if !table.ok() {
        return None;
    }
    Some(ConnectorConfig::new(PagerDutyConfig { routing_key: routing_key?, base_url }))
}

impl KindSettings for PagerDutyConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::PagerDuty::new(self.clone(), client)?))
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
