//! Taking part in a cluster: beat, hold this node's fair share of lanes, hand back the
//! rest once idle, follow cluster-wide pauses, and wake lanes for work other nodes
//! announced.
//!
//! A lane's ownership is a lease in the store (`herald_store::cluster`). This node stops
//! claiming at four fifths of the lease measured from before it asked for it, so it has
//! stopped before the lease can run out in the database and another node take the lane,
//! even when it cannot reach the database to learn that it lost it.

use std::sync::Arc;
use std::time::Duration;

use herald_core::Timestamp;
use herald_store::cluster::{Beat, Cluster, LaneClaim};

use crate::engine::{Lane, Shared};

/// How this engine takes part in a cluster sharing one database.
#[derive(Clone)]
pub struct Membership {
    /// The cluster's store of nodes and lane leases.
    pub cluster: Arc<dyn Cluster>,
    /// How long a node counts as alive, and owns its lanes, without another beat.
    pub lease: Duration,
    /// How often the node beats and rebalances; a third of `lease` or less, so one lost
    /// beat does not cost a lane.
    pub beat_interval: Duration,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("lease", &self.lease)
            .field("beat_interval", &self.beat_interval)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Membership in `cluster` with the default lease (10 s) and beat interval (2 s).
    pub fn new(cluster: Arc<dyn Cluster>) -> Membership {
        Membership {
            cluster,
            lease: Duration::from_secs(10),
            beat_interval: Duration::from_secs(2),
        }
    }
}

/// Whether this node may drive a lane now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// No cluster: a single-process store, the lane is always this node's.
    Always,
    /// This node holds the lane's lease and may claim until the instant given.
    Until(Timestamp),
    /// Over this node's share: claim nothing, let the attempts in flight end.
    Draining,
    /// Drained: nothing of this lane is in flight here; ready to be handed back.
    Drained,
    /// Not this node's.
    Not,
}

impl Ownership {
    /// Whether the lane may claim at `now`.
    pub(crate) fn permits(self, now: Timestamp) -> bool {
        match self {
            Ownership::Always => true,
            Ownership::Until(until) => now < until,
            Ownership::Draining | Ownership::Drained | Ownership::Not => false,
        }
    }
}

/// The node's fair share of `lanes` lanes among `live` nodes.
pub(crate) fn share(lanes: usize, live: usize) -> usize {
    lanes.div_ceil(live.max(1))
}

pub(crate) async fn run(shared: Arc<Shared>, membership: Membership) {
    let cluster = &membership.cluster;
    let mut announcements = cluster.announcements();
    let listener = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Some(destination) = announcements.recv().await {
                if let Some(lane) = shared.lanes.get(&destination) {
                    lane.wake.notify_one();
                }
            }
        })
    };
    let mut names: Vec<&String> = shared.lanes.keys().collect();
    names.sort();
    let mut warned_duplicate = false;
    loop {
        let now = shared.clock.now();
        let busy = shared.activity.begin();
        let beat = Beat {
            node_id: shared.config.node_id.clone(),
            incarnation: shared.incarnation.clone(),
            started_at: shared.started_at,
            now,
            ttl: membership.lease,
            address: shared.config.node_address.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            destinations: names.iter().map(|name| (*name).clone()).collect(),
        };
        match cluster.beat(beat).await {
            Ok(beaten) if beaten.duplicate => {
                if !warned_duplicate {
                    tracing::error!(node_id = %shared.config.node_id, "Another live herald process uses this node id; this one takes no lanes until it goes quiet. Give every node its own `[server] node_id`.");
                    warned_duplicate = true;
                }
            }
            Ok(beaten) => {
                warned_duplicate = false;
                for (name, lane) in &shared.lanes {
                    let mut health = lane.health();
                    let paused = beaten.paused.get(name);
                    let resumed = health.paused && paused.is_none();
                    health.paused = paused.is_some();
                    health.pause_reason = paused.cloned().flatten();
                    drop(health);
                    if resumed {
                        lane.wake.notify_one();
                    }
                }
                rebalance(&shared, &membership, &names, beaten.live, now).await;
            }
            Err(error) => {
                tracing::warn!(%error, "Cluster heartbeat failed; lanes stop when their lease runs out.");
            }
        }
        drop(busy);
        tokio::select! {
            _ = shared.clock.sleep_until(now.add(membership.beat_interval)) => {}
            _ = shared.drained.notified() => {}
            _ = shared.stop.cancelled() => break,
        }
    }
    listener.abort();
}

/// Hands back drained lanes, renews and takes lanes up to the fair share, and starts
/// draining the ones beyond it.
async fn rebalance(
    shared: &Shared,
    membership: &Membership,
    names: &[&String],
    live: usize,
    now: Timestamp,
) {
    let cluster = &membership.cluster;
    let node_id = &shared.config.node_id;
    let lane = |name: &String| -> &Arc<Lane> { &shared.lanes[name] };
    for name in names {
        if lane(name).ownership() == Ownership::Drained {
            match cluster.drop_lane(node_id, name).await {
                Ok(()) => {
                    tracing::info!(destination = %name, "Handed the lane to another node.");
                    lane(name).set_ownership(Ownership::Not);
                }
                Err(error) => {
                    tracing::warn!(%error, destination = %name, "Could not hand a lane back; its lease will run out.")
                }
            }
        }
    }
    // Draining lanes are renewed too: their attempts are still running here.
    let candidates: Vec<String> = names
        .iter()
        .filter(|name| lane(name).ownership() != Ownership::Drained)
        .map(|name| (*name).clone())
        .collect();
    let share = share(names.len(), live);
    let claim = LaneClaim {
        node_id: node_id.clone(),
        candidates: candidates.clone(),
        share,
        now,
        ttl: membership.lease,
    };
    let owned = match cluster.hold_lanes(claim).await {
        Ok(owned) => owned,
        Err(error) => {
            tracing::warn!(%error, "Could not renew lanes; they stop when their lease runs out.");
            return;
        }
    };
    let until = now.add(membership.lease.mul_f64(0.8));
    let mut surplus = owned.len().saturating_sub(share);
    for name in &candidates {
        let lane = lane(name);
        let was = lane.ownership();
        if !owned.contains(name) {
            if was != Ownership::Not {
                tracing::warn!(destination = %name, "Another node took the lane.");
                lane.set_ownership(Ownership::Not);
            }
            continue;
        }
        match was {
            Ownership::Draining => surplus = surplus.saturating_sub(1),
            Ownership::Not => {
                tracing::info!(destination = %name, "This node drives the lane now.");
                lane.set_ownership(Ownership::Until(until));
                lane.wake.notify_one();
            }
            _ => lane.set_ownership(Ownership::Until(until)),
        }
    }
    // Beyond the share (a node joined): drain the surplus so the newcomer can take it.
    for name in owned.iter().rev() {
        if surplus == 0 {
            break;
        }
        if matches!(lane(name).ownership(), Ownership::Until(_)) {
            lane(name).set_ownership(Ownership::Draining);
            lane(name).wake.notify_one();
            surplus -= 1;
        }
    }
}
