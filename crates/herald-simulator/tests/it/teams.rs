//! The Teams dialects over loopback: Workflows' `202`, the token endpoint, Graph's
//! channel messages and replies, its errors, and the fault plans keyed by the marker.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on any unexpected answer")]
use std::time::Duration;

use herald_simulator::{
    FaultPlan, GRAPH_CHANNEL_ID, GRAPH_REFRESH_TOKEN, GRAPH_TEAM_ID, SimView, Simulator,
};
use serde_json::{Value, json};

use super::{PROMPTLY, client, start};

async fn token(sim: &SimView, name: &str, refresh: &str) -> (u16, Value) {
    let url = format!("{}/contoso.onmicrosoft.com/oauth2/v2.0/token", sim.graph_login_url(name));
    let form = format!(
        "grant_type=refresh_token&client_id=app&refresh_token={refresh}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default%20offline_access"
    );
    let response = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token request");
    (response.status().as_u16(), response.json().await.expect("json"))
}

fn messages_url(sim: &SimView, name: &str) -> String {
    format!(
        "{}/teams/{GRAPH_TEAM_ID}/channels/{GRAPH_CHANNEL_ID}/messages",
        sim.graph_base_url(name)
    )
}

async fn graph_post(url: &str, access: &str, content: &str) -> (u16, Value) {
    let response = client()
        .post(url)
        .bearer_auth(access)
        .json(&json!({ "body": { "contentType": "html", "content": content } }))
        .send()
        .await
        .expect("post");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn graph_get(url: &str, access: &str) -> (u16, Value) {
    let response = client().get(url).bearer_auth(access).send().await.expect("get");
    (response.status().as_u16(), response.json().await.expect("json"))
}

async fn access(sim: &SimView, name: &str) -> String {
    let (status, body) = token(sim, name, GRAPH_REFRESH_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("access token").to_owned()
}

#[tokio::test]
async fn a_workflow_answers_202_with_an_empty_body_and_keeps_the_card() {
    let sim = start(&[("flow", FaultPlan::healthy().dedupe(false))]).await;
    let card = json!({ "type": "message", "attachments": [], "herald": "herald:d_1" });
    let response =
        client().post(sim.view().teams_workflow_url("flow")).json(&card).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(response.text().await.unwrap(), "");
    assert_eq!(sim.view().teams_workflow_cards("flow"), vec![card.clone()]);
    assert_eq!(sim.view().copies_of("flow", "d_1"), 1);

    let big = json!({ "text": "x".repeat(29 * 1024) });
    let response =
        client().post(sim.view().teams_workflow_url("flow")).json(&big).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let missing = client().post(sim.view().teams_workflow_url("nope")).json(&card).send().await;
    assert_eq!(missing.unwrap().status().as_u16(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn graph_posts_replies_and_lists_newest_first() {
    let sim = start(&[("g", FaultPlan::healthy().dedupe(false))]).await;
    let view = sim.view();
    let access = access(&view, "g").await;
    let url = messages_url(&view, "g");
    let (status, root) = graph_post(&url, &access, "<p>one</p><p>herald:d_1</p>").await;
    assert_eq!(status, 201, "{root}");
    let root_id = root["id"].as_str().unwrap().to_owned();
    let (status, _) = graph_post(&url, &access, "<p>two</p>").await;
    assert_eq!(status, 201);
    let replies = format!("{url}/{root_id}/replies");
    let (status, reply) = graph_post(&replies, &access, "<p>herald:d_2</p>").await;
    assert_eq!(status, 201);
    assert_eq!(reply["replyToId"], root_id.as_str());

    let (status, list) = graph_get(&format!("{url}?$top=1"), &access).await;
    assert_eq!(status, 200);
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    assert_eq!(list["value"][0]["body"]["content"], "<p>two</p>");
    assert!(list["@odata.nextLink"].is_string());
    let (_, list) = graph_get(&replies, &access).await;
    assert_eq!(list["value"][0]["id"], reply["id"]);

    let held = view.graph_messages("g");
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].key.as_deref(), Some("d_1"));
    assert_eq!(held[0].replies.len(), 1);
    assert_eq!((view.copies_of("g", "d_1"), view.copies_of("g", "d_2")), (1, 1));
    assert_eq!(view.graph_token_requests("g"), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn graph_errors_follow_the_documented_bodies() {
    let sim = start(&[("g", FaultPlan::healthy().dedupe(false))]).await;
    let view = sim.view();
    let (status, body) = token(&view, "g", "revoked").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS70000"));

    let access = access(&view, "g").await;
    let bad_channel = format!(
        "{}/teams/{GRAPH_TEAM_ID}/channels/19:nope@thread.tacv2/messages",
        view.graph_base_url("g")
    );
    let (status, body) = graph_post(&bad_channel, &access, "x").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("NotFound")));
    let (status, body) = graph_post(&messages_url(&view, "g"), "forged", "x").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("InvalidAuthenticationToken")));
    view.graph_expire_tokens("g");
    let (status, _) = graph_post(&messages_url(&view, "g"), &access, "x").await;
    assert_eq!(status, 401);
    assert!(view.graph_messages("g").is_empty());

    // Rotation: the used refresh token stops working, the new one works.
    view.graph_rotate_refresh_tokens("g", true);
    let (_, first) = token(&view, "g", GRAPH_REFRESH_TOKEN).await;
    let (status, _) = token(&view, "g", GRAPH_REFRESH_TOKEN).await;
    assert_eq!(status, 400);
    let (status, _) = token(&view, "g", first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn graph_throttles_with_retry_after_and_stores_before_hanging() {
    let plan = FaultPlan::healthy().dedupe(false).hang_first(1);
    let sim = Simulator::start(vec![
        ("g".to_owned(), plan),
        ("t".to_owned(), FaultPlan::healthy().rate_limit(1, Duration::from_secs(3))),
    ])
    .await
    .unwrap();
    let view = sim.view();
    let access_g = access(&view, "g").await;
    let url = messages_url(&view, "g");
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        graph_post(&url, &access_g, "<p>herald:d_9</p>"),
    )
    .await;
    assert!(hung.is_err(), "the first copy hangs");
    assert!(view.wait_until(PROMPTLY, |v| v.copies_of("g", "d_9") == 1).await);
    let (_, list) = graph_get(&url, &access_g).await;
    assert_eq!(list["value"][0]["body"]["content"], "<p>herald:d_9</p>");

    let access_t = access(&view, "t").await;
    let url = messages_url(&view, "t");
    assert_eq!(graph_post(&url, &access_t, "herald:a").await.0, 201);
    let response = client()
        .post(&url)
        .bearer_auth(&access_t)
        .json(&json!({ "body": { "content": "herald:b" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    sim.shutdown().await;
}
