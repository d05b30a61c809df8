//! The Slack dialect: the Web API at `/slack/{name}/api/{method}` and incoming webhooks at
//! `/slack-hook/{name}`, following shared/DESTINATIONS.md §1 and §2.
//!
//! Each endpoint name is one Slack workspace with any number of channels, using the
//! endpoint's [`FaultPlan`](crate::FaultPlan) for `chat.postMessage` and `chat.update`
//! (rate limit, hangs, resets, failures). The herald delivery id in a message's
//! `metadata.event_payload.delivery_id` is the key the fault plan and
//! [`SimView::copies_of`] count by; real Slack does not deduplicate, so tests use
//! `FaultPlan::healthy().dedupe(false)`.
//!
//! Conventions (no real workspace to configure):
//!
//! - **Tokens**: `Authorization: Bearer <token>` (or a `token` argument). Missing →
//!   `not_authed`; `xoxb-bad` or a token not starting with `xox` → `invalid_auth`;
//!   `xoxb-revoked` → `token_revoked`; `xoxb-inactive` → `account_inactive`;
//!   `xoxb-noscope` → `missing_scope`; any other `xox…` token is valid.
//! - **Channels**: every channel id exists except ids starting with `CMISSING`
//!   (`channel_not_found`), `CNOTIN` (`not_in_channel`) and `CARCHIVED` (`is_archived`).
//! - **Answers**: HTTP 200 with `{"ok":false,"error":…}` for every API error, as Slack does;
//!   the rate limit answers HTTP 429 `{"ok":false,"error":"ratelimited"}` with
//!   `Retry-After`. A fault plan's failure status `s` is rendered as: 200 →
//!   `internal_error` (HTTP 200), 429 → `ratelimited`, 408 → `request_timeout`, 5xx →
//!   HTTP `s` with `service_unavailable`, other → HTTP `s` with `invalid_arguments`.
//! - **Reads** (`conversations.history`, `conversations.replies`) do not go through the
//!   fault plan; they have their own optional bucket ([`SimView::slack_rate_limit_reads`]).
//! - **Scripted faults** ([`SimView::slack_inject`]): the next call of a method gets a
//!   given status and error, optionally after storing the message (`internal_error` after
//!   the post landed).
//! - **Incoming webhooks** carry no id: the key a hook post is counted under is
//!   [`slack_hook_key`] of its `text`; errors are a status plus a short text body.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Map, Value, json};

use crate::server::{drop_connection, json_response, status_code};
use crate::state::{Endpoint, Outcome, Record, TokenBucket, ceil_secs};
use crate::{Shared, SimView};

/// Largest request body the dialect reads.
const BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Slack truncates `text` longer than this (with the warning `message_truncated`).
pub(crate) const TEXT_LIMIT: usize = 40_000;
/// The most blocks a message may have.
pub(crate) const MAX_BLOCKS: usize = 50;
/// The longest text of a section block.
pub(crate) const SECTION_TEXT_LIMIT: usize = 3_000;
/// The longest text of a header block.
pub(crate) const HEADER_TEXT_LIMIT: usize = 150;
/// The longest text of one section field.
pub(crate) const FIELD_TEXT_LIMIT: usize = 2_000;
/// The most fields of a section block, and the most elements of a context block.
pub(crate) const MAX_FIELDS: usize = 10;
/// Observed (not documented) limit on the text of all blocks together: beyond it Slack
/// answers `msg_blocks_too_long` (slackapi/bolt-js#2509 measured ~13,200 characters).
pub(crate) const BLOCKS_TOTAL_LIMIT: usize = 13_000;
/// The bot id every simulated message is posted as.
pub(crate) const BOT_ID: &str = "B0HERALDSIM";

/// One message in a simulated channel, with its thread replies.
#[derive(Clone, Debug, PartialEq)]
pub struct SlackMessage {
    /// The channel id.
    pub channel: String,
    /// Its timestamp, the message's id within the channel.
    pub ts: String,
    /// Its (possibly truncated or edited) `text`.
    pub text: String,
    /// Its `blocks`, if any.
    pub blocks: Option<Value>,
    /// Its `metadata`, if any.
    pub metadata: Option<Value>,
    /// The parent's ts for a thread reply.
    pub thread_ts: Option<String>,
    /// How many times `chat.update` changed it.
    pub edits: u32,
    /// Thread replies, oldest first (empty for replies themselves).
    pub replies: Vec<SlackMessage>,
}

impl SlackMessage {
    /// The `metadata.event_payload.delivery_id`, if any.
    pub fn delivery_id(&self) -> Option<&str> {
        self.metadata.as_ref().and_then(metadata_key)
    }
}

/// One post an incoming webhook took.
#[derive(Clone, Debug, PartialEq)]
pub struct SlackHookPost {
    /// Its `text`.
    pub text: String,
    /// Its `blocks`, if any.
    pub blocks: Option<Value>,
}

/// Counters of one Slack endpoint beyond the fault plan's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlackStats {
    /// `conversations.history` calls (including throttled ones).
    pub history_calls: u64,
    /// `conversations.replies` calls (including throttled ones).
    pub replies_calls: u64,
    /// Read calls answered 429 by the read bucket.
    pub reads_throttled: u64,
    /// Calls refused for their token or channel.
    pub refused: u64,
    /// Scripted faults answered.
    pub injected: u64,
}

