//! A scripted connector, a fixture that runs an engine on a temporary SQLite file, and
//! helpers to submit and wait.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Capabilities, Message, Outcome, State, Timestamp};
use herald_engine::{Clock, Destination, Engine, EngineConfig, Event, FakeClock, LaneSettings};
use herald_store::sqlite::SqliteStore;
use herald_store::{BroadcastView, Change, NewBroadcast, NewDelivery, NewUpdate, Store, Submitted};
use tokio::sync::broadcast;

/// One call a scripted connector received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub delivery_id: String,
    pub seq: u32,
    pub in_reply_to: Option<String>,
    pub attempt: u32,
    pub ambiguous: bool,
    pub ambiguous_at: Option<Timestamp>,
    pub at: Timestamp,
}

/// What a scripted connector does for a call.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer with this outcome.
    Answer(Outcome),
    /// Answer `Permanent` and ask for the destination to be paused with this reason, as
    /// a connector does when the destination itself is gone.
    Gone(String),
    /// Never answer (the engine's timeout or shutdown ends the attempt).
    Hang,
    /// Wait for a permit of the gate, then take the inner step.
    Gated(Arc<tokio::sync::Semaphore>, Box<Step>),
}

/// A connector that answers from a per-seq script, then with a default.
pub struct Scripted {
    pub name: String,
    pub capabilities: Capabilities,
    script: Mutex<HashMap<u32, VecDeque<Step>>>,
    default: Step,
    pub calls: Mutex<Vec<Call>>,
    pub called: tokio::sync::Notify,
}

impl Scripted {
    pub fn new(name: &str, default: Step) -> Arc<Scripted> {
        Arc::new(Scripted {
            name: name.into(),
            capabilities: Capabilities { dedupe_by_key: true, ..Capabilities::default() },
            script: Mutex::new(HashMap::new()),
            default,
            calls: Mutex::new(Vec::new()),
            called: tokio::sync::Notify::new(),
        })
    }

    pub fn with_capabilities(
        name: &str,
        default: Step,
        capabilities: Capabilities,
    ) -> Arc<Scripted> {
        let mut res = Scripted::new(name, default);
        Arc::get_mut(&mut res).unwrap().capabilities = capabilities;
        res
    }

    /// Queues steps for messages of thread position `seq` (0 = originals).
    pub fn script(&self, seq: u32, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().unwrap().entry(seq).or_default().extend(steps);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

pub fn delivered() -> Step {
    Step::Answer(Outcome::delivered(Some("ref-1".into())))
}

pub fn retry() -> Step {
    Step::Answer(Outcome::Retry { reason: "HTTP 503".into(), after: None })
}

pub fn throttled(after: Duration) -> Step {
    Step::Answer(Outcome::Throttled { after: Some(after), reason: "HTTP 429".into() })
}

pub fn permanent() -> Step {
    Step::Answer(Outcome::Permanent { reason: "HTTP 404: channel not found".into() })
}

pub fn reconciling(after: Duration) -> Step {
    Step::Answer(Outcome::Reconciling { after, reason: "not found yet".into() })
}

pub fn gone(reason: &str) -> Step {
    Step::Gone(reason.into())
}

pub fn unknown() -> Step {
    Step::Answer(Outcome::Unknown { reason: "reset after send".into() })
}

#[async_trait]
impl Connector for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        let (seq, in_reply_to) = match request.thread {
            Thread::Original => (0, None),
            Thread::Update { seq, in_reply_to, .. } => (seq, Some(in_reply_to.to_string())),
        };
        self.calls.lock().unwrap().push(Call {
            delivery_id: request.delivery_id.into(),
            seq,
            in_reply_to,
            attempt: request.attempt,
            ambiguous: request.ambiguous,
            ambiguous_at: request.ambiguous_at,
            at: request.now,
        });
        self.called.notify_waiters();
        let step = self
            .script
            .lock()
            .unwrap()
            .get_mut(&seq)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| self.default.clone());
        let step = match step {
            Step::Gated(gate, inner) => {
                gate.acquire().await.unwrap().forget();
                *inner
            }
            other => other,
        };
        match step {
            Step::Answer(outcome) => Report { outcome, status: None, detail: None, pause: None },
            Step::Gone(reason) => Report {
                outcome: Outcome::Permanent { reason: format!("HTTP 404: {reason}") },
                status: Some(404),
                detail: None,
                pause: Some(reason),
            },
            Step::Hang | Step::Gated(..) => std::future::pending().await,
        }
    }
}

pub const START: Timestamp = Timestamp(1_800_000_000_000);

/// A store that stamps leases on the fake clock, as `serve` does on the real one: SQLite
/// in `dir`, or, with `HERALD_ENGINE_STORE=postgres` (`cargo xtask test` runs the suite
/// both ways), a fresh schema of the test database (`HERALD_TEST_DATABASE_URL`).
pub fn store_on(dir: &tempfile::TempDir, clock: &FakeClock) -> Arc<dyn Store> {
    let stamp = clock.clone();
    let stamp = Arc::new(move || stamp.now());
    if std::env::var("HERALD_ENGINE_STORE").as_deref() == Ok("postgres") {
        return Arc::new(crate::postgres::store().with_clock(stamp));
    }
    Arc::new(SqliteStore::open(&dir.path().join("herald.db")).unwrap().with_clock(stamp))
}

/// An engine on a temporary SQLite file with a fake clock.
pub struct Fixture {
    /// Keeps the database's directory alive as long as the fixture.
    pub _dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub clock: FakeClock,
    pub engine: Engine,
    pub events: broadcast::Receiver<Event>,
    next_id: std::sync::atomic::AtomicU64,
}

