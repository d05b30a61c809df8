//! The Opsgenie Alert API v2 dialect at `/opsgenie/{name}/v2/alerts...` (so an `opsgenie`
//! destination's `base_url` is `http://ADDR/opsgenie/{name}`): `Authorization: GenieKey`
//! with [`OPSGENIE_API_KEY`], create (one open alert per alias: a second create bumps its
//! `count`), get by id or alias, notes (add and list), close, and the request status of
//! every write.
//!
//! Writes are answered `202 {"result":"Request will be processed","took":…,"requestId":…}`
//! and applied at once, but their request status reads `404 {"message":"Request not
//! found. It might not be processed, yet."}` with `X-Opsgenie-Errortype:
//! RequestNotProcessed` for the first [`Simulator::opsgenie_processing_lag`] polls
//! (default 0), as Opsgenie's asynchronous processing does; then `{"data":{"success":…,
//! "isSuccess":…,"status":…,"alertId":…,"alias":…}}`. A request id Opsgenie never issued
//! reads the same 404 without that header: Opsgenie's own Go SDK polls again only while
//! the header says `RequestNotProcessed` (opsgenie/opsgenie-go-sdk-v2 client/client.go,
//! `RetrieveStatus`). A note or close for an alias without an alert is accepted and then
//! fails in its status (`"Alert does not exist"`), as in Opsgenie.
//!
//! The endpoint's [`FaultPlan`](crate::FaultPlan) applies to writes, keyed by the herald
//! delivery id (`details.herald_delivery` of a create, the `herald-<id>` line of a note)
//! or else the alias. Errors follow Opsgenie's `{"message":…,"took":…,"requestId":…}`
//! (422 adds `errors`); an injected 429 carries `X-RateLimit-State: THROTTLED`,
//! `X-RateLimit-Reason: ACCOUNT` and `X-RateLimit-Period-In-Sec: 60` (the minute bucket;
//! `1` is the second bucket), and no `Retry-After`: the header names are Opsgenie's
//! OpenAPI (opsgenie/opsgenie-python-sdk opsgenie-oas.json), the values those of Opsgenie's
//! Go SDK tests (opsgenie/opsgenie-go-sdk-v2 client/client_test.go,
//! `TestExecWhenApiReturnsRateLimitingDetails`); the reason names what the limit applies to,
//! not the request's domain.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::EndOnDrop;
use crate::state::{Outcome, Record};
use crate::{Shared, SimView, Simulator};

/// The API key the dialect accepts (`Authorization: GenieKey <key>`).
pub const OPSGENIE_API_KEY: &str = "0f0e0d0c-aaaa-bbbb-cccc-123456789abc";

/// Opsgenie's limits, in characters: message, alias, description, note.
const MESSAGE_LIMIT: usize = 130;
const ALIAS_LIMIT: usize = 512;
const DESCRIPTION_LIMIT: usize = 15_000;
const NOTE_LIMIT: usize = 25_000;

/// One alert as the dialect holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct OpsgenieAlert {
    /// The alert's id.
    pub id: String,
    /// The alias (`herald-<broadcast id>` for herald's alerts).
    pub alias: String,
    /// The message (cut to 130 characters as Opsgenie does).
    pub message: String,
    /// The description.
    pub description: String,
    /// `P1` ... `P5`.
    pub priority: String,
    /// `open` or `closed`.
    pub status: String,
    /// How many creates this alert absorbed (1, then +1 per deduplicated create).
    pub count: u32,
    /// The details map.
    pub details: Value,
    /// The tags.
    pub tags: Vec<String>,
    /// The notes' texts, oldest first (close notes included).
    pub notes: Vec<String>,
}

/// One write's request-status record.
#[derive(Clone, Debug, PartialEq)]
pub struct OpsgenieRequest {
    /// The request id returned with the 202.
    pub id: String,
    /// `Create`, `AddNote` or `Close`.
    pub action: String,
    /// Whether processing succeeded.
    pub success: bool,
    /// Opsgenie's words (`Created alert`, `Alert does not exist`, ...).
    pub status: String,
    /// The alias the write named.
    pub alias: String,
    /// How many status polls it answered.
    pub polls: u32,
}

