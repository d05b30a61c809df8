//! A `teams-workflow` destination's settings: the flow's URL, a secret (its `sig=` query
//! parameter grants the right to post), so it may come from `${ENV}` or `file:` and never
//! appears in `Debug`, errors or logs.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::ConnectorError;
use crate::settings::Table;
use crate::{Connector, ConnectorConfig, KindSettings};

/// The kind's own keys.
pub const KEYS: &[&str] = &["url"];

/// Settings of a `kind = "teams-workflow"` destination.
#[derive(Clone, PartialEq, Eq)]
pub struct TeamsWorkflowConfig {
    /// The Workflows trigger URL ("When a Teams webhook request is received"), with `sig=`.
    pub url: String,
}

impl fmt::Debug for TeamsWorkflowConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsWorkflowConfig").field("url", &origin(&self.url)).finish()
    }
}

/// `scheme://host[:port]` of a URL, the only part safe to show.
pub(crate) fn origin(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "<invalid URL>".to_owned())
}

/// Checks a resolved URL without quoting it.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Err(e) => Err(format!("is not a valid URL ({e})")),
        Ok(u) if u.scheme() != "https" && u.scheme() != "http" => {
            Err(format!("must start with https://, not {}://", u.scheme()))
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Err("has no host".to_owned()),
        Ok(_) => Ok(()),
    }
}

/// Reads the kind's keys.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let example = "e.g. url = \"${TEAMS_WORKFLOW_URL}\" (the flow's URL, with its sig=)";
    let url = table.require("url", example).then(|| table.checked_secret("url", check_url));
    let url = url.flatten();
    if !table.ok() {
        return None;
    }
    Some(ConnectorConfig::new(TeamsWorkflowConfig { url: url? }))
}

impl KindSettings for TeamsWorkflowConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::TeamsWorkflow::new(self.clone(), client)?))
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
