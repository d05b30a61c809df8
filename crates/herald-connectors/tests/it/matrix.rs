//! The `matrix` connector against a real Synapse on loopback (see `synapse.rs`):
//! delivery through an alias, a resend after an attempt whose answer was lost (and from
//! a new connector, as after a restart) leaving exactly one event, the look-up past the
//! txnId window (found from another device, not found and posted once), thread replies
//! and edits in order, Synapse's own rate limiter, a revoked token, and a room herald is
//! not in.

use std::time::Duration;

use herald_connectors::matrix::{Auth, Matrix, MatrixConfig, UpdateMode, lookup};
use herald_connectors::{Connector, Report, Request, Thread};
use herald_core::{Message, Outcome, Severity};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::synapse::{Limits, PASSWORD, Synapse};
use crate::webhook::{request, wall_clock};

fn connector(synapse: &Synapse, homeserver: &str, auth: Auth, mode: UpdateMode) -> Matrix {
    let config = MatrixConfig::new(homeserver, &synapse.user_id, auth, &synapse.room_alias)
        .with_update_mode(mode);
    Matrix::new(config, crate::client()).unwrap()
}

fn password() -> Auth {
    Auth::Password(PASSWORD.to_owned())
}

fn message(title: &str) -> Message {
    Message {
        title: title.to_owned(),
        body: "**checkout** fails for <b>40%</b> of requests".to_owned(),
        severity: Severity::Critical,
        ..Message::default()
    }
}

/// One attempt bounded as the engine bounds it: past `limit` it is `Unknown`.
async fn attempt(connector: &dyn Connector, request: &Request<'_>, limit: Duration) -> Report {
    match tokio::time::timeout(limit, connector.send(request)).await {
        Ok(report) => report,
        Err(_) => Report {
            outcome: Outcome::Unknown { reason: "timed out".to_owned() },
            status: None,
            detail: None,
            pause: None,
        },
    }
}

fn event_id(report: &Report) -> String {
    match &report.outcome {
        Outcome::Delivered { remote_ref: Some(r), unconfirmed: false } => r.clone(),
        other => panic!("not delivered with an event id: {other:?} {report:?}"),
    }
}

/// A loopback proxy that forwards every request to `upstream` and throws the answers
/// away: the server acts, herald never hears back.
async fn black_hole(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                let (mut client_read, _client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let swallow = tokio::spawn(async move {
                    let mut sink = [0u8; 4096];
                    while matches!(server_read.read(&mut sink).await, Ok(n) if n > 0) {}
                });
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                swallow.abort();
            });
        }
    });
    url
}

fn for_delivery<'a>(events: &'a [Value], delivery: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["content"]["org.herald.delivery"] == delivery).collect()
}