/// A scripted answer for the next call of one method ([`SimView::slack_inject`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackFault {
    /// The method (`chat.postMessage`, `chat.update`, `conversations.history`,
    /// `conversations.replies`) or `hook` for the incoming webhook.
    pub method: String,
    /// The HTTP status to answer.
    pub status: u16,
    /// The Slack error code (`error` field, or the webhook's text body).
    pub error: String,
    /// Store the message first (an answer that lies about a post that landed).
    pub store: bool,
    /// `Retry-After` seconds to send, if any.
    pub retry_after: Option<u64>,
}

impl SlackFault {
    /// `error` answered with `status` to the next call of `method`, nothing stored.
    pub fn new(method: &str, status: u16, error: &str) -> SlackFault {
        SlackFault {
            method: method.to_owned(),
            status,
            error: error.to_owned(),
            store: false,
            retry_after: None,
        }
    }

    /// Store the message before answering.
    pub fn after_storing(mut self) -> SlackFault {
        self.store = true;
        self
    }

    /// Send `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> SlackFault {
        self.retry_after = Some(secs);
        self
    }
}

/// The key an incoming-webhook post with this `text` is counted under in
/// [`SimView::copies_of`] (webhook posts carry no id, so identical texts are one message).
pub fn slack_hook_key(text: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    format!("slack-hook-{:016x}", hasher.finish())
}

/// One stored message, replies included, in order of ts.
#[derive(Clone, Debug)]
struct Stored {
    channel: String,
    ts: String,
    text: String,
    blocks: Option<Value>,
    metadata: Option<Value>,
    thread_ts: Option<String>,
    edits: u32,
}

impl Stored {
    fn to_json(&self, with_metadata: bool, reply_count: Option<usize>) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!("message"));
        m.insert("subtype".into(), json!("bot_message"));
        m.insert("bot_id".into(), json!(BOT_ID));
        m.insert("text".into(), json!(self.text));
        m.insert("ts".into(), json!(self.ts));
        if let Some(blocks) = &self.blocks {
            m.insert("blocks".into(), blocks.clone());
        }
        if let Some(thread_ts) = &self.thread_ts {
            m.insert("thread_ts".into(), json!(thread_ts));
        } else if let Some(n) = reply_count.filter(|n| *n > 0) {
            m.insert("thread_ts".into(), json!(self.ts));
            m.insert("reply_count".into(), json!(n));
        }
        if self.edits > 0 {
            m.insert("edited".into(), json!({ "user": BOT_ID, "ts": self.ts }));
        }
        if with_metadata && let Some(metadata) = &self.metadata {
            m.insert("metadata".into(), metadata.clone());
        }
        Value::Object(m)
    }
}

/// One workspace's state.
#[derive(Default)]
struct Workspace {
    messages: Vec<Stored>,
    hook_posts: Vec<SlackHookPost>,
    last_micros: u64,
    faults: VecDeque<SlackFault>,
    reads: Option<(TokenBucket, Duration)>,
    stats: SlackStats,
}

impl Workspace {
    /// A fresh ts from the wall clock, strictly after every earlier one.
    fn next_ts(&mut self) -> String {
        // A stand-in for a remote server stamps with its own wall clock, as Slack does:
        // herald compares its look-up window (from its own clock) against these.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let micros = now.max(self.last_micros.saturating_add(1));
        self.last_micros = micros;
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }

    fn take_fault(&mut self, method: &str) -> Option<SlackFault> {
        let index = self.faults.iter().position(|f| f.method == method)?;
        self.stats.injected += 1;
        self.faults.remove(index)
    }

    fn find(&self, channel: &str, ts: &str) -> Option<usize> {
        self.messages.iter().position(|m| m.channel == channel && m.ts == ts)
    }

    fn reply_count(&self, channel: &str, ts: &str) -> usize {
        self.messages
            .iter()
            .filter(|m| m.channel == channel && m.thread_ts.as_deref() == Some(ts))
            .count()
    }
}

/// The dialect's state for every endpoint, created on first use.
#[derive(Default)]
pub(crate) struct SlackState {
    workspaces: Mutex<HashMap<String, Workspace>>,
}

impl SlackState {
    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Workspace) -> R) -> R {
        let mut guard: MutexGuard<'_, HashMap<String, Workspace>> =
            self.workspaces.lock().unwrap_or_else(PoisonError::into_inner);
        f(guard.entry(name.to_owned()).or_default())
    }
}

/// The dialect's routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/slack/{name}/api/{method}", any(web_api))
        .route("/slack-hook/{name}", post(hook))
}

/// A Slack API answer: HTTP 200 and `{"ok":false,"error":error}`.
fn api_error(error: &str) -> Response {
    json_response(StatusCode::OK, &json!({ "ok": false, "error": error }))
}

fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

fn ratelimited(retry_after_secs: u64) -> Response {
    with_retry_after(
        json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({ "ok": false, "error": "ratelimited" }),
        ),
        retry_after_secs,
    )
}

/// A scripted fault as the Web API answers it.
fn fault_response(fault: &SlackFault) -> Response {
    let response =
        json_response(status_code(fault.status), &json!({ "ok": false, "error": fault.error }));
    match fault.retry_after {
        Some(secs) => with_retry_after(response, secs),
        None if fault.status == 429 => with_retry_after(response, 1),
        None => response,
    }
}

