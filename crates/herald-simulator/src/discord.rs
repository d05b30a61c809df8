//! The Discord dialect: webhooks at `/discord/{name}/api/webhooks/{id}/{token}`, following
//! shared/DESTINATIONS.md §8 (Discord's webhook and rate-limit documentation).
//!
//! - **Execute** `POST …/webhooks/{id}/{token}[?wait=true]`: with `wait=true` 200 and the
//!   message object (`id`, `channel_id`, `content`, `embeds`, …); without it 204 and no
//!   body. Checks Discord's documented limits: `content` ≤2,000, ≤10 embeds, title ≤256,
//!   description ≤4,096, ≤25 fields (name ≤256, value ≤1,024), footer ≤2,048, all embeds
//!   ≤6,000 characters → 400 `{"code":50035,"message":"Invalid Form Body","errors":…}`;
//!   neither content nor embeds → 400 code 50006 `Cannot send an empty message`.
//! - **Edit** `PATCH …/messages/{message_id}` (and `GET`): the message; an unknown id →
//!   404 code 10008 `Unknown Message`.
//! - **Tokens**: the token `bad` → 401 code 50027 `Invalid Webhook Token`.
//! - **Delete** `DELETE …/webhooks/{id}/{token}` (Discord's "Delete Webhook with Token")
//!   → 204, or [`SimView::discord_delete_webhook`]: from then on every call → 404
//!   `{"message": "Unknown Webhook", "code": 10015}`, until
//!   [`SimView::discord_restore_webhook`] (a test's stand-in for the operator's new
//!   webhook) brings it back with its messages.
//! - **Rate limit**: every answer carries `X-RateLimit-Limit/-Remaining/-Reset/
//!   -Reset-After/-Bucket`; the plan's bucket answers 429 with `Retry-After`,
//!   `X-RateLimit-Scope: user` and `{"message":"You are being rate limited.",
//!   "retry_after":<float seconds>,"global":false}`.
//! - **Fault plan** ([`FaultPlan`](crate::FaultPlan)): execute and edit go through it,
//!   keyed by [`discord_key`] of the request body (a webhook carries no id of herald's),
//!   so a resend of the same message counts as the same key. Discord does not
//!   deduplicate: tests use `dedupe(false)`. A failure status `s` is answered as Discord
//!   would: 5xx `{"message":"500: Internal Server Error","code":0}`, 429 as above, 404
//!   `Unknown Webhook`, 401 `Invalid Webhook Token`, 403 `Missing Permissions`, other 4xx
//!   `Invalid Form Body`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Value, json};

use crate::server::{drop_connection, json_response, status_code, wait_out};
use crate::state::{Outcome, Record};
use crate::{Shared, SimView};

/// Largest request body the dialect reads.
const BODY_LIMIT: usize = 2 * 1024 * 1024;
/// The first message id handed out (snowflake-sized).
const FIRST_ID: u64 = 1_100_000_000_000_000_001;
/// The channel every simulated webhook posts to.
pub const DISCORD_CHANNEL_ID: &str = "1000000000000000009";
/// The webhook id in [`SimView::discord_hook_url`].
pub const DISCORD_WEBHOOK_ID: &str = "1000000000000000001";
/// The bucket's advertised size per window (what real answers show for a webhook).
const BUCKET_LIMIT: u32 = 5;

/// One message a simulated webhook posted, with every edit applied to it.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscordMessage {
    /// Its snowflake id.
    pub id: String,
    /// The current `content`.
    pub content: String,
    /// The current `embeds`.
    pub embeds: Value,
    /// Every body that edited it, oldest first.
    pub edits: Vec<Value>,
}

/// The key under which a Discord request with this body is counted by the fault plan
/// and [`SimView::copies_of`].
pub fn discord_key(body: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("discord-{:016x}", hasher.finish())
}

#[derive(Default)]
struct Channel {
    messages: Vec<DiscordMessage>,
    by_key: HashMap<String, usize>,
    next_id: u64,
    deleted: bool,
    after_delete: u64,
}

/// The dialect's state for every endpoint, created on first use.
#[derive(Default)]
pub(crate) struct DiscordState {
    channels: Mutex<HashMap<String, Channel>>,
}

impl DiscordState {
    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Channel) -> R) -> R {
        let mut guard = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        f(guard.entry(name.to_owned()).or_default())
    }
}

