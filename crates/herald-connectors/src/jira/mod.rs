//! The Jira Cloud connector (`kind = "jira"`): REST v3 with basic auth (e-mail + API
//! token), per DESTINATIONS.md §4.
//!
//! - An original becomes an issue (`POST /rest/api/3/issue`): summary from the title, ADF
//!   description from the Markdown body, labels `herald` and the marker `herald-<delivery
//!   id>`. The remote ref is the issue key.
//! - A follow-up becomes a comment on that issue (`POST .../issue/{key}/comment`) whose
//!   footer carries the follow-up's marker as visible text. Jira also takes comment
//!   `properties` on create, but `GET .../issue/{key}/comment` (the strongly consistent
//!   read a retry uses) only expands `renderedBody`, not properties: reading them back
//!   would cost a request per comment. The footer comes back in the body itself.
//! - A follow-up with severity `resolved` then applies `transition_on_resolve`.
//!
//! Jira has no idempotency key, so nothing is ever sent twice where a look-up can tell:
//! after an ambiguous create, a JQL search for the marker label (`lookup`); the search is
//! only eventually consistent, so "not found" within `lookup_grace` of the ambiguous
//! attempt means look again later (`Outcome::Reconciling`, no attempt burned), never a
//! resend. A follow-up retried, ambiguous or in two steps (comment, then transition) first
//! reads the issue's comments, so "comment posted, transition failed" does not post the
//! comment twice.

pub(crate) mod classify;
mod config;
mod lookup;
pub(crate) mod render;

#[cfg(test)]
mod tests;

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use herald_core::{Capabilities, Outcome, RateLimit, Severity};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};

pub use config::{DEFAULT_LOOKUP_GRACE, JiraConfig, KEYS};

use self::classify::Failure;
use crate::{Connector, ConnectorError, Report, Request, Thread};

/// What Jira allows: no deduplication by key, a look-up by label, comments as replies.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: false, lookup: true, edit: false, thread_reply: true };

/// Two attempts per second. API-token traffic is governed by Jira's per-second burst
/// limits (per endpoint and method) and per-issue write limits, not by the points quota
/// of apps (DESTINATIONS.md §4). One attempt makes up to five requests (comments read,
/// comment, transitions read, transition, status read), two of them writes to the same
/// issue, so 2/s stays at about ten requests a second at worst and leaves room for the
/// people using the site; a 429 still pauses the lane for its `Retry-After`.
pub const DEFAULT_RATE_LIMIT: RateLimit =
    RateLimit { count: NonZeroU32::MIN.saturating_add(1), per: Duration::from_secs(1) };

/// The `jira` kind.
pub const KIND: crate::Kind = crate::Kind {
    name: "jira",
    keys: KEYS,
    parse: config::parse,
    defaults: crate::Defaults { rate_limit: Some(DEFAULT_RATE_LIMIT), concurrency: None },
    capabilities: CAPABILITIES,
};

/// The most bytes of an answer herald reads (comment pages can be large).
const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// A Jira destination.
pub struct Jira {
    config: JiraConfig,
    /// `url` without a trailing slash.
    base: String,
    /// `Basic base64(email:token)`, marked sensitive.
    auth: HeaderValue,
    client: crate::http::Client,
}

impl std::fmt::Debug for Jira {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jira").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A step's answer: the parsed JSON body of a 2xx (`Null` when empty), or the report
/// that ends the attempt.
type Step = Result<Value, Box<Report>>;

impl Jira {
    /// Validates the settings.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` for an unusable URL or credentials; the message
    /// never echoes the token.
    pub fn new(config: JiraConfig, client: crate::http::Client) -> Result<Jira, ConnectorError> {
        let base = crate::http::api_base(&config.url, "url", "https://example.atlassian.net")?;
        let credentials = basic_credentials(&config.email, &config.token);
        let mut auth = HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|_| {
            ConnectorError::InvalidSetting("email/token: not usable in an HTTP header".to_owned())
        })?;
        auth.set_sensitive(true);
        Ok(Jira { config, base, auth, client })
    }