/// A fault plan's failure status as the Web API answers it.
fn rejected(status: u16) -> Response {
    match status {
        200 => api_error("internal_error"),
        429 => ratelimited(1),
        408 => json_response(
            StatusCode::REQUEST_TIMEOUT,
            &json!({ "ok": false, "error": "request_timeout" }),
        ),
        500..=599 => json_response(
            status_code(status),
            &json!({ "ok": false, "error": "service_unavailable" }),
        ),
        _ => json_response(
            status_code(status),
            &json!({ "ok": false, "error": "invalid_arguments" }),
        ),
    }
}

/// The arguments of a call: query string, then a JSON or form body over it.
fn arguments(
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Map<String, Value>> {
    let mut args = Map::new();
    if let Some(query) = uri.query() {
        for (k, v) in form_pairs(query)? {
            args.insert(k, Value::String(v));
        }
    }
    if body.is_empty() {
        return Some(args);
    }
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(body).ok()? {
            Value::Object(m) => args.extend(m),
            _ => return None,
        }
    } else {
        for (k, v) in form_pairs(std::str::from_utf8(body).ok()?)? {
            args.insert(k, Value::String(v));
        }
    }
    Some(args)
}

/// `a=1&b=2` decoded (through axum's own query parser).
fn form_pairs(query: &str) -> Option<Vec<(String, String)>> {
    let uri: axum::http::Uri = format!("/?{query}").parse().ok()?;
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).ok()?;
    Some(pairs)
}

fn arg_str<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn arg_bool(args: &Map<String, Value>, name: &str) -> bool {
    match args.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// A JSON value that may come as a JSON string (form-encoded `blocks`, `metadata`).
fn arg_json(args: &Map<String, Value>, name: &str) -> Result<Option<Value>, ()> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| ()),
        Some(v) => Ok(Some(v.clone())),
    }
}

/// Why the token is refused, if it is.
fn auth_error(headers: &HeaderMap, args: &Map<String, Value>) -> Option<&'static str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = bearer.or_else(|| arg_str(args, "token"));
    match token {
        None | Some("") => Some("not_authed"),
        Some("xoxb-bad") => Some("invalid_auth"),
        Some("xoxb-revoked") => Some("token_revoked"),
        Some("xoxb-inactive") => Some("account_inactive"),
        Some("xoxb-noscope") => Some("missing_scope"),
        Some(t) if !t.starts_with("xox") => Some("invalid_auth"),
        Some(_) => None,
    }
}

/// Why the channel is refused, if it is.
fn channel_error(channel: Option<&str>) -> Option<&'static str> {
    match channel {
        None => Some("channel_not_found"),
        Some(c) if c.starts_with("CMISSING") => Some("channel_not_found"),
        Some(c) if c.starts_with("CNOTIN") => Some("not_in_channel"),
        Some(c) if c.starts_with("CARCHIVED") => Some("is_archived"),
        Some(_) => None,
    }
}

fn metadata_key(metadata: &Value) -> Option<&str> {
    metadata.get("event_payload")?.get("delivery_id")?.as_str()
}

fn valid_metadata(metadata: &Value) -> bool {
    let event_type_ok = metadata.get("event_type").and_then(Value::as_str).is_some_and(|t| {
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    });
    event_type_ok && metadata.get("event_payload").is_some_and(Value::is_object)
}

fn chars(v: Option<&Value>) -> usize {
    v.and_then(Value::as_str).map_or(0, |s| s.chars().count())
}

/// Block Kit limits: `Err(code)` names the Slack error for the first violation.
fn check_blocks(blocks: &Value) -> Result<(), &'static str> {
    let Some(list) = blocks.as_array() else { return Err("invalid_blocks_format") };
    if list.len() > MAX_BLOCKS {
        return Err("invalid_blocks");
    }
    let mut total = 0;
    for block in list {
        let text = block.get("text").and_then(|t| t.get("text"));
        let n = chars(text);
        total += n;
        match block.get("type").and_then(Value::as_str) {
            Some("section") => {
                let fields = block.get("fields").and_then(Value::as_array);
                if text.is_none() && fields.is_none() {
                    return Err("invalid_blocks");
                }
                if n > SECTION_TEXT_LIMIT {
                    return Err("invalid_blocks");
                }
                if let Some(fields) = fields {
                    if fields.len() > MAX_FIELDS {
                        return Err("invalid_blocks");
                    }
                    for f in fields {
                        let n = chars(f.get("text"));
                        if n > FIELD_TEXT_LIMIT {
                            return Err("invalid_blocks");
                        }
                        total += n;
                    }
                }
            }
            Some("header") => {
                if text.is_none() || n > HEADER_TEXT_LIMIT {
                    return Err("invalid_blocks");
                }
            }
            Some("context") => {
                let elements = block.get("elements").and_then(Value::as_array);
                match elements {
                    Some(e) if !e.is_empty() && e.len() <= MAX_FIELDS => {
                        total += e.iter().map(|e| chars(e.get("text"))).sum::<usize>();
                    }
                    _ => return Err("invalid_blocks"),
                }
            }
            Some("divider" | "actions" | "image" | "rich_text" | "markdown") => {}
            _ => return Err("invalid_blocks"),
        }
    }
    if total > BLOCKS_TOTAL_LIMIT {
        return Err("msg_blocks_too_long");
    }
    Ok(())
}

