//! The store as the API sees it: every call bounded in time.
//!
//! A store that does not answer (a stalled disk, a writer stuck behind a long
//! transaction) must give the client a `503`, never a hang and never a false `2xx`. So
//! every call the API makes is wrapped in a timeout that turns into
//! `StoreError::TimedOut`. A write that timed out is not cancelled in the store: it may
//! still commit after the client got its 503, which is why the 503 tells the client to
//! retry with the same idempotency key.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_core::{RetryPolicy, Timestamp};
use herald_store::*;

/// A [`Store`] whose every call fails with `TimedOut` after `limit`.
pub(crate) struct Bounded {
    inner: Arc<dyn Store>,
    limit: Duration,
}

impl Bounded {
    /// Wraps `inner`, bounding each call to `limit`.
    pub(crate) fn new(inner: Arc<dyn Store>, limit: Duration) -> Bounded {
        Bounded { inner, limit }
    }

    async fn bound<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.limit, call)
            .await
            .unwrap_or(Err(StoreError::TimedOut(self.limit)))
    }
}

#[async_trait]
impl Store for Bounded {
    async fn submit(&self, broadcast: NewBroadcast) -> Result<Submitted, StoreError> {
        self.bound(self.inner.submit(broadcast)).await
    }
    async fn add_update(&self, update: NewUpdate) -> Result<UpdateAdded, StoreError> {
        self.bound(self.inner.add_update(update)).await
    }
    async fn claim(&self, claim: ClaimRequest) -> Result<Claimed, StoreError> {
        self.bound(self.inner.claim(claim)).await
    }
    async fn claim_expired_except(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        exclude: Vec<String>,
    ) -> Result<Vec<Work>, StoreError> {
        self.bound(self.inner.claim_expired_except(now, lease_until, limit, exclude)).await
    }
    async fn record(&self, records: Vec<Record>) -> Result<Vec<Change>, StoreError> {
        self.bound(self.inner.record(records)).await
    }
    async fn release(&self, releases: Vec<Release>) -> Result<Vec<Change>, StoreError> {
        self.bound(self.inner.release(releases)).await
    }
    async fn retry_delivery(
        &self,
        id: &str,
        policy: &RetryPolicy,
        now: Timestamp,
    ) -> Result<Vec<Change>, StoreError> {
        self.bound(self.inner.retry_delivery(id, policy, now)).await
    }
    async fn cancel_delivery(&self, id: &str, now: Timestamp) -> Result<Vec<Change>, StoreError> {
        self.bound(self.inner.cancel_delivery(id, now)).await
    }
    async fn delivery(&self, id: &str) -> Result<Option<DeliveryRef>, StoreError> {
        self.bound(self.inner.delivery(id)).await
    }
    async fn broadcast(&self, id: &str) -> Result<Option<BroadcastView>, StoreError> {
        self.bound(self.inner.broadcast(id)).await
    }
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        self.bound(self.inner.list(query)).await
    }
    async fn attempts(&self, broadcast_id: &str) -> Result<Vec<AttemptView>, StoreError> {
        self.bound(self.inner.attempts(broadcast_id)).await
    }
    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        self.bound(self.inner.destination_stats()).await
    }
    async fn hold_removed(
        &self,
        configured: Vec<String>,
        now: Timestamp,
    ) -> Result<Vec<RemovedHolds>, StoreError> {
        self.bound(self.inner.hold_removed(configured, now)).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.bound(self.inner.ping()).await
    }
    async fn prune(&self, request: PruneRequest) -> Result<Pruned, StoreError> {
        self.bound(self.inner.prune(request)).await
    }
    fn metrics(&self) -> Option<herald_store::metrics::StoreMetrics> {
        self.inner.metrics()
    }
}
