//! Microsoft Teams dialects: a Workflows webhook ("When a Teams webhook request is
//! received") and Microsoft Graph channel messages with the Microsoft identity platform's
//! token endpoint, following shared/DESTINATIONS.md §3a and §3c.
//!
//! - Workflows, `POST /teams-workflow/{name}`: `202 Accepted` with an empty body (the flow
//!   run was queued; nothing confirms the post), Power Automate's JSON error bodies for
//!   failures, `413` over 28 KB.
//! - Token endpoint, `POST /login/{name}/{tenant}/oauth2/v2.0/token` (form-encoded
//!   `grant_type=refresh_token`): a bearer access token that expires after the endpoint's
//!   token lifetime and a new refresh token; `400 invalid_grant` (`AADSTS70000`) for an
//!   unknown or revoked refresh token.
//! - Graph, under `/graph/{name}/v1.0`: `POST …/teams/{team}/channels/{channel}/messages`
//!   and `…/messages/{id}/replies` answer `201` with the chatMessage; `GET` of both lists
//!   newest first (`$top`, at most 50, `@odata.nextLink` when there is more); `401
//!   InvalidAuthenticationToken` for a missing, unknown or expired token; `404 NotFound`
//!   for an unknown team, channel or message.
//!
//! Every endpoint name given to [`Simulator::start`](crate::Simulator::start) also answers
//! in these dialects, and the POSTs follow its [`FaultPlan`](crate::FaultPlan): the key
//! passed to the plan is the herald delivery id read from the message's marker
//! (`herald:{delivery id}`, see [`marker_key`]), so `copies_of(name, delivery_id)` counts
//! what the channel holds. Real Teams never deduplicates: use `dedupe(false)` plans.
//! Token requests and `GET`s are not subject to the plan.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::server::{drop_connection, json_response};
use crate::state::{Endpoint, Outcome, Record};
use crate::{Shared, SimView};

/// The refresh token every simulated tenant accepts until it is rotated away.
pub const GRAPH_REFRESH_TOKEN: &str = "sim-refresh-token";

/// The team id the simulated Graph knows.
pub const GRAPH_TEAM_ID: &str = "team-0001";

/// The channel id the simulated Graph knows (Teams' `19:…@thread.tacv2` form).
pub const GRAPH_CHANNEL_ID: &str = "19:sim-channel@thread.tacv2";

/// Default lifetime of an access token (`expires_in`), as Entra ID's usual hour.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Power Automate refuses request bodies over about 28 KB (DESTINATIONS.md §3a).
const WORKFLOW_BODY_LIMIT: usize = 28 * 1024;

/// Graph refuses chatMessage bodies over about 28 KB (DESTINATIONS.md §3c).
const GRAPH_CONTENT_LIMIT: usize = 28 * 1024;

/// Most items one list request returns (Graph caps `$top` at 50 for channel messages).
const MAX_TOP: usize = 50;

/// Largest request body read.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The Teams state of all endpoints, created per endpoint name on first use.
#[derive(Default)]
pub(crate) struct TeamsState {
    graphs: Mutex<HashMap<String, Graph>>,
    /// Message ids count up from here (Graph's ids are epoch-millisecond strings).
    next_id: AtomicU64,
}

/// One simulated tenant + channel.
struct Graph {
    token_lifetime: Duration,
    rotate_refresh_tokens: bool,
    refresh_tokens: HashSet<String>,
    access_tokens: HashMap<String, tokio::time::Instant>,
    token_requests: u64,
    issued: u64,
    messages: Vec<GraphMessage>,
    workflow_cards: Vec<Value>,
}

impl Default for Graph {
    fn default() -> Self {
        Graph {
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            rotate_refresh_tokens: false,
            refresh_tokens: HashSet::from([GRAPH_REFRESH_TOKEN.to_owned()]),
            access_tokens: HashMap::new(),
            token_requests: 0,
            issued: 0,
            messages: Vec::new(),
            workflow_cards: Vec::new(),
        }
    }
}

