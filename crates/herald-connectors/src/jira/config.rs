//! The `jira` kind's keys, defaults and validation.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::settings::Table;
use crate::{Connector, ConnectorConfig, ConnectorError, KindSettings};

/// The kind's own keys (besides the common policy keys).
pub const KEYS: &[&str] =
    &["url", "email", "token", "project", "issue_type", "transition_on_resolve", "lookup_grace"];

/// How long a "not found" from Jira's search is not trusted after an ambiguous create,
/// unless `lookup_grace` says otherwise. Jira documents the search as eventually
/// consistent (seconds to minutes); DESTINATIONS.md §4 asks for at least 60 s.
pub const DEFAULT_LOOKUP_GRACE: Duration = Duration::from_secs(60);

/// A `jira` destination's settings, secrets resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct JiraConfig {
    /// The site, e.g. `https://example.atlassian.net` (paths `/rest/api/3/...` go below).
    pub url: String,
    /// The account's e-mail address (basic auth user).
    pub email: String,
    /// The API token (basic auth password). Never logged.
    pub token: String,
    /// The project key issues are created in.
    pub project: String,
    /// The issue type's name.
    pub issue_type: String,
    /// The transition applied by a follow-up with severity `resolved`, if any.
    pub transition_on_resolve: Option<String>,
    /// How long after an ambiguous create a "not found" from the search is not trusted.
    pub lookup_grace: Duration,
}

impl fmt::Debug for JiraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JiraConfig")
            .field("url", &self.url)
            .field("email", &self.email)
            .field("token", &"<redacted>")
            .field("project", &self.project)
            .field("issue_type", &self.issue_type)
            .field("transition_on_resolve", &self.transition_on_resolve)
            .field("lookup_grace", &self.lookup_grace)
            .finish()
    }
}

/// Reads a `[destinations.x]` table of kind `jira`.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let url = table.required_url("url", "e.g. url = \"https://example.atlassian.net\"");
    let email = table.required_string("email", "e.g. email = \"herald@example.com\"");
    let token = table.required_secret("token", "e.g. token = \"${JIRA_API_TOKEN}\"");
    let project = table.required_string("project", "e.g. project = \"OPS\"");
    let issue_type = table.required_string("issue_type", "e.g. issue_type = \"Incident\"");
    let transition_on_resolve = table.string("transition_on_resolve");
    let lookup_grace = table.duration("lookup_grace").unwrap_or(DEFAULT_LOOKUP_GRACE);
    if let Some(project) = &project
        && (project.is_empty() || !project.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        table.problem("project", "must be a project key such as \"OPS\" (letters, digits, _)");
    }
    if transition_on_resolve.as_deref().is_some_and(|t| t.trim().is_empty()) {
        table.problem("transition_on_resolve", "must name a transition, e.g. \"Done\"");
    }
    if !table.ok() {
        return None;
    }
    if let (Some(email), Some(token)) = (&email, &token) {
        table.derived_secret(super::basic_credentials(email, token));
    }
    Some(ConnectorConfig::new(JiraConfig {
        url: url?,
        email: email?,
        token: token?,
        project: project?,
        issue_type: issue_type?,
        transition_on_resolve,
        lookup_grace,
    }))
}

impl KindSettings for JiraConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::Jira::new(self.clone(), client)?))
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
