//! The `classify` target: how each kind turns a destination's answer (status, headers,
//! body) into an outcome, called as its connector calls it.
//!
//! Input: a kind selector byte (its index in [`KINDS`]), the status (two bytes,
//! big-endian), a knob byte, then NUL-separated parts: header lines (`Name: value`) and
//! the body. Properties: the documented class for the status (the tables in `http.rs`
//! and each kind's `classify.rs`); waits never beyond `RETRY_AFTER_CAP`; a reason that
//! is short and never empty; secrets the code promises to redact (PagerDuty's routing
//! key, a Teams flow's `sig`) never in the report; a pause only with a failure.

use std::time::Duration;

use herald_connectors::email::Step;
use herald_connectors::http::{self, Answer, RETRY_AFTER_CAP};
use herald_connectors::{
    Report, discord, email, fuzzing, matrix, mattermost, mattermost_webhook, slack, slack_webhook,
};
use herald_core::Outcome;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::input::Input;
use crate::message::NOW;

/// The kinds, in selector order.
pub const KINDS: &[&str] = &[
    "http",
    "slack",
    "slack-webhook",
    "discord",
    "matrix",
    "mattermost",
    "mattermost-webhook",
    "jira",
    "opsgenie",
    "pagerduty",
    "teams-workflow",
    "teams-graph",
    "teams-graph-token",
    "email",
];

/// A PagerDuty routing key (32 characters).
const ROUTING_KEY: &str = "R0UT1NGKEY0000000000000000000042";
/// A Teams flow URL's `sig`.
const FLOW_SIG: &str = "s1gTe4msFl0wS3cr3tV4lue0000000000000000000x";
/// The longest reason an answer may leave in the attempt log: it quotes the
/// destination, but only an excerpt.
const REASON_LIMIT: usize = 2_000;

/// The class of an outcome, for comparisons.
fn class(outcome: &Outcome) -> &'static str {
    outcome.class()
}

/// One answer as the test sees it.
struct Answered<'a> {
    status: u16,
    headers: HeaderMap,
    body: &'a [u8],
    retry_after: Option<Duration>,
    parsed: Option<Value>,
    excerpt: String,
}

/// Classifies one input for one kind and checks its properties.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = KINDS[usize::from(input.byte()) % KINDS.len()];
    let status = input.u16();
    let knob = input.byte();
    let headers = headers(&String::from_utf8_lossy(input.part()));
    let body = input.rest();
    let answer = Answered {
        status,
        retry_after: http::retry_after(&headers, NOW),
        parsed: serde_json::from_slice(body).ok(),
        excerpt: http::excerpt(body, http::EXCERPT_LIMIT),
        headers,
        body,
    };
    let report = match kind {
        "http" => plain(&answer),
        "slack" => slack(&answer, knob.is_multiple_of(2)),
        "slack-webhook" => slack_webhook(&answer),
        "discord" => discord(&answer),
        "matrix" => matrix(&answer),
        "mattermost" => mattermost(&answer),
        "mattermost-webhook" => mattermost_webhook(&answer),
        "jira" => jira(&answer),
        "opsgenie" => opsgenie(&answer),
        "pagerduty" => pagerduty(&answer),
        "teams-workflow" => teams_workflow(&answer),
        "teams-graph" => teams_graph(&answer),
        "teams-graph-token" => teams_graph_token(&answer),
        _ => smtp(&answer, knob),
    };
    check(&report, kind);
}

/// Header lines `Name: value`; lines that are not a valid header are left out, as an
/// HTTP client would never deliver them.
fn headers(text: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim()))
        else {
            continue;
        };
        headers.append(name, value);
    }
    headers
}

/// What every report keeps, whatever the kind.
fn check(report: &Report, kind: &str) {
    let outcome = &report.outcome;
    if let Outcome::Retry { after: Some(wait), .. } | Outcome::Throttled { after: Some(wait), .. } =
        outcome
    {
        assert!(*wait <= RETRY_AFTER_CAP, "{kind}: a wait of {wait:?} beyond the cap");
    }
    if let Some(reason) = outcome.reason() {
        let n = reason.chars().count();
        assert!(n > 0, "{kind}: an empty reason for {outcome:?}");
        assert!(n <= REASON_LIMIT, "{kind}: a reason of {n} characters: {reason:?}");
    }
    if report.pause.is_some() {
        assert!(
            !matches!(outcome, Outcome::Delivered { .. }),
            "{kind}: a delivered answer pauses the destination"
        );
    }
}

/// The documented class of `http::classify` (its table).
fn documented(status: u16, retry_after: Option<Duration>) -> &'static str {
    match status {
        200..=299 => "delivered",
        100..=199 | 408 => "retry",
        300..=399 => "permanent",
        429 => "throttled",
        503 if retry_after.is_some() => "throttled",
        500..=599 => "retry",
        400..=499 => "permanent",
        _ => "unknown",
    }
}

fn report(outcome: Outcome) -> Report {
    Report { outcome, status: None, detail: None, pause: None }
}

