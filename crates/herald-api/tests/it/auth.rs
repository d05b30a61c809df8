//! Tokens and scopes: every route of the route table tried without a token, with a bad
//! one and with a token of every scope, so a route added to the table is covered
//! without touching this file; then what a refused request leaves behind (nothing),
//! the fallbacks, public metrics, and an open API.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use herald_api::{Access, ApiToken, Auth, Scope, TokenHash, routes};
use serde_json::json;

use crate::{Answer, TestApp, json_request, str_of, submission};

/// One token per scope, named after it, plus one with two scopes; each token's text is
/// `token-NAME`.
pub(crate) fn tokens() -> Vec<ApiToken> {
    let mut res: Vec<ApiToken> = Scope::ALL
        .into_iter()
        .map(|scope| ApiToken {
            name: scope.name().into(),
            hash: TokenHash::of(&token(scope.name())),
            scopes: vec![scope],
        })
        .collect();
    res.push(ApiToken {
        name: "oncall".into(),
        hash: TokenHash::of(&token("oncall")),
        scopes: vec![Scope::Read, Scope::Operate],
    });
    res
}

fn token(name: &str) -> String {
    format!("token-{name}")
}

fn secured(metrics_public: bool) -> TestApp {
    TestApp::with_auth(Auth::new(tokens(), metrics_public))
}

/// `method uri` with the `Authorization` header `authorization`, if any; JSON bodies
/// for POSTs so a permitted request reaches its handler's own checks.
async fn call(t: &TestApp, method: &str, uri: &str, authorization: Option<&str>) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = if method == Method::POST {
        json_request(method, uri, &json!({}))
    } else {
        Request::builder().method(method).uri(uri).body(Body::empty()).unwrap()
    };
    if let Some(value) = authorization {
        req.headers_mut().insert(header::AUTHORIZATION, value.parse().unwrap());
    }
    t.send(req).await
}

fn bearer(name: &str) -> String {
    format!("Bearer {}", token(name))
}

/// Asserts a 401 problem with the bearer challenge; returns its detail.
#[track_caller]
fn unauthorized(res: &Answer, what: &str) -> String {
    let problem = res.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(problem["type"], "urn:herald:problem:unauthorized", "{what}");
    let challenge = res.headers.get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap());
    assert_eq!(challenge, Some("Bearer realm=\"herald\""), "{what}");
    str_of(problem, "detail").to_string()
}

#[track_caller]
fn passed(res: &Answer, what: &str) {
    assert!(
        res.status != StatusCode::UNAUTHORIZED && res.status != StatusCode::FORBIDDEN,
        "{what} was refused: {} {}",
        res.status,
        res.text
    );
}

#[tokio::test]
async fn every_route_refuses_a_missing_or_bad_token_and_a_wrong_scope_and_takes_the_right_one() {
    let t = secured(false);
    let table = routes();
    assert!(table.len() >= 16, "the route table shrank: {table:?}");
    let mut refused_scopes = 0;
    for (method, path, access) in table {
        let uri = path.replace("{id}", "x").replace("{name}", "x");
        let what = format!("{method} {uri}");
        let Some(needed) = access.scope() else {
            assert_eq!(access, Access::Open);
            passed(&call(&t, method, &uri, None).await, &what);
            passed(&call(&t, method, &uri, Some("Bearer not-a-token")).await, &what);
            continue;
        };
        let detail = unauthorized(&call(&t, method, &uri, None).await, &what);
        assert!(
            detail.contains("needs a token") && detail.contains("herald token create"),
            "{detail}"
        );
        for bad in ["Bearer not-a-token", "Bearer ", "Basic dXNlcjpwYXNz", &token("admin")] {
            unauthorized(&call(&t, method, &uri, Some(bad)).await, &format!("{what} with {bad}"));
        }
        // The hash of a token is not the token.
        let hash = format!("Bearer {}", TokenHash::of(&token("admin")));
        unauthorized(&call(&t, method, &uri, Some(&hash)).await, &what);

        for scope in Scope::ALL {
            let res = call(&t, method, &uri, Some(&bearer(scope.name()))).await;
            let what = format!("{what} with a `{scope}` token");
            if scope == needed || scope == Scope::Admin {
                passed(&res, &what);
                continue;
            }
            refused_scopes += 1;
            let problem = res.problem(StatusCode::FORBIDDEN);
            assert_eq!(problem["type"], "urn:herald:problem:forbidden", "{what}");
            let detail = str_of(problem, "detail");
            assert!(
                detail.contains(&format!("token `{scope}` has scope `{scope}`"))
                    && detail.contains(&format!("needs `{needed}` (or `admin`)")),
                "{what}: {detail}"
            );
            let challenge = res.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert_eq!(
                challenge,
                format!(
                    "Bearer realm=\"herald\", error=\"insufficient_scope\", scope=\"{needed}\""
                ),
                "{what}"
            );
        }
        // A token with several scopes has the union of them.
        let res = call(&t, method, &uri, Some(&bearer("oncall"))).await;
        if [Scope::Read, Scope::Operate].contains(&needed) {
            passed(&res, &format!("{what} with read + operate"));
        } else {
            res.problem(StatusCode::FORBIDDEN);
        }
        // HEAD is GET's twin: it needs what GET needs.
        if method == "GET" {
            // A HEAD answer has no body, so only the status and the challenge show.
            let res = call(&t, "HEAD", &uri, None).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "HEAD {uri}");
            assert!(res.headers.contains_key(header::WWW_AUTHENTICATE), "HEAD {uri}");
            passed(&call(&t, "HEAD", &uri, Some(&bearer("admin"))).await, &format!("HEAD {uri}"));
        }
    }
    // 13 scoped operations, each refused to the two scopes that are neither its own
    // nor admin.
    assert_eq!(refused_scopes, 26);
}