/// A channel message as the simulated Graph holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphMessage {
    /// Graph's id (the remote ref herald records).
    pub id: String,
    /// The root message's id for a reply, `None` for a root message.
    pub reply_to_id: Option<String>,
    /// `body.content` as posted.
    pub content: String,
    /// `body.contentType` as posted (`html` or `text`).
    pub content_type: String,
    /// The herald delivery id read from the marker, if any.
    pub key: Option<String>,
    /// `createdDateTime`, RFC 3339 UTC.
    pub created: String,
    /// Replies, oldest first (always empty on a reply).
    pub replies: Vec<GraphMessage>,
    /// When it was stored, on tokio's clock: lists show it only `search_lag` later.
    stored_at: tokio::time::Instant,
}

impl GraphMessage {
    fn to_json(&self, team: &str, channel: &str) -> Value {
        json!({
            "id": self.id,
            "replyToId": self.reply_to_id,
            "etag": self.id,
            "messageType": "message",
            "createdDateTime": self.created,
            "lastModifiedDateTime": self.created,
            "deletedDateTime": null,
            "subject": null,
            "importance": "normal",
            "channelIdentity": { "teamId": team, "channelId": channel },
            "from": { "user": { "id": "sim-user", "displayName": "herald service user" } },
            "body": { "contentType": self.content_type, "content": self.content },
            "attachments": [],
            "mentions": [],
            "reactions": [],
        })
    }
}

impl TeamsState {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Graph>> {
        self.graphs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Graph) -> R) -> R {
        let mut graphs = self.lock();
        f(graphs.entry(name.to_owned()).or_default())
    }

    fn next_message_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        (1_700_000_000_000_u64 + n).to_string()
    }
}

/// The herald delivery id in a marker `herald:{id}` anywhere in `text`, if any.
///
/// The id is the longest run of ASCII letters, digits, `_` and `-` after the prefix.
pub fn marker_key(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(at) = rest.find("herald:") {
        let tail = &rest[at + "herald:".len()..];
        let len = tail
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            .count();
        if len > 0 {
            return Some(tail[..len].to_owned());
        }
        rest = tail;
    }
    None
}

/// The routes of both dialects, merged into the simulator's router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/teams-workflow/{name}", post(workflow))
        .route("/login/{name}/{tenant}/oauth2/v2.0/token", post(token))
        .route(
            "/graph/{name}/v1.0/teams/{team}/channels/{channel}/messages",
            post(post_message).get(list_messages),
        )
        .route(
            "/graph/{name}/v1.0/teams/{team}/channels/{channel}/messages/{id}/replies",
            post(post_reply).get(list_replies),
        )
}

// ---- Workflows ----

/// A Power Automate error body: `{"error":{"code":…,"message":…}}`.
fn flow_error(status: u16, code: &str, message: &str) -> Response {
    json_response(status_code(status), &json!({ "error": { "code": code, "message": message } }))
}

fn flow_error_code(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("InvalidRequestContent", "The request content is not valid."),
        401 => ("DirectApiAuthorizationRequired", "The request must be authenticated."),
        403 => ("AuthorizationFailed", "The signature does not grant access to this workflow."),
        404 => ("WorkflowNotFound", "The workflow could not be found."),
        413 => ("RequestEntityTooLarge", "Request Entity too large."),
        429 => ("WorkflowRequestsThrottled", "Number of requests exceeded the limit."),
        500..=599 => ("ServiceUnavailable", "The service is temporarily unavailable."),
        _ => ("BadRequest", "The request failed."),
    }
}

