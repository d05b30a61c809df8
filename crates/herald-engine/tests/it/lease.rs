//! Leases that fence in flight, not only in the store (invariant 2): an attempt never
//! runs past its lease, a lagging writer cannot shorten it, recovery never takes what
//! this process is still sending or recording, and a `Delivered` answer that arrives
//! after the lease was lost still counts. Every test runs on the fake clock; the "slow
//! writer" is a store wrapper that moves the clock or holds a write back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use herald_core::{RetryPolicy, State, Timestamp};
use herald_engine::{Clock, EngineConfig, FakeClock};
use herald_store::*;
use tokio::sync::{Notify, Semaphore};

use crate::harness::*;

/// A store that plays a lagging writer: a claim commits `claim_lag` after it was asked
/// for (the fake clock moves on meanwhile), the first `late_answers` records commit at
/// once but answer only after `release_answers`, the next `held_records` records wait
/// for `release_records`, and every recovery scan's result is kept for the test to see.
struct Lagging {
    inner: Arc<dyn Store>,
    clock: FakeClock,
    /// The lag of the next claim; taken by it.
    claim_lag: Mutex<Option<Duration>>,
    held_records: Mutex<usize>,
    records_gate: Semaphore,
    late_answers: Mutex<usize>,
    answers_gate: Semaphore,
    scans: Mutex<Vec<Vec<String>>>,
    scanned: Notify,
}

impl Lagging {
    fn new(inner: Arc<dyn Store>, clock: FakeClock) -> Lagging {
        Lagging {
            inner,
            clock,
            claim_lag: Mutex::new(None),
            held_records: Mutex::new(0),
            records_gate: Semaphore::new(0),
            late_answers: Mutex::new(0),
            answers_gate: Semaphore::new(0),
            scans: Mutex::new(Vec::new()),
            scanned: Notify::new(),
        }
    }

    fn release_records(&self) {
        self.records_gate.add_permits(1);
    }

    fn release_answers(&self) {
        self.answers_gate.add_permits(1);
    }

    /// Waits for a recovery scan that started at or after `since` and returns what it
    /// took.
    async fn scan_after(&self, since: usize) -> Vec<String> {
        loop {
            let notified = self.scanned.notified();
            if let Some(scan) = self.scans.lock().unwrap().get(since) {
                return scan.clone();
            }
            tokio::time::timeout(Duration::from_secs(20), notified)
                .await
                .expect("recovery never scanned for expired leases");
        }
    }

    fn scans(&self) -> usize {
        self.scans.lock().unwrap().len()
    }
}

#[async_trait]
impl Store for Lagging {
    async fn submit(&self, new: NewBroadcast) -> Result<Submitted, StoreError> {
        self.inner.submit(new).await
    }
    async fn add_update(&self, update: NewUpdate) -> Result<UpdateAdded, StoreError> {
        self.inner.add_update(update).await
    }
    async fn claim(&self, claim: ClaimRequest) -> Result<Claimed, StoreError> {
        let lag = self.claim_lag.lock().unwrap().take();
        if let Some(lag) = lag {
            self.clock.advance(lag);
        }
        self.inner.claim(claim).await
    }
    async fn claim_expired_except(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        exclude: Vec<String>,
    ) -> Result<Vec<Work>, StoreError> {
        let res = self.inner.claim_expired_except(now, lease_until, limit, exclude).await;
        if let Ok(work) = &res {
            self.scans.lock().unwrap().push(work.iter().map(|w| w.delivery_id.clone()).collect());
            self.scanned.notify_waiters();
        }
        res
    }
    async fn record(&self, records: Vec<Record>) -> Result<Vec<Change>, StoreError> {
        let answer_late = {
            let mut late = self.late_answers.lock().unwrap();
            let answer_late = *late > 0;
            *late = late.saturating_sub(1);
            answer_late
        };
        if answer_late {
            let res = self.inner.record(records).await;
            self.answers_gate.acquire().await.unwrap().forget();
            return res;
        }
        let hold = {
            let mut held = self.held_records.lock().unwrap();
            let hold = *held > 0;
            *held = held.saturating_sub(1);
            hold
        };
        if hold {
            self.records_gate.acquire().await.unwrap().forget();
        }
        self.inner.record(records).await
    }
    async fn release(&self, releases: Vec<Release>) -> Result<Vec<Change>, StoreError> {
        self.inner.release(releases).await
    }
    async fn retry_delivery(
        &self,
        id: &str,
        policy: &RetryPolicy,
        now: Timestamp,
    ) -> Result<Vec<Change>, StoreError> {
        self.inner.retry_delivery(id, policy, now).await
    }
    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Vec<Change>, StoreError> {
        self.inner.cancel_delivery(id, now).await
    }
    async fn delivery(&self, id: &str) -> Result<Option<DeliveryRef>, StoreError> {
        self.inner.delivery(id).await
    }
    async fn broadcast(&self, id: &str) -> Result<Option<BroadcastView>, StoreError> {
        self.inner.broadcast(id).await
    }
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
    async fn attempts(&self, broadcast_id: &str) -> Result<Vec<AttemptView>, StoreError> {
        self.inner.attempts(broadcast_id).await
    }
    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        self.inner.destination_stats().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn prune(&self, request: PruneRequest) -> Result<Pruned, StoreError> {
        self.inner.prune(request).await
    }
    async fn hold_removed(
        &self,
        configured: Vec<String>,
        now: Timestamp,
    ) -> Result<Vec<RemovedHolds>, StoreError> {
        self.inner.hold_removed(configured, now).await
    }
}

