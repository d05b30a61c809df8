//! Unit tests of the shared HTTP rules: status classification (table-driven and
//! exhaustive over 100–599), `Retry-After` parsing, excerpts, transport errors that can
//! be made without a network. Errors from real sockets are in `tests/it`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald_core::{Outcome, Timestamp};
use proptest::prelude::*;

use super::*;

/// 2026-11-29T12:02:03Z.
const NOW: Timestamp = Timestamp::from_millis(1_795_953_723_000);

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

#[test]
fn classify_table() {
    let retry = |reason: &str, after| Outcome::Retry { reason: reason.to_owned(), after };
    let throttled = |reason: &str, after| Outcome::Throttled { reason: reason.to_owned(), after };
    let permanent = |reason: &str| Outcome::Permanent { reason: reason.to_owned() };
    #[rustfmt::skip]
    let table: &[(u16, Option<Duration>, &str, Outcome)] = &[
        (200, None, "ok", Outcome::delivered(None)),
        (202, secs(5), "", Outcome::delivered(None)),
        (204, None, "", Outcome::delivered(None)),
        (100, None, "", retry("HTTP 100 Continue from the destination: an interim answer and no final one; herald will try again", None)),
        (103, secs(1), "hint", retry("HTTP 103 Early Hints from the destination: an interim answer and no final one; herald will try again (it said: \"hint\")", secs(1))),
        (301, None, "https://new.example", permanent("HTTP 301 Moved Permanently from the destination: it redirects to https://new.example, and herald does not follow redirects; set the destination's URL to the final address")),
        (307, None, "", permanent("HTTP 307 Temporary Redirect from the destination: it redirects elsewhere, and herald does not follow redirects; set the destination's URL to the final address")),
        (400, None, "missing field `x`", permanent("HTTP 400 Bad Request from the destination: it rejected the request as invalid (it said: \"missing field `x`\")")),
        (401, None, "", permanent("HTTP 401 Unauthorized from the destination: check the destination's credentials")),
        (403, secs(9), "", permanent("HTTP 403 Forbidden from the destination: it refused access; check the destination's credentials and permissions")),
        (404, None, "no such hook", permanent("HTTP 404 Not Found from the destination: check the destination's URL (it said: \"no such hook\")")),
        (410, None, "", permanent("HTTP 410 Gone from the destination: the endpoint is gone for good; remove the destination or give it a new URL")),
        (413, None, "", permanent("HTTP 413 Payload Too Large from the destination: the message is too large for it; shorten the message")),
        (418, None, "", permanent("HTTP 418 I'm a teapot from the destination: it rejected the request, and sending it again will not help")),
        (499, None, "", permanent("HTTP 499 from the destination: it rejected the request, and sending it again will not help")),
        (408, secs(3), "", retry("HTTP 408 Request Timeout from the destination: it gave up waiting for the request; herald will try again", secs(3))),
        (429, secs(30), "slow down", throttled("HTTP 429 Too Many Requests from the destination: it asks herald to slow down for 30s (it said: \"slow down\")", secs(30))),
        (429, None, "", throttled("HTTP 429 Too Many Requests from the destination: it asks herald to slow down", None)),
        (503, secs(120), "", throttled("HTTP 503 Service Unavailable from the destination: it is temporarily unavailable and asks herald to come back for 2m", secs(120))),
        (503, None, "", retry("HTTP 503 Service Unavailable from the destination: it is temporarily unavailable; herald will try again", None)),
        (500, None, "boom", retry("HTTP 500 Internal Server Error from the destination: it failed on its side; herald will try again (it said: \"boom\")", None)),
        (502, secs(4), "", retry("HTTP 502 Bad Gateway from the destination: a gateway in front of it failed; herald will try again", secs(4))),
        (504, None, "", retry("HTTP 504 Gateway Timeout from the destination: a gateway in front of it failed; herald will try again", None)),
        (599, None, "", retry("HTTP 599 from the destination: it failed on its side; herald will try again", None)),
        (600, None, "", Outcome::Unknown { reason: "HTTP 600 from the destination is not a status HTTP defines; herald cannot tell whether the message was taken".to_owned() }),
    ];
    for (status, retry_after, detail, expected) in table {
        assert_eq!(&classify(*status, *retry_after, detail), expected, "status {status}");
    }
}

