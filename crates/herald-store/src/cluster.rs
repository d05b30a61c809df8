//! The nodes sharing one database, and which of them drives each destination's lane.
//!
//! A destination's rate limit, concurrency and circuit breaker are kept in memory by the
//! lane that sends to it, so they hold for the whole cluster only if one node at a time
//! runs that lane. [`Cluster`] gives each lane a single owner through a renewable lease:
//! a node renews its lanes on every heartbeat, takes free or expired ones up to its fair
//! share, and gives back the ones beyond its share once their attempts have ended. A node
//! that dies stops renewing; its lanes expire and the others take them. A node that is
//! cut off from the database stops claiming when its own lease runs out, before anyone
//! else may take the lane (it measures the lease from before it asked for it).
//!
//! Pausing is cluster-wide for the same reason: it is kept with the lane, not in the
//! memory of the node that was asked.
//!
//! Time is always an argument. Nodes compare each other's expiry times, so their clocks
//! must agree to well within a lane lease (NTP is enough; a lease is seconds long).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use herald_core::Timestamp;
use tokio::sync::mpsc;

use crate::StoreError;

/// A node's periodic proof of life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The node's id (`[server] node_id`, or hostname and pid).
    pub node_id: String,
    /// Random per process: tells a restarted node from a second live process that was
    /// given the same id by mistake.
    pub incarnation: String,
    /// When this process started.
    pub started_at: Timestamp,
    /// Now.
    pub now: Timestamp,
    /// How long the node counts as alive without another beat.
    pub ttl: Duration,
    /// Where its API listens, for `herald nodes`.
    pub address: String,
    /// herald's version on that node.
    pub version: String,
    /// The destinations it configures: a starting node holds the deliveries of a
    /// destination only when no live node configures it.
    pub destinations: Vec<String>,
}

/// What a beat learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beaten {
    /// Live nodes, this one included.
    pub live: usize,
    /// Another live process holds this node id: this process must not own lanes until
    /// that one has gone quiet for a whole ttl.
    pub duplicate: bool,
    /// The paused destinations, with why (`None` when an operator paused it).
    pub paused: HashMap<String, Option<String>>,
}

/// A node's request to keep its lanes and take free ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneClaim {
    /// Who asks.
    pub node_id: String,
    /// The destinations this node can send to (it configures them).
    pub candidates: Vec<String>,
    /// How many lanes it should own in all (its fair share); lanes it owns already are
    /// renewed even beyond it, and handed back by [`Cluster::drop_lane`] once idle.
    pub share: usize,
    /// Now.
    pub now: Timestamp,
    /// How long the lanes stay this node's without another claim.
    pub ttl: Duration,
}

/// One node as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Its id.
    pub node_id: String,
    /// Where its API listens.
    pub address: String,
    /// Its herald version.
    pub version: String,
    /// When its process started.
    pub started_at: Timestamp,
    /// Its last beat.
    pub heartbeat_at: Timestamp,
    /// Whether that beat is younger than its ttl.
    pub alive: bool,
    /// The destinations whose lanes it owns now, sorted.
    pub lanes: Vec<String>,
    /// The destinations it configures, as of its last beat.
    pub destinations: Vec<String>,
}

/// Membership and lane ownership. Every method is one short transaction.
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Records that `beat.node_id` is alive, forgets nodes silent for a long time, and
    /// reports the live nodes and paused destinations.
    async fn beat(&self, beat: Beat) -> Result<Beaten, StoreError>;

    /// Renews the caller's unexpired lanes among the candidates and takes free or
    /// expired ones until it owns `share`; returns every lane it owns now, sorted.
    async fn hold_lanes(&self, claim: LaneClaim) -> Result<Vec<String>, StoreError>;

    /// Gives a lane back at once (its attempts have ended), so another node can take it
    /// without waiting for the lease to run out.
    async fn drop_lane(&self, node_id: &str, destination: &str) -> Result<(), StoreError>;

    /// A node leaving cleanly: its lanes are freed and it is no longer listed.
    async fn leave(&self, node_id: &str) -> Result<(), StoreError>;

    /// Pauses or resumes a destination for every node; `reason` says why when herald
    /// itself paused it (the destination said it is gone).
    async fn set_paused(
        &self,
        destination: &str,
        paused: bool,
        reason: Option<String>,
    ) -> Result<(), StoreError>;

    /// The nodes seen recently, by id.
    async fn nodes(&self, now: Timestamp) -> Result<Vec<NodeView>, StoreError>;

    /// Tells the other nodes that these destinations have new due work, so whichever
    /// owns the lane claims it now rather than at its next poll. Best effort and never
    /// blocks: a lost announcement only delays the work until the owner's fallback poll.
    fn announce(&self, destinations: &[String]);

    /// Destinations with work announced by other nodes. Taken once, by the engine; later
    /// calls get a closed receiver.
    fn announcements(&self) -> mpsc::UnboundedReceiver<String>;
}

/// How long a node that stopped beating is still listed (as not alive) before it is
/// forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
struct NodeRow {
    incarnation: String,
    address: String,
    version: String,
    started_at: Timestamp,
    heartbeat_at: Timestamp,
    expires_at: Timestamp,
    destinations: Vec<String>,
}

