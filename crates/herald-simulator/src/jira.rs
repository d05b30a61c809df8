//! The Jira Cloud REST v3 dialect at `/jira/{name}/rest/api/3/...`: basic auth, issue
//! create with validation, comments, a small workflow with transitions, and a JQL search
//! that sees an issue only the plan's `search_lag` after it was created (Jira's search is eventually
//! consistent; the strongly consistent reads are `GET issue` and `GET issue/{key}/comment`).
//!
//! Writes that carry herald's marker go through the endpoint's [`FaultPlan`](crate::FaultPlan)
//! keyed by the delivery id in the marker: an issue's `herald-<id>` label, or the
//! `herald-<id>` word in a comment's text. So `copies_of(name, delivery_id)` counts issues
//! (or comments) created for that delivery, and "store, then hang" creates the issue and
//! leaves the request unanswered. Reads, searches and transitions are not subject to the
//! plan; [`Simulator::fail_jira_transitions`] injects transition failures.
//!
//! Error bodies follow Jira's shape `{"errorMessages":[...],"errors":{field: message}}`;
//! a 429 carries `Retry-After`, `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
//! `X-RateLimit-Reset` (ISO 8601) and `RateLimit-Reason: jira-burst-based`, and an injected
//! 503 carries `Retry-After` as Jira's resource-limit 503s do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::{Endpoint, Outcome, Record};
use crate::{Shared, SimView, Simulator};

/// The e-mail address the dialect accepts in basic auth.
pub const JIRA_EMAIL: &str = "herald@example.com";

/// The API token the dialect accepts in basic auth.
pub const JIRA_TOKEN: &str = "sim-jira-token";

/// The one project that exists.
pub const JIRA_PROJECT: &str = "OPS";

/// The issue types the project has.
pub const JIRA_ISSUE_TYPES: &[&str] = &["Incident", "Task", "Bug"];

/// The largest summary Jira accepts, in characters.
const SUMMARY_LIMIT: usize = 255;

/// The largest description or comment Jira accepts, in characters of text.
const TEXT_LIMIT: usize = 32_767;

/// The prefix of herald's marker label and comment word.
const MARKER_PREFIX: &str = "herald-";

/// Jira's default page size of `GET issue/{key}/comment`.
const COMMENT_PAGE: usize = 5000;

/// One workflow transition: (id, name, target status).
type Transition = (&'static str, &'static str, &'static str);

/// The workflow every issue follows: each status with the transitions available from it.
const WORKFLOW: &[(&str, &[Transition])] = &[
    ("To Do", &[("11", "Start Progress", "In Progress"), ("31", "Done", "Done")]),
    ("In Progress", &[("21", "Stop Progress", "To Do"), ("31", "Done", "Done")]),
    ("Done", &[("41", "Reopen", "To Do")]),
];

/// The status a new issue starts in.
const INITIAL_STATUS: &str = "To Do";

/// One issue as the Jira dialect holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct JiraIssue {
    /// The numeric id, as a string (`"10001"`).
    pub id: String,
    /// The key (`"OPS-1"`).
    pub key: String,
    /// The issue type's name.
    pub issue_type: String,
    /// The summary.
    pub summary: String,
    /// The labels, in the order given.
    pub labels: Vec<String>,
    /// The ADF description, if one was given.
    pub description: Option<Value>,
    /// The current workflow status (`"To Do"`, `"In Progress"`, `"Done"`).
    pub status: String,
    /// The comments, oldest first.
    pub comments: Vec<JiraComment>,
    /// The names of the transitions applied, in order.
    pub transitions: Vec<String>,
}

/// One comment of a [`JiraIssue`].
#[derive(Clone, Debug, PartialEq)]
pub struct JiraComment {
    /// The comment's id.
    pub id: String,
    /// The ADF body.
    pub body: Value,
    /// The text of the body's text nodes, joined by spaces.
    pub text: String,
}

/// The Jira state of every endpoint, created at start for every endpoint name.
pub(crate) struct Sites {
    sites: HashMap<String, Mutex<Site>>,
}

