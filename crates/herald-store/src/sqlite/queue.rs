//! The writer thread's queue: three priorities, only new work is bounded.
//!
//! Outcome records, releases, claims, operator actions and pings are *urgent*: they
//! finish work that already exists, so they are never refused for load (their producers,
//! the lanes, are bounded by their slots) and the writer always takes them first. New
//! submits and updates are *new work*: their queue has a capacity, and a full queue
//! refuses at once with `StoreError::Overloaded` instead of growing memory and latency
//! without bound. Retention batches are *background*: taken when nothing else is queued,
//! one per transaction, so a submit waits behind at most one small batch; and, so that
//! sustained load cannot stop retention for good (the tables would grow without end),
//! also on their own after [`BACKGROUND_PATIENCE`] transactions passed them by.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::Job;
use crate::StoreError;

/// Which queue a write request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Priority {
    /// Work that finishes existing deliveries; never refused.
    Urgent,
    /// New broadcasts and updates; refused when the queue is full.
    New,
    /// Retention; runs only when the writer has nothing else to do.
    Background,
}

/// How many transactions may pass a waiting background job by before it gets one of its
/// own: under sustained load one prune batch per this many transactions.
pub(super) const BACKGROUND_PATIENCE: u32 = 16;

#[derive(Default)]
struct Lanes {
    /// Transactions taken while a background job waited.
    passed_by: u32,
    urgent: VecDeque<Job>,
    new: VecDeque<Job>,
    background: VecDeque<Job>,
    /// Set when the store is dropped or the writer stopped; no more jobs are taken.
    closed: bool,
}

/// The queue shared by the store (producers) and the writer thread (consumer).
pub(super) struct Queue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
    capacity: usize,
}

impl Queue {
    /// A queue whose new-work lane holds at most `capacity` requests.
    pub(super) fn new(capacity: usize) -> Queue {
        Queue {
            lanes: Mutex::new(Lanes::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lanes> {
        // A panic never happens while the lock is held (only queue operations run under
        // it), so a poisoned lock still holds consistent lanes.
        self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `job`, or refuses it: `Overloaded` when the new-work lane is full,
    /// `Unavailable` when the writer has stopped.
    pub(super) fn push(&self, priority: Priority, job: Job) -> Result<(), StoreError> {
        let mut lanes = self.lock();
        if lanes.closed {
            return Err(StoreError::Unavailable("the SQLite writer thread has stopped".into()));
        }
        match priority {
            Priority::Urgent => lanes.urgent.push_back(job),
            Priority::New if lanes.new.len() >= self.capacity => {
                return Err(StoreError::Overloaded { queued: lanes.new.len() });
            }
            Priority::New => lanes.new.push_back(job),
            Priority::Background => lanes.background.push_back(job),
        }
        drop(lanes);
        self.ready.notify_one();
        Ok(())
    }

    /// Waits for work and takes up to `max` jobs for one transaction, urgent first, then
    /// new work, and a background job only when nothing else was queued. `None` once the
    /// queue is closed and drained.
    pub(super) fn take(&self, max: usize) -> Option<Vec<Job>> {
        let mut lanes = self.lock();
        loop {
            let queued = lanes.urgent.len() + lanes.new.len() + lanes.background.len();
            if queued > 0 {
                break;
            }
            if lanes.closed {
                return None;
            }
            lanes = self.ready.wait(lanes).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if !lanes.background.is_empty() && lanes.passed_by >= BACKGROUND_PATIENCE {
            lanes.passed_by = 0;
            return Some(lanes.background.pop_front().into_iter().collect());
        }
        let mut batch = Vec::new();
        while batch.len() < max {
            match lanes.urgent.pop_front() {
                Some(job) => batch.push(job),
                None => break,
            }
        }
        while batch.len() < max {
            match lanes.new.pop_front() {
                Some(job) => batch.push(job),
                None => break,
            }
        }
        if batch.is_empty() {
            batch.extend(lanes.background.pop_front());
            lanes.passed_by = 0;
        } else if !lanes.background.is_empty() {
            lanes.passed_by += 1;
        }
        Some(batch)
    }

    /// Closes the queue: no new jobs are accepted; the writer drains what is queued.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Closes the queue and drops every queued job, whose callers then learn that the
    /// writer stopped before answering.
    pub(super) fn abandon(&self) {
        let mut lanes = self.lock();
        let dropped = std::mem::take(&mut *lanes);
        lanes.closed = true;
        drop(lanes);
        drop(dropped);
    }

    /// How many requests wait in each lane (urgent, new, background).
    pub(super) fn depth(&self) -> (usize, usize, usize) {
        let lanes = self.lock();
        (lanes.urgent.len(), lanes.new.len(), lanes.background.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn job() -> Job {
        Box::new(|_conn| Box::new(|_committed| {}))
    }

    /// Under load that never lets the queue run dry, a waiting retention batch still
    /// gets a transaction of its own every `BACKGROUND_PATIENCE` transactions.
    #[test]
    fn sustained_load_cannot_starve_background_work() {
        let queue = Queue::new(1024);
        queue.push(Priority::Background, job()).unwrap();
        let mut background_at = None;
        for n in 1..=100u32 {
            queue.push(Priority::Urgent, job()).unwrap();
            queue.push(Priority::New, job()).unwrap();
            let batch = queue.take(1024).unwrap();
            if queue.depth().2 == 0 && background_at.is_none() {
                assert_eq!(batch.len(), 1, "the background job shared its transaction");
                background_at = Some(n);
            }
        }
        assert_eq!(background_at, Some(BACKGROUND_PATIENCE + 1));
    }

    /// Background work waits while anything else is queued and goes first when idle.
    #[test]
    fn background_work_goes_when_the_queue_is_otherwise_empty() {
        let queue = Queue::new(1024);
        queue.push(Priority::New, job()).unwrap();
        queue.push(Priority::Background, job()).unwrap();
        assert_eq!(queue.take(1024).unwrap().len(), 1);
        assert_eq!(queue.depth(), (0, 0, 1));
        assert_eq!(queue.take(1024).unwrap().len(), 1);
        assert_eq!(queue.depth(), (0, 0, 0));
    }
}
