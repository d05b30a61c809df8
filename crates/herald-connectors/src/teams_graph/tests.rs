//! Unit tests of the Teams Graph kind: rendering snapshots, the marker, classification rows.

#![allow(clippy::unwrap_used)]

use super::render::{CONTENT_LIMIT_BYTES, content, has_marker, render};
use crate::teams_workflow::tests::{
    long_message, rich_message, snapshot, unicode_message, wide_message,
};
use crate::text::TRUNCATION_MARKER;

#[test]
fn a_rich_message_renders_as_html() {
    let html = content(&rich_message(), "d_01JD0000000000000000000001");
    snapshot("teams_graph", "rich.html", &(html + "\n"));
}

#[test]
fn unicode_and_emoji_pass_through() {
    let html = content(&unicode_message(), "d_2");
    snapshot("teams_graph", "unicode.html", &(html + "\n"));
}

#[test]
fn the_body_is_html_with_the_marker() {
    let body = render(&unicode_message(), "d_2");
    assert_eq!(body["body"]["contentType"], "html");
    let html = body["body"]["content"].as_str().unwrap();
    assert!(has_marker(html, "d_2"));
    assert!(!has_marker(html, "d_"), "a prefix of the id is not the marker");
    assert!(!has_marker("herald:d_23", "d_2"));
    assert!(has_marker("x herald:d_23 y herald:d_2<", "d_2"));
}

#[test]
fn a_long_body_is_cut_to_the_limit_with_a_visible_marker() {
    let html = content(&long_message(), "d_4");
    let size = serde_json::Value::String(html.clone()).to_string().len();
    assert!(size <= CONTENT_LIMIT_BYTES, "{size} bytes");
    assert!(size > CONTENT_LIMIT_BYTES - 64, "cut too much: {size} bytes");
    assert!(html.contains(&format!("{TRUNCATION_MARKER}</p>")));
    assert!(has_marker(&html, "d_4"), "the marker survives the cut");
}

/// Found by the fuzz target's size property: fields and links were never cut (60 KB of
/// content); they are left out now, saying so, and the marker stays.
#[test]
fn fields_and_links_too_long_on_their_own_are_left_out_saying_so() {
    let html = content(&wide_message(), "d_6");
    let size = serde_json::Value::String(html.clone()).to_string().len();
    assert!(size <= CONTENT_LIMIT_BYTES, "{size} bytes");
    assert!(html.contains("40 field(s) and 20 link(s) are too long for Teams"), "{html}");
    assert!(has_marker(&html, "d_6"));
}

