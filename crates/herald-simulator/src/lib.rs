//! Local, stateful stand-ins for webhook destinations, with fault injection.
//!
//! A [`Simulator`] is one HTTP/1.1 server on loopback hosting many named endpoints at
//! `POST /hooks/{name}`. Each endpoint follows a [`FaultPlan`] (fail the first attempts,
//! rate-limit with `Retry-After`, store then hang, store then answer late, store then reset,
//! go down for a while, add latency, dedupe by idempotency key or not) and records what it
//! received, when each request arrived and ended, and what it stored, so tests, `herald
//! demo`, `herald bench` and `herald torture` can check that every message arrived exactly
//! once and never by two attempts at once.
//!
//! `GET /_sim/{name}` (and `GET /_sim` for all endpoints) answers an endpoint's statistics
//! and stored copies as JSON, for people poking at a running demo.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use std::time::Duration;
//! use herald_simulator::{FaultPlan, Simulator};
//!
//! let sim = Simulator::start(vec![
//!     ("slack".to_owned(), FaultPlan::healthy().fail_first(2, 503)),
//!     ("pager".to_owned(), FaultPlan::healthy().rate_limit(1, Duration::from_secs(1))),
//! ])
//! .await?;
//! let url = sim.url("slack"); // POST webhooks here
//! # let _ = url;
//! let done = sim.wait_until(Duration::from_secs(5), |v| v.stored("slack") == 3).await;
//! # let _ = done;
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod discord;
mod jira;
mod mattermost;
mod opsgenie;
mod pagerduty;
mod plan;
mod server;
mod slack;
mod state;
mod teams;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::discord::{DISCORD_CHANNEL_ID, DISCORD_WEBHOOK_ID, DiscordMessage, discord_key};
pub use crate::jira::{
    JIRA_EMAIL, JIRA_ISSUE_TYPES, JIRA_PROJECT, JIRA_TOKEN, JiraComment, JiraIssue,
};
pub use crate::mattermost::{
    MATTERMOST_POST_LIMIT, MattermostPost, PENDING_POST_TTL, mattermost_hook_key,
};
pub use crate::opsgenie::{OPSGENIE_API_KEY, OpsgenieAlert, OpsgenieRequest};
pub use crate::pagerduty::{PAGERDUTY_ROUTING_KEY, PagerDutyEvent, PagerDutyIncident};
pub use crate::plan::FaultPlan;
pub use crate::slack::{SlackFault, SlackHookPost, SlackMessage, SlackStats, slack_hook_key};
use crate::state::Endpoint;
pub use crate::state::{ANONYMOUS_KEY_PREFIX, EndpointStats, Fate, Received};
pub use crate::teams::{
    DEFAULT_TOKEN_LIFETIME, GRAPH_CHANNEL_ID, GRAPH_REFRESH_TOKEN, GRAPH_TEAM_ID, GraphMessage,
    marker_key,
};

/// State shared by the server tasks and every [`SimView`].
struct Shared {
    addr: SocketAddr,
    /// Endpoint names in the order given at start.
    names: Vec<String>,
    /// Fixed at start, so looking an endpoint up takes no lock.
    endpoints: HashMap<String, Endpoint>,
    /// The Jira dialect's issues, per endpoint name.
    jira: jira::Sites,
    /// Notified after every request that reached an endpoint, if anyone is waiting.
    changed: Notify,
    /// How many `wait_until` calls are in progress (so requests skip `Notify` otherwise).
    waiters: AtomicUsize,
    /// Cancelled at shutdown: stops accepting and releases hanging requests.
    cancel: CancellationToken,
    /// The Slack dialect's workspaces.
    slack: slack::SlackState,
    /// The Teams dialects' per-endpoint state (tokens, channel history, cards).
    teams: teams::TeamsState,
    /// The PagerDuty dialect's incidents, per endpoint name.
    pagerduty: pagerduty::Services,
    /// The Opsgenie dialect's alerts and request statuses, per endpoint name.
    opsgenie: opsgenie::Accounts,
    /// The Discord dialect's webhooks and their messages.
    discord: discord::DiscordState,
    /// The Mattermost dialect's servers: posts, remembered pending post ids, hook posts.
    mattermost: mattermost::MattermostState,
}

