//! The PagerDuty connector against the simulator's Events API v2 dialect on loopback:
//! delivery, one alert across a resend after "stored, then no answer", updates and the
//! resolve, a 400 in PagerDuty's words, throttling and server errors.

use std::time::Duration;

use herald_connectors::http::{ClientOptions, client_with};
use herald_connectors::pagerduty::{PagerDuty, PagerDutyConfig};
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Message, Outcome, Severity};
use herald_simulator::{FaultPlan, PAGERDUTY_ROUTING_KEY, Simulator};

use crate::webhook::wall_clock;

/// The client's timeout, standing in for the engine's per-attempt timeout.
const TIMEOUT: Duration = Duration::from_millis(500);

const BROADCAST: &str = "b_01JD0000000000000000000000";
const ORIGINAL: &str = "d_01JD0000000000000000000001";
const DEDUP_KEY: &str = "herald-b_01JD0000000000000000000000";

async fn start(plan: FaultPlan) -> Simulator {
    Simulator::start(vec![("pd".to_owned(), plan)]).await.unwrap()
}

fn connector(sim: &Simulator, routing_key: &str) -> PagerDuty {
    let options = ClientOptions { timeout: Some(TIMEOUT), ..crate::options() };
    let config =
        PagerDutyConfig { routing_key: routing_key.to_owned(), base_url: sim.pagerduty_url("pd") };
    PagerDuty::new(config, client_with(&options).unwrap()).unwrap()
}

fn message(title: &str, severity: Severity) -> Message {
    Message {
        title: title.to_owned(),
        body: "Payments **fail**.".to_owned(),
        severity,
        fields: [("service".to_owned(), "checkout".to_owned())].into(),
        ..Message::default()
    }
}

fn original(message: &Message) -> Request<'_> {
    let now = wall_clock();
    Request {
        delivery_id: ORIGINAL,
        broadcast_id: BROADCAST,
        destination: "pager",
        message,
        thread: Thread::Original,
        attempt: 1,
        ambiguous: false,
        now,
        created_at: now,
        ambiguous_at: None,
    }
}

fn update<'a>(message: &'a Message, first: &'a Message, id: &'a str, seq: u32) -> Request<'a> {
    Request {
        delivery_id: id,
        thread: Thread::Update {
            seq,
            in_reply_to: ORIGINAL,
            original_remote_ref: Some(DEDUP_KEY),
            original: first,
            original_at: wall_clock(),
        },
        ..original(message)
    }
}

fn remote_ref(report: &Report) -> Option<&str> {
    match &report.outcome {
        Outcome::Delivered { remote_ref, .. } => remote_ref.as_deref(),
        _ => None,
    }
}

#[tokio::test]
async fn pagerduty_delivers_a_trigger_with_its_details() {
    let sim = start(FaultPlan::healthy()).await;
    let first = message("P1: checkout is down", Severity::Critical);
    let report = connector(&sim, PAGERDUTY_ROUTING_KEY).send(&original(&first)).await;
    assert_eq!(remote_ref(&report), Some(DEDUP_KEY), "{report:?}");
    assert_eq!(report.status, Some(202));
    let incidents = sim.view().pagerduty_incidents("pd");
    assert_eq!(incidents.len(), 1);
    let incident = &incidents[0];
    assert_eq!(
        (incident.status.as_str(), incident.summary.as_str(), incident.severity.as_str()),
        ("triggered", "P1: checkout is down", "critical")
    );
    let details = &incident.events[0].custom_details;
    assert_eq!(details["service"], "checkout");
    assert_eq!(details["herald_delivery"], ORIGINAL);
    assert_eq!(details["body"], "Payments **fail**.");
    sim.shutdown().await;
}