pub fn settings() -> LaneSettings {
    LaneSettings::default()
}

impl Fixture {
    pub fn start(destinations: Vec<(Arc<Scripted>, LaneSettings)>) -> Fixture {
        Fixture::start_with(destinations, EngineConfig::default())
    }

    pub fn start_with(
        destinations: Vec<(Arc<Scripted>, LaneSettings)>,
        config: EngineConfig,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let clock = FakeClock::new(START);
        let store = store_on(&dir, &clock);
        Fixture::on_store(dir, store, clock, destinations, config)
    }

    pub fn on_store(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        clock: FakeClock,
        destinations: Vec<(Arc<Scripted>, LaneSettings)>,
        config: EngineConfig,
    ) -> Fixture {
        let destinations = destinations
            .into_iter()
            .map(|(connector, settings)| Destination {
                name: connector.name.clone(),
                connector: connector as Arc<dyn Connector>,
                settings,
            })
            .collect();
        Fixture::with_destinations(dir, store, clock, destinations, config)
    }

    /// An engine over any connectors, on a fresh temporary database.
    pub fn start_destinations(destinations: Vec<Destination>, config: EngineConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let clock = FakeClock::new(START);
        let store = store_on(&dir, &clock);
        Fixture::with_destinations(dir, store, clock, destinations, config)
    }

    fn with_destinations(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        clock: FakeClock,
        destinations: Vec<Destination>,
        config: EngineConfig,
    ) -> Fixture {
        let engine = Engine::start(
            Arc::clone(&store),
            destinations,
            Arc::new(clock.clone()) as Arc<dyn Clock>,
            config,
        )
        .unwrap();
        let events = engine.subscribe();
        Fixture {
            _dir: dir,
            store,
            clock,
            engine,
            events,
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}_{:06}", self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    fn new_delivery(&self, destination: &str) -> NewDelivery {
        let policy = &self.engine.settings(destination).unwrap().policy;
        NewDelivery {
            id: self.id("d"),
            destination: destination.into(),
            max_attempts: policy.max_attempts,
            expires_at: self.clock.now().add(policy.max_age),
        }
    }

    /// Submits a broadcast and wakes the engine, as the API does.
    pub async fn submit(&self, title: &str, destinations: &[&str]) -> BroadcastView {
        let now = self.clock.now();
        let new = NewBroadcast {
            id: self.id("b"),
            idempotency_key: None,
            fingerprint: title.into(),
            requested: destinations.iter().map(|d| d.to_string()).collect(),
            message: Message { title: title.into(), ..Message::default() },
            deliveries: destinations.iter().map(|d| self.new_delivery(d)).collect(),
            created_at: now,
            expires_at: None,
        };
        let Submitted::Created(view) = self.store.submit(new).await.unwrap() else {
            panic!("replayed")
        };
        let changes: Vec<Change> = view
            .deliveries
            .iter()
            .map(|d| Change {
                delivery_id: d.id.clone(),
                broadcast_id: view.id.clone(),
                destination: d.destination.clone(),
                seq: 0,
                state: State::Pending,
                next_attempt_at: now,
            })
            .collect();
        self.engine.notify(&changes);
        view
    }

    /// Adds an update to every destination of the broadcast.
    pub async fn update(&self, broadcast: &BroadcastView, title: &str) -> u32 {
        let added = self
            .store
            .add_update(NewUpdate {
                broadcast_id: broadcast.id.clone(),
                message: Message { title: title.into(), ..Message::default() },
                created_at: self.clock.now(),
                deliveries: broadcast.destinations.iter().map(|d| self.new_delivery(d)).collect(),
                idempotency: None,
            })
            .await
            .unwrap();
        self.engine.notify(&added.changes);
        added.seq
    }

    /// Waits (on events, bounded by a real-time safety limit) until `pred` holds for the
    /// broadcast as stored.
    pub async fn wait_for(
        &mut self,
        broadcast_id: &str,
        pred: impl Fn(&BroadcastView) -> bool,
    ) -> BroadcastView {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let view = self.store.broadcast(broadcast_id).await.unwrap().unwrap();
            if pred(&view) {
                return view;
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => panic!("engine stopped"),
                Err(_) => panic!("timed out waiting; last state: {view:#?}"),
            }
        }
    }

    /// Waits (bounded by a real-time safety limit) until the engine is quiescent: no
    /// claim, attempt or record in progress and every queued write committed. Checks
    /// that nothing happened belong after this, never after a `yield_now` or a sleep.
    pub async fn idle(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.engine.idle())
            .await
            .expect("the engine did not become idle")
            .unwrap();
    }

    /// Waits until every delivery of the broadcast is terminal.
    pub async fn settle(&mut self, broadcast_id: &str) -> BroadcastView {
        self.wait_for(broadcast_id, |view| {
            view.deliveries.iter().all(|d| d.progress.state.is_terminal())
        })
        .await
    }

    /// Waits until the delivery `idx` of the broadcast is in `state`.
    pub async fn wait_state(
        &mut self,
        broadcast_id: &str,
        idx: usize,
        state: &str,
    ) -> BroadcastView {
        self.wait_for(broadcast_id, |view| view.deliveries[idx].progress.state.as_str() == state)
            .await
    }
}

/// Waits until `connector` has received at least `n` calls.
pub async fn wait_calls(connector: &Scripted, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let notified = connector.called.notified();
        if connector.calls().len() >= n {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            panic!(
                "timed out waiting for {n} calls to {}; got {:?}",
                connector.name,
                connector.calls()
            );
        }
    }
}
