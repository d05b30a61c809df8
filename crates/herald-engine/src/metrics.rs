//! The engine's Prometheus metrics. The API renders them with the store's gauges.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::LaneHealth;

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

/// Upper bounds of the submit-to-delivered buckets, in seconds: a loopback sink answers
/// in milliseconds, a retried or throttled delivery takes minutes, an outage hours.
const LATENCY_BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Counters and histograms the engine (and the API, for accepted work) updates as it
/// works.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// Broadcasts accepted (stored and answered `202`; replays not counted).
    pub broadcasts_accepted: Counter,
    /// Updates accepted (stored and answered `202`; replays not counted).
    pub updates_accepted: Counter,
    /// Attempts by destination and outcome class.
    pub attempts: Family<OutcomeLabels, Counter>,
    /// Deliveries that reached a terminal state, by destination and state.
    pub deliveries: Family<OutcomeLabels, Counter>,
    /// Answers that asked herald to slow down (429 and the like), by destination.
    pub throttles: Family<DestinationLabels, Counter>,
    /// Attempt durations by destination.
    pub attempt_duration: Family<DestinationLabels, Histogram, fn() -> Histogram>,
    /// From a delivery's creation (its broadcast or update accepted) to its delivery.
    pub delivery_latency: Family<DestinationLabels, Histogram, fn() -> Histogram>,
}

impl Default for EngineMetrics {
    fn default() -> EngineMetrics {
        EngineMetrics {
            broadcasts_accepted: Counter::default(),
            updates_accepted: Counter::default(),
            attempts: Family::default(),
            deliveries: Family::default(),
            throttles: Family::default(),
            attempt_duration: Family::new_with_constructor(duration_histogram),
            delivery_latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl EngineMetrics {
    /// Adds the metrics to `registry` under the `herald_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "herald_broadcasts_accepted",
            "Broadcasts accepted (stored before the 202; idempotent replays not counted)",
            self.broadcasts_accepted.clone(),
        );
        registry.register(
            "herald_updates_accepted",
            "Updates accepted (stored before the 202; idempotent replays not counted)",
            self.updates_accepted.clone(),
        );
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
            "herald_throttles",
            "Answers that asked herald to slow down (HTTP 429 and the like)",
            self.throttles.clone(),
        );
        registry.register(
            "herald_attempt_duration_seconds",
            "Duration of one delivery attempt",
            self.attempt_duration.clone(),
        );
        registry.register(
            "herald_delivery_latency_seconds",
            "Time from a delivery's creation (its broadcast or update accepted) to its delivery",
            self.delivery_latency.clone(),
        );
    }
}

/// The value of `herald_circuit_state` for a circuit state (`LaneHealth::circuit`):
/// 0 closed, 1 half-open (a probe may go), 2 open (nothing goes).
pub fn circuit_value(circuit: &str) -> i64 {
    match circuit {
        "open" => 2,
        "half_open" => 1,
        _ => 0,
    }
}

/// Adds the gauges read from the lanes' in-memory health at scrape time: circuit state,
/// throttling and pauses.
pub fn register_health(health: &[LaneHealth], registry: &mut Registry) {
    let circuit = Family::<DestinationLabels, Gauge>::default();
    let throttled = Family::<DestinationLabels, Gauge>::default();
    let paused = Family::<DestinationLabels, Gauge>::default();
    for lane in health {
        let labels = DestinationLabels { destination: lane.destination.clone() };
        circuit.get_or_create(&labels).set(circuit_value(lane.circuit));
        throttled.get_or_create(&labels).set(i64::from(lane.throttled));
        paused.get_or_create(&labels).set(i64::from(lane.paused));
    }
    registry.register(
        "herald_circuit_state",
        "Circuit breaker state: 0 closed, 1 half-open (one probe may go), 2 open (nothing goes)",
        circuit,
    );
    registry.register(
        "herald_destination_throttled",
        "1 while the destination throttled herald recently and its lane is slowed down",
        throttled,
    );
    registry.register(
        "herald_destination_paused",
        "1 while the destination is paused (by an operator, or because it said it is gone)",
        paused,
    );
}

/// The outcome classes, in the order of [`LaneMetrics::attempts`].
const CLASSES: [&str; 6] =
    ["delivered", "retry", "throttled", "permanent", "unknown", "reconciling"];

/// One lane's series, resolved once so an attempt neither allocates labels nor takes
/// the families' locks.
#[derive(Debug, Clone)]
pub(crate) struct LaneMetrics {
    /// Attempts per outcome class, in `CLASSES` order.
    attempts: [Counter; 6],
    /// Throttling answers.
    throttles: Counter,
    /// Attempt durations.
    pub(crate) duration: Histogram,
    /// Creation to delivery.
    pub(crate) latency: Histogram,
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
        let labels = DestinationLabels { destination: destination.into() };
        LaneMetrics {
            attempts: CLASSES.map(counter),
            throttles: metrics.throttles.get_or_create(&labels).clone(),
            duration: metrics.attempt_duration.get_or_create(&labels).clone(),
            latency: metrics.delivery_latency.get_or_create(&labels).clone(),
        }
    }

    /// Counts one attempt of `class` (an `Outcome::class`).
    pub(crate) fn attempt(&self, class: &str) {
        if let Some(idx) = CLASSES.iter().position(|c| *c == class) {
            self.attempts[idx].inc();
        }
        if class == "throttled" {
            self.throttles.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::circuit_value;

    /// The documented encoding of `herald_circuit_state`, which the alert rules and the
    /// dashboard's value mappings rely on.
    #[test]
    fn circuit_states_map_to_0_1_2() {
        let mapped: Vec<i64> =
            ["closed", "half_open", "open"].iter().map(|s| circuit_value(s)).collect();
        assert_eq!(mapped, [0, 1, 2]);
    }
}
