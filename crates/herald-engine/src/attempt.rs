//! One attempt: send through the connector within the timeout, compute the next state
//! with the core, record it under the lease, announce the change.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt as _;
use herald_connectors::redact::Redactor;
use herald_connectors::{Report, Request, Thread};

use herald_core::{Outcome, Timestamp, delivery};
use herald_store::{AttemptRecord, Record, Release, Work};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::engine::{Lane, RECENT_WINDOW, Shared};

/// Takes a delivery off the "being sent" list when its attempt ends, however it ends.
struct Sending<'a> {
    shared: &'a Shared,
    delivery_id: &'a str,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.shared.sending().remove(self.delivery_id);
    }
}

/// The attempt's deadline: its timeout, cut short so that it ends well inside its lease
/// (half the lease grace is kept to record the outcome). An attempt never runs past its
/// lease, so recovery (here or on another node) never takes a delivery still being sent.
pub fn deadline(
    started_at: Timestamp,
    timeout: Duration,
    lease_expires_at: Timestamp,
    lease_grace: Duration,
) -> Timestamp {
    let by_lease = Timestamp(lease_expires_at.0.saturating_sub(millis(lease_grace) / 2));
    started_at.add(timeout).min(by_lease)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    lane: Arc<Lane>,
    work: Work,
    permit: OwnedSemaphorePermit,
    jitter: f64,
    probe: bool,
    done: mpsc::UnboundedSender<()>,
) {
    let _sending = Sending { shared: &shared, delivery_id: &work.delivery_id };
    let destination = &lane.destination;
    let policy = &destination.settings.policy;
    let capabilities = destination.capabilities();
    let started_at = shared.clock.now();
    let deadline =
        deadline(started_at, policy.timeout, work.lease_expires_at, shared.config.lease_grace);
    if deadline <= started_at {
        // The lease is (nearly) gone before anything was sent: hand the delivery back
        // untouched rather than start an attempt that could outlive it.
        tracing::warn!(delivery_id = %work.delivery_id, "The lease ran out before the attempt could start; handing the delivery back.");
        // Nothing reaches the destination, so a half-open breaker may probe again.
        lane.health().circuit.on_abandoned();
        drop(permit);
        let _ = done.send(());
        let release = Release {
            delivery_id: work.delivery_id.clone(),
            lease_token: work.lease_token,
            now: started_at,
        };
        match shared.store.release(vec![release]).await {
            Ok(changes) => shared.publish(&changes),
            Err(error) => {
                tracing::warn!(%error, "Could not hand back a delivery; its lease will expire.")
            }
        }
        return;
    }
    lane.in_flight.fetch_add(1, Ordering::Relaxed);

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
        let thread = match (work.seq, &work.original) {
            (0, _) | (_, None) => Thread::Original,
            (seq, Some(original)) => Thread::Update {
                seq,
                in_reply_to: &original.delivery_id,
                original_remote_ref: original.remote_ref.as_deref(),
                original: &original.message,
                original_at: original.at,
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
            created_at: work.created_at,
            ambiguous_at: work.ambiguous_at,
        };
        // One span per send, for trace export; the broadcast id ties it to the submit.
        // Numbers as i64: the OpenTelemetry bridge exports unsigned ones as strings.
        let span = tracing::info_span!(
            "herald.attempt",
            otel.kind = "client",
            otel.status_code = Empty,
            otel.status_description = Empty,
            herald.broadcast_id = %work.broadcast_id,
            herald.delivery_id = %work.delivery_id,
            herald.destination = %destination.name,
            herald.kind = destination.connector.kind(),
            herald.attempt = i64::from(number),
            herald.probe = probe,
            herald.outcome = Empty,
            http.response.status_code = Empty,
        );
        let clock_start = tokio::time::Instant::now();
        // A connector must never panic; if one does, the attempt ends ambiguously (it may
        // have sent) instead of leaving the delivery leased until recovery, and the panic's
        // text, which may quote anything, goes through the redactor like every reason.
        let send = AssertUnwindSafe(destination.connector.send(&request)).catch_unwind();
        let report = async {
            tokio::select! {
                sent = send => sent.unwrap_or_else(|panic| unknown(format!(
                    "the {} connector failed unexpectedly (a herald bug; please report it): {}; \
                     the destination may have received the message",
                    destination.connector.kind(),
                    panic_text(panic.as_ref())
                ))),
                () = shared.clock.sleep_until(deadline) => unknown(format!(
                    "no answer within {}; the destination may have received the message",
                    humantime(deadline.since(started_at))
                )),
                () = shared.abort.cancelled() => unknown("herald shut down while the attempt was in flight".into()),
            }
        }
        .instrument(span.clone())
        .await;
        let report = scrub(report, &shared.config.redactor);
        span.record("herald.outcome", report.outcome.class());
        if let Some(status) = report.status {
            span.record("http.response.status_code", i64::from(status));
        }
        if let Some(reason) = report.outcome.reason() {
            span.record("otel.status_code", "error");
            span.record("otel.status_description", reason);
        }
        let elapsed = clock_start.elapsed();
        let now = shared.clock.now();
        lane.metrics.attempt(report.outcome.class());
        lane.metrics.duration.observe(elapsed.as_secs_f64());
        note_health(&lane, &report.outcome, now);
        // Paused before the slot is freed below, so the lane claims nothing more for a
        // destination that is gone; deliveries already in flight end as they end.
        if let Some(reason) = &report.pause
            && lane.pause_for(reason)
        {
            tracing::warn!(
                destination = %destination.name,
                delivery_id = %work.delivery_id,
                reason = %reason,
                "The destination is unusable until an operator acts; pausing it. Its deliveries wait until it is resumed."
            );
            // Every node must stop, and the next beat must not read "not paused" back.
            if let Some(membership) = &shared.membership
                && let Err(error) = membership
                    .cluster
                    .set_paused(&destination.name, true, Some(reason.clone()))
                    .await
            {
                tracing::warn!(%error, destination = %destination.name, "Could not pause the destination for the whole cluster; other nodes pause it when they meet the same answer.");
            }
        }
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
        // A probe is the breaker's request, not the delivery's: if it fails, the
        // delivery has not used up an attempt (deliveries wait without burning attempts
        // while the circuit is open).
        let next = if probe { delivery::next_after_probe } else { delivery::next };
        let progress =
            next(&work.progress, report.outcome.clone(), policy, capabilities, now, jitter);
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
                if change.delivery_id == work.delivery_id
                    && change.state == herald_core::State::Delivered
                {
                    let latency = shared.clock.now().since(work.created_at);
                    lane.metrics.latency.observe(latency.as_secs_f64());
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

/// `1.5s`, `250ms`: how a timeout reads in an error.
fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// `report` with every configured secret removed from what it says.
fn scrub(mut report: Report, redactor: &Redactor) -> Report {
    if redactor.is_empty() {
        return report;
    }
    for text in [report.outcome.reason_mut(), report.detail.as_mut(), report.pause.as_mut()]
        .into_iter()
        .flatten()
    {
        redactor.scrub(text);
    }
    report
}

/// The message a panic carried, if it is text.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

fn unknown(reason: String) -> Report {
    Report { outcome: Outcome::Unknown { reason }, status: None, detail: None, pause: None }
}

/// Feeds the outcome to the lane's breaker and health summary.
fn note_health(lane: &Lane, outcome: &Outcome, now: herald_core::Timestamp) {
    let mut health = lane.health();
    health.throttle.on_outcome(outcome, now);
    health.circuit.on_result(outcome, now);
    if !outcome.consumes_attempt() {
        // Throttling is the destination working as designed, and a look-up that must wait
        // says nothing about its health: neither success nor failure.
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
