//! The small value types: outcomes, instants, state names and the portable message.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;

#[test]
fn outcome_classes_reasons_and_breaker_weight() {
    let cases = [
        (Outcome::delivered(Some("C1:1.2".into())), "delivered", None, false),
        (
            Outcome::Retry { reason: "HTTP 503".into(), after: None },
            "retry",
            Some("HTTP 503"),
            true,
        ),
        (
            Outcome::Throttled { after: Some(secs(1)), reason: "429".into() },
            "throttled",
            Some("429"),
            false,
        ),
        (
            Outcome::Permanent { reason: "invalid_auth".into() },
            "permanent",
            Some("invalid_auth"),
            false,
        ),
        (Outcome::Unknown { reason: "timeout".into() }, "unknown", Some("timeout"), true),
    ];
    for (outcome, class, reason, destination_failure) in cases {
        assert_eq!(outcome.class(), class);
        assert_eq!(outcome.reason(), reason, "{class}");
        assert_eq!(outcome.is_destination_failure(), destination_failure, "{class}");
    }
}

#[test]
fn state_and_reason_names_are_the_api_contract() {
    let states = [
        (State::Pending, "pending", false),
        (State::InFlight, "in_flight", false),
        (State::Waiting, "waiting", false),
        (State::Held, "held", false),
        (State::Delivered, "delivered", true),
        (State::Failed(FailReason::Expired), "failed", true),
        (State::Cancelled, "cancelled", true),
    ];
    for (state, name, terminal) in states {
        assert_eq!(state.as_str(), name);
        assert_eq!(state.is_terminal(), terminal, "{name}");
    }
    let reasons = [
        (FailReason::Permanent, "permanent"),
        (FailReason::AttemptsExhausted, "attempts_exhausted"),
        (FailReason::Expired, "expired"),
        (FailReason::PredecessorFailed, "predecessor_failed"),
        (FailReason::Ambiguous, "ambiguous"),
    ];
    for (reason, code) in reasons {
        assert_eq!(reason.as_str(), code);
        assert_eq!(reason.to_string(), code);
        assert_eq!(FailReason::parse(code), Some(reason));
    }
    assert_eq!(FailReason::parse("Expired"), None);
    assert_eq!(FailReason::parse(""), None);
}

#[test]
fn capabilities_that_resolve_ambiguity() {
    let none = Capabilities::default();
    assert!(!none.resolves_ambiguity());
    assert!(Capabilities { dedupe_by_key: true, ..none }.resolves_ambiguity());
    assert!(Capabilities { lookup: true, ..none }.resolves_ambiguity());
    assert!(!Capabilities { edit: true, thread_reply: true, ..none }.resolves_ambiguity());
}

#[test]
fn timestamps_add_and_subtract_in_milliseconds() {
    assert_eq!(T0.add(ms(1500)).as_millis(), T0.as_millis() + 1500);
    assert_eq!(Timestamp::from_millis(-5).add(ms(10)), Timestamp(5));
    assert_eq!(Timestamp(0).add(Duration::from_micros(1999)), Timestamp(1), "truncates");
    assert_eq!(at(secs(3)).since(T0), secs(3));
    assert_eq!(Timestamp(5).since(Timestamp(-5)), ms(10));
}

#[test]
fn timestamps_saturate_instead_of_overflowing() {
    assert_eq!(T0.add(Duration::MAX), Timestamp(i64::MAX));
    assert_eq!(Timestamp(i64::MAX - 1).add(ms(5)), Timestamp(i64::MAX));
    assert_eq!(Timestamp(i64::MIN).add(Duration::MAX), Timestamp(-1), "i64::MIN + i64::MAX");
    assert_eq!(T0.since(at(secs(1))), Duration::ZERO, "an earlier instant is zero away");
    assert_eq!(Timestamp(i64::MIN).since(Timestamp(i64::MAX)), Duration::ZERO);
    assert_eq!(Timestamp(i64::MAX).since(Timestamp(i64::MIN)), ms(i64::MAX as u64));
}

proptest! {
    #[test]
    fn since_undoes_add(t in -(1i64 << 50)..(1i64 << 50), d in 0u64..(1 << 50)) {
        let t = Timestamp(t);
        prop_assert_eq!(t.add(ms(d)).since(t), ms(d));
        prop_assert!(t.add(ms(d)) >= t);
    }

    #[test]
    fn messages_round_trip_through_json(message in messages()) {
        let text = serde_json::to_string(&message).unwrap();
        let back: Message = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, message);
    }
}

fn messages() -> impl Strategy<Value = Message> {
    let text =
        prop::sample::select(vec!["", "P1: checkout is down", "**38 %** \"quoted\"\n", "ü ✓"]);
    let severity = prop::sample::select(vec![
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
        Severity::Resolved,
    ]);
    let link = (text.clone(), text.clone())
        .prop_map(|(title, url)| Link { title: title.into(), url: url.into() });
    (
        text.clone(),
        text.clone(),
        severity,
        prop::collection::btree_map(text.clone(), text.clone(), 0..3),
        prop::collection::vec(link, 0..3),
        prop::collection::vec(text, 0..3),
    )
        .prop_map(|(title, body, severity, fields, links, tags)| Message {
            title: title.into(),
            body: body.into(),
            severity,
            fields: fields.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            links,
            tags: tags.into_iter().map(String::from).collect(),
        })
}

