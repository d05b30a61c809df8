//! The Microsoft Graph channel-message connector (`kind = "teams-graph"`): posts as a
//! delegated service user to `POST {base_url}/teams/{team}/channels/{channel}/messages`
//! and threads follow-ups as replies (`…/messages/{id}/replies`), DESTINATIONS.md §3c.
//!
//! Authentication is the OAuth2 refresh-token grant against
//! `{login_url}/{tenant}/oauth2/v2.0/token`: the access token is cached until shortly
//! before its `expires_in`, refreshed once when Graph answers 401, and a new refresh
//! token in the answer replaces the configured one in memory (Entra ID may rotate them).
//!
//! Graph has no idempotency key; each message carries the marker `herald:{delivery id}`
//! (see `render`), and after an ambiguous attempt `lookup` searches the channel (or the
//! original's replies) for it before anything is posted again.

pub(crate) mod classify;
mod config;
mod lookup;
pub mod render;

#[cfg(test)]
mod tests;

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use herald_core::{Capabilities, Outcome, RateLimit, Timestamp};
use serde_json::Value;

pub use config::{DEFAULT_BASE_URL, DEFAULT_LOGIN_URL, DEFAULT_SCOPE, KEYS, TeamsGraphConfig};

use crate::{Connector, ConnectorError, Report, Request, Thread, http};
use crate::{Defaults, Kind};

/// The `teams-graph` kind.
pub const KIND: Kind = Kind {
    name: "teams-graph",
    keys: KEYS,
    parse: config::parse,
    defaults: DEFAULTS,
    capabilities: CAPABILITIES,
};

/// Look-up by marker and replies in the original's thread; no idempotency key, and
/// follow-ups are replies rather than edits.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: false, lookup: true, edit: false, thread_reply: true };

/// Graph allows at most 4 requests per second per app on one team's channel
/// (DESTINATIONS.md §3c, concepts/throttling-limits.md).
pub const DEFAULTS: Defaults = Defaults {
    rate_limit: Some(RateLimit { count: FOUR, per: Duration::from_secs(1) }),
    concurrency: None,
};

const FOUR: NonZeroU32 = match NonZeroU32::new(4) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// Most bytes of an answer read (a page of 50 messages of up to 28 KB each).
const ANSWER_LIMIT: usize = 4 * 1024 * 1024;

/// How long reading an answer's body may take once its status arrived.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Refresh this long before the token's announced expiry (at most half its lifetime).
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A Teams channel reached through Microsoft Graph.
pub struct TeamsGraph {
    base_url: String,
    messages_url: reqwest::Url,
    token_url: reqwest::Url,
    client_id: String,
    client_secret: Option<String>,
    scope: String,
    client: http::Client,
    auth: tokio::sync::Mutex<Auth>,
}

/// The refresh token in use and the cached access token.
struct Auth {
    refresh_token: String,
    access: Option<Access>,
}

struct Access {
    token: String,
    /// Refresh on or after this instant (shortly before the announced expiry).
    refresh_at: Timestamp,
}

impl fmt::Debug for TeamsGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsGraph")
            .field("graph", &self.messages_url.origin().ascii_serialization())
            .field("login", &self.token_url.origin().ascii_serialization())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// An answer read in full (bounded).
struct Reply {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl Reply {
    fn excerpt(&self) -> String {
        http::excerpt(&self.body, http::EXCERPT_LIMIT)
    }

