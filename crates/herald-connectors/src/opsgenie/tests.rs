//! Unit tests of the Opsgenie kind: request snapshots, the message limit, the
//! classification table of DESTINATIONS.md §7 and the configuration.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald_core::{Message, Outcome, Severity};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::classify::{self, Failure};
use super::render::{self, MESSAGE_LIMIT, NOTE_LIMIT};
use crate::teams_workflow::tests::{long_message, rich_message, snapshot, table, unicode_message};
use crate::text::TRUNCATION_MARKER;

const BROADCAST: &str = "b_01JD0000000000000000000000";
const DELIVERY: &str = "d_01JD0000000000000000000001";

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap() + "\n"
}

#[test]
fn a_rich_message_renders_as_an_alert() {
    let body = render::create(&rich_message(), BROADCAST, DELIVERY);
    snapshot("opsgenie", "create.json", &pretty(&body));
    assert_eq!(body["alias"], "herald-b_01JD0000000000000000000000");
}

#[test]
fn a_follow_up_renders_as_a_note_with_its_marker() {
    let body = render::note(&unicode_message(), "d_01JD0000000000000000000002");
    snapshot("opsgenie", "note.json", &pretty(&body));
}

#[test]
fn limits_are_kept_with_a_visible_marker() {
    let message = render::message(&"ä🙂x".repeat(100));
    assert_eq!(message.chars().count(), MESSAGE_LIMIT);
    assert!(message.ends_with(TRUNCATION_MARKER), "{message}");
    let note = render::note_text(&long_message(), DELIVERY);
    assert!(note.chars().count() <= NOTE_LIMIT, "{}", note.chars().count());
    assert!(note.ends_with("\n\nherald-d_01JD0000000000000000000001"));
    assert!(note.contains(TRUNCATION_MARKER));
    let description = render::create(&long_message(), BROADCAST, DELIVERY)["description"].clone();
    assert_eq!(description.as_str().unwrap().chars().count(), render::DESCRIPTION_LIMIT);
}

