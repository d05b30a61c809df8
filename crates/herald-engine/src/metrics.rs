//! The engine's Prometheus metrics. The API renders them with the store's gauges.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of per-destination, per-outcome series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The destination's name.
    pub destination: String,
    /// The outcome class or final state.
    pub outcome: String,
}

/// Labels of per-destination series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    /// The destination's name.
    pub destination: String,
}

fn duration_histogram() -> Histogram {
    // 1 ms to ~16 s: covers loopback sinks and slow SaaS APIs alike.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15))
}

/// Counters and histograms the engine updates as it works.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// Attempts by destination and outcome class.
    pub attempts: Family<OutcomeLabels, Counter>,
    /// Deliveries that reached a terminal state, by destination and state.
    pub deliveries: Family<OutcomeLabels, Counter>,
    /// Attempt durations by destination.
    pub attempt_duration: Family<DestinationLabels, Histogram, fn() -> Histogram>,
}

impl Default for EngineMetrics {
    fn default() -> EngineMetrics {
        EngineMetrics {
            attempts: Family::default(),
            deliveries: Family::default(),
            attempt_duration: Family::new_with_constructor(duration_histogram),
        }
    }
}

impl EngineMetrics {
    /// Adds the metrics to `registry` under the `herald_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "herald_attempts",
            "Delivery attempts by outcome class",
            self.attempts.clone(),
        );
        registry.register(
            "herald_deliveries",
            "Deliveries that reached a terminal state, by state",
            self.deliveries.clone(),
        );
        registry.register(
            "herald_attempt_duration_seconds",
            "Duration of one delivery attempt",
            self.attempt_duration.clone(),
        );
    }
}

/// The outcome classes, in the order of [`LaneMetrics::attempts`].
const CLASSES: [&str; 5] = ["delivered", "retry", "throttled", "permanent", "unknown"];

/// One lane's series, resolved once so an attempt neither allocates labels nor takes
/// the families' locks.
#[derive(Debug, Clone)]
pub(crate) struct LaneMetrics {
    /// Attempts per outcome class, in `CLASSES` order.
    attempts: [Counter; 5],
    /// Attempt durations.
    pub(crate) duration: Histogram,
}

impl LaneMetrics {
    /// The handles of `destination`'s series in `metrics`.
    pub(crate) fn new(metrics: &EngineMetrics, destination: &str) -> LaneMetrics {
        let counter = |outcome: &str| {
            metrics
                .attempts
                .get_or_create(&OutcomeLabels {
                    destination: destination.into(),
                    outcome: outcome.into(),
                })
                .clone()
        };
        LaneMetrics {
            attempts: CLASSES.map(counter),
            duration: metrics
                .attempt_duration
                .get_or_create(&DestinationLabels { destination: destination.into() })
                .clone(),
        }
    }

    /// Counts one attempt of `class` (an `Outcome::class`).
    pub(crate) fn attempt(&self, class: &str) {
        if let Some(idx) = CLASSES.iter().position(|c| *c == class) {
            self.attempts[idx].inc();
        }
    }
}
