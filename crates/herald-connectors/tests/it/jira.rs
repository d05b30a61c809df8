//! The Jira connector against the simulator's Jira dialect on loopback: the
//! classification table, reconciliation through the lagging search, permanent errors in
//! Jira's words, and follow-ups as comments plus the final transition without duplicates.

use std::time::Duration;

use herald_connectors::http::{ClientOptions, client_with};
use herald_connectors::jira::{Jira, JiraConfig};
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Message, Outcome, Severity, Timestamp};
use herald_simulator::{FaultPlan, JIRA_EMAIL, JIRA_PROJECT, JIRA_TOKEN, Simulator};

use crate::webhook::wall_clock;

/// The client's timeout, standing in for the engine's per-attempt timeout.
const TIMEOUT: Duration = Duration::from_millis(500);

const ORIGINAL: &str = "d_01JD0000000000000000000001";

async fn start(plan: FaultPlan) -> Simulator {
    Simulator::start(vec![("j".to_owned(), plan)]).await.unwrap()
}

fn config(sim: &Simulator) -> JiraConfig {
    JiraConfig {
        url: sim.jira_url("j"),
        email: JIRA_EMAIL.to_owned(),
        token: JIRA_TOKEN.to_owned(),
        project: JIRA_PROJECT.to_owned(),
        issue_type: "Incident".to_owned(),
        transition_on_resolve: Some("done".to_owned()),
        lookup_grace: Duration::from_secs(60),
    }
}

fn connector(config: JiraConfig) -> Jira {
    let options = ClientOptions { timeout: Some(TIMEOUT), ..crate::options() };
    Jira::new(config, client_with(&options).unwrap()).unwrap()
}

fn message(severity: Severity, body: &str) -> Message {
    Message {
        title: "P1: checkout is down".to_owned(),
        body: body.to_owned(),
        severity,
        ..Message::default()
    }
}

fn original(message: &Message) -> Request<'_> {
    let now = wall_clock();
    Request {
        delivery_id: ORIGINAL,
        broadcast_id: "b_01JD0000000000000000000000",
        destination: "ops-jira",
        message,
        thread: Thread::Original,
        attempt: 1,
        ambiguous: false,
        now,
        created_at: now,
        ambiguous_at: None,
    }
}

fn update<'a>(
    message: &'a Message,
    first: &'a Message,
    delivery_id: &'a str,
    seq: u32,
    key: &'a str,
) -> Request<'a> {
    Request {
        delivery_id,
        thread: Thread::Update {
            seq,
            in_reply_to: ORIGINAL,
            original_remote_ref: Some(key),
            original: first,
            original_at: wall_clock(),
        },
        ..original(message)
    }
}