impl Sites {
    /// Empty sites for `names`.
    pub(crate) fn new(names: &[String]) -> Sites {
        Sites { sites: names.iter().map(|n| (n.clone(), Mutex::new(Site::default()))).collect() }
    }

    fn lock(&self, name: &str) -> Option<MutexGuard<'_, Site>> {
        // Every update is a few pushes and counter bumps: keep serving after a panic.
        self.sites.get(name).map(|site| site.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One endpoint's Jira: its issues and its dialect-level faults.
#[derive(Default)]
struct Site {
    issues: Vec<Stored>,
    next_number: u64,
    next_comment: u64,
    searches: u64,
    /// The next `n` transition requests are answered with `status`.
    transition_failures: (u32, u16),
}

struct Stored {
    issue: JiraIssue,
    /// When it was created, on tokio's clock (so paused time works).
    created: tokio::time::Instant,
}

impl Site {
    fn issue_mut(&mut self, key: &str) -> Option<&mut Stored> {
        self.issues.iter_mut().find(|s| s.issue.key.eq_ignore_ascii_case(key) || s.issue.id == key)
    }

    fn create(&mut self, fields: &CreateFields) -> (String, String) {
        self.next_number += 1;
        let n = self.next_number;
        let issue = JiraIssue {
            id: (10_000 + n).to_string(),
            key: format!("{JIRA_PROJECT}-{n}"),
            issue_type: fields.issue_type.clone(),
            summary: fields.summary.clone(),
            labels: fields.labels.clone(),
            description: fields.description.clone(),
            status: INITIAL_STATUS.to_owned(),
            comments: Vec::new(),
            transitions: Vec::new(),
        };
        let ids = (issue.id.clone(), issue.key.clone());
        self.issues.push(Stored { issue, created: tokio::time::Instant::now() });
        ids
    }
}

impl SimView {
    /// The base URL of endpoint `name`'s Jira (`url` in a `jira` destination's config).
    pub fn jira_url(&self, name: &str) -> String {
        format!("http://{}/jira/{name}", self.shared.addr)
    }

    /// Every issue of endpoint `name`'s Jira, in order of creation, with its comments.
    pub fn jira_issues(&self, name: &str) -> Vec<JiraIssue> {
        self.shared
            .jira
            .lock(name)
            .map(|site| site.issues.iter().map(|s| s.issue.clone()).collect())
            .unwrap_or_default()
    }

    /// How many JQL searches endpoint `name`'s Jira answered.
    pub fn jira_searches(&self, name: &str) -> u64 {
        self.shared.jira.lock(name).map_or(0, |site| site.searches)
    }
}

impl Simulator {
    /// The base URL of endpoint `name`'s Jira.
    pub fn jira_url(&self, name: &str) -> String {
        self.view.jira_url(name)
    }

    /// Answers the next `n` transition requests of endpoint `name` with `status` (and
    /// Jira's error body), applying nothing.
    pub fn fail_jira_transitions(&self, name: &str, n: u32, status: u16) {
        if let Some(mut site) = self.view.shared.jira.lock(name) {
            site.transition_failures = (n, status);
        }
    }
}

/// The dialect's routes, merged into the simulator's router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/jira/{name}/rest/api/3/issue", post(create_issue))
        .route("/jira/{name}/rest/api/3/issue/{key}", get(get_issue))
        .route("/jira/{name}/rest/api/3/issue/{key}/comment", get(get_comments).post(add_comment))
        .route(
            "/jira/{name}/rest/api/3/issue/{key}/transitions",
            get(get_transitions).post(do_transition),
        )
        .route("/jira/{name}/rest/api/3/search/jql", post(search))
        .route("/jira/{name}/rest/api/3/search", any(removed_search))
}

// ---------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------

fn json_answer(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=UTF-8"));
    response
}

/// Jira's error body: general messages plus per-field messages.
fn jira_error(status: u16, messages: &[&str], fields: &[(&str, &str)]) -> Response {
    let errors: serde_json::Map<String, Value> =
        fields.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_answer(status, &json!({ "errorMessages": messages, "errors": errors }))
}

fn unauthorized() -> Response {
    jira_error(401, &["Client must be authenticated to access this resource."], &[])
}

fn issue_not_found() -> Response {
    jira_error(404, &["Issue does not exist or you do not have permission to see it."], &[])
}

fn unknown_site(name: &str) -> Response {
    jira_error(404, &[&format!("No Jira site named {name:?} on this simulator.")], &[])
}

/// The answer to a request the fault plan rejected with `status`, in Jira's words.
fn injected(status: u16, retry_after_secs: Option<u64>) -> Response {
    let mut response = match status {
        400 => jira_error(400, &["The request was rejected (injected failure)."], &[]),
        401 => unauthorized(),
        403 => {
            jira_error(403, &["You do not have permission to create issues in this project."], &[])
        }
        404 => issue_not_found(),
        410 => removed_api(),
        429 => jira_error(429, &["Rate limit exceeded."], &[]),
        503 => jira_error(503, &["Service Unavailable"], &[]),
        _ => jira_error(status, &[&format!("Injected failure (HTTP {status}).")], &[]),
    };
    if status == 429 {
        let secs = retry_after_secs.unwrap_or(1);
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        headers.insert(HeaderName::from_static("x-ratelimit-limit"), HeaderValue::from(10));
        headers.insert(HeaderName::from_static("x-ratelimit-remaining"), HeaderValue::from(0));
        #[allow(
            clippy::disallowed_methods,
            reason = "a stand-in server's header: clients compare it with the wall clock"
        )]
        let reset = iso8601(SystemTime::now() + Duration::from_secs(secs));
        if let Ok(value) = HeaderValue::from_str(&reset) {
            headers.insert(HeaderName::from_static("x-ratelimit-reset"), value);
        }
        headers.insert(
            HeaderName::from_static("ratelimit-reason"),
            HeaderValue::from_static("jira-burst-based"),
        );
    } else if status == 503 {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
    }
    response
}

