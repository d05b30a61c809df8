//! The `render` target: every kind's payload rendering of a message the API accepts.
//!
//! Input: a kind selector byte (its index in [`KINDS`], modulo their number), then a
//! message as [`Case::read`] reads it. Beyond "no panic", each kind's payload must be
//! valid JSON (or a well-formed e-mail) within the destination's documented limits
//! (DESTINATIONS.md; the constants of each kind's `render.rs`), and carry what a retry
//! needs to find it again (the delivery's marker).

use herald_connectors::{
    Request, Thread, discord, email, fuzzing, matrix, mattermost, mattermost_webhook, slack,
    slack_webhook, teams_graph, teams_workflow, webhook,
};
use herald_core::Timestamp;
use serde_json::Value;

use crate::input::Input;
use crate::message::{BROADCAST_ID, Case, DELIVERY_ID, NOW, ORIGINAL_DELIVERY_ID};
use crate::property::{self, chars, json_text, string_at, within};

/// The kinds, in selector order.
pub const KINDS: &[&str] = &[
    "webhook",
    "slack",
    "slack-webhook",
    "teams-workflow",
    "teams-graph",
    "jira",
    "pagerduty",
    "opsgenie",
    "discord",
    "mattermost",
    "mattermost-webhook",
    "email",
    "matrix",
];

/// A Standard Webhooks signing secret (base64 of 24 bytes).
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A PagerDuty routing key (32 characters, as PagerDuty issues them).
const ROUTING_KEY: &str = "R0UT1NGKEY0000000000000000000042";

/// Renders one input for one kind and checks its properties.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = KINDS[usize::from(input.byte()) % KINDS.len()];
    let Some(case) = Case::read(&mut input) else { return };
    let thread = match case.seq {
        0 => Thread::Original,
        seq => Thread::Update {
            seq,
            in_reply_to: ORIGINAL_DELIVERY_ID,
            original_remote_ref: Some(remote_ref(kind)),
            original: &case.original,
            original_at: Timestamp::from_millis(NOW.as_millis() - 3_600_000),
        },
    };
    let request = Request {
        delivery_id: DELIVERY_ID,
        broadcast_id: BROADCAST_ID,
        destination: "fuzz",
        message: &case.message,
        thread,
        attempt: 1,
        ambiguous: false,
        now: NOW,
        created_at: NOW,
        ambiguous_at: None,
    };
    match kind {
        "webhook" => webhook(&request),
        "slack" => slack(&case),
        "slack-webhook" => slack_webhook(&request),
        "teams-workflow" => teams_workflow(&case),
        "teams-graph" => teams_graph(&case),
        "jira" => jira(&case),
        "pagerduty" => pagerduty(&case),
        "opsgenie" => opsgenie(&case),
        "discord" => discord(&case),
        "mattermost" => mattermost(&case),
        "mattermost-webhook" => mattermost_webhook(&request),
        "email" => email(&request),
        _ => matrix(&case),
    }
}

/// What the kind's API returned for the original, as the store keeps it.
fn remote_ref(kind: &str) -> &'static str {
    match kind {
        "slack" => "C0123456789:1795950123.000100",
        "email" => "<d_01JFUZZ0000000000000000000@example.com>",
        "matrix" => "$original-event",
        "discord" => "1234567890123456789",
        _ => "ref-42",
    }
}

fn webhook(request: &Request<'_>) {
    let config = webhook::WebhookConfig {
        url: "https://example.com/hooks/herald".to_owned(),
        secret: Some(SIGNING_SECRET.to_owned()),
        headers: Vec::new(),
    };
    let endpoint = match webhook::Endpoint::parse(&config) {
        Ok(endpoint) => endpoint,
        Err(error) => panic!("the fuzz webhook endpoint is invalid: {error}"),
    };
    let rendered = match webhook::render(&endpoint, request) {
        Ok(rendered) => rendered,
        Err(error) => panic!("webhook: a valid request does not render: {error}"),
    };
    let event: Value = match serde_json::from_slice(&rendered.body) {
        Ok(event) => event,
        Err(error) => panic!("webhook: the body is not JSON ({error})"),
    };
    let sent: herald_core::Message = match serde_json::from_value(event["data"]["message"].clone())
    {
        Ok(message) => message,
        Err(error) => panic!("webhook: data.message is not a message ({error}): {event}"),
    };
    assert_eq!(&sent, request.message, "webhook: the receiver gets another message");
    let header = |name: &str| rendered.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("webhook-id"), Some(DELIVERY_ID), "webhook: webhook-id");
    assert_eq!(header("idempotency-key"), Some(DELIVERY_ID), "webhook: Idempotency-Key");
    let expected = standardwebhooks::Webhook::new(SIGNING_SECRET)
        .and_then(|signer| signer.sign(DELIVERY_ID, NOW.as_millis() / 1000, &rendered.body));
    assert_eq!(
        header("webhook-signature"),
        expected.ok().as_deref(),
        "webhook: the signature is not that of the bytes sent"
    );
}

