//! Lease recovery: an attempt whose lease expired (the worker crashed, stalled or lost
//! the lease) is recorded as `Unknown` (invariant 3), and the core decides what follows.

use std::sync::Arc;

use herald_core::{Capabilities, Outcome, RetryPolicy, delivery};
use herald_store::{AttemptRecord, Record};

use crate::engine::Shared;

/// Expired leases handled per round trip.
const BATCH: usize = 256;

pub(crate) async fn run(shared: Arc<Shared>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    loop {
        let now = shared.clock.now();
        let lease_until = now.add(shared.config.lease_grace);
        let mut full = false;
        let exclude: Vec<String> = shared.sending().iter().cloned().collect();
        match shared.store.claim_expired_except(now, lease_until, BATCH, exclude).await {
            Ok(work) => {
                full = work.len() == BATCH;
                let records: Vec<Record> = work
                    .into_iter()
                    .map(|item| {
                        let lane = shared.lanes.get(&item.destination);
                        let default_policy = RetryPolicy::default();
                        let policy = lane.map_or(&default_policy, |lane| &lane.destination.settings.policy);
                        let capabilities =
                            lane.map_or(Capabilities::default(), |lane| lane.destination.capabilities());
                        let reason = "the attempt was interrupted before its answer was recorded \
                                      (herald stopped or lost the lease); the destination may have the message";
                        let outcome = Outcome::Unknown { reason: reason.into() };
                        let progress = delivery::next(&item.progress, outcome, policy, capabilities, now, rng.f64());
                        tracing::warn!(delivery_id = %item.delivery_id, destination = %item.destination, "Recovered an expired lease as an ambiguous attempt.");
                        Record {
                            delivery_id: item.delivery_id,
                            lease_token: item.lease_token,
                            progress,
                            attempt: Some(AttemptRecord {
                                number: item.progress.attempts + 1,
                                started_at: now,
                                duration_ms: 0,
                                outcome: "unknown".into(),
                                status: None,
                                detail: Some(reason.into()),
                            }),
                            now,
                        }
                    })
                    .collect();
                if !records.is_empty() {
                    match shared.store.record(records).await {
                        Ok(changes) => shared.publish(&changes),
                        Err(error) => tracing::error!(%error, "Could not record recovered leases."),
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "Could not look for expired leases."),
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = shared.clock.sleep_until(now.add(shared.config.recovery_interval)) => {}
            _ = shared.stop.cancelled() => break,
        }
    }
}