fn removed_api() -> Response {
    jira_error(
        410,
        &["The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. \
           A full migration guideline is available at \
           https://developer.atlassian.com/changelog/#CHANGE-2046"],
        &[],
    )
}

async fn removed_search() -> Response {
    removed_api()
}

fn drop_connection() -> Response {
    crate::server::drop_connection()
}

/// Marks a log entry as ended when dropped (the client stopped waiting or was answered).
struct EndOnDrop<'a> {
    endpoint: &'a Endpoint,
    index: usize,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.endpoint.end(self.index);
    }
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// Whether `headers` carry basic auth for [`JIRA_EMAIL`]:[`JIRA_TOKEN`].
fn authorized(headers: &HeaderMap) -> bool {
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{JIRA_EMAIL}:{JIRA_TOKEN}").as_bytes());
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| v.trim() == expected)
}

/// Parses a JSON body the way Jira reports a broken one.
fn parse_json(body: &[u8]) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|error| {
        Box::new(jira_error(
            400,
            &[&format!("Unexpected character in the request body: {error}")],
            &[],
        ))
    })
}

/// The text of every text node of an ADF value, in document order.
fn adf_texts(node: &Value, out: &mut Vec<String>) {
    if node.get("type").and_then(Value::as_str) == Some("text")
        && let Some(text) = node.get("text").and_then(Value::as_str)
    {
        out.push(text.to_owned());
    }
    if let Some(children) = node.get("content").and_then(Value::as_array) {
        for child in children {
            adf_texts(child, out);
        }
    }
}

/// Whether `value` is an ADF document (`{"type":"doc","version":1,"content":[...]}`).
fn is_adf_doc(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("doc")
        && value.get("version").and_then(Value::as_u64) == Some(1)
        && value.get("content").is_some_and(Value::is_array)
}

/// The delivery id in the first `herald-<id>` word of `text`.
fn marker_in(text: &str) -> Option<&str> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | ',' | '·'))
        .find_map(|word| word.strip_prefix(MARKER_PREFIX))
        .filter(|id| !id.is_empty())
}

struct CreateFields {
    issue_type: String,
    summary: String,
    labels: Vec<String>,
    description: Option<Value>,
}