/// PagerDuty stores the event and the answer never comes: the resend carries the same
/// dedup key, so there is still one alert (with the trigger logged twice).
#[tokio::test]
async fn pagerduty_resend_after_a_lost_answer_keeps_one_alert() {
    let sim = start(FaultPlan::healthy().hang_first(1)).await;
    let pd = connector(&sim, PAGERDUTY_ROUTING_KEY);
    let first = message("P1: checkout is down", Severity::Critical);
    let lost = pd.send(&original(&first)).await;
    assert_eq!(lost.outcome.class(), "unknown", "{lost:?}");
    let resent = pd.send(&Request { attempt: 2, ambiguous: true, ..original(&first) }).await;
    assert_eq!(remote_ref(&resent), Some(DEDUP_KEY), "{resent:?}");
    let incidents = sim.view().pagerduty_incidents("pd");
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].events.len(), 2);
    assert_eq!(sim.view().requests("pd"), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn pagerduty_updates_retrigger_and_resolved_resolves() {
    let sim = start(FaultPlan::healthy()).await;
    let pd = connector(&sim, PAGERDUTY_ROUTING_KEY);
    let first = message("P1: checkout is down", Severity::Critical);
    assert_eq!(remote_ref(&pd.send(&original(&first)).await), Some(DEDUP_KEY));
    let second = message("P2: checkout degraded", Severity::Warning);
    let report = pd.send(&update(&second, &first, "d_01JD0000000000000000000002", 1)).await;
    assert_eq!(remote_ref(&report), Some(DEDUP_KEY), "{report:?}");
    let incidents = sim.view().pagerduty_incidents("pd");
    assert_eq!(incidents.len(), 1);
    assert_eq!(
        (incidents[0].summary.as_str(), incidents[0].severity.as_str()),
        ("P2: checkout degraded", "warning")
    );
    let done = message("Resolved: checkout is back", Severity::Resolved);
    let report = pd.send(&update(&done, &first, "d_01JD0000000000000000000003", 2)).await;
    assert_eq!(remote_ref(&report), Some(DEDUP_KEY), "{report:?}");
    let incidents = sim.view().pagerduty_incidents("pd");
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].status, "resolved");
    let actions: Vec<&str> = incidents[0].events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["trigger", "trigger", "resolve"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn pagerduty_invalid_event_is_permanent_in_its_words() {
    let sim = start(FaultPlan::healthy()).await;
    let first = message("P1", Severity::Critical);
    let wrong = "W0NGKEY00123456789abcdefabcdef00";
    let report = connector(&sim, wrong).send(&original(&first)).await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    assert_eq!(report.status, Some(400));
    let reason = report.outcome.reason().unwrap();
    assert!(reason.contains("Invalid routing key"), "{reason}");
    assert!(!format!("{report:?}").contains(wrong));
    let short = connector(&sim, "short").send(&original(&first)).await;
    assert!(short.outcome.reason().unwrap().contains("should be 32 characters"), "{short:?}");
    assert!(sim.view().pagerduty_incidents("pd").is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn pagerduty_throttling_and_server_errors() {
    let sim = start(FaultPlan::healthy().rate_limit(1, Duration::from_secs(60))).await;
    let pd = connector(&sim, PAGERDUTY_ROUTING_KEY);
    let first = message("P1", Severity::Critical);
    assert_eq!(pd.send(&original(&first)).await.outcome.class(), "delivered");
    let throttled = pd.send(&original(&first)).await;
    assert_eq!(throttled.status, Some(429));
    assert!(
        matches!(throttled.outcome, Outcome::Throttled { after: Some(after), .. } if after == Duration::from_secs(30)),
        "{throttled:?}"
    );
    // PagerDuty documents a bare 429: nothing of the answer's body is quoted.
    assert_eq!(throttled.detail, None, "{throttled:?}");
    sim.shutdown().await;

    let sim = start(FaultPlan::healthy().fail_first(1, 500)).await;
    let pd = connector(&sim, PAGERDUTY_ROUTING_KEY);
    let failed = pd.send(&original(&first)).await;
    assert_eq!((failed.outcome.class(), failed.status), ("retry", Some(500)), "{failed:?}");
    let again = pd.send(&Request { attempt: 2, ..original(&first) }).await;
    assert_eq!(remote_ref(&again), Some(DEDUP_KEY), "{again:?}");
    assert_eq!(sim.view().pagerduty_incidents("pd").len(), 1);
    sim.shutdown().await;

    // Nothing listening: nothing was sent, so a plain retry.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let options = ClientOptions { timeout: Some(TIMEOUT), ..crate::options() };
    let config = PagerDutyConfig {
        routing_key: PAGERDUTY_ROUTING_KEY.to_owned(),
        base_url: format!("http://{addr}"),
    };
    let pd = PagerDuty::new(config, client_with(&options).unwrap()).unwrap();
    assert_eq!(pd.send(&original(&first)).await.outcome.class(), "retry");
}
