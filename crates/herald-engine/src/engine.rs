//! The engine's public face: start the lanes, feed them wake-ups, report health, stop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_connectors::redact::Redactor;
use herald_core::{Circuit, Throttle, Timestamp};
use herald_store::cluster::NodeView;
use herald_store::{Change, Store, StoreError};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::destination::{Destination, LaneSettings};
use crate::events::Event;
use crate::membership::{self, Membership, Ownership};
use crate::metrics::{EngineMetrics, LaneMetrics, OutcomeLabels};
use crate::retention::{self, Retention};
use crate::{lane, recovery};

/// Engine-wide tunables; per-destination settings live in [`LaneSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Added to a destination's timeout to form the lease: how long a claim stays
    /// exclusive before recovery may treat it as abandoned.
    pub lease_grace: Duration,
    /// The most deliveries one lane claims per round trip.
    pub claim_batch: usize,
    /// How often expired leases are looked for.
    pub recovery_interval: Duration,
    /// How often an idle lane looks at the store even without a wake-up, as a safety
    /// net; jittered by up to 20 %.
    pub fallback_poll: Duration,
    /// How long in-flight attempts may run on shutdown before they are cut short.
    pub shutdown_grace: Duration,
    /// Seed of the engine's random source (jitter); fixed in tests.
    pub seed: u64,
    /// Pruning of old terminal broadcasts; `None` keeps everything (the default here;
    /// `herald serve` always sets it from `[retention]`).
    pub retention: Option<Retention>,
    /// This node's id in a cluster (`[server] node_id`) and in `GET /v1/nodes`.
    pub node_id: String,
    /// Where this node's API listens, as other nodes and `herald nodes` show it.
    pub node_address: String,
    /// The configured secrets, scrubbed from every outcome before it is logged, stored
    /// or published (a destination may echo a token back; a library may quote a URL).
    pub redactor: Redactor,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            lease_grace: Duration::from_secs(5),
            claim_batch: 64,
            recovery_interval: Duration::from_secs(1),
            fallback_poll: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            seed: 0x6865_7261_6c64,
            retention: None,
            node_id: "herald".to_owned(),
            node_address: String::new(),
            redactor: Redactor::default(),
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Two destinations share a name.
    #[error("destination `{0}` is configured twice")]
    DuplicateDestination(String),
}

/// What a lane knows about its destination's health, kept in memory.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    pub(crate) circuit: Circuit,
    pub(crate) throttle: Throttle,
    pub(crate) paused: bool,
    /// Why the destination itself asked to be paused (see `Report::pause`); `None` while
    /// running or when only an operator paused it. Cleared on resume.
    pub(crate) pause_reason: Option<String>,
    pub(crate) last_success_at: Option<Timestamp>,
    pub(crate) last_error: Option<String>,
    /// The outcomes of the latest attempts (true = destination failure), newest last.
    pub(crate) recent: std::collections::VecDeque<bool>,
}

/// How many recent attempts the error rate covers.
pub(crate) const RECENT_WINDOW: usize = 100;

/// One destination's health as reported by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneHealth {
    /// The destination.
    pub destination: String,
    /// Its kind.
    pub kind: &'static str,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    /// Why the circuit is open or half-open, e.g. "24 of the last 25 attempts failed:
    /// HTTP 503"; `None` when closed.
    pub circuit_reason: Option<String>,
    /// When an open circuit lets its next probe through.
    pub circuit_open_until: Option<Timestamp>,
    /// Whether it is paused: by an operator, or because the destination said it is
    /// unusable until an operator acts (then `pause_reason` says why).
    pub paused: bool,
    /// Why the destination paused itself, e.g. "Discord says the webhook no longer
    /// exists …"; `None` when running or paused by an operator. Cleared on resume.
    pub pause_reason: Option<String>,
    /// Whether this node drives the destination's lane now (always, without a cluster).
    pub driven_here: bool,
    /// Whether the destination throttled it recently and the lane is slowed down.
    pub throttled: bool,
    /// The last successful delivery seen by this process.
    pub last_success_at: Option<Timestamp>,
    /// The last error seen by this process.
    pub last_error: Option<String>,
    /// Share of the latest attempts (up to 100) that failed at the destination.
    pub recent_error_rate: f64,
    /// Attempts in flight now.
    pub in_flight: usize,
}

/// A lane's shared state: its destination, wake-up signal and health.
pub(crate) struct Lane {
    pub(crate) destination: Destination,
    pub(crate) wake: Notify,
    pub(crate) health: Mutex<Health>,
    pub(crate) in_flight: std::sync::atomic::AtomicUsize,
    pub(crate) metrics: LaneMetrics,
    pub(crate) ownership: Mutex<Ownership>,
}

