//! The Mattermost dialect: REST API v4 at `/mattermost/{name}/api/v4/…` and incoming
//! webhooks at `/mattermost/{name}/hooks/{key}`, following shared/DESTINATIONS.md §11.
//!
//! - **Create** `POST /api/v4/posts` `{channel_id, message, root_id?, props?,
//!   pending_post_id?}` → 201 with the post. A repeat of a `pending_post_id` within 30
//!   seconds answers the post already created (Mattermost's in-memory dedupe;
//!   [`SimView::mattermost_expire_pending`] plays the 30 seconds passing). A `root_id`
//!   that is unknown or itself a reply → 400 `api.post.create_post.root_id.app_error`;
//!   a `message` over 16,383 characters → 400 `model.post.is_valid.message_length.app_error`.
//! - **Patch** `PUT /api/v4/posts/{id}/patch` `{message?, props?}` → 200 with the post
//!   (`edit_at` set); unknown id → 404 `app.post.get.app_error`.
//! - **Read** `GET /api/v4/channels/{channel_id}/posts?since=<ms>` → `{"order":[…],
//!   "posts":{id: post},"next_post_id":"","prev_post_id":""}` with every post (replies
//!   included) created or edited since then. Reads do not go through the fault plan.
//! - **Errors** are AppError JSON `{"id","message","detailed_error","request_id",
//!   "status_code"}`. Tokens: `Authorization: Bearer <t>`; missing or `bad` → 401
//!   `api.context.session_expired.app_error`; `noperm` → 403
//!   `api.context.permissions.app_error`. Channel ids starting with `missing` → 404.
//! - **Fault plan**: creates and patches go through it, keyed by the herald delivery id
//!   in `props.herald_delivery_id` (else the `pending_post_id`). Use `dedupe(false)`: the
//!   dialect applies Mattermost's own 30-second dedupe. The rate limit answers 429 text
//!   `limit exceeded` with `X-Ratelimit-Limit/-Remaining/-Reset` and `Retry-After`.
//! - **Incoming webhook** `POST /hooks/{key}` `{"text"}` → 200 `text/plain` `ok`; no text
//!   → 400 `web.incoming_webhook.text.app_error`; the key `gone` (no such webhook) → 400
//!   `web.incoming_webhook.invalid.app_error`; the key `disabled` (incoming webhooks
//!   turned off) → 501 `web.incoming_webhook.disabled.app_error`, the statuses
//!   Mattermost's `HandleIncomingWebhook` answers (server/channels/app/webhook.go). An
//!   injected 4xx answers `api.webhook.incoming.error`, which concerns that request
//!   only. Text longer than the post limit is split into several posts, as Mattermost
//!   does. Keyed for the fault plan by [`mattermost_hook_key`] of the text.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};

use crate::server::{drop_connection, json_response, status_code, wait_out};
use crate::state::{Endpoint, Outcome, Record};
use crate::{Shared, SimView};

/// Largest request body the dialect reads.
const BODY_LIMIT: usize = 2 * 1024 * 1024;
/// The longest post message (`MaxPostSize`).
pub const MATTERMOST_POST_LIMIT: usize = 16_383;
/// How long Mattermost remembers a `pending_post_id`.
pub const PENDING_POST_TTL: Duration = Duration::from_secs(30);
/// The props key carrying herald's delivery id.
const MARKER_KEY: &str = "herald_delivery_id";

/// One post, with its thread replies (empty for replies) and every patch applied.
#[derive(Clone, Debug, PartialEq)]
pub struct MattermostPost {
    /// Its id (26 characters).
    pub id: String,
    /// Its channel.
    pub channel_id: String,
    /// The current message.
    pub message: String,
    /// The thread's root for a reply, else empty.
    pub root_id: String,
    /// The current props.
    pub props: Value,
    /// The `pending_post_id` it was created with.
    pub pending_post_id: String,
    /// The messages of every patch, oldest first.
    pub edits: Vec<String>,
    /// Thread replies, oldest first.
    pub replies: Vec<MattermostPost>,
}

