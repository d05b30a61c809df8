//! Inputs on which a fuzzer once broke a property, each a test named after what it
//! found; the fix it led to is named in the test's comment.

use herald_fuzz::{api, markdown, render};

/// `render`, Jira: a field with an empty value made an empty ADF text node (fixed in
/// `jira/render.rs`: `paragraph` leaves empty text nodes out).
#[test]
fn jira_field_with_an_empty_value() {
    render::run(b"\x05\x00\x00\x00alert\0body\0region=\0\0");
}

/// `markdown`, Slack: a Markdown link to `!channel` became `<!channel|x>`, which pings
/// the whole channel (fixed in `slack/render.rs`: only web and mail targets are links).
#[test]
fn slack_link_to_a_mention() {
    markdown::run(b"\x00\x00[x](!channel) [y](@U024BE7LH) [z](#C0123)");
    render::run(b"\x01\x00\x03\x00alert\0[runbook](!here)\0\0\0\0");
}

/// `api`: `"severity": [3]` (valid JSON, an enum of the wrong type) was refused as "not
/// valid JSON" (400) instead of naming `message.severity` (fixed in herald-api's
/// `extract.rs`: a body that is JSON is refused as the field it got wrong, 422).
#[test]
fn api_severity_of_the_wrong_type() {
    // Mode byte 0: a submit without an Idempotency-Key header.
    let wrong_type = br#"{"destinations":["slack"],"message":{"title":"x","severity":[3]}}"#;
    api::run(&[b"\0".as_slice(), wrong_type].concat());
    let body = br#"{"destinations":["slack"],"message":{"title":"x","severity":3}}"#;
    let refused = herald_api::fuzzing::submit(body, None, &Default::default(), &Default::default());
    let error = refused.expect_err("a numeric severity is refused");
    assert_eq!(error.status().as_u16(), 422, "{error:?}");
}

/// `render`, Jira: a follow-up whose 30 fields of 1,280 characters are over Jira's limit
/// on their own became a bare paragraph without the comment's marker, so a retry would
/// not find it (fixed in `jira/render.rs`: `fit` leaves fields and links out, saying so,
/// and keeps the rest).
#[test]
fn jira_comment_with_fields_over_the_limit() {
    let fields: Vec<String> = (0..30).map(|i| format!("k{i}=0123456789")).collect();
    let fields = fields.join("\n");
    // Update 1, severity info, each field value repeated 128 times.
    let head = b"\x05\x01\x00\x7falert\0body\0".as_slice();
    render::run(&[head, fields.as_bytes(), b"\0\0\0orig"].concat());
}

/// `render`, Teams Workflows, Teams Graph and Matrix: fields and links were never cut, so
/// 40 fields of 1,280 characters made payloads of 60 KB and more, which those APIs refuse
/// (and an empty body underflowed the bisection in debug builds). Fixed in
/// `teams_workflow::render::fitting`: they are left out, the body saying so.
#[test]
fn teams_and_matrix_fields_over_the_limit() {
    let fields: Vec<String> = (0..40).map(|i| format!("k{i}=0123456789")).collect();
    let fields = fields.join("\n");
    for kind in [3, 4, 12] {
        for body in ["body".as_bytes(), b""] {
            let head = [kind, 0, 3, 127];
            let parts: [&[u8]; 6] = [&head, b"alert\0", body, b"\0", fields.as_bytes(), b"\0\0\0"];
            render::run(&parts.concat());
        }
    }
}