#[test]
fn severities_map_to_priorities() {
    let rows = [
        (Severity::Critical, "P1"),
        (Severity::Error, "P2"),
        (Severity::Warning, "P3"),
        (Severity::Info, "P4"),
        (Severity::Resolved, "P5"),
    ];
    for (severity, priority) in rows {
        assert_eq!(render::priority(severity), priority, "{severity:?}");
        let body = render::create(&Message { severity, ..Message::default() }, BROADCAST, DELIVERY);
        assert_eq!(body["priority"], priority);
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// Status, `Retry-After` seconds, headers, body, class, wait, words in the reason.
type Row<'a> =
    (u16, Option<u64>, Vec<(&'a str, &'a str)>, &'a [u8], &'a str, Option<Duration>, &'a str);

/// One row per line of DESTINATIONS.md §7's errors (202 and timeouts are in the
/// integration tests, against the simulator).
#[test]
fn every_answer_of_section_7_is_classified() {
    let unprocessable = br#"{"message":"Request body is not processable. Please check the errors.","errors":{"message":"Message can not be empty."},"took":0.001,"requestId":"r1"}"#;
    let throttled = [
        ("X-RateLimit-State", "THROTTLED"),
        ("X-RateLimit-Reason", "ACCOUNT"),
        ("X-RateLimit-Period-In-Sec", "60"),
    ];
    let rows: Vec<Row<'_>> = vec![
        (
            400,
            None,
            vec![],
            br#"{"message":"Invalid JSON body","took":0.0,"requestId":"r"}"#,
            "permanent",
            None,
            "Invalid JSON body",
        ),
        (
            401,
            None,
            vec![],
            br#"{"message":"Could not authenticate","took":0.0,"requestId":"r"}"#,
            "permanent",
            None,
            "Could not authenticate",
        ),
        (
            403,
            None,
            vec![],
            br#"{"message":"You are not authorized for this operation.","took":0.0}"#,
            "permanent",
            None,
            "not authorized",
        ),
        (
            404,
            None,
            vec![],
            br#"{"message":"Alert does not exist","took":0.0}"#,
            "permanent",
            None,
            "Alert does not exist",
        ),
        (422, None, vec![], unprocessable, "permanent", None, "message: Message can not be empty."),
        (
            429,
            None,
            throttled.to_vec(),
            br#"{"message":"You are making too many requests!","took":0.0}"#,
            "throttled",
            Some(Duration::from_secs(60)),
            "X-RateLimit-State=THROTTLED, X-RateLimit-Reason=ACCOUNT, X-RateLimit-Period-In-Sec=60",
        ),
        (
            429,
            Some(7),
            throttled.to_vec(),
            b"",
            "throttled",
            Some(Duration::from_secs(7)),
            "THROTTLED",
        ),
        (
            500,
            None,
            vec![],
            br#"{"message":"Internal Server Error","took":0.0}"#,
            "retry",
            None,
            "Internal Server Error",
        ),
        (503, None, vec![], b"", "retry", None, "HTTP 503"),
    ];
    for (status, retry_after, header_pairs, body, class, after, says) in rows {
        let failure = Failure::new(
            status,
            retry_after.map(Duration::from_secs),
            &headers(&header_pairs),
            body,
        );
        let report = classify::report(&failure, "creating the alert");
        assert_eq!(report.outcome.class(), class, "HTTP {status}: {report:?}");
        assert_eq!(report.status, Some(status));
        if let Outcome::Throttled { after: got, .. } | Outcome::Retry { after: got, .. } =
            &report.outcome
        {
            assert_eq!(*got, after, "HTTP {status}");
        }
        assert!(report.outcome.reason().unwrap().contains(says), "HTTP {status}: {report:?}");
        if status == 429 {
            assert!(
                report.detail.as_deref().unwrap().contains("X-RateLimit-State=THROTTLED"),
                "{report:?}"
            );
        }
    }
}

#[test]
fn the_kind_parses_its_table_and_hides_the_key() {
    use super::{CAPABILITIES, DEFAULT_BASE_URL, KIND, Opsgenie, OpsgenieConfig};

    let key = "0f0e0d0c-aaaa-bbbb-cccc-123456789abc";
    let env = |name: &str| (name == "OPSGENIE_KEY").then(|| key.to_owned());
    let mut t = table(&[("api_key", "${OPSGENIE_KEY}")], &env);
    let config = (KIND.parse)(&mut t).unwrap();
    assert!(t.ok() && t.unread().is_empty(), "{t:?}");
    assert_eq!(config.kind(), "opsgenie");
    assert_eq!(config.capabilities(), CAPABILITIES);
    const { assert!(CAPABILITIES.dedupe_by_key && CAPABILITIES.lookup) };
    let expected =
        OpsgenieConfig { api_key: key.to_owned(), base_url: DEFAULT_BASE_URL.to_owned() };
    assert_eq!(config.downcast_ref::<OpsgenieConfig>(), Some(&expected));
    assert!(!format!("{config:?}").contains(key));
    assert_eq!(config.build(crate::http::client()).unwrap().kind(), "opsgenie");
    let connector = Opsgenie::new(expected, crate::http::client()).unwrap();
    assert!(!format!("{connector:?}").contains(key));

    let mut t = table(&[("api_key", "k"), ("base_url", "https://api.eu.opsgenie.com")], &env);
    let config = (KIND.parse)(&mut t).unwrap();
    assert_eq!(
        config.downcast_ref::<OpsgenieConfig>().unwrap().base_url,
        "https://api.eu.opsgenie.com"
    );

    let mut t = table(&[], &env);
    assert!((KIND.parse)(&mut t).is_none());
    assert!(t.problems()[0].message.contains("missing `api_key`"), "{t:?}");
    let mut t = table(&[("api_key", "k"), ("base_url", "ftp://x")], &env);
    assert!((KIND.parse)(&mut t).is_none());
}
