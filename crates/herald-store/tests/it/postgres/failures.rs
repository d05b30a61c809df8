//! The shared store under overload and failure: a bounded number of submits in progress
//! (more are refused at once while outcome records still go through), an unreachable or
//! misnamed database (`Unavailable`, quickly, no password in the message), connections
//! the server terminated (replaced by the pool, never a panic), and a `COMMIT` whose
//! answer was lost (`Unconfirmed`, never "failed").

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_store::postgres::{PgOptions, PgStore, check_url};
use herald_store::{Store, StoreError, Submitted};

use super::proxy::Proxy;
use super::{Schema, admin, admin_in, database_url, database_url_via, server_addr};
use crate::fixture::*;

/// The test database's URL with `application_name` set, so the test can find (and
/// terminate) exactly its own connections.
fn url_named(name: &str) -> String {
    let url = database_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

/// How many of `name`'s connections wait for a lock.
async fn waiting_for_locks(name: &str) -> i64 {
    let mut conn = admin().await;
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
    )
    .bind(name)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_submit_queue_refuses_submits_at_once_while_records_still_go_through() {
    let schema = Schema::new().await;
    let name = schema.name.clone();
    let options = PgOptions { submit_queue: 2, ..schema.options() };
    let store = Arc::new(PgStore::connect(&url_named(&name), "node-a", &options).await.unwrap());
    let view = create(store.as_ref(), broadcast(&["lane"], at(0))).await;
    let work = claim_one(store.as_ref(), "lane", at(1)).await;

    // Another session holds the broadcasts table: submits wait for it, holding permits.
    let mut blocker = admin_in(&schema).await;
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE broadcasts IN EXCLUSIVE MODE").execute(&mut blocker).await.unwrap();
    let mut queued = Vec::new();
    for _ in 0..2 {
        let store = Arc::clone(&store);
        queued.push(tokio::spawn(async move { store.submit(broadcast(&["lane"], at(2))).await }));
    }
    let started = Instant::now();
    while waiting_for_locks(&name).await < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "the submits never blocked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let refused = broadcast(&["lane"], at(2));
    let refused_id = refused.id.clone();
    let started = Instant::now();
    match store.submit(refused).await {
        Err(StoreError::Overloaded { queued }) => assert_eq!(queued, 2),
        res => panic!("expected Overloaded, got {res:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(100), "the refusal waited");
    match store.add_update(update(&view, "still burning", at(2))).await {
        Err(StoreError::Overloaded { .. }) => {}
        res => panic!("an update must be refused like a submit, got {res:?}"),
    }
    // An outcome does not touch `broadcasts`: it is recorded while submits wait.
    let changes = store.record(vec![delivered(&work, "remote-1", at(3))]).await.unwrap();
    assert_eq!(changes.len(), 1, "the record was not applied: {changes:?}");
    store.ping().await.unwrap();

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    for submit in queued {
        submit.await.unwrap().unwrap();
    }
    assert_eq!(store.broadcast(&refused_id).await.unwrap(), None, "a refused submit was stored");
    create(store.as_ref(), broadcast(&["lane"], at(4))).await;
}

/// No server behind the URL: `Unavailable` within the acquire timeout, and no password
/// in the message.
#[tokio::test]
async fn an_unreachable_database_is_unavailable_quickly_and_without_its_password() {
    let options = PgOptions { acquire_timeout: Duration::from_secs(1), ..PgOptions::default() };
    let started = Instant::now();
    let res =
        PgStore::connect("postgres://herald:hunter2@127.0.0.1:1/herald", "node", &options).await;
    let elapsed = started.elapsed();
    match res {
        Err(StoreError::Unavailable(message)) => {
            assert!(!message.contains("hunter2"), "{message}");
            assert!(!message.is_empty());
        }
        res => panic!("expected Unavailable, got {:?}", res.map(|_| ())),
    }
    assert!(elapsed < Duration::from_secs(5), "connecting took {elapsed:?}");

    let error = check_url("postgres://herald:hunter2@db:notaport/herald").unwrap_err();
    assert!(error.contains("not a valid PostgreSQL URL") && !error.contains("hunter2"), "{error}");
    assert_eq!(check_url("postgres://herald:hunter2@db.internal:5432/herald"), Ok(()));
}

/// The server ends every connection of the store (`pg_terminate_backend`, as a restart
/// or a failover would): calls fail as `Unavailable` at worst, never panic, and the pool
/// reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_replaced_by_the_pool() {
    let schema = Schema::new().await;
    let name = schema.name.clone();
    let store = PgStore::connect(&url_named(&name), "node-a", &schema.options()).await.unwrap();
    let first = create(&store, broadcast(&["lane"], at(0))).await;
    store.ping().await.unwrap();

    let mut conn = admin().await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(!terminated.is_empty(), "the store had no connection to terminate");

    let mut answered = None;
    for _ in 0..3 {
        match store.submit(broadcast(&["lane"], at(1))).await {
            Ok(submitted) => {
                answered = Some(submitted);
                break;
            }
            Err(StoreError::Unavailable(message)) => eprintln!("after termination: {message}"),
            Err(error) => panic!("a terminated connection gave {error:?}"),
        }
    }
    assert!(answered.is_some(), "the pool did not reconnect");
    store.ping().await.unwrap();
    assert_eq!(view(&store, &first.id).await, first);
}

/// The connection breaks after `COMMIT` went out and before its answer came back: the
/// submit was stored, so the store must not report a failure that means "nothing
/// changed" (`Unavailable`); it reports `Unconfirmed`, and the pool carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_unconfirmed_not_failed() {
    let schema = Schema::new().await;
    let proxy = Proxy::start(server_addr()).await;
    let options = PgOptions { max_connections: 1, ..schema.options() };
    // In clear text, so the proxy can see the `COMMIT` go by.
    let url = database_url_via(proxy.addr());
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}sslmode=disable");
    let store = PgStore::connect(&url, "node-a", &options).await.unwrap();
    let submitted = keyed("k-1", "fingerprint 1", &["lane"], at(0));
    let id = submitted.id.clone();

    proxy.lose_next_commit_answer();
    match store.submit(submitted).await {
        Err(StoreError::Unconfirmed(message)) => eprintln!("lost COMMIT answer: {message}"),
        res => panic!("expected Unconfirmed, got {res:?}"),
    }
    assert!(store.broadcast(&id).await.unwrap().is_some(), "the commit did not happen after all");
    // The client's retry with the same key finds the original.
    match store.submit(keyed("k-1", "fingerprint 1", &["lane"], at(1))).await.unwrap() {
        Submitted::Replayed(view) => assert_eq!(view.id, id),
        other => panic!("expected the original back, got {other:?}"),
    }
}
