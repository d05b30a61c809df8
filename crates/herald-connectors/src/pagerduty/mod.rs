//! The PagerDuty connector (`kind = "pagerduty"`): Events API v2, per DESTINATIONS.md §6.
//!
//! Every event of a broadcast goes to `POST {base_url}/v2/enqueue` with the same
//! `dedup_key` (`herald-<broadcast id>`): the original and each update that is not
//! resolved are `trigger`s (a repeated trigger adds a log entry to the open alert and
//! shows the new summary), an update with severity `resolved` is a `resolve`. PagerDuty
//! deduplicates by that key, so a resend after an ambiguous attempt cannot open a second
//! alert: nothing is looked up first. The routing key travels in the body and never
//! appears in a reason, a detail or `Debug`.

pub(crate) mod classify;
mod config;
pub(crate) mod render;

#[cfg(test)]
mod tests;

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use herald_core::{Capabilities, RateLimit};

pub use config::{DEFAULT_BASE_URL, KEYS, PagerDutyConfig};

use crate::{Connector, ConnectorError, Report, Request, Thread};

/// What PagerDuty allows: deduplication by `dedup_key`, updates as log entries of the
/// same alert (and `resolve`), no edit and no look-up without a REST token.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: true, lookup: false, edit: false, thread_reply: true };

/// 120 events a minute: PagerDuty's documented limit per integration (routing) key.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    count: match NonZeroU32::new(120) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    },
    per: Duration::from_secs(60),
};

/// The `pagerduty` kind.
pub const KIND: crate::Kind = crate::Kind {
    name: "pagerduty",
    keys: KEYS,
    parse: config::parse,
    defaults: crate::Defaults { rate_limit: Some(DEFAULT_RATE_LIMIT), concurrency: None },
    capabilities: CAPABILITIES,
};

/// The most bytes of an answer herald reads (PagerDuty's answers are a few hundred).
const BODY_LIMIT: usize = 64 * 1024;

/// A PagerDuty destination.
pub struct PagerDuty {
    config: PagerDutyConfig,
    /// `{base_url}/v2/enqueue`.
    enqueue: String,
    client: crate::http::Client,
}

impl std::fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDuty").field("config", &self.config).finish_non_exhaustive()
    }
}

impl PagerDuty {
    /// Validates the settings.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` for an unusable `base_url`; never echoes the key.
    pub fn new(
        config: PagerDutyConfig,
        client: crate::http::Client,
    ) -> Result<PagerDuty, ConnectorError> {
        let base =
            crate::http::api_base(&config.base_url, "base_url", "https://events.pagerduty.com")?;
        let enqueue = format!("{base}/v2/enqueue");
        Ok(PagerDuty { config, enqueue, client })
    }
}

#[async_trait]
impl Connector for PagerDuty {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        let seq = match request.thread {
            Thread::Original => 0,
            Thread::Update { seq, .. } => seq,
        };
        let event = render::event(
            request.message,
            &self.config.routing_key,
            request.broadcast_id,
            request.delivery_id,
            seq,
        );
        let dedup_key = render::dedup_key(request.broadcast_id);
        let post = self.client.post(&self.enqueue).json(&event);
        let read_within = Some(crate::http::EXCERPT_READ_TIMEOUT);
        match crate::http::exchange(post, request.now, BODY_LIMIT, read_within).await {
            Ok(answer) => classify::answered(
                answer.status,
                answer.retry_after,
                &answer.body,
                &dedup_key,
                &self.config.routing_key,
            ),
            Err(error) => classify::unanswered(&error),
        }
    }
}