/// One row per line of DESTINATIONS.md §3c's classification (the 401 refresh, timeouts
/// and the token endpoint end to end: tests/it/teams.rs).
#[test]
fn every_answer_of_section_3c_is_classified() {
    use std::time::Duration;

    use herald_core::Outcome;

    use super::classify::{failed, posted};

    assert_eq!(
        posted(br#"{"id":"1700000000001","body":{}}"#),
        Outcome::Delivered { remote_ref: Some("1700000000001".to_owned()), unconfirmed: false }
    );
    let err = |code: &str| format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
    let secs = |s| Some(Duration::from_secs(s));
    let rows: Vec<(u16, Option<Duration>, String, &str, &str)> = vec![
        (400, None, err("BadRequest"), "permanent", "BadRequest: HTTP 400"),
        (
            401,
            None,
            err("InvalidAuthenticationToken"),
            "permanent",
            "InvalidAuthenticationToken: HTTP 401",
        ),
        (403, None, err("Forbidden"), "permanent", "Forbidden: HTTP 403"),
        (404, None, err("NotFound"), "permanent", "NotFound: HTTP 404"),
        (413, None, err("RequestEntityTooLarge"), "permanent", "RequestEntityTooLarge: HTTP 413"),
        (429, secs(3), err("TooManyRequests"), "throttled", "TooManyRequests: HTTP 429"),
        (503, None, err("ServiceNotAvailable"), "retry", "ServiceNotAvailable: HTTP 503"),
        (503, secs(2), err("ServiceNotAvailable"), "throttled", "ServiceNotAvailable: HTTP 503"),
        (504, None, err("GatewayTimeout"), "retry", "GatewayTimeout: HTTP 504"),
    ];
    for (status, retry_after, body, class, reason) in rows {
        let outcome = failed(status, retry_after, &body);
        assert_eq!(outcome.class(), class, "HTTP {status}");
        assert!(outcome.reason().unwrap_or("").starts_with(reason), "HTTP {status}: {outcome:?}");
        if let Outcome::Throttled { after, .. } = outcome {
            assert_eq!(after, retry_after);
        }
    }
}

#[test]
fn token_endpoint_errors_name_the_oauth_error() {
    use super::classify::token_failed;

    let body = br#"{"error":"invalid_grant","error_description":"AADSTS70000: Provided grant is invalid or malformed. Trace ID: 1\r\nCorrelation ID: 2","error_codes":[70000]}"#;
    let outcome = token_failed(400, None, body);
    assert_eq!(outcome.class(), "permanent");
    let reason = outcome.reason().unwrap();
    assert!(
        reason.starts_with("invalid_grant: AADSTS70000: Provided grant is invalid or malformed."),
        "{reason}"
    );
    assert!(!reason.contains("Trace ID"), "{reason}");
    let body = br#"{"error":"temporarily_unavailable","error_description":"AADSTS50196"}"#;
    assert_eq!(token_failed(400, None, body).class(), "retry");
    assert_eq!(token_failed(503, None, b"").class(), "retry");
    assert_eq!(token_failed(429, None, b"").class(), "throttled");
}

#[test]
fn look_up_pages_find_the_marker_and_stop_at_old_messages() {
    use herald_core::Timestamp;
    use serde_json::json;

    use super::lookup::{Page, parse_time, search};

    let base = "https://graph.example/v1.0";
    let created = parse_time("2026-12-02T22:00:00Z").unwrap();
    assert_eq!(created, Timestamp::from_millis(1_796_248_800_000));
    assert_eq!(
        parse_time("2026-12-02T22:00:00.5Z"),
        Some(created.add(std::time::Duration::from_millis(500)))
    );
    assert_eq!(parse_time("yesterday"), None);
    let item = |id: &str, at: &str, content: &str| json!({ "id": id, "createdDateTime": at, "body": { "content": content } });
    let page = json!({
        "value": [
            item("3", "2026-12-02T22:01:00Z", "<p>herald:d_12</p>"),
            item("2", "2026-12-02T22:00:30Z", "<p>herald:d_1</p>"),
        ],
        "@odata.nextLink": format!("{base}/teams/t/channels/c/messages?$skiptoken=x"),
    });
    assert_eq!(search(&page, "d_1", created, base), Page::Found("2".to_owned()));
    let next = format!("{base}/teams/t/channels/c/messages?$skiptoken=x");
    assert_eq!(search(&page, "d_9", created, base), Page::Next(Some(next)));
    // Elsewhere-pointing links are not followed, and the search cannot conclude then;
    // pages older than the delivery end the search.
    assert!(matches!(search(&page, "d_9", created, "https://other.example"), Page::Unusable(_)));
    let old = json!({
        "value": [item("1", "2026-12-02T21:00:00Z", "x")],
        "@odata.nextLink": format!("{base}/more"),
    });
    assert_eq!(search(&old, "d_9", created, base), Page::Next(None));
}

/// A look-up answer that cannot prove absence never reads as "not there" (which would
/// post again): a body that is not a message list, a next link that merely starts with
/// `base_url`'s text, or an old message that was edited lately (Graph sorts channel
/// messages by `lastModifiedDateTime`, so it does not mean the rest is older).
#[test]
fn look_up_pages_that_prove_nothing_do_not_end_the_search_as_not_found() {
    use serde_json::{Value, json};

    use super::lookup::{Page, parse_time, search};

    let created = parse_time("2026-12-02T22:00:00Z").unwrap();
    for unusable in [Value::Null, json!({}), json!({"value": "x"}), json!([1, 2])] {
        assert!(
            matches!(
                search(&unusable, "d_1", created, "https://g.example/v1.0"),
                Page::Unusable(_)
            ),
            "{unusable}"
        );
    }
    let page = json!({"value": [], "@odata.nextLink": "https://graph.example.evil/v1.0/x"});
    assert!(matches!(search(&page, "d_1", created, "https://graph.example"), Page::Unusable(_)));
    let page = json!({"value": [], "@odata.nextLink": "https://graph.example/v1.0/x"});
    assert_eq!(
        search(&page, "d_1", created, "https://graph.example"),
        Page::Next(Some("https://graph.example/v1.0/x".to_owned()))
    );
    let edited_lately = json!({
        "value": [{
            "id": "1",
            "createdDateTime": "2026-11-01T00:00:00Z",
            "lastModifiedDateTime": "2026-12-02T22:00:10Z",
            "body": {"content": "old thread"}
        }],
        "@odata.nextLink": "https://g.example/v1.0/next",
    });
    assert_eq!(
        search(&edited_lately, "d_1", created, "https://g.example/v1.0"),
        Page::Next(Some("https://g.example/v1.0/next".to_owned()))
    );
}

/// Times from outside never overflow (a panic in debug builds) and nonsense is refused.
#[test]
fn parse_time_refuses_out_of_range_parts() {
    use super::lookup::parse_time;

    for text in [
        "99999999999999999-01-01T00:00:00Z",
        "-9223372036854775808-01-01T00:00:00Z",
        "2026-01-01T9223372036854775807:00:00Z",
        "2026-01-01T00:9223372036854775807:00Z",
        "2026-01-01T00:00:9223372036854775807Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00.-5Z",
    ] {
        assert_eq!(parse_time(text), None, "{text}");
    }
    assert!(parse_time("2026-01-01T23:59:60.999Z").is_some());
}

#[test]
fn the_kind_parses_its_table_with_defaults_and_hides_secrets() {
    use super::{
        CAPABILITIES, DEFAULT_BASE_URL, DEFAULT_LOGIN_URL, DEFAULT_SCOPE, KIND, TeamsGraphConfig,
    };
    use crate::teams_workflow::tests::table;

    let env = |name: &str| (name == "TEAMS_REFRESH_TOKEN").then(|| "0.AAAA-refresh".to_owned());
    let items = [
        ("tenant", "contoso.onmicrosoft.com"),
        ("client_id", "11111111-2222-3333-4444-555555555555"),
        ("refresh_token", "${TEAMS_REFRESH_TOKEN}"),
        ("team_id", "team-1"),
        ("channel_id", "19:abc@thread.tacv2"),
    ];
    let mut t = table(&items, &env);
    let config = (KIND.parse)(&mut t).unwrap();
    assert!(t.ok() && t.unread().is_empty(), "{t:?}");
    assert_eq!((config.kind(), config.capabilities()), ("teams-graph", CAPABILITIES));
    let expected = TeamsGraphConfig {
        tenant: "contoso.onmicrosoft.com".to_owned(),
        client_id: "11111111-2222-3333-4444-555555555555".to_owned(),
        client_secret: None,
        refresh_token: "0.AAAA-refresh".to_owned(),
        team_id: "team-1".to_owned(),
        channel_id: "19:abc@thread.tacv2".to_owned(),
        base_url: DEFAULT_BASE_URL.to_owned(),
        login_url: DEFAULT_LOGIN_URL.to_owned(),
        scope: DEFAULT_SCOPE.to_owned(),
    };
    assert_eq!(config.downcast_ref::<TeamsGraphConfig>(), Some(&expected));
    let shown = format!("{config:?}");
    assert!(!shown.contains("0.AAAA-refresh"), "{shown}");
    assert!(config.build(crate::http::client()).is_ok());

    // Every required key missing: one problem each, at the header.
    let mut t = table(&[], &env);
    assert!((KIND.parse)(&mut t).is_none());
    let missing: Vec<&str> = t.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(missing, ["tenant", "client_id", "refresh_token", "team_id", "channel_id"]);
}
