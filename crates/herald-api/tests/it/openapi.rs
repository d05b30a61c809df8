//! `/openapi.json` documents exactly the routes the router serves, and its schemas name
//! exactly the fields real responses carry.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use herald_api::{Access, Scope};
use serde_json::{Value, json};

use crate::{TestApp, delivery, str_of};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

async fn document(t: &TestApp) -> Value {
    let res = t.get("/openapi.json").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.content_type(), "application/json");
    assert_eq!(res.json["openapi"], "3.1.0", "not an OpenAPI 3.1 document: {}", res.text);
    res.json
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let t = TestApp::new();
    let doc = document(&t).await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            if METHODS.contains(&method.as_str()) {
                documented.insert((method, path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> =
        herald_api::routes().into_iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, served);

    // The router answers each listed route, and no other method on its path.
    let paths: BTreeSet<&String> = served.iter().map(|(_, path)| path).collect();
    for path in paths {
        let uri = path.replace("{id}", "x").replace("{name}", "x");
        for method in METHODS {
            let req = Request::builder().method(method).uri(&uri).body(Body::empty()).unwrap();
            let res = t.send(req).await;
            let kind = res.json["type"].as_str().unwrap_or_default();
            assert_ne!(kind, "urn:herald:problem:no-such-route", "{method} {uri}");
            if served.contains(&(method.to_string(), path.clone())) {
                assert_ne!(
                    res.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri} is documented: {}",
                    res.text
                );
            } else {
                assert_eq!(
                    res.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri} is not documented"
                );
            }
        }
    }
}

/// The scope each operation documents is the one the router enforces: the same table
/// builds both, and this holds the hand-written document to it.
#[tokio::test]
async fn every_operation_documents_the_scope_the_router_enforces() {
    let t = TestApp::new();
    let doc = document(&t).await;
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(
        (scheme["type"].as_str(), scheme["scheme"].as_str()),
        (Some("http"), Some("bearer"))
    );
    for (method, path, access) in herald_api::routes() {
        let operation = &doc["paths"][path][method.to_ascii_lowercase()];
        let what = format!("{method} {path}");
        let documented = operation["x-herald-scope"].as_str();
        assert_eq!(documented, Some(access.scope().map_or("none", Scope::name)), "{what}");
        let Some(scope) = access.scope() else {
            assert_eq!(operation["security"], json!([]), "{what} is open");
            assert!(operation["responses"].get("401").is_none(), "{what} is open");
            continue;
        };
        let alternatives = json!([{"bearerAuth": [scope.name()]}, {"bearerAuth": ["admin"]}]);
        assert_eq!(operation["security"], alternatives, "{what}");
        for (status, name) in [("401", "Unauthorized"), ("403", "Forbidden")] {
            let reference = format!("#/components/responses/{name}");
            assert_eq!(operation["responses"][status]["$ref"], reference.as_str(), "{what}");
        }
        let description = str_of(operation, "description");
        assert!(description.contains(&format!("scope `{scope}` (or `admin`)")), "{what}");
        if access == Access::Metrics {
            assert!(description.contains("metrics_public = true"), "{what}");
        }
    }
    let kinds = doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"].clone();
    for kind in ["unauthorized", "forbidden"] {
        assert!(kinds.as_array().unwrap().contains(&json!(format!("urn:herald:problem:{kind}"))));
    }
}

