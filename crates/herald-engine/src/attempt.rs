//! One attempt: send through the connector within the timeout, compute the next state
//! with the core, record it under the lease, announce the change.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use herald_connectors::{Report, Request, Thread};
use herald_core::{Outcome, delivery};
use herald_store::{AttemptRecord, Record, Work};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::engine::{Lane, RECENT_WINDOW, Shared};
use crate::metrics::OutcomeLabels;

pub(crate) async fn run(
    shared: Arc<Shared>,
    lane: Arc<Lane>,
    work: Work,
    permit: OwnedSemaphorePermit,
    jitter: f64,
    done: mpsc::UnboundedSender<()>,
) {
    lane.in_flight.fetch_add(1, Ordering::Relaxed);
    let destination = &lane.destination;
    let policy = &destination.settings.policy;
    let capabilities = destination.connector.capabilities();
    let started_at = shared.clock.now();

    let record = if let Some(expired) = delivery::expire(&work.progress, started_at) {
        // Nothing reaches the destination, so a half-open breaker may probe again.
        lane.health().circuit.on_abandoned();
        Record {
            delivery_id: work.delivery_id.clone(),
            lease_token: work.lease_token,
            progress: expired,
            attempt: None,
            now: started_at,
        }
    } else {
        let thread = match (work.seq, work.in_reply_to.as_deref()) {
            (0, _) | (_, None) => Thread::Original,
            (seq, Some(in_reply_to)) => Thread::Update {
                seq,
                in_reply_to,
                original_remote_ref: work.original_remote_ref.as_deref(),
            },
        };
        let number = work.progress.attempts + 1;
        let request = Request {
            delivery_id: &work.delivery_id,
            broadcast_id: &work.broadcast_id,
            destination: &destination.name,
            message: &work.message,
            thread,
            attempt: number,
            ambiguous: work.progress.ambiguous,
            now: started_at,
        };
        let clock_start = tokio::time::Instant::now();
        let report = tokio::select! {
            res = tokio::time::timeout(policy.timeout, destination.connector.send(&request)) => match res {
                Ok(report) => report,
                Err(_) => unknown(format!(
                    "no answer within {:?}; the destination may have received the message",
                    policy.timeout
                )),
            },
            _ = shared.abort.cancelled() => unknown("herald shut down while the attempt was in flight".into()),
        };
        let elapsed = clock_start.elapsed();
        let now = shared.clock.now();
        lane.metrics.attempt(report.outcome.class());
        lane.metrics.duration.observe(elapsed.as_secs_f64());
        note_health(&lane, &report.outcome, now);
        if let Some(reason) = report.outcome.reason() {
            tracing::info!(
                delivery_id = %work.delivery_id,
                destination = %destination.name,
                outcome = report.outcome.class(),
                attempt = number,
                reason,
                "Attempt did not deliver."
            );
        }
        let progress = delivery::next(
            &work.progress,
            report.outcome.clone(),
            policy,
            capabilities,
            now,
            jitter,
        );
        Record {
            delivery_id: work.delivery_id.clone(),
            lease_token: work.lease_token,
            progress,
            attempt: Some(AttemptRecord {
                number,
                started_at,
                duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                outcome: report.outcome.class().into(),
                status: report.status,
                detail: report.detail.or_else(|| report.outcome.reason().map(String::from)),
            }),
            now,
        }
    };

    // The destination is done with this attempt, so its slot is free for the next one
    // while the outcome is recorded: concurrency bounds requests to the destination, not
    // our bookkeeping. The delivery stays leased until recorded, so nobody can claim it
    // in between.
    lane.in_flight.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
    let _ = done.send(());

    match shared.store.record(vec![record]).await {
        Ok(changes) => {
            for change in &changes {
                if change.state.is_terminal() {
                    shared
                        .metrics
                        .deliveries
                        .get_or_create(&OutcomeLabels {
                            destination: change.destination.clone(),
                            outcome: change.state.as_str().into(),
                        })
                        .inc();
                }
            }
            shared.publish(&changes);
        }
        Err(error) => {
            // The lease will expire and recovery will treat the attempt as ambiguous,
            // which is safe: nothing is lost, at worst resent under the same key.
            tracing::error!(%error, delivery_id = %work.delivery_id, "Could not record an attempt's outcome.");
        }
    }
}

fn unknown(reason: String) -> Report {
    Report { outcome: Outcome::Unknown { reason }, status: None, detail: None }
}

/// Feeds the outcome to the lane's breaker and health summary.
fn note_health(lane: &Lane, outcome: &Outcome, now: herald_core::Timestamp) {
    let mut health = lane.health();
    health.throttle.on_outcome(outcome, now);
    health.circuit.on_result(outcome, now);
    if let Outcome::Throttled { .. } = outcome {
        // Throttling is the destination working as designed: neither success nor failure.
    } else {
        let failed = outcome.is_destination_failure();
        if health.recent.len() == RECENT_WINDOW {
            health.recent.pop_front();
        }
        health.recent.push_back(failed);
    }
    match outcome {
        Outcome::Delivered { .. } => health.last_success_at = Some(now),
        other => health.last_error = other.reason().map(String::from),
    }
}
