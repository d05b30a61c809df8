//! Entry points for the fuzz targets (`crates/herald-fuzz`) into the pure renderers and
//! answer classifiers that are private to their kind. Not an API: nothing else may call
//! these, and they may change with the kinds.
//!
//! Each function is a thin call of the kind's own code, so a fuzz target exercises
//! exactly what `send` runs; none of them does I/O.

use std::time::Duration;

use herald_core::{Message, Outcome};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::http::Answer;
use crate::{Report, jira, opsgenie, pagerduty, teams_graph, teams_workflow};

/// Jira's limit on a summary, in characters.
pub const JIRA_SUMMARY_LIMIT: usize = jira::render::SUMMARY_LIMIT;
/// Jira's limit on a description or comment, in characters of the serialized document.
pub const JIRA_TEXT_LIMIT: usize = jira::render::TEXT_LIMIT;
/// Opsgenie's limit on an alert's message, in characters.
pub const OPSGENIE_MESSAGE_LIMIT: usize = opsgenie::render::MESSAGE_LIMIT;
/// Opsgenie's limit on an alert's description, in characters.
pub const OPSGENIE_DESCRIPTION_LIMIT: usize = opsgenie::render::DESCRIPTION_LIMIT;
/// Opsgenie's limit on a note, in characters.
pub const OPSGENIE_NOTE_LIMIT: usize = opsgenie::render::NOTE_LIMIT;
/// PagerDuty's limit on a summary, in characters.
pub const PAGERDUTY_SUMMARY_LIMIT: usize = pagerduty::render::SUMMARY_LIMIT;

/// The Jira issue summary of a title.
pub fn jira_summary(title: &str) -> String {
    jira::render::summary(title)
}

/// The labels of the Jira issue of delivery `delivery_id`.
pub fn jira_labels(message: &Message, delivery_id: &str) -> Vec<String> {
    jira::render::labels(message, delivery_id)
}

/// The ADF description of a new Jira issue.
pub fn jira_description(message: &Message) -> Value {
    jira::render::description(message)
}

/// The ADF body of follow-up comment `seq` of delivery `delivery_id`.
pub fn jira_comment(message: &Message, seq: u32, delivery_id: &str) -> Value {
    jira::render::comment(message, seq, delivery_id)
}

/// The marker of delivery `delivery_id` (a label, a word of a comment's footer).
pub fn jira_marker(delivery_id: &str) -> String {
    jira::render::marker(delivery_id)
}

/// Whether a retry finds `marker` in a comment body, as the connector looks.
pub fn jira_has_marker(body: &Value, marker: &str) -> bool {
    jira::render::has_marker(body, marker)
}

/// The ADF block nodes of a Markdown text.
pub fn jira_markdown(source: &str) -> Vec<Value> {
    jira::render::markdown(source)
}

/// The report of a failed Jira call, as the connector makes it.
pub fn jira_failure(
    status: u16,
    retry_after: Option<Duration>,
    headers: &HeaderMap,
    body: &[u8],
) -> Report {
    let failure = jira::classify::Failure::new(status, retry_after, headers, body);
    jira::classify::report(&failure, "creating the issue")
}

/// The body of `POST /v2/alerts` for an original.
pub fn opsgenie_create(message: &Message, broadcast_id: &str, delivery_id: &str) -> Value {
    opsgenie::render::create(message, broadcast_id, delivery_id)
}

/// The body of a follow-up's note.
pub fn opsgenie_note(message: &Message, delivery_id: &str) -> Value {
    opsgenie::render::note(message, delivery_id)
}

/// The marker a retry looks for in a note.
pub fn opsgenie_marker(delivery_id: &str) -> String {
    opsgenie::render::marker(delivery_id)
}

/// The alias of every alert of a broadcast.
pub fn opsgenie_alias(broadcast_id: &str) -> String {
    opsgenie::render::alias(broadcast_id)
}

/// The report of a failed Opsgenie call, as the connector makes it.
pub fn opsgenie_failure(
    status: u16,
    retry_after: Option<Duration>,
    headers: &HeaderMap,
    body: &[u8],
) -> Report {
    let failure = opsgenie::classify::Failure::new(status, retry_after, headers, body);
    opsgenie::classify::report(&failure, "creating the alert")
}

/// The PagerDuty event for update `seq` (0: the original).
pub fn pagerduty_event(
    message: &Message,
    routing_key: &str,
    broadcast_id: &str,
    delivery_id: &str,
    seq: u32,
) -> Value {
    pagerduty::render::event(message, routing_key, broadcast_id, delivery_id, seq)
}

/// The report of a PagerDuty answer, as the connector makes it.
pub fn pagerduty_answer(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    dedup_key: &str,
    routing_key: &str,
) -> Report {
    pagerduty::classify::answered(status, retry_after, body, dedup_key, routing_key)
}

/// The text of each block a Teams Workflows card makes of a Markdown text.
pub fn teams_workflow_markdown(source: &str) -> Vec<String> {
    use teams_workflow::render::Block;
    teams_workflow::render::markdown(source)
        .into_iter()
        .map(|block| match block {
            Block::Text(text) | Block::Code(text) | Block::Quote(text) => text,
        })
        .collect()
}

/// The report of a Teams Workflows answer; `secret` is the URL's `sig`.
pub fn teams_workflow_answer(answer: Answer, secret: Option<&str>) -> Report {
    teams_workflow::classify::answered(answer, secret)
}

/// The HTML Teams (Graph) renders of a Markdown text.
pub fn teams_graph_markdown(source: &str) -> String {
    teams_graph::render::markdown(source)
}

/// The outcome of a Graph answer to a post: `posted` for a 2xx, else `failed`.
pub fn teams_graph_answer(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    if (200..300).contains(&status) {
        teams_graph::classify::posted(body)
    } else {
        let excerpt = crate::http::excerpt(body, crate::http::EXCERPT_LIMIT);
        teams_graph::classify::failed(status, retry_after, &excerpt)
    }
}

/// The outcome of a token endpoint answer other than `200`.
pub fn teams_graph_token_answer(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Outcome {
    teams_graph::classify::token_failed(status, retry_after, body)
}