/// The dialect's routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/discord/{name}/api/webhooks/{id}/{token}", post(execute).delete(delete_webhook))
        .route("/discord/{name}/api/webhooks/{id}/{token}/messages/{message}", any(message))
}

fn error(status: u16, code: u32, message: &str) -> Response {
    json_response(status_code(status), &json!({ "code": code, "message": message }))
}

fn rate_headers(response: &mut Response, remaining: u32, reset_after: f64) {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let headers = response.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put("x-ratelimit-limit", BUCKET_LIMIT.to_string());
    put("x-ratelimit-remaining", remaining.to_string());
    put("x-ratelimit-reset", format!("{:.3}", now + reset_after));
    put("x-ratelimit-reset-after", format!("{reset_after:.3}"));
    put("x-ratelimit-bucket", "a06de8a4a3b1e8b4c5d2f0e1".to_owned());
}

fn rate_limited(secs: u64) -> Response {
    #[allow(clippy::cast_precision_loss)]
    let secs_f = secs as f64;
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({ "message": "You are being rate limited.", "retry_after": secs_f, "global": false }),
    );
    rate_headers(&mut response, 0, secs_f);
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    headers.insert("x-ratelimit-scope", HeaderValue::from_static("user"));
    response
}

/// A fault plan's failure status as Discord answers it.
fn rejected(status: u16) -> Response {
    match status {
        429 => rate_limited(1),
        500..=599 => json_response(
            status_code(status),
            &json!({ "message": format!("{status}: Internal Server Error"), "code": 0 }),
        ),
        404 => error(404, 10015, "Unknown Webhook"),
        401 => error(401, 50027, "Invalid Webhook Token"),
        403 => error(403, 50013, "Missing Permissions"),
        _ => invalid_form(json!({})),
    }
}

fn invalid_form(errors: Value) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "code": 50035, "message": "Invalid Form Body", "errors": errors }),
    )
}

fn chars(v: Option<&Value>) -> usize {
    v.and_then(Value::as_str).map_or(0, |s| s.chars().count())
}

fn too_long(field: &str, max: usize) -> Response {
    invalid_form(json!({ field: { "_errors": [{
        "code": "BASE_TYPE_MAX_LENGTH",
        "message": format!("Must be {max} or fewer in length."),
    }] } }))
}

/// Checks a message body against Discord's documented limits.
#[allow(clippy::result_large_err, reason = "the error is the answer, built once per request")]
fn check(body: &Value) -> Result<(String, Value), Response> {
    let Some(map) = body.as_object() else {
        return Err(error(400, 50109, "The request body contains invalid JSON."));
    };
    let content = map.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
    if content.chars().count() > 2_000 {
        return Err(too_long("content", 2_000));
    }
    let embeds = map.get("embeds").cloned().unwrap_or_else(|| json!([]));
    let list = embeds.as_array().cloned().unwrap_or_default();
    if list.len() > 10 {
        return Err(too_long("embeds", 10));
    }
    let mut total = 0;
    for embed in &list {
        let limits = [("title", 256), ("description", 4_096)];
        for (field, max) in limits {
            let n = chars(embed.get(field));
            if n > max {
                return Err(too_long(&format!("embeds.0.{field}"), max));
            }
            total += n;
        }
        let footer = chars(embed.get("footer").and_then(|f| f.get("text")));
        if footer > 2_048 {
            return Err(too_long("embeds.0.footer.text", 2_048));
        }
        total += footer;
        let fields = embed.get("fields").and_then(Value::as_array).cloned().unwrap_or_default();
        if fields.len() > 25 {
            return Err(too_long("embeds.0.fields", 25));
        }
        for f in &fields {
            let (name, value) = (chars(f.get("name")), chars(f.get("value")));
            if name > 256 || name == 0 {
                return Err(too_long("embeds.0.fields.0.name", 256));
            }
            if value > 1_024 || value == 0 {
                return Err(too_long("embeds.0.fields.0.value", 1_024));
            }
            total += name + value;
        }
    }
    if total > 6_000 {
        return Err(invalid_form(json!({ "embeds": { "_errors": [{
            "code": "MAX_EMBED_SIZE_EXCEEDED",
            "message": "Embed size exceeds maximum size of 6000",
        }] } })));
    }
    if content.is_empty() && list.is_empty() {
        return Err(error(400, 50006, "Cannot send an empty message"));
    }
    Ok((content, embeds))
}