fn slack_role(seq: u32) -> slack::render::Role {
    match seq {
        0 => slack::render::Role::Original,
        seq if seq % 2 == 1 => slack::render::Role::Reply { seq },
        seq => slack::render::Role::Edit { seq },
    }
}

fn slack(case: &Case) {
    let role = slack_role(case.seq);
    slack_text(&slack::render::fallback_text(&case.message, role));
    slack_blocks(&slack::render::blocks(&case.message, role));
}

fn slack_webhook(request: &Request<'_>) {
    let payload = slack_webhook::payload(request);
    json_text(&payload, "slack-webhook payload");
    slack_text(string_at(&payload, "/text", "slack-webhook"));
    slack_blocks(&payload["blocks"]);
}

/// The `text` of a Slack message: within Slack's 40,000 characters, no mention markup.
fn slack_text(text: &str) {
    within(text, slack::render::TEXT_LIMIT, "slack text");
    property::no_slack_mention(text, "slack text");
}

/// Block Kit within its documented limits (DESTINATIONS.md §1): at most 50 blocks, a
/// header of 150 characters, section texts of 1 to 3,000, at most 10 fields of 1 to
/// 2,000 each, and about 13,000 characters in all (`msg_blocks_too_long` beyond).
fn slack_blocks(blocks: &Value) {
    json_text(blocks, "slack blocks");
    let Some(blocks) = blocks.as_array() else { panic!("slack blocks are not an array") };
    assert!(blocks.len() <= 50, "slack: {} blocks; Slack takes at most 50", blocks.len());
    let mut total = 0;
    for block in blocks {
        let kind = string_at(block, "/type", "slack block");
        let mut texts = Vec::new();
        match kind {
            "header" => {
                let text = string_at(block, "/text/text", "slack header");
                within(text, slack::render::HEADER_LIMIT, "slack header");
                texts.push(text);
            }
            "context" => {
                for element in block["elements"].as_array().into_iter().flatten() {
                    texts.push(string_at(element, "/text", "slack context element"));
                }
            }
            "section" => {
                if let Some(text) = block.pointer("/text/text").and_then(Value::as_str) {
                    within(text, slack::render::SECTION_LIMIT, "slack section text");
                    texts.push(text);
                }
                let fields = block["fields"].as_array().map_or(&[][..], Vec::as_slice);
                assert!(
                    fields.len() <= slack::render::FIELDS_PER_SECTION,
                    "slack: a section with {} fields",
                    fields.len()
                );
                for field in fields {
                    let text = string_at(field, "/text", "slack field");
                    within(text, slack::render::FIELD_LIMIT, "slack field");
                    texts.push(text);
                }
                assert!(!texts.is_empty(), "slack: a section with neither text nor fields");
            }
            other => panic!("slack: a block of type {other:?}"),
        }
        for text in texts {
            within(text, slack::render::SECTION_LIMIT, "slack block text");
            if kind != "header" {
                property::no_slack_mention(text, "slack mrkdwn");
            }
            total += chars(text);
        }
    }
    assert!(total <= 13_000, "slack: {total} characters of blocks; Slack refuses ~13,000");
}

fn teams_workflow(case: &Case) {
    let quote = (case.seq > 0).then_some(teams_workflow::render::Quote {
        seq: case.seq,
        original: &case.original,
        original_at: NOW,
    });
    let payload = teams_workflow::render::render(&case.message, DELIVERY_ID, quote);
    let text = json_text(&payload, "teams-workflow payload");
    let limit = teams_workflow::render::PAYLOAD_LIMIT_BYTES;
    assert!(text.len() <= limit, "teams-workflow: {} bytes; the limit is {limit}", text.len());
    let marker = format!("\"id\":\"herald:{DELIVERY_ID}\"");
    assert!(text.contains(&marker), "teams-workflow: the card lost its marker");
}

fn teams_graph(case: &Case) {
    let content = teams_graph::render::content(&case.message, DELIVERY_ID);
    let sent = json_text(&Value::String(content.clone()), "teams-graph content");
    let limit = teams_graph::render::CONTENT_LIMIT_BYTES;
    assert!(sent.len() <= limit, "teams-graph: {} bytes; the limit is {limit}", sent.len());
    assert!(
        teams_graph::render::has_marker(&content, DELIVERY_ID),
        "teams-graph: a look-up would not find the marker"
    );
    property::html(
        &content,
        crate::markdown::TEAMS_TAGS,
        &["href", "start"],
        "teams-graph content",
    );
}