#[derive(Debug, Clone)]
struct LaneRow {
    owner: String,
    expires_at: Timestamp,
}

#[derive(Debug, Default)]
struct State {
    nodes: HashMap<String, NodeRow>,
    lanes: HashMap<String, LaneRow>,
    paused: HashMap<String, Option<String>>,
    listeners: Vec<(String, mpsc::UnboundedSender<String>)>,
}

/// Membership kept in this process's memory: the whole cluster of a single-process store
/// (SQLite allows one process per database file), and, shared between several engines in
/// one process, a cluster that tests can drive with simulated time.
#[derive(Debug, Clone, Default)]
pub struct LocalCluster {
    state: Arc<Mutex<State>>,
}

impl LocalCluster {
    /// An empty cluster.
    pub fn new() -> LocalCluster {
        LocalCluster::default()
    }

    /// A handle for the node `node_id`: announcements it makes reach the other handles'
    /// receivers, never its own.
    pub fn member(&self, node_id: &str) -> LocalMember {
        LocalMember { cluster: self.clone(), node_id: node_id.to_owned(), taken: Mutex::new(false) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One node's handle on a [`LocalCluster`].
#[derive(Debug)]
pub struct LocalMember {
    cluster: LocalCluster,
    node_id: String,
    taken: Mutex<bool>,
}

#[async_trait]
impl Cluster for LocalMember {
    async fn beat(&self, beat: Beat) -> Result<Beaten, StoreError> {
        let mut state = self.cluster.state();
        let duplicate = state
            .nodes
            .get(&beat.node_id)
            .is_some_and(|row| row.incarnation != beat.incarnation && row.expires_at > beat.now);
        if !duplicate {
            state.nodes.insert(
                beat.node_id.clone(),
                NodeRow {
                    incarnation: beat.incarnation,
                    address: beat.address,
                    version: beat.version,
                    started_at: beat.started_at,
                    heartbeat_at: beat.now,
                    expires_at: beat.now.add(beat.ttl),
                    destinations: beat.destinations,
                },
            );
        }
        let now = beat.now;
        state.nodes.retain(|_, row| row.expires_at.add(FORGET_AFTER) > now);
        let live = state.nodes.values().filter(|row| row.expires_at > now).count();
        Ok(Beaten { live, duplicate, paused: state.paused.clone() })
    }

    async fn hold_lanes(&self, claim: LaneClaim) -> Result<Vec<String>, StoreError> {
        let mut state = self.cluster.state();
        let until = claim.now.add(claim.ttl);
        let mut owned = Vec::new();
        for name in &claim.candidates {
            if let Some(lane) = state.lanes.get_mut(name)
                && lane.owner == claim.node_id
                && lane.expires_at > claim.now
            {
                lane.expires_at = until;
                owned.push(name.clone());
            }
        }
        for name in &claim.candidates {
            if owned.len() >= claim.share {
                break;
            }
            let free = state.lanes.get(name).is_none_or(|lane| lane.expires_at <= claim.now);
            if free {
                state.lanes.insert(
                    name.clone(),
                    LaneRow { owner: claim.node_id.clone(), expires_at: until },
                );
                owned.push(name.clone());
            }
        }
        owned.sort();
        Ok(owned)
    }

    async fn drop_lane(&self, node_id: &str, destination: &str) -> Result<(), StoreError> {
        let mut state = self.cluster.state();
        if state.lanes.get(destination).is_some_and(|lane| lane.owner == node_id) {
            state.lanes.remove(destination);
        }
        Ok(())
    }

    async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        let mut state = self.cluster.state();
        state.lanes.retain(|_, lane| lane.owner != node_id);
        state.nodes.remove(node_id);
        Ok(())
    }

    async fn set_paused(
        &self,
        destination: &str,
        paused: bool,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        let mut state = self.cluster.state();
        if paused {
            state.paused.insert(destination.to_owned(), reason);
        } else {
            state.paused.remove(destination);
        }
        Ok(())
    }

    async fn nodes(&self, now: Timestamp) -> Result<Vec<NodeView>, StoreError> {
        let state = self.cluster.state();
        let mut nodes: Vec<NodeView> = state
            .nodes
            .iter()
            .map(|(id, row)| {
                let mut lanes: Vec<String> = state
                    .lanes
                    .iter()
                    .filter(|(_, lane)| &lane.owner == id && lane.expires_at > now)
                    .map(|(name, _)| name.clone())
                    .collect();
                lanes.sort();
                NodeView {
                    node_id: id.clone(),
                    address: row.address.clone(),
                    version: row.version.clone(),
                    started_at: row.started_at,
                    heartbeat_at: row.heartbeat_at,
                    alive: row.expires_at > now,
                    lanes,
                    destinations: row.destinations.clone(),
                }
            })
            .collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    fn announce(&self, destinations: &[String]) {
        let mut state = self.cluster.state();
        state.listeners.retain(|(node, tx)| {
            *node == self.node_id || destinations.iter().all(|d| tx.send(d.clone()).is_ok())
        });
    }

    fn announcements(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut taken = self.taken.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !*taken {
            *taken = true;
            self.cluster.state().listeners.push((self.node_id.clone(), tx));
        }
        rx
    }
}
