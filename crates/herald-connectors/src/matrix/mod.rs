//! The Matrix connector (`kind = "matrix"`): `m.room.message` events sent with
//! `PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}`, the txnId being
//! the delivery id. A homeserver treats a repeated txnId from the same device as a
//! retransmission and answers with the first event id, so herald logs in with a fixed
//! `device_id` and simply resends after an ambiguous attempt: exactly one event. Past the
//! time a homeserver remembers a txnId (`lookup_after`, see `lookup`), an ambiguous
//! attempt first looks for the event in the room. Updates are `m.thread` replies to, or
//! `m.replace` edits of, the original event. The remote ref is the event id.
//! (DESTINATIONS.md §5.)

mod classify;
mod config;
pub mod lookup;
pub mod render;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use herald_core::{Capabilities, Outcome, Timestamp};
use serde_json::{Value, json};

pub use classify::{PERMANENT, RESOURCE_LIMIT_BACKOFF, classify, throttle_wait};
pub use config::{Auth, DEFAULT_DEVICE_ID, MatrixConfig, UpdateMode};
pub use lookup::DEFAULT_LOOKUP_AFTER;
use render::Role;

use crate::{Connector, ConnectorError, Report, Request, Thread, http};

/// The `matrix` kind: Synapse lets a user send about 0.2 messages per second after a
/// burst of 10 by default (`rc_message`); one per second keeps bursts short and its
/// `M_LIMIT_EXCEEDED` answers pace the rest.
pub const KIND: crate::Kind = crate::Kind {
    name: "matrix",
    keys: config::KEYS,
    parse: config::parse,
    defaults: crate::Defaults { rate_limit: Some(crate::slack::ONE_PER_SECOND), concurrency: None },
    capabilities: CAPABILITIES,
};

/// Matrix deduplicates by transaction id (per device), and allows edits and threads. The
/// look-up past the txnId window extends that deduplication rather than replacing it,
/// so `lookup` stays false: with `dedupe = false` an operator says the txnId cannot be
/// trusted, and the look-up alone (which runs only after `lookup_after`) would not do.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: true, lookup: false, edit: true, thread_reply: true };

/// The most bytes of an answer read.
const BODY_CAP: usize = 1024 * 1024;

/// The transaction id of delivery `delivery_id`: the same on every attempt and after a
/// restart, so a resend is a retransmission.
pub fn txn_id(delivery_id: &str) -> String {
    format!("herald-{delivery_id}")
}

/// What herald learned on the way: the access token, the room id and, for a given
/// token, whose it is.
#[derive(Default)]
struct Session {
    token: Option<String>,
    room_id: Option<String>,
    user_id: Option<String>,
}

/// A Matrix room destination.
pub struct Matrix {
    settings: MatrixConfig,
    client: http::Client,
    session: std::sync::Mutex<Session>,
    /// One login at a time: two concurrent logins of the same device would each
    /// invalidate the other's token.
    login: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// A failed call: the report, and whether the server rejected the token.
struct Failure {
    report: Report,
    token_rejected: bool,
}

impl From<Report> for Failure {
    fn from(report: Report) -> Failure {
        Failure { report, token_rejected: false }
    }
}

fn permanent(reason: String) -> Report {
    Report { outcome: Outcome::Permanent { reason }, status: None, detail: None, pause: None }
}

impl Matrix {
    /// A connector for `settings`, sharing `client`.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` naming the first unusable setting.
    pub fn new(settings: MatrixConfig, client: http::Client) -> Result<Matrix, ConnectorError> {
        if let Some(problem) = settings.problems().into_iter().next() {
            return Err(ConnectorError::InvalidSetting(problem));
        }
        let session = Session {
            token: match &settings.auth {
                Auth::Token(token) => Some(token.clone()),
                Auth::Password(_) => None,
            },
            room_id: settings.room.starts_with('!').then(|| settings.room.clone()),
            user_id: (!settings.user.is_empty()).then(|| settings.user.clone()),
        };
        Ok(Matrix {
            settings,
            client,
            session: std::sync::Mutex::new(session),
            login: tokio::sync::Mutex::new(()),
        })
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `homeserver/_matrix/client/v3/{segments…}?{query}`, each part percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<reqwest::Url, Report> {
        let mut url = reqwest::Url::parse(&self.settings.homeserver)
            .map_err(|_| permanent("`homeserver` is not a URL".to_owned()))?;
        url.path_segments_mut()
            .map_err(|()| permanent("`homeserver` cannot have a path".to_owned()))?
            .pop_if_empty()
            .extend(["_matrix", "client", "v3"])
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// One request; `Ok` with the body of a 2xx answer.
    async fn call(
        &self,
        method: reqwest::Method,
        (segments, query): (&[&str], &[(&str, &str)]),
        body: Option<&Value>,
        token: Option<&str>,
        now: Timestamp,
    ) -> Result<Value, Failure> {
        let mut request = self.client.request(method, self.url(segments, query)?);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Err(Report {
                    outcome: http::classify_error(&error),
                    status: None,
                    detail: None,
                    pause: None,
                }
                .into());
            }
        };
        let status = response.status().as_u16();
        let retry_after = http::retry_after(response.headers(), now);
        // A body that broke or outgrew the cap leaves the answered status unexplained.
        let (bytes, complete) = http::read_whole(&mut response, BODY_CAP).await;
        let body: Option<Value> = if complete { serde_json::from_slice(&bytes).ok() } else { None };
        let excerpt = http::excerpt(&bytes, http::EXCERPT_LIMIT);
        let detail = (!excerpt.is_empty()).then(|| excerpt.clone());
        match classify(status, retry_after, body.as_ref(), &excerpt) {
            Outcome::Delivered { .. } => match body {
                Some(body) => Ok(body),
                None => Err(Report {
                    outcome: Outcome::Unknown {
                        reason: format!(
                            "HTTP {status} from the homeserver without a JSON answer; herald \
                             cannot tell what it did"
                        ),
                    },
                    status: Some(status),
                    detail,
                    pause: None,
                }
                .into()),
            },
            outcome => Err(Failure {
                token_rejected: classify::token_rejected(status, body.as_ref()),
                report: Report { outcome, status: Some(status), detail, pause: None },
            }),
        }
    }