async fn workflow(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    request: Request<Body>,
) -> Response {
    let Some(endpoint) = shared.endpoints.get(&name) else {
        return flow_error(404, "WorkflowNotFound", "The workflow could not be found.");
    };
    let (mut parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return flow_error(400, "InvalidRequestContent", "The request body could not be read.");
    };
    if body.len() > WORKFLOW_BODY_LIMIT {
        return flow_error(413, "RequestEntityTooLarge", "Request Entity too large.");
    }
    let Ok(card) = serde_json::from_slice::<Value>(&body) else {
        return flow_error(400, "InvalidRequestContent", "The request content is not valid JSON.");
    };
    let key = marker_key(&String::from_utf8_lossy(&body));
    let stores = stores(endpoint, key.as_deref());
    let record = endpoint
        .plan
        .record
        .then(|| Record { headers: std::mem::take(&mut parts.headers), body: body.clone() });
    let (outcome, entry) = endpoint.handle(key.as_deref(), record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    if stores && stored_outcome(outcome) {
        shared.teams.with(&name, |g| g.workflow_cards.push(card));
    }
    shared.notify_change();
    match settle(&shared, endpoint, outcome).await {
        Settled::Accepted => StatusCode::ACCEPTED.into_response(),
        Settled::Rejected(status) => {
            let (code, message) = flow_error_code(status);
            let mut response = flow_error(status, code, message);
            if status == 429 {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            response
        }
        Settled::Throttled(secs) => {
            let (code, message) = flow_error_code(429);
            let mut response = flow_error(429, code, message);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
        Settled::Dropped => drop_connection(),
    }
}

// ---- shared plumbing ----

/// What remains to answer once the plan's delay or hang is over.
enum Settled {
    Accepted,
    Rejected(u16),
    Throttled(u64),
    Dropped,
}

/// Whether the plan's outcome means the destination kept the message.
fn stored_outcome(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Accepted { .. }
            | Outcome::Delayed { .. }
            | Outcome::Hang
            | Outcome::Reset
            | Outcome::StoredThenRejected(_)
    )
}

/// Whether a message with `key` would be a new copy under the plan (a deduplicating plan
/// keeps only the first copy of a key; real Teams keeps every copy).
fn stores(endpoint: &Endpoint, key: Option<&str>) -> bool {
    !endpoint.plan.dedupe || key.is_none_or(|k| endpoint.copies_of(k) == 0)
}

/// Waits out a hang, delay and latency as the hook dialect does.
async fn settle(shared: &Shared, endpoint: &Endpoint, outcome: Outcome) -> Settled {
    let Some(outcome) = crate::server::wait_out(shared, endpoint, outcome).await else {
        return Settled::Dropped;
    };
    match outcome {
        Outcome::Accepted { .. } => Settled::Accepted,
        Outcome::Rejected(status) | Outcome::StoredThenRejected(status) => {
            Settled::Rejected(status)
        }
        Outcome::Throttled { retry_after_secs } => Settled::Throttled(retry_after_secs),
        Outcome::Reset | Outcome::Hang | Outcome::Delayed { .. } => Settled::Dropped,
    }
}

/// Marks a log entry as ended when dropped (the client gave up or was answered).
struct EndOnDrop<'a> {
    endpoint: &'a Endpoint,
    index: usize,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.endpoint.end(self.index);
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

// ---- token endpoint ----

/// An OAuth2 error body as the Microsoft identity platform sends it.
fn oauth_error(error: &str, code: u32, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
            "timestamp": now_rfc3339(),
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 2;
            }
            (byte, _, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path((name, _tenant)): Path<(String, String)>,
    request: Request<Body>,
) -> Response {
    if !shared.endpoints.contains_key(&name) {
        return oauth_error("invalid_tenant", 90002, "Tenant not found.");
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), BODY_LIMIT).await else {
        return oauth_error("invalid_request", 900144, "The request body could not be read.");
    };
    let form = parse_form(&body);
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let response = shared.teams.with(&name, |graph| {
        graph.token_requests += 1;
        if field("grant_type") != Some("refresh_token") {
            return oauth_error(
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
        if field("client_id").is_none() {
            return oauth_error(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            );
        }
        let Some(scope) = field("scope") else {
            return oauth_error(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            );
        };
        let Some(refresh) = field("refresh_token") else {
            return oauth_error(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'refresh_token'.",
            );
        };
        if !graph.refresh_tokens.contains(refresh) {
            return oauth_error("invalid_grant", 70000, "Provided grant is invalid or malformed.");
        }
        graph.issued += 1;
        let access = format!("sim-access-{name}-{}", graph.issued);
        let expires_at = tokio::time::Instant::now() + graph.token_lifetime;
        graph.access_tokens.insert(access.clone(), expires_at);
        let new_refresh = format!("sim-refresh-{name}-{}", graph.issued);
        if graph.rotate_refresh_tokens {
            graph.refresh_tokens.remove(refresh);
        }
        graph.refresh_tokens.insert(new_refresh.clone());
        let lifetime = graph.token_lifetime.as_secs();
        json_response(
            StatusCode::OK,
            &json!({
                "token_type": "Bearer",
                "scope": scope,
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access,
                "refresh_token": new_refresh,
            }),
        )
    });
    shared.notify_change();
    response
}

// ---- Graph ----

/// A Graph error body: `{"error":{"code":…,"message":…,"innerError":{…}}}`.
fn graph_error(status: u16, code: &str, message: &str) -> Response {
    json_response(
        status_code(status),
        &json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": now_rfc3339(),
                    "request-id": "00000000-0000-0000-0000-000000000000",
                    "client-request-id": "00000000-0000-0000-0000-000000000000",
                }
            }
        }),
    )
}