fn message_json(m: &DiscordMessage) -> Value {
    json!({
        "id": m.id,
        "type": 0,
        "channel_id": DISCORD_CHANNEL_ID,
        "webhook_id": DISCORD_WEBHOOK_ID,
        "content": m.content,
        "embeds": m.embeds,
        "edited_timestamp": if m.edits.is_empty() { Value::Null } else { json!("2026-01-01T00:00:00.000000+00:00") },
        "author": { "id": DISCORD_WEBHOOK_ID, "username": "herald", "bot": true },
    })
}

fn ok(status: StatusCode, m: &DiscordMessage) -> Response {
    let mut response = json_response(status, &message_json(m));
    rate_headers(&mut response, BUCKET_LIMIT - 1, 1.0);
    response
}

/// The webhook's refusal before anything else: deleted → 10015, token `bad` → 50027.
fn refused(shared: &Shared, name: &str, token: &str) -> Option<Response> {
    let deleted = shared.discord.with(name, |c| {
        if c.deleted {
            c.after_delete += 1;
        }
        c.deleted
    });
    if deleted {
        shared.notify_change();
        return Some(error(404, 10015, "Unknown Webhook"));
    }
    (token == "bad").then(|| error(401, 50027, "Invalid Webhook Token"))
}

async fn execute(
    State(shared): State<Arc<Shared>>,
    Path((name, _id, token)): Path<(String, String, String)>,
    request: Request<Body>,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(endpoint) = shared.endpoints.get(&name) else {
        return error(404, 10015, "Unknown Webhook");
    };
    if let Some(response) = refused(&shared, &name, &token) {
        return response;
    }
    let Ok(body): Result<Bytes, _> = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return error(413, 40005, "Request entity too large");
    };
    let wait = parts.uri.query().is_some_and(|q| q.split('&').any(|p| p == "wait=true"));
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return error(400, 50109, "The request body contains invalid JSON.");
    };
    let (content, embeds) = match check(&json) {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let key = discord_key(&body);
    let before = endpoint.copies_of(&key);
    let record = endpoint
        .plan
        .record
        .then(|| Record { headers: std::mem::take(&mut parts.headers), body: body.clone() });
    let (outcome, entry) = endpoint.handle(Some(&key), record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    let stored = endpoint.copies_of(&key) > before;
    let message = shared.discord.with(&name, |c| {
        if stored {
            if c.next_id == 0 {
                c.next_id = FIRST_ID;
            }
            let m =
                DiscordMessage { id: c.next_id.to_string(), content, embeds, edits: Vec::new() };
            c.next_id += 1;
            c.by_key.insert(key.clone(), c.messages.len());
            c.messages.push(m);
        }
        c.by_key.get(&key).and_then(|&i| c.messages.get(i).cloned())
    });
    shared.notify_change();
    let Some(outcome) = wait_out(&shared, endpoint, outcome).await else {
        return drop_connection();
    };
    match outcome {
        Outcome::Accepted { .. } | Outcome::Delayed { .. } => match (wait, message) {
            (true, Some(m)) => ok(StatusCode::OK, &m),
            _ => {
                let mut response = StatusCode::NO_CONTENT.into_response();
                rate_headers(&mut response, BUCKET_LIMIT - 1, 1.0);
                response
            }
        },
        Outcome::Throttled { retry_after_secs } => rate_limited(retry_after_secs),
        Outcome::Rejected(status) => rejected(status),
        Outcome::StoredThenRejected(status) => rejected(if status < 500 { 500 } else { status }),
        Outcome::Reset | Outcome::Hang => drop_connection(),
    }
}

/// `DELETE …/webhooks/{id}/{token}`: 204, and the webhook is gone.
async fn delete_webhook(
    State(shared): State<Arc<Shared>>,
    Path((name, _id, token)): Path<(String, String, String)>,
) -> Response {
    if !shared.endpoints.contains_key(&name) {
        return error(404, 10015, "Unknown Webhook");
    }
    if let Some(response) = refused(&shared, &name, &token) {
        return response;
    }
    shared.discord.with(&name, |c| c.deleted = true);
    shared.notify_change();
    StatusCode::NO_CONTENT.into_response()
}

async fn message(
    State(shared): State<Arc<Shared>>,
    Path((name, _id, token, id)): Path<(String, String, String, String)>,
    request: Request<Body>,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(endpoint) = shared.endpoints.get(&name) else {
        return error(404, 10015, "Unknown Webhook");
    };
    if let Some(response) = refused(&shared, &name, &token) {
        return response;
    }
    let find = |c: &mut Channel| c.messages.iter().position(|m| m.id == id);
    let Some(_) = shared.discord.with(&name, find) else {
        return error(404, 10008, "Unknown Message");
    };
    if parts.method == Method::GET {
        let found = shared.discord.with(&name, |c| c.messages.iter().find(|m| m.id == id).cloned());
        return found
            .map_or_else(|| error(404, 10008, "Unknown Message"), |m| ok(StatusCode::OK, &m));
    }
    if parts.method != Method::PATCH {
        return error(405, 0, "405: Method Not Allowed");
    }
    let Ok(body): Result<Bytes, _> = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return error(413, 40005, "Request entity too large");
    };
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return error(400, 50109, "The request body contains invalid JSON.");
    };
    let (content, embeds) = match check(&json) {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let key = format!("{}-edit-{id}", discord_key(&body));
    let record = endpoint
        .plan
        .record
        .then(|| Record { headers: std::mem::take(&mut parts.headers), body: body.clone() });
    let (outcome, entry) = endpoint.handle(Some(&key), record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    // An edit is applied whenever the plan lets the request through (also before a
    // hang or a late answer); applying the same edit twice leaves the same message.
    let applies = !matches!(outcome, Outcome::Rejected(_) | Outcome::Throttled { .. });
    let edited = shared.discord.with(&name, |c| {
        let m = c.messages.iter_mut().find(|m| m.id == id)?;
        if applies {
            m.content = content;
            m.embeds = embeds;
            m.edits.push(json);
        }
        Some(m.clone())
    });
    shared.notify_change();
    let Some(outcome) = wait_out(&shared, endpoint, outcome).await else {
        return drop_connection();
    };
    match (outcome, edited) {
        (Outcome::Accepted { .. } | Outcome::Delayed { .. }, Some(m)) => ok(StatusCode::OK, &m),
        (Outcome::Accepted { .. } | Outcome::Delayed { .. }, None) => {
            error(404, 10008, "Unknown Message")
        }
        (Outcome::Throttled { retry_after_secs }, _) => rate_limited(retry_after_secs),
        (Outcome::Rejected(status), _) => rejected(status),
        (Outcome::StoredThenRejected(status), _) => rejected(status.max(500)),
        (Outcome::Reset | Outcome::Hang, _) => drop_connection(),
    }
}

/// Marks a log entry as ended when dropped.
struct EndOnDrop<'a> {
    endpoint: &'a crate::state::Endpoint,
    index: usize,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.endpoint.end(self.index);
    }
}

