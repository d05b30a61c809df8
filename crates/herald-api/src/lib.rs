//! herald's HTTP API: [`app`] builds the axum router over an [`AppState`].
//!
//! This crate is the only place that knows the JSON shapes of DESIGN.md's "Interfaces":
//! it parses and validates requests, turns them into store records, and turns the store's
//! views back into the documented JSON. It delivers nothing itself: accepted work is
//! stored durably first and then handed to the engine with `Engine::notify`, and every
//! answer about progress is read back from the store, which is the truth.
//!
//! Every error is an RFC 9457 problem document (`application/problem+json`), including
//! malformed bodies, unknown routes and wrong methods; see [`ApiError`].
//!
//! # Layout
//! - `state.rs`: [`AppState`] and what it carries ([`Targets`], [`Limits`]).
//! - `ids.rs`: [`Ids`], the `b_`/`d_` ULID source.
//! - `error.rs`: [`ApiError`] and the middleware that completes and logs problems.
//! - `tokens.rs`: API tokens, their hashes and [`Scope`]s; `auth.rs`: the layer that
//!   answers 401/403 from each route's [`Access`] in the route table ([`Auth`]).
//! - `guard.rs`: the concurrency limit and request timeout (503 + `Retry-After`).
//! - `bounded.rs`: every store call bounded by `Limits::store_timeout`.
//! - `extract.rs`: the JSON body and query extractors that answer in problems.
//! - `validate.rs`: request limits and rules, field by field.
//! - `fuzzing.rs`: body decoding and checks without a server, for the fuzz targets.
//! - `dto.rs`: request and response JSON shapes and their conversions.
//! - `ui/`: the dashboard at `/ui/`, its assets embedded from `ui/assets/`.
//! - `routes/`: one file per resource; `routes/mod.rs` holds the route table that both
//!   the router and [`routes`] are built from, and `openapi.json` documents it.

mod auth;
mod bounded;
mod dto;
mod error;
mod extract;
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod ids;
mod routes;
mod span;
mod state;
mod tokens;
mod ui;
mod validate;

pub use auth::{Access, Auth};
pub use error::{ApiError, FieldError};
pub use ids::Ids;
pub use routes::{app, routes};
pub use state::{AppState, Limits, Targets};
pub use tokens::{ApiToken, Scope, TOKEN_PREFIX, TokenHash, new_token};
