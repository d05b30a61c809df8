//! The SQLite writer under overload and failure: a bounded submit queue that refuses at
//! once while outcome records still go through, a readiness ping that goes through the
//! writer, and a writer panic that is reported and fails every waiting request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_store::sqlite::{SqliteOptions, SqliteStore};
use herald_store::{Store, StoreError};

use crate::fixture::*;

/// Every log event of the test binary, as `LEVEL field=value ...` lines. The writer
/// logs from its own thread, so the capture must be the global subscriber.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

struct Line(String);

impl tracing::field::Visit for Line {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        LOG.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn open(dir: &tempfile::TempDir, submit_queue: usize) -> Arc<SqliteStore> {
    let options = SqliteOptions { submit_queue };
    Arc::new(SqliteStore::open_with(&dir.path().join("herald.db"), &options).unwrap())
}

/// Waits until `n` submits and updates are queued for the writer.
async fn until_queued(store: &SqliteStore, n: usize) {
    for _ in 0..500 {
        if store.queue_depth().1 >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("expected {n} queued submits, have {:?}", store.queue_depth());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_submit_queue_refuses_submits_at_once_while_records_still_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 3);
    let view = create(store.as_ref(), broadcast(&["lane"], at(0))).await;
    let work = claim_one(store.as_ref(), "lane", at(1)).await;

    let stall = store.stall_writer().await;
    let mut queued = Vec::new();
    for _ in 0..3 {
        let store = Arc::clone(&store);
        queued.push(tokio::spawn(async move { store.submit(broadcast(&["lane"], at(2))).await }));
    }
    until_queued(&store, 3).await;

    let refused = broadcast(&["lane"], at(2));
    let refused_id = refused.id.clone();
    let started = std::time::Instant::now();
    match store.submit(refused).await {
        Err(StoreError::Overloaded { queued }) => assert_eq!(queued, 3),
        res => panic!("expected Overloaded, got {res:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(100), "the refusal waited for the writer");
    match store.add_update(update(&view, "still burning", at(2))).await {
        Err(StoreError::Overloaded { .. }) => {}
        res => panic!("an update must be refused like a submit, got {res:?}"),
    }

    // An outcome record is queued, not refused, although the submit queue is full.
    let recording = {
        let store = Arc::clone(&store);
        let record = delivered(&work, "remote-1", at(3));
        tokio::spawn(async move { store.record(vec![record]).await })
    };
    let operator = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.ping().await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!recording.is_finished(), "the record was answered while the writer was stalled");

    drop(stall);
    let changes = recording.await.unwrap().unwrap();
    assert_eq!(changes.len(), 1, "the record was not applied: {changes:?}");
    operator.await.unwrap().unwrap();
    for submit in queued {
        submit.await.unwrap().unwrap();
    }
    assert_eq!(store.broadcast(&refused_id).await.unwrap(), None, "a refused submit was stored");
    assert_eq!(
        state_of(store.as_ref(), &view.id, &view.deliveries[0].id).await,
        herald_core::State::Delivered
    );
    // With room again, submits are accepted.
    create(store.as_ref(), broadcast(&["lane"], at(4))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_a_round_trip_through_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 8);
    store.ping().await.unwrap();

    let stall = store.stall_writer().await;
    let ping = tokio::time::timeout(Duration::from_millis(100), store.ping()).await;
    assert!(ping.is_err(), "ping answered while the writer was stalled: {ping:?}");
    drop(stall);
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_panic_is_reported_fails_waiting_requests_and_loses_nothing_committed() {
    // The only test in this binary that installs a subscriber.
    tracing::subscriber::set_global_default(Capture).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 8);
    let kept = create(store.as_ref(), broadcast(&["lane"], at(0))).await;

    let stall = store.stall_writer().await;
    let waiting = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.submit(broadcast(&["lane"], at(1))).await })
    };
    until_queued(&store, 1).await;
    let panicking = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.panic_writer().await })
    };
    // The panic job is urgent, so it runs before the queued submit.
    while store.queue_depth().0 == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(stall);

    let cause = tokio::time::timeout(Duration::from_secs(5), store.writer_failure()).await.unwrap();
    assert!(cause.contains("panic_writer"), "the cause is not reported: {cause}");
    let logged = LOG.lock().unwrap().clone();
    let line = logged
        .iter()
        .find(|line| line.contains("The SQLite writer thread panicked"))
        .unwrap_or_else(|| panic!("no log line about the panic in {logged:?}"));
    assert!(line.starts_with("ERROR"), "{line}");
    assert!(line.contains("the supervisor restarts herald. Nothing committed is lost."), "{line}");
    assert!(line.contains("panic_writer test hook"), "the log line lacks the cause: {line}");
    assert!(matches!(panicking.await.unwrap(), Err(StoreError::Unavailable(_))));
    match waiting.await.unwrap() {
        Err(StoreError::Unavailable(_)) => {}
        res => panic!("a submit waiting behind the panic must fail, got {res:?}"),
    }
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))), "ping stays green");
    assert!(matches!(
        store.submit(broadcast(&["lane"], at(2))).await,
        Err(StoreError::Unavailable(_))
    ));

    drop(store);
    let reopened = open(&dir, 8);
    assert_eq!(view(reopened.as_ref(), &kept.id).await, kept, "a committed broadcast was lost");
}

/// When SQLite itself rolls the batch's transaction back (a full disk or an I/O error
/// during one request), the requests after it in the batch must not run on their own:
/// each would commit at its savepoint's release, and then be answered with the batch's
/// failed `COMMIT`, so a client told "not stored" finds its broadcast stored (and a retry
/// without an idempotency key sends it twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_a_rolled_back_transaction_is_not_stored_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 8);
    let stall = store.stall_writer().await;
    let aborting = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.abort_writer_transaction().await })
    };
    while store.queue_depth().0 == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let new = broadcast(&["lane"], at(1));
    let id = new.id.clone();
    let submitting = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.submit(new).await })
    };
    until_queued(&store, 1).await;
    // The abort is urgent, so it runs first in the next batch, then the submit.
    drop(stall);
    assert!(aborting.await.unwrap().is_err(), "the aborted transaction reported success");
    let submitted = submitting.await.unwrap();
    let stored = store.broadcast(&id).await.unwrap();
    match submitted {
        Ok(_) => assert!(stored.is_some(), "a submit answered as stored is missing"),
        Err(error) => assert!(
            stored.is_none(),
            "a submit answered with an error ({error}) was stored all the same"
        ),
    }
    // The writer goes on with the next batch.
    create(store.as_ref(), broadcast(&["lane"], at(2))).await;
}