#[tokio::test]
async fn a_resend_after_a_lost_answer_or_a_restart_leaves_exactly_one_event() {
    let synapse = Synapse::start(Limits::Generous).await;
    let message = message("P1: checkout is down");
    let request = request(&message);

    // The first attempt reaches Synapse, which posts the event; the answer is lost.
    let token = synapse.log_in("HERALD").await;
    let proxy = black_hole(synapse.url.trim_start_matches("http://").to_owned()).await;
    // A token and a room id: the lost PUT is the only request that goes through.
    let config = MatrixConfig::new(&proxy, &synapse.user_id, Auth::Token(token), &synapse.room_id);
    let lost = Matrix::new(config, crate::client()).unwrap();
    let report = attempt(&lost, &request, Duration::from_secs(3)).await;
    assert_eq!(report.outcome.class(), "unknown", "{report:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let posted = loop {
        assert!(std::time::Instant::now() < deadline, "the lost PUT never reached Synapse");
        let events = synapse.messages().await;
        if let [event] = for_delivery(&events, request.delivery_id)[..] {
            break event["event_id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The engine resends the ambiguous attempt with the same txnId: the same event.
    let herald = connector(&synapse, &synapse.url, password(), UpdateMode::Thread);
    let resend = Request { attempt: 2, ambiguous: true, now: wall_clock(), ..request };
    let report = attempt(&herald, &resend, Duration::from_secs(10)).await;
    assert_eq!(event_id(&report), posted);

    // A restarted herald (a new connector, a new login of the same device) too.
    let restarted = connector(&synapse, &synapse.url, password(), UpdateMode::Thread);
    let report = attempt(&restarted, &resend, Duration::from_secs(10)).await;
    assert_eq!(event_id(&report), posted);

    let events = synapse.messages().await;
    let ours = for_delivery(&events, request.delivery_id);
    assert_eq!(ours.len(), 1, "{events:#?}");
    let content = &ours[0]["content"];
    assert_eq!(content["msgtype"], "m.text");
    assert!(content["body"].as_str().unwrap().contains("P1: checkout is down"));
    assert_eq!(content["format"], "org.matrix.custom.html");
    let html = content["formatted_body"].as_str().unwrap();
    assert!(html.contains("<strong>checkout</strong>") && html.contains("&lt;b&gt;40%"), "{html}");
    assert_eq!(ours[0]["sender"], synapse.user_id);
}

async fn updates_in_order(mode: UpdateMode) -> (Synapse, String, Vec<String>) {
    let synapse = Synapse::start(Limits::Generous).await;
    let herald = connector(&synapse, &synapse.url, password(), mode);
    let original = message("P1: checkout is down");
    let request = request(&original);
    let root = event_id(&attempt(&herald, &request, Duration::from_secs(10)).await);
    let mut refs = Vec::new();
    let ids = [
        "d_01JD0000000000000000000011",
        "d_01JD0000000000000000000012",
        "d_01JD0000000000000000000013",
    ];
    for (seq, id) in (1..).zip(ids) {
        let update = message(&format!("update {seq}"));
        let thread = Thread::Update {
            seq,
            in_reply_to: request.delivery_id,
            original_remote_ref: Some(&root),
            original: &original,
            original_at: wall_clock(),
        };
        let request = Request { delivery_id: id, message: &update, thread, ..request };
        refs.push(event_id(&attempt(&herald, &request, Duration::from_secs(10)).await));
    }
    (synapse, root, refs)
}

#[tokio::test]
async fn thread_replies_arrive_in_order_under_the_original() {
    let (synapse, root, refs) = updates_in_order(UpdateMode::Thread).await;
    let events = synapse.messages().await;
    let replies: Vec<&Value> =
        events.iter().filter(|e| e["content"]["m.relates_to"]["rel_type"] == "m.thread").collect();
    assert_eq!(replies.len(), 3, "{events:#?}");
    for (seq, (reply, reference)) in replies.iter().zip(&refs).enumerate() {
        assert_eq!(reply["content"]["m.relates_to"]["event_id"], root.as_str());
        assert_eq!(reply["event_id"], reference.as_str());
        let body = reply["content"]["body"].as_str().unwrap();
        assert!(body.contains(&format!("update {}", seq + 1)), "{body}");
    }
}

#[tokio::test]
async fn edits_replace_the_original_in_order() {
    let (synapse, root, refs) = updates_in_order(UpdateMode::Edit).await;
    assert!(refs.iter().all(|r| *r == root), "an edit's ref stays the original: {refs:?}");
    let events = synapse.messages().await;
    let edits: Vec<&Value> =
        events.iter().filter(|e| e["content"]["m.relates_to"]["rel_type"] == "m.replace").collect();
    assert_eq!(edits.len(), 3, "{events:#?}");
    for (seq, edit) in edits.iter().enumerate() {
        assert_eq!(edit["content"]["m.relates_to"]["event_id"], root.as_str());
        let body = edit["content"]["m.new_content"]["body"].as_str().unwrap();
        assert!(body.contains(&format!("update {}", seq + 1)), "{body}");
    }
}

#[tokio::test]
async fn synapses_rate_limiter_throttles_and_its_wait_is_honoured() {
    let synapse = Synapse::start(Limits::Messages { per_second: 0.5, burst: 2 }).await;
    let herald = connector(&synapse, &synapse.url, password(), UpdateMode::Thread);
    let message = message("burst");
    let ids: Vec<String> = (0..10).map(|n| format!("d_01JD00000000000000000001{n:02}")).collect();
    let mut throttled = None;
    for id in &ids {
        let request = Request { delivery_id: id, ..request(&message) };
        let report = attempt(&herald, &request, Duration::from_secs(10)).await;
        if let Outcome::Throttled { after, reason } = &report.outcome {
            assert_eq!(report.status, Some(429), "{report:?}");
            assert!(reason.contains("M_LIMIT_EXCEEDED"), "{reason}");
            throttled = Some((id.clone(), after.expect("Synapse names its wait")));
            break;
        }
        event_id(&report);
    }
    let (id, after) = throttled.expect("Synapse never throttled");
    assert!(after > Duration::ZERO && after <= Duration::from_secs(3), "{after:?}");
    // Waiting as long as Synapse asked is enough: the same delivery then goes through.
    tokio::time::sleep(after).await;
    let request = Request { delivery_id: &id, attempt: 2, ..request(&message) };
    event_id(&attempt(&herald, &request, Duration::from_secs(10)).await);
    assert_eq!(for_delivery(&synapse.messages().await, &id).len(), 1);
}

#[tokio::test]
async fn a_revoked_token_leads_to_one_new_login_and_a_foreign_room_fails_for_good() {
    let mut synapse = Synapse::start(Limits::Generous).await;
    let herald = connector(&synapse, &synapse.url, password(), UpdateMode::Thread);
    let message = message("first");
    event_id(&attempt(&herald, &request(&message), Duration::from_secs(10)).await);

    synapse.log_out_everywhere().await;
    let second = Request { delivery_id: "d_01JD0000000000000000000021", ..request(&message) };
    event_id(&attempt(&herald, &second, Duration::from_secs(10)).await);

    // A given token that is revoked cannot be renewed: permanent, naming the code.
    let token = synapse.log_in("OTHER").await;
    let fixed = connector(&synapse, &synapse.url, Auth::Token(token), UpdateMode::Thread);
    synapse.log_out_everywhere().await;
    let third = Request { delivery_id: "d_01JD0000000000000000000022", ..request(&message) };
    let report = attempt(&fixed, &third, Duration::from_secs(10)).await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    assert!(report.outcome.reason().unwrap().contains("M_UNKNOWN_TOKEN"), "{report:?}");

    let config =
        MatrixConfig::new(&synapse.url, &synapse.user_id, password(), "!nowhere:localhost");
    let outsider = Matrix::new(config, crate::client()).unwrap();
    let report = attempt(&outsider, &third, Duration::from_secs(10)).await;
    assert_eq!(report.outcome.class(), "permanent", "{report:?}");
    assert!(report.outcome.reason().unwrap().contains("M_FORBIDDEN"), "{report:?}");
    assert_eq!(synapse.messages().await.len(), 2);
}

/// A connector logged in as `device`, looking for the event of an ambiguous delivery
/// once it is `lookup_after` old.
fn on_device(synapse: &Synapse, device: &str, lookup_after: Duration) -> Matrix {
    let config = MatrixConfig::new(&synapse.url, &synapse.user_id, password(), &synapse.room_id)
        .with_device_id(device)
        .with_lookup_after(lookup_after);
    Matrix::new(config, crate::client()).unwrap()
}

#[tokio::test]
async fn past_the_txn_window_an_ambiguous_resend_finds_the_event_even_from_another_device() {
    let synapse = Synapse::start(Limits::Generous).await;
    let message = message("P1: checkout is down");
    let first = Request { created_at: wall_clock(), ..request(&message) };
    let herald = connector(&synapse, &synapse.url, password(), UpdateMode::Thread);
    let posted = event_id(&attempt(&herald, &first, Duration::from_secs(10)).await);
    // Newer messages of the same user than one read returns: the look-up follows `end`.
    synapse.chatter(lookup::PAGE + 20).await;

    // The attempt was ambiguous and the delivery is past `lookup_after` (zero here: the
    // test cannot wait 12 h), and herald now runs as another device, for which the txnId
    // means nothing: only the look-up can keep the room at one event.
    let resend = Request { attempt: 2, ambiguous: true, now: wall_clock(), ..first };
    let elsewhere = on_device(&synapse, "ELSEWHERE", Duration::ZERO);
    let report = attempt(&elsewhere, &resend, Duration::from_secs(10)).await;
    assert_eq!(event_id(&report), posted);
    assert!(report.detail.as_deref().unwrap_or("").contains("lookup_after"), "{report:?}");
    // The device that sent it finds it too (by its transaction id as well).
    let same = on_device(&synapse, "HERALD", Duration::ZERO);
    assert_eq!(event_id(&attempt(&same, &resend, Duration::from_secs(10)).await), posted);
    assert_eq!(for_delivery(&synapse.messages().await, first.delivery_id).len(), 1);

    // Inside the window herald resends with the txnId as before; from another device
    // that is a second event, which is what the look-up prevented above.
    let within = on_device(&synapse, "WITHIN", lookup::DEFAULT_LOOKUP_AFTER);
    let report = attempt(&within, &resend, Duration::from_secs(10)).await;
    assert_ne!(event_id(&report), posted);
    assert_eq!(for_delivery(&synapse.messages().await, first.delivery_id).len(), 2);
}

#[tokio::test]
async fn past_the_txn_window_a_look_up_that_finds_nothing_posts_once() {
    let synapse = Synapse::start(Limits::Generous).await;
    let message = message("P1: checkout is down");
    let herald = connector(&synapse, &synapse.url, password(), UpdateMode::Thread);
    // Earlier deliveries of herald's in the room, inside the look-up's clock margin.
    for id in ["d_01JD0000000000000000000031", "d_01JD0000000000000000000032"] {
        let earlier = Request { delivery_id: id, ..request(&message) };
        event_id(&attempt(&herald, &earlier, Duration::from_secs(10)).await);
    }

    let request = Request { ambiguous: true, attempt: 2, ..request(&message) };
    let elsewhere = on_device(&synapse, "ELSEWHERE", Duration::ZERO);
    let posted = event_id(&attempt(&elsewhere, &request, Duration::from_secs(10)).await);
    // Ambiguous again: this time the look-up finds the one event.
    let again = Request { attempt: 3, now: wall_clock(), ..request };
    let other = on_device(&synapse, "OTHER", Duration::ZERO);
    assert_eq!(event_id(&attempt(&other, &again, Duration::from_secs(10)).await), posted);
    let events = synapse.messages().await;
    assert_eq!(for_delivery(&events, request.delivery_id).len(), 1, "{events:#?}");
    assert_eq!(events.len(), 3);
}

#[test]
fn a_delivered_event_links_to_matrix_to_in_the_configured_room() {
    let config = MatrixConfig::new(
        "http://127.0.0.1:9",
        "@herald:example.org",
        password(),
        "#ops:example.org",
    );
    let matrix = Matrix::new(config, crate::client()).unwrap();
    assert_eq!(
        matrix.remote_link("$Ab3-_xyz").as_deref(),
        Some("https://matrix.to/#/#ops:example.org/$Ab3-_xyz")
    );
    for odd in ["", "Ab3", "$a/b", "$a#b", "$a?b"] {
        assert_eq!(matrix.remote_link(odd), None, "{odd:?}");
    }
}
