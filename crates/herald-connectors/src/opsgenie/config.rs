//! The `opsgenie` kind's keys, defaults and validation.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::settings::Table;
use crate::{Connector, ConnectorConfig, ConnectorError, KindSettings};

/// The kind's own keys (besides the common policy keys).
pub const KEYS: &[&str] = &["api_key", "base_url"];

/// Where the Alert API lives unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.opsgenie.com";

/// An `opsgenie` destination's settings, secrets resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct OpsgenieConfig {
    /// The API integration's key (sent as `GenieKey`). Never logged.
    pub api_key: String,
    /// The Alert API's origin (`https://api.eu.opsgenie.com` for the EU); `/v2/alerts` goes below it.
    pub base_url: String,
}

impl fmt::Debug for OpsgenieConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsgenieConfig")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// Reads a `[destinations.x]` table of kind `opsgenie`.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let api_key = table.required_secret("api_key", "e.g. api_key = \"${OPSGENIE_KEY}\"");
    let base_url = table.url("base_url").unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    if api_key.as_deref().is_some_and(|key| key.trim().is_empty()) {
        table.problem("api_key", "is empty; give the API integration's key");
    }
    if !table.ok() {
        return None;
    }
    Some(ConnectorConfig::new(OpsgenieConfig { api_key: api_key?, base_url }))
}

impl KindSettings for OpsgenieConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::Opsgenie::new(self.clone(), client)?))
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