impl MattermostPost {
    /// The herald delivery id in its props, if any.
    pub fn delivery_id(&self) -> Option<&str> {
        self.props.get(MARKER_KEY).and_then(Value::as_str)
    }
}

/// The key an incoming-webhook post with this `text` is counted under.
pub fn mattermost_hook_key(text: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    format!("mattermost-hook-{:016x}", hasher.finish())
}

#[derive(Clone, Debug)]
struct Stored {
    post: MattermostPost,
    create_at: i64,
    update_at: i64,
}

#[derive(Default)]
struct Server {
    posts: Vec<Stored>,
    pending: HashMap<String, (String, tokio::time::Instant)>,
    hook_posts: Vec<String>,
    next: u64,
    creates: u64,
    reads: u64,
}

impl Server {
    fn post_json(stored: &Stored) -> Value {
        let p = &stored.post;
        json!({
            "id": p.id,
            "create_at": stored.create_at,
            "update_at": stored.update_at,
            "edit_at": if p.edits.is_empty() { 0 } else { stored.update_at },
            "delete_at": 0,
            "user_id": "heraldbotuser0000000000000",
            "channel_id": p.channel_id,
            "root_id": p.root_id,
            "message": p.message,
            "type": "",
            "props": p.props,
            "pending_post_id": p.pending_post_id,
        })
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.posts.iter().position(|s| s.post.id == id)
    }
}

/// The dialect's state for every endpoint, created on first use.
#[derive(Default)]
pub(crate) struct MattermostState {
    servers: Mutex<HashMap<String, Server>>,
}

impl MattermostState {
    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Server) -> R) -> R {
        let mut guard = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        f(guard.entry(name.to_owned()).or_default())
    }
}

/// The dialect's routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/mattermost/{name}/api/v4/posts", post(create))
        .route("/mattermost/{name}/api/v4/posts/{id}/patch", put(patch))
        .route("/mattermost/{name}/api/v4/channels/{channel}/posts", get(read))
        .route("/mattermost/{name}/hooks/{key}", post(hook))
}

fn app_error(status: u16, id: &str, message: &str) -> Response {
    json_response(
        status_code(status),
        &json!({
            "id": id,
            "message": message,
            "detailed_error": "",
            "request_id": "simrequest0000000000000000",
            "status_code": status,
        }),
    )
}

fn wall_millis() -> i64 {
    // A stand-in for a remote server stamps with its own wall clock, as Mattermost
    // does: herald compares its look-up window (from its own clock) against these.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn rate_limited(secs: u64) -> Response {
    let mut response = (StatusCode::TOO_MANY_REQUESTS, "limit exceeded\n").into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("x-ratelimit-limit", HeaderValue::from(10));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
    headers.insert("x-ratelimit-reset", HeaderValue::from(secs));
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// A fault plan's failure status as Mattermost answers it.
fn rejected(status: u16) -> Response {
    match status {
        429 => rate_limited(1),
        500..=599 => app_error(status, "app.post.save.app_error", "Unable to save the post."),
        401 => app_error(
            401,
            "api.context.session_expired.app_error",
            "Invalid or expired session, please login again.",
        ),
        403 => app_error(
            403,
            "api.context.permissions.app_error",
            "You do not have the appropriate permissions.",
        ),
        404 => app_error(
            404,
            "app.channel.get.existing.app_error",
            "Unable to find the existing channel.",
        ),
        _ => app_error(
            status,
            "api.context.invalid_body_param.app_error",
            "Invalid or missing post in request body.",
        ),
    }
}

/// The token's refusal, if any.
fn auth_error(headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        None | Some("bad" | "") => Some(rejected(401)),
        Some("noperm") => Some(rejected(403)),
        Some(_) => None,
    }
}

fn channel_error(channel: &str) -> Option<Response> {
    if channel.starts_with("missing") {
        return Some(rejected(404));
    }
    let valid = channel.len() == 26 && channel.bytes().all(|b| b.is_ascii_alphanumeric());
    (!valid)
        .then(|| app_error(400, "model.post.is_valid.channel_id.app_error", "Invalid channel id."))
}

