//! Bad input of every kind is answered with a problem that names the field, and never
//! affects what was accepted before.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::{TestApp, json_request, str_of, submission};

/// How a case's problem must point at the input.
enum Names {
    /// `errors[].field` contains this entry.
    Field(&'static str),
    /// `detail` contains this text.
    Detail(&'static str),
}

struct Case {
    name: &'static str,
    req: Request<Body>,
    status: StatusCode,
    names: Names,
    /// Text the problem (detail or an error message) must also contain.
    mentions: &'static [&'static str],
}

fn case(name: &'static str, req: Request<Body>, status: StatusCode, names: Names) -> Case {
    Case { name, req, status, names, mentions: &[] }
}

fn raw(content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut req = Request::post("/v1/broadcasts");
    if let Some(content_type) = content_type {
        req = req.header(header::CONTENT_TYPE, content_type);
    }
    req.body(body.into()).unwrap()
}

fn submit(body: &Value) -> Request<Body> {
    json_request(Method::POST, "/v1/broadcasts", body)
}

/// The example submission with `edit` applied.
fn edited(edit: impl FnOnce(&mut Value)) -> Request<Body> {
    let mut body = submission(&["slack-incidents"], "P1: checkout is down");
    edit(&mut body);
    submit(&body)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn cases() -> Vec<Case> {
    use Names::{Detail, Field};
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let bad = StatusCode::BAD_REQUEST;
    let mut many = vec![json!("slack-incidents"); 65];
    many[0] = json!("teams-ops");
    vec![
        case(
            "malformed JSON",
            raw(Some("application/json"), r#"{"destinations": ["#),
            bad,
            Detail("line 1"),
        ),
        case(
            "trailing garbage",
            raw(Some("application/json"), format!("{} x", submission(&["slack-incidents"], "t"))),
            bad,
            Detail("trailing characters"),
        ),
        case("empty body", raw(Some("application/json"), ""), bad, Detail("empty")),
        case(
            "wrong content type",
            raw(Some("text/plain"), "{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Detail("application/json"),
        ),
        case(
            "no content type",
            raw(None, "{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Detail("Content-Type"),
        ),
        case(
            "unknown top-level field",
            edited(|b| b["priority"] = json!("high")),
            unprocessable,
            Field("priority"),
        ),
        case(
            "unknown message field",
            edited(|b| b["message"]["colour"] = json!("red")),
            unprocessable,
            Field("message.colour"),
        ),
        case(
            "unknown link field",
            edited(|b| b["message"]["links"][0]["alt"] = json!("x")),
            unprocessable,
            Field("message.links[0].alt"),
        ),
        case(
            "missing destinations",
            edited(|b| {
                b.as_object_mut().unwrap().remove("destinations");
            }),
            unprocessable,
            Field("destinations"),
        ),
        case(
            "wrong type",
            edited(|b| b["destinations"] = json!([1])),
            unprocessable,
            Field("destinations[0]"),
        ),
        case(
            "empty destinations",
            edited(|b| b["destinations"] = json!([])),
            unprocessable,
            Field("destinations"),
        ),
        Case {
            mentions: &["nope", "slack-incidents", "p1"],
            ..case(
                "unknown destination",
                edited(|b| b["destinations"] = json!(["slack-incidents", "nope"])),
                unprocessable,
                Field("destinations[1]"),
            )
        },
        Case {
            mentions: &["p9", "groups: empty, ops, p1, stale"],
            ..case(
                "unknown group",
                edited(|b| b["destinations"] = json!(["p9"])),
                unprocessable,
                Field("destinations[0]"),
            )
        },
        Case {
            mentions: &["stale", "gone"],
            ..case(
                "group naming an unknown destination",
                edited(|b| b["destinations"] = json!(["stale"])),
                unprocessable,
                Field("destinations[0]"),
            )
        },
        case(
            "only an empty group",
            edited(|b| b["destinations"] = json!(["empty"])),
            unprocessable,
            Field("destinations"),
        ),
        case(
            "too many destinations",
            edited(|b| b["destinations"] = json!(many)),
            unprocessable,
            Field("destinations"),
        ),
        case(
            "missing title",
            edited(|b| {
                b["message"].as_object_mut().unwrap().remove("title");
            }),
            unprocessable,
            Field("message.title"),
        ),
        case(
            "empty title",
            edited(|b| b["message"]["title"] = json!("  ")),
            unprocessable,
            Field("message.title"),
        ),
        Case {
            mentions: &["1001", "1000"],
            ..case(
                "too-long title",
                edited(|b| b["message"]["title"] = json!("x".repeat(1001))),
                unprocessable,
                Field("message.title"),
            )
        },
        case(
            "multi-line title",
            edited(|b| b["message"]["title"] = json!("a\nb")),
            unprocessable,
            Field("message.title"),
        ),
        case(
            "too-long body",
            edited(|b| b["message"]["body"] = json!("x".repeat(40_001))),
            unprocessable,
            Field("message.body"),
        ),
        case(
            "too many tags",
            edited(|b| b["message"]["tags"] = json!(vec!["t"; 51])),
            unprocessable,
            Field("message.tags"),
        ),
        case(
            "empty tag",
            edited(|b| b["message"]["tags"] = json!(["ok", ""])),
            unprocessable,
            Field("message.tags[1]"),
        ),
        case(
            "bad link URL",
            edited(|b| b["message"]["links"][0]["url"] = json!("javascript:alert(1)")),
            unprocessable,
            Field("message.links[0].url"),
        ),
        Case {
            mentions: &["urgent", "critical"],
            ..case(
                "bad severity",
                edited(|b| b["message"]["severity"] = json!("urgent")),
                unprocessable,
                Field("message.severity"),
            )
        },
        // Found by the `api` fuzz target: serde_json calls a non-string enum value a
        // syntax error, and the body was refused as "not valid JSON".
        case(
            "severity of the wrong type",
            edited(|b| b["message"]["severity"] = json!([3])),
            unprocessable,
            Field("message.severity"),
        ),
        case(
            "numeric severity",
            edited(|b| b["message"]["severity"] = json!(3)),
            unprocessable,
            Field("message.severity"),
        ),
        Case {
            mentions: &["2 hourz"],
            ..case(
                "bad expires_in",
                edited(|b| b["expires_in"] = json!("2 hourz")),
                unprocessable,
                Field("expires_in"),
            )
        },
        case(
            "zero expires_in",
            edited(|b| b["expires_in"] = json!("0s")),
            unprocessable,
            Field("expires_in"),
        ),
        case(
            "empty key",
            edited(|b| b["idempotency_key"] = json!("")),
            unprocessable,
            Field("idempotency_key"),
        ),
        case(
            "too-long key",
            edited(|b| b["idempotency_key"] = json!("k".repeat(201))),
            unprocessable,
            Field("idempotency_key"),
        ),
        Case {
            mentions: &["key-a", "key-b"],
            ..case(
                "key header and body differ",
                {
                    let mut req = edited(|b| b["idempotency_key"] = json!("key-a"));
                    req.headers_mut().insert("Idempotency-Key", "key-b".parse().unwrap());
                    req
                },
                unprocessable,
                Field("idempotency_key"),
            )
        },
        case(
            "oversized body",
            edited(|b| b["message"]["body"] = json!("x".repeat(300 * 1024))),
            StatusCode::PAYLOAD_TOO_LARGE,
            Detail("262144 bytes"),
        ),
        Case {
            mentions: &["done", "in_progress"],
            ..case("bad list state", get("/v1/broadcasts?state=done"), bad, Field("state"))
        },
        case("list limit zero", get("/v1/broadcasts?limit=0"), bad, Field("limit")),
        case("list limit too big", get("/v1/broadcasts?limit=501"), bad, Field("limit")),
        case("list limit not a number", get("/v1/broadcasts?limit=ten"), bad, Field("limit")),
        case("list bad cursor", get("/v1/broadcasts?cursor=zzz"), bad, Field("cursor")),
        case("list unknown parameter", get("/v1/broadcasts?sort=asc"), bad, Field("sort")),
        case(
            "list empty destination",
            get("/v1/broadcasts?destination="),
            bad,
            Field("destination"),
        ),
    ]
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_field_and_changes_nothing() {
    let t = TestApp::new();
    let before = t.submit(&["p1"], "accepted before the bad input").await;
    let id = str_of(&before, "id");
    let before = t.settle(id).await;
    let calls_before: Vec<usize> =
        ["slack-incidents", "teams-ops", "jira-ops"].map(|d| t.calls(d)).to_vec();

    for Case { name, req, status, names, mentions } in cases() {
        let uri = req.uri().path().to_string();
        let res = t.send(req).await;
        assert_eq!(res.status, status, "{name}: {}", res.text);
        let problem = res.problem(status);
        assert_eq!(problem["instance"], uri.as_str(), "{name}");
        let detail = str_of(problem, "detail");
        match names {
            Names::Field(field) => {
                assert!(
                    res.fields().iter().any(|f| f == field),
                    "{name}: no error for `{field}` in {}",
                    res.text
                );
                assert!(detail.contains(field), "{name}: detail does not name `{field}`: {detail}");
            }
            Names::Detail(text) => {
                assert!(detail.contains(text), "{name}: `{text}` not in {detail}")
            }
        }
        for text in mentions {
            assert!(res.text.contains(text), "{name}: `{text}` not mentioned in {}", res.text);
        }
    }

    // Nothing accepted earlier is affected, and nothing new was accepted.
    let after = t.get(&format!("/v1/broadcasts/{id}")).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.json, before);
    let listed = t.get("/v1/broadcasts").await;
    assert_eq!(listed.json["items"].as_array().unwrap().len(), 1);
    let calls_after: Vec<usize> =
        ["slack-incidents", "teams-ops", "jira-ops"].map(|d| t.calls(d)).to_vec();
    assert_eq!(calls_after, calls_before);
}

#[tokio::test]
async fn several_invalid_fields_are_reported_together() {
    let t = TestApp::new();
    let body = json!({
        "destinations": ["nope"],
        "message": {"title": "", "tags": [""]},
        "expires_in": "soon"
    });
    let res = t.post("/v1/broadcasts", &body).await;
    res.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = res.fields();
    fields.sort();
    assert_eq!(fields, ["destinations[0]", "expires_in", "message.tags[0]", "message.title"]);
}

#[tokio::test]
async fn limits_are_configurable() {
    let t = TestApp::with_limits(herald_api::Limits {
        max_destinations: 2,
        ..herald_api::Limits::default()
    });
    let res = t.post("/v1/broadcasts", &submission(&["p1"], "three destinations")).await;
    res.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text.contains("resolves to 3 destinations; the limit is 2"), "{}", res.text);
}