/// A message's content as posted: `(text, blocks, metadata, warning)` or the Slack error.
#[allow(clippy::type_complexity)]
fn content(
    args: &Map<String, Value>,
) -> Result<(Option<String>, Option<Value>, Option<Value>, Option<&'static str>), &'static str> {
    let blocks = arg_json(args, "blocks").map_err(|()| "invalid_blocks_format")?;
    if let Some(blocks) = &blocks {
        check_blocks(blocks)?;
    }
    let metadata = arg_json(args, "metadata").map_err(|()| "invalid_metadata_format")?;
    if let Some(metadata) = &metadata
        && !valid_metadata(metadata)
    {
        return Err("invalid_metadata_format");
    }
    let mut warning = None;
    let text = arg_str(args, "text").map(|t| {
        if t.chars().count() > TEXT_LIMIT {
            warning = Some("message_truncated");
            t.chars().take(TEXT_LIMIT).collect()
        } else {
            t.to_owned()
        }
    });
    if text.is_none() && blocks.as_ref().is_none_or(|b| b.as_array().is_none_or(Vec::is_empty)) {
        return Err("no_text");
    }
    Ok((text, blocks, metadata, warning))
}

/// Marks a log entry as ended when dropped (a request's interval ends when it was answered
/// or its client went away).
struct EndOnDrop<'a> {
    endpoint: &'a Endpoint,
    index: usize,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.endpoint.end(self.index);
    }
}

/// What the fault plan decided for a write, after its hang/delay/latency has played out.
enum Fate {
    /// Answer normally; `stored` says whether this request added a copy.
    Answer { stored: bool },
    /// Answer the plan's failure status.
    Rejected(u16),
    /// Answer 429.
    Throttled(u64),
    /// Close the connection unanswered (the write was applied if `stored`).
    Drop { stored: bool },
    /// Hang until shutdown (the write was applied if `stored`).
    Hang { stored: bool },
    /// The write was applied (if `stored`), then answer the failure: Slack's "may have
    /// succeeded" `internal_error`.
    StoredThenRejected { stored: bool },
}

/// Runs the fault plan for one write keyed by `key`.
fn decide(
    endpoint: &Endpoint,
    key: Option<&str>,
    record: Option<Record>,
) -> (crate::state::Outcome, Option<usize>, bool) {
    let before = key.map(|k| endpoint.copies_of(k));
    let (outcome, entry) = endpoint.handle(key, record);
    let stored = match (key, before) {
        (Some(k), Some(before)) => endpoint.copies_of(k) > before,
        _ => match outcome {
            Outcome::Accepted { anonymous } | Outcome::Delayed { anonymous } => anonymous.is_some(),
            // A keyless request is always its key's first attempt, so these stored.
            Outcome::Reset | Outcome::Hang | Outcome::StoredThenRejected(_) => true,
            Outcome::Rejected(_) | Outcome::Throttled { .. } => false,
        },
    };
    (outcome, entry, stored)
}

fn fate_of(outcome: Outcome, stored: bool) -> Fate {
    match outcome {
        Outcome::Accepted { .. } | Outcome::Delayed { .. } => Fate::Answer { stored },
        Outcome::Rejected(status) => Fate::Rejected(status),
        Outcome::Throttled { retry_after_secs } => Fate::Throttled(retry_after_secs),
        Outcome::Reset => Fate::Drop { stored },
        Outcome::Hang => Fate::Hang { stored },
        Outcome::StoredThenRejected(_) => Fate::StoredThenRejected { stored },
    }
}

/// Plays out the plan's delay and latency; `None` if shutdown came first.
async fn wait_out(shared: &Shared, endpoint: &Endpoint, outcome: Outcome) -> Option<()> {
    if matches!(outcome, Outcome::Delayed { .. }) {
        tokio::select! {
            () = tokio::time::sleep(endpoint.plan.delay) => {}
            () = shared.cancel.cancelled() => return None,
        }
    }
    let latency = endpoint.plan.latency;
    if !latency.is_zero() && !matches!(outcome, Outcome::Hang) {
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            () = shared.cancel.cancelled() => return None,
        }
    }
    Some(())
}

async fn web_api(
    State(shared): State<Arc<Shared>>,
    Path((name, method)): Path<(String, String)>,
    request: Request<Body>,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(endpoint) = shared.endpoints.get(&name) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({ "ok": false, "error": "unknown_endpoint", "endpoint": name }),
        );
    };
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return api_error("invalid_form_data");
    };
    let Some(args) = arguments(&parts.uri, &parts.headers, &body) else {
        return api_error("invalid_arguments");
    };
    let slack = &shared.slack;
    if let Some(fault) = slack.with(&name, |w| w.take_fault(&method)) {
        if fault.store && matches!(method.as_str(), "chat.postMessage" | "chat.update") {
            // Apply the write as a healthy Slack would, then answer the scripted error.
            let response = write(&shared, endpoint, &name, &method, &args, None).await;
            if !response.status().is_success() {
                return response;
            }
        }
        return fault_response(&fault);
    }
    if let Some(error) = auth_error(&parts.headers, &args) {
        slack.with(&name, |w| w.stats.refused += 1);
        return api_error(error);
    }
    if let Some(error) = channel_error(arg_str(&args, "channel")) {
        slack.with(&name, |w| w.stats.refused += 1);
        return api_error(error);
    }
    match method.as_str() {
        "chat.postMessage" | "chat.update" => {
            let record = endpoint.plan.record.then(|| Record {
                headers: std::mem::take(&mut parts.headers),
                body: body.clone(),
            });
            write(&shared, endpoint, &name, &method, &args, record).await
        }
        "conversations.history" | "conversations.replies" => read(&shared, &name, &method, &args),
        _ => api_error("unknown_method"),
    }
}