fn message_error(message: &str) -> Option<Response> {
    (message.chars().count() > MATTERMOST_POST_LIMIT).then(|| {
        app_error(
            400,
            "model.post.is_valid.message_length.app_error",
            "Post Message property is longer than the maximum permitted length.",
        )
    })
}

/// Marks a log entry as ended when dropped.
struct EndOnDrop<'a> {
    endpoint: &'a Endpoint,
    index: usize,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.endpoint.end(self.index);
    }
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    request: Request<Body>,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(endpoint) = shared.endpoints.get(&name) else {
        return rejected(404);
    };
    if let Some(response) = auth_error(&parts.headers) {
        return response;
    }
    let Ok(body): Result<Bytes, _> = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return app_error(
            413,
            "api.context.request_body_too_large.app_error",
            "Request too large.",
        );
    };
    let Ok(Value::Object(args)) = serde_json::from_slice::<Value>(&body) else {
        return rejected(400);
    };
    let text = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (channel, message, root_id, pending) =
        (text("channel_id"), text("message"), text("root_id"), text("pending_post_id"));
    let props = args.get("props").cloned().unwrap_or_else(|| Value::Object(Map::new()));
    if let Some(response) = channel_error(&channel).or_else(|| message_error(&message)) {
        return response;
    }
    if !root_id.is_empty() {
        let root_ok = shared
            .mattermost
            .with(&name, |s| s.find(&root_id).is_some_and(|i| s.posts[i].post.root_id.is_empty()));
        if !root_ok {
            return app_error(
                400,
                "api.post.create_post.root_id.app_error",
                "Invalid RootId parameter.",
            );
        }
    }
    let key = props
        .get(MARKER_KEY)
        .and_then(Value::as_str)
        .map_or_else(|| pending.clone(), str::to_owned);
    let record = endpoint
        .plan
        .record
        .then(|| Record { headers: std::mem::take(&mut parts.headers), body: body.clone() });
    let (outcome, entry) = endpoint.handle((!key.is_empty()).then_some(key.as_str()), record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    let applies = !matches!(outcome, Outcome::Rejected(_) | Outcome::Throttled { .. });
    let post = shared.mattermost.with(&name, |s| {
        s.creates += 1;
        if !applies {
            return None;
        }
        let now = tokio::time::Instant::now();
        s.pending.retain(|_, (_, at)| now.saturating_duration_since(*at) < PENDING_POST_TTL);
        if !pending.is_empty()
            && let Some((id, _)) = s.pending.get(&pending)
            && let Some(i) = s.find(id)
        {
            return Some(Server::post_json(&s.posts[i]));
        }
        s.next += 1;
        let id = format!("p{:025}", s.next);
        let at = wall_millis();
        let stored = Stored {
            post: MattermostPost {
                id: id.clone(),
                channel_id: channel,
                message,
                root_id,
                props,
                pending_post_id: pending.clone(),
                edits: Vec::new(),
                replies: Vec::new(),
            },
            create_at: at,
            update_at: at,
        };
        let json = Server::post_json(&stored);
        s.posts.push(stored);
        if !pending.is_empty() {
            s.pending.insert(pending, (id, now));
        }
        Some(json)
    });
    shared.notify_change();
    let Some(outcome) = wait_out(&shared, endpoint, outcome).await else {
        return drop_connection();
    };
    match (outcome, post) {
        (Outcome::Accepted { .. } | Outcome::Delayed { .. }, Some(post)) => {
            json_response(StatusCode::CREATED, &post)
        }
        (Outcome::Throttled { retry_after_secs }, _) => rate_limited(retry_after_secs),
        (Outcome::Rejected(status), _) => rejected(status),
        (Outcome::StoredThenRejected(status), _) => rejected(status.max(500)),
        _ => drop_connection(),
    }
}