impl Lane {
    pub(crate) fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Pauses the lane because its destination said it is unusable until an operator
    /// acts. `true` if this is news: the lane was running or paused only by an operator
    /// (later answers of attempts already in flight keep the first reason).
    pub(crate) fn pause_for(&self, reason: &str) -> bool {
        let mut health = self.health();
        health.paused = true;
        if health.pause_reason.is_some() {
            return false;
        }
        health.pause_reason = Some(reason.to_owned());
        true
    }

    /// Whether this node may drive the lane (see `membership`).
    pub(crate) fn ownership(&self) -> Ownership {
        *self.ownership.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn set_ownership(&self, ownership: Ownership) {
        *self.ownership.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = ownership;
    }
}

/// Counts the engine's work that changes the store without simulated time moving: lanes
/// mid-claim and attempts not yet recorded. [`Engine::idle`] waits for it to drain.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    busy: AtomicUsize,
    /// Bumped whenever work begins, so `idle` can tell that something started while it
    /// looked away.
    epoch: AtomicU64,
    drained: Notify,
}

impl Activity {
    /// Marks work in progress until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Activity>) -> Busy {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }
}

/// Work in progress; see [`Activity`].
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Everything the engine's tasks share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: EngineConfig,
    pub(crate) lanes: HashMap<String, Arc<Lane>>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) metrics: EngineMetrics,
    /// Stops claiming.
    pub(crate) stop: CancellationToken,
    /// Cuts in-flight attempts short (after the shutdown grace).
    pub(crate) abort: CancellationToken,
    /// The deliveries this process is sending or recording now. Recovery leaves them
    /// alone even if their lease ran out (a stalled writer), so this process never
    /// resends what it is still sending.
    pub(crate) sending: Mutex<InHand>,
    /// Work in progress, for [`Engine::idle`].
    pub(crate) activity: Arc<Activity>,
    /// The cluster this node is part of; `None` for a single-process store.
    pub(crate) membership: Option<Membership>,
    /// Random per process (see `Beat::incarnation`).
    pub(crate) incarnation: String,
    /// When this engine started.
    pub(crate) started_at: Timestamp,
    /// A lane finished draining and can be handed back.
    pub(crate) drained: Notify,
}

/// The deliveries this process holds, each with how many of its attempts hold it: a
/// delivery re-claimed as soon as one attempt recorded a retry is held by the next
/// attempt before the first one's task has let go of it, so the first letting go must
/// not free it.
#[derive(Debug, Default)]
pub(crate) struct InHand(HashMap<String, usize>);

impl InHand {
    /// An attempt takes `delivery_id` in hand.
    pub(crate) fn insert(&mut self, delivery_id: String) {
        *self.0.entry(delivery_id).or_default() += 1;
    }

    /// An attempt lets go of `delivery_id`; it stays in hand while another attempt holds it.
    pub(crate) fn remove(&mut self, delivery_id: &str) {
        if let Some(holders) = self.0.get_mut(delivery_id) {
            *holders -= 1;
            if *holders == 0 {
                self.0.remove(delivery_id);
            }
        }
    }

    /// The deliveries in hand.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

impl Shared {
    /// The deliveries this process has in hand (see `sending`).
    pub(crate) fn sending(&self) -> std::sync::MutexGuard<'_, InHand> {
        self.sending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the lanes that have new due work, counts the deliveries that ended and
    /// publishes the changes as events. Every change this process makes passes here
    /// (attempts, recovery, releases, and the API's submits, retries and cancels through
    /// `Engine::notify`), so `herald_deliveries_total` misses no way a delivery ends.
    pub(crate) fn publish(&self, changes: &[Change]) {
        let now = self.clock.now();
        let mut announce: Vec<String> = Vec::new();
        for change in changes {
            if change.state.is_terminal() {
                self.metrics
                    .deliveries
                    .get_or_create(&OutcomeLabels {
                        destination: change.destination.clone(),
                        outcome: change.state.as_str().into(),
                    })
                    .inc();
            }
            if change.state == herald_core::State::Pending {
                if let Some(lane) = self.lanes.get(&change.destination) {
                    lane.wake.notify_one();
                }
                if self.membership.is_some() && !announce.contains(&change.destination) {
                    announce.push(change.destination.clone());
                }
            }
            // No subscriber is fine: events are a convenience, the store is the truth.
            let _ = self.events.send(Event::from_change(change, now));
        }
        if let Some(membership) = &self.membership
            && !announce.is_empty()
        {
            membership.cluster.announce(&announce);
        }
    }
}

/// The running engine. Cheap to clone; all clones drive the same lanes.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    tracker: TaskTracker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("lanes", &self.shared.lanes.len()).finish()
    }
}