/// `chat.postMessage` or `chat.update` through the fault plan.
async fn write(
    shared: &Shared,
    endpoint: &Endpoint,
    name: &str,
    method: &str,
    args: &Map<String, Value>,
    record: Option<Record>,
) -> Response {
    let (text, blocks, metadata, warning) = match content(args) {
        Ok(content) => content,
        Err(error) => return api_error(error),
    };
    let channel = arg_str(args, "channel").unwrap_or_default().to_owned();
    let is_update = method == "chat.update";
    let target_ts = if is_update { arg_str(args, "ts") } else { arg_str(args, "thread_ts") };
    // Check the target before the plan decides, as Slack validates before it writes.
    if let Some(ts) = target_ts {
        let found = shared
            .slack
            .with(name, |w| w.find(&channel, ts).map(|i| w.messages[i].thread_ts.is_none()));
        match (found, is_update) {
            (None, true) => return api_error("message_not_found"),
            (None, false) => return api_error("thread_not_found"),
            _ => {}
        }
    } else if is_update {
        return api_error("message_not_found");
    }
    let key = metadata.as_ref().and_then(metadata_key).map(str::to_owned);
    let (outcome, entry, stored) = decide(endpoint, key.as_deref(), record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    let fate = fate_of(outcome, stored);
    // Apply the write now if the plan stored it, whatever the client will hear.
    let applied = match fate {
        Fate::Answer { stored }
        | Fate::Drop { stored }
        | Fate::Hang { stored }
        | Fate::StoredThenRejected { stored, .. } => {
            Some(shared.slack.with(name, |w| {
                if is_update {
                    let ts = target_ts.unwrap_or_default();
                    let i = w.find(&channel, ts)?;
                    let m = &mut w.messages[i];
                    if stored || key.is_none() {
                        if let Some(text) = &text {
                            m.text = text.clone();
                        }
                        if blocks.is_some() {
                            m.blocks = blocks.clone();
                        }
                        if metadata.is_some() {
                            m.metadata = metadata.clone();
                        }
                        m.edits += 1;
                    }
                    Some(m.clone())
                } else if stored || key.is_none() {
                    let ts = w.next_ts();
                    let m = Stored {
                        channel: channel.clone(),
                        ts,
                        text: text.clone().unwrap_or_default(),
                        blocks: blocks.clone(),
                        metadata: metadata.clone(),
                        thread_ts: target_ts.map(str::to_owned),
                        edits: 0,
                    };
                    w.messages.push(m.clone());
                    Some(m)
                } else {
                    // A duplicate the plan dropped: Slack "dedupes" to the existing copy.
                    let k = key.as_deref()?;
                    w.messages
                        .iter()
                        .find(|m| m.metadata.as_ref().and_then(metadata_key) == Some(k))
                        .cloned()
                }
            }))
        }
        Fate::Rejected(_) | Fate::Throttled(_) => None,
    };
    shared.notify_change();
    match fate {
        Fate::Rejected(status) => rejected(status),
        // Whatever the plan's status, Slack words a failure after the write this way.
        Fate::StoredThenRejected { .. } => match wait_out(shared, endpoint, outcome).await {
            Some(()) => api_error("internal_error"),
            None => drop_connection(),
        },
        Fate::Throttled(secs) => ratelimited(secs),
        Fate::Hang { .. } => {
            shared.cancel.cancelled().await;
            drop_connection()
        }
        Fate::Drop { .. } => {
            if wait_out(shared, endpoint, outcome).await.is_none() {
                return drop_connection();
            }
            drop_connection()
        }
        Fate::Answer { .. } => {
            if wait_out(shared, endpoint, outcome).await.is_none() {
                return drop_connection();
            }
            let Some(Some(message)) = applied else { return api_error("internal_error") };
            let mut body = Map::new();
            body.insert("ok".into(), json!(true));
            body.insert("channel".into(), json!(message.channel));
            body.insert("ts".into(), json!(message.ts));
            if is_update {
                body.insert("text".into(), json!(message.text));
            }
            body.insert("message".into(), message.to_json(true, None));
            if let Some(warning) = warning {
                body.insert("warning".into(), json!(warning));
                body.insert("response_metadata".into(), json!({ "warnings": [warning] }));
            }
            json_response(StatusCode::OK, &Value::Object(body))
        }
    }
}

/// Parses a Slack ts ("1503435956.000247") to microseconds.
fn ts_micros(ts: &str) -> Option<u64> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    let secs: u64 = secs.parse().ok()?;
    let mut frac = frac.to_owned();
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    while frac.len() < 6 {
        frac.push('0');
    }
    Some(secs * 1_000_000 + frac.parse::<u64>().ok()?)
}

