//! Several engines sharing one store, as several herald nodes share one database: each
//! lane is driven by one node at a time (so a destination's rate limit holds for the
//! cluster), the lanes are split between the nodes, a node cut off from the cluster stops
//! before another takes its lanes over, pauses reach every node, and work accepted by one
//! node wakes the node that drives the lane (DESIGN.md invariants 3 and 7; issue 8).
//!
//! The engines share one SQLite store and one in-memory cluster on one simulated clock;
//! the PostgreSQL cluster is tested with real processes in herald-cli.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use herald_connectors::Connector;
use herald_core::{RateLimit, State, Timestamp};
use herald_engine::{
    Clock, Destination, Engine, EngineConfig, FakeClock, LaneSettings, Membership,
};
use herald_store::cluster::{
    Beat, Beaten, Cluster, LaneClaim, LocalCluster, LocalMember, NodeView,
};
use herald_store::{Store, StoreError};
use tokio::sync::mpsc;

use crate::harness::*;

/// A member whose link to the cluster can be cut, as a node that died or lost the
/// database looks to the others.
struct Severable {
    inner: LocalMember,
    cut: AtomicBool,
}

impl Severable {
    fn check(&self) -> Result<(), StoreError> {
        if self.cut.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Cluster for Severable {
    async fn beat(&self, beat: Beat) -> Result<Beaten, StoreError> {
        self.check()?;
        self.inner.beat(beat).await
    }
    async fn hold_lanes(&self, claim: LaneClaim) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner.hold_lanes(claim).await
    }
    async fn drop_lane(&self, node_id: &str, destination: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.drop_lane(node_id, destination).await
    }
    async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.leave(node_id).await
    }
    async fn set_paused(
        &self,
        destination: &str,
        paused: bool,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.set_paused(destination, paused, reason).await
    }
    async fn nodes(&self, now: Timestamp) -> Result<Vec<NodeView>, StoreError> {
        self.check()?;
        self.inner.nodes(now).await
    }
    fn announce(&self, destinations: &[String]) {
        if self.check().is_ok() {
            self.inner.announce(destinations);
        }
    }
    fn announcements(&self) -> mpsc::UnboundedReceiver<String> {
        self.inner.announcements()
    }
}

const LEASE: Duration = Duration::from_secs(10);
const BEAT: Duration = Duration::from_secs(2);

/// One node: an engine with its own connectors (so a test sees who sent what).
struct Node {
    engine: Engine,
    link: Arc<Severable>,
    connectors: BTreeMap<String, Arc<Scripted>>,
}

/// Nodes on one store, one cluster and one clock.
struct Cluster3 {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: FakeClock,
    cluster: LocalCluster,
    nodes: Vec<Node>,
    next_id: u64,
}

impl Cluster3 {
    fn new() -> Cluster3 {
        let dir = tempfile::tempdir().unwrap();
        let clock = FakeClock::new(START);
        let store: Arc<dyn Store> = store_on(&dir, &clock);
        Cluster3 {
            _dir: dir,
            store,
            clock,
            cluster: LocalCluster::new(),
            nodes: Vec::new(),
            next_id: 1,
        }
    }

    /// Starts a node named `id` with `destinations` (name, settings).
    fn join(&mut self, id: &str, destinations: &[(&str, LaneSettings)]) -> usize {
        let mut connectors = BTreeMap::new();
        let destinations = destinations
            .iter()
            .map(|(name, settings)| {
                let connector = Scripted::new(name, delivered());
                connectors.insert(name.to_string(), Arc::clone(&connector));
                Destination {
                    name: name.to_string(),
                    connector: connector as Arc<dyn Connector>,
                    settings: settings.clone(),
                }
            })
            .collect();
        let link =
            Arc::new(Severable { inner: self.cluster.member(id), cut: AtomicBool::new(false) });
        let mut membership = Membership::new(Arc::clone(&link) as Arc<dyn Cluster>);
        membership.lease = LEASE;
        membership.beat_interval = BEAT;
        let config = EngineConfig { node_id: id.into(), ..EngineConfig::default() };
        let engine = Engine::start_in(
            Arc::clone(&self.store),
            destinations,
            Arc::new(self.clock.clone()) as Arc<dyn Clock>,
            config,
            Some(membership),
        )
        .unwrap();
        self.nodes.push(Node { engine, link, connectors });
        self.nodes.len() - 1
    }