/// Validates a create body as Jira does, field by field.
fn validate_create(body: &Value) -> Result<CreateFields, Box<Response>> {
    let Some(fields) = body.get("fields").and_then(Value::as_object) else {
        return Err(Box::new(jira_error(400, &["Issue fields are required."], &[])));
    };
    let mut errors: Vec<(&str, String)> = Vec::new();
    let project = fields.get("project").and_then(|p| p.get("key").or_else(|| p.get("id")));
    if project.and_then(Value::as_str) != Some(JIRA_PROJECT) {
        errors.push(("project", "Specify a valid project ID or key".to_owned()));
    }
    let issue_type = fields
        .get("issuetype")
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !JIRA_ISSUE_TYPES.contains(&issue_type) {
        errors.push(("issuetype", "Specify a valid issue type".to_owned()));
    }
    let summary = fields.get("summary").and_then(Value::as_str).unwrap_or_default();
    if summary.trim().is_empty() {
        errors.push(("summary", "You must specify a summary of the issue.".to_owned()));
    } else if summary.chars().count() > SUMMARY_LIMIT {
        errors.push(("summary", "Summary must be less than 255 characters.".to_owned()));
    } else if summary.contains('\n') {
        errors.push((
            "summary",
            "The summary is invalid because it contains newline characters.".to_owned(),
        ));
    }
    let mut labels = Vec::new();
    if let Some(given) = fields.get("labels") {
        for label in given.as_array().into_iter().flatten() {
            match label.as_str() {
                Some(l) if !l.is_empty() && !l.contains(' ') && l.chars().count() <= 255 => {
                    labels.push(l.to_owned());
                }
                _ => errors.push(("labels", format!("The label '{label}' is invalid."))),
            }
        }
    }
    let description = fields.get("description").filter(|d| !d.is_null()).cloned();
    if let Some(doc) = &description {
        if !is_adf_doc(doc) {
            errors.push((
                "description",
                "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
                    .to_owned(),
            ));
        } else {
            let mut texts = Vec::new();
            adf_texts(doc, &mut texts);
            if texts.iter().map(|t| t.chars().count()).sum::<usize>() > TEXT_LIMIT {
                errors.push(("description", "CONTENT_LIMIT_EXCEEDED".to_owned()));
            }
        }
    }
    if errors.is_empty() {
        Ok(CreateFields {
            issue_type: issue_type.to_owned(),
            summary: summary.to_owned(),
            labels,
            description,
        })
    } else {
        let fields: Vec<(&str, &str)> = errors.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Err(Box::new(jira_error(400, &[], &fields)))
    }
}

/// Reads a request's body, bounded like the webhook endpoint's.
async fn read_body(body: Body) -> Result<bytes::Bytes, Box<Response>> {
    axum::body::to_bytes(body, crate::server::BODY_LIMIT)
        .await
        .map_err(|_| Box::new(jira_error(413, &["The request body is too large."], &[])))
}

/// Runs the fault plan for one marked write; `apply` performs the write when the plan
/// stores a copy and returns the answer body; `existing` finds the copy a deduplicating
/// plan already holds.
async fn planned_write(
    shared: &Shared,
    endpoint: &Endpoint,
    key: Option<&str>,
    record: Record,
    apply: impl FnOnce() -> Value,
    existing: impl FnOnce() -> Option<Value>,
) -> Response {
    let before = key.map_or(0, |k| endpoint.copies_of(k));
    let record = endpoint.plan.record.then_some(record);
    let (outcome, entry) = endpoint.handle(key, record);
    let _end = entry.map(|index| EndOnDrop { endpoint, index });
    let stores = !matches!(outcome, Outcome::Rejected(_) | Outcome::Throttled { .. });
    let added = match key {
        Some(k) => endpoint.copies_of(k) > before,
        None => stores,
    };
    let answer = if added {
        Some(apply())
    } else if stores {
        existing()
    } else {
        None
    };
    shared.notify_change();

    let Some(outcome) = crate::server::wait_out(shared, endpoint, outcome).await else {
        return drop_connection();
    };
    match outcome {
        Outcome::Accepted { .. } => match answer {
            Some(body) => json_answer(StatusCode::CREATED, &body),
            None => jira_error(500, &["Internal server error."], &[]),
        },
        Outcome::Rejected(status) | Outcome::StoredThenRejected(status) => injected(status, None),
        Outcome::Throttled { retry_after_secs } => injected(429, Some(retry_after_secs)),
        Outcome::Reset | Outcome::Hang | Outcome::Delayed { .. } => drop_connection(),
    }
}