    /// Sends one request and reads the answer: `Ok(json)` for a 2xx, else the report.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        request: &Request<'_>,
        what: &str,
    ) -> Step {
        let url = format!("{}/rest/api/3/{path}", self.base);
        let mut builder = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            builder = builder.json(body);
        }
        // A 2xx body names the issue, so it is read as long as the attempt lasts.
        let answer = crate::http::exchange(builder, request.now, BODY_LIMIT, None)
            .await
            .map_err(|error| Box::new(classify::unanswered(&error)))?;
        let crate::http::ApiAnswer { status, retry_after, headers, body: bytes } = answer;
        if (200..=299).contains(&status) {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|_| {
                let excerpt = crate::http::excerpt(&bytes, 200);
                Box::new(Report {
                    outcome: Outcome::Unknown {
                        reason: format!(
                            "Jira answered HTTP {status} to {what} with a body herald cannot \
                             read; it may have acted on the request"
                        ),
                    },
                    status: Some(status),
                    detail: Some(excerpt),
                    pause: None,
                })
            });
        }
        let failure = Failure::new(status, retry_after, &headers, &bytes);
        Err(Box::new(classify::report(&failure, what)))
    }

    /// An original: find it after an ambiguous attempt, else create it.
    async fn send_original(&self, request: &Request<'_>) -> Report {
        if request.ambiguous {
            match lookup::find_issue(self, request).await {
                Ok(Some(key)) => {
                    return delivered(key, "found by its label after an ambiguous attempt");
                }
                Ok(None) => {
                    let since = request.ambiguous_at.unwrap_or(request.created_at);
                    if let Some(after) =
                        lookup::wait_before_trusting(request.now, since, self.config.lookup_grace)
                    {
                        return Report {
                            outcome: Outcome::Reconciling {
                                after,
                                reason: format!(
                                    "Jira's search does not find the issue yet, but it lags \
                                     behind; herald looks again before creating it (not \
                                     before {} after the ambiguous attempt)",
                                    humantime::format_duration(self.config.lookup_grace)
                                ),
                            },
                            status: None,
                            detail: None,
                            pause: None,
                        };
                    }
                }
                Err(report) => return lookup::keep_ambiguous(*report),
            }
        }
        let body = json!({
            "fields": {
                "project": {"key": self.config.project},
                "issuetype": {"name": self.config.issue_type},
                "summary": render::summary(&request.message.title),
                "labels": render::labels(request.message, request.delivery_id),
                "description": render::description(request.message),
            }
        });
        match self
            .call(reqwest::Method::POST, "issue", Some(&body), request, "creating the issue")
            .await
        {
            Ok(created) => match created.get("key").and_then(Value::as_str) {
                Some(key) => delivered(key.to_owned(), "created"),
                // Created, but herald cannot name it: the next attempt finds it by label.
                None => Report {
                    outcome: Outcome::Unknown {
                        reason: "Jira created the issue but its answer names no key; herald \
                                 looks it up by its label next"
                            .to_owned(),
                    },
                    status: Some(201),
                    detail: None,
                    pause: None,
                },
            },
            Err(report) => *report,
        }
    }

    /// A follow-up: a comment on the original's issue, then the transition if resolved.
    async fn send_update(&self, request: &Request<'_>, seq: u32, original: Option<&str>) -> Report {
        let Some(key) = original.filter(|key| lookup::is_issue_key(key)) else {
            return Report {
                outcome: Outcome::Permanent {
                    reason: format!(
                        "the original message has no Jira issue key to comment on (its remote \
                         reference is {original:?})"
                    ),
                },
                status: None,
                detail: None,
                pause: None,
            };
        };
        let marker = render::marker(request.delivery_id);
        let transition = (request.message.severity == Severity::Resolved)
            .then_some(self.config.transition_on_resolve.as_deref())
            .flatten();
        let mut existing = None;
        // The attempt number alone cannot tell that the comment was posted before: an
        // attempt whose later step (the transition) was throttled, or failed as a circuit
        // breaker's probe, uses up no attempt, so its retry comes with the same number. A
        // two-step follow-up therefore always looks first.
        if request.attempt > 1 || request.ambiguous || transition.is_some() {
            match lookup::find_comment(self, request, key, &marker).await {
                Ok(found) => existing = found,
                Err(report) if request.ambiguous => return lookup::keep_ambiguous(*report),
                Err(report) => return *report,
            }
        }
        let (comment_id, how) = match existing {
            Some(id) => (id, "comment found by its marker after an earlier attempt"),
            None => {
                let body =
                    json!({"body": render::comment(request.message, seq, request.delivery_id)});
                let path = format!("issue/{key}/comment");
                match self
                    .call(reqwest::Method::POST, &path, Some(&body), request, "adding the comment")
                    .await
                {
                    Ok(comment) => {
                        let id =
                            comment.get("id").and_then(Value::as_str).unwrap_or("?").to_owned();
                        (id, "comment added")
                    }
                    Err(report) => return *report,
                }
            }
        };
        let remote_ref = format!("{key}/comment/{comment_id}");
        if let Some(name) = transition {
            if let Err(report) = self.transition(request, key, name).await {
                return after_comment(*report, &remote_ref);
            }
            return delivered(remote_ref, &format!("{how}; issue moved by \"{name}\""));
        }
        delivered(remote_ref, how)
    }

    /// Applies the transition called `name` (by its name or its target status, ignoring
    /// case). Not available but the issue already there (or done): nothing to do.
    async fn transition(
        &self,
        request: &Request<'_>,
        key: &str,
        name: &str,
    ) -> Result<(), Box<Report>> {
        let path = format!("issue/{key}/transitions");
        let listed = self
            .call(reqwest::Method::GET, &path, None, request, "listing the transitions")
            .await?;
        let transitions: Vec<&Value> = listed
            .get("transitions")
            .and_then(Value::as_array)
            .map(|t| t.iter().collect())
            .unwrap_or_default();
        let named = |t: &&Value, field: &dyn Fn(&Value) -> Option<&str>| {
            field(t).is_some_and(|n| n.trim().eq_ignore_ascii_case(name.trim()))
        };
        let found = transitions
            .iter()
            .find(|t| named(t, &|t| t.get("name").and_then(Value::as_str)))
            .or_else(|| {
                transitions.iter().find(|t| {
                    named(t, &|t| t.get("to").and_then(|to| to.get("name")).and_then(Value::as_str))
                })
            });
        if let Some(transition) = found {
            let id = transition.get("id").cloned().unwrap_or(Value::Null);
            let body = json!({"transition": {"id": id}});
            self.call(reqwest::Method::POST, &path, Some(&body), request, "moving the issue")
                .await?;
            return Ok(());
        }
        let issue = self
            .call(
                reqwest::Method::GET,
                &format!("issue/{key}?fields=status"),
                None,
                request,
                "reading the issue's status",
            )
            .await?;
        let status = issue.get("fields").and_then(|f| f.get("status"));
        let status_name = status.and_then(|s| s.get("name")).and_then(Value::as_str).unwrap_or("");
        let category = status
            .and_then(|s| s.get("statusCategory"))
            .and_then(|c| c.get("key"))
            .and_then(Value::as_str);
        if status_name.trim().eq_ignore_ascii_case(name.trim()) || category == Some("done") {
            // Already there (an earlier attempt moved it, or a person did).
            return Ok(());
        }
        let available: Vec<&str> =
            transitions.iter().filter_map(|t| t.get("name").and_then(Value::as_str)).collect();
        Err(Box::new(Report {
            outcome: Outcome::Permanent {
                reason: format!(
                    "Jira offers no transition \"{name}\" for {key} in status \"{status_name}\"; \
                     available: {}; check `transition_on_resolve`",
                    if available.is_empty() { "none".to_owned() } else { available.join(", ") }
                ),
            },
            status: None,
            detail: None,
            pause: None,
        }))
    }
}

