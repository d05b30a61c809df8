//! The store's own Prometheus series: how the write path performs.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Write-path histograms a store fills as it commits; cheap to clone (the series are
/// shared).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Requests per write transaction (SQLite's group commit); `None` where writes are
    /// not grouped (PostgreSQL: one operation per transaction).
    pub batch_size: Option<Histogram>,
    /// Time from `BEGIN` to the end of `COMMIT` of each write transaction.
    pub transaction_duration: Histogram,
}

impl StoreMetrics {
    /// Series for a store that groups writes (`batched`) or runs one per transaction.
    pub fn new(batched: bool) -> StoreMetrics {
        StoreMetrics {
            // 1 to 1024 requests: the SQLite writer takes at most 1024 at once.
            batch_size: batched.then(|| Histogram::new(exponential_buckets(1.0, 2.0, 11))),
            // 0.5 ms to ~8 s: an fsync on a fast disk up to a stalled one.
            transaction_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
        }
    }

    /// Adds the series to `registry` under the `herald_store_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        if let Some(batch_size) = &self.batch_size {
            registry.register(
                "herald_store_write_batch_size",
                "Write requests committed together in one transaction",
                batch_size.clone(),
            );
        }
        registry.register_with_unit(
            "herald_store_transaction_duration",
            "Duration of a write transaction, from BEGIN to the end of COMMIT",
            prometheus_client::registry::Unit::Seconds,
            self.transaction_duration.clone(),
        );
    }
}
