//! The `matrix` kind's settings: keys, defaults and validation.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::lookup::{DEFAULT_LOOKUP_AFTER, TXN_MEMORY};

use crate::settings::Table;
use crate::{Connector, ConnectorConfig, ConnectorError, KindSettings};

/// The kind's own keys (besides the common policy keys).
pub(super) const KEYS: &[&str] = &[
    "homeserver",
    "user",
    "password",
    "access_token",
    "device_id",
    "room",
    "update_mode",
    "lookup_after",
];

/// The device herald logs in as unless `device_id` says otherwise. Matrix scopes a
/// transaction id to one device, so a fixed device is what makes a resend harmless.
pub const DEFAULT_DEVICE_ID: &str = "HERALD";

/// How updates of a broadcast appear in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateMode {
    /// Each update is an `m.thread` reply to the original event.
    #[default]
    Thread,
    /// Each update replaces the original's content (`m.replace`).
    Edit,
}

/// How herald authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `m.login.password` as `user` with the fixed device; the token is cached and
    /// renewed when the server says it is no longer valid.
    Password(String),
    /// A given access token, used as is (its device is the one it was issued for).
    Token(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Auth::Password(_) => "Password([redacted])",
            Auth::Token(_) => "Token([redacted])",
        })
    }
}

/// A `matrix` destination's settings, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct MatrixConfig {
    /// The homeserver's base URL, without a trailing slash.
    pub homeserver: String,
    /// The full user id (`@herald:example.org`).
    pub user: String,
    /// Password or access token; never shown.
    pub auth: Auth,
    /// The device logged in with.
    pub device_id: String,
    /// A room id (`!…`) or alias (`#…`).
    pub room: String,
    /// Thread replies or edits.
    pub update_mode: UpdateMode,
    /// How old a delivery must be before an ambiguous attempt looks for its event
    /// instead of trusting the txnId (`lookup`).
    pub lookup_after: Duration,
}

impl MatrixConfig {
    /// Settings with the defaults for everything but the server, user, auth and room.
    pub fn new(
        homeserver: &str,
        user: impl Into<String>,
        auth: Auth,
        room: impl Into<String>,
    ) -> MatrixConfig {
        MatrixConfig {
            homeserver: homeserver.trim_end_matches('/').to_owned(),
            user: user.into(),
            auth,
            device_id: DEFAULT_DEVICE_ID.to_owned(),
            room: room.into(),
            update_mode: UpdateMode::Thread,
            lookup_after: DEFAULT_LOOKUP_AFTER,
        }
    }

    /// The same settings with `lookup_after` (tests force the look-up with zero).
    pub fn with_lookup_after(mut self, lookup_after: Duration) -> MatrixConfig {
        self.lookup_after = lookup_after;
        self
    }

    /// The same settings with `update_mode`.
    pub fn with_update_mode(mut self, mode: UpdateMode) -> MatrixConfig {
        self.update_mode = mode;
        self
    }

    /// The same settings with `device_id`.
    pub fn with_device_id(mut self, device_id: impl Into<String>) -> MatrixConfig {
        self.device_id = device_id.into();
        self
    }

    /// Problems that make the settings unusable, in words naming the key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match reqwest::Url::parse(&self.homeserver) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => problems.push(format!("`homeserver` {:?} is not an http(s) URL", self.homeserver)),
        }
        if let Some(problem) = room_problem(&self.room) {
            problems.push(format!("`room` {problem}"));
        }
        if matches!(self.auth, Auth::Password(_)) && user_problem(&self.user).is_some() {
            problems.push("`user` must be a full user id such as \"@herald:example.org\"".into());
        }
        if self.device_id.trim().is_empty() {
            problems.push("`device_id` is empty".to_owned());
        }
        if let Some(problem) = lookup_after_problem(self.lookup_after) {
            problems.push(format!("`lookup_after` {problem}"));
        }
        problems
    }
}

