//! The JSON shapes of DESIGN.md's "Interfaces" and their conversions from store views.
//!
//! Requests deserialize straight into these types (unknown fields are rejected); the
//! portable `Message` is the one core type used as is. Responses are built from store
//! views here and nowhere else, so `openapi.json` has one place to agree with.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use herald_core::{BroadcastState, Link, Message, Severity, State, Timestamp};
use herald_engine::{Engine, Event, LaneHealth};
use herald_store::cluster::NodeView;
use herald_store::{AttemptView, BroadcastView, DeliveryView, DestinationStats};
use serde::{Deserialize, Serialize};

/// `POST /v1/broadcasts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRequest {
    pub(crate) destinations: Vec<String>,
    pub(crate) message: Message,
    #[serde(default)]
    pub(crate) idempotency_key: Option<String>,
    #[serde(default)]
    pub(crate) expires_in: Option<String>,
}

/// `POST /v1/broadcasts/{id}/updates`: the submit body minus `destinations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateRequest {
    pub(crate) message: Message,
    #[serde(default)]
    pub(crate) idempotency_key: Option<String>,
    #[serde(default)]
    pub(crate) expires_in: Option<String>,
}

/// What the request fingerprint covers: the request as given, minus the key itself.
#[derive(Serialize)]
pub(crate) struct Canonical<'a> {
    pub(crate) destinations: &'a [String],
    pub(crate) message: &'a Message,
    pub(crate) expires_in_ms: Option<u128>,
}

/// What an update's fingerprint covers: the update request as given, minus the key.
#[derive(Serialize)]
pub(crate) struct UpdateCanonical<'a> {
    pub(crate) message: &'a Message,
    pub(crate) expires_in_ms: Option<u128>,
}

/// An instant as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339(at: Timestamp) -> String {
    let millis = u64::try_from(at.as_millis()).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(millis)).to_string()
}

fn rfc3339_opt(at: Option<Timestamp>) -> Option<String> {
    at.map(rfc3339)
}

/// A broadcast: the intent, its thread and every delivery.
#[derive(Debug, Serialize)]
pub(crate) struct BroadcastJson {
    id: String,
    idempotency_key: Option<String>,
    created_at: String,
    expires_at: Option<String>,
    state: &'static str,
    summary: SummaryJson,
    destinations: Vec<String>,
    message: MessageJson,
    updates: Vec<UpdateJson>,
    deliveries: Vec<DeliveryJson>,
}

#[derive(Debug, Default, Serialize)]
struct SummaryJson {
    total: usize,
    delivered: usize,
    failed: usize,
    pending: usize,
    cancelled: usize,
}

/// A message with every field present, so clients see one shape.
#[derive(Debug, Serialize)]
struct MessageJson {
    title: String,
    body: String,
    severity: Severity,
    fields: BTreeMap<String, String>,
    links: Vec<Link>,
    tags: Vec<String>,
}

#[derive(Debug, Serialize)]
struct UpdateJson {
    seq: u32,
    message: MessageJson,
    created_at: String,
}

#[derive(Debug, Serialize)]
struct DeliveryJson {
    id: String,
    destination: String,
    kind: &'static str,
    seq: u32,
    state: &'static str,
    attempts: u32,
    max_attempts: u32,
    next_attempt_at: Option<String>,
    remote_ref: Option<String>,
    /// Where a person can open the remote message, where the kind allows a link.
    remote_url: Option<String>,
    last_error: Option<String>,
    failure_reason: Option<&'static str>,
    hold_reason: Option<String>,
    delivered_at: Option<String>,
    unconfirmed: bool,
}

impl From<&Message> for MessageJson {
    fn from(message: &Message) -> MessageJson {
        MessageJson {
            title: message.title.clone(),
            body: message.body.clone(),
            severity: message.severity,
            fields: message.fields.clone(),
            links: message.links.clone(),
            tags: message.tags.clone(),
        }
    }
}

