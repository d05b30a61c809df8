//! Unit tests of the Slack incoming-webhook connector: one classification row per line
//! of shared/DESTINATIONS.md §2 (with whether it pauses the destination), and a
//! secret-free `Debug`.

use std::time::Duration;

use super::{SlackWebhookConfig, classify, pause};

#[test]
fn every_row_of_the_classification_table() {
    // (status, Retry-After, body, class, whether it pauses the destination)
    let table: &[(u16, Option<u64>, &str, &str, bool)] = &[
        (200, None, "ok", "delivered", false),
        (400, None, "invalid_payload", "permanent", false),
        (400, None, "user_not_found", "permanent", false),
        (400, None, "no_text", "permanent", false),
        (403, None, "action_prohibited", "permanent", false),
        (403, None, "invalid_token", "permanent", true),
        (403, None, "no_active_hooks", "permanent", true),
        (404, None, "channel_not_found", "permanent", true),
        (404, None, "no_service", "permanent", true),
        (404, None, "no_team", "permanent", true),
        (410, None, "channel_is_archived", "permanent", true),
        // Not Slack's own code (a proxy's page, an empty body): the message fails alone.
        (404, None, "<html>Not Found</html>", "permanent", false),
        (410, None, "", "permanent", false),
        (429, Some(7), "rate_limited", "throttled", false),
        (500, None, "rollup_error", "retry", false),
        (503, None, "", "retry", false),
    ];
    for &(status, retry_after, body, class, pauses) in table {
        let outcome = classify(status, retry_after.map(Duration::from_secs), body);
        assert_eq!(outcome.class(), class, "{status} {body}: {outcome:?}");
        let pause = pause(status, body);
        assert_eq!(pause.is_some(), pauses, "{status} {body}: {pause:?}");
        if let Some(reason) = pause {
            assert!(reason.contains(body) && reason.contains("resume"), "{reason}");
        }
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