fn plain(a: &Answered<'_>) -> Report {
    let answer = Answer {
        status: a.status,
        retry_after: a.retry_after,
        location: None,
        excerpt: a.excerpt.clone(),
    };
    let outcome = answer.outcome();
    assert_eq!(class(&outcome), documented(a.status, a.retry_after), "http: status {}", a.status);
    if let Outcome::Retry { after, .. } | Outcome::Throttled { after, .. } = &outcome {
        assert_eq!(*after, a.retry_after, "http: the wait is not the Retry-After");
    }
    report(outcome)
}

fn slack(a: &Answered<'_>, configured: bool) -> Report {
    let outcome = slack::classify(a.status, a.retry_after, a.parsed.as_ref(), &a.excerpt);
    let ok = a.parsed.as_ref().and_then(|b| b.get("ok")).and_then(Value::as_bool);
    let expected = match (a.status, ok) {
        (429, _) => "throttled",
        (_, Some(true)) => "delivered",
        (_, Some(false)) => class(&outcome),
        (200..=299, None) => "unknown",
        (status, None) => documented(status, a.retry_after),
    };
    assert_eq!(class(&outcome), expected, "slack: status {} ok {ok:?}", a.status);
    let code = a
        .parsed
        .as_ref()
        .filter(|b| b.get("ok") == Some(&Value::Bool(false)))
        .and_then(|b| b.get("error")?.as_str());
    let pause = code.and_then(|code| slack::pause(code, configured));
    if let (Some(_), Some(code)) = (&pause, code) {
        let known = slack::TOKEN_GONE.contains(&code) || slack::CHANNEL_GONE.contains(&code);
        assert!(known, "slack: code {code:?} pauses the destination");
    }
    Report { outcome, status: Some(a.status), detail: None, pause }
}

fn slack_webhook(a: &Answered<'_>) -> Report {
    let outcome = slack_webhook::classify(a.status, a.retry_after, &a.excerpt);
    let expected = match a.status {
        200..=299 => "delivered",
        429 => "throttled",
        400 | 403 | 404 | 410 => "permanent",
        status => documented(status, a.retry_after),
    };
    assert_eq!(class(&outcome), expected, "slack-webhook: status {}", a.status);
    let pause = slack_webhook::pause(a.status, &a.excerpt);
    if pause.is_some() {
        let listed = slack_webhook::PAUSING.iter().any(|&(s, c)| s == a.status && c == a.excerpt);
        assert!(listed, "slack-webhook: {} {:?} pauses", a.status, a.excerpt);
    }
    Report { outcome, status: Some(a.status), detail: None, pause }
}

fn discord(a: &Answered<'_>) -> Report {
    let outcome = discord::classify(a.status, &a.headers, a.parsed.as_ref(), &a.excerpt, NOW);
    let id = a.parsed.as_ref().and_then(|b| b.get("id")).and_then(Value::as_str);
    let expected = match a.status {
        200..=299 if id.is_some_and(|id| !id.is_empty()) => "delivered",
        200..=299 => "unknown",
        429 => "throttled",
        400..=499 => "permanent",
        status => documented(status, a.retry_after),
    };
    assert_eq!(class(&outcome), expected, "discord: status {}", a.status);
    if let Outcome::Delivered { remote_ref, .. } = &outcome {
        assert_eq!(remote_ref.as_deref(), id, "discord: the remote ref is not the message id");
    }
    let pause = discord::pause(a.status, a.parsed.as_ref());
    Report { outcome, status: Some(a.status), detail: None, pause }
}

fn matrix(a: &Answered<'_>) -> Report {
    let outcome = matrix::classify(a.status, a.retry_after, a.parsed.as_ref(), &a.excerpt);
    let code = a.parsed.as_ref().and_then(|b| b.get("errcode")).and_then(Value::as_str);
    let expected = match (a.status, code) {
        (200..=299, _) => "delivered",
        (429, _) | (_, Some("M_LIMIT_EXCEEDED")) => "throttled",
        (_, Some(code)) if matrix::PERMANENT.contains(&code) => "permanent",
        _ => class(&outcome),
    };
    assert_eq!(class(&outcome), expected, "matrix: status {} errcode {code:?}", a.status);
    report(outcome)
}

fn mattermost(a: &Answered<'_>) -> Report {
    let outcome = mattermost::classify(a.status, &a.headers, a.parsed.as_ref(), &a.excerpt, NOW);
    let id = a.parsed.as_ref().and_then(|b| b.get("id")).and_then(Value::as_str);
    let expected = match a.status {
        200..=299 if id.is_some_and(|id| !id.is_empty()) => "delivered",
        200..=299 => "unknown",
        429 => "throttled",
        400..=499 => "permanent",
        _ => class(&outcome),
    };
    assert_eq!(class(&outcome), expected, "mattermost: status {}", a.status);
    report(outcome)
}

fn mattermost_webhook(a: &Answered<'_>) -> Report {
    let outcome = mattermost_webhook::classify(a.status, &a.headers, &a.excerpt, NOW);
    let expected = match a.status {
        200..=299 => "delivered",
        429 => "throttled",
        400..=499 => "permanent",
        _ => class(&outcome),
    };
    assert_eq!(class(&outcome), expected, "mattermost-webhook: status {}", a.status);
    let pause = mattermost_webhook::pause(a.status, &a.excerpt);
    Report { outcome, status: Some(a.status), detail: None, pause }
}

