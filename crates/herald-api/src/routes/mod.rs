//! The route table and the router built from it.
//!
//! The router and the auth layer are built only from [`table`], and [`routes`] lists
//! the same table with each operation's [`Access`], so tests can hold it against
//! `openapi.json` in both directions and try every route with every scope.

mod broadcasts;
mod deliveries;
mod destinations;
mod events;
mod nodes;
mod ops;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{MethodRouter, get, post};
use tower_http::trace::TraceLayer;

use crate::auth::{Access, Auth, Gate, authorize};
use crate::bounded::Bounded;
use crate::error::{ApiError, problem_details};
use crate::guard::{Guard, guard};
use crate::state::AppState;
use crate::tokens::Scope;

/// The state handlers see: one allocation shared by all requests.
type Shared = Arc<AppState>;

/// One path, the methods it serves (as documented) with who may call each, and its
/// handlers.
struct Route {
    path: &'static str,
    methods: &'static [(&'static str, Access)],
    handler: MethodRouter<Shared>,
}

/// Submits broadcasts and updates.
const SEND: Access = Access::Scoped(Scope::Send);
/// Reads what herald knows.
const READ: Access = Access::Scoped(Scope::Read);
/// Changes what herald does with deliveries and destinations.
const OPERATE: Access = Access::Scoped(Scope::Operate);
/// The probes and the OpenAPI document.
const OPEN: Access = Access::Open;

/// The long-lived stream, exempt from the request timeout and the concurrency limit.
const EVENTS: &str = "/v1/broadcasts/{id}/events";

/// Routes the overload guard leaves alone: the stream (it would hold a permit for its
/// whole life and outlive any timeout) and the probes and metrics, which must answer
/// under load so a busy herald is not restarted as a dead one; each of those bounds
/// its own store calls.
const UNGUARDED: &[&str] = &[EVENTS, "/healthz", "/readyz", "/metrics"];

fn route(
    path: &'static str,
    methods: &'static [(&'static str, Access)],
    handler: MethodRouter<Shared>,
) -> Route {
    Route { path, methods, handler }
}

fn table() -> Vec<Route> {
    vec![
        route(
            "/v1/broadcasts",
            &[("GET", READ), ("POST", SEND)],
            get(broadcasts::list).post(broadcasts::submit),
        ),
        route("/v1/broadcasts/{id}", &[("GET", READ)], get(broadcasts::show)),
        route("/v1/broadcasts/{id}/attempts", &[("GET", READ)], get(broadcasts::attempts)),
        route(EVENTS, &[("GET", READ)], get(events::stream)),
        route("/v1/broadcasts/{id}/updates", &[("POST", SEND)], post(broadcasts::update)),
        route("/v1/deliveries/{id}/retry", &[("POST", OPERATE)], post(deliveries::retry)),
        route("/v1/deliveries/{id}/cancel", &[("POST", OPERATE)], post(deliveries::cancel)),
        route("/v1/destinations", &[("GET", READ)], get(destinations::list)),
        route("/v1/destinations/{name}/pause", &[("POST", OPERATE)], post(destinations::pause)),
        route("/v1/destinations/{name}/resume", &[("POST", OPERATE)], post(destinations::resume)),
        route("/v1/nodes", &[("GET", READ)], get(nodes::list)),
        route("/healthz", &[("GET", OPEN)], get(ops::healthz)),
        route("/readyz", &[("GET", OPEN)], get(ops::readyz)),
        route("/metrics", &[("GET", Access::Metrics)], get(ops::metrics)),
        route("/openapi.json", &[("GET", OPEN)], get(ops::openapi)),
    ]
}

/// Every `(method, path, access)` the router serves, paths in OpenAPI/axum template
/// form (`/v1/broadcasts/{id}`). `HEAD` is served wherever `GET` is, with the same
/// access, and not listed.
pub fn routes() -> Vec<(&'static str, &'static str, Access)> {
    table()
        .iter()
        .flat_map(|route| {
            route.methods.iter().map(|(method, access)| (*method, route.path, *access))
        })
        .collect()
}

/// The API: every route of DESIGN.md's "Interfaces" over `state`.
pub fn app(mut state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    let limits = state.limits.clone();
    state.store = Arc::new(Bounded::new(state.store, limits.store_timeout));
    let (unguarded, requests): (Vec<Route>, Vec<Route>) =
        table().into_iter().partition(|route| UNGUARDED.contains(&route.path));
    let mut router = Router::new();
    for route in requests {
        router = router.route(route.path, route.handler);
    }
    // `layer` wraps only the routes added so far, so the routes added next are exempt.
    let limit = Guard::new(limits.max_concurrent_requests, limits.request_timeout);
    router = router.layer(axum::middleware::from_fn_with_state(limit, guard));
    for route in unguarded {
        router = router.route(route.path, route.handler);
    }
    // The dashboard's static files: outside the table (not API operations, so not in
    // `openapi.json`), open (the auth layer passes non-`/v1` paths), unguarded (a
    // loaded herald must still show the operator what it is doing).
    router = router.merge(crate::ui::router());
    router = router.fallback(|| async { ApiError::NoRoute }).method_not_allowed_fallback(
        |method: Method, uri: Uri| async move { method_not_allowed(&method, &uri) },
    );
    // Added last so it wraps every route and both fallbacks, outside the overload
    // guard: a request without a valid token never takes a permit.
    if let Auth::Tokens { tokens, metrics_public } = &state.auth {
        let gate = Gate::new(tokens.clone(), *metrics_public, &routes());
        router = router.layer(axum::middleware::from_fn_with_state(Arc::new(gate), authorize));
    }
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(problem_details))
        .layer(axum::middleware::from_fn(crate::span::request))
        .layer(TraceLayer::new_for_http())
        .with_state(Arc::new(state))
}

/// The 405 for `method` on `uri`, naming the methods its route accepts.
fn method_not_allowed(method: &Method, uri: &Uri) -> ApiError {
    let path = uri.path();
    let allowed: Vec<&str> = table()
        .iter()
        .filter(|route| template_matches(route.path, path))
        .flat_map(|route| route.methods.iter().map(|(method, _)| *method))
        .collect();
    ApiError::MethodNotAllowed(format!(
        "{path} does not accept {method}; it accepts {}.",
        allowed.join(", ")
    ))
}

/// Whether `path` fits the route template (`{name}` matches any one segment).
fn template_matches(template: &str, path: &str) -> bool {
    let (mut template, mut path) = (template.split('/'), path.split('/'));
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(want), Some(got))
                if want == got || (want.starts_with('{') && !got.is_empty()) => {}
            _ => return false,
        }
    }
}
