//! Tests of the settings reader: each accessor's answers and problems (with offsets),
//! read tracking, secrets never echoed, and the registered kinds' parsers.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;
use crate::webhook::WebhookConfig;
use crate::{ConnectorConfig, KINDS};

const HEADER: usize = 1;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn env(name: &str) -> Option<String> {
    match name {
        "HOOK_SECRET" => Some(SECRET.to_owned()),
        "TOKEN" => Some("hunter2-token".to_owned()),
        _ => None,
    }
}

/// Entries at made-up offsets: key `i` at `100 * (i + 1)`, its value 10 bytes later.
fn entries(items: Vec<(&str, Value)>) -> Vec<Entry> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Entry {
            key: key.to_owned(),
            key_at: 100 * (i + 1),
            value,
            value_at: 100 * (i + 1) + 10,
        })
        .collect()
}

fn string(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// One accessor on a one-entry table: what it returns and the problem's offset and
/// message fragment, if any.
type Read = fn(&mut Table<'_>) -> Option<String>;

#[test]
fn each_accessor_returns_the_value_or_one_located_problem() {
    let url: Read = |t| t.url("x");
    let secret: Read = |t| t.secret("x");
    let duration: Read = |t| t.duration("x").map(|d| format!("{d:?}"));
    let choice: Read = |t| t.choice("x", &["thread", "edit"]).map(str::to_owned);
    let boolean: Read = |t| t.bool("x").map(|b| b.to_string());
    let positive: Read = |t| t.positive("x").map(|n| n.to_string());
    let text: Read = |t| t.string("x");
    #[rustfmt::skip]
    let cases: Vec<(Read, Value, Option<&str>, Option<&str>)> = vec![
        (text, string("C012"), Some("C012"), None),
        (text, Value::Integer(3), None, Some("expected a string, found integer")),
        (url, string("https://hooks.example/a?token=t0k"), Some("https://hooks.example/a?token=t0k"), None),
        (url, string("http://127.0.0.1:9/slack/api"), Some("http://127.0.0.1:9/slack/api"), None),
        (url, string("ftp://t0k@x.example"), None, Some("http:// or https://")),
        (url, string("hooks.example/t0k"), None, Some("not a valid URL")),
        (url, string("http://"), None, Some("not a valid URL")),
        (secret, string("${HOOK_SECRET}"), Some(SECRET), None),
        (secret, string("inline-t0k"), Some("inline-t0k"), None),
        (secret, string("${NOPE}"), None, Some("environment variable `NOPE` is not set")),
        (secret, string("file:/nonexistent/herald/secret"), None, Some("cannot read secret file")),
        (duration, string("1h30m"), Some("5400s"), None),
        (duration, string("0s"), None, Some("must be longer than zero")),
        (duration, string("400d"), None, Some("longer than a year")),
        (duration, Value::Integer(60), None, Some("a duration is a string with a unit")),
        (choice, string("edit"), Some("edit"), None),
        (choice, string("thred"), None, Some("did you mean \"thread\"?")),
        (choice, string("sideways"), None, Some("write one of \"thread\", \"edit\"")),
        (boolean, Value::Bool(false), Some("false"), None),
        (boolean, string("yes"), None, Some("expected true or false, found string")),
        (positive, Value::Integer(7), Some("7"), None),
        (positive, Value::Integer(0), None, Some("must be at least 1, found 0")),
        (positive, Value::Integer(5_000_000_000), None, Some("too large")),
        (positive, string("8"), None, Some("write it without quotes: 8")),
        (positive, Value::Float(2.5), None, Some("expected a whole number, found float")),
    ];
    for (read, value, want, problem) in cases {
        let shown = format!("{value:?}");
        let mut table = Table::new(entries(vec![("x", value)]), HEADER, &env);
        assert_eq!(read(&mut table).as_deref(), want, "{shown}");
        assert!(table.unread().is_empty(), "{shown}");
        match problem {
            None => assert!(table.ok() && table.problems().is_empty(), "{shown}: {table:?}"),
            Some(fragment) => {
                let problems = table.problems();
                assert_eq!(problems.len(), 1, "{shown}: {problems:?}");
                assert_eq!((problems[0].at, problems[0].key.as_str()), (110, "x"), "{shown}");
                assert!(problems[0].message.contains(fragment), "{shown}: {problems:?}");
                assert!(!problems[0].message.contains("t0k"), "echoed: {problems:?}");
                assert!(!table.ok());
            }
        }
    }
}

#[test]
fn absent_keys_are_none_and_required_ones_are_reported_at_the_header() {
    let mut table = Table::new(entries(vec![("other", string("x"))]), HEADER, &env);
    assert_eq!(table.string("channel"), None);
    assert_eq!(table.duration("lookup_grace"), None);
    assert!(table.ok());
    assert_eq!(table.required_string("channel", "e.g. channel = \"C0123456789\""), None);
    assert_eq!(table.required_url("url", "e.g. url = \"https://x.example\""), None);
    assert_eq!(table.required_secret("token", "e.g. token = \"${SLACK_BOT_TOKEN}\""), None);
    let problems: Vec<(usize, &str, &str)> =
        table.problems().iter().map(|p| (p.at, p.key.as_str(), p.message.as_str())).collect();
    assert_eq!(
        problems,
        vec![
            (HEADER, "channel", "missing `channel`; add e.g. channel = \"C0123456789\""),
            (HEADER, "url", "missing `url`; add e.g. url = \"https://x.example\""),
            (HEADER, "token", "missing `token`; add e.g. token = \"${SLACK_BOT_TOKEN}\""),
        ]
    );
    // Nothing read `other`: the reader reports it as unknown.
    assert_eq!(table.unread(), vec![("other", 100)]);
}

#[test]
fn a_present_but_invalid_required_key_is_reported_once_at_its_value() {
    let mut table = Table::new(entries(vec![("url", Value::Bool(true))]), HEADER, &env);
    assert_eq!(table.required_url("url", "e.g. url = \"https://x.example\""), None);
    assert_eq!(table.problems().len(), 1);
    assert_eq!(table.problems()[0].at, 110);
    assert!(table.problems()[0].message.contains("expected a string, found boolean"));
}

#[test]
fn an_already_reported_value_is_silent_but_not_ok() {
    let mut table = Table::new(Vec::new(), HEADER, &env);
    table.already_reported("max_messages");
    assert!(table.has("max_messages"));
    assert_eq!(table.positive("max_messages"), None);
    assert!(table.require("max_messages", "e.g. max_messages = 3"));
    assert!(table.problems().is_empty());
    assert!(!table.ok());
}

#[test]
fn checked_secrets_name_their_source_never_their_value() {
    let must_be_xoxb = |value: &str| {
        if value.starts_with("xoxb-") { Ok(()) } else { Err("is not a bot token".to_owned()) }
    };
    for (raw, source) in [
        ("${TOKEN}", "the value of environment variable `TOKEN`"),
        ("hunter2", "the inline secret"),
    ] {
        let mut table = Table::new(entries(vec![("token", string(raw))]), HEADER, &env);
        assert_eq!(table.checked_secret("token", must_be_xoxb), None);
        let message = &table.problems()[0].message;
        assert_eq!(message, &format!("{source} is not a bot token"));
        assert!(!message.contains("hunter2"));
    }
}

#[test]
fn string_tables_keep_every_key_and_report_values_that_are_not_strings() {
    let nested = Value::Table(vec![
        Entry { key: "A".into(), key_at: 20, value: string("1"), value_at: 25 },
        Entry { key: "B".into(), key_at: 30, value: Value::Integer(2), value_at: 35 },
    ]);
    let mut table = Table::new(entries(vec![("headers", nested)]), HEADER, &env);
    let got = table.string_table("headers", "a table of header names to values").unwrap();
    assert_eq!(
        got.iter().map(|e| (e.key.as_str(), e.value.as_deref())).collect::<Vec<_>>(),
        vec![("A", Some("1")), ("B", None)]
    );
    assert_eq!(
        table.problems(),
        &[Problem {
            at: 35,
            key: "headers.B".into(),
            message: "expected a string, found integer".into()
        }]
    );

    let mut table = Table::new(entries(vec![("headers", string("X-A: 1"))]), HEADER, &env);
    assert!(table.string_table("headers", "a table of header names to values").is_none());
    assert!(table.problems()[0].message.contains("expected a table of header names to values"));
}

#[test]
fn value_debug_hides_strings() {
    let shown = format!("{:?}", entries(vec![("token", string("xoxb-hunter2"))]));
    assert!(!shown.contains("hunter2") && shown.contains("token"), "{shown}");
}

#[test]
fn durations_parse_and_format() {
    for (text, ms) in [("250ms", 250), ("2s", 2000), ("1h30m", 5_400_000), ("1d", 86_400_000)] {
        assert_eq!(parse_duration(text), Some(Duration::from_millis(ms)), "{text}");
        assert_eq!(
            parse_duration(&format_duration(Duration::from_millis(ms))),
            parse_duration(text)
        );
    }
    for text in ["", "1", "1.5s", "-1s", "1 s", "99999999999999999999d"] {
        assert_eq!(parse_duration(text), None, "{text}");
    }
}

#[test]
fn the_registry_has_unique_names_and_each_kind_reads_only_its_declared_keys() {
    let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for kind in KINDS {
        assert!(!kind.keys.contains(&"kind"), "{}", kind.name);
        assert_eq!(crate::kind(kind.name).map(|k| k.name), Some(kind.name));
    }
}

#[test]
fn the_webhook_kind_parses_its_table_into_its_settings() {
    let kind = crate::kind("webhook").unwrap();
    let headers = Value::Table(vec![Entry {
        key: "X-Team".into(),
        key_at: 20,
        value: string("sre"),
        value_at: 30,
    }]);
    let mut table = Table::new(
        entries(vec![
            ("url", string("https://hooks.example/herald/t0k")),
            ("secret", string("${HOOK_SECRET}")),
            ("headers", headers),
        ]),
        HEADER,
        &env,
    );
    let config: ConnectorConfig = (kind.parse)(&mut table).unwrap();
    assert!(table.ok() && table.unread().is_empty(), "{table:?}");
    assert_eq!(config.kind(), "webhook");
    assert_eq!(config.capabilities(), kind.capabilities);
    assert_eq!(
        config.downcast_ref::<WebhookConfig>(),
        Some(&WebhookConfig {
            url: "https://hooks.example/herald/t0k".into(),
            secret: Some(SECRET.into()),
            headers: vec![("X-Team".into(), "sre".into())],
        })
    );
    let shown = format!("{config:?}");
    assert!(!shown.contains(SECRET) && !shown.contains("t0k") && !shown.contains("sre"), "{shown}");
    assert!(config.build(crate::http::client()).is_ok());

    // Every declared key was read above; an undeclared one is left for the reader.
    let mut table = Table::new(
        entries(vec![("url", string("https://x.example")), ("urll", string("y"))]),
        HEADER,
        &env,
    );
    assert!((kind.parse)(&mut table).is_some());
    assert_eq!(table.unread(), vec![("urll", 200)]);
}

#[test]
fn the_webhook_kind_reports_nested_header_problems_at_the_header_key() {
    let kind = crate::kind("webhook").unwrap();
    let headers = Value::Table(vec![
        Entry { key: "Webhook-Id".into(), key_at: 40, value: string("x"), value_at: 55 },
        Entry { key: "X-A".into(), key_at: 60, value: string("a\nb"), value_at: 66 },
    ]);
    let mut table = Table::new(
        entries(vec![("url", string("https://x.example")), ("headers", headers)]),
        HEADER,
        &env,
    );
    assert!((kind.parse)(&mut table).is_none());
    let problems: Vec<(usize, &str)> =
        table.problems().iter().map(|p| (p.at, p.key.as_str())).collect();
    assert_eq!(problems, vec![(40, "headers.Webhook-Id"), (66, "headers.X-A")]);
}
