//! The dashboard's static files: served under `/ui/` with their types, caching and a
//! strict Content-Security-Policy, reachable without a token when the API needs one,
//! and absent from `openapi.json` (they are not API operations).

use axum::http::{StatusCode, header};
use herald_api::{Auth, routes};

use crate::{Answer, TestApp};

fn header(res: &Answer, name: header::HeaderName) -> &str {
    res.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[tokio::test]
async fn the_dashboard_is_served_with_its_types_and_a_strict_policy() {
    let t = TestApp::new();
    for (uri, content_type, needle) in [
        ("/ui/", "text/html; charset=utf-8", "<script type=\"module\" src=\"app.js\">"),
        ("/ui/index.html", "text/html; charset=utf-8", "<dialog id=\"token-dialog\""),
        ("/ui/app.js", "text/javascript; charset=utf-8", "from './views.js'"),
        ("/ui/api.js", "text/javascript; charset=utf-8", "sessionStorage"),
        ("/ui/views.js", "text/javascript; charset=utf-8", "export async function listPage"),
        ("/ui/timeline.js", "text/javascript; charset=utf-8", "createElementNS"),
        ("/ui/app.css", "text/css; charset=utf-8", ":focus-visible"),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
        ("/ui/runbook", "text/html; charset=utf-8", "<h3 id=\"attempts-exhausted\">"),
    ] {
        let res = t.get(uri).await;
        assert_eq!(res.status, StatusCode::OK, "{uri}: {}", res.text);
        assert_eq!(res.content_type(), content_type, "{uri}");
        assert!(res.text.contains(needle), "{uri} lacks {needle:?}");
        assert_eq!(header(&res, header::CACHE_CONTROL), "no-cache", "{uri}");
        assert_eq!(header(&res, header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{uri}");
        let csp = header(&res, header::CONTENT_SECURITY_POLICY);
        assert!(csp.starts_with("default-src 'self'"), "{uri}: {csp}");
        assert!(csp.contains("script-src 'self';"), "{uri}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{uri}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
    }
    // The page runs no inline script and pulls nothing from elsewhere.
    let index = t.get("/ui/").await.text;
    assert!(
        !index.contains("<script>") && !index.contains("http://") && !index.contains("https://")
    );
}

#[tokio::test]
async fn the_root_and_bare_prefix_redirect_to_the_dashboard_and_unknown_files_are_404() {
    let t = TestApp::new();
    for uri in ["/", "/ui"] {
        let res = t.get(uri).await;
        assert!(res.status.is_redirection(), "{uri}: {}", res.status);
        assert_eq!(header(&res, header::LOCATION), "/ui/", "{uri}");
    }
    let res = t.get("/ui/nope.js").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(
        res.text.contains("/ui/nope.js is not a file of the dashboard; open /ui/"),
        "{}",
        res.text
    );
    let res = t.get("/ui/..%2Fopenapi.json").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_dashboard_needs_no_token_while_its_data_does() {
    let t = TestApp::with_auth(Auth::new(crate::auth::tokens(), false));
    for uri in ["/", "/ui/", "/ui/app.js"] {
        let res = t.get(uri).await;
        assert!(res.status.is_success() || res.status.is_redirection(), "{uri}: {}", res.status);
    }
    assert_eq!(t.get("/v1/broadcasts").await.status, StatusCode::UNAUTHORIZED);
    assert!(routes().iter().all(|(_, path, _)| !path.starts_with("/ui") && *path != "/"));
}