impl Engine {
    /// Starts one lane per destination and the lease recovery task, as the only node
    /// of its store.
    ///
    /// # Errors
    /// `DuplicateDestination` when two destinations share a name.
    pub fn start(
        store: Arc<dyn Store>,
        destinations: Vec<Destination>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        Engine::start_in(store, destinations, clock, config, None)
    }

    /// [`Engine::start`] as one node of a cluster sharing the store: lanes run only
    /// while this node holds them (`membership`). `None` is a single node.
    ///
    /// # Errors
    /// `DuplicateDestination` when two destinations share a name.
    pub fn start_in(
        store: Arc<dyn Store>,
        destinations: Vec<Destination>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        membership: Option<Membership>,
    ) -> Result<Engine, EngineError> {
        let ownership = if membership.is_some() { Ownership::Not } else { Ownership::Always };
        let metrics = EngineMetrics::default();
        let mut lanes = HashMap::new();
        for destination in destinations {
            let name = destination.name.clone();
            let health = Health {
                circuit: Circuit::new(&destination.settings.circuit, &destination.settings.policy),
                throttle: Throttle::default(),
                paused: false,
                pause_reason: None,
                last_success_at: None,
                last_error: None,
                recent: std::collections::VecDeque::with_capacity(RECENT_WINDOW),
            };
            let lane = Lane {
                destination,
                wake: Notify::new(),
                health: Mutex::new(health),
                in_flight: std::sync::atomic::AtomicUsize::new(0),
                metrics: LaneMetrics::new(&metrics, &name),
                ownership: Mutex::new(ownership),
            };
            if lanes.insert(name.clone(), Arc::new(lane)).is_some() {
                return Err(EngineError::DuplicateDestination(name));
            }
        }
        let (events, _) = broadcast::channel(4096);
        let mut seed = fastrand::Rng::with_seed(config.seed);
        // Identity, not behaviour: it must differ between processes that share a seed
        // (and, in containers, a pid), so it comes from the unseeded generator.
        #[allow(clippy::disallowed_methods)]
        let incarnation = format!("{:016x}", fastrand::u64(..));
        let started_at = clock.now();
        let shared = Arc::new(Shared {
            store,
            clock,
            config,
            lanes,
            events,
            metrics,
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
            sending: Mutex::new(InHand::default()),
            activity: Arc::default(),
            membership: membership.clone(),
            incarnation,
            started_at,
            drained: Notify::new(),
        });
        let tracker = TaskTracker::new();
        for lane in shared.lanes.values() {
            tracker.spawn(lane::run(
                Arc::clone(&shared),
                Arc::clone(lane),
                seed.u64(..),
                tracker.clone(),
            ));
        }
        tracker.spawn(recovery::run(Arc::clone(&shared), seed.u64(..)));
        if let Some(membership) = membership {
            tracker.spawn(membership::run(Arc::clone(&shared), membership));
        }
        if let Some(retention) = shared.config.retention.clone() {
            tracker.spawn(retention::run(Arc::clone(&shared), retention));
        }
        Ok(Engine { shared, tracker })
    }

    /// Tells the engine about changes made outside it (a submit, an update, an
    /// operator's retry): wakes the lanes concerned and publishes events.
    pub fn notify(&self, changes: &[Change]) {
        self.shared.publish(changes);
    }

