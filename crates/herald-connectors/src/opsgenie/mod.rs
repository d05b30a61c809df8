//! The Opsgenie connector (`kind = "opsgenie"`): the Alert API v2 with an API
//! integration's key (`Authorization: GenieKey …`), per DESTINATIONS.md §7.
//!
//! - An original creates an alert (`POST /v2/alerts`) with the alias
//!   `herald-<broadcast id>`. Opsgenie keeps one open alert per alias, so a resend after
//!   an ambiguous attempt bumps that alert's count instead of opening another; the retry
//!   first looks the alias up (`GET /v2/alerts/{alias}?identifierType=alias`) and sends
//!   nothing when the alert is there.
//! - A follow-up adds a note (`POST /v2/alerts/{alias}/notes?identifierType=alias`) that
//!   ends with the follow-up's marker; a retry after an ambiguous attempt lists the
//!   alert's notes first and does not add the note twice. Severity `resolved` closes the alert instead
//!   (`POST /v2/alerts/{alias}/close?identifierType=alias`, the text as the close note);
//!   closing is idempotent, and a retry that finds the alert closed sends nothing.
//!
//! Every write is answered `202` with a `requestId` and processed asynchronously. herald
//! polls `GET /v2/alerts/requests/{requestId}` a bounded number of times
//! ([`CONFIRM_POLLS`], about a second in all): `isSuccess: true` is a confirmed
//! delivery, `isSuccess: false` is permanent (Opsgenie's `status` is the reason), and a
//! request still not processed after the last poll (Opsgenie answers 404 until then) is
//! `Outcome::Delivered { unconfirmed: true }`: Opsgenie took it, and waiting longer would
//! hold the lane for what is almost always a success. The remote ref is the alias.

pub(crate) mod classify;
mod config;
pub(crate) mod render;

#[cfg(test)]
mod tests;

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use herald_core::{Capabilities, Outcome, RateLimit, Severity};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::Value;

pub use config::{DEFAULT_BASE_URL, KEYS, OpsgenieConfig};

use self::classify::Failure;
use crate::{Connector, ConnectorError, Report, Request, Thread};

/// What Opsgenie allows: one open alert per alias, a look-up by alias, notes as replies.
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: true, lookup: true, edit: false, thread_reply: true };

/// One attempt a second. The Alert domain's limits depend on the plan (a token bucket per
/// minute and per second); one attempt makes up to five requests (look-up, write, three
/// status polls), and a 429 still pauses the lane for the period Opsgenie names.
pub const DEFAULT_RATE_LIMIT: RateLimit =
    RateLimit { count: NonZeroU32::MIN, per: Duration::from_secs(1) };

/// The `opsgenie` kind.
pub const KIND: crate::Kind = crate::Kind {
    name: "opsgenie",
    keys: KEYS,
    parse: config::parse,
    defaults: crate::Defaults { rate_limit: Some(DEFAULT_RATE_LIMIT), concurrency: None },
    capabilities: CAPABILITIES,
};

/// The waits before each poll of a request's status: about a second in all, within any
/// sensible attempt timeout.
pub const CONFIRM_POLLS: [Duration; 3] =
    [Duration::from_millis(100), Duration::from_millis(300), Duration::from_millis(600)];

/// The most bytes of an answer herald reads (a note list can be long).
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// An Opsgenie destination.
pub struct Opsgenie {
    config: OpsgenieConfig,
    /// `base_url` without a trailing slash.
    base: String,
    /// `GenieKey <key>`, marked sensitive.
    auth: HeaderValue,
    client: crate::http::Client,
}

impl std::fmt::Debug for Opsgenie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opsgenie").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A step's answer: the status and parsed JSON body of a 2xx (`Null` when empty or not
/// JSON), or the report that ends the attempt.
type Step = Result<(u16, Value), Box<Report>>;

/// What became of a write's request, per its status.
enum Confirmed {
    /// Processed successfully; Opsgenie's status words.
    Yes(String),
    /// Processed and failed; Opsgenie's status words.
    No(String),
    /// Not processed by the last poll (or the polls could not tell).
    NotYet,
}