impl DeliveryJson {
    /// `delivery` as the API shows it, its remote ref linked through `engine`'s connector.
    fn new(delivery: &DeliveryView, engine: &Engine) -> DeliveryJson {
        let progress = &delivery.progress;
        DeliveryJson {
            id: delivery.id.clone(),
            destination: delivery.destination.clone(),
            kind: if delivery.seq == 0 { "original" } else { "update" },
            seq: delivery.seq,
            state: progress.state.as_str(),
            attempts: progress.attempts,
            max_attempts: progress.max_attempts,
            next_attempt_at: (progress.state == State::Pending)
                .then(|| rfc3339(progress.next_attempt_at)),
            remote_ref: progress.remote_ref.clone(),
            remote_url: progress
                .remote_ref
                .as_deref()
                .and_then(|remote| engine.remote_link(&delivery.destination, remote)),
            last_error: progress.last_error.clone(),
            failure_reason: match &progress.state {
                State::Failed(reason) => Some(reason.as_str()),
                _ => None,
            },
            hold_reason: delivery.hold_reason.clone(),
            delivered_at: rfc3339_opt(progress.delivered_at),
            unconfirmed: progress.unconfirmed,
        }
    }
}

/// The overall state of a broadcast view.
pub(crate) fn broadcast_state(view: &BroadcastView) -> BroadcastState {
    BroadcastState::of(view.deliveries.iter().map(|d| &d.progress.state))
}

impl BroadcastJson {
    /// `view` as the API shows it; `engine` links each delivery's remote ref.
    pub(crate) fn new(view: &BroadcastView, engine: &Engine) -> BroadcastJson {
        let mut summary = SummaryJson { total: view.deliveries.len(), ..SummaryJson::default() };
        for delivery in &view.deliveries {
            match delivery.progress.state {
                State::Delivered => summary.delivered += 1,
                State::Failed(_) => summary.failed += 1,
                State::Cancelled => summary.cancelled += 1,
                _ => summary.pending += 1,
            }
        }
        let original = view.thread.iter().find(|m| m.seq == 0);
        BroadcastJson {
            id: view.id.clone(),
            idempotency_key: view.idempotency_key.clone(),
            created_at: rfc3339(view.created_at),
            expires_at: rfc3339_opt(view.expires_at),
            state: broadcast_state(view).as_str(),
            summary,
            destinations: view.destinations.clone(),
            message: MessageJson::from(original.map(|m| &m.message).unwrap_or(&Message::default())),
            updates: view
                .thread
                .iter()
                .filter(|m| m.seq > 0)
                .map(|m| UpdateJson {
                    seq: m.seq,
                    message: (&m.message).into(),
                    created_at: rfc3339(m.created_at),
                })
                .collect(),
            deliveries: view.deliveries.iter().map(|d| DeliveryJson::new(d, engine)).collect(),
        }
    }
}

/// The answer to an update: the broadcast plus the update's position in the thread.
#[derive(Debug, Serialize)]
pub(crate) struct UpdatedJson {
    #[serde(flatten)]
    pub(crate) broadcast: BroadcastJson,
    pub(crate) update_seq: u32,
}

/// `GET /v1/broadcasts`.
#[derive(Debug, Serialize)]
pub(crate) struct PageJson {
    pub(crate) items: Vec<BroadcastJson>,
    pub(crate) next_cursor: Option<String>,
}