async fn patch(
    State(shared): State<Arc<Shared>>,
    Path((name, id)): Path<(String, String)>,
    request: Request<Body>,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(endpoint) = shared.endpoints.get(&name) else {
        return rejected(404);
    };
    if let Some(response) = auth_error(&parts.headers) {
        return response;
    }
    let Ok(body): Result<Bytes, _> = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return app_error(
            413,
            "api.context.request_body_too_large.app_error",
            "Request too large.",
        );
    };
    let Ok(Value::Object(args)) = serde_json::from_slice::<Value>(&body) else {
        return rejected(400);
    };
    let message = args.get("message").and_then(Value::as_str).map(str::to_owned);
    if let Some(response) = message.as_deref().and_then(message_error) {
        return response;
    }
    if shared.mattermost.with(&name, |s| s.find(&id)).is_none() {
        return app_error(404, "app.post.get.app_error", "Unable to get the post.");
    }
    let props = args.get("props").cloned();
    let key = props
        .as_ref()
        .and_then(|p| p.get(MARKER_KEY))
        .and_then(Value::as_str)
        .map_or_else(|| format!("patch-{id}"), str::to_owned);
    let record = endpoint
        .plan
        .record
        .then(|| Record { headers: std::mem::take(&mut parts.headers), body: body.clone() });
    let (outcome, entry) = endpoint.handle(Some(&key), record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    let applies = !matches!(outcome, Outcome::Rejected(_) | Outcome::Throttled { .. });
    let post = shared.mattermost.with(&name, |s| {
        let i = s.find(&id)?;
        let stored = &mut s.posts[i];
        if applies {
            if let Some(message) = message {
                stored.post.edits.push(message.clone());
                stored.post.message = message;
            }
            if let Some(props) = props {
                stored.post.props = props;
            }
            stored.update_at = wall_millis().max(stored.update_at + 1);
        }
        Some(Server::post_json(stored))
    });
    shared.notify_change();
    let Some(outcome) = wait_out(&shared, endpoint, outcome).await else {
        return drop_connection();
    };
    match (outcome, post) {
        (Outcome::Accepted { .. } | Outcome::Delayed { .. }, Some(post)) => {
            json_response(StatusCode::OK, &post)
        }
        (Outcome::Throttled { retry_after_secs }, _) => rate_limited(retry_after_secs),
        (Outcome::Rejected(status), _) => rejected(status),
        (Outcome::StoredThenRejected(status), _) => rejected(status.max(500)),
        (Outcome::Accepted { .. } | Outcome::Delayed { .. }, None) => {
            app_error(404, "app.post.get.app_error", "Unable to get the post.")
        }
        _ => drop_connection(),
    }
}

