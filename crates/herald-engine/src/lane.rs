//! One destination's lane: claim due deliveries, respect the destination's limits,
//! dispatch attempts, sleep until there is something to do.
//!
//! A lane only ever touches its own destination's deliveries, so a slow, throttled or
//! dead destination ties up nothing but its own lane (fairness, invariant 7).

use std::sync::Arc;
use std::time::Duration;

use herald_core::{Pacer, Timestamp};
use herald_store::{ClaimRequest, Release, Work};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use crate::attempt;
use crate::engine::{Lane, Shared};
use crate::membership::Ownership;

/// What woke the lane up; the loop reacts the same way to each, by looking again.
enum Event {
    /// New or rescheduled work was announced.
    Wake,
    /// The earliest due time, the breaker's cool-down or the fallback poll arrived.
    Tick,
    /// An attempt finished and freed a slot.
    Done,
    /// The engine is stopping.
    Shutdown,
}

/// Back-off after the store failed, so a broken database is not hammered.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(1);

pub(crate) async fn run(shared: Arc<Shared>, lane: Arc<Lane>, seed: u64, tracker: TaskTracker) {
    let settings = &lane.destination.settings;
    // The rate limit runs on the engine's clock, so simulated time drives it in tests.
    let mut pacer = settings.rate_limit.map(Pacer::new);
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let mut rng = fastrand::Rng::with_seed(seed);
    let concurrency = settings.concurrency.max(1);
    // In a cluster: whether this node drove the lane at the last look, and until when a
    // lane just taken over rests (see below).
    let mut was_driven = false;
    let mut rest_until: Option<Timestamp> = None;

    loop {
        if shared.stop.is_cancelled() {
            break;
        }
        while done_rx.try_recv().is_ok() {}
        let now = shared.clock.now();
        let ownership = lane.ownership();
        if ownership == Ownership::Draining && slots.available_permits() == concurrency {
            lane.set_ownership(Ownership::Drained);
            shared.drained.notify_one();
        }
        let driven = ownership.permits(now);
        if driven && !was_driven && shared.membership.is_some() {
            // The node that drove the lane before may have spent the rate limit's whole
            // burst just before it let go; waiting one period keeps the limit for the
            // cluster across the handover.
            rest_until = settings.rate_limit.map(|rate| now.add(rate.per));
        }
        was_driven = driven;
        let resting = rest_until.is_some_and(|until| now < until);
        let (paused, circuit_permits, throttle_permits, hold_until) = {
            let mut health = lane.health();
            let circuit = health.circuit.permits(now);
            let throttle = health.throttle.permits(now);
            let hold_until = match (health.circuit.open_until(), health.throttle.wait_until(now)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            (health.paused, circuit, throttle, hold_until)
        };
        let free = slots.available_permits();
        let want = if paused || !driven || resting {
            0
        } else {
            free.min(shared.config.claim_batch)
                .min(circuit_permits.unwrap_or(usize::MAX))
                .min(throttle_permits.unwrap_or(usize::MAX))
        };

        let mut next_due: Option<Timestamp> = None;
        let mut more = false;
        if want > 0 {
            // From the claim until every claimed item is handed to its attempt (or the
            // lane sleeps for a rate-limit permit), the lane is busy for `Engine::idle`.
            let mut busy = Some(shared.activity.begin());
            // The lease must outlast the wait for rate-limit permits plus the attempt.
            let rate_wait = settings
                .rate_limit
                .map(|rate| rate.per.mul_f64(want as f64 / f64::from(rate.count.get())))
                .unwrap_or_default();
            let lease_until =
                now.add(settings.policy.timeout + shared.config.lease_grace + rate_wait);
            // Open or half-open: this claim is the breaker's probe.
            let probe = circuit_permits.is_some();
            let claim = ClaimRequest {
                destination: lane.destination.name.clone(),
                limit: want,
                now,
                lease_until,
                probe,
            };
            match shared.store.claim(claim).await {
                Ok(claimed) => {
                    next_due = claimed.next_due;
                    more = claimed.work.len() == want;
                    if !claimed.work.is_empty() {
                        let mut health = lane.health();
                        health.circuit.on_dispatch();
                        health.throttle.on_dispatch(now);
                    }
                    let mut work = claimed.work.into_iter();
                    while let Some(item) = work.next() {
                        let permit_at =
                            pacer.as_ref().map(|p| p.next_permit_at(shared.clock.now()));
                        if let Some(permit_at) = permit_at
                            && permit_at > shared.clock.now()
                        {
                            // Waiting for time to pass is not work in progress.
                            busy = None;
                            tokio::select! {
                                _ = shared.clock.sleep_until(permit_at) => {}
                                _ = shared.stop.cancelled() => {
                                    release(&shared, std::iter::once(item).chain(work)).await;
                                    break;
                                }
                            }
                            busy = Some(shared.activity.begin());
                        }
                        if lane.health().paused || !lane.ownership().permits(shared.clock.now()) {
                            // Paused while this batch waited for the rate limit (by an
                            // operator, or by an attempt whose destination is gone), or
                            // another node may drive the lane now: hand back what has not
                            // started rather than send it.
                            if probe {
                                lane.health().circuit.on_abandoned();
                            }
                            release(&shared, std::iter::once(item).chain(work)).await;
                            break;
                        }
                        if let (Some(pacer), Some(permit_at)) = (&mut pacer, permit_at) {
                            pacer.take(permit_at.max(shared.clock.now()));
                        }
                        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                            // Cannot happen: only this loop takes slots and it claimed at
                            // most as many as were free. Hand the work back if it does.
                            release(&shared, std::iter::once(item).chain(work)).await;
                            break;
                        };
                        let jitter = rng.f64();
                        shared.sending().insert(item.delivery_id.clone());
                        let attempt = attempt::run(
                            Arc::clone(&shared),
                            Arc::clone(&lane),
                            item,
                            permit,
                            jitter,
                            probe,
                            done_tx.clone(),
                        );
                        // Busy until the outcome is recorded and published.
                        let attempt_busy = shared.activity.begin();
                        tracker.spawn(async move {
                            attempt.await;
                            drop(attempt_busy);
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, destination = %lane.destination.name, "Claim failed; retrying shortly.");
                    next_due = Some(now.add(STORE_ERROR_PAUSE));
                }
            }
            drop(busy);
        }
        if more && slots.available_permits() > 0 {
            continue;
        }

        let saturated = slots.available_permits() == 0;
        // A finished attempt matters when it frees the only way forward: a slot of a
        // saturated lane, or the breaker's probe.
        let listen_done =
            saturated || circuit_permits.is_some() || ownership == Ownership::Draining;
        let poll = shared.config.fallback_poll.mul_f64(0.8 + 0.4 * rng.f64());
        let mut wake_at = now.add(poll);
        // Nothing becomes due before a saturated lane frees a slot, and a paused lane
        // waits for `resume`.
        if !saturated
            && !paused
            && let Some(due) = next_due
        {
            wake_at = wake_at.min(due.max(now));
        }
        if let Some(until) = hold_until {
            wake_at = wake_at.min(until);
        }
        if let Some(until) = rest_until.filter(|until| *until > now) {
            wake_at = wake_at.min(until);
        }
        let event = tokio::select! {
            _ = lane.wake.notified() => Event::Wake,
            _ = shared.clock.sleep_until(wake_at) => Event::Tick,
            Some(()) = done_rx.recv(), if listen_done => Event::Done,
            _ = shared.stop.cancelled() => Event::Shutdown,
        };
        match event {
            Event::Wake | Event::Tick | Event::Done => {}
            Event::Shutdown => break,
        }
    }
}

/// Hands claimed, never-started work back to `pending` and announces it.
async fn release(shared: &Shared, work: impl Iterator<Item = Work>) {
    let now = shared.clock.now();
    let releases: Vec<Release> = work
        .map(|item| Release { delivery_id: item.delivery_id, lease_token: item.lease_token, now })
        .collect();
    if releases.is_empty() {
        return;
    }
    match shared.store.release(releases).await {
        Ok(changes) => shared.publish(&changes),
        // The leases will expire and recovery will pick the deliveries up.
        Err(error) => tracing::warn!(%error, "Could not release claimed deliveries."),
    }
}