fn graph_error_code(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("BadRequest", "Invalid request."),
        401 => ("InvalidAuthenticationToken", "Access token validation failure."),
        403 => ("Forbidden", "Forbidden."),
        404 => ("NotFound", "Resource not found."),
        413 => ("RequestEntityTooLarge", "The message is too large."),
        429 => ("TooManyRequests", "Too many requests."),
        500 => ("InternalServerError", "Internal server error."),
        502 => ("BadGateway", "Bad gateway."),
        503 => ("ServiceNotAvailable", "The service is temporarily unavailable."),
        504 => ("GatewayTimeout", "Gateway timeout."),
        _ => ("UnknownError", "The request failed."),
    }
}

/// Checks the bearer token and the team and channel; the error response otherwise.
fn authorize(
    shared: &Shared,
    name: &str,
    team: &str,
    channel: &str,
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    if !shared.endpoints.contains_key(name) {
        return Err(Box::new(graph_error(404, "NotFound", "Unknown simulated tenant.")));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if token.is_empty() {
        return Err(Box::new(graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        )));
    }
    let now = tokio::time::Instant::now();
    let valid = shared
        .teams
        .with(name, |g| g.access_tokens.get(token).is_some_and(|&expires| now < expires));
    if !valid {
        return Err(Box::new(graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        )));
    }
    if team != GRAPH_TEAM_ID {
        return Err(Box::new(graph_error(
            404,
            "NotFound",
            &format!("No team found with Group Id {team}"),
        )));
    }
    if channel != GRAPH_CHANNEL_ID {
        return Err(Box::new(graph_error(404, "NotFound", "Channel not found.")));
    }
    Ok(())
}

async fn post_message(
    State(shared): State<Arc<Shared>>,
    Path((name, team, channel)): Path<(String, String, String)>,
    request: Request<Body>,
) -> Response {
    create(shared, name, team, channel, None, request).await
}

async fn post_reply(
    State(shared): State<Arc<Shared>>,
    Path((name, team, channel, id)): Path<(String, String, String, String)>,
    request: Request<Body>,
) -> Response {
    create(shared, name, team, channel, Some(id), request).await
}

