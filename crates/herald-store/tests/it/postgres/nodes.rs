//! Several nodes on one schema: the conformance bodies about concurrency run against
//! `Nodes`, a `Store` that hands each call to the next of two `PgStore`s in turn (two
//! pools, two node ids, as two herald processes would be), and the tables then show who
//! leased and who attempted what.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use herald_core::{RetryPolicy, Timestamp};
use herald_store::postgres::PgStore;
use herald_store::*;
use sqlx::Row;
use tokio::task::JoinSet;

use super::{Schema, admin_in};
use crate::conformance;
use crate::fixture::*;

/// Two nodes behind one `Store`, called in turn.
struct Nodes {
    nodes: Vec<PgStore>,
    next: AtomicUsize,
}

impl Nodes {
    async fn on(schema: &Schema) -> Arc<Nodes> {
        let nodes = vec![schema.connect("node-a").await, schema.connect("node-b").await];
        Arc::new(Nodes { nodes, next: AtomicUsize::new(0) })
    }

    fn node(&self) -> &PgStore {
        &self.nodes[self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len()]
    }
}

#[async_trait]
impl Store for Nodes {
    async fn submit(&self, b: NewBroadcast) -> Result<Submitted, StoreError> {
        self.node().submit(b).await
    }
    async fn add_update(&self, u: NewUpdate) -> Result<UpdateAdded, StoreError> {
        self.node().add_update(u).await
    }
    async fn claim(&self, c: ClaimRequest) -> Result<Claimed, StoreError> {
        self.node().claim(c).await
    }
    async fn claim_expired_except(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        exclude: Vec<String>,
    ) -> Result<Vec<Work>, StoreError> {
        self.node().claim_expired_except(now, lease_until, limit, exclude).await
    }
    async fn record(&self, r: Vec<Record>) -> Result<Vec<Change>, StoreError> {
        self.node().record(r).await
    }
    async fn release(&self, r: Vec<Release>) -> Result<Vec<Change>, StoreError> {
        self.node().release(r).await
    }
    async fn retry_delivery(
        &self,
        id: &str,
        p: &RetryPolicy,
        now: Timestamp,
    ) -> Result<Vec<Change>, StoreError> {
        self.node().retry_delivery(id, p, now).await
    }
    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Vec<Change>, StoreError> {
        self.node().cancel_delivery(id, now).await
    }
    async fn hold_removed(
        &self,
        c: Vec<String>,
        now: Timestamp,
    ) -> Result<Vec<RemovedHolds>, StoreError> {
        self.node().hold_removed(c, now).await
    }
    async fn delivery(&self, id: &str) -> Result<Option<DeliveryRef>, StoreError> {
        self.node().delivery(id).await
    }
    async fn broadcast(&self, id: &str) -> Result<Option<BroadcastView>, StoreError> {
        self.node().broadcast(id).await
    }
    async fn list(&self, q: ListQuery) -> Result<Page, StoreError> {
        self.node().list(q).await
    }
    async fn attempts(&self, id: &str) -> Result<Vec<AttemptView>, StoreError> {
        self.node().attempts(id).await
    }
    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        self.node().destination_stats().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.node().ping().await
    }
    async fn prune(&self, r: PruneRequest) -> Result<Pruned, StoreError> {
        self.node().prune(r).await
    }
}

