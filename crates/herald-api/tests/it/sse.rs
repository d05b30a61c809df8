//! `GET /v1/broadcasts/{id}/events`: a snapshot, then delivery events, then `done`.

use axum::http::StatusCode;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{PATIENCE, TestApp, str_of, submission};

/// One parsed server-sent event.
#[derive(Debug)]
struct Sent {
    event: String,
    data: Value,
}

/// Parses every complete event in `text`; comments (keep-alives) are skipped.
fn parse(text: &str) -> Vec<Sent> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_string());
                } else if let Some(chunk) = line.strip_prefix("data:") {
                    data.push_str(chunk.trim_start());
                }
            }
            Some(Sent { event: event?, data: serde_json::from_str(&data).ok()? })
        })
        .collect()
}

#[tokio::test]
async fn events_stream_a_snapshot_then_deliveries_then_done_over_http() {
    let t = TestApp::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, t.router.clone()).into_future());
    let client = reqwest::Client::new();

    // Hold slack-incidents so the stream starts before its delivery is made.
    let paused =
        client.post(format!("{base}/v1/destinations/slack-incidents/pause")).send().await.unwrap();
    assert_eq!(paused.status(), StatusCode::OK);
    let submission = submission(&["slack-incidents"], "streamed");
    let submitted = client.post(format!("{base}/v1/broadcasts")).json(&submission).send().await;
    let submitted: Value = submitted.unwrap().json().await.unwrap();
    let id = str_of(&submitted, "id").to_string();

    let res = client.get(format!("{base}/v1/broadcasts/{id}/events")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let read = async {
        // Read until the snapshot is complete, then let the delivery happen.
        while !parse(&text).iter().any(|e| e.event == "snapshot") {
            let chunk = body.next().await.expect("the stream ended before its snapshot").unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        let resumed = client
            .post(format!("{base}/v1/destinations/slack-incidents/resume"))
            .send()
            .await
            .unwrap();
        assert_eq!(resumed.status(), StatusCode::OK);
        while let Some(chunk) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    };
    tokio::time::timeout(PATIENCE, read).await.expect("the stream did not end");
    server.abort();

    let events = parse(&text);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"snapshot"), "{text}");
    assert_eq!(names.last(), Some(&"done"), "{text}");
    let snapshot = &events[0].data;
    assert_eq!(snapshot["id"], id.as_str());
    assert_eq!(snapshot["state"], "in_progress");
    assert_eq!(snapshot["deliveries"][0]["state"], "pending");

    let deliveries: Vec<&Value> =
        events.iter().filter(|e| e.event == "delivery").map(|e| &e.data).collect();
    assert_eq!(deliveries.len(), events.len() - 2, "{text}");
    let delivered = deliveries.last().unwrap_or_else(|| panic!("no delivery event in {text}"));
    assert_eq!(delivered["delivery_id"], snapshot["deliveries"][0]["id"]);
    assert_eq!(delivered["destination"], "slack-incidents");
    assert_eq!(delivered["seq"], 0);
    assert_eq!(delivered["state"], "delivered");
    assert_eq!(delivered["reason"], Value::Null);
    assert_eq!(delivered["at"], "2026-11-29T12:02:03.000Z");
    let done = &events.last().unwrap().data;
    assert_eq!((&done["id"], &done["state"]), (&json!(id), &json!("delivered")));
    assert_eq!(done["deliveries"][0]["state"], "delivered");
}

#[tokio::test]
async fn a_finished_broadcast_streams_its_snapshot_and_done() {
    let t = TestApp::new();
    let b = t.submit(&["broken"], "already over").await;
    let id = str_of(&b, "id");
    t.settle(id).await;
    let res = t.get(&format!("/v1/broadcasts/{id}/events")).await;
    assert_eq!(res.status, StatusCode::OK);
    let events = parse(&res.text);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["snapshot", "done"]);
    assert_eq!((&events[1].data["id"], &events[1].data["state"]), (&json!(id), &json!("failed")));
    assert_eq!(events[1].data["deliveries"][0]["failure_reason"], "permanent");

    let missing = t.get("/v1/broadcasts/b_nope/events").await;
    missing.problem(StatusCode::NOT_FOUND);
}
