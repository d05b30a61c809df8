//! The auth layer: one middleware in front of every route decides whether a request
//! may go on, from the route table's [`Access`] for the route axum matched. Handlers
//! never check tokens themselves.
//!
//! With [`Auth::Open`] the layer is not installed at all. With tokens:
//! - a route's own access applies: open, a scope (`admin` allows all), or `/metrics`'s
//!   `read` unless `metrics_public`;
//! - a `/v1` path that no route has, or a method a `/v1` route does not serve, needs a
//!   valid token of any scope before it gets its `404`/`405`, so an anonymous caller
//!   learns nothing about the API beyond the published `/openapi.json`;
//! - any other unknown path answers `404` as without tokens.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::tokens::{ApiToken, Scope};

/// Who may call one operation; each row of the route table carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the probes and the OpenAPI document, which must answer without a secret.
    Open,
    /// A token with this scope, or `admin`.
    Scoped(Scope),
    /// `/metrics`: a `read` token, unless `[server] metrics_public = true` opens it for
    /// scrapers that cannot send a token.
    Metrics,
}

impl Access {
    /// The scope a token needs when metrics are not public; `None` for open routes.
    pub fn scope(self) -> Option<Scope> {
        match self {
            Access::Open => None,
            Access::Scoped(scope) => Some(scope),
            Access::Metrics => Some(Scope::Read),
        }
    }
}

/// How the API authenticates requests; part of [`AppState`](crate::AppState).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No tokens are configured: every route is open. The configuration allows this
    /// only on a loopback address.
    #[default]
    Open,
    /// Every `/v1` route needs `Authorization: Bearer <token>` with one of `tokens`
    /// whose scopes allow it.
    Tokens {
        /// The configured tokens; never empty.
        tokens: Vec<ApiToken>,
        /// Whether `/metrics` answers without a token.
        metrics_public: bool,
    },
}

impl Auth {
    /// [`Auth::Open`] without tokens, else [`Auth::Tokens`].
    pub fn new(tokens: Vec<ApiToken>, metrics_public: bool) -> Auth {
        if tokens.is_empty() { Auth::Open } else { Auth::Tokens { tokens, metrics_public } }
    }
}

/// What the layer needs: the tokens and the route table's access per route.
#[derive(Debug)]
pub(crate) struct Gate {
    tokens: Vec<ApiToken>,
    metrics_public: bool,
    /// `(method, route template)` → access, from the route table.
    access: HashMap<(Method, &'static str), Access>,
}

/// What a request must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    /// Any configured token: the answer will be a `404` or `405`.
    AnyToken,
    Scope(Scope),
}

impl Gate {
    /// The gate for `tokens` over the route table's `(method, path, access)` rows.
    pub(crate) fn new(
        tokens: Vec<ApiToken>,
        metrics_public: bool,
        routes: &[(&'static str, &'static str, Access)],
    ) -> Gate {
        let access = routes
            .iter()
            .filter_map(|(method, path, access)| {
                Some(((Method::from_bytes(method.as_bytes()).ok()?, *path), *access))
            })
            .collect();
        Gate { tokens, metrics_public, access }
    }

    fn need(&self, method: &Method, matched: Option<&str>, path: &str) -> Need {
        // axum answers HEAD with the GET handler, so it needs what GET needs.
        let method = if method == Method::HEAD { &Method::GET } else { method };
        let route = matched.and_then(|template| self.access.get(&(method.clone(), template)));
        match route {
            Some(Access::Open) => Need::Nothing,
            Some(Access::Metrics) if self.metrics_public => Need::Nothing,
            Some(access) => access.scope().map_or(Need::Nothing, Need::Scope),
            None if path == "/v1" || path.starts_with("/v1/") => Need::AnyToken,
            None => Need::Nothing,
        }
    }

    /// `Ok` when the request may go on.
    fn check(
        &self,
        method: &Method,
        matched: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        let need = self.need(method, matched, path);
        if need == Need::Nothing {
            return Ok(());
        }
        let token = self.token(headers)?;
        match need {
            Need::Scope(scope) if !token.allows(scope) => Err(ApiError::Forbidden {
                detail: format!(
                    "token `{}` has {} {}; {method} {path} needs `{scope}` (or `admin`). Use a \
                     token with that scope, or give this one the scope in the server's [[tokens]]",
                    token.name,
                    if token.scopes.len() == 1 { "scope" } else { "scopes" },
                    token.scopes.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
                ),
                scope,
            }),
            _ => Ok(()),
        }
    }

    /// The configured token the request presents.
    fn token(&self, headers: &HeaderMap) -> Result<&ApiToken, ApiError> {
        const HOW: &str = "send `Authorization: Bearer <token>` with a token listed in the \
                           server's [[tokens]] (an operator creates one with `herald token \
                           create`; the herald CLI reads it from HERALD_TOKEN or --token-file)";
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            let what = if headers.contains_key(header::AUTHORIZATION) {
                "more than one Authorization header was sent"
            } else {
                "this request needs a token"
            };
            return Err(ApiError::Unauthorized(format!("{what}; {HOW}")));
        };
        let presented = value.to_str().ok().and_then(|text| {
            let (scheme, token) = text.split_once(' ')?;
            let token = token.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
        });
        let Some(presented) = presented else {
            return Err(ApiError::Unauthorized(format!(
                "the Authorization header is not of the form `Bearer <token>`; {HOW}"
            )));
        };
        ApiToken::find(&self.tokens, presented).ok_or_else(|| {
            ApiError::Unauthorized(format!(
                "the bearer token is not one of the server's tokens (mistyped, truncated, or its \
                 [[tokens]] entry was removed); {HOW}"
            ))
        })
    }
}

/// The middleware: answers `401`/`403` itself, or runs the request.
pub(crate) async fn authorize(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    match gate.check(req.method(), matched, req.uri().path(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(error) => error.into_response(),
    }
}