    fn report(&self, outcome: Outcome) -> Report {
        let excerpt = self.excerpt();
        let detail = (!excerpt.is_empty()).then_some(excerpt);
        Report { outcome, status: Some(self.status), detail, pause: None }
    }
}

/// Why a Graph call produced no answer to classify.
enum CallError {
    /// Getting an access token failed; the report says why (nothing was sent to Graph).
    Token(Report),
    /// The request to Graph failed in transport.
    Transport(http::SendError),
}

async fn read_reply(mut response: reqwest::Response, now: Timestamp) -> Reply {
    let status = response.status().as_u16();
    let retry_after = http::retry_after(response.headers(), now);
    let mut body = Vec::new();
    let read = async {
        while body.len() <= ANSWER_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
    };
    // The status is known; a stalled body must not turn it into the engine's timeout.
    let _ = tokio::time::timeout(BODY_READ_TIMEOUT, read).await;
    Reply { status, retry_after, body }
}

fn invalid(key: &str, why: impl fmt::Display) -> ConnectorError {
    ConnectorError::InvalidSetting(format!("`{key}` {why}"))
}

/// `base` with `segments` appended as path segments (each percent-encoded as needed).
fn join(base: &str, key: &str, segments: &[&str]) -> Result<reqwest::Url, ConnectorError> {
    let mut url =
        reqwest::Url::parse(base).map_err(|e| invalid(key, format!("is not a URL ({e})")))?;
    {
        let mut path = url.path_segments_mut().map_err(|()| invalid(key, "cannot have a path"))?;
        path.pop_if_empty();
        path.extend(segments);
    }
    Ok(url)
}

impl TeamsGraph {
    /// Validates the settings.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` naming an unusable setting (never its secret).
    pub fn new(
        config: TeamsGraphConfig,
        client: http::Client,
    ) -> Result<TeamsGraph, ConnectorError> {
        config::validate(&config)?;
        let messages_url = join(
            &config.base_url,
            "base_url",
            &["teams", &config.team_id, "channels", &config.channel_id, "messages"],
        )?;
        let token_url =
            join(&config.login_url, "login_url", &[&config.tenant, "oauth2", "v2.0", "token"])?;
        Ok(TeamsGraph {
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            messages_url,
            token_url,
            client_id: config.client_id,
            client_secret: config.client_secret,
            scope: config.scope,
            client,
            auth: tokio::sync::Mutex::new(Auth {
                refresh_token: config.refresh_token,
                access: None,
            }),
        })
    }

    /// `…/messages/{id}/replies`.
    fn replies_url(&self, root: &str) -> reqwest::Url {
        let mut url = self.messages_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.push(root).push("replies");
        }
        url
    }

