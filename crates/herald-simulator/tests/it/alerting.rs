//! The PagerDuty and Opsgenie dialects' throttling and request-status answers, as those
//! APIs document them: a PagerDuty 429 is a bare status; an Opsgenie 429 carries its
//! `X-RateLimit-*` headers; an Opsgenie request not processed yet says so in
//! `X-Opsgenie-Errortype`, and an id Opsgenie never issued does not.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on any unexpected answer")]
use std::time::Duration;

use herald_simulator::{FaultPlan, OPSGENIE_API_KEY, PAGERDUTY_ROUTING_KEY};
use serde_json::{Value, json};

use super::{client, start};

#[tokio::test]
async fn a_pagerduty_429_has_no_body_and_no_retry_after() {
    let sim = start(&[("pd", FaultPlan::healthy().rate_limit(1, Duration::from_secs(60)))]).await;
    let url = format!("{}/v2/enqueue", sim.view().pagerduty_url("pd"));
    let event = json!({
        "routing_key": PAGERDUTY_ROUTING_KEY, "event_action": "trigger", "dedup_key": "k",
        "payload": {"summary": "s", "source": "h", "severity": "info"},
    });
    let first = client().post(&url).json(&event).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 202);
    let second = client().post(&url).json(&event).send().await.unwrap();
    assert_eq!(second.status().as_u16(), 429);
    assert!(second.headers().get("retry-after").is_none());
    assert_eq!(second.text().await.unwrap(), "", "PagerDuty documents no body for a 429");
    sim.shutdown().await;
}

#[tokio::test]
async fn opsgenie_throttling_and_request_status_headers() {
    let sim = start(&[("og", FaultPlan::healthy().rate_limit(1, Duration::from_secs(60)))]).await;
    let base = sim.opsgenie_url("og");
    let auth = format!("GenieKey {OPSGENIE_API_KEY}");
    let alert = json!({"message": "P1", "alias": "a1"});
    sim.opsgenie_processing_lag("og", 1);
    let created = client()
        .post(format!("{base}/v2/alerts"))
        .header("authorization", &auth)
        .json(&alert)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 202);
    let request_id =
        created.json::<Value>().await.unwrap()["requestId"].as_str().unwrap().to_owned();
    let throttled = client()
        .post(format!("{base}/v2/alerts"))
        .header("authorization", &auth)
        .json(&alert)
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status().as_u16(), 429);
    let header = |name: &str| throttled.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("x-ratelimit-state").as_deref(), Some("THROTTLED"));
    assert_eq!(header("x-ratelimit-reason").as_deref(), Some("ACCOUNT"));
    assert_eq!(header("x-ratelimit-period-in-sec").as_deref(), Some("60"));

    let status = |id: String| {
        let auth = auth.clone();
        let url = format!("{base}/v2/alerts/requests/{id}");
        async move { client().get(url).header("authorization", auth).send().await.unwrap() }
    };
    let pending = status(request_id.clone()).await;
    assert_eq!(pending.status().as_u16(), 404);
    assert_eq!(
        pending.headers().get("x-opsgenie-errortype").map(|v| v.to_str().unwrap()),
        Some("RequestNotProcessed")
    );
    let done = status(request_id).await;
    assert_eq!(done.status().as_u16(), 200);
    assert_eq!(done.json::<Value>().await.unwrap()["data"]["isSuccess"], json!(true));
    let unknown = status("00000000-0000-0000-0000-000000000000".to_owned()).await;
    assert_eq!(unknown.status().as_u16(), 404);
    assert!(unknown.headers().get("x-opsgenie-errortype").is_none());
    sim.shutdown().await;
}
