//! A `teams-graph` destination's settings. The refresh token (and a client secret, for a
//! confidential app) are secrets: `${ENV}` or `file:`, never in `Debug`, errors or logs.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::ConnectorError;
use crate::settings::Table;
use crate::teams_workflow::config::{check_url, origin};
use crate::{Connector, ConnectorConfig, KindSettings};

/// The kind's own keys.
pub const KEYS: &[&str] = &[
    "tenant",
    "client_id",
    "client_secret",
    "refresh_token",
    "team_id",
    "channel_id",
    "base_url",
    "login_url",
    "scope",
];

/// Graph's v1.0 endpoint.
pub const DEFAULT_BASE_URL: &str = "https://graph.microsoft.com/v1.0";

/// The Microsoft identity platform (global cloud).
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";

/// What the refresh grant asks for: every Graph permission the service user consented
/// to (`.default`), plus `offline_access` so the answer carries a new refresh token.
pub const DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default offline_access";

/// Settings of a `kind = "teams-graph"` destination.
#[derive(Clone, PartialEq, Eq)]
pub struct TeamsGraphConfig {
    /// The Entra ID tenant (id or domain).
    pub tenant: String,
    /// The app registration's client id.
    pub client_id: String,
    /// The app's client secret, for a confidential client; `None` for a public client.
    pub client_secret: Option<String>,
    /// The service user's refresh token.
    pub refresh_token: String,
    /// The team (group) id.
    pub team_id: String,
    /// The channel id (`19:…@thread.tacv2`).
    pub channel_id: String,
    /// Graph's base URL, up to and including the version.
    pub base_url: String,
    /// The identity platform's URL; the token endpoint is `{login_url}/{tenant}/oauth2/v2.0/token`.
    pub login_url: String,
    /// The scopes asked for when refreshing.
    pub scope: String,
}

impl fmt::Debug for TeamsGraphConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsGraphConfig")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("refresh_token", &"<redacted>")
            .field("team_id", &self.team_id)
            .field("channel_id", &self.channel_id)
            .field("base_url", &origin(&self.base_url))
            .field("login_url", &origin(&self.login_url))
            .field("scope", &self.scope)
            .finish()
    }
}

/// Reads the kind's keys.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let tenant = table.required_string("tenant", "e.g. tenant = \"contoso.onmicrosoft.com\"");
    let client_id = table.required_string("client_id", "the app registration's id");
    let client_secret = table.secret("client_secret");
    let refresh_token =
        table.required_secret("refresh_token", "e.g. refresh_token = \"${TEAMS_REFRESH_TOKEN}\"");
    let team_id = table.required_string("team_id", "the team's (group's) id");
    let channel_id = table.required_string("channel_id", "e.g. channel_id = \"19:…@thread.tacv2\"");
    let base_url = table.url("base_url");
    let login_url = table.url("login_url");
    let scope = table.string("scope");
    if !table.ok() {
        return None;
    }
    Some(ConnectorConfig::new(TeamsGraphConfig {
        tenant: tenant?,
        client_id: client_id?,
        client_secret,
        refresh_token: refresh_token?,
        team_id: team_id?,
        channel_id: channel_id?,
        base_url: base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
        login_url: login_url.unwrap_or_else(|| DEFAULT_LOGIN_URL.to_owned()),
        scope: scope.unwrap_or_else(|| DEFAULT_SCOPE.to_owned()),
    }))
}

/// Checks the settings a connector needs beyond their presence.
pub(super) fn validate(config: &TeamsGraphConfig) -> Result<(), ConnectorError> {
    for (key, url) in [("base_url", &config.base_url), ("login_url", &config.login_url)] {
        check_url(url).map_err(|why| ConnectorError::InvalidSetting(format!("`{key}` {why}")))?;
    }
    for (key, value) in [
        ("tenant", &config.tenant),
        ("client_id", &config.client_id),
        ("refresh_token", &config.refresh_token),
        ("team_id", &config.team_id),
        ("channel_id", &config.channel_id),
    ] {
        if value.trim().is_empty() {
            return Err(ConnectorError::InvalidSetting(format!("`{key}` is empty")));
        }
    }
    Ok(())
}

impl KindSettings for TeamsGraphConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::TeamsGraph::new(self.clone(), client)?))
    }

    fn servers(&self) -> Vec<crate::outbound::Server> {
        [("base_url", &self.base_url), ("login_url", &self.login_url)]
            .into_iter()
            .filter_map(|(key, url)| crate::outbound::Server::of_url(key, url))
            .collect()
    }

    fn capabilities(&self) -> herald_core::Capabilities {
        super::CAPABILITIES
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