    /// The access token: the configured one, the cached one, or a new login.
    async fn token(&self, now: Timestamp) -> Result<String, Report> {
        if let Some(token) = self.session().token.clone() {
            return Ok(token);
        }
        self.log_in(None, now).await
    }

    /// Logs in with the fixed device unless another task already replaced `stale`.
    async fn log_in(&self, stale: Option<&str>, now: Timestamp) -> Result<String, Report> {
        let Auth::Password(password) = &self.settings.auth else {
            return Err(permanent(
                "the homeserver rejected the access_token (M_UNKNOWN_TOKEN); give a valid \
                 access_token or a password"
                    .to_owned(),
            ));
        };
        let _one = self.login.lock().await;
        if let Some(token) = self.session().token.clone()
            && stale != Some(token.as_str())
        {
            return Ok(token);
        }
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": self.settings.user },
            "password": password,
            "device_id": self.settings.device_id,
            "initial_device_display_name": "herald",
        });
        let answer = self
            .call(reqwest::Method::POST, (&["login"], &[]), Some(&body), None, now)
            .await
            .map_err(|failure| login_failed(&self.settings.user, failure.report))?;
        let Some(token) = answer.get("access_token").and_then(Value::as_str) else {
            return Err(Report {
                outcome: Outcome::Retry {
                    reason: "the homeserver's login answer has no access_token".to_owned(),
                    after: None,
                },
                status: Some(200),
                detail: None,
                pause: None,
            });
        };
        self.session().token = Some(token.to_owned());
        Ok(token.to_owned())
    }

    /// A call with the access token; when the server rejects the token (expired,
    /// `soft_logout`, logged out elsewhere), logs in again once and repeats the call.
    async fn authed(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        now: Timestamp,
    ) -> Result<Value, Report> {
        let token = self.token(now).await?;
        let path = (segments, query);
        match self.call(method.clone(), path, body, Some(&token), now).await {
            Ok(answer) => Ok(answer),
            Err(Failure { token_rejected: true, report })
                if matches!(self.settings.auth, Auth::Password(_)) =>
            {
                tracing::info!(
                    user = %self.settings.user,
                    "the homeserver rejected herald's access token; logging in again"
                );
                drop(report);
                let token = self.log_in(Some(&token), now).await?;
                self.call(method, path, body, Some(&token), now).await.map_err(|f| f.report)
            }
            Err(failure) => Err(failure.report),
        }
    }

    /// The room id: configured, or the alias resolved once.
    async fn room_id(&self, now: Timestamp) -> Result<String, Report> {
        if let Some(room) = self.session().room_id.clone() {
            return Ok(room);
        }
        let alias = self.settings.room.clone();
        let segments = ["directory", "room", alias.as_str()];
        let answer = self.authed(reqwest::Method::GET, &segments, &[], None, now).await?;
        let Some(room) = answer.get("room_id").and_then(Value::as_str) else {
            return Err(Report {
                outcome: Outcome::Retry {
                    reason: format!("the homeserver did not resolve the alias {alias} to a room"),
                    after: None,
                },
                status: Some(200),
                detail: None,
                pause: None,
            });
        };
        self.session().room_id = Some(room.to_owned());
        Ok(room.to_owned())
    }

    /// herald's user id: the configured `user`, or for a given token the server's answer
    /// to `whoami`, asked once.
    async fn user_id(&self, now: Timestamp) -> Result<String, Report> {
        if let Some(user) = self.session().user_id.clone() {
            return Ok(user);
        }
        let answer =
            self.authed(reqwest::Method::GET, &["account", "whoami"], &[], None, now).await?;
        let Some(user) = answer.get("user_id").and_then(Value::as_str) else {
            return Err(Report {
                outcome: Outcome::Retry {
                    reason: "the homeserver's whoami answer has no user_id".to_owned(),
                    after: None,
                },
                status: Some(200),
                detail: None,
                pause: None,
            });
        };
        self.session().user_id = Some(user.to_owned());
        Ok(user.to_owned())
    }

    async fn deliver(&self, request: &Request<'_>) -> Result<Report, Report> {
        let role = match request.thread {
            Thread::Original => Role::Original,
            Thread::Update { seq, original_remote_ref, .. } => {
                let Some(root) = original_remote_ref.filter(|r| r.starts_with('$')) else {
                    return Err(permanent(
                        "the original message has no Matrix event id, so herald cannot reply \
                         to or edit it"
                            .to_owned(),
                    ));
                };
                match self.settings.update_mode {
                    UpdateMode::Thread => Role::Reply { seq, root },
                    UpdateMode::Edit => Role::Edit { seq, root },
                }
            }
        };
        let content = render::content(request.message, request.delivery_id, role);
        let room = self.room_id(request.now).await?;
        let (created_at, now) = (request.created_at, request.now);
        let look = lookup::due(request.ambiguous, created_at, now, self.settings.lookup_after);
        if look && let Some(event) = self.find(&room, request.delivery_id, created_at, now).await? {
            let mut report = match role {
                Role::Edit { root, .. } => delivered(root),
                _ => delivered(&event),
            };
            report.detail = Some(format!(
                "found {event} in the room: the delivery is older than `lookup_after`, when \
                 the homeserver may have forgotten the transaction id"
            ));
            return Ok(report);
        }
        let txn = txn_id(request.delivery_id);
        let segments = ["rooms", room.as_str(), "send", "m.room.message", txn.as_str()];
        let answer =
            self.authed(reqwest::Method::PUT, &segments, &[], Some(&content), request.now).await?;
        // An edit's remote ref stays the original: later updates relate to it.
        let event = answer.get("event_id").and_then(Value::as_str);
        Ok(match (event, role) {
            (Some(_), Role::Edit { root, .. }) => delivered(root),
            (Some(event), _) => delivered(event),
            (None, _) => Report {
                outcome: Outcome::Unknown {
                    reason: "the homeserver answered without the event id".to_owned(),
                },
                status: Some(200),
                detail: None,
                pause: None,
            },
        })
    }
}