/// One endpoint's Opsgenie account.
#[derive(Default)]
struct Account {
    alerts: Vec<OpsgenieAlert>,
    requests: Vec<OpsgenieRequest>,
    /// Status polls answered 404 per request before it reads as processed.
    lag: u32,
}

/// The Opsgenie state of every endpoint, created at start for every endpoint name.
pub(crate) struct Accounts {
    accounts: HashMap<String, Mutex<Account>>,
}

impl Accounts {
    /// Empty accounts for `names`.
    pub(crate) fn new(names: &[String]) -> Accounts {
        Accounts { accounts: names.iter().map(|n| (n.clone(), Mutex::default())).collect() }
    }

    fn lock(&self, name: &str) -> Option<MutexGuard<'_, Account>> {
        self.accounts.get(name).map(|a| a.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl SimView {
    /// The `base_url` of endpoint `name`'s Opsgenie.
    pub fn opsgenie_url(&self, name: &str) -> String {
        format!("http://{}/opsgenie/{name}", self.shared.addr)
    }

    /// Every alert of endpoint `name`'s Opsgenie, oldest first, with notes and status.
    pub fn opsgenie_alerts(&self, name: &str) -> Vec<OpsgenieAlert> {
        self.shared.opsgenie.lock(name).map(|a| a.alerts.clone()).unwrap_or_default()
    }

    /// Every write's request-status record of endpoint `name`, in order.
    pub fn opsgenie_requests(&self, name: &str) -> Vec<OpsgenieRequest> {
        self.shared.opsgenie.lock(name).map(|a| a.requests.clone()).unwrap_or_default()
    }
}

impl Simulator {
    /// The `base_url` of endpoint `name`'s Opsgenie.
    pub fn opsgenie_url(&self, name: &str) -> String {
        self.view.opsgenie_url(name)
    }

    /// Makes each write of endpoint `name` from now on answer its first `polls` status
    /// reads with 404 ("not processed yet").
    pub fn opsgenie_processing_lag(&self, name: &str, polls: u32) {
        if let Some(mut account) = self.view.shared.opsgenie.lock(name) {
            account.lag = polls;
        }
    }
}

/// The dialect's routes, merged into the simulator's router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/opsgenie/{name}/v2/alerts", post(create))
        .route("/opsgenie/{name}/v2/alerts/requests/{id}", get(request_status))
        .route("/opsgenie/{name}/v2/alerts/{identifier}", get(get_alert))
        .route("/opsgenie/{name}/v2/alerts/{identifier}/notes", get(list_notes).post(add_note))
        .route("/opsgenie/{name}/v2/alerts/{identifier}/close", post(close))
}

fn request_id(n: usize) -> String {
    format!("{n:08x}-5151-4000-8000-{n:012x}")
}

fn answer(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: u16, message: &str) -> Response {
    answer(
        crate::server::status_code(status),
        &json!({"message": message, "took": 0.001, "requestId": request_id(0)}),
    )
}

fn unprocessable(field: &str, words: &str) -> Response {
    answer(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({
            "message": "Request body is not processable. Please check the errors.",
            "errors": {field: words},
            "took": 0.001,
            "requestId": request_id(0),
        }),
    )
}

/// The answer to a write the fault plan rejected with `status`, in Opsgenie's words.
fn injected(status: u16) -> Response {
    match status {
        400 => error(400, "Invalid JSON body (injected failure)"),
        401 => error(401, "Could not authenticate"),
        403 => error(403, "You are not authorized for this operation."),
        404 => error(404, "Alert does not exist"),
        422 => unprocessable("message", "Rejected (injected failure)."),
        429 => {
            let mut response = error(
                429,
                "You are making too many requests! To avoid errors, we recommend you limit requests.",
            );
            let headers = response.headers_mut();
            headers.insert(
                HeaderName::from_static("x-ratelimit-state"),
                HeaderValue::from_static("THROTTLED"),
            );
            headers.insert(
                HeaderName::from_static("x-ratelimit-reason"),
                HeaderValue::from_static("ACCOUNT"),
            );
            headers.insert(
                HeaderName::from_static("x-ratelimit-period-in-sec"),
                HeaderValue::from(60),
            );
            response
        }
        _ => error(status, "Internal Server Error"),
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("GenieKey "))
        .is_some_and(|key| key.trim() == OPSGENIE_API_KEY)
}

fn cut(text: &str, limit: usize) -> String {
    text.chars().take(limit).collect()
}

/// `identifierType` of the alert routes (`id` by default, or `alias`, `tiny`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identifier {
    identifier_type: Option<String>,
}

