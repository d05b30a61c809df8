//! Submitting, reading, listing and updating broadcasts; idempotent submit (invariant 6).

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use herald_core::Outcome;
use serde_json::{Value, json};

use crate::{TestApp, delivery, json_request, str_of, submission};

#[tokio::test]
async fn submit_answers_202_with_the_documented_shape() {
    let t = TestApp::new();
    let mut body = submission(&["p1"], "P1: checkout is down");
    body["idempotency_key"] = json!("inc-4711-open");
    let res = t.post("/v1/broadcasts", &body).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    assert_eq!(res.content_type(), "application/json");
    let b = &res.json;
    let id = str_of(b, "id");
    assert!(id.starts_with("b_") && id.len() == 28, "{id}");
    assert_eq!(res.headers[header::LOCATION], format!("/v1/broadcasts/{id}"));
    assert_eq!(b["idempotency_key"], "inc-4711-open");
    assert_eq!(b["created_at"], "2026-11-29T12:02:03.000Z");
    assert_eq!(b["expires_at"], Value::Null);
    assert_eq!(b["state"], "in_progress");
    assert_eq!(
        b["summary"],
        json!({"total": 3, "delivered": 0, "failed": 0, "pending": 3, "cancelled": 0})
    );
    assert_eq!(b["destinations"], json!(["slack-incidents", "teams-ops", "jira-ops"]));
    assert_eq!(b["message"]["title"], "P1: checkout is down");
    assert_eq!(b["message"]["severity"], "critical");
    assert_eq!(b["message"]["fields"], json!({"service": "checkout"}));
    assert_eq!(b["message"]["tags"], json!([]));
    assert_eq!(b["updates"], json!([]));
    let d = delivery(b, "slack-incidents", 0);
    assert!(str_of(d, "id").starts_with("d_"));
    let mut expected = json!({
        "id": d["id"], "destination": "slack-incidents", "kind": "original", "seq": 0, "state": "pending",
        "attempts": 0, "max_attempts": 8, "next_attempt_at": "2026-11-29T12:02:03.000Z",
        "remote_ref": null, "remote_url": null, "last_error": null, "failure_reason": null,
        "hold_reason": null, "delivered_at": null, "unconfirmed": false
    });
    assert_eq!(d, &expected);

    // GET returns the same broadcast; once settled every delivery is delivered.
    let settled = t.settle(id).await;
    assert_eq!(settled["id"], b["id"]);
    assert_eq!(settled["state"], "delivered");
    assert_eq!(
        settled["summary"],
        json!({"total": 3, "delivered": 3, "failed": 0, "pending": 0, "cancelled": 0})
    );
    expected["state"] = json!("delivered");
    expected["attempts"] = json!(1);
    expected["next_attempt_at"] = Value::Null;
    expected["remote_ref"] = json!(format!("ref-{}", str_of(d, "id")));
    // The connector's link for its ref.
    expected["remote_url"] = json!(format!("https://chat.example/m/ref-{}", str_of(d, "id")));
    expected["delivered_at"] = json!("2026-11-29T12:02:03.000Z");
    assert_eq!(delivery(&settled, "slack-incidents", 0), &expected);

    let log = t.get(&format!("/v1/broadcasts/{id}/attempts")).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    let attempts = log.json["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    let first = attempts.iter().find(|a| a["delivery_id"] == d["id"]).unwrap();
    assert_eq!(first["destination"], "slack-incidents");
    assert_eq!(first["number"], 1);
    assert_eq!(first["outcome"], "delivered");
    assert_eq!(first["status"], 200);
    assert_eq!(first["started_at"], "2026-11-29T12:02:03.000Z");
    assert!(first["duration_ms"].is_u64() && first["detail"].is_string());

    assert_eq!(
        t.get("/v1/broadcasts/b_nope/attempts").await.problem(StatusCode::NOT_FOUND)["type"],
        "urn:herald:problem:not-found"
    );
    let missing = t.get("/v1/broadcasts/b_nope").await;
    assert!(str_of(missing.problem(StatusCode::NOT_FOUND), "detail").contains("b_nope"));
}

#[tokio::test]
async fn expiry_is_the_earlier_of_the_request_and_the_policy() {
    let t = TestApp::new();
    let mut body = submission(&["teams-ops"], "short-lived");
    body["expires_in"] = json!("2h");
    let b = t.post("/v1/broadcasts", &body).await;
    assert_eq!(b.status, StatusCode::ACCEPTED, "{}", b.text);
    assert_eq!(b.json["expires_at"], "2026-11-29T14:02:03.000Z");
}

#[tokio::test]
async fn groups_resolve_in_first_seen_order_without_duplicates() {
    let t = TestApp::new();
    let b = t.submit(&["teams-ops", "p1", "ops", "slack-incidents"], "dedup").await;
    assert_eq!(b["destinations"], json!(["teams-ops", "slack-incidents", "jira-ops", "broken"]));
    assert_eq!(b["summary"]["total"], 4);
}

#[tokio::test]
async fn list_is_newest_first_with_cursor_paging_and_filters() {
    let t = TestApp::new();
    let mut ids = Vec::new();
    for (n, to) in
        ["teams-ops", "broken", "jira-ops", "broken", "slack-incidents"].into_iter().enumerate()
    {
        let b = t.submit(&[to], &format!("broadcast {n}")).await;
        ids.push(str_of(&b, "id").to_string());
    }
    for id in &ids {
        t.settle(id).await;
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    // Two per page: 2 + 2 + 1, no duplicates, newest first.
    let mut seen = Vec::new();
    let mut uri = "/v1/broadcasts?limit=2".to_string();
    for _ in 0..10 {
        let page = t.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let items = page.json["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|b| str_of(b, "id").to_string()));
        match page.json["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/broadcasts?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);

    let all = t.get("/v1/broadcasts").await;
    let listed: Vec<&str> =
        all.json["items"].as_array().unwrap().iter().map(|b| str_of(b, "id")).collect();
    assert_eq!(listed, newest_first);

    let broken = t.get("/v1/broadcasts?destination=broken").await;
    let listed: Vec<&str> =
        broken.json["items"].as_array().unwrap().iter().map(|b| str_of(b, "id")).collect();
    assert_eq!(listed, [ids[3].as_str(), ids[1].as_str()]);

    let failed = t.get("/v1/broadcasts?state=failed").await;
    let listed: Vec<&str> =
        failed.json["items"].as_array().unwrap().iter().map(|b| str_of(b, "id")).collect();
    assert_eq!(listed, [ids[3].as_str(), ids[1].as_str()]);
    assert!(failed.json["items"].as_array().unwrap().iter().all(|b| b["state"] == "failed"));

    let delivered = t.get("/v1/broadcasts?state=delivered&destination=jira-ops").await;
    let listed: Vec<&str> =
        delivered.json["items"].as_array().unwrap().iter().map(|b| str_of(b, "id")).collect();
    assert_eq!(listed, [ids[2].as_str()]);

    let none = t.get("/v1/broadcasts?state=cancelled").await;
    assert_eq!(none.json, json!({"items": [], "next_cursor": null}));
}

async fn count(t: &TestApp) -> usize {
    t.get("/v1/broadcasts?limit=500").await.json["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_replay_returns_the_original_and_a_different_body_is_rejected() {
    let t = TestApp::new();
    let mut body = submission(&["p1"], "P1: checkout is down");
    body["idempotency_key"] = json!("inc-4711-open");
    let first = t.post("/v1/broadcasts", &body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);

    let replay = t.post("/v1/broadcasts", &body).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text);
    assert_eq!(replay.json["id"], first.json["id"]);
    assert_eq!(replay.json["deliveries"].as_array().unwrap().len(), 3);
    assert_eq!(count(&t).await, 1);

    let mut different = body.clone();
    different["message"]["title"] = json!("P1: checkout is slow");
    let conflict = t.post("/v1/broadcasts", &different).await;
    let problem = conflict.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["type"], "urn:herald:problem:idempotency-key-conflict");
    assert_eq!(conflict.fields(), ["idempotency_key"]);
    assert!(str_of(problem, "detail").contains(str_of(&first.json, "id")), "{}", conflict.text);

    // The destinations as given are part of the request: `p1` is not its expansion.
    let mut expanded = body.clone();
    expanded["destinations"] = json!(["slack-incidents", "teams-ops", "jira-ops"]);
    t.post("/v1/broadcasts", &expanded).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(count(&t).await, 1);
}

#[tokio::test]
async fn the_idempotency_key_header_works_like_the_body_field() {
    let t = TestApp::new();
    let body = submission(&["teams-ops"], "via header");
    let with_header = |key: &str| {
        let mut req = json_request(Method::POST, "/v1/broadcasts", &body);
        req.headers_mut().insert("Idempotency-Key", key.parse().unwrap());
        req
    };
    let first = t.send(with_header("hdr-1")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert_eq!(first.json["idempotency_key"], "hdr-1");
    let replay = t.send(with_header("hdr-1")).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text);
    assert_eq!(replay.json["id"], first.json["id"]);

    let mut in_body = body.clone();
    in_body["idempotency_key"] = json!("hdr-1");
    let replay = t.post("/v1/broadcasts", &in_body).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text);
    assert_eq!(replay.json["id"], first.json["id"]);
    assert_eq!(count(&t).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_with_one_key_create_one_broadcast() {
    let t = std::sync::Arc::new(TestApp::new());
    let mut body = submission(&["p1"], "P1: checkout is down");
    body["idempotency_key"] = json!("race");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let t = std::sync::Arc::clone(&t);
            let body = body.clone();
            tokio::spawn(async move {
                let res = t.post("/v1/broadcasts", &body).await;
                (res.status, res.json["id"].clone())
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    let created = results.iter().filter(|(status, _)| *status == StatusCode::ACCEPTED).count();
    let replayed = results.iter().filter(|(status, _)| *status == StatusCode::OK).count();
    assert_eq!((created, replayed), (1, 19), "{results:?}");
    let ids: HashSet<String> =
        results.iter().map(|(_, id)| id.as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(count(&t).await, 1);
    // Each destination was sent the message once.
    let id = ids.into_iter().next().unwrap();
    t.settle(&id).await;
    for destination in ["slack-incidents", "teams-ops", "jira-ops"] {
        assert_eq!(t.calls(destination), 1, "{destination}");
    }
}

#[tokio::test]
async fn an_update_follows_the_original_to_every_destination() {
    let t = TestApp::new();
    let b = t.submit(&["p1"], "P1: checkout is down").await;
    let id = str_of(&b, "id");
    t.settle(id).await;

    let update =
        json!({"message": {"title": "Resolved: checkout is back", "severity": "resolved"}});
    let res = t.post(&format!("/v1/broadcasts/{id}/updates"), &update).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    assert_eq!(res.json["update_seq"], 1);
    assert_eq!(res.json["id"], b["id"]);
    assert_eq!(res.json["updates"][0]["seq"], 1);
    assert_eq!(res.json["updates"][0]["message"]["title"], "Resolved: checkout is back");
    assert_eq!(res.json["summary"]["total"], 6);
    let d = delivery(&res.json, "teams-ops", 1);
    assert_eq!(d["kind"], "update");
    assert_eq!(d["max_attempts"], 8);
    assert_ne!(d["id"], delivery(&res.json, "teams-ops", 0)["id"]);

    let settled = t.settle(id).await;
    assert_eq!(settled["state"], "delivered");
    assert_eq!(delivery(&settled, "jira-ops", 1)["state"], "delivered");
    assert_eq!(t.calls("jira-ops"), 2);

    let unknown = t.post("/v1/broadcasts/b_nope/updates", &update).await;
    unknown.problem(StatusCode::NOT_FOUND);

    let invalid =
        t.post(&format!("/v1/broadcasts/{id}/updates"), &json!({"message": {"title": ""}})).await;
    invalid.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.fields(), ["message.title"]);

    let with_destinations = json!({"destinations": ["p1"], "message": {"title": "x"}});
    let res = t.post(&format!("/v1/broadcasts/{id}/updates"), &with_destinations).await;
    res.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), ["destinations"]);

    // Nothing of the rejected requests was stored.
    let after = t.get(&format!("/v1/broadcasts/{id}")).await;
    assert_eq!(after.json["updates"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn head_is_answered_like_get() {
    let t = TestApp::new();
    let res = t.send(Request::head("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn a_replayed_update_returns_the_stored_one_and_another_body_is_rejected() {
    let t = TestApp::new();
    let b = t.submit(&["p1"], "P1: checkout is down").await;
    let id = str_of(&b, "id");
    t.settle(id).await;
    let uri = format!("/v1/broadcasts/{id}/updates");
    let keyed = json!({
        "message": {"title": "Resolved: checkout is back", "severity": "resolved"},
        "idempotency_key": "resolve-1"
    });
    let first = t.post(&uri, &keyed).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert_eq!(first.json["update_seq"], 1);
    let ids_of = |json: &Value| -> Vec<String> {
        ["slack-incidents", "teams-ops", "jira-ops"]
            .iter()
            .map(|d| str_of(delivery(json, d, 1), "id").to_string())
            .collect()
    };
    let settled = t.settle(id).await;

    let replay = t.post(&uri, &keyed).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text);
    assert_eq!(replay.json["update_seq"], 1);
    assert_eq!(ids_of(&replay.json), ids_of(&first.json), "a replay made new deliveries");
    assert_eq!(replay.json["updates"].as_array().unwrap().len(), 1);
    assert_eq!(replay.json["summary"]["total"], 6);
    // The body is the broadcast as it stands, like a submit's replay.
    assert_eq!(replay.json["id"], b["id"]);
    assert_eq!(replay.json["deliveries"], settled["deliveries"]);

    let mut different = keyed.clone();
    different["message"]["title"] = json!("Resolved: checkout is fast again");
    let conflict = t.post(&uri, &different).await;
    let problem = conflict.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["type"], "urn:herald:problem:idempotency-key-conflict");
    assert_eq!(conflict.fields(), ["idempotency_key"]);
    assert!(str_of(problem, "detail").contains("resolve-1"), "{}", conflict.text);
    let mut longer = keyed.clone();
    longer["expires_in"] = json!("2h");
    t.post(&uri, &longer).await.problem(StatusCode::UNPROCESSABLE_ENTITY);

    // Nothing of the replay or the conflicts was stored or sent.
    let after = t.settle(id).await;
    assert_eq!(after["updates"].as_array().unwrap().len(), 1);
    for destination in ["slack-incidents", "teams-ops", "jira-ops"] {
        assert_eq!(t.calls(destination), 2, "{destination}");
    }

    // The key is scoped to its broadcast: another broadcast may use it.
    let other = t.submit(&["teams-ops"], "P2: search is slow").await;
    let other_uri = format!("/v1/broadcasts/{}/updates", str_of(&other, "id"));
    let res = t.post(&other_uri, &keyed).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
}

#[tokio::test]
async fn an_update_key_works_in_the_header_like_in_the_body() {
    let t = TestApp::new();
    let b = t.submit(&["teams-ops"], "P1: checkout is down").await;
    let uri = format!("/v1/broadcasts/{}/updates", str_of(&b, "id"));
    let body = json!({"message": {"title": "Mitigated"}});
    let with_header = |key: &str| {
        let mut req = json_request(Method::POST, &uri, &body);
        req.headers_mut().insert("Idempotency-Key", key.parse().unwrap());
        req
    };
    let first = t.send(with_header("upd-1")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let replay = t.send(with_header("upd-1")).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text);
    assert_eq!(replay.json["update_seq"], first.json["update_seq"]);
    let mut in_body = body.clone();
    in_body["idempotency_key"] = json!("upd-1");
    let replay = t.post(&uri, &in_body).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text);
    assert_eq!(
        str_of(delivery(&replay.json, "teams-ops", 1), "id"),
        str_of(delivery(&first.json, "teams-ops", 1), "id")
    );
    // A different key is a different update.
    let second = t.send(with_header("upd-2")).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.text);
    assert_eq!(second.json["update_seq"], 2);
    // Header and body must agree.
    let mut mismatch = with_header("upd-1");
    *mismatch.body_mut() = Body::from(
        json!({"message": {"title": "Mitigated"}, "idempotency_key": "other"}).to_string(),
    );
    let res = t.send(mismatch).await;
    res.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), ["idempotency_key"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replays_of_an_update_create_one_update() {
    let t = std::sync::Arc::new(TestApp::new());
    let b = t.submit(&["p1"], "P1: checkout is down").await;
    let uri = format!("/v1/broadcasts/{}/updates", str_of(&b, "id"));
    let body = json!({"message": {"title": "Resolved"}, "idempotency_key": "race"});
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (t, uri, body) = (std::sync::Arc::clone(&t), uri.clone(), body.clone());
            tokio::spawn(async move {
                let res = t.post(&uri, &body).await;
                let ids: Vec<String> = ["slack-incidents", "teams-ops", "jira-ops"]
                    .iter()
                    .map(|d| str_of(delivery(&res.json, d, 1), "id").to_string())
                    .collect();
                (res.status, res.json["update_seq"].clone(), ids)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    let created = results.iter().filter(|(status, ..)| *status == StatusCode::ACCEPTED).count();
    let replayed = results.iter().filter(|(status, ..)| *status == StatusCode::OK).count();
    assert_eq!((created, replayed), (1, 19), "{results:?}");
    assert!(results.iter().all(|(_, seq, ids)| *seq == 1 && *ids == results[0].2), "{results:?}");
    let settled = t.settle(str_of(&b, "id")).await;
    assert_eq!(settled["updates"].as_array().unwrap().len(), 1);
    assert_eq!(settled["summary"]["total"], 6);
    for destination in ["slack-incidents", "teams-ops", "jira-ops"] {
        assert_eq!(t.calls(destination), 2, "{destination}");
    }
}

#[tokio::test]
async fn deliveries_to_a_destination_without_a_lane_are_held_and_listed_as_held() {
    let t = TestApp::new();
    // `retired` is addressable but no longer configured in the engine.
    let b = t.submit(&["retired", "teams-ops"], "P1: checkout is down").await;
    let id = str_of(&b, "id");
    let update = json!({"message": {"title": "Resolved"}});
    let res = t.post(&format!("/v1/broadcasts/{id}/updates"), &update).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    // The update to a destination without a lane holds what would otherwise wait for
    // ever; the answer already shows it.
    let original = delivery(&res.json, "retired", 0);
    assert_eq!(
        (original["state"].as_str(), original["hold_reason"].as_str()),
        (Some("held"), Some("destination_removed"))
    );
    let follow = delivery(&res.json, "retired", 1);
    assert_eq!(follow["state"], "waiting");
    assert!(str_of(follow, "last_error").starts_with("waiting: the original is held"), "{follow}");

    let held = t.get("/v1/broadcasts?state=held").await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.text);
    let ids: Vec<&str> =
        held.json["items"].as_array().unwrap().iter().map(|b| str_of(b, "id")).collect();
    assert_eq!(ids, [id]);
    let other = t.submit(&["teams-ops"], "P2").await;
    t.settle(str_of(&other, "id")).await;
    assert_eq!(t.get("/v1/broadcasts?state=held").await.json["items"].as_array().unwrap().len(), 1);

    // Cancelling the held original ends its update too.
    let cancelled =
        t.post_empty(&format!("/v1/deliveries/{}/cancel", str_of(original, "id"))).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    let follow = delivery(&cancelled.json, "retired", 1);
    assert_eq!(
        (follow["state"].as_str(), follow["failure_reason"].as_str()),
        (Some("failed"), Some("predecessor_failed"))
    );
    assert_eq!(delivery(&cancelled.json, "retired", 0)["hold_reason"], Value::Null);
    assert_eq!(t.get("/v1/broadcasts?state=held").await.json["items"], json!([]));
    let bad = t.get("/v1/broadcasts?state=stuck").await;
    bad.problem(StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("held"), "{}", bad.text);
}

/// A destination that only accepted the request (Teams Workflows' `202`) is delivered
/// and says so: `unconfirmed` is true for it and false for the others.
#[tokio::test]
async fn an_accepted_but_unconfirmed_post_is_shown_as_such() {
    let t = TestApp::new();
    let accepted = Outcome::Delivered { remote_ref: None, unconfirmed: true };
    t.connectors["teams-ops"].script.lock().unwrap().push_back(accepted);
    let b = t.submit(&["teams-ops", "jira-ops"], "P1: checkout is down").await;
    let settled = t.settle(str_of(&b, "id")).await;
    assert_eq!(settled["state"], "delivered");
    let teams = delivery(&settled, "teams-ops", 0);
    assert_eq!(teams["state"], "delivered");
    assert_eq!(teams["unconfirmed"], true);
    assert_eq!(delivery(&settled, "jira-ops", 0)["unconfirmed"], false);
}
