//! The verdict: what the destinations received (the simulator's records) held against what
//! herald reports (its API), after every broadcast converged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use herald_simulator::{Fate, SimView};
use serde_json::Value;

/// Overlaps of two requests with one `webhook-id` shorter than this are not counted as
/// double sends: the simulator learns of a connection closed by herald (a timeout, a
/// kill) asynchronously, and a retry that quickly follows a timeout can be decided
/// before that close is processed on a busy machine. A real double send (an attempt
/// still waiting for its answer when a second one starts) overlaps for up to the
/// attempt timeout.
pub const OVERLAP_TOLERANCE: Duration = Duration::from_millis(100);

/// How many examples of each kind of violation the report quotes.
const EXAMPLES: usize = 5;

/// What the check found; every count but the first five is a violation when non-zero.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Deliveries checked.
    pub deliveries: usize,
    /// Of which delivered.
    pub delivered: usize,
    /// Of which failed (with a reason, or counted below).
    pub failed: usize,
    /// Copies beyond the first at destinations that do not deduplicate.
    pub extra_copies: usize,
    /// Attempts herald logged as `unknown` at those destinations.
    pub ambiguous_attempts: usize,
    /// Accepted broadcasts or updates herald does not know, deliveries herald reports
    /// delivered that the destination never stored, and deliveries not terminal.
    pub lost: usize,
    /// Copies beyond one of a message at a deduplicating destination.
    pub duplicates: usize,
    /// Extra copies at a non-deduplicating destination beyond one per ambiguous attempt.
    pub excess_copies: usize,
    /// Requests of an update that reached a destination before its predecessor was
    /// acknowledged there.
    pub order_violations: usize,
    /// Messages sent by two attempts at once (overlapping requests with one `webhook-id`).
    pub double_sends: usize,
    /// Failed deliveries without a failure reason, held ones without an error.
    pub failures_without_reason: usize,
    /// A few examples of the violations, for the report.
    pub examples: Vec<String>,
}

impl Findings {
    /// The number of violations of every kind.
    pub fn violations(&self) -> usize {
        self.lost
            + self.duplicates
            + self.excess_copies
            + self.order_violations
            + self.double_sends
            + self.failures_without_reason
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES * 4 {
            self.examples.push(text);
        }
    }
}

/// One request as the checks need it.
struct Request {
    broadcast: String,
    seq: u64,
    at: Instant,
    ended: Option<Instant>,
    fate: Fate,
    stored: bool,
}

/// What herald reports, fetched after convergence.
#[derive(Debug, Default)]
pub struct Reported {
    /// Each accepted broadcast's view (`GET /v1/broadcasts/{id}`), `Null` if unknown.
    pub broadcasts: Vec<(String, Value)>,
    /// Each accepted update: broadcast id to the update sequence numbers the client got.
    pub updates: HashMap<String, Vec<u64>>,
    /// The destinations each broadcast was submitted to (not checked when missing).
    pub destinations: HashMap<String, Vec<String>>,
    /// Attempt logs by delivery id, for the destinations that do not deduplicate.
    pub attempts: HashMap<String, Vec<Value>>,
}