async fn create_issue(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(endpoint) = shared.endpoints.get(&name) else { return unknown_site(&name) };
    if !authorized(&headers) {
        return unauthorized();
    }
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return *response,
    };
    let value = match parse_json(&bytes) {
        Ok(value) => value,
        Err(response) => return *response,
    };
    let fields = match validate_create(&value) {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    let key = fields.labels.iter().find_map(|l| l.strip_prefix(MARKER_PREFIX)).map(str::to_owned);
    let base = format!("http://{}/jira/{name}/rest/api/3/issue", shared.addr);
    let created =
        |id: &str, key: &str| json!({ "id": id, "key": key, "self": format!("{base}/{id}") });
    let marker = key.as_deref().map(|k| format!("{MARKER_PREFIX}{k}"));
    planned_write(
        &shared,
        endpoint,
        key.as_deref(),
        Record { headers, body: bytes },
        || {
            let Some(mut site) = shared.jira.lock(&name) else { return json!({}) };
            let (id, key) = site.create(&fields);
            created(&id, &key)
        },
        || {
            let marker = marker.as_deref()?;
            let site = shared.jira.lock(&name)?;
            let found = site.issues.iter().find(|s| s.issue.labels.iter().any(|l| l == marker))?;
            Some(created(&found.issue.id, &found.issue.key))
        },
    )
    .await
}

fn issue_json(shared: &Shared, name: &str, issue: &JiraIssue) -> Value {
    json!({
        "id": issue.id,
        "key": issue.key,
        "self": format!("http://{}/jira/{name}/rest/api/3/issue/{}", shared.addr, issue.id),
        "fields": {
            "summary": issue.summary,
            "labels": issue.labels,
            "issuetype": { "name": issue.issue_type },
            "project": { "key": JIRA_PROJECT },
            "status": {
                "name": issue.status,
                "statusCategory": { "key": status_category(&issue.status) },
            },
        },
    })
}

async fn get_issue(
    State(shared): State<Arc<Shared>>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let Some(mut site) = shared.jira.lock(&name) else { return unknown_site(&name) };
    match site.issue_mut(&key) {
        Some(stored) => json_answer(StatusCode::OK, &issue_json(&shared, &name, &stored.issue)),
        None => issue_not_found(),
    }
}

/// The category key Jira gives a status (`new`, `indeterminate`, `done`).
fn status_category(status: &str) -> &'static str {
    match status {
        "Done" => "done",
        "In Progress" => "indeterminate",
        _ => "new",
    }
}

fn comment_json(comment: &JiraComment) -> Value {
    json!({ "id": comment.id, "body": comment.body })
}

/// `startAt` and `maxResults` of a paged GET.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    start_at: Option<usize>,
    max_results: Option<usize>,
}

async fn get_comments(
    State(shared): State<Arc<Shared>>,
    Path((name, key)): Path<(String, String)>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let Some(mut site) = shared.jira.lock(&name) else { return unknown_site(&name) };
    let Some(stored) = site.issue_mut(&key) else { return issue_not_found() };
    let comments = &stored.issue.comments;
    let start = page.start_at.unwrap_or(0);
    let max = page.max_results.unwrap_or(COMMENT_PAGE).min(COMMENT_PAGE);
    let slice: Vec<Value> = comments.iter().skip(start).take(max).map(comment_json).collect();
    json_answer(
        StatusCode::OK,
        &json!({ "startAt": start, "maxResults": max, "total": comments.len(), "comments": slice }),
    )
}

