//! Unit tests of the PagerDuty kind: event snapshots, the summary limit, the
//! classification table of DESTINATIONS.md §6 and the configuration.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald_core::{Message, Outcome, Severity};

use super::classify::{self, THROTTLE_WAIT};
use super::render::{self, SUMMARY_LIMIT};
use crate::teams_workflow::tests::{rich_message, snapshot, table, unicode_message};
use crate::text::TRUNCATION_MARKER;

const KEY: &str = "R0UT1NGKEY0123456789abcdefabcdef";
const BROADCAST: &str = "b_01JD0000000000000000000000";
const DELIVERY: &str = "d_01JD0000000000000000000001";

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap() + "\n"
}

#[test]
fn a_rich_message_renders_as_a_trigger() {
    let event = render::event(&rich_message(), KEY, BROADCAST, DELIVERY, 0);
    snapshot("pagerduty", "trigger.json", &pretty(&event));
}

#[test]
fn an_update_is_a_trigger_with_the_same_dedup_key() {
    let update = Message { severity: Severity::Warning, ..rich_message() };
    let event = render::event(&update, KEY, BROADCAST, "d_01JD0000000000000000000002", 2);
    snapshot("pagerduty", "update.json", &pretty(&event));
    assert_eq!(event["dedup_key"], "herald-b_01JD0000000000000000000000");
}

#[test]
fn a_resolved_message_is_a_resolve_without_payload() {
    let event = render::event(&unicode_message(), KEY, BROADCAST, DELIVERY, 1);
    snapshot("pagerduty", "resolve.json", &pretty(&event));
}

#[test]
fn severities_map_to_pagerduty_levels() {
    let rows = [
        (Severity::Critical, "critical", "trigger"),
        (Severity::Error, "error", "trigger"),
        (Severity::Warning, "warning", "trigger"),
        (Severity::Info, "info", "trigger"),
        (Severity::Resolved, "info", "resolve"),
    ];
    for (severity, level, action) in rows {
        let message = Message { severity, ..Message::default() };
        assert_eq!(render::severity(severity), level, "{severity:?}");
        assert_eq!(render::action(&message), action, "{severity:?}");
    }
}

#[test]
fn a_long_title_is_cut_to_the_summary_limit_with_a_marker() {
    let summary = render::summary(&"ä🙂x ".repeat(1000));
    assert_eq!(summary.chars().count(), SUMMARY_LIMIT);
    assert!(summary.ends_with(TRUNCATION_MARKER), "{summary}");
    assert_eq!(render::summary("two\nlines"), "two lines");
    assert_eq!(render::summary(" "), "(no title)");
}

/// Status, `Retry-After` seconds, body, class, wait, words in the reason.
type Row<'a> = (u16, Option<u64>, &'a [u8], &'a str, Option<Duration>, &'a str);

/// One row per line of DESTINATIONS.md §6's errors (transport failures are in the
/// integration tests, against a real socket).
#[test]
fn every_answer_of_section_6_is_classified() {
    let invalid = br#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.severity' is invalid"]}"#;
    let rows: [Row<'_>; 8] = [
        (
            202,
            None,
            br#"{"status":"success","message":"Event processed","dedup_key":"herald-b"}"#,
            "delivered",
            None,
            "",
        ),
        (400, None, invalid, "permanent", None, "'payload.severity' is invalid"),
        (429, None, b"", "throttled", Some(THROTTLE_WAIT), "throttled"),
        (429, Some(90), b"", "throttled", Some(Duration::from_secs(90)), "throttled"),
        (500, None, b"", "retry", None, "HTTP 500"),
        (502, None, b"bad gateway", "retry", None, "bad gateway"),
        (503, Some(5), b"", "retry", Some(Duration::from_secs(5)), "HTTP 503"),
        (404, None, b"not found", "permanent", None, "not found"),
    ];
    for (status, retry_after, body, class, after, says) in rows {
        let retry_after = retry_after.map(Duration::from_secs);
        let report = classify::answered(status, retry_after, body, "herald-b", KEY);
        assert_eq!(report.outcome.class(), class, "HTTP {status}: {report:?}");
        assert_eq!(report.status, Some(status));
        match &report.outcome {
            Outcome::Delivered { remote_ref, unconfirmed } => {
                assert_eq!(remote_ref.as_deref(), Some("herald-b"));
                assert!(!unconfirmed);
            }
            Outcome::Throttled { after: got, .. } | Outcome::Retry { after: got, .. } => {
                assert_eq!(*got, after, "HTTP {status}");
            }
            _ => {}
        }
        assert!(report.outcome.reason().unwrap_or("").contains(says), "HTTP {status}: {report:?}");
    }
}

#[test]
fn an_echoed_routing_key_is_redacted() {
    let body = format!(r#"{{"message":"Event object is invalid","errors":["bad key {KEY}"]}}"#);
    let report = classify::answered(400, None, body.as_bytes(), "herald-b", KEY);
    let shown = format!("{report:?}");
    assert!(!shown.contains(KEY) && shown.contains("[redacted]"), "{shown}");
}

#[test]
fn the_kind_parses_its_table_and_hides_the_routing_key() {
    use super::{CAPABILITIES, DEFAULT_BASE_URL, KIND, PagerDutyConfig};

    let env = |name: &str| (name == "PD_ROUTING_KEY").then(|| KEY.to_owned());
    let mut t = table(&[("routing_key", "${PD_ROUTING_KEY}")], &env);
    let config = (KIND.parse)(&mut t).unwrap();
    assert!(t.ok() && t.unread().is_empty(), "{t:?}");
    assert_eq!(config.kind(), "pagerduty");
    assert_eq!(config.capabilities(), CAPABILITIES);
    const { assert!(CAPABILITIES.dedupe_by_key) };
    assert_eq!(
        config.downcast_ref::<PagerDutyConfig>(),
        Some(&PagerDutyConfig {
            routing_key: KEY.to_owned(),
            base_url: DEFAULT_BASE_URL.to_owned()
        })
    );
    assert!(!format!("{config:?}").contains(KEY));
    let connector = config.build(crate::http::client()).unwrap();
    assert_eq!(connector.kind(), "pagerduty");

    let mut t =
        table(&[("routing_key", "${PD_ROUTING_KEY}"), ("base_url", "http://127.0.0.1:9/pd")], &env);
    let config = (KIND.parse)(&mut t).unwrap();
    assert_eq!(config.downcast_ref::<PagerDutyConfig>().unwrap().base_url, "http://127.0.0.1:9/pd");

    let mut t = table(&[], &env);
    assert!((KIND.parse)(&mut t).is_none());
    assert!(t.problems()[0].message.contains("missing `routing_key`"), "{t:?}");
    let mut t = table(&[("routing_key", "k"), ("base_url", "ftp://x")], &env);
    assert!((KIND.parse)(&mut t).is_none());
}