impl Shared {
    /// Wakes every `wait_until` in progress; called after each request's state update.
    fn notify_change(&self) {
        // A waiter counts itself before it (re)checks its predicate under the endpoint
        // mutexes, and the request updated the state under its endpoint mutex before this
        // load: either the waiter's check saw the update, or this load sees the waiter.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// Counts one `wait_until` in progress for as long as it lives (also when cancelled).
struct WaiterGuard<'a>(&'a AtomicUsize);

impl<'a> WaiterGuard<'a> {
    fn new(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        WaiterGuard(waiters)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether `name` is usable as a URL path segment as-is.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

fn hook_url(addr: SocketAddr, name: &str) -> String {
    format!("http://{addr}/hooks/{name}")
}

/// A running simulator: one HTTP server on loopback hosting many named endpoints.
///
/// Dropping it stops the server too (without waiting); prefer [`Simulator::shutdown`].
pub struct Simulator {
    view: SimView,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with an ephemeral port.
    pub async fn start(endpoints: Vec<(String, FaultPlan)>) -> io::Result<Simulator> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), endpoints).await
    }

    /// Starts a simulator on a given loopback address (port 0 picks a free port).
    ///
    /// Fails with `InvalidInput` for a non-loopback address, a duplicate endpoint name, or a
    /// name that is empty or has characters other than ASCII letters, digits and `-_.~`.
    pub async fn start_on(
        addr: SocketAddr,
        endpoints: Vec<(String, FaultPlan)>,
    ) -> io::Result<Simulator> {
        if !addr.ip().is_loopback() {
            return Err(invalid(format!("simulator only listens on loopback, not {addr}")));
        }
        let now = tokio::time::Instant::now();
        let mut names = Vec::with_capacity(endpoints.len());
        let mut map = HashMap::with_capacity(endpoints.len());
        for (name, plan) in endpoints {
            if !valid_name(&name) {
                return Err(invalid(format!("invalid endpoint name {name:?}")));
            }
            if map.insert(name.clone(), Endpoint::new(plan, now)).is_some() {
                return Err(invalid(format!("duplicate endpoint name {name:?}")));
            }
            names.push(name);
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            addr,
            jira: jira::Sites::new(&names),
            pagerduty: pagerduty::Services::new(&names),
            opsgenie: opsgenie::Accounts::new(&names),
            names,
            endpoints: map,
            changed: Notify::new(),
            waiters: AtomicUsize::new(0),
            cancel: CancellationToken::new(),
            slack: slack::SlackState::default(),
            teams: teams::TeamsState::default(),
            discord: discord::DiscordState::default(),
            mattermost: mattermost::MattermostState::default(),
        });
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        tracing::debug!(%addr, "simulator listening");
        Ok(Simulator { view: SimView { shared }, task: Some(task) })
    }

    /// A cheap, cloneable handle for inspecting the endpoints from elsewhere.
    pub fn view(&self) -> SimView {
        self.view.clone()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.view.addr()
    }

    /// The URL to POST to for endpoint `name`: `http://127.0.0.1:PORT/hooks/{name}`.
    pub fn url(&self, name: &str) -> String {
        self.view.url(name)
    }

    /// Every request that reached endpoint `name`, in order (empty if unknown or not recorded).
    pub fn received(&self, name: &str) -> Vec<Received> {
        self.view.received(name)
    }

    /// Idempotency key to the number of copies endpoint `name` stored.
    pub fn copies(&self, name: &str) -> BTreeMap<String, usize> {
        self.view.copies(name)
    }

    /// The counters of endpoint `name` (all zero if unknown).
    pub fn stats(&self, name: &str) -> EndpointStats {
        self.view.stats(name)
    }

    /// Waits until `pred` holds, re-checking after every request; false on timeout.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&SimView) -> bool) -> bool {
        self.view.wait_until(timeout, pred).await
    }

    /// Stops the server, releases hanging requests (closing their connections unanswered)
    /// and waits for every connection to end.
    pub async fn shutdown(mut self) {
        self.view.shared.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "simulator server task failed");
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.view.shared.cancel.cancel();
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.view.shared.addr)
            .field("endpoints", &self.view.shared.names)
            .finish()
    }
}