fn find<'a>(
    alerts: &'a mut [OpsgenieAlert],
    identifier: &str,
    kind: Option<&str>,
) -> Option<&'a mut OpsgenieAlert> {
    match kind.unwrap_or("id") {
        // The open alert with the alias, else the latest one.
        "alias" => {
            let open = alerts.iter().rposition(|a| a.alias == identifier && a.status == "open");
            let index = open.or_else(|| alerts.iter().rposition(|a| a.alias == identifier))?;
            alerts.get_mut(index)
        }
        _ => alerts.iter_mut().find(|a| a.id == identifier),
    }
}

/// What a write does to the account once the plan lets it through.
enum Write {
    Create {
        alias: String,
        message: String,
        description: String,
        priority: String,
        details: Value,
        tags: Vec<String>,
    },
    Note {
        identifier: String,
        kind: Option<String>,
        note: String,
    },
    Close {
        identifier: String,
        kind: Option<String>,
        note: String,
    },
}

/// Applies `write`, records its request status and returns the request id.
fn apply(account: &mut Account, write: Write) -> String {
    let id = request_id(account.requests.len() + 1);
    let (action, success, status, alias) = match write {
        Write::Create { alias, message, description, priority, details, tags } => {
            if let Some(open) =
                account.alerts.iter_mut().find(|a| a.alias == alias && a.status == "open")
            {
                open.count += 1;
            } else {
                let n = account.alerts.len() + 1;
                account.alerts.push(OpsgenieAlert {
                    id: format!("{n:08x}-a1e7-4000-8000-{n:012x}"),
                    alias: alias.clone(),
                    message,
                    description,
                    priority,
                    status: "open".to_owned(),
                    count: 1,
                    details,
                    tags,
                    notes: Vec::new(),
                });
            }
            ("Create", true, "Created alert".to_owned(), alias)
        }
        Write::Note { identifier, kind, note } => {
            match find(&mut account.alerts, &identifier, kind.as_deref()) {
                Some(alert) => {
                    alert.notes.push(note);
                    ("AddNote", true, "Added note".to_owned(), alert.alias.clone())
                }
                None => ("AddNote", false, "Alert does not exist".to_owned(), identifier),
            }
        }
        Write::Close { identifier, kind, note } => {
            match find(&mut account.alerts, &identifier, kind.as_deref()) {
                Some(alert) => {
                    alert.status = "closed".to_owned();
                    if !note.is_empty() {
                        alert.notes.push(note);
                    }
                    ("Close", true, "Closed alert".to_owned(), alert.alias.clone())
                }
                None => ("Close", false, "Alert does not exist".to_owned(), identifier),
            }
        }
    };
    account.requests.push(OpsgenieRequest {
        id: id.clone(),
        action: action.to_owned(),
        success,
        status,
        alias,
        polls: 0,
    });
    id
}