/// What `classify` must answer for `status`, restated independently of its `match`.
fn expected_class(status: u16, retry_after: Option<Duration>) -> &'static str {
    let class = status / 100;
    if class == 2 {
        "delivered"
    } else if status == 429 || (status == 503 && retry_after.is_some()) {
        "throttled"
    } else if class == 1 || class == 5 || status == 408 {
        "retry"
    } else if class == 3 || class == 4 {
        "permanent"
    } else {
        "unknown"
    }
}

#[test]
fn classify_is_total_and_maps_every_class() {
    for status in 0..=u16::MAX {
        for retry_after in [None, secs(7), Some(Duration::ZERO)] {
            let outcome = classify(status, retry_after, "detail");
            assert_eq!(outcome.class(), expected_class(status, retry_after), "status {status}");
            if (100..=599).contains(&status) {
                assert_ne!(outcome.class(), "unknown", "status {status} is defined by HTTP");
            }
            match &outcome {
                Outcome::Delivered { remote_ref, .. } => assert_eq!(remote_ref, &None),
                // The destination's delay is passed on wherever a delay applies.
                Outcome::Retry { after, .. } | Outcome::Throttled { after, .. } => {
                    assert_eq!(after, &retry_after, "status {status}")
                }
                Outcome::Permanent { .. } | Outcome::Unknown { .. } => {}
                Outcome::Reconciling { .. } => panic!("a status alone never asks to look again"),
            }
            if let Some(reason) = outcome.reason() {
                assert!(reason.starts_with(&format!("HTTP {status}")), "{reason}");
                // Redirects quote where they point; everything else quotes the body.
                let quoted = if (300..=399).contains(&status) { "to detail" } else { "\"detail\"" };
                assert!(reason.contains(quoted), "{reason}");
            }
        }
    }
}

#[test]
fn reasons_quote_at_most_a_short_excerpt() {
    let long = "x".repeat(5000);
    let outcome = classify(500, None, &long);
    let reason = outcome.reason().unwrap();
    assert!(reason.len() < 400, "{} chars", reason.len());
    assert!(reason.contains("xxx…\")"), "{reason}");
}

#[test]
fn retry_after_delay_seconds() {
    #[rustfmt::skip]
    let table: &[(&str, Option<Duration>)] = &[
        ("120", secs(120)),
        ("0", secs(0)),
        (" 5 ", secs(5)),
        ("007", secs(7)),
        ("1.5", secs(2)),
        ("3.000", secs(3)),
        ("-3", secs(0)),
        ("-0.5", secs(0)),
        ("3600", secs(3600)),
        ("3601", Some(RETRY_AFTER_CAP)),
        ("99999999999999999999999999", Some(RETRY_AFTER_CAP)),
    ];
    for (value, expected) in table {
        assert_eq!(parse_retry_after(value, NOW), *expected, "{value:?}");
    }
}