/// Posts a root message (`reply_to` = `None`) or a reply.
async fn create(
    shared: Arc<Shared>,
    name: String,
    team: String,
    channel: String,
    reply_to: Option<String>,
    request: Request<Body>,
) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Err(response) = authorize(&shared, &name, &team, &channel, &parts.headers) {
        return *response;
    }
    let Some(endpoint) = shared.endpoints.get(&name) else {
        return graph_error(404, "NotFound", "Unknown simulated tenant.");
    };
    if let Some(root) = &reply_to {
        let exists = shared.teams.with(&name, |g| g.messages.iter().any(|m| &m.id == root));
        if !exists {
            return graph_error(404, "NotFound", "Message not found.");
        }
    }
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return graph_error(400, "BadRequest", "The request body could not be read.");
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let content = parsed
        .as_ref()
        .and_then(|v| v.pointer("/body/content"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(content) = content.filter(|c| !c.is_empty()) else {
        return graph_error(400, "BadRequest", "Missing body content.");
    };
    if content.len() > GRAPH_CONTENT_LIMIT {
        return graph_error(413, "RequestEntityTooLarge", "The message is too large.");
    }
    let content_type = parsed
        .as_ref()
        .and_then(|v| v.pointer("/body/contentType"))
        .and_then(Value::as_str)
        .unwrap_or("text")
        .to_owned();
    let key = marker_key(&content);
    let stores = stores(endpoint, key.as_deref());
    let record = endpoint
        .plan
        .record
        .then(|| Record { headers: std::mem::take(&mut parts.headers), body: body.clone() });
    let (outcome, entry) = endpoint.handle(key.as_deref(), record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    let stored = (stores && stored_outcome(outcome)).then(|| {
        let message = GraphMessage {
            id: shared.teams.next_message_id(),
            reply_to_id: reply_to.clone(),
            content,
            content_type,
            key: key.clone(),
            created: now_rfc3339(),
            replies: Vec::new(),
            stored_at: tokio::time::Instant::now(),
        };
        shared.teams.with(&name, |g| match &reply_to {
            Some(root) => {
                if let Some(m) = g.messages.iter_mut().find(|m| &m.id == root) {
                    m.replies.push(message.clone());
                }
            }
            None => g.messages.push(message.clone()),
        });
        message
    });
    // A duplicate under a deduplicating plan answers with the copy already held.
    let answer = stored.or_else(|| {
        let key = key.as_deref()?;
        shared.teams.with(&name, |g| {
            let mut all = g.messages.iter().flat_map(|m| std::iter::once(m).chain(&m.replies));
            all.rfind(|m| m.key.as_deref() == Some(key)).cloned()
        })
    });
    shared.notify_change();
    match settle(&shared, endpoint, outcome).await {
        Settled::Accepted => match answer {
            Some(message) => json_response(StatusCode::CREATED, &message.to_json(&team, &channel)),
            None => graph_error(500, "InternalServerError", "The message was not kept."),
        },
        Settled::Rejected(status) => {
            let (code, message) = graph_error_code(status);
            let mut response = graph_error(status, code, message);
            if status == 429 {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            response
        }
        Settled::Throttled(secs) => {
            let (code, message) = graph_error_code(429);
            let mut response = graph_error(429, code, message);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
        Settled::Dropped => drop_connection(),
    }
}

/// Lists show copies stored at or before this instant (the plan's `search_lag` ago).
fn visible_since(shared: &Shared, name: &str) -> tokio::time::Instant {
    let lag = shared.endpoints.get(name).map_or(Duration::ZERO, |e| e.plan.search_lag);
    let now = tokio::time::Instant::now();
    now.checked_sub(lag).unwrap_or(now)
}

/// `$top` clamped to 1..=50 (default 20, as Graph's page size).
fn top(query: &HashMap<String, String>) -> usize {
    query.get("$top").and_then(|t| t.parse::<usize>().ok()).unwrap_or(20).clamp(1, MAX_TOP)
}

/// A list page: the newest `top` of `items`, with a next link when more remain.
fn page(items: Vec<Value>, top: usize, more_url: &str) -> Response {
    let more = items.len() > top;
    let value: Vec<Value> = items.into_iter().take(top).collect();
    let mut body = json!({ "@odata.count": value.len(), "value": value });
    if more {
        body["@odata.nextLink"] = Value::String(more_url.to_owned());
    }
    json_response(StatusCode::OK, &body)
}

async fn list_messages(
    State(shared): State<Arc<Shared>>,
    Path((name, team, channel)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&shared, &name, &team, &channel, &headers) {
        return *response;
    }
    let visible = visible_since(&shared, &name);
    let items = shared.teams.with(&name, |g| {
        let shown = g.messages.iter().rev().filter(|m| m.stored_at <= visible);
        shown.map(|m| m.to_json(&team, &channel)).collect::<Vec<_>>()
    });
    // Paging beyond the first page is not simulated: the link only says there is more.
    page(items, top(&query), "about:blank#more")
}

async fn list_replies(
    State(shared): State<Arc<Shared>>,
    Path((name, team, channel, id)): Path<(String, String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&shared, &name, &team, &channel, &headers) {
        return *response;
    }
    let items = shared.teams.with(&name, |g| {
        g.messages
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.replies.iter().rev().map(|r| r.to_json(&team, &channel)).collect::<Vec<_>>())
    });
    match items {
        Some(items) => page(items, top(&query), "about:blank#more"),
        None => graph_error(404, "NotFound", "Message not found."),
    }
}

// ---- time ----

/// Now as RFC 3339 UTC with milliseconds (Graph's `createdDateTime` form).
#[allow(clippy::disallowed_methods, reason = "a simulated destination stamps wall time")]
fn now_rfc3339() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    rfc3339(since)
}

/// `since_epoch` as `YYYY-MM-DDTHH:MM:SS.mmmZ`, as Graph writes `createdDateTime`.
fn rfc3339(since_epoch: Duration) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + since_epoch).to_string()
}