/// Reads and parses a write's JSON body, or Opsgenie's answer to a broken one.
async fn read_json(body: Body) -> Result<(bytes::Bytes, Value), Box<Response>> {
    let bytes = axum::body::to_bytes(body, crate::server::BODY_LIMIT)
        .await
        .map_err(|_| Box::new(error(413, "Request body is too large")))?;
    let value =
        serde_json::from_slice(&bytes).map_err(|_| Box::new(error(400, "Invalid JSON body")))?;
    Ok((bytes, value))
}

/// Runs the fault plan for one write keyed by `key`, applies it when it stores, and
/// answers as Opsgenie does.
async fn planned_write(
    shared: &Shared,
    name: &str,
    key: Option<&str>,
    record: Record,
    write: Write,
) -> Response {
    let Some(endpoint) = shared.endpoints.get(name) else { return error(404, "No such endpoint") };
    let record = endpoint.plan.record.then_some(record);
    let (outcome, entry) = endpoint.handle(key, record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    let stores = !matches!(outcome, Outcome::Rejected(_) | Outcome::Throttled { .. });
    let id =
        if stores { shared.opsgenie.lock(name).map(|mut a| apply(&mut a, write)) } else { None };
    shared.notify_change();
    let Some(outcome) = crate::server::wait_out(shared, endpoint, outcome).await else {
        return crate::server::drop_connection();
    };
    match outcome {
        Outcome::Accepted { .. } => answer(
            StatusCode::ACCEPTED,
            &json!({"result": "Request will be processed", "took": 0.107, "requestId": id}),
        ),
        Outcome::Rejected(status) | Outcome::StoredThenRejected(status) => injected(status),
        Outcome::Throttled { .. } => injected(429),
        Outcome::Reset | Outcome::Hang | Outcome::Delayed { .. } => {
            crate::server::drop_connection()
        }
    }
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&headers) {
        return error(401, "Could not authenticate");
    }
    let (bytes, value) = match read_json(body).await {
        Ok(parsed) => parsed,
        Err(response) => return *response,
    };
    let text =
        |field: &str| value.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
    let message = text("message");
    if message.trim().is_empty() {
        return unprocessable("message", "Message can not be empty.");
    }
    let alias = text("alias");
    if alias.chars().count() > ALIAS_LIMIT {
        return unprocessable("alias", "Alias can not be longer than 512 characters.");
    }
    let priority = value.get("priority").and_then(Value::as_str).unwrap_or("P3").to_owned();
    if !matches!(priority.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") {
        return unprocessable(
            "priority",
            "Priority should be one of these: 'P1', 'P2', 'P3', 'P4', 'P5'",
        );
    }
    let details = value.get("details").cloned().unwrap_or_else(|| json!({}));
    let tags = value
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let key = details
        .get("herald_delivery")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| (!alias.is_empty()).then(|| alias.clone()));
    let write = Write::Create {
        alias,
        message: cut(&message, MESSAGE_LIMIT),
        description: cut(&text("description"), DESCRIPTION_LIMIT),
        priority,
        details,
        tags,
    };
    planned_write(&shared, &name, key.as_deref(), Record { headers, body: bytes }, write).await
}

/// The herald delivery id on a `herald-<id>` line of a note, else `fallback`.
fn note_key(note: &str, fallback: &str) -> String {
    note.lines()
        .rev()
        .find_map(|l| {
            l.trim().strip_prefix("herald-").filter(|id| !id.is_empty() && !id.contains(' '))
        })
        .map_or_else(|| fallback.to_owned(), str::to_owned)
}

async fn add_note(
    State(shared): State<Arc<Shared>>,
    Path((name, identifier)): Path<(String, String)>,
    Query(query): Query<Identifier>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&headers) {
        return error(401, "Could not authenticate");
    }
    let (bytes, value) = match read_json(body).await {
        Ok(parsed) => parsed,
        Err(response) => return *response,
    };
    let note = value.get("note").and_then(Value::as_str).unwrap_or_default();
    if note.trim().is_empty() {
        return unprocessable("note", "Note can not be empty.");
    }
    let key = note_key(note, &identifier);
    let write =
        Write::Note { identifier, kind: query.identifier_type, note: cut(note, NOTE_LIMIT) };
    planned_write(&shared, &name, Some(&key), Record { headers, body: bytes }, write).await
}