    /// A usable access token and whether it was fetched just now. `failed` is a token
    /// Graph just refused: it is replaced unless another attempt already did.
    async fn access_token(
        &self,
        now: Timestamp,
        failed: Option<&str>,
    ) -> Result<(String, bool), Report> {
        let mut auth = self.auth.lock().await;
        if let Some(access) = &auth.access
            && now < access.refresh_at
            && failed.is_none_or(|f| f != access.token)
        {
            return Ok((access.token.clone(), failed.is_some()));
        }
        auth.access = None;
        let mut form = vec![
            ("client_id", self.client_id.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", auth.refresh_token.as_str()),
            ("scope", self.scope.as_str()),
        ];
        if let Some(secret) = &self.client_secret {
            form.push(("client_secret", secret));
        }
        let sent = self.client.post(self.token_url.clone()).form(&form).send().await;
        let reply = match sent {
            Ok(response) => read_reply(response, now).await,
            Err(error) => {
                let outcome = classify::token_unreachable(&error);
                return Err(Report { outcome, status: None, detail: None, pause: None });
            }
        };
        if reply.status != 200 {
            let outcome = classify::token_failed(reply.status, reply.retry_after, &reply.body);
            return Err(reply.report(outcome));
        }
        let value: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let Some(token) = value.get("access_token").and_then(Value::as_str) else {
            let reason = "the token endpoint answered 200 without an access_token; herald will \
                          try again"
                .to_owned();
            return Err(Report {
                outcome: Outcome::Retry { reason, after: None },
                status: Some(200),
                detail: None,
                pause: None,
            });
        };
        // `expires_in` is a number, but some proxies and older endpoints send a string.
        let lifetime = value
            .get("expires_in")
            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .map_or(Duration::from_secs(3600), Duration::from_secs);
        let margin = EXPIRY_MARGIN.min(lifetime / 2);
        if let Some(rotated) = value.get("refresh_token").and_then(Value::as_str)
            && !rotated.is_empty()
        {
            auth.refresh_token = rotated.to_owned();
        }
        auth.access =
            Some(Access { token: token.to_owned(), refresh_at: now.add(lifetime - margin) });
        Ok((token.to_owned(), true))
    }

    /// Sends one Graph request built by `build` with a bearer token; on a 401 with a
    /// cached token, refreshes it once and sends again.
    async fn call(
        &self,
        now: Timestamp,
        build: impl Fn(&str) -> http::RequestBuilder,
    ) -> Result<Reply, CallError> {
        let (token, fresh) = self.access_token(now, None).await.map_err(CallError::Token)?;
        let reply = match build(&token).send().await {
            Ok(response) => read_reply(response, now).await,
            Err(error) => return Err(CallError::Transport(error)),
        };
        if reply.status != 401 || fresh {
            return Ok(reply);
        }
        // A 401 was not acted on, so sending again cannot duplicate.
        let (token, _) = self.access_token(now, Some(&token)).await.map_err(CallError::Token)?;
        match build(&token).send().await {
            Ok(response) => Ok(read_reply(response, now).await),
            Err(error) => Err(CallError::Transport(error)),
        }
    }

    /// Looks for this delivery's marker; `None` when it is not there (safe to post).
    async fn look_up(&self, request: &Request<'_>, root: Option<&str>) -> Option<Report> {
        let first = match root {
            Some(root) => self.replies_url(root),
            None => self.messages_url.clone(),
        };
        let mut url = first.to_string();
        url.push_str("?$top=50");
        for _ in 0..lookup::MAX_PAGES {
            let reply = match self
                .call(request.now, |token| self.client.get(&url).bearer_auth(token))
                .await
            {
                Ok(reply) => reply,
                Err(CallError::Token(report)) => return Some(report),
                Err(CallError::Transport(error)) => {
                    let reason = format!(
                        "the look-up for a copy of the ambiguous attempt failed, so herald cannot \
                         tell yet whether the message is there: {}",
                        http::classify_error(&error).reason().unwrap_or("no answer")
                    );
                    return Some(Report {
                        outcome: Outcome::Unknown { reason },
                        status: None,
                        detail: None,
                        pause: None,
                    });
                }
            };
            if reply.status != 200 {
                return Some(reply.report(lookup_failed(&reply)));
            }
            // A body that is not JSON (cut short, stalled, a proxy's page) is `Null`, which
            // the search reports as unusable: never "not there".
            let page: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            match lookup::search(&page, request.delivery_id, request.created_at, &self.base_url) {
                lookup::Page::Found(id) => {
                    let detail =
                        Some(format!("found by look-up after an ambiguous attempt: message {id}"));
                    return Some(Report {
                        outcome: Outcome::Delivered { remote_ref: Some(id), unconfirmed: false },
                        status: Some(reply.status),
                        detail,
                        pause: None,
                    });
                }
                lookup::Page::Next(Some(next)) => url = next,
                lookup::Page::Next(None) => return None,
                lookup::Page::Unusable(why) => {
                    return Some(reply.report(undecided(why)));
                }
            }
        }
        Some(Report {
            outcome: undecided(
                "it read the most pages one look-up reads without reaching the delivery's start",
            ),
            status: None,
            detail: None,
            pause: None,
        })
    }
}

/// A look-up that could not conclude: still ambiguous, so nothing is posted yet.
fn undecided(why: &str) -> Outcome {
    Outcome::Unknown {
        reason: format!(
            "the look-up for a copy of the ambiguous attempt could not tell whether the message \
             is there ({why}); herald posts nothing yet"
        ),
    }
}

/// A failed look-up keeps the delivery ambiguous: throttled → `Reconciling` (no attempt
/// burnt), other retryable answers → `Unknown`, the rest as for a post.
fn lookup_failed(reply: &Reply) -> Outcome {
    match classify::failed(reply.status, reply.retry_after, &reply.excerpt()) {
        Outcome::Throttled { after, reason } => Outcome::Reconciling {
            after: after.unwrap_or(Duration::from_secs(1)),
            reason: format!("the look-up was throttled: {reason}"),
        },
        Outcome::Retry { reason, .. } | Outcome::Unknown { reason } => Outcome::Unknown {
            reason: format!(
                "the look-up failed, so herald cannot tell yet whether the message is there: {reason}"
            ),
        },
        other => other,
    }
}

#[async_trait]
impl Connector for TeamsGraph {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        let root = match request.thread {
            Thread::Original => None,
            // Without the original's id (it was never confirmed) the follow-up starts a
            // new thread rather than being lost.
            Thread::Update { original_remote_ref, .. } => original_remote_ref,
        };
        if request.ambiguous
            && let Some(report) = self.look_up(request, root).await
        {
            return report;
        }
        let url = match root {
            Some(root) => self.replies_url(root),
            None => self.messages_url.clone(),
        };
        let body = render::render(request.message, request.delivery_id);
        let sent = self
            .call(request.now, |token| self.client.post(url.clone()).bearer_auth(token).json(&body))
            .await;
        match sent {
            Ok(reply) if (200..=299).contains(&reply.status) => Report {
                outcome: classify::posted(&reply.body),
                status: Some(reply.status),
                detail: None,
                pause: None,
            },
            Ok(reply) => {
                reply.report(classify::failed(reply.status, reply.retry_after, &reply.excerpt()))
            }
            Err(CallError::Token(report)) => report,
            Err(CallError::Transport(error)) => Report {
                outcome: http::classify_error(&error),
                status: None,
                detail: None,
                pause: None,
            },
        }
    }
}