/// The request of a retry after an ambiguous attempt that ended `ago`.
fn retry_after_ambiguous(request: Request<'_>, attempt: u32, ago: Duration) -> Request<'_> {
    let now = wall_clock();
    let at = Timestamp::from_millis(now.as_millis() - i64::try_from(ago.as_millis()).unwrap());
    Request { attempt, ambiguous: true, now, ambiguous_at: Some(at), ..request }
}

fn remote_ref(report: &Report) -> Option<&str> {
    match &report.outcome {
        Outcome::Delivered { remote_ref, .. } => remote_ref.as_deref(),
        _ => None,
    }
}

/// One row per line of DESTINATIONS.md §4's classification, answered by the simulator.
#[tokio::test]
async fn jira_classification_table() {
    struct Row {
        plan: FaultPlan,
        token: &'static str,
        class: &'static str,
        after: Option<Duration>,
        says: &'static str,
    }
    let row =
        |plan: FaultPlan, class, after, says| Row { plan, token: JIRA_TOKEN, class, after, says };
    let secs = |n| Some(Duration::from_secs(n));
    let rows = [
        row(FaultPlan::healthy(), "delivered", None, ""),
        row(FaultPlan::healthy().status_always(400), "permanent", None, "The request was rejected"),
        Row {
            token: "wrong",
            ..row(
                FaultPlan::healthy(),
                "permanent",
                None,
                "Client must be authenticated to access this resource.",
            )
        },
        row(
            FaultPlan::healthy().status_always(403),
            "permanent",
            None,
            "You do not have permission to create issues",
        ),
        row(FaultPlan::healthy().status_always(404), "permanent", None, "Issue does not exist"),
        row(
            FaultPlan::healthy().status_always(410),
            "permanent",
            None,
            "The requested API has been removed",
        ),
        row(
            FaultPlan::healthy().rate_limit(0, Duration::from_secs(7)),
            "throttled",
            secs(7),
            "RateLimit-Reason=jira-burst-based",
        ),
        row(FaultPlan::healthy().status_always(503), "retry", secs(1), "Service Unavailable"),
        row(FaultPlan::healthy().status_always(500), "retry", None, "Injected failure (HTTP 500)"),
        row(
            FaultPlan::healthy().dedupe(false).hang_first(1),
            "unknown",
            None,
            "no answer from the destination in time",
        ),
    ];
    for r in rows {
        let sim = start(r.plan).await;
        let jira = connector(JiraConfig { token: r.token.to_owned(), ..config(&sim) });
        let message = message(Severity::Critical, "body");
        let report = jira.send(&original(&message)).await;
        let outcome = &report.outcome;
        assert_eq!(outcome.class(), r.class, "{}: {report:?}", r.says);
        let after = match outcome {
            Outcome::Retry { after, .. } | Outcome::Throttled { after, .. } => *after,
            _ => None,
        };
        assert_eq!(after, r.after, "{report:?}");
        if r.class == "delivered" {
            assert_eq!(remote_ref(&report), Some("OPS-1"));
        } else {
            assert!(outcome.reason().unwrap_or_default().contains(r.says), "{report:?}");
        }
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn jira_permanent_errors_name_jiras_own_message() {
    let sim = start(FaultPlan::healthy().dedupe(false)).await;
    let message = message(Severity::Critical, "body");
    let bad_token = connector(JiraConfig { token: "expired".to_owned(), ..config(&sim) });
    let report = bad_token.send(&original(&message)).await;
    let reason = report.outcome.reason().unwrap_or_default();
    assert_eq!((report.outcome.class(), report.status), ("permanent", Some(401)));
    assert!(
        reason.contains("Client must be authenticated") && reason.contains("`token`"),
        "{reason}"
    );
    assert!(!format!("{report:?}").contains("expired"), "the token leaked: {report:?}");

    let unknown = connector(JiraConfig { project: "NOPE".to_owned(), ..config(&sim) });
    let report = unknown.send(&original(&message)).await;
    assert_eq!((report.outcome.class(), report.status), ("permanent", Some(400)));
    let reason = report.outcome.reason().unwrap_or_default();
    assert!(reason.contains("project: Specify a valid project ID or key"), "{reason}");
    assert!(sim.view().jira_issues("j").is_empty());
}

/// Store, then time out; the search lags behind, so the retry within the grace waits
/// (no attempt burned, nothing created), and once the search catches up the delivery
/// ends with the right key and exactly one issue.
#[tokio::test]
async fn jira_reconciles_a_lost_create_through_the_lagging_search() {
    let lag = Duration::from_millis(1500);
    let sim = start(FaultPlan::healthy().dedupe(false).hang_first(1).search_lag(lag)).await;
    let jira = connector(config(&sim));
    let message = message(Severity::Critical, "body");
    let first = jira.send(&original(&message)).await;
    assert_eq!(first.outcome.class(), "unknown", "{first:?}");
    assert_eq!(sim.view().jira_issues("j").len(), 1, "stored before the timeout");

    let within = jira.send(&retry_after_ambiguous(original(&message), 2, Duration::ZERO)).await;
    match &within.outcome {
        Outcome::Reconciling { after, .. } => {
            assert!(*after <= Duration::from_secs(5), "{after:?}")
        }
        other => panic!("expected reconciling, got {other:?}"),
    }
    let near_end = jira
        .send(&retry_after_ambiguous(original(&message), 2, Duration::from_millis(58_500)))
        .await;
    match &near_end.outcome {
        Outcome::Reconciling { after, .. } => {
            assert!(*after <= Duration::from_millis(1500), "beyond the grace: {after:?}");
        }
        other => panic!("expected reconciling, got {other:?}"),
    }
    assert_eq!(sim.view().jira_issues("j").len(), 1, "never a resend within the grace");

    // The search catches up.
    tokio::time::sleep(lag).await;
    let found = jira.send(&retry_after_ambiguous(original(&message), 2, lag)).await;
    assert_eq!(remote_ref(&found), Some("OPS-1"), "{found:?}");
    assert_eq!(sim.view().jira_issues("j").len(), 1);
    assert_eq!(sim.view().copies_of("j", ORIGINAL), 1);
    assert_eq!(sim.view().jira_searches("j"), 3);
}

#[tokio::test]
async fn jira_creates_once_the_grace_has_passed_without_a_hit() {
    let sim = start(FaultPlan::healthy().dedupe(false)).await;
    let jira = connector(config(&sim));
    let message = message(Severity::Critical, "body");
    let report =
        jira.send(&retry_after_ambiguous(original(&message), 2, Duration::from_secs(61))).await;
    assert_eq!(remote_ref(&report), Some("OPS-1"), "{report:?}");
    assert_eq!(sim.view().jira_searches("j"), 1);
    assert_eq!(sim.view().jira_issues("j").len(), 1);
}

/// Opened (after a lost answer), updated twice, resolved: one issue, three comments in
/// order, the final transition; a comment whose answer was lost, and a transition that
/// failed after its comment, are not posted twice.
#[tokio::test]
async fn jira_thread_is_one_issue_three_comments_and_the_transition() {
    let sim = start(FaultPlan::healthy().dedupe(false).hang_first(1)).await;
    let jira = connector(config(&sim));
    let first = message(Severity::Critical, "Payments **fail**.");
    let lost = jira.send(&original(&first)).await;
    assert_eq!(lost.outcome.class(), "unknown");
    let found = jira.send(&retry_after_ambiguous(original(&first), 2, Duration::ZERO)).await;
    let key = remote_ref(&found).unwrap().to_owned();
    assert_eq!(key, "OPS-1");

    // Update 1: the comment is stored, its answer lost; the retry finds it.
    let one = message(Severity::Error, "Still failing.");
    let lost = jira.send(&update(&one, &first, "d_u1", 1, &key)).await;
    assert_eq!(lost.outcome.class(), "unknown", "{lost:?}");
    let again = jira
        .send(&retry_after_ambiguous(update(&one, &first, "d_u1", 1, &key), 2, Duration::ZERO))
        .await;
    assert!(remote_ref(&again).is_some_and(|r| r.starts_with("OPS-1/comment/")), "{again:?}");

    // Update 2: hangs once too (its first attempt), then plain.
    let two = message(Severity::Warning, "Recovering.");
    assert_eq!(jira.send(&update(&two, &first, "d_u2", 2, &key)).await.outcome.class(), "unknown");
    let two_done = jira
        .send(&retry_after_ambiguous(update(&two, &first, "d_u2", 2, &key), 2, Duration::ZERO))
        .await;
    assert_eq!(two_done.outcome.class(), "delivered", "{two_done:?}");

    // Update 3 resolves: its comment lands on the second attempt (the first hangs), the
    // transition fails once, and the retry neither re-posts the comment nor fails.
    let three = message(Severity::Resolved, "Fixed.");
    assert_eq!(
        jira.send(&update(&three, &first, "d_u3", 3, &key)).await.outcome.class(),
        "unknown"
    );
    sim.fail_jira_transitions("j", 1, 503);
    let failed = jira
        .send(&retry_after_ambiguous(update(&three, &first, "d_u3", 3, &key), 2, Duration::ZERO))
        .await;
    assert_eq!(failed.outcome.class(), "retry", "{failed:?}");
    assert!(failed.outcome.reason().unwrap_or_default().contains("is posted"), "{failed:?}");
    let retried = Request { attempt: 3, ..update(&three, &first, "d_u3", 3, &key) };
    let done = jira.send(&retried).await;
    assert_eq!(done.outcome.class(), "delivered", "{done:?}");
    // Once more, as after a lost answer: already done, nothing repeated.
    let after_done = jira
        .send(&retry_after_ambiguous(update(&three, &first, "d_u3", 3, &key), 4, Duration::ZERO))
        .await;
    assert_eq!(after_done.outcome.class(), "delivered", "{after_done:?}");

    let issues = sim.view().jira_issues("j");
    assert_eq!(issues.len(), 1);
    let texts: Vec<&str> = issues[0].comments.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    for (text, marker) in texts.iter().zip(["herald-d_u1", "herald-d_u2", "herald-d_u3"]) {
        assert!(text.contains(marker), "{text}");
    }
    assert!(texts[2].starts_with("Resolved (update 3)"), "{}", texts[2]);
    assert_eq!(issues[0].status, "Done");
    assert_eq!(issues[0].transitions, ["Done"]);
}

#[tokio::test]
async fn jira_unknown_transition_is_permanent_naming_the_available_ones() {
    let sim = start(FaultPlan::healthy().dedupe(false)).await;
    let jira = connector(JiraConfig {
        transition_on_resolve: Some("Close Issue".to_owned()),
        ..config(&sim)
    });
    let first = message(Severity::Critical, "");
    let created = jira.send(&original(&first)).await;
    let key = remote_ref(&created).unwrap().to_owned();
    let resolved = message(Severity::Resolved, "");
    let report = jira.send(&update(&resolved, &first, "d_u1", 1, &key)).await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    let reason = report.outcome.reason().unwrap_or_default();
    assert!(
        reason.contains("\"Close Issue\"") && reason.contains("Start Progress, Done"),
        "{reason}"
    );
    assert_eq!(sim.view().jira_issues("j")[0].comments.len(), 1);
}

/// The comment lands, then the transition is throttled (429) or fails during a circuit
/// breaker's probe: neither uses up an attempt, so the next call comes with the same
/// attempt number and is not ambiguous. It must still find the comment, not post it again.
#[tokio::test]
async fn jira_a_throttled_transition_does_not_post_the_comment_twice() {
    for status in [429, 503] {
        let sim = start(FaultPlan::healthy().dedupe(false)).await;
        let jira = connector(config(&sim));
        let first = message(Severity::Critical, "Payments fail.");
        let created = jira.send(&original(&first)).await;
        let key = remote_ref(&created).unwrap().to_owned();
        let resolved = message(Severity::Resolved, "Fixed.");
        sim.fail_jira_transitions("j", 1, status);
        let stopped = jira.send(&update(&resolved, &first, "d_u1", 1, &key)).await;
        assert_ne!(stopped.outcome.class(), "delivered", "{status}: {stopped:?}");
        // Same attempt number, not ambiguous: what the engine sends after a throttle.
        let again = jira.send(&update(&resolved, &first, "d_u1", 1, &key)).await;
        assert_eq!(again.outcome.class(), "delivered", "{status}: {again:?}");
        let issues = sim.view().jira_issues("j");
        assert_eq!(issues[0].comments.len(), 1, "{status}: the comment is posted once");
        assert_eq!(issues[0].status, "Done");
    }
}

/// A look-up answered 2xx without the list it asked for (an empty body, another shape)
/// proves nothing: the ambiguous create or comment is not sent again on its word. A fake
/// written from Jira's docs, not the simulator.
#[tokio::test]
async fn jira_a_look_up_answer_without_its_list_does_not_post() {
    use crate::receiver::{Scripted, TestReceiver};

    let json = |body: &str| {
        Scripted::status(200).header("content-type", "application/json").body(body.to_owned())
    };
    let first = message(Severity::Critical, "Payments fail.");
    for answer in
        [Scripted::status(200), Scripted::status(204), json("{}"), json(r#"{"values":[]}"#)]
    {
        let config = |receiver: &TestReceiver| JiraConfig {
            url: receiver.url(""),
            email: "herald@example.com".to_owned(),
            token: "t".to_owned(),
            project: "OPS".to_owned(),
            issue_type: "Incident".to_owned(),
            transition_on_resolve: None,
            lookup_grace: Duration::from_secs(60),
        };
        // The create, long after the grace.
        let mut receiver = TestReceiver::start(vec![answer.clone()]).await;
        let jira = connector(config(&receiver));
        let retry = retry_after_ambiguous(original(&first), 2, Duration::from_secs(600));
        let report = jira.send(&retry).await;
        assert_eq!(report.outcome.class(), "unknown", "{answer:?}: {report:?}");
        assert_eq!(receiver.next().await.path, "/rest/api/3/search/jql");
        assert!(receiver.got_nothing_more(), "{answer:?}: nothing created");

        // A comment, retried.
        let mut receiver = TestReceiver::start(vec![answer.clone()]).await;
        let jira = connector(config(&receiver));
        let one = message(Severity::Error, "Still failing.");
        let retried = Request { attempt: 2, ..update(&one, &first, "d_u1", 1, "OPS-1") };
        let report = jira.send(&retried).await;
        assert_eq!(report.outcome.class(), "unknown", "{answer:?}: {report:?}");
        assert_eq!(receiver.next().await.path, "/rest/api/3/issue/OPS-1/comment");
        assert!(receiver.got_nothing_more(), "{answer:?}: no comment posted");
    }
}

#[test]
fn jira_refs_link_to_the_issue_and_to_the_comment() {
    let jira = connector(JiraConfig {
        url: "http://127.0.0.1:9/".to_owned(),
        email: JIRA_EMAIL.to_owned(),
        token: JIRA_TOKEN.to_owned(),
        project: JIRA_PROJECT.to_owned(),
        issue_type: "Incident".to_owned(),
        transition_on_resolve: None,
        lookup_grace: Duration::from_secs(60),
    });
    assert_eq!(jira.remote_link("OPS-12").as_deref(), Some("http://127.0.0.1:9/browse/OPS-12"));
    assert_eq!(
        jira.remote_link("OPS-12/comment/10042").as_deref(),
        Some("http://127.0.0.1:9/browse/OPS-12?focusedCommentId=10042")
    );
    // Anything but a key (and a numeric comment id) from the API gets no link.
    for odd in
        ["", "OPS", "OPS-", "-12", "OPS-12x", "OPS-12/comment/", "OPS-12/comment/1?x=y", "../x-1"]
    {
        assert_eq!(jira.remote_link(odd), None, "{odd:?}");
    }
}
