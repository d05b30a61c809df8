//! Unit tests of the Teams Workflows kind: rendering snapshots and classification rows.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use herald_core::{Link, Message, Severity, Timestamp};

use super::render::{PAYLOAD_LIMIT_BYTES, Quote, render};
use crate::text::TRUNCATION_MARKER;

/// Compares `actual` with the snapshot file `name`; `HERALD_UPDATE_SNAPSHOTS=1` rewrites it.
pub(crate) fn snapshot(dir: &str, name: &str, actual: &str) {
    let path = format!("{}/src/{dir}/snapshots/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("HERALD_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(actual, expected, "snapshot {path} differs (HERALD_UPDATE_SNAPSHOTS=1 rewrites)");
}

/// A message exercising every Markdown feature and field herald renders.
pub(crate) fn rich_message() -> Message {
    Message {
        title: "P1: checkout is <down> & \"slow\"".to_owned(),
        body: "# Impact\n\nCheckout fails for **all** users in _eu-west_, ~~maybe~~ `us` too.\n\n\
               - first\n- second with [runbook](https://runbooks.example/checkout)\n  \
               1. nested one\n  2. nested two\n\n3. three\n4. four\n\n\
               > quoted **line**\n> second\n\n\
               ```sh\nkubectl rollout undo deploy/checkout\n```\n\n\
               | a | b |\n|---|---|\n| 1 | 2 |\n\n\
               - [x] paged\n- [ ] status page\n\n\
               Inline <b>html</b>, [bad](javascript:alert(1)) and ![graph](https://img.example/g.png)\n\n\
               <script>alert(1)</script>\n\n\
               ---\nline one  \nline two"
            .to_owned(),
        severity: Severity::Critical,
        fields: BTreeMap::from([
            ("region".to_owned(), "eu-west-1".to_owned()),
            ("service".to_owned(), "checkout".to_owned()),
        ]),
        links: vec![
            Link { title: "Dashboard".to_owned(), url: "https://grafana.example/d/1".to_owned() },
            Link { title: "Evil".to_owned(), url: "javascript:alert(1)".to_owned() },
        ],
        tags: vec!["p1".to_owned()],
    }
}

pub(crate) fn unicode_message() -> Message {
    Message {
        title: "🔥 Übertragung gestört — 支付失败 — שגיאה".to_owned(),
        body: "Emoji 👩🏽‍💻🚀 and combining e\u{301} and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢.".to_owned(),
        severity: Severity::Resolved,
        ..Message::default()
    }
}

pub(crate) fn long_message() -> Message {
    Message {
        title: "long".to_owned(),
        body: "ä🙂x".repeat(20_000),
        severity: Severity::Warning,
        ..Message::default()
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap() + "\n"
}

#[test]
fn a_rich_message_renders_as_an_adaptive_card() {
    let payload = render(&rich_message(), "d_01JD0000000000000000000001", None);
    snapshot("teams_workflow", "rich.json", &pretty(&payload));
}

#[test]
fn unicode_and_emoji_pass_through() {
    let payload = render(&unicode_message(), "d_2", None);
    snapshot("teams_workflow", "unicode.json", &pretty(&payload));
}

#[test]
fn a_follow_up_quotes_the_original_title_and_time() {
    let original = rich_message();
    let update = Message {
        title: "P1: checkout recovering".to_owned(),
        body: "Rolled back.".to_owned(),
        severity: Severity::Warning,
        ..Message::default()
    };
    let quote = Quote { seq: 2, original: &original, original_at: Timestamp(1_798_761_660_000) };
    let payload = render(&update, "d_3", Some(quote));
    snapshot("teams_workflow", "update.json", &pretty(&payload));
    let first = &payload["attachments"][0]["content"]["body"][0]["items"][0]["text"];
    assert_eq!(
        first,
        "Update 2 to “P1: checkout is <down> & \"slow\"” (first posted 2027-01-01 00:01 UTC)"
    );
}

#[test]
fn a_long_body_is_cut_to_the_limit_with_a_visible_marker() {
    let payload = render(&long_message(), "d_4", None);
    let size = payload.to_string().len();
    assert!(size <= PAYLOAD_LIMIT_BYTES, "{size} bytes");
    assert!(size > PAYLOAD_LIMIT_BYTES - 64, "cut too much: {size} bytes");
    let body = payload["attachments"][0]["content"]["body"][2]["text"].as_str().unwrap();
    assert!(body.ends_with(TRUNCATION_MARKER), "{}", &body[body.len() - 40..]);
    // A short body is not touched.
    let short = render(&unicode_message(), "d_5", None).to_string();
    assert!(!short.contains(TRUNCATION_MARKER));
}

/// An API-valid message whose fields and links alone are over a 28 KB limit: 40 fields of
/// 1,000 characters and 20 links of 900.
pub(crate) fn wide_message() -> Message {
    Message {
        title: "wide".to_owned(),
        body: String::new(),
        fields: (0..40).map(|i| (format!("field {i}"), "v".repeat(1_000))).collect(),
        links: (0..20)
            .map(|i| Link {
                title: "t".repeat(200),
                url: format!("https://e.example/{i}/{}", "p".repeat(680)),
            })
            .collect(),
        ..Message::default()
    }
}

/// The fuzz target's size property found that fields and links were never cut: with
/// these, the payload was 61 KB and Power Automate refuses it. They are left out now, the
/// body saying so (and an empty body no longer underflows the bisection in debug builds).
#[test]
fn fields_and_links_too_long_on_their_own_are_left_out_saying_so() {
    let payload = render(&wide_message(), "d_6", None);
    let size = payload.to_string().len();
    assert!(size <= PAYLOAD_LIMIT_BYTES, "{size} bytes");
    let text = payload.to_string();
    assert!(text.contains("40 field(s) and 20 link(s) are too long for Teams"), "{text}");
    assert!(text.contains("\"id\":\"herald:d_6\""), "the marker stays");
}

/// One row per line of DESTINATIONS.md §3a's classification (timeouts: tests/it/teams.rs).
#[test]
fn every_answer_of_section_3a_is_classified() {
    use std::time::Duration;

    use herald_core::Outcome;

    use super::classify::answered;
    use crate::http::Answer;

    let err = |code: &str| format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
    let secs = |s| Some(Duration::from_secs(s));
    // (status, Retry-After, body, class, reason starts with, after)
    type Row<'a> = (u16, Option<Duration>, String, &'a str, &'a str, Option<Duration>);
    let rows: Vec<Row<'_>> = vec![
        (202, None, String::new(), "delivered", "", None),
        (200, None, String::new(), "delivered", "", None),
        (
            400,
            None,
            err("InvalidRequestContent"),
            "permanent",
            "InvalidRequestContent: HTTP 400",
            None,
        ),
        (
            401,
            None,
            err("DirectApiAuthorizationRequired"),
            "permanent",
            "DirectApiAuthorizationRequired: HTTP 401",
            None,
        ),
        (403, None, err("AuthorizationFailed"), "permanent", "AuthorizationFailed: HTTP 403", None),
        (404, None, err("WorkflowNotFound"), "permanent", "WorkflowNotFound: HTTP 404", None),
        (
            413,
            None,
            err("RequestEntityTooLarge"),
            "permanent",
            "RequestEntityTooLarge: HTTP 413",
            None,
        ),
        (
            429,
            secs(7),
            err("WorkflowRequestsThrottled"),
            "throttled",
            "WorkflowRequestsThrottled: HTTP 429",
            secs(7),
        ),
        (500, None, err("ServiceUnavailable"), "retry", "ServiceUnavailable: HTTP 500", None),
        (502, None, String::new(), "retry", "HTTP 502", None),
        (503, None, String::new(), "retry", "HTTP 503", None),
        (504, None, String::new(), "retry", "HTTP 504", None),
    ];
    for (status, retry_after, body, class, reason, after) in rows {
        let answer = Answer { status, retry_after, location: None, excerpt: body };
        let report = answered(answer, None);
        assert_eq!(report.outcome.class(), class, "HTTP {status}");
        assert!(
            report.outcome.reason().unwrap_or("").starts_with(reason),
            "HTTP {status}: {:?}",
            report.outcome
        );
        match report.outcome {
            Outcome::Delivered { remote_ref, unconfirmed } => {
                assert_eq!((remote_ref, unconfirmed), (None, status == 202), "HTTP {status}");
            }
            Outcome::Throttled { after: got, .. } | Outcome::Retry { after: got, .. } => {
                assert_eq!(got, after, "HTTP {status}");
            }
            _ => {}
        }
    }
}

#[test]
fn an_echoed_signature_is_redacted_from_the_detail() {
    let answer = crate::http::Answer {
        status: 401,
        retry_after: None,
        location: None,
        excerpt: "bad sig=abcdefghijklmnop".to_owned(),
    };
    let report = super::classify::answered(answer, Some("abcdefghijklmnop"));
    assert_eq!(report.detail.as_deref(), Some("bad sig=[redacted]"));
}

/// A settings table at made-up offsets: key `i` at `100 * (i + 1)`.
pub(crate) fn table<'a>(
    items: &[(&str, &str)],
    env: &'a dyn Fn(&str) -> Option<String>,
) -> crate::settings::Table<'a> {
    use crate::settings::{Entry, Table, Value};
    let entries = items
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Entry {
            key: (*key).to_owned(),
            key_at: 100 * (i + 1),
            value: Value::String((*value).to_owned()),
            value_at: 100 * (i + 1) + 10,
        })
        .collect();
    Table::new(entries, 1, env)
}

