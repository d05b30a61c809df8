//! The PagerDuty Events API v2 dialect at `POST /pagerduty/{name}/v2/enqueue` (so a
//! `pagerduty` destination's `base_url` is `http://ADDR/pagerduty/{name}`).
//!
//! It validates events as PagerDuty documents them (a 32-character routing key, an
//! `event_action` of `trigger`, `acknowledge` or `resolve`, a trigger's `payload` with
//! `summary` of at most 1024 characters, `source` and a valid `severity`, a `dedup_key`
//! of at most 255 characters) and answers `202 {"status":"success","message":"Event
//! processed","dedup_key":...}`, or `400 {"status":"invalid event","message":"Event
//! object is invalid","errors":[...]}`. Events with the same `dedup_key` act on one
//! incident while it is open: a repeated trigger adds a log entry and shows the new
//! summary, a resolve closes it, and a trigger after that opens a new incident.
//!
//! The endpoint's [`FaultPlan`](crate::FaultPlan) applies to every event, keyed by the
//! herald delivery id in `payload.custom_details.herald_delivery` when there is one, else
//! by the `dedup_key`. An injected 429 has neither a `Retry-After` nor a body: PagerDuty
//! documents the status alone ("429 - Request Limit Exceeded", PagerDuty/developer-docs
//! docs/events-API-v2/05-Rate-Limits.md; no content for 429 in PagerDuty/api-schema
//! reference/events-v2/openapiv3.json). The `{"status":"throttle exceeded",…}` body some
//! clients know belongs to the retired v1 generic API, which throttled with a 403. An
//! injected 5xx has an empty body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::server::EndOnDrop;
use crate::state::{Outcome, Record};
use crate::{Shared, SimView, Simulator};

/// The routing key the dialect accepts (any other 32-character key is unknown).
pub const PAGERDUTY_ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdefabcdef";

/// The longest summary PagerDuty accepts.
const SUMMARY_LIMIT: usize = 1024;

/// The longest dedup key PagerDuty accepts.
const DEDUP_KEY_LIMIT: usize = 255;

/// One event as the dialect logged it on its incident.
#[derive(Clone, Debug, PartialEq)]
pub struct PagerDutyEvent {
    /// `trigger`, `acknowledge` or `resolve`.
    pub action: String,
    /// The trigger's summary (empty for other actions).
    pub summary: String,
    /// The trigger's severity (empty for other actions).
    pub severity: String,
    /// The trigger's `payload.custom_details` (`Null` if none).
    pub custom_details: Value,
    /// The event's `links` (`Null` if none).
    pub links: Value,
}

/// One incident (alert) as the dialect holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct PagerDutyIncident {
    /// The dedup key that opened it.
    pub dedup_key: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub status: String,
    /// The latest trigger's summary.
    pub summary: String,
    /// The latest trigger's source.
    pub source: String,
    /// The latest trigger's severity.
    pub severity: String,
    /// Every event applied to it, in order (its log).
    pub events: Vec<PagerDutyEvent>,
}

/// The PagerDuty state of every endpoint, created at start for every endpoint name.
pub(crate) struct Services {
    services: HashMap<String, Mutex<Vec<PagerDutyIncident>>>,
}

impl Services {
    /// Empty services for `names`.
    pub(crate) fn new(names: &[String]) -> Services {
        Services { services: names.iter().map(|n| (n.clone(), Mutex::default())).collect() }
    }

    fn lock(&self, name: &str) -> Option<MutexGuard<'_, Vec<PagerDutyIncident>>> {
        self.services.get(name).map(|s| s.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl SimView {
    /// The `base_url` of endpoint `name`'s PagerDuty.
    pub fn pagerduty_url(&self, name: &str) -> String {
        format!("http://{}/pagerduty/{name}", self.shared.addr)
    }

    /// Every incident of endpoint `name`'s PagerDuty, oldest first, with its events.
    pub fn pagerduty_incidents(&self, name: &str) -> Vec<PagerDutyIncident> {
        self.shared.pagerduty.lock(name).map(|s| s.clone()).unwrap_or_default()
    }
}

impl Simulator {
    /// The `base_url` of endpoint `name`'s PagerDuty.
    pub fn pagerduty_url(&self, name: &str) -> String {
        self.view.pagerduty_url(name)
    }
}

/// The dialect's routes, merged into the simulator's router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/pagerduty/{name}/v2/enqueue", post(enqueue))
}

fn answer(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn invalid(errors: &[String]) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        &json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
    )
}

/// The answer to a request the fault plan rejected with `status`.
fn injected(status: u16) -> Response {
    match status {
        400 => invalid(&["Event rejected (injected failure)".to_owned()]),
        _ => (crate::server::status_code(status), Body::empty()).into_response(),
    }
}

/// A validated event.
struct Event {
    action: String,
    dedup_key: Option<String>,
    summary: String,
    source: String,
    severity: String,
    custom_details: Value,
    links: Value,
}

