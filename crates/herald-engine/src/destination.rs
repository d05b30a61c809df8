//! A configured destination as the engine sees it: a name, a connector, lane settings.

use std::sync::Arc;

use herald_connectors::Connector;
use herald_core::{Capabilities, CircuitPolicy, RateLimit, RetryPolicy};

/// How a destination's lane runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneSettings {
    /// Retries, backoff, age, timeout, ambiguity policy.
    pub policy: RetryPolicy,
    /// Attempts started per period; `None` for unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// When to stop sending to a failing destination.
    pub circuit: CircuitPolicy,
    /// Whether the destination drops a second copy with the same idempotency key;
    /// `None` trusts the connector's capability. The operator knows their receiver.
    pub dedupe: Option<bool>,
}

impl Default for LaneSettings {
    fn default() -> LaneSettings {
        LaneSettings {
            policy: RetryPolicy::default(),
            rate_limit: None,
            concurrency: 4,
            circuit: CircuitPolicy::default(),
            dedupe: None,
        }
    }
}

/// A destination ready to receive deliveries.
#[derive(Clone)]
pub struct Destination {
    /// The configured name (`slack-incidents`).
    pub name: String,
    /// The kind's implementation.
    pub connector: Arc<dyn Connector>,
    /// How its lane runs.
    pub settings: LaneSettings,
}

impl Destination {
    /// What the destination lets herald do: the connector's capabilities, with
    /// deduplication as configured where the operator said so.
    pub fn capabilities(&self) -> Capabilities {
        let mut res = self.connector.capabilities();
        if let Some(dedupe) = self.settings.dedupe {
            res.dedupe_by_key = dedupe;
        }
        res
    }
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.name)
            .field("kind", &self.connector.kind())
            .field("settings", &self.settings)
            .finish()
    }
}
