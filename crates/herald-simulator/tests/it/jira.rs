//! The Jira dialect over loopback HTTP: auth, validation, comments, transitions, the
//! lagging search, fault plans keyed by the marker label, and Jira's 429 headers.

use std::time::Duration;

use herald_simulator::{FaultPlan, JIRA_EMAIL, JIRA_TOKEN, Simulator};
use serde_json::{Value, json};

async fn start(plan: FaultPlan) -> Simulator {
    Simulator::start(vec![("j".to_owned(), plan)]).await.expect("start simulator")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("build reqwest client")
}

fn doc(text: &str) -> Value {
    json!({"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": text}]}
    ]})
}

fn create_body(project: &str, delivery: &str) -> Value {
    json!({"fields": {
        "project": {"key": project},
        "issuetype": {"name": "Incident"},
        "summary": "checkout is down",
        "labels": ["herald", format!("herald-{delivery}")],
        "description": doc("details"),
    }})
}

/// Sends `body` (if any) with `method` to `path` under the site, with the given token.
async fn call(
    sim: &Simulator,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!("{}/rest/api/3/{path}", sim.jira_url("j"));
    let mut request = client().request(method, url).basic_auth(JIRA_EMAIL, Some(token));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("a response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(sim: &Simulator, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, body) = call(sim, reqwest::Method::POST, path, JIRA_TOKEN, Some(body)).await;
    (status, body)
}

async fn get(sim: &Simulator, path: &str) -> (u16, Value) {
    let (status, _, body) = call(sim, reqwest::Method::GET, path, JIRA_TOKEN, None).await;
    (status, body)
}

#[tokio::test]
async fn jira_rejects_a_wrong_token_and_an_unknown_project_in_its_own_words() {
    let sim = start(FaultPlan::healthy().dedupe(false)).await;
    let body = create_body("OPS", "d_1");
    let (status, _, answer) =
        call(&sim, reqwest::Method::POST, "issue", "wrong", Some(&body)).await;
    assert_eq!(status, 401);
    assert_eq!(answer["errorMessages"][0], "Client must be authenticated to access this resource.");

    let (status, answer) = post(&sim, "issue", &create_body("NOPE", "d_1")).await;
    assert_eq!(status, 400);
    assert_eq!(answer["errors"]["project"], "Specify a valid project ID or key");
    assert!(sim.view().jira_issues("j").is_empty());
    assert_eq!(sim.view().requests("j"), 0, "rejected before the fault plan");
}

#[tokio::test]
async fn jira_issue_takes_comments_and_follows_its_workflow() {
    let sim = start(FaultPlan::healthy().dedupe(false)).await;
    let (status, created) = post(&sim, "issue", &create_body("OPS", "d_1")).await;
    assert_eq!(status, 201);
    assert_eq!(created["key"], "OPS-1");
    assert_eq!(sim.view().copies_of("j", "d_1"), 1);

    let (status, _) =
        post(&sim, "issue/OPS-1/comment", &json!({"body": doc("update · herald-d_2")})).await;
    assert_eq!(status, 201);
    assert_eq!(sim.view().copies_of("j", "d_2"), 1);
    let (status, comments) = get(&sim, "issue/OPS-1/comment").await;
    assert_eq!(status, 200);
    assert_eq!(comments["total"], 1);
    assert_eq!(comments["comments"][0]["body"], doc("update · herald-d_2"));

    let (_, transitions) = get(&sim, "issue/OPS-1/transitions").await;
    let names: Vec<&str> = transitions["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["Start Progress", "Done"]);
    let (status, _) =
        post(&sim, "issue/OPS-1/transitions", &json!({"transition": {"id": "31"}})).await;
    assert_eq!(status, 204);
    let (_, issue) = get(&sim, "issue/OPS-1?fields=status").await;
    assert_eq!(issue["fields"]["status"]["name"], "Done");
    let (_, transitions) = get(&sim, "issue/OPS-1/transitions").await;
    assert_eq!(transitions["transitions"][0]["name"], "Reopen");
    let (status, answer) =
        post(&sim, "issue/OPS-1/transitions", &json!({"transition": {"id": "31"}})).await;
    assert_eq!(status, 400);
    assert_eq!(answer["errorMessages"][0], "Transition id '31' is not valid for this issue.");

    sim.fail_jira_transitions("j", 1, 503);
    let (status, _) =
        post(&sim, "issue/OPS-1/transitions", &json!({"transition": {"id": "41"}})).await;
    assert_eq!(status, 503);

    let issues = sim.view().jira_issues("j");
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].status, "Done");
    assert_eq!(issues[0].transitions, ["Done"]);
    assert_eq!(issues[0].comments.len(), 1);
    let (status, _) = get(&sim, "issue/OPS-9/comment").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn jira_search_sees_an_issue_only_after_the_lag() {
    let lag = Duration::from_millis(400);
    let sim = start(FaultPlan::healthy().dedupe(false).search_lag(lag)).await;
    let (status, _) = post(&sim, "issue", &create_body("OPS", "d_1")).await;
    assert_eq!(status, 201);
    let query = json!({"jql": "project = OPS AND labels = \"herald-d_1\"", "fields": ["key"]});
    let (status, found) = post(&sim, "search/jql", &query).await;
    assert_eq!(status, 200);
    assert_eq!(found["issues"], json!([]), "the search lags behind");
    assert_eq!(get(&sim, "issue/OPS-1").await.0, 200, "the issue itself is readable at once");
    tokio::time::sleep(lag).await;
    let (_, found) = post(&sim, "search/jql", &query).await;
    assert_eq!(found["issues"][0]["key"], "OPS-1");
    assert_eq!(found["isLast"], true);
    assert_eq!(sim.view().jira_searches("j"), 2);

    let (status, answer) = post(&sim, "search", &query).await;
    assert_eq!(status, 410, "the old search is gone: {answer}");
}

#[tokio::test]
async fn jira_store_then_hang_creates_the_issue_and_never_answers() {
    let sim = start(FaultPlan::healthy().dedupe(false).hang_first(1)).await;
    let url = format!("{}/rest/api/3/issue", sim.jira_url("j"));
    let sent = client()
        .post(url)
        .basic_auth(JIRA_EMAIL, Some(JIRA_TOKEN))
        .json(&create_body("OPS", "d_1"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(sent.is_err_and(|e| e.is_timeout()));
    assert_eq!(sim.view().jira_issues("j").len(), 1);
    assert_eq!(sim.view().copies_of("j", "d_1"), 1);
    let (status, created) = post(&sim, "issue", &create_body("OPS", "d_1")).await;
    assert_eq!((status, &created["key"]), (201, &json!("OPS-2")), "Jira does not dedupe");
}

#[tokio::test]
async fn jira_store_then_fail_creates_the_issue_and_answers_the_failure() {
    let sim = start(FaultPlan::healthy().dedupe(false).store_then_fail(1, 503)).await;
    let (status, answer) = post(&sim, "issue", &create_body("OPS", "d_1")).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(sim.view().jira_issues("j").len(), 1);
}

#[tokio::test]
async fn jira_throttles_with_its_rate_limit_headers() {
    let sim = start(FaultPlan::healthy().dedupe(false).rate_limit(1, Duration::from_secs(2))).await;
    assert_eq!(post(&sim, "issue", &create_body("OPS", "d_1")).await.0, 201);
    let body = create_body("OPS", "d_2");
    let (status, headers, answer) =
        call(&sim, reqwest::Method::POST, "issue", JIRA_TOKEN, Some(&body)).await;
    assert_eq!(status, 429, "{answer}");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(header("retry-after"), "2");
    assert_eq!(header("ratelimit-reason"), "jira-burst-based");
    assert_eq!(header("x-ratelimit-remaining"), "0");
    assert!(header("x-ratelimit-reset").ends_with('Z'), "{}", header("x-ratelimit-reset"));
    assert_eq!(sim.view().jira_issues("j").len(), 1);
}