/// The node ids in the attempt log.
async fn attempting_nodes(schema: &Schema) -> BTreeSet<String> {
    let mut conn = admin_in(schema).await;
    sqlx::query_scalar("SELECT DISTINCT node_id FROM attempts")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Invariant 6 across nodes: the unique index decides, not a process's writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_with_one_key_create_one_broadcast() {
    let schema = Schema::new().await;
    conformance::concurrent_submits_with_one_key_create_one_broadcast(Nodes::on(&schema).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_replaying_one_update_key_create_one_update() {
    let schema = Schema::new().await;
    conformance::concurrent_update_replays_create_one_update(Nodes::on(&schema).await).await;
}

/// Invariant 2 across nodes: eight workers on two nodes claim one lane; no delivery is
/// leased to two at once (the body's ledger), and both nodes did attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_lease_one_delivery_at_once() {
    let schema = Schema::new().await;
    conformance::concurrent_claims_never_share_a_leased_delivery(Nodes::on(&schema).await).await;
    assert_eq!(
        attempting_nodes(&schema).await,
        BTreeSet::from(["node-a".to_string(), "node-b".to_string()])
    );
}

/// A claim writes its node as the lease's owner; an outcome ends the lease; recovery
/// by another node takes the lease over, and the attempts name who made them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_names_its_node_and_recovery_by_another_node_takes_it_over() {
    let schema = Schema::new().await;
    let (a, b) = (schema.connect("node-a").await, schema.connect("node-b").await);
    let view = create(&a, broadcast(&["lane", "other"], at(0))).await;
    let owners = async || -> HashMap<String, (Option<String>, i64)> {
        let mut conn = admin_in(&schema).await;
        sqlx::query("SELECT id, lease_owner, lease_token FROM deliveries")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.get(0), (row.get(1), row.get(2))))
            .collect()
    };
    let work = claim_one(&a, "lane", at(1)).await;
    // Node b's own lease outlives node a's.
    let long =
        herald_store::ClaimRequest { lease_until: at(1000), ..claim_request("other", 1, at(1)) };
    let other = b.claim(long).await.unwrap().work.remove(0);
    let leased = owners().await;
    assert_eq!(leased[&work.delivery_id].0.as_deref(), Some("node-a"));
    assert_eq!(leased[&other.delivery_id].0.as_deref(), Some("node-b"));

    // Node a dies; its lease runs out and node b recovers the delivery.
    drop(a);
    let recovered = b.claim_expired(at(1).add(LEASE), at(100), 10).await.unwrap();
    assert_eq!(ids(&recovered), vec![work.delivery_id.clone()]);
    assert_eq!(owners().await[&work.delivery_id].0.as_deref(), Some("node-b"));
    b.record(vec![delivered(&recovered[0], "ref", at(40))]).await.unwrap();
    b.record(vec![delivered(&other, "ref", at(40))]).await.unwrap();
    let ended = owners().await;
    assert_eq!(ended[&work.delivery_id].0, None, "a finished delivery keeps an owner");
    assert!(ended[&work.delivery_id].1 > recovered[0].lease_token);
    assert_eq!(attempting_nodes(&schema).await, BTreeSet::from(["node-b".to_string()]));
    assert_eq!(view.deliveries.len(), 2);
}

/// Thread cascades under concurrency: while one node records originals and another adds
/// updates to the same broadcasts, every update ends up released exactly when its
/// original is delivered (none is left waiting behind a delivered original).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_added_while_another_node_delivers_the_original_are_never_stranded() {
    const BROADCASTS: usize = 40;
    let schema = Schema::new().await;
    let a: Arc<PgStore> = Arc::new(schema.connect("node-a").await);
    let b: Arc<PgStore> = Arc::new(schema.connect("node-b").await);
    let mut views = Vec::new();
    for _ in 0..BROADCASTS {
        views.push(create(a.as_ref(), broadcast(&["lane"], at(0))).await);
    }
    let work = claim(a.as_ref(), "lane", BROADCASTS, at(1)).await;
    assert_eq!(work.len(), BROADCASTS);
    let mut tasks = JoinSet::new();
    for w in work {
        let a = Arc::clone(&a);
        tasks.spawn(async move {
            a.record(vec![delivered(&w, "ref", at(2))]).await.unwrap();
        });
    }
    for view in &views {
        let (b, view) = (Arc::clone(&b), view.clone());
        tasks.spawn(async move {
            b.add_update(update(&view, "update", at(2))).await.unwrap();
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap();
    }
    for view in &views {
        let states: Vec<herald_core::State> = super::super::fixture::view(a.as_ref(), &view.id)
            .await
            .deliveries
            .iter()
            .map(|d| d.progress.state.clone())
            .collect();
        assert_eq!(
            states,
            vec![herald_core::State::Delivered, herald_core::State::Pending],
            "an update was stranded behind its delivered original in {}",
            view.id
        );
    }
}

/// With the engine's clock, a lease runs from when the claim ran, not from when it was
/// asked for: a claim that waited (for a connection, for locks) keeps its whole lease.
#[tokio::test]
async fn a_lease_is_stamped_when_the_claim_runs() {
    let schema = Schema::new().await;
    let store = schema.connect("node-a").await.with_clock(Arc::new(|| at(10)));
    create(&store, broadcast(&["lane"], at(0))).await;
    let work = store.claim(claim_request("lane", 1, at(1))).await.unwrap().work;
    assert_eq!(work[0].lease_expires_at, at(10).add(LEASE), "the wait ate into the lease");
    assert_eq!(store.claim_expired(at(9).add(LEASE), at(100), 10).await.unwrap(), vec![]);
    assert_eq!(
        ids(&store.claim_expired(at(10).add(LEASE), at(100), 10).await.unwrap()),
        ids(&work)
    );
}
