//! Retention: deletes terminal broadcasts once they are older than the configured ages,
//! so the hot tables stay small after millions of broadcasts.
//!
//! A pass walks the broadcasts oldest first in small batches (`Store::prune`), each one
//! short writer transaction at the lowest priority, so a submit waits behind at most one
//! batch. A pass runs at start-up and then every `interval` on the engine's clock.

use std::sync::Arc;
use std::time::Duration;

use herald_core::Timestamp;
use herald_store::PruneRequest;

use crate::engine::Shared;

/// How long terminal broadcasts are kept, and how pruning is paced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Age after which a broadcast whose every delivery was delivered is deleted.
    pub delivered: Duration,
    /// Age after which a terminal broadcast with a failed or cancelled delivery is
    /// deleted.
    pub failed: Duration,
    /// Time between two passes.
    pub interval: Duration,
    /// The most broadcasts deleted per writer transaction.
    pub batch: usize,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            delivered: Duration::from_secs(7 * 24 * 3600),
            failed: Duration::from_secs(30 * 24 * 3600),
            interval: Duration::from_secs(600),
            batch: 100,
        }
    }
}

/// `now` minus `age`, saturating at the epoch.
fn before(now: Timestamp, age: Duration) -> Timestamp {
    let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    Timestamp(now.0.saturating_sub(age).max(0))
}

pub(crate) async fn run(shared: Arc<Shared>, retention: Retention) {
    loop {
        let started = shared.clock.now();
        let (mut broadcasts, mut deliveries, mut batches) = (0, 0, 0);
        let mut after = None;
        loop {
            if shared.stop.is_cancelled() {
                return;
            }
            let now = shared.clock.now();
            let request = PruneRequest {
                delivered_before: before(now, retention.delivered),
                failed_before: before(now, retention.failed),
                after,
                limit: retention.batch,
            };
            match shared.store.prune(request).await {
                Ok(pruned) => {
                    broadcasts += pruned.broadcasts;
                    deliveries += pruned.deliveries;
                    batches += 1;
                    match pruned.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Retention could not prune; it tries again at its next pass.");
                    break;
                }
            }
        }
        if broadcasts > 0 {
            tracing::info!(
                broadcasts,
                deliveries,
                batches,
                "Retention pruned terminal broadcasts."
            );
        }
        tokio::select! {
            _ = shared.clock.sleep_until(started.add(retention.interval)) => {}
            _ = shared.stop.cancelled() => return,
        }
    }
}