fn delivered(event_id: &str) -> Report {
    Report {
        outcome: Outcome::delivered(Some(event_id.to_owned())),
        status: Some(200),
        detail: None,
        pause: None,
    }
}

/// A failed login: nothing was sent, so an ambiguous login is simply retried.
fn login_failed(user: &str, mut report: Report) -> Report {
    report.outcome = match report.outcome {
        Outcome::Unknown { reason } | Outcome::Retry { reason, .. } => {
            Outcome::Retry { reason: format!("login as {user} failed: {reason}"), after: None }
        }
        Outcome::Permanent { reason } => {
            Outcome::Permanent { reason: format!("login as {user} failed: {reason}") }
        }
        Outcome::Throttled { reason, after } => {
            Outcome::Throttled { reason: format!("login as {user}: {reason}"), after }
        }
        other => other,
    };
    report
}

#[async_trait]
impl Connector for Matrix {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    /// A matrix.to link to the event in the configured room (alias or id): it opens in
    /// whichever client the reader uses, without herald knowing their homeserver's web UI.
    fn remote_link(&self, remote_ref: &str) -> Option<String> {
        if !remote_ref.starts_with('$') || remote_ref.contains(['/', '#', '?']) {
            return None;
        }
        let mut url = reqwest::Url::parse("https://matrix.to/").ok()?;
        url.set_fragment(Some(&format!("/{}/{remote_ref}", self.settings.room)));
        Some(url.into())
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        match self.deliver(request).await {
            Ok(report) | Err(report) => report,
        }
    }
}