/// A fixture whose engine runs on a `Lagging` store, configured by `setup`.
fn lagging_fixture(
    destination: Arc<Scripted>,
    lane: herald_engine::LaneSettings,
    setup: impl FnOnce(&mut Lagging),
) -> (Fixture, Arc<Lagging>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(START);
    // SQLite even when the suite runs on PostgreSQL: these scenarios stage a lagging
    // single writer, whose queue commits a record before a claim asked for after it;
    // PostgreSQL has no such order (a claim racing a record finds nothing due and the
    // lane waits for the record's wake-up, which these scenarios hold back on purpose).
    let stamp = clock.clone();
    let inner: Arc<dyn Store> = Arc::new(
        herald_store::sqlite::SqliteStore::open(&dir.path().join("herald.db"))
            .unwrap()
            .with_clock(Arc::new(move || stamp.now())),
    );
    let mut lagging = Lagging::new(inner, clock.clone());
    setup(&mut lagging);
    let lagging = Arc::new(lagging);
    let store: Arc<dyn Store> = lagging.clone();
    let fx =
        Fixture::on_store(dir, store, clock, vec![(destination, lane)], EngineConfig::default());
    (fx, lagging)
}

/// A claim that waited 12 s for the writer still gets its whole 10 s timeout: the lease
/// is stamped when the claim commits. Stamped when it was asked for, the lease would
/// have ended 15 s after the request and the attempt could only have run 0.5 s.
#[tokio::test]
async fn a_lagging_claim_does_not_shorten_the_attempt() {
    let hung = Scripted::new("hung", Step::Hang);
    let mut lane = settings();
    lane.policy.timeout = Duration::from_secs(10);
    let (mut fx, store) = lagging_fixture(hung.clone(), lane, |_| {});
    // The test body runs before the lane task (one-threaded runtime): pause the lane so
    // that the lagging claim is the one that finds the broadcast.
    fx.engine.set_paused("hung", true).await.unwrap();
    *store.claim_lag.lock().unwrap() = Some(Duration::from_secs(12));
    let view = fx.submit("hello", &["hung"]).await;
    fx.engine.set_paused("hung", false).await.unwrap();
    wait_calls(&hung, 1).await;
    fx.clock.advance(Duration::from_secs(10));
    let view = fx.wait_for(&view.id, |v| v.deliveries[0].progress.ambiguous).await;
    let error = view.deliveries[0].progress.last_error.clone().unwrap_or_default();
    assert!(error.contains("no answer within 10s"), "the attempt was cut short: {error}");
}

/// An attempt never outlives its lease: with a timeout longer than the lease allows,
/// the attempt ends half a lease grace before the lease does, as ambiguous.
#[tokio::test]
async fn an_attempt_ends_inside_its_lease() {
    let hung = Scripted::new("hung", Step::Hang);
    let fx = Fixture::start(vec![(hung.clone(), settings())]);
    // A claim whose lease covers 4 s although the timeout is 10 s: what a lane gets when
    // its claim committed late without a clock-stamping store, or another node's lease.
    fx.engine.set_paused("hung", true).await.unwrap();
    let view = fx.submit("hello", &["hung"]).await;
    let claimed = fx
        .store
        .claim(ClaimRequest {
            destination: "hung".into(),
            limit: 1,
            now: fx.clock.now(),
            lease_until: fx.clock.now().add(Duration::from_secs(4)),
            probe: false,
        })
        .await
        .unwrap();
    assert_eq!(claimed.work[0].lease_expires_at, START.add(Duration::from_secs(4)));
    let deadline = herald_engine::attempt_deadline(
        START,
        Duration::from_secs(10),
        claimed.work[0].lease_expires_at,
        EngineConfig::default().lease_grace,
    );
    assert_eq!(deadline, START.add(Duration::from_millis(1500)));
    assert_eq!(
        herald_engine::attempt_deadline(
            START,
            Duration::from_secs(10),
            START.add(Duration::from_secs(60)),
            EngineConfig::default().lease_grace
        ),
        START.add(Duration::from_secs(10)),
        "a long lease does not stretch the timeout"
    );
    drop(view);
}