/// Holds the simulator's records against herald's reports.
///
/// `non_deduplicating` names the destinations whose receiver stores every copy.
pub fn check(sim: &SimView, reported: &Reported, non_deduplicating: &HashSet<String>) -> Findings {
    let mut f = Findings::default();
    let requests: HashMap<String, Vec<Request>> =
        sim.names().iter().map(|name| (name.clone(), requests(sim, name))).collect();
    // (destination, broadcast, seq) -> copies stored (also by faults that store first).
    let mut stored: HashMap<(&str, &str, u64), usize> = HashMap::new();
    for (name, list) in &requests {
        for r in list.iter().filter(|r| r.stored) {
            *stored.entry((name, &r.broadcast, r.seq)).or_default() += 1;
        }
    }

    for (id, view) in &reported.broadcasts {
        if view.is_null() {
            f.lost += 1;
            f.example(format!("lost: accepted broadcast {id} is unknown to herald"));
            continue;
        }
        let deliveries = view["deliveries"].as_array().cloned().unwrap_or_default();
        let seqs = std::iter::once(&0).chain(reported.updates.get(id).into_iter().flatten());
        for seq in seqs {
            if !deliveries.iter().any(|d| d["seq"].as_u64() == Some(*seq)) {
                f.lost += 1;
                f.example(format!("lost: accepted message {seq} of {id} has no deliveries"));
            }
            for name in reported.destinations.get(id).into_iter().flatten() {
                let found = deliveries
                    .iter()
                    .any(|d| d["seq"].as_u64() == Some(*seq) && d["destination"] == name.as_str());
                if !found {
                    f.lost += 1;
                    f.example(format!("lost: message {seq} of {id} has no delivery to {name}"));
                }
            }
        }
        for d in &deliveries {
            f.deliveries += 1;
            let destination = d["destination"].as_str().unwrap_or_default().to_string();
            let seq = d["seq"].as_u64().unwrap_or(0);
            let delivery = d["id"].as_str().unwrap_or_default();
            let copies =
                stored.get(&(destination.as_str(), id.as_str(), seq)).copied().unwrap_or(0);
            match d["state"].as_str().unwrap_or_default() {
                "delivered" => {
                    f.delivered += 1;
                    if copies == 0 {
                        f.lost += 1;
                        f.example(format!(
                            "lost: {delivery} ({destination}, {id} #{seq}) is delivered per herald but was never stored"
                        ));
                    }
                }
                "failed" => {
                    f.failed += 1;
                    if d["failure_reason"].as_str().is_none_or(str::is_empty) {
                        f.failures_without_reason += 1;
                        f.example(format!("no reason: {delivery} failed without a reason"));
                    }
                }
                "held" => {
                    if d["last_error"].as_str().is_none_or(str::is_empty) {
                        f.failures_without_reason += 1;
                        f.example(format!("no reason: {delivery} is held without an error"));
                    }
                }
                "cancelled" => {}
                state => {
                    f.lost += 1;
                    f.example(format!("not converged: {delivery} ({destination}) is {state}"));
                }
            }
            if non_deduplicating.contains(&destination) {
                let unknown = reported
                    .attempts
                    .get(delivery)
                    .map_or(0, |log| log.iter().filter(|a| a["outcome"] == "unknown").count());
                let extra = copies.saturating_sub(1);
                f.extra_copies += extra;
                f.ambiguous_attempts += unknown;
                if extra > unknown {
                    f.excess_copies += extra - unknown;
                    f.example(format!(
                        "excess copies: {delivery} ({destination}) stored {copies} times after {unknown} ambiguous attempts"
                    ));
                }
            } else if copies > 1 {
                f.duplicates += copies - 1;
                f.example(format!("duplicate: {destination} stored {id} #{seq} {copies} times"));
            }
        }
    }

    for (name, list) in &requests {
        order(name, list, &mut f);
        for key in sim.overlapping_keys(name, OVERLAP_TOLERANCE) {
            f.double_sends += 1;
            f.example(format!("double send: {name} had two requests of {key} open at once"));
        }
    }
    f
}

/// The broadcast id and thread position a webhook body carries.
fn identify(body: &[u8]) -> Option<(String, u64)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let data = value.get("data")?;
    Some((data.get("broadcast_id")?.as_str()?.to_string(), data.get("thread_seq")?.as_u64()?))
}

fn requests(sim: &SimView, name: &str) -> Vec<Request> {
    sim.received(name)
        .into_iter()
        .filter_map(|r| {
            let (broadcast, seq) = identify(&r.body)?;
            Some(Request {
                broadcast,
                seq,
                at: r.at,
                ended: r.ended,
                fate: r.fate,
                stored: r.stored,
            })
        })
        .collect()
}

/// DESIGN.md invariant 5 at one destination: no request of update `n` before the
/// request that got update `n - 1` acknowledged (answered 200) had ended.
fn order(name: &str, list: &[Request], f: &mut Findings) {
    // (broadcast, seq) -> (first arrival, first acknowledgement).
    let mut seen: BTreeMap<(&str, u64), (Instant, Option<Instant>)> = BTreeMap::new();
    for r in list {
        let entry = seen.entry((&r.broadcast, r.seq)).or_insert((r.at, None));
        entry.0 = entry.0.min(r.at);
        // Only an answer herald received acknowledges: a late 200 after herald gave up
        // (`Delayed`) never reached it.
        if matches!(r.fate, Fate::Stored { status: 200 } | Fate::Duplicate { status: 200 }) {
            let ended = r.ended.unwrap_or(r.at);
            entry.1 = Some(entry.1.map_or(ended, |e: Instant| e.min(ended)));
        }
    }
    for (&(broadcast, seq), &(first, _)) in &seen {
        if seq == 0 {
            continue;
        }
        if let Some(&(_, Some(acked))) = seen.get(&(broadcast, seq - 1))
            && first < acked
        {
            f.order_violations += 1;
            f.example(format!(
                "order: {name} got update {seq} of {broadcast} before update {} was acknowledged",
                seq - 1
            ));
        }
    }
}
