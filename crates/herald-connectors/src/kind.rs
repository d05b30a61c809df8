//! What a destination kind declares to the rest of herald ([`Kind`]: its name, its own
//! keys, how to parse them, its policy defaults and capabilities) and the configured
//! settings of one destination ([`ConnectorConfig`]), whatever its kind.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use herald_core::{Capabilities, RateLimit};

use crate::http::Client;
use crate::outbound::Server;
use crate::settings::Table;
use crate::{Connector, ConnectorError};

/// A destination kind, registered in [`crate::KINDS`].
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The `kind = "..."` name (`webhook`).
    pub name: &'static str,
    /// The kind's own keys, besides the common policy keys (for did-you-mean).
    pub keys: &'static [&'static str],
    /// Reads the kind's keys from a destination table; `None` once any problem was
    /// reported. Must read every key it knows before returning: unread keys are
    /// reported as unknown settings.
    pub parse: fn(&mut Table<'_>) -> Option<ConnectorConfig>,
    /// Policy defaults that fit the kind's API, used where the operator set nothing.
    pub defaults: Defaults,
    /// What the kind's API allows.
    pub capabilities: Capabilities,
}

/// A kind's policy defaults; `None` keeps herald's general default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Defaults {
    /// Attempts started per period (Slack: 1 message/s per channel).
    pub rate_limit: Option<RateLimit>,
    /// Attempts in flight at once.
    pub concurrency: Option<usize>,
}

impl Defaults {
    /// No kind-specific defaults.
    pub const NONE: Defaults = Defaults { rate_limit: None, concurrency: None };
}

/// A kind's validated settings (secrets resolved), ready to build its connector.
///
/// `Debug` must redact secrets, tokens and URL paths and queries.
pub trait KindSettings: fmt::Debug + Send + Sync + 'static {
    /// The `kind` name (`webhook`).
    fn kind(&self) -> &'static str;
    /// Builds the connector, sharing `client` (one connection pool for all, and the
    /// outbound policy every connection must pass).
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` when a setting cannot be used.
    fn build(&self, client: Client) -> Result<Arc<dyn Connector>, ConnectorError>;
    /// Every server the connector may connect to, with the key that configures it
    /// (defaults included), so `check-config` can vet them against the outbound policy.
    fn servers(&self) -> Vec<Server>;
    /// What the destination allows, known before it is built (usually the kind's
    /// `CAPABILITIES`).
    fn capabilities(&self) -> Capabilities;
    /// `self`, for [`ConnectorConfig::downcast_ref`].
    fn as_any(&self) -> &dyn Any;
}

/// One destination's kind and settings, as configured; cheap to clone.
#[derive(Clone)]
pub struct ConnectorConfig(Arc<dyn KindSettings>);

impl ConnectorConfig {
    /// Wraps a kind's settings.
    pub fn new(settings: impl KindSettings) -> ConnectorConfig {
        ConnectorConfig(Arc::new(settings))
    }

    /// The `kind` name (`webhook`).
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }

    /// The capabilities the kind's connector declares, known before it is built (so a
    /// configuration check can reason about them).
    pub fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    /// Builds the connector, sharing `client` (one connection pool for all, and the
    /// outbound policy every connection must pass).
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` when a setting cannot be used.
    pub fn build(&self, client: Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        self.0.build(client)
    }

    /// Every server the destination connects to, with the key that configures it.
    pub fn servers(&self) -> Vec<Server> {
        self.0.servers()
    }

    /// The kind's own settings type, if it is `T`.
    pub fn downcast_ref<T: KindSettings>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref::<T>()
    }
}

/// The kind's own `Debug`, which redacts secrets.
impl fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