    async fn idle(&self) {
        for node in &self.nodes {
            tokio::time::timeout(Duration::from_secs(20), node.engine.idle())
                .await
                .expect("a node did not become idle")
                .unwrap();
        }
    }

    /// Moves simulated time in beat-sized steps, letting every node catch up after each.
    async fn run_for(&self, total: Duration) {
        let step = Duration::from_millis(500);
        let mut passed = Duration::ZERO;
        self.idle().await;
        while passed < total {
            self.clock.advance(step);
            passed += step;
            self.idle().await;
        }
    }

    /// Submits through node `via` (its engine is told, as its API would be).
    async fn submit(&mut self, via: usize, destinations: &[&str]) -> String {
        let now = self.clock.now();
        let id = format!("b_{:06}", self.next_id);
        self.next_id += 1;
        let deliveries = destinations
            .iter()
            .map(|d| {
                let n = self.next_id;
                self.next_id += 1;
                herald_store::NewDelivery {
                    id: format!("d_{n:06}"),
                    destination: d.to_string(),
                    max_attempts: 8,
                    expires_at: now.add(Duration::from_secs(86_400)),
                }
            })
            .collect();
        let new = herald_store::NewBroadcast {
            id: id.clone(),
            idempotency_key: None,
            fingerprint: id.clone(),
            requested: destinations.iter().map(|d| d.to_string()).collect(),
            message: herald_core::Message { title: id.clone(), ..Default::default() },
            deliveries,
            created_at: now,
            expires_at: None,
        };
        let herald_store::Submitted::Created(view) = self.store.submit(new).await.unwrap() else {
            panic!("replayed")
        };
        let changes: Vec<herald_store::Change> = view
            .deliveries
            .iter()
            .map(|d| herald_store::Change {
                delivery_id: d.id.clone(),
                broadcast_id: view.id.clone(),
                destination: d.destination.clone(),
                seq: 0,
                state: State::Pending,
                next_attempt_at: now,
            })
            .collect();
        self.nodes[via].engine.notify(&changes);
        id
    }

    /// The destinations whose lane node `i` drives now.
    fn driven_by(&self, i: usize) -> Vec<String> {
        self.nodes[i]
            .engine
            .health()
            .into_iter()
            .filter(|h| h.driven_here)
            .map(|h| h.destination)
            .collect()
    }

    /// Every call to `destination`, from any node: (when, node index, delivery id).
    fn calls_to(&self, destination: &str) -> Vec<(Timestamp, usize, String)> {
        let mut calls: Vec<(Timestamp, usize, String)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, node)| {
                node.connectors[destination]
                    .calls()
                    .into_iter()
                    .map(move |call| (call.at, i, call.delivery_id))
            })
            .collect();
        calls.sort();
        calls
    }

    async fn states(&self, broadcast: &str) -> Vec<State> {
        let view = self.store.broadcast(broadcast).await.unwrap().unwrap();
        view.deliveries.iter().map(|d| d.progress.state.clone()).collect()
    }
}

fn plain() -> LaneSettings {
    LaneSettings::default()
}

#[tokio::test]
async fn each_lane_has_one_driver_and_the_lanes_are_shared_out() {
    let names = ["alpha", "bravo", "charlie", "delta"];
    let destinations: Vec<(&str, LaneSettings)> = names.iter().map(|n| (*n, plain())).collect();
    let mut c = Cluster3::new();
    c.join("node-a", &destinations);
    c.run_for(BEAT).await;
    assert_eq!(c.driven_by(0).len(), 4, "a lone node drives every lane");

    c.join("node-b", &destinations);
    // A drains its surplus, B takes it: within a few beats each drives two.
    c.run_for(BEAT * 4).await;
    let (a, b) = (c.driven_by(0), c.driven_by(1));
    assert_eq!((a.len(), b.len()), (2, 2), "a: {a:?}, b: {b:?}");
    assert!(a.iter().all(|name| !b.contains(name)), "a lane driven by both: {a:?} {b:?}");

    let mut broadcasts = Vec::new();
    for i in 0..10 {
        broadcasts.push(c.submit(i % 2, &names).await);
    }
    c.run_for(BEAT).await;
    for broadcast in &broadcasts {
        assert_eq!(c.states(broadcast).await, vec![State::Delivered; 4]);
    }
    for name in names {
        let calls = c.calls_to(name);
        assert_eq!(calls.len(), 10, "{name}: one call per message");
        let senders: std::collections::BTreeSet<usize> = calls.iter().map(|c| c.1).collect();
        assert_eq!(senders.len(), 1, "{name} was sent to by several nodes: {calls:?}");
    }
}