impl Opsgenie {
    /// Validates the settings.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` for an unusable URL or key; never echoes the key.
    pub fn new(
        config: OpsgenieConfig,
        client: crate::http::Client,
    ) -> Result<Opsgenie, ConnectorError> {
        let base = crate::http::api_base(&config.base_url, "base_url", "https://api.opsgenie.com")?;
        let mut auth = HeaderValue::from_str(&format!("GenieKey {}", config.api_key.trim()))
            .map_err(|_| {
                ConnectorError::InvalidSetting("api_key: not usable in an HTTP header".to_owned())
            })?;
        auth.set_sensitive(true);
        Ok(Opsgenie { config, base, auth, client })
    }

    /// Sends one request and reads the answer: `Ok` for a 2xx, else the report.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        request: &Request<'_>,
        what: &str,
    ) -> Step {
        let url = format!("{}/v2/{path}", self.base);
        let mut builder = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let read_within = Some(crate::http::EXCERPT_READ_TIMEOUT);
        let answer = crate::http::exchange(builder, request.now, BODY_LIMIT, read_within)
            .await
            .map_err(|error| Box::new(classify::unanswered(&error)))?;
        let crate::http::ApiAnswer { status, retry_after, headers, body: bytes } = answer;
        if (200..=299).contains(&status) {
            return Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)));
        }
        let failure = Failure::new(status, retry_after, &headers, &bytes);
        Err(Box::new(classify::report(&failure, what)))
    }

    /// Polls the status of the write `request_id` up to [`CONFIRM_POLLS`] times.
    async fn confirm(&self, request: &Request<'_>, request_id: Option<&str>) -> Confirmed {
        let Some(id) = request_id.filter(|id| is_path_safe(id)) else {
            return Confirmed::NotYet;
        };
        let path = format!("alerts/requests/{id}");
        for wait in CONFIRM_POLLS {
            tokio::time::sleep(wait).await;
            let status = self
                .call(reqwest::Method::GET, &path, None, request, "reading the request's status")
                .await;
            let Ok((_, answer)) = status else {
                // 404 means "not processed yet"; a throttled or failed poll proves nothing
                // either way. Both leave the accepted write standing.
                continue;
            };
            let data = answer.get("data");
            let words =
                data.and_then(|d| d.get("status")).and_then(Value::as_str).unwrap_or("").to_owned();
            match data.and_then(|d| d.get("isSuccess").or_else(|| d.get("success"))) {
                Some(Value::Bool(true)) => return Confirmed::Yes(words),
                Some(Value::Bool(false)) => return Confirmed::No(words),
                _ => {}
            }
        }
        Confirmed::NotYet
    }

    /// A write (`what`) answered 202: confirmed, failed, or accepted unconfirmed.
    async fn settle(
        &self,
        request: &Request<'_>,
        answer: &Value,
        alias: &str,
        what: &str,
    ) -> Report {
        let request_id = answer.get("requestId").and_then(Value::as_str);
        match self.confirm(request, request_id).await {
            Confirmed::Yes(words) => delivered(alias, false, &format!("{what}: {words}")),
            Confirmed::No(words) => Report {
                outcome: Outcome::Permanent {
                    reason: format!(
                        "Opsgenie accepted {what} but could not process it: \"{words}\""
                    ),
                },
                status: Some(202),
                detail: Some(words),
                pause: None,
            },
            Confirmed::NotYet => delivered(
                alias,
                true,
                &format!(
                    "{what}: accepted, not yet processed after {} status polls",
                    CONFIRM_POLLS.len()
                ),
            ),
        }
    }

    /// The alert with `alias`, if Opsgenie has one (`None` on 404).
    async fn find_alert(
        &self,
        request: &Request<'_>,
        alias: &str,
    ) -> Result<Option<Value>, Box<Report>> {
        let path = format!("alerts/{alias}?identifierType=alias");
        match self.call(reqwest::Method::GET, &path, None, request, "looking up the alert").await {
            Ok((_, answer)) => Ok(answer.get("data").filter(|d| d.is_object()).cloned()),
            Err(report) if report.status == Some(404) => Ok(None),
            Err(report) => Err(report),
        }
    }

    /// An original: find it after an ambiguous attempt, else create it.
    async fn send_original(&self, request: &Request<'_>) -> Report {
        let alias = render::alias(request.broadcast_id);
        if request.ambiguous {
            // A failed look-up is no reason to wait: a second create with the same alias
            // only bumps the open alert's count.
            if let Ok(Some(alert)) = self.find_alert(request, &alias).await {
                let status = alert.get("status").and_then(Value::as_str).unwrap_or("?");
                return delivered(
                    &alias,
                    false,
                    &format!("found by its alias after an ambiguous attempt (status {status})"),
                );
            }
        }
        let body = render::create(request.message, request.broadcast_id, request.delivery_id);
        match self
            .call(reqwest::Method::POST, "alerts", Some(&body), request, "creating the alert")
            .await
        {
            Ok((_, answer)) => self.settle(request, &answer, &alias, "alert created").await,
            Err(report) => *report,
        }
    }

    /// A follow-up: a note, or closing the alert when resolved.
    async fn send_update(&self, request: &Request<'_>) -> Report {
        let alias = render::alias(request.broadcast_id);
        let closing = request.message.severity == Severity::Resolved;
        // Only an ambiguous attempt can have left a note or a close behind: every other
        // failure (an error status, a refused connection) was known not to be processed.
        if request.ambiguous {
            if closing {
                if let Ok(Some(alert)) = self.find_alert(request, &alias).await
                    && alert.get("status").and_then(Value::as_str) == Some("closed")
                {
                    return delivered(&alias, false, "the alert is already closed");
                }
            } else {
                match self.find_note(request, &alias).await {
                    Ok(true) => {
                        return delivered(
                            &alias,
                            false,
                            "note found by its marker after an earlier attempt",
                        );
                    }
                    Ok(false) => {}
                    Err(report) => {
                        if let Some(report) = keep_ambiguous(*report) {
                            return report;
                        }
                    }
                }
            }
        }
        let body = render::note(request.message, request.delivery_id);
        let (action, what) =
            if closing { ("close", "closing the alert") } else { ("notes", "adding the note") };
        let path = format!("alerts/{alias}/{action}?identifierType=alias");
        match self.call(reqwest::Method::POST, &path, Some(&body), request, what).await {
            Ok((_, answer)) => {
                let done = if closing { "alert closed" } else { "note added" };
                self.settle(request, &answer, &alias, done).await
            }
            Err(report) => *report,
        }
    }

    /// Whether the alert's notes already hold this follow-up's marker.
    async fn find_note(&self, request: &Request<'_>, alias: &str) -> Result<bool, Box<Report>> {
        let marker = render::marker(request.delivery_id);
        let path = format!("alerts/{alias}/notes?identifierType=alias&limit=100&order=desc");
        let (_, answer) = self
            .call(reqwest::Method::GET, &path, None, request, "reading the alert's notes")
            .await?;
        let Some(notes) = answer.get("data").and_then(Value::as_array) else {
            return Err(Box::new(Report {
                outcome: Outcome::Unknown {
                    reason: "the answer listing the alert's notes has no list".to_owned(),
                },
                status: None,
                detail: None,
                pause: None,
            }));
        };
        Ok(notes.iter().any(|n| {
            n.get("note")
                .and_then(Value::as_str)
                .is_some_and(|text| text.lines().any(|l| l.trim() == marker))
        }))
    }
}