fn room_problem(room: &str) -> Option<&'static str> {
    let ok = (room.starts_with('!') || (room.starts_with('#') && room.contains(':')))
        && room.len() > 1
        && !room.chars().any(char::is_whitespace);
    (!ok)
        .then_some("must be a room id (\"!abcdef:example.org\") or an alias (\"#ops:example.org\")")
}

fn lookup_after_problem(lookup_after: Duration) -> Option<String> {
    (lookup_after > TXN_MEMORY).then(|| {
        format!(
            "is longer than the {} a homeserver (Synapse) remembers a transaction id: a \
             resend after that is a new event; leave it out for {}",
            crate::settings::format_duration(TXN_MEMORY),
            crate::settings::format_duration(DEFAULT_LOOKUP_AFTER)
        )
    })
}

fn user_problem(user: &str) -> Option<&'static str> {
    let ok = user.starts_with('@') && user.contains(':') && !user.chars().any(char::is_whitespace);
    (!ok).then_some("must be a full user id such as \"@herald:example.org\"")
}

impl fmt::Debug for MatrixConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatrixConfig")
            .field("homeserver", &self.homeserver)
            .field("user", &self.user)
            .field("auth", &self.auth)
            .field("device_id", &self.device_id)
            .field("room", &self.room)
            .field("update_mode", &self.update_mode)
            .field("lookup_after", &self.lookup_after)
            .finish()
    }
}

/// Reads a `[destinations.x]` table of kind `matrix`.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let homeserver =
        table.required_url("homeserver", "e.g. homeserver = \"https://matrix.example.org\"");
    let user = table.string("user");
    let password = table.secret("password");
    let token = table.secret("access_token");
    let device_id = table.string("device_id");
    let room = table.required_string("room", "e.g. room = \"!abcdef:example.org\"");
    let update_mode = match table.choice("update_mode", &["thread", "edit"]) {
        Some("edit") => UpdateMode::Edit,
        _ => UpdateMode::Thread,
    };
    let lookup_after = table.duration("lookup_after");
    if let Some(problem) = lookup_after.and_then(lookup_after_problem) {
        table.problem("lookup_after", problem);
    }
    if let Some(problem) = room.as_deref().and_then(room_problem) {
        table.problem("room", problem);
    }
    if let Some(problem) = user.as_deref().and_then(user_problem) {
        table.problem("user", problem);
    }
    if device_id.as_deref().is_some_and(|d| d.trim().is_empty()) {
        table.problem("device_id", "is empty; leave it out for \"HERALD\"");
    }
    let auth = match (password, token) {
        (Some(_), Some(_)) => {
            table.problem("access_token", "give either `password` or `access_token`, not both");
            None
        }
        (Some(password), None) => {
            if user.is_none() {
                table.require("user", "e.g. user = \"@herald:example.org\"");
            }
            Some(Auth::Password(password))
        }
        (None, Some(token)) => Some(Auth::Token(token)),
        (None, None) => {
            if !table.has("password") && !table.has("access_token") {
                table.require(
                    "password",
                    "e.g. password = \"${MATRIX_PASSWORD}\" (or access_token)",
                );
            }
            None
        }
    };
    if !table.ok() {
        return None;
    }
    let mut config = MatrixConfig::new(&homeserver?, user.unwrap_or_default(), auth?, room?)
        .with_update_mode(update_mode)
        .with_lookup_after(lookup_after.unwrap_or(DEFAULT_LOOKUP_AFTER));
    if let Some(device_id) = device_id {
        config = config.with_device_id(device_id);
    }
    Some(ConnectorConfig::new(config))
}

impl KindSettings for MatrixConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::Matrix::new(self.clone(), client)?))
    }

    fn servers(&self) -> Vec<crate::outbound::Server> {
        crate::outbound::Server::of_url("homeserver", &self.homeserver).into_iter().collect()
    }

    fn capabilities(&self) -> herald_core::Capabilities {
        super::CAPABILITIES
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
