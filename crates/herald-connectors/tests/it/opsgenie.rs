//! The Opsgenie connector against the simulator's Alert API dialect on loopback: create
//! confirmed through the request status (or accepted unconfirmed), one alert across
//! resends, notes and close without repeats, permanent errors in Opsgenie's words, and
//! throttling with its rate-limit headers.

use std::time::Duration;

use herald_connectors::http::{ClientOptions, client_with};
use herald_connectors::opsgenie::{Opsgenie, OpsgenieConfig};
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Message, Outcome, Severity};
use herald_simulator::{FaultPlan, OPSGENIE_API_KEY, Simulator};

use crate::webhook::wall_clock;

/// The client's timeout, standing in for the engine's per-attempt timeout.
const TIMEOUT: Duration = Duration::from_millis(500);

const BROADCAST: &str = "b_01JD0000000000000000000000";
const ORIGINAL: &str = "d_01JD0000000000000000000001";
const ALIAS: &str = "herald-b_01JD0000000000000000000000";

async fn start(plan: FaultPlan) -> Simulator {
    Simulator::start(vec![("og".to_owned(), plan)]).await.unwrap()
}

fn connector(sim: &Simulator, key: &str) -> Opsgenie {
    let options = ClientOptions { timeout: Some(TIMEOUT), ..crate::options() };
    let config = OpsgenieConfig { api_key: key.to_owned(), base_url: sim.opsgenie_url("og") };
    Opsgenie::new(config, client_with(&options).unwrap()).unwrap()
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
        destination: "genie",
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
            original_remote_ref: Some(ALIAS),
            original: first,
            original_at: wall_clock(),
        },
        ..original(message)
    }
}

/// The remote ref and whether the delivery is unconfirmed, if delivered.
fn delivered(report: &Report) -> Option<(&str, bool)> {
    match &report.outcome {
        Outcome::Delivered { remote_ref, unconfirmed } => {
            Some((remote_ref.as_deref()?, *unconfirmed))
        }
        _ => None,
    }
}

#[tokio::test]
async fn opsgenie_creates_an_alert_confirmed_by_its_request_status() {
    let sim = start(FaultPlan::healthy()).await;
    let first = message("P1: checkout is down", Severity::Critical);
    let report = connector(&sim, OPSGENIE_API_KEY).send(&original(&first)).await;
    assert_eq!(delivered(&report), Some((ALIAS, false)), "{report:?}");
    assert!(report.detail.as_deref().unwrap().contains("Created alert"), "{report:?}");
    let alerts = sim.view().opsgenie_alerts("og");
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(
        (alert.message.as_str(), alert.priority.as_str(), alert.status.as_str(), alert.count),
        ("P1: checkout is down", "P1", "open", 1)
    );
    assert_eq!(alert.description, "Payments **fail**.");
    assert_eq!(alert.details["service"], "checkout");
    assert_eq!(alert.tags, ["herald"]);
    let requests = sim.view().opsgenie_requests("og");
    assert_eq!(requests.len(), 1);
    assert!(requests[0].success && requests[0].polls >= 1, "{requests:?}");
    sim.shutdown().await;
}

/// Opsgenie took the request but has not processed it by the last poll: delivered,
/// marked unconfirmed.
#[tokio::test]
async fn opsgenie_unprocessed_request_is_delivered_unconfirmed() {
    let sim = start(FaultPlan::healthy()).await;
    sim.opsgenie_processing_lag("og", 10);
    let first = message("P1", Severity::Critical);
    let report = connector(&sim, OPSGENIE_API_KEY).send(&original(&first)).await;
    assert_eq!(delivered(&report), Some((ALIAS, true)), "{report:?}");
    let requests = sim.view().opsgenie_requests("og");
    assert_eq!(requests[0].polls, 3, "{requests:?}");
    sim.shutdown().await;
}