/// A delivered report with the remote ref and what happened as the detail.
fn delivered(remote_ref: String, how: &str) -> Report {
    Report {
        outcome: Outcome::delivered(Some(remote_ref)),
        status: None,
        detail: Some(how.to_owned()),
        pause: None,
    }
}

/// A failed transition's report, saying that the comment is there (so a person reading
/// `last_error` knows what the retry will and will not repeat).
fn after_comment(mut report: Report, remote_ref: &str) -> Report {
    let note = format!(" (the comment {remote_ref} is posted; a retry does not post it again)");
    match &mut report.outcome {
        Outcome::Retry { reason, .. }
        | Outcome::Throttled { reason, .. }
        | Outcome::Permanent { reason }
        | Outcome::Unknown { reason }
        | Outcome::Reconciling { reason, .. } => reason.push_str(&note),
        Outcome::Delivered { .. } => {}
    }
    report
}

#[async_trait]
impl Connector for Jira {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    /// `KEY` opens the issue, `KEY/comment/ID` the issue scrolled to the comment.
    fn remote_link(&self, remote_ref: &str) -> Option<String> {
        let (key, comment) = match remote_ref.split_once("/comment/") {
            Some((key, id)) => (key, Some(id)),
            None => (remote_ref, None),
        };
        let issue_key = key.split_once('-').is_some_and(|(project, number)| {
            !project.is_empty()
                && project.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
        });
        if !issue_key {
            return None;
        }
        match comment {
            None => Some(format!("{}/browse/{key}", self.base)),
            Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
                Some(format!("{}/browse/{key}?focusedCommentId={id}", self.base))
            }
            Some(_) => None,
        }
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        match request.thread {
            Thread::Original => self.send_original(request).await,
            Thread::Update { seq, original_remote_ref, .. } => {
                self.send_update(request, seq, original_remote_ref).await
            }
        }
    }
}

/// `base64(email:token)`, the credentials of Jira's `Basic` authentication.
pub(crate) fn basic_credentials(email: &str, token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{email}:{token}"))
}