fn jira(case: &Case) {
    let summary = fuzzing::jira_summary(&case.message.title);
    within(&summary, fuzzing::JIRA_SUMMARY_LIMIT, "jira summary");
    property::one_line(&summary, "jira summary");
    let labels = fuzzing::jira_labels(&case.message, DELIVERY_ID);
    let marker = fuzzing::jira_marker(DELIVERY_ID);
    assert!(labels.contains(&marker), "jira: the labels lack the marker: {labels:?}");
    for (i, label) in labels.iter().enumerate() {
        within(label, 255, "jira label");
        assert!(!label.contains(char::is_whitespace), "jira: label {label:?} holds a space");
        assert!(!labels[..i].contains(label), "jira: label {label:?} twice");
    }
    let doc = match case.seq {
        0 => fuzzing::jira_description(&case.message),
        seq => {
            let doc = fuzzing::jira_comment(&case.message, seq, DELIVERY_ID);
            assert!(
                fuzzing::jira_has_marker(&doc, &marker),
                "jira: a retry would not find the comment's marker"
            );
            doc
        }
    };
    let text = json_text(&doc, "jira document");
    let limit = fuzzing::JIRA_TEXT_LIMIT;
    assert!(chars(&text) <= limit, "jira: {} characters; the limit is {limit}", chars(&text));
    property::adf(&doc, false, "jira document");
}

fn pagerduty(case: &Case) {
    let event =
        fuzzing::pagerduty_event(&case.message, ROUTING_KEY, BROADCAST_ID, DELIVERY_ID, case.seq);
    let text = json_text(&event, "pagerduty event");
    assert!(text.len() <= 512 * 1024, "pagerduty: {} bytes; the limit is 512 KB", text.len());
    let action = string_at(&event, "/event_action", "pagerduty");
    assert!(!string_at(&event, "/dedup_key", "pagerduty").is_empty(), "pagerduty: no dedup_key");
    if case.message.severity == herald_core::Severity::Resolved {
        assert_eq!(action, "resolve", "pagerduty: a resolved message must resolve the alert");
        return;
    }
    assert_eq!(action, "trigger", "pagerduty: event_action");
    let summary = string_at(&event, "/payload/summary", "pagerduty");
    within(summary, fuzzing::PAGERDUTY_SUMMARY_LIMIT, "pagerduty summary");
    within(string_at(&event, "/payload/source", "pagerduty"), 255, "pagerduty source");
    let delivery = string_at(&event, "/payload/custom_details/herald_delivery", "pagerduty");
    assert_eq!(delivery, DELIVERY_ID, "pagerduty: the delivery detail");
}

fn opsgenie(case: &Case) {
    if case.seq == 0 {
        let alert = fuzzing::opsgenie_create(&case.message, BROADCAST_ID, DELIVERY_ID);
        json_text(&alert, "opsgenie alert");
        let message = string_at(&alert, "/message", "opsgenie");
        within(message, fuzzing::OPSGENIE_MESSAGE_LIMIT, "opsgenie message");
        let description = string_at(&alert, "/description", "opsgenie");
        let limit = fuzzing::OPSGENIE_DESCRIPTION_LIMIT;
        assert!(chars(description) <= limit, "opsgenie: description over {limit} characters");
        let alias = string_at(&alert, "/alias", "opsgenie");
        assert_eq!(alias, fuzzing::opsgenie_alias(BROADCAST_ID), "opsgenie: alias");
        within(alias, 512, "opsgenie alias");
    } else {
        let note = fuzzing::opsgenie_note(&case.message, DELIVERY_ID);
        json_text(&note, "opsgenie note");
        let text = string_at(&note, "/note", "opsgenie");
        within(text, fuzzing::OPSGENIE_NOTE_LIMIT, "opsgenie note");
        let marker = fuzzing::opsgenie_marker(DELIVERY_ID);
        assert!(text.ends_with(&marker), "opsgenie: a retry would not find the note's marker");
    }
}

fn discord(case: &Case) {
    use discord::render::{
        CONTENT_LIMIT, DESCRIPTION_LIMIT, EMBED_TOTAL_LIMIT, FIELD_NAME_LIMIT, FIELD_VALUE_LIMIT,
        MAX_FIELDS, Role, TITLE_LIMIT,
    };
    let role = if case.seq == 0 { Role::Original } else { Role::Edit { seq: case.seq } };
    let payload = discord::render::payload(&case.message, role);
    json_text(&payload, "discord payload");
    within(string_at(&payload, "/content", "discord"), CONTENT_LIMIT, "discord content");
    assert_eq!(payload["allowed_mentions"]["parse"], Value::Array(Vec::new()), "discord mentions");
    let embed = &payload["embeds"][0];
    within(string_at(embed, "/title", "discord embed"), TITLE_LIMIT, "discord embed title");
    if let Some(description) = embed.get("description").and_then(Value::as_str) {
        within(description, DESCRIPTION_LIMIT, "discord embed description");
    }
    within(string_at(embed, "/footer/text", "discord embed"), 2_048, "discord footer");
    let fields = embed["fields"].as_array().map_or(&[][..], Vec::as_slice);
    assert!(fields.len() <= MAX_FIELDS, "discord: {} embed fields", fields.len());
    for field in fields {
        within(string_at(field, "/name", "discord field"), FIELD_NAME_LIMIT, "discord field name");
        let value = string_at(field, "/value", "discord field");
        within(value, FIELD_VALUE_LIMIT, "discord field value");
    }
    let total = discord::render::embed_chars(embed);
    assert!(total <= EMBED_TOTAL_LIMIT, "discord: the embed has {total} characters");
}