/// `conversations.history` or `conversations.replies` (not through the fault plan).
fn read(shared: &Shared, name: &str, method: &str, args: &Map<String, Value>) -> Response {
    let now = tokio::time::Instant::now();
    let is_history = method == "conversations.history";
    let channel = arg_str(args, "channel").unwrap_or_default();
    let with_metadata = arg_bool(args, "include_all_metadata");
    let inclusive = arg_bool(args, "inclusive");
    let oldest = match arg_str(args, "oldest").map(ts_micros) {
        Some(None) => return api_error("invalid_ts_oldest"),
        Some(Some(t)) => Some(t),
        None => None,
    };
    let latest = match arg_str(args, "latest").map(ts_micros) {
        Some(None) => return api_error("invalid_ts_latest"),
        Some(Some(t)) => Some(t),
        None => None,
    };
    let limit = match args.get("limit") {
        None => {
            if is_history {
                100
            } else {
                1000
            }
        }
        Some(v) => match v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) {
            Some(n) => n.clamp(1, 999) as usize,
            None => return api_error("invalid_limit"),
        },
    };
    let offset = match arg_str(args, "cursor") {
        None => 0,
        Some(c) => match c.strip_prefix("herald-sim-next:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => return api_error("invalid_cursor"),
        },
    };
    let in_window = |ts: &str| {
        let Some(t) = ts_micros(ts) else { return false };
        let after = oldest.is_none_or(|o| if inclusive { t >= o } else { t > o });
        let before = latest.is_none_or(|l| if inclusive { t <= l } else { t < l });
        after && before
    };
    let parent = arg_str(args, "ts").map(str::to_owned);
    // Err(Ok(error)) is an API error, Err(Err(secs)) a 429.
    let answer: Result<Vec<Value>, Result<&str, u64>> = shared.slack.with(name, |w| {
        if is_history {
            w.stats.history_calls += 1;
        } else {
            w.stats.replies_calls += 1;
        }
        if let Some((bucket, retry_after)) = &mut w.reads
            && !bucket.try_take(now)
        {
            w.stats.reads_throttled += 1;
            return Err(Err(ceil_secs(*retry_after)));
        }
        let selected: Vec<Value> = if is_history {
            let mut top: Vec<&Stored> = w
                .messages
                .iter()
                .filter(|m| m.channel == channel && m.thread_ts.is_none() && in_window(&m.ts))
                .collect();
            top.reverse(); // newest first, as Slack answers
            top.into_iter()
                .map(|m| m.to_json(with_metadata, Some(w.reply_count(channel, &m.ts))))
                .collect()
        } else {
            let Some(ts) = parent.as_deref() else { return Err(Ok("thread_not_found")) };
            let Some(i) = w.find(channel, ts) else { return Err(Ok("thread_not_found")) };
            let head = &w.messages[i];
            let mut list = vec![head.to_json(with_metadata, Some(w.reply_count(channel, ts)))];
            list.extend(
                w.messages
                    .iter()
                    .filter(|m| {
                        m.channel == channel
                            && m.thread_ts.as_deref() == Some(ts)
                            && in_window(&m.ts)
                    })
                    .map(|m| m.to_json(with_metadata, None)),
            );
            list
        };
        Ok(selected)
    });
    let all = match answer {
        Ok(all) => all,
        Err(Ok(error)) => return api_error(error),
        Err(Err(retry_after_secs)) => return ratelimited(retry_after_secs),
    };
    let end = (offset + limit).min(all.len());
    let page: Vec<Value> = all.get(offset..end).map(<[Value]>::to_vec).unwrap_or_default();
    let has_more = end < all.len();
    let next = if has_more { format!("herald-sim-next:{end}") } else { String::new() };
    json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "messages": page,
            "has_more": has_more,
            "pin_count": 0,
            "response_metadata": { "next_cursor": next },
        }),
    )
}