/// `GET /v1/broadcasts/{id}/attempts`.
#[derive(Debug, Serialize)]
pub(crate) struct AttemptsJson {
    pub(crate) attempts: Vec<AttemptJson>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AttemptJson {
    delivery_id: String,
    destination: String,
    number: u32,
    started_at: String,
    duration_ms: u64,
    outcome: String,
    status: Option<u16>,
    detail: Option<String>,
}

impl From<&AttemptView> for AttemptJson {
    fn from(view: &AttemptView) -> AttemptJson {
        AttemptJson {
            delivery_id: view.delivery_id.clone(),
            destination: view.destination.clone(),
            number: view.attempt.number,
            started_at: rfc3339(view.attempt.started_at),
            duration_ms: view.attempt.duration_ms,
            outcome: view.attempt.outcome.clone(),
            status: view.attempt.status,
            detail: view.attempt.detail.clone(),
        }
    }
}

/// `GET /v1/destinations`.
#[derive(Debug, Serialize)]
pub(crate) struct DestinationsJson {
    pub(crate) destinations: Vec<DestinationJson>,
}

/// One destination's health and counts.
#[derive(Debug, Serialize)]
pub(crate) struct DestinationJson {
    name: String,
    kind: &'static str,
    circuit: &'static str,
    circuit_reason: Option<String>,
    circuit_open_until: Option<String>,
    paused: bool,
    paused_reason: Option<String>,
    driven_here: bool,
    throttled: bool,
    pending: u64,
    in_flight: u64,
    waiting: u64,
    held: u64,
    delivered: u64,
    failed: u64,
    cancelled: u64,
    last_success_at: Option<String>,
    last_error: Option<String>,
    recent_error_rate: f64,
}

impl DestinationJson {
    /// Merges the engine's in-memory health with the store's durable counts.
    pub(crate) fn new(health: &LaneHealth, stats: Option<&DestinationStats>) -> DestinationJson {
        let empty = DestinationStats::default();
        let stats = stats.unwrap_or(&empty);
        let last_success = health.last_success_at.max(stats.last_delivered_at);
        DestinationJson {
            name: health.destination.clone(),
            kind: health.kind,
            circuit: health.circuit,
            circuit_reason: health.circuit_reason.clone(),
            circuit_open_until: rfc3339_opt(health.circuit_open_until),
            paused: health.paused,
            paused_reason: health.pause_reason.clone(),
            driven_here: health.driven_here,
            throttled: health.throttled,
            pending: stats.pending,
            in_flight: stats.in_flight,
            waiting: stats.waiting,
            held: stats.held,
            delivered: stats.delivered,
            failed: stats.failed,
            cancelled: stats.cancelled,
            last_success_at: rfc3339_opt(last_success),
            last_error: health.last_error.clone(),
            recent_error_rate: health.recent_error_rate,
        }
    }
}

/// The data of an SSE `delivery` event.
#[derive(Debug, Serialize)]
pub(crate) struct DeliveryEventJson<'a> {
    delivery_id: &'a str,
    destination: &'a str,
    seq: u32,
    state: &'static str,
    reason: Option<&'static str>,
    at: String,
}

impl<'a> From<&'a Event> for DeliveryEventJson<'a> {
    fn from(event: &'a Event) -> DeliveryEventJson<'a> {
        DeliveryEventJson {
            delivery_id: &event.delivery_id,
            destination: &event.destination,
            seq: event.seq,
            state: event.state,
            reason: event.reason,
            at: rfc3339(event.at),
        }
    }
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusJson {
    pub(crate) status: &'static str,
}

/// `GET /v1/nodes`.
#[derive(Debug, Serialize)]
pub(crate) struct NodesJson {
    pub(crate) nodes: Vec<NodeJson>,
}

/// One herald process sharing the store.
#[derive(Debug, Serialize)]
pub(crate) struct NodeJson {
    id: String,
    address: String,
    version: String,
    started_at: String,
    heartbeat_at: String,
    alive: bool,
    this: bool,
    lanes: Vec<String>,
}

impl NodeJson {
    /// `node` as shown; `this` marks the node that answers.
    pub(crate) fn new(node: &NodeView, this: bool) -> NodeJson {
        NodeJson {
            id: node.node_id.clone(),
            address: node.address.clone(),
            version: node.version.clone(),
            started_at: rfc3339(node.started_at),
            heartbeat_at: rfc3339(node.heartbeat_at),
            alive: node.alive,
            this,
            lanes: node.lanes.clone(),
        }
    }
}