/// The documented class of a failed Jira or Opsgenie call: 429 throttled, 408 and 5xx
/// retried, other 4xx permanent, and never delivered (the call failed).
fn failed_call(kind: &str, report: &Report, status: u16) {
    let outcome = &report.outcome;
    let expected = match status {
        429 => "throttled",
        408 | 500..=599 => "retry",
        400..=499 => "permanent",
        _ => class(outcome),
    };
    assert_eq!(class(outcome), expected, "{kind}: status {status}");
    assert!(!matches!(outcome, Outcome::Delivered { .. }), "{kind}: a failure as delivered");
}

fn jira(a: &Answered<'_>) -> Report {
    let report = fuzzing::jira_failure(a.status, a.retry_after, &a.headers, a.body);
    failed_call("jira", &report, a.status);
    report
}

fn opsgenie(a: &Answered<'_>) -> Report {
    let report = fuzzing::opsgenie_failure(a.status, a.retry_after, &a.headers, a.body);
    if a.status == 408 {
        // Opsgenie documents no 408; the shared table's `Retry` applies.
        assert_eq!(class(&report.outcome), "retry", "opsgenie: status 408");
    }
    failed_call("opsgenie", &report, a.status);
    report
}

fn pagerduty(a: &Answered<'_>) -> Report {
    let report = fuzzing::pagerduty_answer(a.status, a.retry_after, a.body, "dedup", ROUTING_KEY);
    let expected = match a.status {
        200..=299 => "delivered",
        400 => "permanent",
        429 => "throttled",
        500..=599 => "retry",
        _ => class(&report.outcome),
    };
    assert_eq!(class(&report.outcome), expected, "pagerduty: status {}", a.status);
    if a.status == 429 {
        assert!(
            matches!(report.outcome, Outcome::Throttled { after: Some(_), .. }),
            "pagerduty: a 429 without a wait"
        );
    }
    no_secret("pagerduty", &report, ROUTING_KEY);
    report
}

fn teams_workflow(a: &Answered<'_>) -> Report {
    let answer = Answer {
        status: a.status,
        retry_after: a.retry_after,
        location: None,
        excerpt: a.excerpt.clone(),
    };
    let report = fuzzing::teams_workflow_answer(answer, Some(FLOW_SIG));
    let expected = match a.status {
        200..=299 => "delivered",
        status => documented(status, a.retry_after),
    };
    assert_eq!(class(&report.outcome), expected, "teams-workflow: status {}", a.status);
    if let Outcome::Delivered { unconfirmed, .. } = report.outcome {
        assert_eq!(unconfirmed, a.status == 202, "teams-workflow: only a 202 is unconfirmed");
    }
    no_secret("teams-workflow", &report, FLOW_SIG);
    report
}

fn teams_graph(a: &Answered<'_>) -> Report {
    let outcome = fuzzing::teams_graph_answer(a.status, a.retry_after, a.body);
    let expected = match a.status {
        200..=299 => "delivered",
        status => documented(status, a.retry_after),
    };
    assert_eq!(class(&outcome), expected, "teams-graph: status {}", a.status);
    report(outcome)
}

fn teams_graph_token(a: &Answered<'_>) -> Report {
    let outcome = fuzzing::teams_graph_token_answer(a.status, a.retry_after, a.body);
    let error = a.parsed.as_ref().and_then(|b| b.get("error")).and_then(Value::as_str);
    let expected = match (a.status, error) {
        (429, _) => "throttled",
        (500..=599, _) | (_, Some("temporarily_unavailable" | "server_error")) => "retry",
        _ => "permanent",
    };
    assert_eq!(class(&outcome), expected, "teams-graph token: status {}", a.status);
    report(outcome)
}

/// An SMTP reply at one of the steps (the knob picks it), per RFC 5321 §4.2.1.
fn smtp(a: &Answered<'_>, knob: u8) -> Report {
    const STEPS: [Step; 8] = [
        Step::Connect,
        Step::StartTls,
        Step::Auth,
        Step::MailFrom,
        Step::Rcpt,
        Step::Data,
        Step::Content,
        Step::EndOfData,
    ];
    let step = STEPS[usize::from(knob) % STEPS.len()];
    let outcome = email::reply(step, a.status, &a.excerpt);
    let expected = match a.status {
        200..=399 => "delivered",
        400..=499 => "retry",
        _ => "permanent",
    };
    assert_eq!(class(&outcome), expected, "email: reply {}", a.status);
    report(outcome)
}

/// `secret` appears nowhere in the report.
fn no_secret(kind: &str, report: &Report, secret: &str) {
    let reason = report.outcome.reason().unwrap_or_default();
    assert!(!reason.contains(secret), "{kind}: the reason shows the secret: {reason:?}");
    let detail = report.detail.as_deref().unwrap_or_default();
    assert!(!detail.contains(secret), "{kind}: the detail shows the secret: {detail:?}");
}