#[test]
fn the_kind_parses_its_table_and_hides_the_signature() {
    use super::{CAPABILITIES, KIND, TeamsWorkflowConfig};

    let url = "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=s3cr3t-signature";
    let env = |name: &str| (name == "TEAMS_URL").then(|| url.to_owned());
    let mut t = table(&[("url", "${TEAMS_URL}")], &env);
    let config = (KIND.parse)(&mut t).unwrap();
    assert!(t.ok() && t.unread().is_empty(), "{t:?}");
    assert_eq!(config.kind(), "teams-workflow");
    assert_eq!(config.capabilities(), CAPABILITIES);
    assert_eq!(
        config.downcast_ref::<TeamsWorkflowConfig>(),
        Some(&TeamsWorkflowConfig { url: url.to_owned() })
    );
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cr3t") && !shown.contains("workflows/abc"), "{shown}");
    assert!(config.build(crate::http::client()).is_ok());

    // Missing, or not a URL: a problem that does not quote the value.
    let mut t = table(&[], &env);
    assert!((KIND.parse)(&mut t).is_none());
    assert!(t.problems()[0].message.contains("missing `url`"), "{t:?}");
    let mut t = table(&[("url", "ftp://x.example/?sig=s3cr3t")], &env);
    assert!((KIND.parse)(&mut t).is_none());
    assert!(!format!("{:?}", t.problems()).contains("s3cr3t"), "{t:?}");
}

/// The connector's `Debug` (what a `{:?}` in a log would print) shows the origin only,
/// never the flow's path or its `sig=`.
#[test]
fn the_connector_debug_hides_the_signature() {
    use super::{TeamsWorkflow, TeamsWorkflowConfig};

    let url = "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=s3cr3t-signature";
    let connector =
        TeamsWorkflow::new(TeamsWorkflowConfig { url: url.to_owned() }, crate::http::client())
            .unwrap();
    let shown = format!("{connector:?}");
    assert!(!shown.contains("s3cr3t") && !shown.contains("workflows/abc"), "{shown}");
    assert!(shown.contains("https://prod-00.westeurope.logic.azure.com"), "{shown}");
}