// ---- test accessors ----

impl SimView {
    /// The Workflows webhook URL of endpoint `name`: `http://127.0.0.1:PORT/teams-workflow/{name}`.
    pub fn teams_workflow_url(&self, name: &str) -> String {
        format!("http://{}/teams-workflow/{name}", self.shared.addr)
    }

    /// The Graph base URL of endpoint `name` (`base_url`): `http://…/graph/{name}/v1.0`.
    pub fn graph_base_url(&self, name: &str) -> String {
        format!("http://{}/graph/{name}/v1.0", self.shared.addr)
    }

    /// The login URL of endpoint `name` (`login_url`): `http://…/login/{name}`; the token
    /// endpoint is `{login_url}/{tenant}/oauth2/v2.0/token` for any tenant.
    pub fn graph_login_url(&self, name: &str) -> String {
        format!("http://{}/login/{name}", self.shared.addr)
    }

    /// The cards a Workflows endpoint kept (every copy, in order), as JSON.
    pub fn teams_workflow_cards(&self, name: &str) -> Vec<Value> {
        self.shared.teams.with(name, |g| g.workflow_cards.clone())
    }

    /// The channel's root messages, oldest first, each with its replies.
    pub fn graph_messages(&self, name: &str) -> Vec<GraphMessage> {
        self.shared.teams.with(name, |g| g.messages.clone())
    }

    /// How many requests reached the token endpoint of `name` (good or bad).
    pub fn graph_token_requests(&self, name: &str) -> u64 {
        self.shared.teams.with(name, |g| g.token_requests)
    }

    /// Sets the lifetime (`expires_in`) of access tokens issued from now on.
    pub fn graph_set_token_lifetime(&self, name: &str, lifetime: Duration) {
        self.shared.teams.with(name, |g| g.token_lifetime = lifetime);
    }

    /// Makes every access token issued so far invalid (Graph answers 401 to them), as
    /// when a token is revoked or expires early.
    pub fn graph_expire_tokens(&self, name: &str) {
        self.shared.teams.with(name, |g| g.access_tokens.clear());
    }

    /// When on, each token response revokes the refresh token it was given, so only the
    /// newest one works (a client must keep the new `refresh_token`).
    pub fn graph_rotate_refresh_tokens(&self, name: &str, on: bool) {
        self.shared.teams.with(name, |g| g.rotate_refresh_tokens = on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_anywhere() {
        assert_eq!(marker_key("<p>x</p><span title=\"herald:d_01AB-c\">"), Some("d_01AB-c".into()));
        assert_eq!(marker_key("herald: herald:d_1"), Some("d_1".into()));
        assert_eq!(marker_key("no marker"), None);
    }

    #[test]
    fn form_bodies_decode() {
        let form = parse_form(b"grant_type=refresh_token&scope=a%20b+c&x=%zz&y=%4");
        assert_eq!(form["grant_type"], "refresh_token");
        assert_eq!(form["scope"], "a b c");
        assert_eq!(form["x"], "%zz");
        assert_eq!(form["y"], "%4");
    }

    #[test]
    fn rfc3339_formats_civil_dates() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(Duration::from_millis(951_827_696_789)), "2000-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(Duration::from_secs(1_798_761_600)), "2027-01-01T00:00:00.000Z");
    }
}