#[tokio::test]
async fn work_accepted_by_one_node_wakes_the_node_that_drives_the_lane() {
    let mut c = Cluster3::new();
    c.join("node-a", &[("alpha", plain()), ("bravo", plain())]);
    c.join("node-b", &[("alpha", plain()), ("bravo", plain())]);
    c.run_for(BEAT * 4).await;
    let a = c.driven_by(0);
    assert_eq!(a.len(), 1, "{a:?}");
    let theirs = if a[0] == "alpha" { "bravo" } else { "alpha" };
    // Submitted through A for the lane B drives; the clock does not move, so only the
    // announcement can wake B (its fallback poll is seconds away in simulated time).
    let broadcast = c.submit(0, &[theirs]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c.states(&broadcast).await != vec![State::Delivered] {
        assert!(tokio::time::Instant::now() < deadline, "B was not woken");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(c.nodes[0].connectors[theirs].calls().is_empty());
    assert_eq!(c.nodes[1].connectors[theirs].calls().len(), 1);
}

#[tokio::test]
async fn a_node_cut_off_stops_before_another_takes_its_lanes() {
    let mut c = Cluster3::new();
    c.join("node-a", &[("alpha", plain()), ("bravo", plain())]);
    c.join("node-b", &[("alpha", plain()), ("bravo", plain())]);
    c.run_for(BEAT * 4).await;
    let lost = c.driven_by(1);
    assert_eq!(lost.len(), 1, "{lost:?}");
    let lost = lost[0].clone();

    c.nodes[1].link.cut.store(true, Ordering::SeqCst);
    let cut_at = c.clock.now();
    // Broadcasts keep arriving through A while B is cut off.
    let mut broadcasts = Vec::new();
    for _ in 0..4 {
        broadcasts.push(c.submit(0, &[&lost]).await);
        c.run_for(BEAT * 2).await;
    }
    c.run_for(LEASE).await;
    for broadcast in &broadcasts {
        assert_eq!(c.states(broadcast).await, vec![State::Delivered], "{broadcast}");
    }
    let calls = c.calls_to(&lost);
    let b_last = calls.iter().filter(|call| call.1 == 1).map(|call| call.0).max();
    let a_first = calls.iter().filter(|call| call.1 == 0).map(|call| call.0).min().unwrap();
    if let Some(b_last) = b_last {
        assert!(b_last < a_first, "B sent at {b_last:?} after A took over at {a_first:?}");
    }
    // B stops at 4/5 of its lease; A may take the lane only once the lease is over.
    assert!(
        a_first >= cut_at.add(LEASE.mul_f64(0.8)),
        "A drove the lane {:?} after the cut, before B's lease could have run out",
        a_first.since(cut_at)
    );
    assert_eq!(calls.len(), 4, "one call per message: {calls:?}");
}

#[tokio::test]
async fn a_rate_limit_holds_for_the_cluster_across_a_handover() {
    let limited = LaneSettings {
        rate_limit: Some(RateLimit { count: 5.try_into().unwrap(), per: Duration::from_secs(1) }),
        ..plain()
    };
    let destinations = [("alpha", plain()), ("zulu", limited)];
    let mut c = Cluster3::new();
    c.join("node-a", &destinations);
    c.run_for(BEAT).await;
    let mut broadcasts = Vec::new();
    for _ in 0..40 {
        broadcasts.push(c.submit(0, &["zulu"]).await);
    }
    // A starts on the backlog at 5/s; B joins, A hands over its surplus lane (the last
    // by name: zulu) part-way through, and B finishes the backlog.
    c.run_for(Duration::from_secs(3)).await;
    c.join("node-b", &destinations);
    c.run_for(Duration::from_secs(20)).await;
    for broadcast in &broadcasts {
        assert_eq!(c.states(broadcast).await, vec![State::Delivered]);
    }
    let calls = c.calls_to("zulu");
    assert_eq!(calls.len(), 40);
    let senders: std::collections::BTreeSet<usize> = calls.iter().map(|c| c.1).collect();
    assert_eq!(senders.len(), 2, "the handover did not happen: {calls:?}");
    for (i, first) in calls.iter().enumerate() {
        let window_end = first.0.add(Duration::from_secs(1));
        let in_window = calls[i..].iter().take_while(|call| call.0 < window_end).count();
        assert!(in_window <= 5, "{in_window} calls in the second after {:?}: {calls:?}", first.0);
    }
}

#[tokio::test]
async fn a_pause_on_one_node_stops_the_node_that_drives_the_lane() {
    let mut c = Cluster3::new();
    c.join("node-a", &[("alpha", plain()), ("bravo", plain())]);
    c.join("node-b", &[("alpha", plain()), ("bravo", plain())]);
    c.run_for(BEAT * 4).await;
    let theirs = c.driven_by(1)[0].clone();
    assert!(c.nodes[0].engine.set_paused(&theirs, true).await.unwrap());
    // The pause reaches B with its next beat.
    c.run_for(BEAT).await;
    assert!(c.nodes[1].engine.health().iter().any(|h| h.destination == theirs && h.paused));
    let broadcast = c.submit(0, &[&theirs]).await;
    c.run_for(BEAT * 3).await;
    assert_eq!(c.states(&broadcast).await, vec![State::Pending]);
    assert!(c.calls_to(&theirs).is_empty());

    assert!(c.nodes[0].engine.set_paused(&theirs, false).await.unwrap());
    c.run_for(BEAT * 2).await;
    assert_eq!(c.states(&broadcast).await, vec![State::Delivered]);
    assert_eq!(c.calls_to(&theirs).len(), 1);
}

#[tokio::test]
async fn a_second_live_process_with_the_same_node_id_takes_no_lanes() {
    let mut c = Cluster3::new();
    c.join("node-a", &[("alpha", plain())]);
    c.run_for(BEAT).await;
    c.join("node-a", &[("alpha", plain())]);
    c.run_for(BEAT * 3).await;
    assert_eq!(c.driven_by(0), vec!["alpha".to_string()]);
    assert!(c.driven_by(1).is_empty(), "the impostor drives {:?}", c.driven_by(1));
}

#[tokio::test]
async fn a_node_that_leaves_cleanly_hands_its_lanes_over_at_once() {
    let mut c = Cluster3::new();
    c.join("node-a", &[("alpha", plain()), ("bravo", plain())]);
    c.join("node-b", &[("alpha", plain()), ("bravo", plain())]);
    c.run_for(BEAT * 4).await;
    assert_eq!(c.driven_by(1).len(), 1);
    c.nodes[1].engine.shutdown().await;
    // Not a whole lease: the next beat of A (its share is now both lanes) takes it.
    c.run_for(BEAT).await;
    assert_eq!(c.driven_by(0).len(), 2);
    let nodes = c.nodes[0].engine.nodes().await.unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, vec!["node-a"]);
    assert_eq!(nodes[0].lanes, vec!["alpha".to_string(), "bravo".to_string()]);
}

#[tokio::test]
async fn a_destination_that_says_it_is_gone_is_paused_on_every_node() {
    let mut c = Cluster3::new();
    c.join("node-a", &[("alpha", plain()), ("bravo", plain())]);
    c.join("node-b", &[("alpha", plain()), ("bravo", plain())]);
    c.run_for(BEAT * 4).await;
    let theirs = c.driven_by(1)[0].clone();
    c.nodes[1].connectors[&theirs].script(0, [gone("the webhook was deleted")]);
    let first = c.submit(0, &[&theirs]).await;
    c.run_for(BEAT).await;
    assert!(matches!(c.states(&first).await[..], [State::Failed(_)]));
    // A, which does not drive the lane, learns of it with its next beat and keeps it
    // paused: its beats read the pause back rather than clear it.
    c.run_for(BEAT * 2).await;
    for node in &c.nodes {
        let health = node.engine.health().into_iter().find(|h| h.destination == theirs).unwrap();
        assert!(health.paused, "{health:?}");
        assert_eq!(health.pause_reason.as_deref(), Some("the webhook was deleted"));
    }
    let waiting = c.submit(0, &[&theirs]).await;
    c.run_for(BEAT * 3).await;
    assert_eq!(c.states(&waiting).await, vec![State::Pending]);
    assert!(c.nodes[0].engine.set_paused(&theirs, false).await.unwrap());
    c.run_for(BEAT * 2).await;
    assert_eq!(c.states(&waiting).await, vec![State::Delivered]);
    assert_eq!(c.calls_to(&theirs).len(), 2, "one 'gone' answer, one delivery");
}