#[test]
fn retry_after_http_dates() {
    #[rustfmt::skip]
    let table: &[(&str, Option<Duration>)] = &[
        ("Sun, 29 Nov 2026 12:03:33 GMT", secs(90)),     // IMF-fixdate
        ("Sunday, 29-Nov-26 12:03:33 GMT", secs(90)),    // RFC 850
        ("Sun Nov 29 12:03:33 2026", secs(90)),          // asctime
        ("Sun, 29 Nov 2026 12:02:03 GMT", secs(0)),      // now
        ("Sun, 29 Nov 2026 12:00:33 GMT", secs(0)),      // in the past
        ("Thu, 01 Jan 1970 00:00:00 GMT", secs(0)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", Some(RETRY_AFTER_CAP)),
    ];
    for (value, expected) in table {
        assert_eq!(parse_retry_after(value, NOW), *expected, "{value:?}");
    }
}

#[test]
fn retry_after_garbage_is_ignored() {
    for value in
        ["", " ", "soon", "5s", "+5", "1e3", "1.", ".5", "1.2.3", "0x10", "Sun, 32 Nov 2026"]
    {
        assert_eq!(parse_retry_after(value, NOW), None, "{value:?}");
    }
}

#[test]
fn retry_after_header() {
    let mut headers = HeaderMap::new();
    assert_eq!(retry_after(&headers, NOW), None);
    headers.insert(RETRY_AFTER, "42".parse().unwrap());
    assert_eq!(retry_after(&headers, NOW), secs(42));
}

proptest! {
    #[test]
    fn retry_after_never_panics_and_is_capped(value in ".*", now in any::<i64>()) {
        if let Some(wait) = parse_retry_after(&value, Timestamp::from_millis(now)) {
            prop_assert!(wait <= RETRY_AFTER_CAP);
        }
    }

    #[test]
    fn retry_after_seconds_round_trip(n in any::<u64>()) {
        let expected = Duration::from_secs(n).min(RETRY_AFTER_CAP);
        prop_assert_eq!(parse_retry_after(&n.to_string(), NOW), Some(expected));
    }
}

#[test]
fn excerpt_keeps_short_bodies_whole_on_one_line() {
    assert_eq!(excerpt(b"", 1024), "");
    assert_eq!(excerpt(b"ok", 1024), "ok");
    assert_eq!(excerpt(b"  {\"error\":\n\t\"bad\"}\r\n", 1024), "{\"error\": \"bad\"}");
    assert_eq!(excerpt(b"a\x00b\x1bc", 1024), "a b c");
    assert_eq!(excerpt(b"caf\xff", 1024), "caf\u{fffd}");
}

#[test]
fn excerpt_cuts_long_bodies_at_a_character_boundary() {
    assert_eq!(excerpt(b"abcdef", 4), "abcd…");
    assert_eq!(excerpt(b"abcd", 4), "abcd");
    // "é" is two bytes; a cut after its first byte must not leave half of it.
    assert_eq!(excerpt("abcé!".as_bytes(), 4), "abc…");
    assert_eq!(excerpt("€€".as_bytes(), 4), "€…");
    let big = vec![b'y'; 1 << 20];
    assert_eq!(excerpt(&big, EXCERPT_LIMIT).len(), EXCERPT_LIMIT + "…".len());
}

#[test]
fn redirect_targets_never_quote_path_or_query() {
    assert_eq!(
        redirect_target("https://user:pw@new.example:8443/hook/T0KEN?sig=x"),
        "https://new.example:8443"
    );
    assert_eq!(redirect_target("http://new.example/"), "http://new.example");
    assert_eq!(redirect_target("/elsewhere?token=x"), "another path on the same server");
    assert_eq!(redirect_target("mailto:someone@example.com"), "an address herald cannot use");
}

#[test]
fn answer_outcome_quotes_location_for_redirects_and_excerpt_otherwise() {
    let answer = Answer {
        status: 308,
        retry_after: None,
        location: Some("https://new.example".to_owned()),
        excerpt: "moved".to_owned(),
    };
    assert!(answer.outcome().reason().unwrap().contains("redirects to https://new.example,"));
    let answer = Answer { status: 404, location: None, ..answer };
    assert!(answer.outcome().reason().unwrap().ends_with("(it said: \"moved\")"));
}

#[tokio::test]
async fn request_building_errors_are_permanent_and_do_not_quote_the_url() {
    let client = client();
    let error = client.post("http://user:s3cret@[::1/hook").send().await.unwrap_err();
    assert!(matches!(&error, SendError::Transport(error) if error.is_builder()), "{error:?}");
    let outcome = classify_error(&error);
    assert_eq!(outcome.class(), "permanent");
    let reason = outcome.reason().unwrap();
    assert!(reason.starts_with("herald could not build the request: "), "{reason}");
    assert!(!reason.contains("s3cret"), "{reason}");
}

#[test]
fn client_options_default_leaves_the_total_timeout_to_the_engine() {
    let options = ClientOptions::default();
    assert_eq!(options.timeout, None);
    assert_eq!(options.connect_timeout, Duration::from_secs(5));
    client_with(&ClientOptions { timeout: Some(Duration::from_secs(1)), ..options }).unwrap();
    assert!(USER_AGENT.starts_with("herald/"));
}

/// An IP literal the policy refuses never leaves the process: `send` answers the
/// refusal, which is permanent and names the rule and the key that would allow it.
#[tokio::test]
async fn a_refused_literal_is_permanent_before_any_connection() {
    let client = client();
    for (url, rule) in [
        ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address"),
        ("http://2130706433:9/hook", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]:9/", "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the cloud metadata"),
        ("https://10.0.0.1/x?token=s3cret", "10.0.0.1 is a private address (RFC 1918)"),
        ("http://0.0.0.0:9/", "0.0.0.0 is an unspecified"),
    ] {
        let error = client.post(url).body("x").send().await.unwrap_err();
        assert!(matches!(error, SendError::Refused(_)), "{url}: {error:?}");
        let outcome = classify_error(&error);
        assert_eq!(outcome.class(), "permanent", "{url}");
        let reason = outcome.reason().unwrap();
        assert!(reason.starts_with(rule), "{url}: {reason}");
        assert!(reason.contains("`[outbound] allow_networks`"), "{reason}");
        assert!(!reason.contains("s3cret"), "{reason}");
    }
}