async fn add_comment(
    State(shared): State<Arc<Shared>>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(endpoint) = shared.endpoints.get(&name) else { return unknown_site(&name) };
    if !authorized(&headers) {
        return unauthorized();
    }
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return *response,
    };
    let value = match parse_json(&bytes) {
        Ok(value) => value,
        Err(response) => return *response,
    };
    let exists = shared.jira.lock(&name).is_some_and(|mut site| site.issue_mut(&key).is_some());
    if !exists {
        return issue_not_found();
    }
    let Some(doc) = value.get("body").filter(|b| is_adf_doc(b)).cloned() else {
        return jira_error(
            400,
            &[],
            &[(
                "comment",
                "Comment body is not valid! Operation value must be an Atlassian Document.",
            )],
        );
    };
    let mut texts = Vec::new();
    adf_texts(&doc, &mut texts);
    if texts.iter().map(|t| t.chars().count()).sum::<usize>() > TEXT_LIMIT {
        return jira_error(
            400,
            &[],
            &[(
                "comment",
                "The entered text is too long. It exceeds the allowed limit of 32767 characters.",
            )],
        );
    }
    let text = texts.join(" ");
    let marker = marker_in(&text).map(str::to_owned);
    let marker_word = marker.as_deref().map(|m| format!("{MARKER_PREFIX}{m}"));
    planned_write(
        &shared,
        endpoint,
        marker.as_deref(),
        Record { headers, body: bytes },
        || {
            let Some(mut site) = shared.jira.lock(&name) else { return json!({}) };
            site.next_comment += 1;
            let comment =
                JiraComment { id: (20_000 + site.next_comment).to_string(), body: doc, text };
            let answer = comment_json(&comment);
            if let Some(stored) = site.issue_mut(&key) {
                stored.issue.comments.push(comment);
            }
            answer
        },
        || {
            let word = marker_word.as_deref()?;
            let mut site = shared.jira.lock(&name)?;
            let stored = site.issue_mut(&key)?;
            stored.issue.comments.iter().find(|c| c.text.contains(word)).map(comment_json)
        },
    )
    .await
}

fn transitions_of(status: &str) -> &'static [Transition] {
    WORKFLOW.iter().find(|(s, _)| *s == status).map_or(&[], |(_, t)| t)
}

async fn get_transitions(
    State(shared): State<Arc<Shared>>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let Some(mut site) = shared.jira.lock(&name) else { return unknown_site(&name) };
    let Some(stored) = site.issue_mut(&key) else { return issue_not_found() };
    let list: Vec<Value> = transitions_of(&stored.issue.status)
        .iter()
        .map(|(id, name, to)| json!({ "id": id, "name": name, "to": { "name": to } }))
        .collect();
    json_answer(StatusCode::OK, &json!({ "transitions": list }))
}

async fn do_transition(
    State(shared): State<Arc<Shared>>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return *response,
    };
    let value = match parse_json(&bytes) {
        Ok(value) => value,
        Err(response) => return *response,
    };
    let response = {
        let Some(mut site) = shared.jira.lock(&name) else { return unknown_site(&name) };
        if site.transition_failures.0 > 0 {
            site.transition_failures.0 -= 1;
            let status = site.transition_failures.1;
            drop(site);
            shared.notify_change();
            return injected(status, None);
        }
        let Some(stored) = site.issue_mut(&key) else { return issue_not_found() };
        let id = value.get("transition").and_then(|t| t.get("id")).and_then(Value::as_str);
        let found =
            transitions_of(&stored.issue.status).iter().find(|(tid, _, _)| Some(*tid) == id);
        match found {
            Some((_, tname, to)) => {
                stored.issue.status = (*to).to_owned();
                stored.issue.transitions.push((*tname).to_owned());
                StatusCode::NO_CONTENT.into_response()
            }
            None => jira_error(
                400,
                &[&format!("Transition id '{}' is not valid for this issue.", id.unwrap_or(""))],
                &[],
            ),
        }
    };
    shared.notify_change();
    response
}

