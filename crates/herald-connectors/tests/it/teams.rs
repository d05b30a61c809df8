//! `teams-workflow` and `teams-graph` against the simulator's Teams dialects on loopback:
//! one row per line of DESTINATIONS.md §3a/§3c, reconciliation after a stored-then-hung
//! post, token refresh and caching, permanent errors with the destination's own code,
//! follow-ups as replies.

use std::time::Duration;

use herald_connectors::http::{self, ClientOptions};
use herald_connectors::teams_graph::{DEFAULT_SCOPE, TeamsGraph, TeamsGraphConfig};
use herald_connectors::teams_workflow::{TeamsWorkflow, TeamsWorkflowConfig};
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Message, Outcome, Severity, Timestamp};
use herald_simulator::{
    FaultPlan, GRAPH_CHANNEL_ID, GRAPH_REFRESH_TOKEN, GRAPH_TEAM_ID, SimView, Simulator,
};

use crate::webhook::wall_clock;

/// The client timeout standing in for the engine's per-attempt timeout.
const TIMEOUT: Duration = Duration::from_millis(500);

fn client() -> http::Client {
    http::client_with(&ClientOptions { timeout: Some(TIMEOUT), ..crate::options() }).unwrap()
}

async fn start(endpoints: Vec<(&str, FaultPlan)>) -> Simulator {
    let endpoints = endpoints.into_iter().map(|(n, p)| (n.to_owned(), p)).collect();
    Simulator::start(endpoints).await.unwrap()
}

fn message(title: &str) -> Message {
    Message {
        title: title.to_owned(),
        body: "Checkout fails for **all** users 🚨".to_owned(),
        severity: Severity::Critical,
        ..Message::default()
    }
}

fn request<'a>(message: &'a Message, delivery_id: &'a str, thread: Thread<'a>) -> Request<'a> {
    let now = wall_clock();
    Request {
        delivery_id,
        broadcast_id: "b_1",
        destination: "ops-teams",
        message,
        thread,
        attempt: 1,
        ambiguous: false,
        now,
        created_at: now,
        ambiguous_at: None,
    }
}

fn workflow(view: &SimView, name: &str) -> TeamsWorkflow {
    let url = format!("{}?api-version=1&sig=sim-signature-0001", view.teams_workflow_url(name));
    TeamsWorkflow::new(TeamsWorkflowConfig { url }, client()).unwrap()
}

fn graph_config(view: &SimView, name: &str) -> TeamsGraphConfig {
    TeamsGraphConfig {
        tenant: "contoso.onmicrosoft.com".to_owned(),
        client_id: "herald-app".to_owned(),
        client_secret: None,
        refresh_token: GRAPH_REFRESH_TOKEN.to_owned(),
        team_id: GRAPH_TEAM_ID.to_owned(),
        channel_id: GRAPH_CHANNEL_ID.to_owned(),
        base_url: view.graph_base_url(name),
        login_url: view.graph_login_url(name),
        scope: DEFAULT_SCOPE.to_owned(),
    }
}

fn graph(view: &SimView, name: &str) -> TeamsGraph {
    TeamsGraph::new(graph_config(view, name), client()).unwrap()
}

fn reason(report: &Report) -> &str {
    report.outcome.reason().unwrap_or("")
}

