//! The Slack Web API connector (`kind = "slack"`): `chat.postMessage` with Block Kit
//! blocks, a `text` fallback and herald's metadata (`event_type` `herald_delivery`, the
//! delivery id in `event_payload`); the outcome from the `ok`/`error` body; after an
//! ambiguous attempt a look-up ([`lookup`]) before any resend; updates as thread replies
//! or `chat.update` edits of the original. The remote ref is `CHANNEL:TS`.

mod classify;
mod config;
mod lookup;
pub mod render;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use herald_core::{Capabilities, Outcome, Timestamp};
use serde_json::{Value, json};

pub use classify::{
    AMBIGUOUS, CHANNEL_GONE, PERMANENT, RETRYABLE, THROTTLED, TOKEN_GONE, classify, pause,
};
pub use config::{DEFAULT_BASE_URL, DEFAULT_HISTORY_RATE_LIMIT, SlackConfig, UpdateMode};
use lookup::Found;
pub use lookup::MARGIN as LOOKUP_MARGIN;
use render::Role;

use crate::{Connector, ConnectorError, Report, Request, Thread, http};

/// The `slack` kind: Slack's chat.postMessage allows about one message per second per
/// channel (DESTINATIONS.md §1), so that is the default pace.
pub const KIND: crate::Kind = crate::Kind {
    name: "slack",
    keys: config::KEYS,
    parse: config::parse,
    defaults: crate::Defaults { rate_limit: Some(ONE_PER_SECOND), concurrency: None },
    capabilities: CAPABILITIES,
};

/// One message per second.
pub(crate) const ONE_PER_SECOND: herald_core::RateLimit = herald_core::RateLimit {
    count: std::num::NonZeroU32::MIN,
    per: std::time::Duration::from_secs(1),
};

/// Slack's Web API allows a look-up, edits and thread replies, and has no idempotency key.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: false, lookup: true, edit: true, thread_reply: true };

/// The most bytes of an answer read (a page of history with blocks can be large).
const BODY_CAP: usize = 8 * 1024 * 1024;

/// The content type of a JSON body as Slack's Web API documents it.
pub const JSON_UTF8: &str = "application/json; charset=utf-8";

/// `CHANNEL:TS`, the remote ref of a Slack message.
pub fn remote_ref(channel: &str, ts: &str) -> String {
    format!("{channel}:{ts}")
}

/// Splits a remote ref into channel and ts.
pub fn parse_remote_ref(remote: &str) -> Option<(&str, &str)> {
    remote.split_once(':').filter(|(c, t)| !c.is_empty() && !t.is_empty())
}