#[tokio::test]
async fn every_reference_resolves() {
    let t = TestApp::new();
    let doc = document(&t).await;
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 20);
    for reference in refs {
        let pointer =
            reference.strip_prefix('#').unwrap_or_else(|| panic!("external reference {reference}"));
        assert!(doc.pointer(pointer).is_some(), "{reference} does not resolve");
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(reference)) => refs.push(reference.clone()),
                    _ => collect_refs(child, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

/// Asserts that `value`'s keys are exactly the schema's properties, all required.
#[track_caller]
fn matches_schema(doc: &Value, schema: &str, value: &Value) {
    let schema_value = &doc["components"]["schemas"][schema];
    let properties: BTreeSet<&str> =
        schema_value["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    let required: BTreeSet<&str> =
        schema_value["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let actual: BTreeSet<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(actual, properties, "{schema} properties vs {value}");
    assert_eq!(actual, required, "{schema} required vs {value}");
}

#[tokio::test]
async fn schemas_name_the_fields_of_real_responses() {
    let t = TestApp::new();
    let doc = document(&t).await;
    let b = t.submit(&["ops"], "documented").await;
    let id = str_of(&b, "id");
    let b = t.settle(id).await;
    matches_schema(&doc, "Broadcast", &b);
    matches_schema(&doc, "Summary", &b["summary"]);
    matches_schema(&doc, "MessageOut", &b["message"]);
    matches_schema(&doc, "Delivery", delivery(&b, "broken", 0));

    let update = serde_json::json!({"message": {"title": "follow-up"}});
    let updated = t.post(&format!("/v1/broadcasts/{id}/updates"), &update).await;
    assert_eq!(updated.status, StatusCode::ACCEPTED);
    matches_schema(&doc, "ThreadMessage", &updated.json["updates"][0]);

    let attempts = t.get(&format!("/v1/broadcasts/{id}/attempts")).await;
    matches_schema(&doc, "AttemptLog", &attempts.json);
    matches_schema(&doc, "Attempt", &attempts.json["attempts"][0]);
    let page = t.get("/v1/broadcasts").await;
    matches_schema(&doc, "BroadcastPage", &page.json);
    let destinations = t.get("/v1/destinations").await;
    matches_schema(&doc, "DestinationList", &destinations.json);
    matches_schema(&doc, "Destination", &destinations.json["destinations"][0]);
    matches_schema(&doc, "Status", &t.get("/healthz").await.json);
    let nodes = t.get("/v1/nodes").await.json;
    matches_schema(&doc, "NodeList", &nodes);
    matches_schema(&doc, "Node", &nodes["nodes"][0]);
    // On SQLite the answering node is the whole cluster and drives every lane.
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes["nodes"][0]["this"], true);
    assert_eq!(
        nodes["nodes"][0]["lanes"],
        serde_json::json!(["broken", "jira-ops", "slack-incidents", "teams-ops"])
    );

    // A problem carries the required members and only documented ones.
    let problem = t.get("/v1/broadcasts/b_nope").await.json;
    let properties = doc["components"]["schemas"]["Problem"]["properties"].as_object().unwrap();
    for key in problem.as_object().unwrap().keys() {
        assert!(properties.contains_key(key), "undocumented problem member {key}");
    }
    let kinds =
        doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"].as_array().unwrap();
    assert!(kinds.contains(&problem["type"]));
}

/// Found by Schemathesis: the event stream's schema described the whole body as one
/// string, where OpenAPI 3.1 tools read it as the schema of each event. Each event the
/// stream sends has the documented fields and name.
#[tokio::test]
async fn each_server_sent_event_fits_the_documented_event_schema() {
    let t = TestApp::new();
    let doc = document(&t).await;
    let schema = &doc["paths"]["/v1/broadcasts/{id}/events"]["get"]["responses"]["200"]["content"]
        ["text/event-stream"]["schema"];
    assert_eq!(schema["required"], json!(["event", "data"]));
    let names: BTreeSet<&str> = schema["properties"]["event"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    let b = t.submit(&["ops"], "streamed").await;
    let id = str_of(&b, "id");
    t.settle(id).await;
    // A settled broadcast's stream is its snapshot and `done`, then it ends.
    let stream = t.get(&format!("/v1/broadcasts/{id}/events")).await;
    assert_eq!(stream.status, StatusCode::OK, "{}", stream.text);
    let mut seen = Vec::new();
    for block in stream.text.split("\n\n").filter(|block| !block.trim().is_empty()) {
        let field = |name: &str| {
            block.lines().find_map(|line| line.strip_prefix(&format!("{name}:")).map(str::trim))
        };
        let (Some(event), Some(data)) = (field("event"), field("data")) else {
            assert!(block.lines().all(|line| line.starts_with(':')), "not an event: {block:?}");
            continue;
        };
        assert!(names.contains(event), "undocumented event {event}");
        let broadcast: Value = serde_json::from_str(data).unwrap();
        matches_schema(&doc, "Broadcast", &broadcast);
        seen.push(event.to_string());
    }
    assert_eq!(seen, ["snapshot", "done"]);
}

/// Found by Schemathesis: `null` for an optional string of a submit or an update is
/// read as leaving it out, which the document did not allow.
#[tokio::test]
async fn null_for_an_optional_request_field_is_documented_and_means_absent() {
    let t = TestApp::new();
    let doc = document(&t).await;
    for schema in ["SubmitRequest", "UpdateRequest"] {
        for field in ["idempotency_key", "expires_in"] {
            let types = &doc["components"]["schemas"][schema]["properties"][field]["type"];
            assert_eq!(types, &json!(["string", "null"]), "{schema}.{field}");
        }
    }
    let mut body = crate::submission(&["ops"], "nulls");
    body["idempotency_key"] = Value::Null;
    body["expires_in"] = Value::Null;
    let res = t.post("/v1/broadcasts", &body).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    assert_eq!(res.json["idempotency_key"], Value::Null);
    assert_eq!(res.json["expires_at"], Value::Null);
    let id = str_of(&res.json, "id");
    let update =
        json!({"message": {"title": "again"}, "idempotency_key": null, "expires_in": null});
    let res = t.post(&format!("/v1/broadcasts/{id}/updates"), &update).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
}