/// Checks an event as PagerDuty does; the errors are PagerDuty's kind of words.
fn validate(value: &Value) -> Result<Event, Vec<String>> {
    let mut errors = Vec::new();
    match value.get("routing_key").and_then(Value::as_str) {
        None => errors.push("'routing_key' is missing or blank".to_owned()),
        Some(key) if key.chars().count() != 32 => {
            errors
                .push("Length of 'routing_key' is incorrect (should be 32 characters)".to_owned());
        }
        Some(key) if key != PAGERDUTY_ROUTING_KEY => errors.push("Invalid routing key".to_owned()),
        Some(_) => {}
    }
    let action = value.get("event_action").and_then(Value::as_str).unwrap_or_default().to_owned();
    if !matches!(action.as_str(), "trigger" | "acknowledge" | "resolve") {
        errors.push(
            "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)".to_owned(),
        );
    }
    let dedup_key = value.get("dedup_key").and_then(Value::as_str).map(str::to_owned);
    if dedup_key.as_deref().is_some_and(|k| k.chars().count() > DEDUP_KEY_LIMIT) {
        errors.push("'dedup_key' is too long (maximum 255 characters)".to_owned());
    }
    if action != "trigger" && dedup_key.is_none() {
        errors.push("'dedup_key' is required for acknowledge and resolve events".to_owned());
    }
    let payload = value.get("payload");
    let text =
        |name: &str| payload.and_then(|p| p.get(name)).and_then(Value::as_str).unwrap_or_default();
    let (summary, source, severity) = (text("summary"), text("source"), text("severity"));
    if action == "trigger" {
        if summary.trim().is_empty() {
            errors.push("'payload.summary' is missing or blank".to_owned());
        } else if summary.chars().count() > SUMMARY_LIMIT {
            errors.push("'payload.summary' is too long (maximum 1024 characters)".to_owned());
        }
        if source.trim().is_empty() {
            errors.push("'payload.source' is missing or blank".to_owned());
        }
        if !matches!(severity, "critical" | "error" | "warning" | "info") {
            errors.push(
                "'payload.severity' is invalid (must be one of: critical, error, warning, info)"
                    .to_owned(),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Event {
        action,
        dedup_key,
        summary: summary.to_owned(),
        source: source.to_owned(),
        severity: severity.to_owned(),
        custom_details: payload
            .and_then(|p| p.get("custom_details"))
            .cloned()
            .unwrap_or(Value::Null),
        links: value.get("links").cloned().unwrap_or(Value::Null),
    })
}

/// Applies an accepted event to the incidents; returns its dedup key.
fn apply(incidents: &mut Vec<PagerDutyIncident>, event: Event) -> String {
    let key = event.dedup_key.clone().unwrap_or_else(|| format!("sim-{}", incidents.len() + 1));
    let logged = PagerDutyEvent {
        action: event.action.clone(),
        summary: event.summary.clone(),
        severity: event.severity.clone(),
        custom_details: event.custom_details,
        links: event.links,
    };
    let open = incidents.iter_mut().find(|i| i.dedup_key == key && i.status != "resolved");
    match (event.action.as_str(), open) {
        ("trigger", Some(incident)) => {
            incident.summary = event.summary;
            incident.source = event.source;
            incident.severity = event.severity;
            incident.events.push(logged);
        }
        ("trigger", None) => incidents.push(PagerDutyIncident {
            dedup_key: key.clone(),
            status: "triggered".to_owned(),
            summary: event.summary,
            source: event.source,
            severity: event.severity,
            events: vec![logged],
        }),
        (action, Some(incident)) => {
            incident.status =
                if action == "resolve" { "resolved" } else { "acknowledged" }.to_owned();
            incident.events.push(logged);
        }
        // Acknowledging or resolving nothing open is accepted and does nothing.
        (_, None) => {}
    }
    key
}

async fn enqueue(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(endpoint) = shared.endpoints.get(&name) else {
        return answer(
            StatusCode::NOT_FOUND,
            &json!({"status": "not found", "message": "No such endpoint"}),
        );
    };
    let Ok(bytes) = axum::body::to_bytes(body, crate::server::BODY_LIMIT).await else {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"status": "invalid event", "message": "Request entity too large"}),
        );
    };
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return invalid(&["Invalid JSON".to_owned()]);
    };
    let event = match validate(&value) {
        Ok(event) => event,
        Err(errors) => return invalid(&errors),
    };
    let delivery =
        event.custom_details.get("herald_delivery").and_then(Value::as_str).map(str::to_owned);
    let key = delivery.or_else(|| event.dedup_key.clone());
    let record = endpoint.plan.record.then_some(Record { headers, body: bytes });
    let (outcome, entry) = endpoint.handle(key.as_deref(), record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    let stores = !matches!(outcome, Outcome::Rejected(_) | Outcome::Throttled { .. });
    let dedup_key = if stores {
        shared.pagerduty.lock(&name).map(|mut incidents| apply(&mut incidents, event))
    } else {
        None
    };
    shared.notify_change();
    let Some(outcome) = crate::server::wait_out(&shared, endpoint, outcome).await else {
        return crate::server::drop_connection();
    };
    match outcome {
        Outcome::Accepted { .. } => answer(
            StatusCode::ACCEPTED,
            &json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
        ),
        Outcome::Rejected(status) | Outcome::StoredThenRejected(status) => injected(status),
        Outcome::Throttled { .. } => injected(429),
        Outcome::Reset | Outcome::Hang | Outcome::Delayed { .. } => {
            crate::server::drop_connection()
        }
    }
}