fn full_message() -> Message {
    Message {
        title: "P1: checkout is down".into(),
        body: "Error rate **38 %** since 12:01.".into(),
        severity: Severity::Critical,
        fields: BTreeMap::from([("service".to_string(), "checkout".to_string())]),
        links: vec![Link {
            title: "Runbook".into(),
            url: "https://runbooks.example/checkout".into(),
        }],
        tags: vec!["p1".into()],
    }
}

#[test]
fn message_json_matches_the_documented_shape() {
    let value = serde_json::to_value(full_message()).unwrap();
    assert_eq!(
        value,
        json!({
            "title": "P1: checkout is down",
            "body": "Error rate **38 %** since 12:01.",
            "severity": "critical",
            "fields": {"service": "checkout"},
            "links": [{"title": "Runbook", "url": "https://runbooks.example/checkout"}],
            "tags": ["p1"],
        })
    );
    let back: Message = serde_json::from_value(value).unwrap();
    assert_eq!(back, full_message());
}

#[test]
fn a_message_needs_only_a_title() {
    let message: Message = serde_json::from_str(r#"{"title": "deploy done"}"#).unwrap();
    assert_eq!(message, Message { title: "deploy done".into(), ..Message::default() });
    assert_eq!(message.severity, Severity::Info);
    let text = serde_json::to_string(&message).unwrap();
    assert_eq!(
        text, r#"{"title":"deploy done","body":"","severity":"info"}"#,
        "empty lists omitted"
    );
}

#[test]
fn severities_are_lowercase_names() {
    for (severity, name) in [
        (Severity::Info, "info"),
        (Severity::Warning, "warning"),
        (Severity::Error, "error"),
        (Severity::Critical, "critical"),
        (Severity::Resolved, "resolved"),
    ] {
        assert_eq!(severity.as_str(), name);
        assert_eq!(serde_json::to_value(severity).unwrap(), json!(name));
        assert_eq!(serde_json::from_value::<Severity>(json!(name)).unwrap(), severity);
    }
}

#[test]
fn message_json_rejects_what_it_does_not_understand() {
    let rejected = [
        (json!({"title": "x", "colour": "red"}), "unknown field `colour`"),
        (
            json!({"title": "x", "links": [{"title": "a", "url": "b", "target": "_blank"}]}),
            "unknown field `target`",
        ),
        (json!({"title": "x", "severity": "fatal"}), "unknown variant `fatal`"),
        (json!({"title": "x", "severity": "Critical"}), "unknown variant `Critical`"),
        (json!({"body": "no title"}), "missing field `title`"),
        (json!({"title": "x", "links": [{"title": "a"}]}), "missing field `url`"),
        (json!({"title": "x", "fields": {"n": 1}}), "invalid type"),
    ];
    for (value, why) in rejected {
        let err = serde_json::from_value::<Message>(value.clone()).unwrap_err().to_string();
        assert!(err.contains(why), "{value}: expected {why:?}, got {err:?}");
    }
}

#[test]
fn a_broadcast_state_summarises_its_deliveries() {
    use State::{Cancelled, Delivered, Held, InFlight, Pending, Waiting};
    let failed = State::Failed(FailReason::Permanent);
    let cases: [(&[State], BroadcastState); 11] = [
        (&[Delivered, Delivered], BroadcastState::Delivered),
        (&[Delivered, Pending], BroadcastState::InProgress),
        (&[Delivered, InFlight], BroadcastState::InProgress),
        (&[failed.clone(), Waiting], BroadcastState::InProgress),
        (&[Delivered, Held], BroadcastState::InProgress),
        (&[Delivered, failed.clone()], BroadcastState::PartiallyFailed),
        (&[Delivered, Cancelled], BroadcastState::PartiallyFailed),
        (&[failed.clone(), failed.clone()], BroadcastState::Failed),
        (&[failed.clone(), Cancelled], BroadcastState::Failed),
        (&[Cancelled, Cancelled], BroadcastState::Cancelled),
        (&[Delivered], BroadcastState::Delivered),
    ];
    for (states, want) in cases {
        assert_eq!(BroadcastState::of(states), want, "{states:?}");
    }
}

#[test]
fn broadcast_state_names_round_trip() {
    let all = [
        (BroadcastState::InProgress, "in_progress"),
        (BroadcastState::Delivered, "delivered"),
        (BroadcastState::PartiallyFailed, "partially_failed"),
        (BroadcastState::Failed, "failed"),
        (BroadcastState::Cancelled, "cancelled"),
    ];
    for (state, name) in all {
        assert_eq!(state.as_str(), name);
        assert_eq!(BroadcastState::parse(name), Some(state));
    }
    assert_eq!(BroadcastState::parse("partially-failed"), None);
}