fn mattermost(case: &Case) {
    use mattermost::render::Role;
    let role = match case.seq {
        0 => Role::Original,
        seq if seq % 2 == 1 => Role::Reply { seq },
        seq => Role::Edit { seq },
    };
    let text = mattermost::render::text(&case.message, role);
    within(&text, mattermost::render::POST_LIMIT, "mattermost message");
    let props = mattermost::render::props(DELIVERY_ID);
    assert_eq!(
        string_at(&props, &format!("/{}", mattermost::render::MARKER_KEY), "mattermost props"),
        DELIVERY_ID
    );
}

fn mattermost_webhook(request: &Request<'_>) {
    let payload = mattermost_webhook::payload(request);
    json_text(&payload, "mattermost-webhook payload");
    let text = string_at(&payload, "/text", "mattermost-webhook");
    within(text, mattermost::render::POST_LIMIT, "mattermost-webhook text");
}

/// The header fields a composed e-mail may have.
const EMAIL_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Message-ID",
    "Date",
    "User-Agent",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// A composed e-mail: CRLF line ends only (a bare CR or LF is how SMTP smuggling
/// starts), lines of at most 998 octets (RFC 5322 §2.1.1), only the header fields herald
/// writes, each once, and the Message-ID derived from the delivery.
fn email(request: &Request<'_>) {
    let (Ok(from), Ok(to)) = ("herald <herald@example.com>".parse(), "ops@example.com".parse())
    else {
        panic!("the fuzz e-mail addresses are invalid");
    };
    let config = email::EmailConfig::loopback(2525, from, vec![to]);
    let composed = match email::compose(&config, request) {
        Ok(composed) => composed,
        Err(error) => panic!("email: a valid message does not compose: {error}"),
    };
    let text = match String::from_utf8(composed) {
        Ok(text) => text,
        Err(error) => panic!("email: the message is not UTF-8/ASCII ({error})"),
    };
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let crlf = match b {
            b'\r' => bytes.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && bytes[i - 1] == b'\r',
            _ => true,
        };
        assert!(crlf, "email: a bare CR or LF at byte {i}");
    }
    for line in text.split("\r\n") {
        assert!(line.len() <= 998, "email: a line of {} octets", line.len());
    }
    let Some((head, _)) = text.split_once("\r\n\r\n") else { panic!("email: no header end") };
    let mut seen = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            panic!("email: header line {line:?} is not a field");
        };
        assert!(EMAIL_HEADERS.contains(&name), "email: header field {name:?}");
        assert!(!seen.contains(&name), "email: header field {name} twice");
        seen.push(name);
        if name == "Message-ID" {
            let expected = email::message_id(DELIVERY_ID, config.from_domain());
            assert_eq!(value.trim(), expected, "email: Message-ID");
        }
    }
    if matches!(request.thread, Thread::Update { .. }) {
        assert!(seen.contains(&"In-Reply-To"), "email: an update without In-Reply-To");
    }
    property::html(
        &email::html(request),
        crate::markdown::EMAIL_TAGS,
        crate::markdown::EMAIL_ATTRIBUTES,
        "email html",
    );
}

fn matrix(case: &Case) {
    use matrix::render::Role;
    let root = remote_ref("matrix");
    let role = match case.seq {
        0 => Role::Original,
        seq if seq % 2 == 1 => Role::Reply { seq, root },
        seq => Role::Edit { seq, root },
    };
    let content = matrix::render::content(&case.message, DELIVERY_ID, role);
    let text = json_text(&content, "matrix content");
    let limit = matrix::render::CONTENT_LIMIT_BYTES;
    assert!(text.len() <= limit, "matrix: {} bytes; the limit is {limit}", text.len());
    assert!(!string_at(&content, "/body", "matrix").is_empty(), "matrix: an empty body");
    let html = string_at(&content, "/formatted_body", "matrix");
    property::html(html, crate::markdown::MATRIX_TAGS, &["href", "start"], "matrix formatted_body");
    if case.seq > 0 {
        let relates = content.pointer("/m.relates_to/event_id").and_then(Value::as_str);
        assert_eq!(relates, Some(root), "matrix: an update not related to its original");
    }
}