/// Stored, then no answer: the ambiguous retry finds the alert by its alias and sends
/// nothing. Stored, then a 500: the plain retry creates again, and the alias keeps one
/// alert (its count goes up).
#[tokio::test]
async fn opsgenie_resends_keep_one_alert() {
    let sim = start(FaultPlan::healthy().hang_first(1)).await;
    let og = connector(&sim, OPSGENIE_API_KEY);
    let first = message("P1", Severity::Critical);
    let lost = og.send(&original(&first)).await;
    assert_eq!(lost.outcome.class(), "unknown", "{lost:?}");
    let again = og.send(&Request { attempt: 2, ambiguous: true, ..original(&first) }).await;
    assert_eq!(delivered(&again), Some((ALIAS, false)), "{again:?}");
    assert!(again.detail.as_deref().unwrap().contains("found by its alias"), "{again:?}");
    let alerts = sim.view().opsgenie_alerts("og");
    assert_eq!((alerts.len(), alerts[0].count), (1, 1), "{alerts:?}");
    assert_eq!(sim.view().requests("og"), 1, "the retry wrote nothing");
    sim.shutdown().await;

    let sim = start(FaultPlan::healthy().store_then_fail(1, 500)).await;
    let og = connector(&sim, OPSGENIE_API_KEY);
    let failed = og.send(&original(&first)).await;
    assert_eq!((failed.outcome.class(), failed.status), ("retry", Some(500)), "{failed:?}");
    let again = og.send(&Request { attempt: 2, ..original(&first) }).await;
    assert_eq!(delivered(&again), Some((ALIAS, false)), "{again:?}");
    let alerts = sim.view().opsgenie_alerts("og");
    assert_eq!((alerts.len(), alerts[0].count), (1, 2), "{alerts:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn opsgenie_follow_ups_are_notes_then_close_without_repeats() {
    let sim = start(FaultPlan::healthy()).await;
    let og = connector(&sim, OPSGENIE_API_KEY);
    let first = message("P1: checkout is down", Severity::Critical);
    assert!(delivered(&og.send(&original(&first)).await).is_some());

    let second = message("Rolling back", Severity::Warning);
    let note_id = "d_01JD0000000000000000000002";
    let report = og.send(&update(&second, &first, note_id, 1)).await;
    assert_eq!(delivered(&report), Some((ALIAS, false)), "{report:?}");
    // A retry of the same follow-up (its answer lost) finds the note by its marker.
    let again = og
        .send(&Request { attempt: 2, ambiguous: true, ..update(&second, &first, note_id, 1) })
        .await;
    assert_eq!(delivered(&again), Some((ALIAS, false)), "{again:?}");
    assert!(again.detail.as_deref().unwrap().contains("note found"), "{again:?}");
    let alerts = sim.view().opsgenie_alerts("og");
    assert_eq!(alerts[0].notes.len(), 1, "{alerts:?}");
    assert!(alerts[0].notes[0].starts_with("Rolling back\n\nPayments **fail**."));
    assert!(alerts[0].notes[0].ends_with("herald-d_01JD0000000000000000000002"));

    let done = message("Resolved: checkout is back", Severity::Resolved);
    let close_id = "d_01JD0000000000000000000003";
    let report = og.send(&update(&done, &first, close_id, 2)).await;
    assert_eq!(delivered(&report), Some((ALIAS, false)), "{report:?}");
    assert!(report.detail.as_deref().unwrap().contains("Closed alert"), "{report:?}");
    let again = og
        .send(&Request { attempt: 2, ambiguous: true, ..update(&done, &first, close_id, 2) })
        .await;
    assert!(again.detail.as_deref().unwrap().contains("already closed"), "{again:?}");
    let alerts = sim.view().opsgenie_alerts("og");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].status, "closed");
    assert_eq!(alerts[0].notes.len(), 2, "{alerts:?}");
    let actions: Vec<String> =
        sim.view().opsgenie_requests("og").into_iter().map(|r| r.action).collect();
    assert_eq!(actions, ["Create", "AddNote", "Close"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn opsgenie_permanent_errors_quote_opsgenie() {
    let sim = start(FaultPlan::healthy()).await;
    let first = message("P1", Severity::Critical);
    let report = connector(&sim, "wrong-key").send(&original(&first)).await;
    assert_eq!((report.outcome.class(), report.status), ("permanent", Some(401)), "{report:?}");
    assert!(report.outcome.reason().unwrap().contains("Could not authenticate"), "{report:?}");
    assert!(!format!("{report:?}").contains("wrong-key"));

    // Accepted, then failed in processing: a note on an alert that does not exist.
    let note = message("Rolling back", Severity::Warning);
    let report = connector(&sim, OPSGENIE_API_KEY).send(&update(&note, &first, "d_2", 1)).await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    assert!(report.outcome.reason().unwrap().contains("Alert does not exist"), "{report:?}");

    let empty = Message { title: " ".to_owned(), ..first.clone() };
    let report = connector(&sim, OPSGENIE_API_KEY).send(&original(&empty)).await;
    assert_eq!(
        delivered(&report).map(|(r, _)| r),
        Some(ALIAS),
        "an empty title is sent as \"(no title)\""
    );
    sim.shutdown().await;

    let sim = start(FaultPlan::healthy().status_always(422)).await;
    let report = connector(&sim, OPSGENIE_API_KEY).send(&original(&first)).await;
    assert_eq!((report.outcome.class(), report.status), ("permanent", Some(422)), "{report:?}");
    assert!(report.outcome.reason().unwrap().contains("Rejected (injected failure)"), "{report:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn opsgenie_throttling_reads_its_rate_limit_headers() {
    let sim = start(FaultPlan::healthy().rate_limit(1, Duration::from_secs(60))).await;
    let og = connector(&sim, OPSGENIE_API_KEY);
    let first = message("P1", Severity::Critical);
    assert!(delivered(&og.send(&original(&first)).await).is_some());
    let throttled = og.send(&Request { attempt: 2, ..original(&first) }).await;
    assert_eq!(throttled.status, Some(429), "{throttled:?}");
    assert!(
        matches!(throttled.outcome, Outcome::Throttled { after: Some(after), .. } if after == Duration::from_secs(60)),
        "{throttled:?}"
    );
    let detail = throttled.detail.as_deref().unwrap();
    assert!(
        detail.contains("X-RateLimit-State=THROTTLED")
            && detail.contains("X-RateLimit-Reason=ACCOUNT")
            && detail.contains("X-RateLimit-Period-In-Sec=60"),
        "{detail}"
    );
    sim.shutdown().await;

    let sim = start(FaultPlan::healthy().fail_first(1, 503)).await;
    let og = connector(&sim, OPSGENIE_API_KEY);
    let failed = og.send(&original(&first)).await;
    assert_eq!((failed.outcome.class(), failed.status), ("retry", Some(503)), "{failed:?}");
    assert!(delivered(&og.send(&Request { attempt: 2, ..original(&first) }).await).is_some());
    sim.shutdown().await;
}