/// Whether `id` (a request id from an answer) can go into a URL path as-is.
fn is_path_safe(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A delivered report with the alias as the remote ref and what happened as the detail.
fn delivered(alias: &str, unconfirmed: bool, how: &str) -> Report {
    Report {
        outcome: Outcome::Delivered { remote_ref: Some(alias.to_owned()), unconfirmed },
        status: None,
        detail: Some(how.to_owned()),
        pause: None,
    }
}

/// A failed note look-up after an ambiguous attempt: `Some(report)` when nothing may be
/// posted on its word (throttling waits without burning an attempt; a failure that may
/// pass is `Unknown`), `None` when the look-up can never answer (a key without read
/// access, an alert gone): then the note is posted, since a second copy of a note costs
/// less than a lost update.
fn keep_ambiguous(report: Report) -> Option<Report> {
    let outcome = match report.outcome {
        Outcome::Throttled { after, reason } => Outcome::Reconciling {
            after: after.unwrap_or(Duration::from_secs(5)),
            reason: format!("the look-up was throttled: {reason}"),
        },
        Outcome::Retry { reason, .. } | Outcome::Unknown { reason } => Outcome::Unknown {
            reason: format!(
                "herald could not look up whether an earlier attempt added the note, so it \
                 adds nothing yet: {reason}"
            ),
        },
        _ => return None,
    };
    Some(Report { outcome, ..report })
}

#[async_trait]
impl Connector for Opsgenie {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        match request.thread {
            Thread::Original => self.send_original(request).await,
            Thread::Update { .. } => self.send_update(request).await,
        }
    }
}