/// An incoming-webhook answer: a status and a short text body.
fn hook_text(status: u16, text: &str) -> Response {
    let mut response = (status_code(status), text.to_owned()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if status == 429 {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
    }
    response
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    request: Request<Body>,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(endpoint) = shared.endpoints.get(&name) else {
        return hook_text(404, "no_service");
    };
    let Ok(body): Result<Bytes, _> = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return hook_text(400, "invalid_payload");
    };
    let fault = shared.slack.with(&name, |w| w.take_fault("hook"));
    if let Some(fault) = &fault
        && !fault.store
    {
        return hook_fault(fault);
    }
    let Ok(Value::Object(args)) = serde_json::from_slice::<Value>(&body) else {
        return hook_text(400, "invalid_payload");
    };
    let text = arg_str(&args, "text").map(str::to_owned);
    let blocks = args.get("blocks").cloned().filter(|b| !b.is_null());
    if let Some(blocks) = &blocks
        && check_blocks(blocks).is_err()
    {
        return hook_text(400, "invalid_blocks");
    }
    let Some(text) = text.or_else(|| blocks.as_ref().map(|_| String::new())) else {
        return hook_text(400, "no_text");
    };
    let key = slack_hook_key(&text);
    let record = endpoint
        .plan
        .record
        .then(|| Record { headers: std::mem::take(&mut parts.headers), body: body.clone() });
    let (outcome, entry, stored) = decide(endpoint, Some(&key), record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    if stored {
        shared.slack.with(&name, |w| w.hook_posts.push(SlackHookPost { text, blocks }));
    }
    shared.notify_change();
    if let Some(fault) = &fault {
        return hook_fault(fault);
    }
    match fate_of(outcome, stored) {
        Fate::Rejected(429) | Fate::Throttled(_) => {
            let secs = match outcome {
                Outcome::Throttled { retry_after_secs } => retry_after_secs,
                _ => 1,
            };
            let mut response = hook_text(429, "rate_limited");
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
        Fate::Rejected(status) if status >= 500 => hook_text(status, "rollup_error"),
        // The post landed, but the webhook answers a server error (a duplicate on resend).
        Fate::StoredThenRejected { .. } => hook_text(500, "rollup_error"),
        Fate::Rejected(200) => hook_text(500, "rollup_error"),
        Fate::Rejected(status) => hook_text(status, "invalid_payload"),
        Fate::Hang { .. } => {
            shared.cancel.cancelled().await;
            drop_connection()
        }
        Fate::Drop { .. } => {
            let _ = wait_out(&shared, endpoint, outcome).await;
            drop_connection()
        }
        Fate::Answer { .. } => match wait_out(&shared, endpoint, outcome).await {
            Some(()) => hook_text(200, "ok"),
            None => drop_connection(),
        },
    }
}

fn hook_fault(fault: &SlackFault) -> Response {
    let mut response = hook_text(fault.status, &fault.error);
    if let Some(secs) = fault.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The Slack dialect's accessors and knobs.
impl SimView {
    /// The Web API base URL of endpoint `name` (a `slack` destination's `base_url`).
    pub fn slack_api_url(&self, name: &str) -> String {
        format!("http://{}/slack/{name}/api", self.addr())
    }

    /// The incoming-webhook URL of endpoint `name` (a `slack-webhook` destination's `url`).
    pub fn slack_hook_url(&self, name: &str) -> String {
        format!("http://{}/slack-hook/{name}", self.addr())
    }

    /// Every top-level message endpoint `name` holds, in order of ts, each with its
    /// thread replies.
    pub fn slack_messages(&self, name: &str) -> Vec<SlackMessage> {
        self.shared.slack.with(name, |w| {
            let convert = |m: &Stored| SlackMessage {
                channel: m.channel.clone(),
                ts: m.ts.clone(),
                text: m.text.clone(),
                blocks: m.blocks.clone(),
                metadata: m.metadata.clone(),
                thread_ts: m.thread_ts.clone(),
                edits: m.edits,
                replies: Vec::new(),
            };
            w.messages
                .iter()
                .filter(|m| m.thread_ts.is_none())
                .map(|parent| {
                    let mut top = convert(parent);
                    top.replies = w
                        .messages
                        .iter()
                        .filter(|m| {
                            m.channel == parent.channel
                                && m.thread_ts.as_deref() == Some(&parent.ts)
                        })
                        .map(convert)
                        .collect();
                    top
                })
                .collect()
        })
    }

    /// Every post the incoming webhook of endpoint `name` took, in order.
    pub fn slack_hook_posts(&self, name: &str) -> Vec<SlackHookPost> {
        self.shared.slack.with(name, |w| w.hook_posts.clone())
    }

    /// The dialect's counters for endpoint `name`.
    pub fn slack_stats(&self, name: &str) -> SlackStats {
        self.shared.slack.with(name, |w| w.stats.clone())
    }

    /// Scripts the answer to the next call of `fault.method` on endpoint `name` (faults
    /// for one method are used in the order given).
    pub fn slack_inject(&self, name: &str, fault: SlackFault) {
        self.shared.slack.with(name, |w| w.faults.push_back(fault));
    }

    /// A token bucket of `per_second` tokens shared by `conversations.history` and
    /// `conversations.replies` of endpoint `name`; over it, 429 `ratelimited` with
    /// `Retry-After` (`retry_after` rounded up to seconds). `per_second == 0` throttles
    /// every read.
    pub fn slack_rate_limit_reads(&self, name: &str, per_second: u32, retry_after: Duration) {
        let bucket = TokenBucket::new(per_second, tokio::time::Instant::now());
        self.shared.slack.with(name, |w| w.reads = Some((bucket, retry_after)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::{SlackFault, slack_hook_key};
    use crate::{FaultPlan, Simulator};

    async fn call(url: &str, token: &str, body: Value) -> (u16, Option<String>, Value) {
        let response = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("the simulator answers");
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        (status, retry_after, response.json().await.expect("a JSON body"))
    }

    fn metadata(id: &str) -> Value {
        json!({ "event_type": "herald_delivery", "event_payload": { "delivery_id": id } })
    }

    #[tokio::test]
    async fn posts_replies_edits_and_history_follow_the_web_api() {
        let sim = Simulator::start(vec![("ws".into(), FaultPlan::healthy().dedupe(false))])
            .await
            .expect("starts");
        let view = sim.view();
        let api = view.slack_api_url("ws");
        let post = format!("{api}/chat.postMessage");
        let (status, _, body) = call(
            &post,
            "xoxb-test",
            json!({ "channel": "C1", "text": "hi", "metadata": metadata("d1") }),
        )
        .await;
        assert_eq!((status, &body["ok"]), (200, &json!(true)));
        let ts = body["ts"].as_str().expect("a ts").to_owned();
        let (_, _, reply) = call(
            &post,
            "xoxb-test",
            json!({ "channel": "C1", "text": "r", "thread_ts": ts, "metadata": metadata("d2") }),
        )
        .await;
        assert_eq!(reply["ok"], json!(true));
        let (_, _, edited) = call(
            &format!("{api}/chat.update"),
            "xoxb-test",
            json!({ "channel": "C1", "ts": ts, "text": "hi again" }),
        )
        .await;
        assert_eq!(edited["text"], json!("hi again"));

        let history = reqwest::Client::new()
            .get(format!(
                "{api}/conversations.history?channel=C1&include_all_metadata=true&limit=1"
            ))
            .bearer_auth("xoxb-test")
            .send()
            .await
            .expect("answers")
            .json::<Value>()
            .await
            .expect("JSON");
        assert_eq!(history["messages"].as_array().map(Vec::len), Some(1));
        assert_eq!(history["messages"][0]["metadata"], metadata("d1"));
        assert_eq!(history["messages"][0]["reply_count"], json!(1));
        assert_eq!(history["has_more"], json!(false));
        let replies = reqwest::Client::new()
            .get(format!("{api}/conversations.replies?channel=C1&ts={ts}&include_all_metadata=1"))
            .bearer_auth("xoxb-test")
            .send()
            .await
            .expect("answers")
            .json::<Value>()
            .await
            .expect("JSON");
        assert_eq!(replies["messages"][1]["metadata"], metadata("d2"));

        let messages = view.slack_messages("ws");
        assert_eq!(messages.len(), 1);
        assert_eq!((messages[0].edits, messages[0].replies.len()), (1, 1));
        assert_eq!(messages[0].delivery_id(), Some("d1"));
        assert_eq!(view.copies_of("ws", "d1"), 1);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn refusals_rate_limits_and_scripted_faults_answer_as_slack_does() {
        let plan = FaultPlan::healthy().dedupe(false).rate_limit(1, Duration::from_secs(3));
        let sim = Simulator::start(vec![("ws".into(), plan)]).await.expect("starts");
        let view = sim.view();
        let post = format!("{}/chat.postMessage", view.slack_api_url("ws"));
        for (token, channel, error) in [
            ("xoxb-bad", "C1", "invalid_auth"),
            ("xoxb-inactive", "C1", "account_inactive"),
            ("xoxb-test", "CMISSING1", "channel_not_found"),
            ("xoxb-test", "CNOTIN1", "not_in_channel"),
        ] {
            let (status, _, body) =
                call(&post, token, json!({ "channel": channel, "text": "x" })).await;
            assert_eq!((status, &body["error"]), (200, &json!(error)), "{token} {channel}");
        }
        let (_, _, body) = call(&post, "xoxb-test", json!({ "channel": "C1" })).await;
        assert_eq!(body["error"], json!("no_text"));
        let long = "x".repeat(super::SECTION_TEXT_LIMIT + 1);
        let blocks = json!([{ "type": "section", "text": { "type": "mrkdwn", "text": long } }]);
        let (_, _, body) =
            call(&post, "xoxb-test", json!({ "channel": "C1", "blocks": blocks })).await;
        assert_eq!(body["error"], json!("invalid_blocks"));

        view.slack_inject(
            "ws",
            SlackFault::new("chat.postMessage", 200, "internal_error").after_storing(),
        );
        let (status, _, body) = call(
            &post,
            "xoxb-test",
            json!({ "channel": "C1", "text": "a", "metadata": metadata("k") }),
        )
        .await;
        assert_eq!((status, &body["error"]), (200, &json!("internal_error")));
        assert_eq!(view.copies_of("ws", "k"), 1);
        // The bucket's one token went to the stored post.
        let (status, retry_after, body) =
            call(&post, "xoxb-test", json!({ "channel": "C1", "text": "b" })).await;
        assert_eq!(
            (status, retry_after.as_deref(), &body["error"]),
            (429, Some("3"), &json!("ratelimited"))
        );

        view.slack_rate_limit_reads("ws", 0, Duration::from_secs(7));
        let response = reqwest::Client::new()
            .get(format!("{}/conversations.history?channel=C1", view.slack_api_url("ws")))
            .bearer_auth("xoxb-test")
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(view.slack_stats("ws").reads_throttled, 1);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn the_incoming_webhook_answers_text() {
        let sim = Simulator::start(vec![("hook".into(), FaultPlan::healthy().dedupe(false))])
            .await
            .expect("starts");
        let view = sim.view();
        let client = reqwest::Client::new();
        let url = view.slack_hook_url("hook");
        let ok = client.post(&url).json(&json!({ "text": "hello" })).send().await.expect("answers");
        assert_eq!((ok.status().as_u16(), ok.text().await.ok()), (200, Some("ok".to_owned())));
        let bad = client.post(&url).body("{").send().await.expect("answers");
        assert_eq!(
            (bad.status().as_u16(), bad.text().await.ok()),
            (400, Some("invalid_payload".into()))
        );
        view.slack_inject("hook", SlackFault::new("hook", 410, "channel_is_archived"));
        let gone = client.post(&url).json(&json!({ "text": "x" })).send().await.expect("answers");
        assert_eq!(gone.status().as_u16(), 410);
        assert_eq!(view.slack_hook_posts("hook").len(), 1);
        assert_eq!(view.copies_of("hook", &slack_hook_key("hello")), 1);
        sim.shutdown().await;
    }
}
