//! herald-store's one integration test binary: the backend-independent conformance
//! suite (`conformance`, with its builders in `fixture`) and the module that runs it
//! against each backend (`sqlite`). It tests behaviour through the `Store` trait only;
//! SQL and schema details are not asserted here.

#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod cluster;
mod conformance;
mod fixture;
mod overload;
mod postgres;
mod retention;
mod sqlite;
