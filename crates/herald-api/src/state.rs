//! What every handler shares: the store, the engine, the clock, the configured targets,
//! the request limits, the id source and who may call what. Nothing here does I/O.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use herald_engine::{Clock, Engine};
use herald_store::Store;

use crate::auth::Auth;
use crate::error::FieldError;
use crate::ids::Ids;

/// Everything the API needs, injected by whoever starts the server (the CLI or a test).
#[derive(Clone)]
pub struct AppState {
    /// The durable store; every answer is read from it.
    pub store: Arc<dyn Store>,
    /// The running engine: policies, wake-ups, events, health, metrics.
    pub engine: Engine,
    /// The source of `now` for new records.
    pub clock: Arc<dyn Clock>,
    /// The destination and group names clients may address.
    pub targets: Targets,
    /// Bounds on request sizes.
    pub limits: Limits,
    /// The id source for broadcasts and deliveries.
    pub ids: Ids,
    /// Who may call what: open, or the configured tokens.
    pub auth: Auth,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("engine", &self.engine)
            .field("targets", &self.targets)
            .field("limits", &self.limits)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The names a request may use in `destinations`: configured destinations and groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// The configured destinations' names.
    pub destinations: Vec<String>,
    /// Group name → destination names. A name that is both a destination and a group
    /// means the destination.
    pub groups: BTreeMap<String, Vec<String>>,
}

/// How many names an "unknown destination" message lists before summarizing.
const MAX_NAMES_LISTED: usize = 30;

impl Targets {
    /// Targets from configured destination names and groups.
    pub fn new(destinations: Vec<String>, groups: BTreeMap<String, Vec<String>>) -> Targets {
        Targets { destinations, groups }
    }

    /// Resolves names and groups into destination names, in first-seen order without
    /// duplicates.
    ///
    /// # Errors
    /// One [`FieldError`] per entry that names neither a destination nor a group (its
    /// message lists what exists), and per group member that is not a destination.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<String>, Vec<FieldError>> {
        let known: HashSet<&str> = self.destinations.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        let mut res = Vec::new();
        let mut errors = Vec::new();
        for (idx, name) in names.iter().enumerate() {
            let field = format!("destinations[{idx}]");
            if known.contains(name.as_str()) {
                if seen.insert(name.as_str()) {
                    res.push(name.clone());
                }
            } else if let Some(members) = self.groups.get(name) {
                for member in members {
                    if !known.contains(member.as_str()) {
                        errors.push(FieldError::new(
                            &field,
                            format!(
                                "group `{name}` lists `{member}`, which is not a configured destination; \
                                 fix the server's group configuration"
                            ),
                        ));
                    } else if seen.insert(member.as_str()) {
                        res.push(member.clone());
                    }
                }
            } else {
                errors.push(FieldError::new(&field, self.unknown(name)));
            }
        }
        if errors.is_empty() { Ok(res) } else { Err(errors) }
    }

    /// The message for a name that is neither a destination nor a group.
    fn unknown(&self, name: &str) -> String {
        let mut destinations = self.destinations.clone();
        destinations.sort();
        let groups: Vec<String> = self.groups.keys().cloned().collect();
        format!(
            "`{name}` is neither a configured destination nor a group; destinations: {}; groups: {}",
            listing(&destinations),
            listing(&groups)
        )
    }
}

/// `a, b, c` (or `none`), shortened after [`MAX_NAMES_LISTED`] names.
fn listing(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let shown: Vec<&str> = names.iter().take(MAX_NAMES_LISTED).map(String::as_str).collect();
    let mut res = shown.join(", ");
    if names.len() > MAX_NAMES_LISTED {
        res.push_str(&format!(" and {} more", names.len() - MAX_NAMES_LISTED));
    }
    res
}

/// Bounds on what one request may carry. Lengths count characters (Unicode scalar
/// values), not bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// The most destinations one broadcast may resolve to (and names it may list).
    pub max_destinations: usize,
    /// The longest `message.title` (and link title).
    pub max_title: usize,
    /// The longest `message.body` (and field value).
    pub max_body: usize,
    /// The most entries in `message.fields`.
    pub max_fields: usize,
    /// The most entries in `message.links`.
    pub max_links: usize,
    /// The most entries in `message.tags`.
    pub max_tags: usize,
    /// The longest idempotency key, field name or tag.
    pub max_key: usize,
    /// The most requests served at once; more are refused with `503` at once (SSE
    /// streams are not counted).
    pub max_concurrent_requests: usize,
    /// The longest a request may take before it is answered `503` (SSE streams exempt).
    pub request_timeout: Duration,
    /// The longest one store call may take before the request is answered `503`.
    pub store_timeout: Duration,
    /// The longest the readiness probe waits for its round trip through the writer.
    pub ready_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 256 * 1024,
            max_destinations: 64,
            max_title: 1_000,
            max_body: 40_000,
            max_fields: 50,
            max_links: 20,
            max_tags: 50,
            max_key: 200,
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(10),
            store_timeout: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(2),
        }
    }
}
