//! Secret hygiene at the engine: whatever a connector says, including a panic's text,
//! is scrubbed of the configured secrets before it is logged, stored or published; and a
//! connector that panics ends its attempt as `Unknown` instead of stranding the delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use herald_connectors::redact::{REDACTED, Redactor};
use herald_connectors::{Connector, Report, Request};
use herald_core::{Capabilities, Outcome};
use herald_engine::{Destination, EngineConfig, LaneSettings};

use crate::harness::*;

const SECRET: &str = "xoxb-planted-0123456789-secret";

/// Panics on its first call, echoes the secret back on its second (reason, detail and
/// a pause request), and delivers after the operator resumes it.
struct Leaky {
    calls: AtomicU32,
}

#[async_trait]
impl Connector for Leaky {
    fn kind(&self) -> &'static str {
        "leaky"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { dedupe_by_key: true, ..Capabilities::default() }
    }

    async fn send(&self, _request: &Request<'_>) -> Report {
        match self.calls.fetch_add(1, Ordering::SeqCst) {
            // A panic that skips the panic hook: printing a backtrace on a loaded
            // machine can take longer than the test waits, and the hook's own
            // redaction is herald-cli's `logging` test.
            0 => std::panic::resume_unwind(Box::new(format!(
                "could not parse the answer for token {SECRET}"
            ))),
            1 => Report {
                outcome: Outcome::Retry {
                    reason: format!("HTTP 500: {{\"echo\":\"Bearer {SECRET}\"}}"),
                    after: None,
                },
                status: Some(500),
                detail: Some(format!("Bearer {SECRET}")),
                pause: Some(format!("token {SECRET} was revoked")),
            },
            _ => Report {
                outcome: Outcome::delivered(None),
                status: Some(200),
                detail: None,
                pause: None,
            },
        }
    }
}

#[tokio::test]
async fn a_panic_and_an_echoed_secret_are_recorded_without_the_secret() {
    let mut settings = LaneSettings::default();
    settings.policy.backoff_base = Duration::from_millis(10);
    settings.policy.backoff_max = Duration::from_millis(10);
    let destination = Destination {
        name: "leaky".into(),
        connector: Arc::new(Leaky { calls: AtomicU32::new(0) }),
        settings,
    };
    let config = EngineConfig { redactor: Redactor::new([SECRET]), ..EngineConfig::default() };
    let mut fx = Fixture::start_destinations(vec![destination], config);

    let broadcast = fx.submit("checkout is down", &["leaky"]).await;
    // The panic ends the first attempt as `Unknown`; the retry is due after the backoff.
    fx.wait_for(&broadcast.id, |view| view.deliveries[0].progress.attempts == 1).await;
    fx.idle().await;
    fx.clock.advance(Duration::from_secs(1));
    // The echo pauses the destination; its delivery waits for the operator.
    fx.wait_for(&broadcast.id, |view| view.deliveries[0].progress.attempts == 2).await;
    fx.idle().await;
    let health = fx.engine.health().into_iter().find(|h| h.destination == "leaky").unwrap();
    let pause = health.pause_reason.unwrap_or_default();
    assert!(health.paused && pause.contains(REDACTED) && !pause.contains(SECRET), "{pause}");
    let view = fx.store.broadcast(&broadcast.id).await.unwrap().unwrap();
    let last_error = view.deliveries[0].progress.last_error.clone().unwrap_or_default();
    assert!(last_error.contains(REDACTED) && !last_error.contains(SECRET), "{last_error}");

    assert!(fx.engine.set_paused("leaky", false).await.unwrap());
    fx.clock.advance(Duration::from_secs(1));
    let view = fx.settle(&broadcast.id).await;
    assert_eq!(view.deliveries[0].progress.state.as_str(), "delivered");

    let attempts = fx.store.attempts(&broadcast.id).await.unwrap();
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.attempt.outcome.as_str()).collect();
    assert_eq!(outcomes, ["unknown", "retry", "delivered"]);
    let panicked = attempts[0].attempt.detail.clone().unwrap_or_default();
    assert!(panicked.contains("leaky connector failed unexpectedly"), "{panicked}");
    assert!(panicked.contains("could not parse the answer") && panicked.contains(REDACTED));
    for attempt in &attempts {
        let detail = attempt.attempt.detail.clone().unwrap_or_default();
        assert!(!detail.contains(SECRET), "attempt {}: {detail}", attempt.attempt.number);
    }
}