/// The Discord dialect's accessors and knobs.
impl SimView {
    /// The webhook URL of endpoint `name` (a `discord` destination's `url`).
    pub fn discord_hook_url(&self, name: &str) -> String {
        format!("http://{}/discord/{name}/api/webhooks/{DISCORD_WEBHOOK_ID}/simtoken", self.addr())
    }

    /// Every message endpoint `name`'s webhook posted, oldest first, with its edits.
    pub fn discord_messages(&self, name: &str) -> Vec<DiscordMessage> {
        self.shared.discord.with(name, |c| c.messages.clone())
    }

    /// Deletes endpoint `name`'s webhook: from now on every call is 404 `Unknown Webhook`.
    pub fn discord_delete_webhook(&self, name: &str) {
        self.shared.discord.with(name, |c| c.deleted = true);
    }

    /// Undoes [`SimView::discord_delete_webhook`]: the webhook answers again, with the
    /// messages it had, and its count of calls after the deletion starts over.
    pub fn discord_restore_webhook(&self, name: &str) {
        self.shared.discord.with(name, |c| {
            c.deleted = false;
            c.after_delete = 0;
        });
    }

    /// How many calls reached endpoint `name`'s webhook after it was deleted.
    pub fn discord_calls_after_delete(&self, name: &str) -> u64 {
        self.shared.discord.with(name, |c| c.after_delete)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::{FaultPlan, Simulator};

    async fn call(method: reqwest::Method, url: &str, body: &Value) -> (u16, String, Value) {
        let response = reqwest::Client::new()
            .request(method, url)
            .json(body)
            .send()
            .await
            .expect("the simulator answers");
        let status = response.status().as_u16();
        let reset = response
            .headers()
            .get("x-ratelimit-reset-after")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("a body");
        (status, reset, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn webhooks_answer_as_discord_documents() {
        let sim = Simulator::start(vec![("dc".to_owned(), FaultPlan::healthy().dedupe(false))])
            .await
            .expect("starts");
        let view = sim.view();
        let url = view.discord_hook_url("dc");
        let post = reqwest::Method::POST;

        // Without wait=true: 204, no body, but the message is saved.
        let (status, reset, body) = call(post.clone(), &url, &json!({ "content": "a" })).await;
        assert_eq!((status, body), (204, Value::Null));
        assert!(!reset.is_empty(), "bucket headers on every answer");
        // With wait=true: the message object.
        let waited = format!("{url}?wait=true");
        let (status, _, body) = call(post.clone(), &waited, &json!({ "content": "b" })).await;
        assert_eq!(status, 200);
        let id = body["id"].as_str().expect("an id").to_owned();
        // Limits and empty messages: 400 with Discord's codes.
        let long = "x".repeat(2_001);
        let (status, _, body) = call(post.clone(), &waited, &json!({ "content": long })).await;
        assert_eq!((status, body["code"].as_i64()), (400, Some(50035)));
        let big = json!({ "embeds": [{ "title": "t", "description": "d".repeat(4_000),
            "fields": [{ "name": "n", "value": "v".repeat(1_024) }, { "name": "m", "value": "v".repeat(1_000) }] }] });
        let (status, _, body) = call(post.clone(), &waited, &big).await;
        assert_eq!((status, body["code"].as_i64()), (400, Some(50035)), "over 6,000 in all");
        let (status, _, body) = call(post.clone(), &waited, &json!({})).await;
        assert_eq!((status, body["code"].as_i64()), (400, Some(50006)));
        // Edits: applied and answered; an unknown id is 10008.
        let edit = format!("{url}/messages/{id}");
        let (status, _, body) =
            call(reqwest::Method::PATCH, &edit, &json!({ "content": "b2" })).await;
        assert_eq!((status, body["content"].as_str()), (200, Some("b2")));
        let missing = format!("{url}/messages/42");
        let (status, _, body) =
            call(reqwest::Method::PATCH, &missing, &json!({ "content": "c" })).await;
        assert_eq!((status, body["code"].as_i64()), (404, Some(10008)));
        let messages = view.discord_messages("dc");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].edits.len(), 1);
        // A deleted webhook: 10015 for everything, as Discord documents it.
        view.discord_delete_webhook("dc");
        let (status, _, body) = call(post.clone(), &waited, &json!({ "content": "d" })).await;
        assert_eq!(status, 404);
        assert_eq!(body, json!({ "message": "Unknown Webhook", "code": 10015 }));
        assert_eq!(view.discord_calls_after_delete("dc"), 1);
        // Restored, it posts again; Discord's own DELETE deletes it again.
        view.discord_restore_webhook("dc");
        let (status, _, _) = call(post.clone(), &waited, &json!({ "content": "e" })).await;
        assert_eq!(status, 200);
        let response = reqwest::Client::new().delete(&url).send().await.expect("answers");
        assert_eq!(response.status().as_u16(), 204);
        let (status, _, body) = call(post, &waited, &json!({ "content": "f" })).await;
        assert_eq!((status, body["code"].as_i64()), (404, Some(10015)));
        assert_eq!(view.discord_messages("dc").len(), 3, "a, b and e");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn the_rate_limit_answers_retry_after_in_the_body_and_headers() {
        let plan =
            FaultPlan::healthy().dedupe(false).rate_limit(1, std::time::Duration::from_secs(3));
        let sim = Simulator::start(vec![("dc".to_owned(), plan)]).await.expect("starts");
        let url = format!("{}?wait=true", sim.view().discord_hook_url("dc"));
        let (status, _, _) = call(reqwest::Method::POST, &url, &json!({ "content": "a" })).await;
        assert_eq!(status, 200);
        let (status, reset, body) =
            call(reqwest::Method::POST, &url, &json!({ "content": "b" })).await;
        assert_eq!(status, 429);
        assert_eq!(body["retry_after"].as_f64(), Some(3.0));
        assert_eq!(body["global"], json!(false));
        assert_eq!(reset, "3.000");
        sim.shutdown().await;
    }
}
