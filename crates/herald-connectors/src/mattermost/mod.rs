//! The Mattermost REST connector (`kind = "mattermost"`): `POST /api/v4/posts` with a bot
//! token, the post's `props` carrying the delivery id (herald's marker) and a
//! `pending_post_id` derived from it; the remote ref is the post id; updates as thread
//! replies (`root_id`) or edits (`PUT /api/v4/posts/{id}/patch`).
//!
//! Mattermost drops a second create with the same `pending_post_id`, but only for 30
//! seconds and only in one server's memory (shared/DESTINATIONS.md §11): herald's next
//! attempt after a timeout usually comes later than that, so the kind does not claim
//! deduplication. After an ambiguous attempt it looks up instead ([`lookup`]): the
//! channel's posts since the delivery was created, matched by the `props` marker. An edit
//! is idempotent (the same patch twice leaves the same post), so it is simply sent again.

mod classify;
mod config;
mod lookup;
pub mod render;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use herald_core::{Capabilities, Outcome, Timestamp};
use serde_json::{Value, json};

pub use classify::{DEDUPLICATE_PENDING, classify, throttle_wait};
pub use config::{MattermostConfig, UpdateMode, is_id};
use lookup::Found;
pub use lookup::MARGIN as LOOKUP_MARGIN;
use render::Role;

use crate::{Connector, ConnectorError, Report, Request, Thread, http};

/// The `mattermost` kind. Mattermost's rate limiter is off by default and allows 10
/// requests per second when on; herald's general defaults stay well under that.
pub const KIND: crate::Kind = crate::Kind {
    name: "mattermost",
    keys: config::KEYS,
    parse: config::parse,
    defaults: crate::Defaults::NONE,
    capabilities: CAPABILITIES,
};

/// Look-up by the props marker, edits and thread replies; the 30-second
/// `pending_post_id` window is too short to count as deduplication.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: false, lookup: true, edit: true, thread_reply: true };

/// The most bytes of an answer read (a look-up page of posts can be large).
const BODY_CAP: usize = 8 * 1024 * 1024;

/// The `pending_post_id` of a delivery: stable across its attempts.
pub fn pending_post_id(delivery_id: &str) -> String {
    format!("herald:{delivery_id}")
}

/// A Mattermost REST destination.
pub struct Mattermost {
    settings: MattermostConfig,
    client: http::Client,
}

impl std::fmt::Debug for Mattermost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mattermost").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Mattermost {
    /// A connector for `settings`, sharing `client`.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` naming the first unusable setting.
    pub fn new(
        settings: MattermostConfig,
        client: http::Client,
    ) -> Result<Mattermost, ConnectorError> {
        if let Some(problem) = settings.problems().into_iter().next() {
            return Err(ConnectorError::InvalidSetting(problem));
        }
        Ok(Mattermost { settings, client })
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/v4/{path}", self.settings.url)
    }

    /// Sends `request`; `Ok` with the JSON body on a 2xx with an id (or any JSON for a
    /// read), else the report.
    async fn call(
        &self,
        request: http::RequestBuilder,
        now: Timestamp,
        read: bool,
    ) -> Result<Value, Report> {
        let mut response = match request.bearer_auth(&self.settings.token).send().await {
            Ok(response) => response,
            Err(error) => {
                return Err(Report {
                    outcome: http::classify_error(&error),
                    status: None,
                    detail: None,
                    pause: None,
                });
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // A body that broke or outgrew the cap leaves the answered status unexplained.
        let (bytes, complete) = http::read_whole(&mut response, BODY_CAP).await;
        let body: Option<Value> = if complete { serde_json::from_slice(&bytes).ok() } else { None };
        let excerpt = http::excerpt(&bytes, http::EXCERPT_LIMIT);
        if read && (200..=299).contains(&status) {
            return match body {
                Some(body) => Ok(body),
                None => Err(Report {
                    outcome: Outcome::Unknown {
                        reason: "Mattermost answered the look-up without a readable list of \
                                 posts"
                            .to_owned(),
                    },
                    status: Some(status),
                    detail: None,
                    pause: None,
                }),
            };
        }
        let outcome = classify(status, &headers, body.as_ref(), &excerpt, now);
        match (outcome, body) {
            (Outcome::Delivered { .. }, Some(body)) => Ok(body),
            (outcome, _) => Err(Report {
                outcome,
                status: Some(status),
                detail: (!excerpt.is_empty()).then_some(excerpt),
                pause: None,
            }),
        }
    }

    /// Creates a post (a thread reply when `root_id` is set).
    async fn create(&self, request: &Request<'_>, role: Role, root_id: Option<&str>) -> Report {
        let mut body = json!({
            "channel_id": self.settings.channel_id,
            "message": render::text(request.message, role),
            "props": render::props(request.delivery_id),
            "pending_post_id": pending_post_id(request.delivery_id),
        });
        if let (Some(root), Some(map)) = (root_id, body.as_object_mut()) {
            map.insert("root_id".into(), json!(root));
        }
        let call = self.client.post(self.api("posts")).json(&body);
        match self.call(call, request.now, false).await {
            Ok(post) => delivered(post.get("id").and_then(Value::as_str).unwrap_or_default()),
            Err(report) => report,
        }
    }

    async fn original(&self, request: &Request<'_>) -> Report {
        if request.ambiguous {
            match self.find(request.delivery_id, request.created_at, None, request.now).await {
                Ok(Found::Yes(id)) => return delivered(&id),
                Ok(Found::No) => {}
                Err(report) => return report,
            }
        }
        self.create(request, Role::Original, None).await
    }

    async fn update(&self, request: &Request<'_>, seq: u32, original: Option<&str>) -> Report {
        let Some(root) = original.filter(|id| is_id(id)) else {
            return Report {
                outcome: Outcome::Permanent {
                    reason: "the original post has no Mattermost post id, so herald cannot \
                             reply to or edit it"
                        .to_owned(),
                },
                status: None,
                detail: None,
                pause: None,
            };
        };
        match self.settings.update_mode {
            UpdateMode::Thread => {
                if request.ambiguous {
                    let found =
                        self.find(request.delivery_id, request.created_at, Some(root), request.now);
                    match found.await {
                        Ok(Found::Yes(id)) => return delivered(&id),
                        Ok(Found::No) => {}
                        Err(report) => return report,
                    }
                }
                self.create(request, Role::Reply { seq }, Some(root)).await
            }
            UpdateMode::Edit => {
                let body = json!({
                    "message": render::text(request.message, Role::Edit { seq }),
                    "props": render::props(request.delivery_id),
                });
                let call = self.client.put(self.api(&format!("posts/{root}/patch"))).json(&body);
                match self.call(call, request.now, false).await {
                    Ok(_) => delivered(root),
                    Err(report) => report,
                }
            }
        }
    }
}

fn delivered(id: &str) -> Report {
    Report {
        outcome: Outcome::delivered(Some(id.to_owned())),
        status: Some(201),
        detail: None,
        pause: None,
    }
}

#[async_trait]
impl Connector for Mattermost {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        match request.thread {
            Thread::Original => self.original(request).await,
            Thread::Update { seq, original_remote_ref, .. } => {
                self.update(request, seq, original_remote_ref).await
            }
        }
    }
}