/// Recovery leaves alone a delivery whose outcome this process is still recording, even
/// after its lease ran out behind a stalled writer; the delivery is sent once.
#[tokio::test]
async fn recovery_never_takes_what_this_process_is_still_recording() {
    let target = Scripted::new("target", delivered());
    let (mut fx, store) = lagging_fixture(target.clone(), settings(), |store| {
        *store.held_records.lock().unwrap() = 1;
    });
    let view = fx.submit("hello", &["target"]).await;
    wait_calls(&target, 1).await;
    let before = store.scans();
    fx.clock.advance(Duration::from_secs(60));
    let taken = store.scan_after(before).await;
    assert_eq!(taken, Vec::<String>::new(), "recovery took a delivery this process holds");
    store.release_records();
    let view = fx.settle(&view.id).await;
    assert_eq!(view.deliveries[0].progress.state, State::Delivered);
    assert_eq!(target.calls().len(), 1);
    let attempts = fx.store.attempts(&view.id).await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].attempt.outcome, "delivered");
}

/// A `Delivered` answer that arrives after another worker took the lease (another node's
/// recovery) is the truth about the destination: it is recorded as delivered, not
/// thrown away to be resent.
#[tokio::test]
async fn a_delivered_answer_after_the_lease_was_lost_is_recorded_as_delivered() {
    let gate = Arc::new(Semaphore::new(0));
    let target = Scripted::new("target", Step::Gated(Arc::clone(&gate), Box::new(delivered())));
    let mut fx = Fixture::start(vec![(target.clone(), settings())]);
    let view = fx.submit("hello", &["target"]).await;
    wait_calls(&target, 1).await;
    // Another worker, whose clock runs an hour ahead, takes the delivery over.
    let later = fx.clock.now().add(Duration::from_secs(3600));
    let taken = fx.store.claim_expired(later, later.add(Duration::from_secs(3600)), 10).await;
    assert_eq!(taken.unwrap().len(), 1, "the other worker could not take the lease");
    gate.add_permits(1);
    let view = fx.wait_for(&view.id, |v| v.deliveries[0].progress.state.is_terminal()).await;
    assert_eq!(view.deliveries[0].progress.state, State::Delivered);
    assert_eq!(view.deliveries[0].progress.remote_ref.as_deref(), Some("ref-1"));
    assert_eq!(target.calls().len(), 1);
}

/// One delivery attempted twice in a row by this process: the first attempt's answer
/// (a retry due at once) reaches its task only after the lane re-claimed the delivery
/// and started the second attempt. The first attempt ending must not take the delivery
/// off the "in hand" list while the second still holds it, or recovery takes it from
/// under the second attempt once the writer lags and sends it again.
#[tokio::test]
async fn a_finished_attempt_does_not_unprotect_the_next_attempt_of_its_delivery() {
    let target = Scripted::new("target", delivered());
    target.script(0, [retry()]);
    let mut lane = settings();
    // One slot, so the first attempt's end wakes the lane; no backoff, so the retry is
    // due at once and the lane claims it while the first answer is still on its way.
    lane.concurrency = 1;
    lane.policy.backoff_base = Duration::ZERO;
    lane.policy.backoff_max = Duration::ZERO;
    let (mut fx, store) = lagging_fixture(target.clone(), lane, |store| {
        *store.late_answers.lock().unwrap() = 1;
        *store.held_records.lock().unwrap() = 1;
    });
    let view = fx.submit("hello", &["target"]).await;
    // The second call is the second attempt, started before the first one's task saw
    // its answer.
    wait_calls(&target, 2).await;
    // The first attempt's task now gets its answer, announces it and ends: its
    // `pending` is the second one announced, after the submit's.
    store.release_answers();
    let mut pending = 0;
    while pending < 2 {
        let event = tokio::time::timeout(Duration::from_secs(20), fx.events.recv())
            .await
            .expect("the first attempt never announced its outcome")
            .unwrap();
        if event.state == "pending" {
            pending += 1;
        }
    }
    // The second attempt's record is stuck behind the writer past its lease.
    let before = store.scans();
    fx.clock.advance(Duration::from_secs(60));
    let taken = store.scan_after(before).await;
    assert_eq!(taken, Vec::<String>::new(), "recovery took a delivery its second attempt holds");
    store.release_records();
    let view = fx.settle(&view.id).await;
    assert_eq!(view.deliveries[0].progress.state, State::Delivered);
    assert_eq!(target.calls().len(), 2, "{:?}", target.calls());
}
