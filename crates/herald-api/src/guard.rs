//! The API's own overload protection: a concurrency limit that sheds excess requests at
//! once, and a timeout on every request. Both answer `503` with `Retry-After` as a
//! problem document, instead of queueing without bound or hanging.
//!
//! Long-lived streams (SSE) are not routed through this layer: a stream would hold a
//! permit for its whole life and hit the timeout by design.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The shared limits the middleware enforces.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    permits: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
}

impl Guard {
    /// At most `max` requests at once, each answered within `timeout`.
    pub(crate) fn new(max: usize, timeout: Duration) -> Guard {
        let max = max.max(1);
        Guard { permits: Arc::new(Semaphore::new(max)), max, timeout }
    }
}

/// The middleware: sheds the request when every permit is taken, else runs it bounded
/// by the timeout. A handler cut off by the timeout is dropped; a store write it started
/// may still commit, which the timeout's problem detail tells the client.
pub(crate) async fn guard(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let Ok(_permit) = Arc::clone(&guard.permits).try_acquire_owned() else {
        return ApiError::Overloaded(format!(
            "{} requests are already being served (server.max_concurrent_requests)",
            guard.max
        ))
        .into_response();
    };
    match tokio::time::timeout(guard.timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::TimedOut(format!(
            "the request did not finish within {:?} (server.request_timeout)",
            guard.timeout
        ))
        .into_response(),
    }
}