#[tokio::test]
async fn a_refused_request_changes_nothing_and_an_allowed_one_works() {
    let t = secured(false);
    let body = submission(&["slack-incidents"], "only with send");
    let refused = |name: &str| {
        let mut req = json_request(Method::POST, "/v1/broadcasts", &body);
        req.headers_mut().insert(header::AUTHORIZATION, bearer(name).parse().unwrap());
        req
    };
    for name in ["read", "operate", "oncall"] {
        t.send(refused(name)).await.problem(StatusCode::FORBIDDEN);
    }
    t.send(json_request(Method::POST, "/v1/broadcasts", &body))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let list = call(&t, "GET", "/v1/broadcasts", Some(&bearer("read"))).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(list.json["items"], json!([]), "a refused submit was stored");
    assert_eq!(t.calls("slack-incidents"), 0);

    // `send` submits; the scheme name is case-insensitive.
    let mut req = json_request(Method::POST, "/v1/broadcasts", &body);
    let value = format!("bearer {}", token("send"));
    req.headers_mut().insert(header::AUTHORIZATION, value.parse().unwrap());
    let res = t.send(req).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    let list = call(&t, "GET", "/v1/broadcasts", Some(&bearer("oncall"))).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let t = secured(false);
    let mut req = Request::get("/v1/destinations").body(Body::empty()).unwrap();
    req.headers_mut().append(header::AUTHORIZATION, bearer("read").parse().unwrap());
    req.headers_mut().append(header::AUTHORIZATION, bearer("admin").parse().unwrap());
    let detail = unauthorized(&t.send(req).await, "two headers");
    assert!(detail.contains("more than one Authorization header"), "{detail}");
}

/// Unknown `/v1` paths and methods need a valid token (any scope) before they get their
/// 404 or 405; outside `/v1`, and on the open routes, they answer as without tokens.
#[tokio::test]
async fn fallbacks_need_a_token_under_v1_only() {
    let t = secured(false);
    for (method, uri) in
        [("GET", "/v1/nope"), ("GET", "/v1"), ("POST", "/v1/nodes"), ("DELETE", "/v1/broadcasts/x")]
    {
        let what = format!("{method} {uri}");
        unauthorized(&call(&t, method, uri, None).await, &what);
        unauthorized(&call(&t, method, uri, Some("Bearer nope")).await, &what);
        let expected = if uri == "/v1/nope" || uri == "/v1" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::METHOD_NOT_ALLOWED
        };
        for name in ["send", "read", "operate", "admin"] {
            let res = call(&t, method, uri, Some(&bearer(name))).await;
            assert_eq!(res.status, expected, "{what} with {name}: {}", res.text);
        }
    }
    call(&t, "GET", "/nope", None).await.problem(StatusCode::NOT_FOUND);
    call(&t, "POST", "/healthz", None).await.problem(StatusCode::METHOD_NOT_ALLOWED);
    call(&t, "POST", "/metrics", None).await.problem(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn metrics_public_opens_metrics_and_nothing_else() {
    let t = secured(true);
    let res = call(&t, "GET", "/metrics", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert!(res.text.contains("herald_pending_deliveries"), "{}", res.text);
    unauthorized(&call(&t, "GET", "/v1/destinations", None).await, "destinations");

    let t = secured(false);
    unauthorized(&call(&t, "GET", "/metrics", None).await, "metrics");
    call(&t, "GET", "/metrics", Some(&bearer("send"))).await.problem(StatusCode::FORBIDDEN);
    let res = call(&t, "GET", "/metrics", Some(&bearer("read"))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
}

#[tokio::test]
async fn without_tokens_every_route_is_open_and_a_header_is_ignored() {
    assert_eq!(Auth::new(Vec::new(), false), Auth::Open);
    let t = TestApp::new();
    for (method, path, _) in routes() {
        let uri = path.replace("{id}", "x").replace("{name}", "x");
        passed(&call(&t, method, &uri, None).await, &uri);
        passed(&call(&t, method, &uri, Some("Bearer whatever")).await, &uri);
    }
    call(&t, "GET", "/v1/nope", None).await.problem(StatusCode::NOT_FOUND);
}