/// §3a, one row per line: 202 → delivered-unconfirmed; 400/401/403/404 and > 28 KB →
/// permanent with Power Automate's code; 429 → throttled; 5xx → retry; timeout → unknown.
#[tokio::test]
async fn teams_workflow_classifies_every_answer_of_its_table() {
    let rows: Vec<(&str, FaultPlan, &str, &str)> = vec![
        ("accepted", FaultPlan::healthy().dedupe(false), "delivered", ""),
        ("s400", FaultPlan::healthy().status_always(400), "permanent", "InvalidRequestContent"),
        (
            "s401",
            FaultPlan::healthy().status_always(401),
            "permanent",
            "DirectApiAuthorizationRequired",
        ),
        ("s403", FaultPlan::healthy().status_always(403), "permanent", "AuthorizationFailed"),
        ("s404", FaultPlan::healthy().status_always(404), "permanent", "WorkflowNotFound"),
        ("s413", FaultPlan::healthy().status_always(413), "permanent", "RequestEntityTooLarge"),
        ("s429", FaultPlan::healthy().status_always(429), "throttled", "WorkflowRequestsThrottled"),
        ("s500", FaultPlan::healthy().status_always(500), "retry", "ServiceUnavailable"),
        ("s503", FaultPlan::healthy().status_always(503), "retry", "ServiceUnavailable"),
        ("hang", FaultPlan::healthy().dedupe(false).hang_first(1), "unknown", "no answer"),
    ];
    let sim = start(rows.iter().map(|(n, p, _, _)| (*n, p.clone())).collect()).await;
    let view = sim.view();
    let msg = message("P1: checkout is down");
    for (name, _, class, code) in &rows {
        let report = workflow(&view, name).send(&request(&msg, "d_1", Thread::Original)).await;
        assert_eq!(report.outcome.class(), *class, "{name}: {report:?}");
        assert!(reason(&report).starts_with(code), "{name}: {report:?}");
        assert!(!format!("{report:?}").contains("sim-signature-0001"), "{name} leaks the sig");
    }
    let report = workflow(&view, "accepted").send(&request(&msg, "d_1", Thread::Original)).await;
    assert_eq!(report.outcome, Outcome::Delivered { remote_ref: None, unconfirmed: true });
    assert_eq!(report.status, Some(202));
    let throttled = workflow(&view, "s429").send(&request(&msg, "d_1", Thread::Original)).await;
    assert!(
        matches!(throttled.outcome, Outcome::Throttled { after: Some(d), .. } if d == Duration::from_secs(1))
    );
    // A card too large for Power Automate is cut before it is sent, so it arrives.
    let huge = Message { body: "x".repeat(100_000), ..message("big") };
    let report = workflow(&view, "accepted").send(&request(&huge, "d_2", Thread::Original)).await;
    assert_eq!(report.status, Some(202), "{report:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn teams_workflow_follow_ups_are_new_cards_quoting_the_original() {
    let sim = start(vec![("flow", FaultPlan::healthy().dedupe(false))]).await;
    let view = sim.view();
    let connector = workflow(&view, "flow");
    let original = message("P1: checkout is down");
    let report = connector.send(&request(&original, "d_1", Thread::Original)).await;
    assert_eq!(report.outcome, Outcome::Delivered { remote_ref: None, unconfirmed: true });
    let update = message("P1: rolled back");
    let thread = Thread::Update {
        seq: 1,
        in_reply_to: "d_1",
        original_remote_ref: None,
        original: &original,
        original_at: Timestamp::from_millis(1_798_761_660_000),
    };
    let report = connector.send(&request(&update, "d_2", thread)).await;
    assert_eq!(report.outcome.class(), "delivered");
    let cards = view.teams_workflow_cards("flow");
    assert_eq!(cards.len(), 2);
    let quote = &cards[1]["attachments"][0]["content"]["body"][0]["items"][0]["text"];
    assert_eq!(
        quote.as_str(),
        Some("Update 1 to “P1: checkout is down” (first posted 2027-01-01 00:01 UTC)")
    );
    assert_eq!((view.copies_of("flow", "d_1"), view.copies_of("flow", "d_2")), (1, 1));
    sim.shutdown().await;
}

/// §3c, one row per line: 201 → delivered with the message id; 400/403/404/413 →
/// permanent with Graph's code; 429 → throttled with `Retry-After`; 503/504 → retry;
/// timeout → unknown.
#[tokio::test]
async fn teams_graph_classifies_every_answer_of_its_table() {
    let rows: Vec<(&str, FaultPlan, &str, &str)> = vec![
        ("created", FaultPlan::healthy().dedupe(false), "delivered", ""),
        ("s400", FaultPlan::healthy().status_always(400), "permanent", "BadRequest"),
        ("s403", FaultPlan::healthy().status_always(403), "permanent", "Forbidden"),
        ("s404", FaultPlan::healthy().status_always(404), "permanent", "NotFound"),
        ("s413", FaultPlan::healthy().status_always(413), "permanent", "RequestEntityTooLarge"),
        ("s429", FaultPlan::healthy().status_always(429), "throttled", "TooManyRequests"),
        ("s503", FaultPlan::healthy().status_always(503), "retry", "ServiceNotAvailable"),
        ("s504", FaultPlan::healthy().status_always(504), "retry", "GatewayTimeout"),
        ("hang", FaultPlan::healthy().dedupe(false).hang_first(1), "unknown", "no answer"),
    ];
    let sim = start(rows.iter().map(|(n, p, _, _)| (*n, p.clone())).collect()).await;
    let view = sim.view();
    let msg = message("P1: checkout is down");
    for (name, _, class, code) in &rows {
        let report = graph(&view, name).send(&request(&msg, "d_1", Thread::Original)).await;
        assert_eq!(report.outcome.class(), *class, "{name}: {report:?}");
        assert!(reason(&report).starts_with(code), "{name}: {report:?}");
    }
    let report = graph(&view, "created").send(&request(&msg, "d_2", Thread::Original)).await;
    let posted = view.graph_messages("created");
    let id = posted.last().unwrap().id.clone();
    assert_eq!(report.outcome, Outcome::Delivered { remote_ref: Some(id), unconfirmed: false });
    assert_eq!(report.status, Some(201));
    sim.shutdown().await;
}

#[tokio::test]
async fn teams_graph_throttling_carries_retry_after() {
    let plan = FaultPlan::healthy().dedupe(false).rate_limit(1, Duration::from_secs(3));
    let sim = start(vec![("g", plan)]).await;
    let view = sim.view();
    let connector = graph(&view, "g");
    let msg = message("one");
    assert_eq!(connector.send(&request(&msg, "d_1", Thread::Original)).await.status, Some(201));
    let report = connector.send(&request(&msg, "d_2", Thread::Original)).await;
    assert!(
        matches!(report.outcome, Outcome::Throttled { after: Some(d), .. } if d == Duration::from_secs(3)),
        "{report:?}"
    );
    assert!(reason(&report).starts_with("TooManyRequests"));
    sim.shutdown().await;
}

/// Stored, then no answer: the next attempt (ambiguous) finds the marker and reports the
/// message's id, without posting a second copy.
#[tokio::test]
async fn teams_graph_reconciles_a_stored_then_hung_post_by_its_marker() {
    let sim = start(vec![
        ("g", FaultPlan::healthy().dedupe(false).hang_first(1)),
        ("h", FaultPlan::healthy().dedupe(false)),
    ])
    .await;
    let view = sim.view();
    let connector = graph(&view, "g");
    let msg = message("P1: checkout is down");
    // Another stored-then-hung message in the channel: the look-up must pick the right one.
    let other = connector.send(&request(&msg, "d_other", Thread::Original)).await;
    assert_eq!(other.outcome.class(), "unknown", "{other:?}");
    let first = connector.send(&request(&msg, "d_1", Thread::Original)).await;
    assert_eq!(first.outcome.class(), "unknown", "{first:?}");
    assert_eq!(view.copies_of("g", "d_1"), 1, "stored before hanging");

    let mut retry = request(&msg, "d_1", Thread::Original);
    retry.attempt = 2;
    retry.ambiguous = true;
    retry.ambiguous_at = Some(retry.now);
    let second = connector.send(&retry).await;
    let held = view.graph_messages("g");
    let id = held.iter().find(|m| m.key.as_deref() == Some("d_1")).unwrap().id.clone();
    assert_eq!(second.outcome, Outcome::Delivered { remote_ref: Some(id), unconfirmed: false });
    assert_eq!(view.copies_of("g", "d_1"), 1, "exactly one copy");
    assert_eq!(held.len(), 2);
    assert_eq!(view.stats("g").requests, 2, "the look-up is a GET, not another post");

    // Not found (the first post never arrived): the ambiguous attempt posts, once.
    let connector = graph(&view, "h");
    let mut fresh = request(&msg, "d_2", Thread::Original);
    fresh.ambiguous = true;
    let report = connector.send(&fresh).await;
    assert_eq!(report.status, Some(201), "{report:?}");
    assert_eq!(view.copies_of("h", "d_2"), 1);
    sim.shutdown().await;
}

/// Updates are replies in the original's thread; an ambiguous reply is found among the
/// replies.
#[tokio::test]
async fn teams_graph_updates_are_replies_in_one_thread() {
    let sim = start(vec![("g", FaultPlan::healthy().dedupe(false))]).await;
    let view = sim.view();
    let connector = graph(&view, "g");
    let original = message("P1: checkout is down");
    let report = connector.send(&request(&original, "d_0", Thread::Original)).await;
    let Outcome::Delivered { remote_ref: Some(root), .. } = report.outcome else {
        panic!("{report:?}")
    };
    let ids = ["d_1", "d_2", "d_3"];
    let messages: Vec<Message> =
        ["updated once", "updated twice", "resolved"].iter().map(|t| message(t)).collect();
    for (seq, (id, msg)) in (1..).zip(ids.iter().zip(&messages)) {
        let thread = Thread::Update {
            seq,
            in_reply_to: "d_0",
            original_remote_ref: Some(&root),
            original: &original,
            original_at: wall_clock(),
        };
        let mut req = request(msg, id, thread);
        // The last one as if its first attempt had been ambiguous: found, not reposted.
        req.ambiguous = seq == 3;
        let report = connector.send(&req).await;
        assert_eq!(report.outcome.class(), "delivered", "{report:?}");
        if seq == 3 {
            let again = connector.send(&req).await;
            assert_eq!(again.outcome, report.outcome, "the look-up finds the reply");
        }
    }
    let channel = view.graph_messages("g");
    assert_eq!(channel.len(), 1, "one thread");
    let replies: Vec<Option<&str>> = channel[0].replies.iter().map(|r| r.key.as_deref()).collect();
    assert_eq!(replies, [Some("d_1"), Some("d_2"), Some("d_3")]);
    assert!(channel[0].replies.iter().all(|r| r.reply_to_id.as_deref() == Some(root.as_str())));
    sim.shutdown().await;
}

/// The access token is fetched once and cached; a 401 refreshes it once; a token near
/// its expiry is refreshed before use; a rotated refresh token is kept.
#[tokio::test]
async fn teams_graph_caches_the_access_token_and_refreshes_once_on_401() {
    let sim = start(vec![("g", FaultPlan::healthy().dedupe(false))]).await;
    let view = sim.view();
    view.graph_rotate_refresh_tokens("g", true);
    let connector = graph(&view, "g");
    let msg = message("m");
    for id in ["d_1", "d_2", "d_3"] {
        assert_eq!(connector.send(&request(&msg, id, Thread::Original)).await.status, Some(201));
    }
    assert_eq!(view.graph_token_requests("g"), 1, "cached");

    view.graph_expire_tokens("g");
    let report = connector.send(&request(&msg, "d_4", Thread::Original)).await;
    assert_eq!(report.status, Some(201), "{report:?}");
    // Only the rotated refresh token works now: the connector kept it.
    assert_eq!(view.graph_token_requests("g"), 2, "refreshed once, with the new refresh token");
    assert_eq!(view.copies_of("g", "d_4"), 1);

    // Shortly before expiry the token is refreshed without waiting for a 401.
    let mut later = request(&msg, "d_5", Thread::Original);
    later.now = later.now.add(Duration::from_secs(3600));
    assert_eq!(connector.send(&later).await.status, Some(201));
    assert_eq!(view.graph_token_requests("g"), 3);
    sim.shutdown().await;
}

/// A 401 even with a fresh token is permanent, with Graph's code; nothing is posted.
#[tokio::test]
async fn teams_graph_a_401_with_a_fresh_token_is_permanent() {
    let sim = start(vec![("g", FaultPlan::healthy().dedupe(false))]).await;
    let view = sim.view();
    // Tokens that are dead on arrival.
    view.graph_set_token_lifetime("g", Duration::ZERO);
    let report = graph(&view, "g").send(&request(&message("m"), "d_1", Thread::Original)).await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    assert!(reason(&report).starts_with("InvalidAuthenticationToken"), "{report:?}");
    assert!(view.graph_token_requests("g") <= 2, "at most one refresh per attempt");
    assert!(view.graph_messages("g").is_empty());
    sim.shutdown().await;
}

/// Permanent errors name the destination's own code: a revoked refresh token
/// (`invalid_grant`) and an unknown channel (`NotFound`).
#[tokio::test]
async fn teams_graph_permanent_errors_carry_the_destinations_code() {
    let sim = start(vec![("g", FaultPlan::healthy().dedupe(false))]).await;
    let view = sim.view();
    let msg = message("m");
    let config =
        TeamsGraphConfig { refresh_token: "revoked-token".to_owned(), ..graph_config(&view, "g") };
    let report = TeamsGraph::new(config, client())
        .unwrap()
        .send(&request(&msg, "d_1", Thread::Original))
        .await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    assert!(reason(&report).starts_with("invalid_grant: AADSTS70000"), "{report:?}");
    assert!(!format!("{report:?}").contains("revoked-token"), "the refresh token never shows");

    let config = TeamsGraphConfig {
        channel_id: "19:gone@thread.tacv2".to_owned(),
        ..graph_config(&view, "g")
    };
    let report = TeamsGraph::new(config, client())
        .unwrap()
        .send(&request(&msg, "d_2", Thread::Original))
        .await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    assert!(reason(&report).starts_with("NotFound: HTTP 404"), "{report:?}");
    assert!(view.graph_messages("g").is_empty());
    assert!(!format!("{:?}", graph_config(&view, "g")).contains(GRAPH_REFRESH_TOKEN));
    sim.shutdown().await;
}

/// A look-up answer that proves nothing (200 with a body that is not a message list, a
/// next link leading away from `base_url`, more pages than one look-up reads) leaves the
/// delivery ambiguous: no second post. A fake written from Graph's docs, not the simulator.
#[tokio::test]
async fn teams_graph_a_look_up_that_proves_nothing_does_not_post() {
    use crate::receiver::{Scripted, TestReceiver};

    let json = |body: &str| {
        Scripted::status(200).header("content-type", "application/json").body(body.to_owned())
    };
    let token = json(r#"{"token_type":"Bearer","expires_in":3600,"access_token":"at-1"}"#);
    // One recent message (not ours) and a link to more: the search must go on.
    let recent = |next: &str| {
        json(&format!(
            r#"{{"value":[{{"id":"9","createdDateTime":"2999-01-01T00:00:00Z","lastModifiedDateTime":"2999-01-01T00:00:00Z","body":{{"content":"other"}}}}],"@odata.nextLink":"{next}"}}"#
        ))
    };
    let msg = message("P1: checkout is down");
    for case in ["not JSON", "a link elsewhere", "too many pages"] {
        let page = match case {
            "not JSON" => Scripted::status(200).body("<html>a proxy's page</html>"),
            "a link elsewhere" => recent("https://elsewhere.example/v1.0/next"),
            _ => recent("{base}/v1.0/teams/t/channels/c/messages?$skiptoken=x"),
        };
        let mut receiver = TestReceiver::start(vec![token.clone(), page]).await;
        let base = receiver.url("/v1.0");
        let config = TeamsGraphConfig {
            tenant: "contoso.onmicrosoft.com".to_owned(),
            client_id: "herald-app".to_owned(),
            client_secret: None,
            refresh_token: "rt".to_owned(),
            team_id: "t".to_owned(),
            channel_id: "c".to_owned(),
            base_url: base.clone(),
            login_url: receiver.url(""),
            scope: DEFAULT_SCOPE.to_owned(),
        };
        let connector = TeamsGraph::new(config, client()).unwrap();
        let mut retry = request(&msg, "d_1", Thread::Original);
        retry.attempt = 2;
        retry.ambiguous = true;
        let report = connector.send(&retry).await;
        assert_eq!(report.outcome.class(), "unknown", "{case}: {report:?}");
        assert!(reason(&report).contains("posts nothing yet"), "{case}: {report:?}");
        let token_request = receiver.next().await;
        assert!(token_request.path.contains("/oauth2/"), "{case}");
        let mut reads = 0;
        while let Some(got) = receiver.try_next() {
            assert!(got.body.is_empty(), "{case}: only GETs after the token, got a post");
            reads += 1;
        }
        assert!(reads >= 1, "{case}: the look-up read the channel");
    }
}