async fn read(
    State(shared): State<Arc<Shared>>,
    Path((name, channel)): Path<(String, String)>,
    request: Request<Body>,
) -> Response {
    if !shared.endpoints.contains_key(&name) {
        return rejected(404);
    }
    if let Some(response) = auth_error(request.headers()) {
        return response;
    }
    if let Some(response) = channel_error(&channel) {
        return response;
    }
    let since: i64 = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("since=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (order, posts) = shared.mattermost.with(&name, |s| {
        s.reads += 1;
        let mut order = Vec::new();
        let mut posts = Map::new();
        for stored in s.posts.iter().rev() {
            if stored.post.channel_id == channel && stored.update_at >= since {
                order.push(json!(stored.post.id));
                posts.insert(stored.post.id.clone(), Server::post_json(stored));
            }
        }
        (order, posts)
    });
    shared.notify_change();
    json_response(
        StatusCode::OK,
        &json!({ "order": order, "posts": posts, "next_post_id": "", "prev_post_id": "" }),
    )
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    Path((name, key)): Path<(String, String)>,
    request: Request<Body>,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(endpoint) = shared.endpoints.get(&name) else {
        return rejected(404);
    };
    match key.as_str() {
        "gone" => {
            return app_error(400, "web.incoming_webhook.invalid.app_error", "Invalid webhook.");
        }
        "disabled" => {
            return app_error(
                501,
                "web.incoming_webhook.disabled.app_error",
                "Incoming webhooks have been disabled by the system admin.",
            );
        }
        _ => {}
    }
    let Ok(body): Result<Bytes, _> = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return app_error(
            413,
            "api.context.request_body_too_large.app_error",
            "Request too large.",
        );
    };
    let Ok(Value::Object(args)) = serde_json::from_slice::<Value>(&body) else {
        return app_error(
            400,
            "web.incoming_webhook.parse.app_error",
            "Unable to parse incoming data.",
        );
    };
    let text = args.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
    if text.trim().is_empty() && args.get("attachments").is_none() {
        return app_error(400, "web.incoming_webhook.text.app_error", "No text specified.");
    }
    let hook_key = mattermost_hook_key(&text);
    let record = endpoint
        .plan
        .record
        .then(|| Record { headers: std::mem::take(&mut parts.headers), body: body.clone() });
    let (outcome, entry) = endpoint.handle(Some(&hook_key), record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    if !matches!(outcome, Outcome::Rejected(_) | Outcome::Throttled { .. }) {
        // Longer text becomes several consecutive posts, as Mattermost splits it.
        let chars: Vec<char> = text.chars().collect();
        shared.mattermost.with(&name, |s| {
            for piece in chars.chunks(MATTERMOST_POST_LIMIT) {
                s.hook_posts.push(piece.iter().collect());
            }
        });
    }
    shared.notify_change();
    let Some(outcome) = wait_out(&shared, endpoint, outcome).await else {
        return drop_connection();
    };
    match outcome {
        Outcome::Accepted { .. } | Outcome::Delayed { .. } => {
            let mut response = (StatusCode::OK, "ok").into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        Outcome::Throttled { retry_after_secs } => rate_limited(retry_after_secs),
        Outcome::Rejected(status) => match status {
            500..=599 | 429 => rejected(status),
            _ => app_error(status, "api.webhook.incoming.error", "Could not decode the webhook."),
        },
        Outcome::StoredThenRejected(status) => rejected(status.max(500)),
        Outcome::Reset | Outcome::Hang => drop_connection(),
    }
}

/// The Mattermost dialect's accessors and knobs.
impl SimView {
    /// The server URL of endpoint `name` (a `mattermost` destination's `url`).
    pub fn mattermost_url(&self, name: &str) -> String {
        format!("http://{}/mattermost/{name}", self.addr())
    }

    /// The incoming-webhook URL of endpoint `name` (a `mattermost-webhook`'s `url`).
    pub fn mattermost_hook_url(&self, name: &str) -> String {
        format!("http://{}/mattermost/{name}/hooks/simhookkey", self.addr())
    }

    /// Every root post of endpoint `name`, oldest first, each with its thread replies.
    pub fn mattermost_posts(&self, name: &str) -> Vec<MattermostPost> {
        self.shared.mattermost.with(name, |s| {
            let mut roots: Vec<MattermostPost> = Vec::new();
            for stored in &s.posts {
                if stored.post.root_id.is_empty() {
                    roots.push(stored.post.clone());
                } else if let Some(root) = roots.iter_mut().find(|r| r.id == stored.post.root_id) {
                    root.replies.push(stored.post.clone());
                }
            }
            roots
        })
    }

    /// Every post endpoint `name`'s incoming webhook made, oldest first.
    pub fn mattermost_hook_posts(&self, name: &str) -> Vec<String> {
        self.shared.mattermost.with(name, |s| s.hook_posts.clone())
    }

    /// `(create calls, read calls)` endpoint `name` received.
    pub fn mattermost_calls(&self, name: &str) -> (u64, u64) {
        self.shared.mattermost.with(name, |s| (s.creates, s.reads))
    }

    /// Forgets every remembered `pending_post_id` of endpoint `name`, as 30 seconds
    /// passing (or a restarted or other cluster node) would.
    pub fn mattermost_expire_pending(&self, name: &str) {
        self.shared.mattermost.with(name, |s| s.pending.clear());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::{FaultPlan, Simulator};

    const CHANNEL: &str = "4xp9fdt77pncbef59f4k1qe83o";

    async fn call(
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new().request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the simulator answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    #[tokio::test]
    async fn posts_dedupe_threads_edits_and_reads_follow_the_rest_api() {
        let sim = Simulator::start(vec![("mm".to_owned(), FaultPlan::healthy().dedupe(false))])
            .await
            .expect("starts");
        let view = sim.view();
        let base = format!("{}/api/v4", view.mattermost_url("mm"));
        let posts = format!("{base}/posts");
        let post = reqwest::Method::POST;
        let body = json!({ "channel_id": CHANNEL, "message": "hi", "pending_post_id": "p1",
            "props": { "herald_delivery_id": "d1" } });
        let (status, first) = call(post.clone(), &posts, "tok", Some(body.clone())).await;
        assert_eq!(status, 201);
        let id = first["id"].as_str().expect("an id").to_owned();
        assert_eq!(id.len(), 26);
        // The same pending_post_id within 30 s: the same post, not a second one.
        let (status, again) = call(post.clone(), &posts, "tok", Some(body.clone())).await;
        assert_eq!((status, again["id"].as_str()), (201, Some(id.as_str())));
        view.mattermost_expire_pending("mm");
        let (_, third) = call(post.clone(), &posts, "tok", Some(body)).await;
        assert_ne!(third["id"], first["id"], "after the window a repeat is a new post");
        // Threads: a reply to a root is fine, to a reply or an unknown id is not.
        let reply = json!({ "channel_id": CHANNEL, "message": "r", "root_id": id });
        let (status, reply) = call(post.clone(), &posts, "tok", Some(reply)).await;
        assert_eq!(status, 201);
        let nested = json!({ "channel_id": CHANNEL, "message": "n", "root_id": reply["id"] });
        let (status, error) = call(post.clone(), &posts, "tok", Some(nested)).await;
        assert_eq!(
            (status, error["id"].as_str()),
            (400, Some("api.post.create_post.root_id.app_error"))
        );
        // Edits.
        let (status, edited) = call(
            reqwest::Method::PUT,
            &format!("{posts}/{id}/patch"),
            "tok",
            Some(json!({ "message": "hi2" })),
        )
        .await;
        assert_eq!((status, edited["message"].as_str()), (200, Some("hi2")));
        assert!(edited["edit_at"].as_i64().unwrap_or(0) > 0);
        // Reads: everything since, replies included.
        let read = format!("{base}/channels/{CHANNEL}/posts?since=0");
        let (status, page) = call(reqwest::Method::GET, &read, "tok", None).await;
        assert_eq!(status, 200);
        assert_eq!(page["order"].as_array().map(Vec::len), Some(3));
        let far = format!("{base}/channels/{CHANNEL}/posts?since=99999999999999");
        let (_, page) = call(reqwest::Method::GET, &far, "tok", None).await;
        assert_eq!(page["order"], json!([]));
        // Refusals.
        let (status, error) = call(reqwest::Method::GET, &read, "bad", None).await;
        assert_eq!((status, error["status_code"].as_u64()), (401, Some(401)));
        let long = json!({ "channel_id": CHANNEL, "message": "x".repeat(16_384) });
        let (status, _) = call(post, &posts, "tok", Some(long)).await;
        assert_eq!(status, 400);
        let roots = view.mattermost_posts("mm");
        assert_eq!(roots.len(), 2);
        assert_eq!(roots[0].replies.len(), 1);
        assert_eq!(roots[0].edits, ["hi2"]);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn the_incoming_webhook_answers_ok_and_splits_long_text() {
        let sim = Simulator::start(vec![("mm".to_owned(), FaultPlan::healthy().dedupe(false))])
            .await
            .expect("starts");
        let view = sim.view();
        let url = view.mattermost_hook_url("mm");
        let long = "y".repeat(super::MATTERMOST_POST_LIMIT + 10);
        let (status, body) =
            call(reqwest::Method::POST, &url, "", Some(json!({ "text": long }))).await;
        assert_eq!((status, body), (200, Value::String("ok".to_owned())));
        assert_eq!(view.mattermost_hook_posts("mm").len(), 2);
        let (status, body) = call(reqwest::Method::POST, &url, "", Some(json!({}))).await;
        assert_eq!(
            (status, body["id"].as_str()),
            (400, Some("web.incoming_webhook.text.app_error"))
        );
        sim.shutdown().await;
    }
}