async fn close(
    State(shared): State<Arc<Shared>>,
    Path((name, identifier)): Path<(String, String)>,
    Query(query): Query<Identifier>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&headers) {
        return error(401, "Could not authenticate");
    }
    let (bytes, value) = match read_json(body).await {
        Ok(parsed) => parsed,
        Err(response) => return *response,
    };
    let note = value.get("note").and_then(Value::as_str).unwrap_or_default();
    let key = note_key(note, &identifier);
    let write =
        Write::Close { identifier, kind: query.identifier_type, note: cut(note, NOTE_LIMIT) };
    planned_write(&shared, &name, Some(&key), Record { headers, body: bytes }, write).await
}

fn alert_json(alert: &OpsgenieAlert) -> Value {
    json!({
        "id": alert.id,
        "alias": alert.alias,
        "message": alert.message,
        "description": alert.description,
        "status": alert.status,
        "priority": alert.priority,
        "count": alert.count,
        "tags": alert.tags,
        "details": alert.details,
    })
}

async fn get_alert(
    State(shared): State<Arc<Shared>>,
    Path((name, identifier)): Path<(String, String)>,
    Query(query): Query<Identifier>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return error(401, "Could not authenticate");
    }
    let Some(mut account) = shared.opsgenie.lock(&name) else {
        return error(404, "No such endpoint");
    };
    match find(&mut account.alerts, &identifier, query.identifier_type.as_deref()) {
        Some(alert) => answer(
            StatusCode::OK,
            &json!({"data": alert_json(alert), "took": 0.004, "requestId": request_id(0)}),
        ),
        None => error(404, "Alert does not exist"),
    }
}

async fn list_notes(
    State(shared): State<Arc<Shared>>,
    Path((name, identifier)): Path<(String, String)>,
    Query(query): Query<Identifier>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return error(401, "Could not authenticate");
    }
    let Some(mut account) = shared.opsgenie.lock(&name) else {
        return error(404, "No such endpoint");
    };
    match find(&mut account.alerts, &identifier, query.identifier_type.as_deref()) {
        Some(alert) => {
            let notes: Vec<Value> = alert
                .notes
                .iter()
                .enumerate()
                .rev()
                .map(|(i, note)| json!({"note": note, "owner": "herald", "offset": i.to_string()}))
                .collect();
            answer(
                StatusCode::OK,
                &json!({"data": notes, "took": 0.004, "requestId": request_id(0)}),
            )
        }
        None => error(404, "Alert does not exist"),
    }
}

async fn request_status(
    State(shared): State<Arc<Shared>>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return error(401, "Could not authenticate");
    }
    let Some(mut account) = shared.opsgenie.lock(&name) else {
        return error(404, "No such endpoint");
    };
    let lag = account.lag;
    let account = &mut *account;
    let (alerts, requests) = (&account.alerts, &mut account.requests);
    let Some(request) = requests.iter_mut().find(|r| r.id == id) else {
        return error(404, "Request not found. It might not be processed, yet.");
    };
    request.polls += 1;
    if request.polls <= lag {
        let mut response = error(404, "Request not found. It might not be processed, yet.");
        response.headers_mut().insert(
            HeaderName::from_static("x-opsgenie-errortype"),
            HeaderValue::from_static("RequestNotProcessed"),
        );
        return response;
    }
    let alert_id = alerts.iter().rev().find(|a| a.alias == request.alias).map(|a| a.id.clone());
    answer(
        StatusCode::OK,
        &json!({
            "data": {
                "success": request.success,
                "action": request.action,
                "isSuccess": request.success,
                "status": request.status,
                "alertId": alert_id,
                "alias": request.alias,
            },
            "took": 0.022,
            "requestId": request_id(0),
        }),
    )
}
