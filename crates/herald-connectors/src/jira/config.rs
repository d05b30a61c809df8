//! The `jira` kind's keys, defaults and validation.

use std::fmt;
use std::time::Duration;

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
