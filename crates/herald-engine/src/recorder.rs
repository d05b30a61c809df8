//! Group commit for attempt outcomes: the records that finish while one `record` call
//! is on its way to the store go together in the next one.
//!
//! Each attempt used to record alone (`store.record(vec![record])`), so every delivery
//! paid its own writer job, answer channel and savepoint. Here the first attempt to
//! finish while no record call is under way becomes the *leader*: it sends its record
//! at once (an idle store delays nothing), and while that call waits for its commit the
//! attempts finishing meanwhile queue theirs; when the call returns, the leader sends
//! everything queued as one call, and so on until the queue is empty. So the batch grows
//! with the store's latency, and only then.
//!
//! A batch fails as a whole. Each attempt then learns that its outcome was not recorded,
//! as when it recorded alone: its lease expires and recovery treats the attempt as
//! ambiguous (`Unknown`), which the idempotency key resolves. Nothing is lost, at worst
//! resent.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use herald_store::{Record, StoreError};
use tokio::sync::oneshot;

use crate::engine::Shared;

/// The most records one call carries; a longer queue goes in several calls, so one
/// transaction stays short.
const MAX_BATCH: usize = 256;

/// Whether the record's delivery was delivered by it (for the latency metric), or why
/// it was not recorded.
type Answer = Result<bool, StoreError>;

/// The records waiting for the next call, and whether a leader is sending one.
#[derive(Default)]
pub(crate) struct Recorder {
    state: Mutex<Queued>,
}

#[derive(Default)]
struct Queued {
    records: Vec<(Record, oneshot::Sender<Answer>)>,
    leading: bool,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Queued> {
        // Only pushes and takes run under the lock, which cannot panic halfway.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Records `record` with the outcomes of the attempts that finish meanwhile, publishes
/// the changes, and answers whether the record delivered its delivery.
///
/// # Errors
/// The store's error when the call carrying `record` failed: nothing in it was recorded.
pub(crate) async fn record(shared: &Shared, record: Record) -> Answer {
    let (tx, rx) = oneshot::channel();
    let lead = {
        let mut queued = shared.recorder.lock();
        queued.records.push((record, tx));
        !std::mem::replace(&mut queued.leading, true)
    };
    if lead {
        lead_until_empty(shared).await;
    }
    rx.await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable("the outcome was not recorded: its batch was dropped".into()))
    })
}

/// Sends what is queued, batch after batch, until nothing is.
async fn lead_until_empty(shared: &Shared) {
    // If this future is dropped mid-way (the runtime shuts down), the guard gives up the
    // lead and drops what is queued: those attempts learn their outcome was not recorded
    // rather than wait for a leader that is gone.
    let mut guard = Leading { recorder: &shared.recorder, done: false };
    loop {
        let batch: Vec<_> = {
            let mut queued = shared.recorder.lock();
            if queued.records.is_empty() {
                queued.leading = false;
                guard.done = true;
                return;
            }
            let take = queued.records.len().min(MAX_BATCH);
            queued.records.drain(..take).collect()
        };
        send(shared, batch).await;
    }
}

/// One `record` call for `batch`; every sender gets its answer.
async fn send(shared: &Shared, batch: Vec<(Record, oneshot::Sender<Answer>)>) {
    let (records, answers): (Vec<Record>, Vec<_>) = batch
        .into_iter()
        .map(|(record, tx)| {
            let id = record.delivery_id.clone();
            (record, (id, tx))
        })
        .unzip();
    match shared.store.record(records).await {
        Ok(changes) => {
            let delivered: HashSet<&str> = changes
                .iter()
                .filter(|change| change.state == herald_core::State::Delivered)
                .map(|change| change.delivery_id.as_str())
                .collect();
            for (id, tx) in answers {
                let _ = tx.send(Ok(delivered.contains(id.as_str())));
            }
            shared.publish(&changes);
        }
        Err(error) => {
            for (_, tx) in answers {
                let _ = tx.send(Err(error.clone()));
            }
        }
    }
}

/// Gives up the lead if the leader stops before the queue is empty.
struct Leading<'a> {
    recorder: &'a Recorder,
    done: bool,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let dropped = {
            let mut queued = self.recorder.lock();
            queued.leading = false;
            std::mem::take(&mut queued.records)
        };
        drop(dropped);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    // The batching is exercised end to end by the engine's tests (every attempt records
    // through it); these look at the queue itself.
    use super::*;

    /// A leader that stops mid-way leaves neither the lead taken nor waiters hanging.
    #[test]
    fn a_dropped_leader_frees_the_lead_and_fails_the_queued() {
        let recorder = Recorder::default();
        let (tx, mut rx) = oneshot::channel::<Answer>();
        {
            let mut queued = recorder.lock();
            queued.leading = true;
            queued.records.push((record("d1"), tx));
        }
        drop(Leading { recorder: &recorder, done: false });
        assert!(!recorder.lock().leading);
        assert!(recorder.lock().records.is_empty());
        assert!(rx.try_recv().is_err(), "a queued record was neither sent nor failed");
    }

    fn record(id: &str) -> Record {
        Record {
            delivery_id: id.into(),
            lease_token: 1,
            progress: herald_core::Progress::new(
                herald_core::Timestamp(0),
                herald_core::Timestamp(1),
                3,
                false,
            ),
            attempt: None,
            now: herald_core::Timestamp(0),
        }
    }
}