/// A read-only view of a simulator's endpoints, also handed to [`Simulator::wait_until`].
///
/// Unknown endpoint names read as empty. In `wait_until` predicates prefer the cheap
/// accessors ([`stored`](SimView::stored), [`requests`](SimView::requests),
/// [`copies_of`](SimView::copies_of), [`stats`](SimView::stats)) over the ones that copy
/// everything ([`received`](SimView::received), [`copies`](SimView::copies)).
#[derive(Clone)]
pub struct SimView {
    shared: Arc<Shared>,
}

impl SimView {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The URL to POST to for endpoint `name`.
    pub fn url(&self, name: &str) -> String {
        hook_url(self.shared.addr, name)
    }

    /// The endpoint names, in the order given at start.
    pub fn names(&self) -> &[String] {
        &self.shared.names
    }

    /// Every request that reached endpoint `name`, in order.
    pub fn received(&self, name: &str) -> Vec<Received> {
        self.shared.endpoints.get(name).map(Endpoint::received).unwrap_or_default()
    }

    /// Idempotency key to the number of copies endpoint `name` stored.
    ///
    /// Keyless requests appear under synthetic keys starting with [`ANONYMOUS_KEY_PREFIX`].
    pub fn copies(&self, name: &str) -> BTreeMap<String, usize> {
        self.shared.endpoints.get(name).map(Endpoint::copies).unwrap_or_default()
    }

    /// How many copies of `key` endpoint `name` stored.
    pub fn copies_of(&self, name: &str, key: &str) -> usize {
        self.shared.endpoints.get(name).map_or(0, |e| e.copies_of(key))
    }

    /// The counters of endpoint `name`.
    pub fn stats(&self, name: &str) -> EndpointStats {
        self.shared.endpoints.get(name).map(Endpoint::stats).unwrap_or_default()
    }

    /// Keys of which endpoint `name` received a request while an earlier request with the
    /// same key was still open (sent by two attempts at once), sorted.
    ///
    /// A request is open from its arrival until it was answered or its connection closed.
    /// The server learns of a closed connection asynchronously, so an overlap of at most
    /// `tolerance` is not counted (a retry right after a client gave up is not a double
    /// send). A request still open counts as open until now.
    pub fn overlapping_keys(&self, name: &str, tolerance: Duration) -> Vec<String> {
        let now = std::time::Instant::now();
        let mut by_key: BTreeMap<String, Vec<(std::time::Instant, std::time::Instant)>> =
            BTreeMap::new();
        for r in self.received(name) {
            if let Some(key) = r.key {
                by_key.entry(key).or_default().push((r.at, r.ended.unwrap_or(now)));
            }
        }
        by_key
            .into_iter()
            .filter(|(_, spans)| {
                // `received` is in order of arrival, so each span starts after the earlier.
                let mut open_until: Option<std::time::Instant> = None;
                spans.iter().any(|&(at, ended)| {
                    let overlaps = open_until.is_some_and(|until| at + tolerance < until);
                    open_until = Some(open_until.map_or(ended, |u| u.max(ended)));
                    overlaps
                })
            })
            .map(|(key, _)| key)
            .collect()
    }

    /// How many requests reached endpoint `name`.
    pub fn requests(&self, name: &str) -> u64 {
        self.shared.endpoints.get(name).map_or(0, |e| e.counts().0)
    }

    /// How many copies endpoint `name` stored in total.
    pub fn stored(&self, name: &str) -> u64 {
        self.shared.endpoints.get(name).map_or(0, |e| e.counts().1)
    }

    /// Waits until `pred` holds, re-checking after every request; false on timeout.
    ///
    /// Woken by the server after each request, never by polling; the timeout runs on
    /// tokio's clock.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&SimView) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let _counted = WaiterGuard::new(&self.shared.waiters);
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            // Register before checking, so a request landing in between still wakes us.
            changed.as_mut().enable();
            if pred(self) {
                return true;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => return pred(self),
            }
        }
    }
}

impl std::fmt::Debug for SimView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimView")
            .field("addr", &self.shared.addr)
            .field("endpoints", &self.shared.names)
            .finish()
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