    /// A stream of delivery state changes. A slow reader misses events (`Lagged`) rather
    /// than slowing the engine.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.shared.metrics
    }

    /// The settings of a configured destination.
    pub fn settings(&self, destination: &str) -> Option<&LaneSettings> {
        self.shared.lanes.get(destination).map(|lane| &lane.destination.settings)
    }

    /// Where a person can open the message `remote_ref` names on `destination`, where
    /// its kind can build such a link (`Connector::remote_link`).
    pub fn remote_link(&self, destination: &str, remote_ref: &str) -> Option<String> {
        self.shared.lanes.get(destination)?.destination.connector.remote_link(remote_ref)
    }

    /// The configured destination names, sorted.
    pub fn destinations(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.lanes.keys().cloned().collect();
        names.sort();
        names
    }

    /// Each destination's health, sorted by name.
    pub fn health(&self) -> Vec<LaneHealth> {
        let now = self.shared.clock.now();
        let mut res: Vec<LaneHealth> = self
            .shared
            .lanes
            .values()
            .map(|lane| {
                let health = lane.health();
                // Looking at a copy moves an expired open circuit to half-open for the
                // report without handing out the probe.
                let mut probe = health.circuit.clone();
                let _ = probe.permits(now);
                let circuit = probe.state.as_str();
                let circuit_reason = probe.reason().map(String::from);
                let circuit_open_until = probe.open_until();
                let failures = health.recent.iter().filter(|failed| **failed).count();
                let rate = if health.recent.is_empty() {
                    0.0
                } else {
                    failures as f64 / health.recent.len() as f64
                };
                LaneHealth {
                    destination: lane.destination.name.clone(),
                    kind: lane.destination.connector.kind(),
                    circuit,
                    circuit_reason,
                    circuit_open_until,
                    paused: health.paused,
                    pause_reason: health.pause_reason.clone(),
                    driven_here: lane.ownership().permits(now),
                    throttled: health.throttle.is_pacing(),
                    last_success_at: health.last_success_at,
                    last_error: health.last_error.clone(),
                    recent_error_rate: rate,
                    in_flight: lane.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                }
            })
            .collect();
        res.sort_by(|a, b| a.destination.cmp(&b.destination));
        res
    }

    /// Waits until the engine is quiescent: no lane is mid-claim, no attempt is being
    /// sent or recorded, and every write queued before the call has committed (checked
    /// with a write round trip through the store). Work that only waits for time to
    /// pass (backoff, cool-down, rate limit) does not count, so after `idle` nothing
    /// happens until the clock moves or work arrives: tests assert "nothing was sent"
    /// only after it. An attempt that hangs keeps the engine busy until its timeout;
    /// lease recovery is not covered.
    ///
    /// # Errors
    /// The store's error if the round trip fails.
    pub async fn idle(&self) -> Result<(), StoreError> {
        let activity = &self.shared.activity;
        loop {
            loop {
                let drained = activity.drained.notified();
                if activity.busy.load(Ordering::SeqCst) == 0 {
                    break;
                }
                drained.await;
            }
            let epoch = activity.epoch.load(Ordering::SeqCst);
            // Tasks woken by the clock or by a published change run while this waits, and
            // take a `Busy` before their first await if they find work.
            self.shared.store.record(Vec::new()).await?;
            tokio::task::yield_now().await;
            if activity.busy.load(Ordering::SeqCst) == 0
                && activity.epoch.load(Ordering::SeqCst) == epoch
            {
                return Ok(());
            }
        }
    }

    /// Stops (or restarts) claiming new work for a destination, on every node of a
    /// cluster. `Ok(false)` if the destination is unknown. Resuming also clears the
    /// reason a destination gave for pausing itself; pausing one that is already paused
    /// keeps it.
    ///
    /// # Errors
    /// The store's error when a cluster-wide pause could not be stored; nothing changed.
    pub async fn set_paused(&self, destination: &str, paused: bool) -> Result<bool, StoreError> {
        let Some(lane) = self.shared.lanes.get(destination) else { return Ok(false) };
        let reason = if paused { lane.health().pause_reason.clone() } else { None };
        if let Some(membership) = &self.shared.membership {
            membership.cluster.set_paused(destination, paused, reason.clone()).await?;
        }
        {
            let mut health = lane.health();
            health.paused = paused;
            health.pause_reason = reason;
        }
        lane.wake.notify_one();
        Ok(true)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.config.node_id
    }

    /// The nodes sharing the store, by id: this one alone without a cluster.
    ///
    /// # Errors
    /// The store's error when the cluster's nodes cannot be read.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, StoreError> {
        let now = self.shared.clock.now();
        if let Some(membership) = &self.shared.membership {
            return membership.cluster.nodes(now).await;
        }
        Ok(vec![NodeView {
            node_id: self.shared.config.node_id.clone(),
            address: self.shared.config.node_address.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: self.shared.started_at,
            heartbeat_at: now,
            alive: true,
            lanes: self.destinations(),
            destinations: self.destinations(),
        }])
    }

    /// Stops claiming, lets in-flight attempts finish within the shutdown grace, cuts the
    /// rest short (recorded as `Unknown`), and waits for every task to end.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        self.tracker.close();
        let grace = self.shared.config.shutdown_grace;
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!(grace = ?grace, "In-flight attempts did not finish in time; cutting them short.");
            self.shared.abort.cancel();
            self.tracker.wait().await;
        }
        // Nothing runs here any more: free the lanes now rather than when they expire.
        if let Some(membership) = &self.shared.membership
            && let Err(error) = membership.cluster.leave(&self.shared.config.node_id).await
        {
            tracing::warn!(%error, "Could not leave the cluster; this node's lanes move when their lease runs out.");
        }
    }
}
