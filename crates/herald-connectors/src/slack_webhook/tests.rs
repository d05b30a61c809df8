//! Unit tests of the Slack incoming-webhook connector: one classification row per line
//! of shared/DESTINATIONS.md §2, and a secret-free `Debug`.

use std::time::Duration;

use super::{SlackWebhookConfig, classify};

#[test]
fn every_row_of_the_classification_table() {
    // (status, Retry-After, body, class)
    let table: &[(u16, Option<u64>, &str, &str)] = &[
        (200, None, "ok", "delivered"),
        (400, None, "invalid_payload", "permanent"),
        (400, None, "user_not_found", "permanent"),
        (400, None, "no_text", "permanent"),
        (403, None, "action_prohibited", "permanent"),
        (403, None, "invalid_token", "permanent"),
        (403, None, "no_active_hooks", "permanent"),
        (404, None, "channel_not_found", "permanent"),
        (404, None, "no_service", "permanent"),
        (404, None, "no_team", "permanent"),
        (410, None, "channel_is_archived", "permanent"),
        (429, Some(7), "rate_limited", "throttled"),
        (500, None, "rollup_error", "retry"),
        (503, None, "", "retry"),
    ];
    for &(status, retry_after, body, class) in table {
        let outcome = classify(status, retry_after.map(Duration::from_secs), body);
        assert_eq!(outcome.class(), class, "{status} {body}: {outcome:?}");
        if class != "delivered" {
            assert!(outcome.reason().unwrap_or("").contains(body), "{status} {body}: {outcome:?}");
        }
        if let herald_core::Outcome::Throttled { after, .. } = outcome {
            assert_eq!(after, Some(Duration::from_secs(7)));
        }
    }
}

#[test]
fn debug_never_shows_the_url() {
    let config = SlackWebhookConfig::new("https://hooks.slack.com/services/T0/B0/secret123");
    let shown = format!("{config:?}");
    assert!(!shown.contains("secret123"), "{shown}");
    assert!(
        SlackWebhookConfig::new("not a url").problems().iter().all(|p| !p.contains("not a url"))
    );
}
