//! The operator's dashboard: static assets embedded in the binary, served at `/ui/`.
//!
//! Hand-written HTML, CSS and JavaScript modules, nothing to build: the page reads the
//! `/v1` API (with the token the operator enters, kept in `sessionStorage`) and follows
//! a broadcast's SSE stream with `fetch` so the token travels in a header. These routes
//! are not in the route table: they are not part of the API (so not in `openapi.json`)
//! and are open, since a page with no data in it gives nothing away; the auth layer
//! lets every non-`/v1` path through.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

mod runbook;

/// Where the dashboard lives.
pub(crate) const PREFIX: &str = "/ui/";

/// Only this origin's scripts, styles and connections; no inline script, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// One embedded file: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the dashboard; `index.html` is also served at `/ui/`.
const ASSETS: &[Asset] = &[
    Asset { name: "index.html", content_type: HTML, body: include_bytes!("assets/index.html") },
    Asset { name: "app.css", content_type: CSS, body: include_bytes!("assets/app.css") },
    Asset { name: "app.js", content_type: JS, body: include_bytes!("assets/app.js") },
    Asset { name: "api.js", content_type: JS, body: include_bytes!("assets/api.js") },
    Asset { name: "views.js", content_type: JS, body: include_bytes!("assets/views.js") },
    Asset { name: "timeline.js", content_type: JS, body: include_bytes!("assets/timeline.js") },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

/// The dashboard's routes, merged into the API's router by `app`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to(PREFIX) }))
        .route("/ui", get(|| async { Redirect::to(PREFIX) }))
        .route(PREFIX, get(|| async { asset("index.html") }))
        .route("/ui/{file}", get(|Path(file): Path<String>| async move { asset(&file) }))
}

/// The file `name`, or a plain 404 naming the way back to the dashboard.
fn asset(name: &str) -> Response {
    if name == "runbook" {
        return secured(runbook::PAGE.as_str().into_response(), HTML);
    }
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("/ui/{name} is not a file of the dashboard; open {PREFIX}\n"),
        )
            .into_response();
    };
    secured(asset.body.into_response(), asset.content_type)
}

/// `response` as `content_type`, with the dashboard's caching and security headers.
fn secured(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The names carry no version, so a browser must ask again (cheaply, it is small)
    // after an upgrade rather than run old scripts against a new API.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