/// A Slack Web API destination.
pub struct Slack {
    settings: SlackConfig,
    client: http::Client,
    /// Paces look-up reads, which Slack limits per method (Tier 3, or 1/min for some
    /// apps) apart from posting; on the engine's clock (`Request::now`).
    reads: std::sync::Mutex<herald_core::Pacer>,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Slack {
    /// A connector for `settings`, sharing `client`.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` naming the first unusable setting.
    pub fn new(settings: SlackConfig, client: http::Client) -> Result<Slack, ConnectorError> {
        if let Some(problem) = settings.problems().into_iter().next() {
            return Err(ConnectorError::InvalidSetting(problem));
        }
        let reads = std::sync::Mutex::new(herald_core::Pacer::new(settings.history_rate_limit));
        Ok(Slack { settings, client, reads })
    }

    fn url(&self, method: &str) -> String {
        format!("{}/{method}", self.settings.base_url)
    }

    /// A write method with a JSON body, declared as UTF-8 as Slack asks: without the
    /// charset every answer carries the warning `missing_charset`.
    async fn write(&self, method: &str, body: &Value, now: Timestamp) -> Result<Value, Report> {
        let request = self
            .client
            .post(self.url(method))
            .bearer_auth(&self.settings.token)
            .header(reqwest::header::CONTENT_TYPE, JSON_UTF8)
            .body(body.to_string());
        self.answer(request, body.get("channel").and_then(Value::as_str), now).await
    }

    /// A read method with query arguments.
    async fn read(
        &self,
        method: &str,
        query: &[(&str, &str)],
        now: Timestamp,
    ) -> Result<Value, Report> {
        // Stay under the method's own limit rather than spend its 429s: a read that must
        // wait is reported as throttled, which the look-up turns into `Reconciling`.
        let wait = {
            let mut pacer = self.reads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let at = pacer.next_permit_at(now);
            if at > now {
                Some(at.since(now))
            } else {
                pacer.take(now);
                None
            }
        };
        if let Some(after) = wait {
            return Err(Report {
                outcome: Outcome::Throttled {
                    after: Some(after),
                    reason: format!(
                        "herald keeps {method} under history_rate_limit ({} per {}s)",
                        self.settings.history_rate_limit.count,
                        self.settings.history_rate_limit.per.as_secs_f64()
                    ),
                },
                status: None,
                detail: None,
                pause: None,
            });
        }
        let request =
            self.client.get(self.url(method)).bearer_auth(&self.settings.token).query(query);
        let channel = query.iter().find(|(key, _)| *key == "channel").map(|(_, value)| *value);
        self.answer(request, channel, now).await
    }

    /// Sends `request`, a call about `channel`; `Ok` with the body when Slack said
    /// `ok:true`, else the report (asking for a pause when the code says the token or
    /// the configured channel is unusable).
    async fn answer(
        &self,
        request: http::RequestBuilder,
        channel: Option<&str>,
        now: Timestamp,
    ) -> Result<Value, Report> {
        let mut response = match request.send().await {
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
        let retry_after = http::retry_after(response.headers(), now);
        // A body that broke or outgrew the cap leaves the answered status unexplained.
        let (bytes, complete) = http::read_whole(&mut response, BODY_CAP).await;
        let body: Option<Value> = if complete { serde_json::from_slice(&bytes).ok() } else { None };
        let excerpt = http::excerpt(&bytes, http::EXCERPT_LIMIT);
        let outcome = classify(status, retry_after, body.as_ref(), &excerpt);
        match (outcome, body) {
            (Outcome::Delivered { .. }, Some(body)) => Ok(body),
            (outcome, body) => {
                let configured = channel == Some(self.settings.channel.as_str());
                let pause = body
                    .as_ref()
                    .and_then(classify::error_code)
                    .and_then(|code| pause(code, configured));
                Err(Report {
                    outcome,
                    status: Some(status),
                    detail: (!excerpt.is_empty()).then_some(excerpt),
                    pause,
                })
            }
        }
    }

    /// Posts (a thread reply when `thread_ts` is set) and reports the new message.
    async fn post(&self, request: &Request<'_>, role: Role, thread_ts: Option<&str>) -> Report {
        let message = request.message;
        let mut body = json!({
            "channel": self.settings.channel,
            "text": render::fallback_text(message, role),
            "blocks": render::blocks(message, role),
            "metadata": render::metadata(request.delivery_id),
            "unfurl_links": false,
            "unfurl_media": false,
        });
        if let (Some(ts), Some(map)) = (thread_ts, body.as_object_mut()) {
            map.insert("thread_ts".into(), json!(ts));
        }
        match self.write("chat.postMessage", &body, request.now).await {
            Ok(answer) => delivered_from(&answer, &self.settings.channel),
            Err(report) => report,
        }
    }

    async fn original(&self, request: &Request<'_>) -> Report {
        if request.ambiguous {
            match self.find_post(request.delivery_id, request.created_at, request.now).await {
                Ok(Found::Yes(ts)) => return delivered(&self.settings.channel, &ts),
                Ok(Found::No) => {}
                Err(report) => return report,
            }
        }
        self.post(request, Role::Original, None).await
    }

    async fn update(&self, request: &Request<'_>, seq: u32, original: Option<&str>) -> Report {
        let Some((channel, ts)) = original.and_then(parse_remote_ref) else {
            return Report {
                outcome: Outcome::Permanent {
                    reason: "the original message has no Slack reference (CHANNEL:TS), so \
                             herald cannot reply to or edit it"
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
                    match self.find_reply(channel, ts, request.delivery_id, request.now).await {
                        Ok(Found::Yes(reply)) => return delivered(channel, &reply),
                        Ok(Found::No) => {}
                        Err(report) => return report,
                    }
                }
                self.post(request, Role::Reply { seq }, Some(ts)).await
            }
            UpdateMode::Edit => {
                if request.ambiguous {
                    match self.edited_by(channel, ts, request.delivery_id, request.now).await {
                        Ok(Found::Yes(_)) => return delivered(channel, ts),
                        Ok(Found::No) => {}
                        Err(report) => return report,
                    }
                }
                let role = Role::Edit { seq };
                let body = json!({
                    "channel": channel,
                    "ts": ts,
                    "text": render::fallback_text(request.message, role),
                    "blocks": render::blocks(request.message, role),
                    "metadata": render::metadata(request.delivery_id),
                });
                match self.write("chat.update", &body, request.now).await {
                    Ok(_) => delivered(channel, ts),
                    Err(report) => report,
                }
            }
        }
    }
}

fn delivered(channel: &str, ts: &str) -> Report {
    Report {
        outcome: Outcome::delivered(Some(remote_ref(channel, ts))),
        status: Some(200),
        detail: None,
        pause: None,
    }
}

/// The report for a successful post: `CHANNEL:TS` from the answer (the channel Slack
/// names, which is the id even when a name was configured).
fn delivered_from(answer: &Value, configured: &str) -> Report {
    let channel = answer.get("channel").and_then(Value::as_str).unwrap_or(configured);
    match answer.get("ts").and_then(Value::as_str) {
        Some(ts) => {
            let mut report = delivered(channel, ts);
            report.detail = answer
                .get("warning")
                .and_then(Value::as_str)
                .map(|w| format!("Slack warning: {}", http::excerpt(w.as_bytes(), 200)));
            report
        }
        None => Report {
            outcome: Outcome::Unknown {
                reason: "Slack answered ok without the message's ts".to_owned(),
            },
            status: Some(200),
            detail: None,
            pause: None,
        },
    }
}

#[async_trait]
impl Connector for Slack {
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