/// The clauses of the JQL the dialect understands: `field = value` joined by `AND`.
fn parse_jql(jql: &str) -> Result<Vec<(String, String)>, String> {
    let mut clauses = Vec::new();
    let lower = jql.to_ascii_lowercase();
    let mut rest = jql;
    let mut offset = 0;
    loop {
        let tail = &lower[offset..];
        let (clause, next) = match tail.find(" and ") {
            Some(at) => (&rest[..at], Some(at + 5)),
            None => (rest, None),
        };
        let Some((field, value)) = clause.split_once('=') else {
            return Err(format!(
                "Error in the JQL Query: expecting an operator in '{}'.",
                clause.trim()
            ));
        };
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        clauses.push((field.trim().to_ascii_lowercase(), value.to_owned()));
        match next {
            Some(n) => {
                rest = &rest[n..];
                offset += n;
            }
            None => return Ok(clauses),
        }
    }
}

async fn search(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return *response,
    };
    let value = match parse_json(&bytes) {
        Ok(value) => value,
        Err(response) => return *response,
    };
    let Some(jql) = value.get("jql").and_then(Value::as_str) else {
        return jira_error(400, &["The JQL query is required (it must be bounded)."], &[]);
    };
    let clauses = match parse_jql(jql) {
        Ok(clauses) => clauses,
        Err(message) => return jira_error(400, &[&message], &[]),
    };
    for (field, value) in &clauses {
        match field.as_str() {
            "project" if value != JIRA_PROJECT => {
                return jira_error(
                    400,
                    &[&format!("The value '{value}' does not exist for the field 'project'.")],
                    &[],
                );
            }
            "project" | "labels" | "key" => {}
            other => {
                return jira_error(400, &[&format!("Field '{other}' is not supported here.")], &[]);
            }
        }
    }
    let max = value.get("maxResults").and_then(Value::as_u64).unwrap_or(50).clamp(1, 5000);
    let start: usize = value
        .get("nextPageToken")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let now = tokio::time::Instant::now();
    let response = {
        let Some(mut site) = shared.jira.lock(&name) else { return unknown_site(&name) };
        site.searches += 1;
        let lag = shared.endpoints.get(&name).map_or(Duration::ZERO, |e| e.plan.search_lag);
        let hits: Vec<Value> = site
            .issues
            .iter()
            .filter(|s| s.created + lag <= now)
            .filter(|s| {
                clauses.iter().all(|(field, value)| match field.as_str() {
                    "labels" => s.issue.labels.iter().any(|l| l == value),
                    "key" => s.issue.key.eq_ignore_ascii_case(value),
                    _ => true,
                })
            })
            .map(|s| json!({ "id": s.issue.id, "key": s.issue.key, "fields": {} }))
            .collect();
        let max = usize::try_from(max).unwrap_or(50);
        let page: Vec<Value> = hits.iter().skip(start).take(max).cloned().collect();
        let more = start + page.len() < hits.len();
        let mut body = json!({ "issues": page, "isLast": !more });
        if more {
            body["nextPageToken"] = Value::from((start + page.len()).to_string());
        }
        json_answer(StatusCode::OK, &body)
    };
    shared.notify_change();
    response
}

/// `t` as an ISO 8601 UTC timestamp (`2026-03-02T10:00:00Z`), as `X-RateLimit-Reset` has it.
fn iso8601(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn iso8601_formats_known_instants() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_772_445_600);
        assert_eq!(iso8601(t), "2026-03-02T10:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_825_599);
        assert_eq!(iso8601(leap), "2000-02-29T11:59:59Z");
    }

    #[test]
    fn jql_clauses_are_split_on_and() {
        let clauses = parse_jql(r#"project = OPS AND labels = "herald-d_1""#).unwrap_or_default();
        assert_eq!(
            clauses,
            [
                ("project".to_owned(), "OPS".to_owned()),
                ("labels".to_owned(), "herald-d_1".to_owned())
            ]
        );
        assert!(parse_jql("project OPS").is_err());
    }

    #[test]
    fn markers_are_found_in_comment_text() {
        assert_eq!(marker_in("Update 2 · sent by herald · herald-d_01AB"), Some("d_01AB"));
        assert_eq!(marker_in("(herald-d_9)"), Some("d_9"));
        assert_eq!(marker_in("no marker herald-"), None);
    }
}
